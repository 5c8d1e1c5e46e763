// A mount's commit never allocates more metadata blocks than commitBlocksEstimate() promised
// when it started: admission (hold) and the commit triggers rely on it to never run out of
// meta_avail half-way through a commit. Random mixes of what makes many blocks dirty — bursts
// of creates, multi-part xattrs, fragmented files and their truncation, renames across
// directories, deletions — on a real server over TCP, committing at random points and whenever
// the store decides to.
import { afterAll, describe, expect, test } from "bun:test";
import { ScoutfsFuse } from "../../src/fs/fuse.ts";
import { makeVolume, removeVolume, startServer, type Vol } from "../server/helpers.ts";
import { openStore } from "../client/helpers.ts";
import { rng } from "../helpers/rng.ts";
import { ctx, sizeSet } from "./harness.ts";

const vols: Vol[] = [];
afterAll(() => vols.forEach(removeVolume));

const c = ctx();

describe("commit block estimate", () => {
  for (const seed of [1, 2, 3]) {
    test(`seed ${seed}: no commit allocates more blocks than estimated`, async () => {
      const v = await makeVolume(`estimate-${seed}`, 2048, 512);
      vols.push(v);
      const server = startServer(v, 1n, { mergeCommits: 6 });
      const store = await openStore(v);
      try {
        const sfs = new ScoutfsFuse(store, { entryTimeout: 60, attrTimeout: 60 });
        const r = rng(seed);
        const dirs: number[] = [];
        for (let d = 0; d < 4; d++) dirs.push((await sfs.mkdir(c, 1, `d${d}`, 0o755, 0)).nodeid);
        const live: { dir: number; name: string; ino: number }[] = [];
        let made = 0;
        const block = new Uint8Array(4096).fill(0x61);
        for (let step = 0; step < 120; step++) {
          const op = r(10);
          if (op < 4) {
            // a burst of creates in one directory
            const dir = dirs[r(dirs.length)]!;
            for (let k = r(300) + 1; k > 0; k--) {
              const name = `f${made++}`;
              const cr = await sfs.create(c, dir, name, 0o644, 0, 2);
              await sfs.release(c, cr.entry.nodeid, cr.open.fh);
              live.push({ dir, name, ino: cr.entry.nodeid });
            }
          } else if (op === 4 && live.length > 0) {
            // xattrs, some of several parts
            const f = live[r(live.length)]!;
            for (let k = r(6) + 1; k > 0; k--) await sfs.setxattr(c, f.ino, `user.x${k}`, new Uint8Array(r(3) === 0 ? 60_000 : r(200) + 1).fill(k), 0);
          } else if (op === 5 && live.length > 0) {
            // a fragmented file: every other block written
            const f = live[r(live.length)]!;
            for (let b = 0; b < r(200) + 1; b++) await sfs.write(c, f.ino, 0, b * 2 * 4096, block);
          } else if (op === 6 && live.length > 0) {
            // truncation frees its extents
            const f = live[r(live.length)]!;
            await sfs.setattr(c, f.ino, sizeSet(r(3) * 4096));
          } else if (op === 7 && live.length > 0) {
            // renames into other directories
            for (let k = r(100) + 1; k > 0 && live.length > 0; k--) {
              const f = live[r(live.length)]!;
              const to = dirs[r(dirs.length)]!;
              const name = `r${made++}`;
              await sfs.rename(c, f.dir, f.name, to, name, 0);
              f.dir = to;
              f.name = name;
            }
          } else if (op === 8 && live.length > 0) {
            // deletions: unlink, and the kernel letting go deletes the inode and its data
            for (let k = r(200) + 1; k > 0 && live.length > 0; k--) {
              const f = live.splice(r(live.length), 1)[0]!;
              await sfs.unlink(c, f.dir, f.name);
              sfs.forget(f.ino, 1);
            }
          } else {
            await store.sync();
          }
        }
        await store.sync();
        expect(store.counters.commits).toBeGreaterThan(5);
        expect(store.counters.commitBlocksMax).toBeGreaterThan(0);
        expect(store.counters.commitFailures).toBe(0);
        expect(store.counters.commitBlocksOver).toBe(0);
        expect(server.merge.counters.merges).toBeGreaterThan(0);
      } finally {
        await store.close();
        server.close();
      }
    }, 120_000);
  }
});
