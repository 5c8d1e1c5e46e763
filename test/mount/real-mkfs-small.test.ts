// The small volumes made by the REAL scoutfs mkfs (test/fixtures/real-mkfs/v2-*: 64-80 MiB
// metadata devices of 1033-1280 blocks, 260 KiB to 4 GiB data devices; 1, 3 or sparse quorum
// slots) mounted with `scoutfs mount`. The real mkfs leaves such a device's free metadata almost
// all in server_meta_avail (1024 blocks) and only 1-249 blocks in meta_alloc; the server keeps a
// reserve scaled to the device and gives the rest to the mount (docs/cluster.md, "Metadata space").
//
// For each fixture: mount (a multi-slot volume with a voter in a second slot, see
// fixture-quorum.ts), directories, a small file, symlink, hard link, xattr, mode, rename, many
// empty files and unlinks; then fill the data device and the metadata device until ENOSPC (never
// a hang); removals still work on the full device; unmount (its final commit must succeed) and
// mount again: every change that succeeded is there. Offline at the end: every metadata block is
// referenced or free exactly once and no mount is left recorded.
import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { fixtureImage, fixtureText, tempDir } from "../helpers/images.ts";
import { sys } from "../fuse/helpers.ts";
import { NodeVolume } from "../fs/node-mount.ts";
import { accountVolume, type ClusterVolume } from "../cluster/harness.ts";
import { QuorumVoter, rehomeQuorumSlots } from "./fixture-quorum.ts";

interface Fixture {
  name: string;
  /** Data device size when its image is stored trimmed. */
  dataBytes?: number;
  /** A second quorum slot that votes (multi-slot volumes need a majority). */
  voterSlot?: number;
}

const FIXTURES: Fixture[] = [
  { name: "v2-1slot" },
  { name: "v2-3slot", voterSlot: 1 },
  { name: "v2-det", voterSlot: 2 },
  { name: "v2-sparse-slots", voterSlot: 14 },
  { name: "v2-mdlimit" },
  { name: "v2-zone", dataBytes: 4 * 2 ** 30 },
];

const XATTR_BYTES = 60_000;
const MAX_XATTR_FILES = 1000;
const MAX_DATA_WRITES = 256;

const dirs: string[] = [];
const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
}, 60_000);

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff;
  return b;
}

function xvalue(i: number, k: number): Buffer {
  const v = Buffer.alloc(XATTR_BYTES, (i * 5 + k) & 0xff);
  v.writeUInt32LE(i, 0);
  v.writeUInt32LE(k, 4);
  return v;
}

function syncDir(d: string): void {
  const fd = fs.openSync(d, "r");
  fs.fsyncSync(fd);
  fs.closeSync(fd);
}

function code(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException).code;
}

/** The real print's free data blocks (data_alloc total_len) of a fixture. */
function dataFree(name: string): number {
  const m = /data_alloc: .* total_len (\d+)/.exec(fixtureText(`${name}.print.txt`));
  if (!m) throw new Error(`no data_alloc in ${name}.print.txt`);
  return Number(m[1]);
}

describe("small volumes made by the real mkfs", () => {
  for (const fx of FIXTURES) {
    test(`${fx.name}: mounts, works, fills to ENOSPC, keeps everything across a remount`, async () => {
      const t0 = performance.now();
      const dir = tempDir(`scoutfs-${fx.name}-`);
      dirs.push(dir);
      const meta = fixtureImage(fx.name, "meta", dir);
      const data = fixtureImage(fx.name, "data", dir, fx.dataBytes);
      const ports = await rehomeQuorumSlots(meta);
      let voter: QuorumVoter | null = null;
      if (fx.voterSlot !== undefined) {
        expect(ports.has(fx.voterSlot)).toBe(true);
        voter = await QuorumVoter.start(meta, fx.voterSlot, ports);
        const v = voter;
        cleanups.push(() => v.close());
      }
      const vol = NodeVolume.of(dir, meta, data);
      cleanups.push(() => vol.cleanup());
      const m = vol.mnt;
      const free = dataFree(fx.name);

      vol.mount();
      // our node was elected with the voter's vote (its output is read once the event loop runs)
      for (let i = 0; voter && voter.votes === 0 && i < 100; i++) await Bun.sleep(20);
      if (voter) expect(voter.votes).toBeGreaterThan(0);
      const st = fs.statfsSync(m);
      expect(st.bsize).toBe(4096);
      expect(st.bfree).toBe(free);
      expect(fs.readdirSync(m)).toEqual([]);

      // ordinary changes
      fs.mkdirSync(path.join(m, "a/b"), { recursive: true });
      const small = pattern(100, 1);
      fs.writeFileSync(path.join(m, "a/b/small"), small);
      fs.symlinkSync("a/b/small", path.join(m, "ln"));
      fs.linkSync(path.join(m, "a/b/small"), path.join(m, "hard"));
      expect(sys.setxattr(path.join(m, "hard"), "user.origin", Buffer.from(fx.name))).toBe(0);
      fs.chmodSync(path.join(m, "hard"), 0o640);
      fs.mkdirSync(path.join(m, "many"));
      for (let i = 0; i < 200; i++) fs.writeFileSync(path.join(m, "many", `e${i}`), "");
      for (let i = 0; i < 200; i += 2) fs.unlinkSync(path.join(m, "many", `e${i}`));
      fs.renameSync(path.join(m, "many", "e1"), path.join(m, "a", "moved"));

      // fill the data device (a 260 KiB one has a single free block, taken by `small`)
      const fill = path.join(m, "fill");
      const fd = fs.openSync(fill, "w");
      const chunk = pattern(4096, 2);
      let written = 0;
      let dataErr: string | undefined;
      for (let i = 0; i < MAX_DATA_WRITES && dataErr === undefined; i++) {
        try {
          written += fs.writeSync(fd, chunk, 0, chunk.length, written);
        } catch (e) {
          dataErr = code(e);
        }
      }
      fs.fsyncSync(fd);
      fs.closeSync(fd);
      if (free - 1 < MAX_DATA_WRITES) {
        expect(dataErr).toBe("ENOSPC");
        expect(written).toBe((free - 1) * 4096);
      } else {
        expect(dataErr).toBeUndefined();
      }

      // fill the metadata device: files with four 60 KB xattrs until ENOSPC
      fs.mkdirSync(path.join(m, "x"));
      const done = new Map<number, number>();
      let metaErr = "";
      outer: for (let i = 0; i < MAX_XATTR_FILES; i++) {
        const f = path.join(m, "x", `f${i}`);
        try {
          fs.writeFileSync(f, "");
        } catch (e) {
          metaErr = `create: ${code(e)}`;
          break;
        }
        done.set(i, 0);
        for (let k = 0; k < 4; k++) {
          const r = sys.setxattr(f, `user.x${k}`, xvalue(i, k));
          if (r < 0) {
            metaErr = `setxattr: ${r}`;
            break outer;
          }
          done.set(i, k + 1);
        }
      }
      expect(metaErr === "setxattr: -28" || metaErr === "create: ENOSPC").toBe(true);
      expect(done.size).toBeGreaterThan(20);
      // the device stays full: a new file is refused at once, again
      expect(() => fs.writeFileSync(path.join(m, "x", "more"), "")).toThrow(/ENOSPC/);
      // removals still work on the full device
      const removed = [0, 1, 2];
      for (const i of removed) {
        fs.unlinkSync(path.join(m, "x", `f${i}`));
        done.delete(i);
      }
      expect(sys.removexattr(path.join(m, "x", "f3"), "user.x0")).toBe(0);
      syncDir(m);
      syncDir(path.join(m, "x"));

      const check = () => {
        expect(fs.readFileSync(path.join(m, "a/b/small")).equals(small)).toBe(true);
        expect(fs.readlinkSync(path.join(m, "ln"))).toBe("a/b/small");
        expect(fs.readFileSync(path.join(m, "ln")).equals(small)).toBe(true);
        expect(fs.statSync(path.join(m, "hard")).nlink).toBe(2);
        expect(fs.statSync(path.join(m, "hard")).mode & 0o777).toBe(0o640);
        expect((sys.getxattr(path.join(m, "hard"), "user.origin") as Buffer).toString()).toBe(fx.name);
        const many = fs.readdirSync(path.join(m, "many")).sort();
        expect(many).toEqual(Array.from({ length: 99 }, (_, j) => `e${2 * j + 3}`).sort());
        expect(fs.statSync(path.join(m, "a", "moved")).size).toBe(0);
        const back = fs.readFileSync(fill);
        expect(back.length).toBe(written);
        for (let off = 0; off < written; off += 4096) expect(back.subarray(off, off + 4096).equals(chunk)).toBe(true);
        expect(fs.readdirSync(path.join(m, "x")).length).toBe(done.size);
        for (const i of removed) expect(fs.existsSync(path.join(m, "x", `f${i}`))).toBe(false);
        expect(sys.getxattr(path.join(m, "x", "f3"), "user.x0")).toBe(-61); // ENODATA
        for (const [i, n] of done) {
          const f = path.join(m, "x", `f${i}`);
          for (let k = i === 3 ? 1 : 0; k < n; k++) expect((sys.getxattr(f, `user.x${k}`) as Buffer).equals(xvalue(i, k))).toBe(true);
        }
      };
      check();

      // the final commit of the unmount must succeed; then everything is there after a mount
      await vol.unmount();
      expect(vol.log()).not.toMatch(/final commit failed|destroy failed/);
      vol.mount();
      check();
      await vol.unmount();
      expect(vol.log()).not.toMatch(/final commit failed|destroy failed/);

      // every metadata block is used or free exactly once; nothing stays mounted
      const acct = accountVolume({ metaPath: meta } as ClusterVolume);
      expect(acct.dup).toEqual([]);
      expect(acct.seen).toBe(acct.total);
      expect(acct.mounted).toBe(0);
      console.log(`${fx.name}: ${done.size} files with xattrs until ${metaErr}, ${written / 4096} data blocks, ${acct.freeMeta} metadata blocks free in meta_alloc, ${Math.round(performance.now() - t0)} ms`);
    }, 120_000);
  }
});
