// The volume's inode count, kept the scoutfs way: the super's inode_count plus every log tree's
// inode_count_delta (what statfs reports), folded into the super by merges. Counted per
// transaction: a rolled back one (or the rolled back part of a nested one) counts nothing. Checked
// against the inode items actually there, on a mount of a server over TCP and on the standalone
// store.
import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { InodeCountDelta } from "../../src/item/inode-count.ts";
import { ScoutfsFuse } from "../../src/fs/fuse.ts";
import { StandaloneStore } from "../../src/item/store.ts";
import { readSuper } from "../../src/block/super.ts";
import { Device } from "../../src/block/device.ts";
import { keyPack, keyUnpack } from "../../src/format/key.ts";
import * as C from "../../src/format/constants.ts";
import type { ItemReader, ItemStore } from "../../src/item/types.ts";
import { mkfs, parseQuorumSlot } from "../../src/offline/mkfs.ts";
import { makeVolume, removeVolume, startServer, type Vol } from "../server/helpers.ts";
import { openStore } from "../client/helpers.ts";
import { sparseFile, tempDir } from "../helpers/images.ts";
import { rng } from "../helpers/rng.ts";
import { ctx } from "./harness.ts";

const vols: Vol[] = [];
const dir = tempDir();
afterAll(() => {
  vols.forEach(removeVolume);
  fs.rmSync(dir, { recursive: true, force: true });
});

const c = ctx();

/** Inode items in the FS zone, as a reader sees them (committed or not). */
function inodeItems(r: ItemReader): number {
  const last = keyPack({ zone: C.FS_ZONE, first: C.U64_MAX, type: 255, second: C.U64_MAX, third: C.U64_MAX, fourth: 255 });
  let k = keyPack({ zone: C.FS_ZONE, first: 0n, type: 0, second: 0n, third: 0n, fourth: 0 });
  let n = 0;
  for (;;) {
    const it = r.next(k, last);
    if (it === null) return n;
    const first = keyUnpack(it.key).first;
    // skip to the inode item of the next inode number (or this one's, when this is before it)
    const inodeKey = keyPack({ zone: C.FS_ZONE, first, type: C.INODE_TYPE, second: 0n, third: 0n, fourth: 0 });
    if (it.key === inodeKey) n++;
    k = it.key < inodeKey ? inodeKey : keyPack({ zone: C.FS_ZONE, first: first + 1n, type: 0, second: 0n, third: 0n, fourth: 0 });
  }
}

/** Creations, hard links, deletions (through forget, as the kernel lets go) and an O_TMPFILE. */
async function workload(sfs: ScoutfsFuse): Promise<void> {
  const d = (await sfs.mkdir(c, 1, "d", 0o755, 0)).nodeid;
  const files: number[] = [];
  for (let i = 0; i < 40; i++) {
    const cr = await sfs.create(c, d, `f${i}`, 0o644, 0, 2);
    await sfs.release(c, cr.entry.nodeid, cr.open.fh);
    files.push(cr.entry.nodeid);
  }
  for (let i = 0; i < 5; i++) await sfs.symlink(c, d, `s${i}`, `f${i}`);
  // a hard link is no new inode; the name it adds keeps f1 alive when f1's own name goes
  await sfs.link(c, files[1]!, d, "f1-again");
  await sfs.mkdir(c, d, "empty", 0o755, 0);
  // a name that exists: fails before any inode is made
  await expect(Promise.resolve().then(() => sfs.create(c, d, "f0", 0o644, 0, 2))).rejects.toThrow();
  for (let i = 0; i < 12; i++) {
    await sfs.unlink(c, d, `f${i}`);
    sfs.forget(files[i]!, 1);
  }
  const empty = (await sfs.lookup(c, d, "empty")).nodeid;
  await sfs.rmdir(c, d, "empty");
  sfs.forget(empty, 2);
  const tmp = await sfs.tmpfile(c, d, 0o600, 0, 2);
  await sfs.release(c, tmp.entry.nodeid, tmp.open.fh);
  sfs.forget(tmp.entry.nodeid, 1);
}

/** Transactions that count and then roll back, wholly or in their nested part: nothing stays counted. */
function rollbacks(store: ItemStore): void {
  expect(() =>
    store.transact(() => {
      store.countInodes!(7);
      throw new Error("rolled back");
    }),
  ).toThrow("rolled back");
  store.transact(() => {
    store.countInodes!(1);
    try {
      store.transact(() => {
        store.countInodes!(5);
        throw new Error("inner rolled back");
      });
    } catch {
      // the outer transaction goes on without the inner one's part
    }
    store.countInodes!(-1);
  });
}

describe("InodeCountDelta", () => {
  test("a transaction keeps its count only if it returns; a nested one that throws loses only its own part (random model)", () => {
    const r = rng(11);
    for (let round = 0; round < 200; round++) {
      const d = new InodeCountDelta();
      let want = 0;
      for (let t = 0; t < 5; t++) {
        let outer = 0;
        const outerThrows = r(4) === 0;
        try {
          d.run(false, () => {
            for (let s = 0; s < 4; s++) {
              const x = r(5) - 2;
              d.add(x);
              outer += x;
              if (r(2) === 0) {
                const innerThrows = r(3) === 0;
                let inner = 0;
                try {
                  d.run(true, () => {
                    const y = r(5) - 2;
                    d.add(y);
                    inner += y;
                    if (innerThrows) throw new Error("inner");
                  });
                } catch {
                  inner = 0;
                }
                outer += inner;
              }
            }
            if (outerThrows) throw new Error("outer");
          });
        } catch {
          outer = 0;
        }
        want += outer;
      }
      const taken = d.take();
      expect(taken).toBe(want);
      expect(d.take()).toBe(0);
      d.giveBack(taken);
      expect(d.take()).toBe(want);
    }
  });
});

describe("inode count", () => {
  test("a mount's statfs count is the number of inode items, through commits and merges into the super", async () => {
    const v = await makeVolume("inode-count");
    vols.push(v);
    const server = startServer(v, 1n);
    const store = await openStore(v);
    try {
      const sfs = new ScoutfsFuse(store, { entryTimeout: 60, attrTimeout: 60 });
      expect(server.statfs().inode_count).toBe(1n); // mkfs: the root
      await workload(sfs);
      rollbacks(store);
      await store.sync();
      const n = inodeItems(store.reader);
      // root, d, 40 files, 5 symlinks; 12 files deleted but f1 (still linked), empty dir and tmpfile gone
      expect(n).toBe(1 + 1 + 40 + 5 - 11);
      expect(server.statfs().inode_count).toBe(BigInt(n));
      // the merge folds the finalized tree's delta into the super; the mount counts on in its next tree
      expect(server.requestMerge()).toBe(true);
      await server.merge.idle();
      expect(server.merge.counters.merges).toBe(1);
      expect(server.t.sup.inode_count).toBe(BigInt(n));
      expect(server.statfs().inode_count).toBe(BigInt(n));
      await sfs.mkdir(c, 1, "after", 0o755, 0);
      await store.sync();
      expect(server.statfs().inode_count).toBe(BigInt(n + 1));
      expect(server.t.sup.inode_count).toBe(BigInt(n));
    } finally {
      await store.close();
      server.close();
    }
  }, 60_000);

  test("the standalone store writes the count into the super at each commit", async () => {
    const metaPath = sparseFile(path.join(dir, "sa.meta"), 96 << 20);
    const dataPath = sparseFile(path.join(dir, "sa.data"), 64 << 20);
    mkfs({ metaPath, dataPath, allowSmallSize: true, slots: [parseQuorumSlot("0,127.0.0.1,42000")] }, { out: () => {}, warn: () => {} });
    const store = StandaloneStore.open({ metaPath, dataPath });
    let n: number;
    try {
      const sfs = new ScoutfsFuse(store, { entryTimeout: 60, attrTimeout: 60 });
      await workload(sfs);
      rollbacks(store);
      await store.sync();
      n = inodeItems(store.reader);
      expect(n).toBe(1 + 1 + 40 + 5 - 11);
    } finally {
      store.close();
    }
    const dev = Device.open(metaPath, { write: false });
    try {
      expect(readSuper(dev, { meta: true }).inode_count).toBe(BigInt(n));
    } finally {
      dev.close();
    }
  });
});
