// ENOSPC on the metadata device of a `scoutfs mount` node: files with large xattrs on a small
// metadata image until an operation fails with ENOSPC — promptly, never a hang. Everything that
// succeeded before is still there — after fsync, and after an unmount (whose final commit must
// succeed) and a remount — removals still work on the full device, and the room they free comes
// back (a merge applies the deletions and frees the merged trees; the mount asks again).
//
// Sizing: the server keeps a reserve scaled to the device (src/server/trans.ts metaReserveFor: on
// this 464 MiB device of 7424 blocks, a list of up to 928 blocks of its own and 1856 blocks of
// meta_alloc that mounts are never given) and gives the mount the rest: some 600 files with
// 240 KB of xattrs each, filled in about 6 s.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { tempDir } from "../helpers/images.ts";
import { sys } from "../fuse/helpers.ts";
import { NodeVolume } from "../fs/node-mount.ts";

const dir = tempDir("scoutfs-meta-full-");
let vol: NodeVolume;
const XATTRS_PER_FILE = 4;
const VALUE_BYTES = 60_000;
const MAX_FILES = 3000;

beforeAll(async () => {
  vol = await NodeVolume.mkfs(dir, { metaBytes: 464 << 20, dataBytes: 64 << 20 });
  vol.mount();
}, 30_000);

afterAll(async () => {
  await vol?.cleanup();
  fs.rmSync(dir, { recursive: true, force: true });
}, 30_000);

function value(i: number, k: number): Buffer {
  const v = Buffer.alloc(VALUE_BYTES, (i + k) & 0xff);
  v.writeUInt32LE(i, 0);
  v.writeUInt32LE(k, 4);
  return v;
}

describe("metadata device full", () => {
  test("ENOSPC, with every change made before it kept across fsync, unmount and remount", async () => {
    const m = vol.mnt;
    // what succeeded: file index -> number of its xattrs set
    const done = new Map<number, number>();
    let failure = 0;
    let failedOp = "";
    outer: for (let i = 0; i < MAX_FILES; i++) {
      const f = path.join(m, `f${i}`);
      try {
        fs.writeFileSync(f, `file ${i}`);
      } catch (e) {
        failedOp = `create f${i}: ${(e as NodeJS.ErrnoException).code}`;
        break;
      }
      done.set(i, 0);
      for (let k = 0; k < XATTRS_PER_FILE; k++) {
        const r = sys.setxattr(f, `user.x${k}`, value(i, k));
        if (r < 0) {
          failure = r;
          failedOp = `setxattr f${i} user.x${k}: ${r}`;
          break outer;
        }
        done.set(i, k + 1);
      }
    }
    expect(failedOp).not.toBe("");
    // -28: ENOSPC (create failures show the code name)
    expect(failure === -28 || failedOp.endsWith("ENOSPC")).toBe(true);
    expect(done.size).toBeGreaterThan(50);
    // the node is alive and still answers; fsync commits what succeeded
    const dfd = fs.openSync(m, "r");
    fs.fsyncSync(dfd);
    fs.closeSync(dfd);
    const check = () => {
      for (const [i, n] of done) {
        const f = path.join(m, `f${i}`);
        expect(fs.readFileSync(f, "utf8")).toBe(`file ${i}`);
        for (let k = 0; k < n; k++) expect((sys.getxattr(f, `user.x${k}`) as Buffer).equals(value(i, k))).toBe(true);
      }
    };
    check();

    // removals still work on the full device, from a last reserve of metadata blocks (room comes
    // back only later: the deletion items reach fs_root at the next log merge, which frees the
    // merged trees' blocks)
    const removed = [...done.keys()].slice(0, 20);
    for (const i of removed) {
      fs.unlinkSync(path.join(m, `f${i}`));
      done.delete(i);
    }
    const stripped = removed.length;
    expect(sys.removexattr(path.join(m, `f${stripped}`), "user.x0")).toBe(0);
    const strippedXattrs = done.get(stripped)!;
    done.delete(stripped);
    const d2 = fs.openSync(m, "r");
    fs.fsyncSync(d2);
    fs.closeSync(d2);
    check();

    // room comes back: remove 60 more files (some 240 blocks of xattrs), then a file with a large
    // xattr fits again (once a merge — started because the mount was refused room — has applied
    // the deletions and freed the merged trees; until then ENOSPC, at once)
    const tu = performance.now();
    const more = [...done.keys()].slice(0, 60);
    for (const i of more) {
      fs.unlinkSync(path.join(m, `f${i}`));
      done.delete(i);
      removed.push(i);
    }
    const t0 = performance.now();
    let back = -1;
    for (let n = 0; n < 60 && back < 0; n++) {
      const f = path.join(m, `again${n}`);
      try {
        fs.writeFileSync(f, "again");
      } catch (e) {
        expect((e as NodeJS.ErrnoException).code).toBe("ENOSPC");
        await Bun.sleep(500);
        continue;
      }
      const r = sys.setxattr(f, "user.x0", value(MAX_FILES + n, 0));
      if (r === 0) back = n;
      else {
        expect(r).toBe(-28);
        fs.unlinkSync(f);
        await Bun.sleep(500);
      }
    }
    expect(back).toBeGreaterThanOrEqual(0);
    console.log(`${removed.length} of ${removed.length + done.size + 1} files removed (${Math.round(t0 - tu)} ms for the last ${more.length}); room came back ${Math.round(performance.now() - t0)} ms later`);

    // the final commit of the unmount must succeed (the node exits 0 and logs no failure)
    await vol.unmount();
    expect(vol.log()).not.toMatch(/final commit failed|destroy failed/);
    vol.mount();
    for (const i of removed) expect(fs.existsSync(path.join(m, `f${i}`))).toBe(false);
    expect(sys.getxattr(path.join(m, `f${stripped}`), "user.x0")).toBe(-61); // ENODATA
    for (let k = 1; k < strippedXattrs; k++) expect((sys.getxattr(path.join(m, `f${stripped}`), `user.x${k}`) as Buffer).equals(value(stripped, k))).toBe(true);
    check();
    expect((sys.getxattr(path.join(m, `again${back}`), "user.x0") as Buffer).equals(value(MAX_FILES + back, 0))).toBe(true);
  }, 90_000);
});
