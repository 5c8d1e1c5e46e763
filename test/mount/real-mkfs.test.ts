// A volume made by the REAL scoutfs mkfs (test/fixtures/real-mkfs/v2-mount: 1 GiB metadata,
// 64 MiB data, quorum slot 0 on 127.0.0.1:42000 as its mkfs wrote it) mounted with `scoutfs mount`:
// it serves files, keeps them across a remount, and filling its data device gives ENOSPC with
// nothing already written lost (also after a remount), and space comes back after unlink.
//
// The small real-mkfs fixtures (64-80 MiB metadata devices) are mounted by real-mkfs-small.test.ts.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { fixtureImage, tempDir } from "../helpers/images.ts";
import { sys } from "../fuse/helpers.ts";
import { NodeVolume } from "../fs/node-mount.ts";

const META_BYTES = 1 << 30;
const DATA_BYTES = 64 << 20;
const DATA_BLOCKS_FREE = 16320; // the real print's data_alloc total_len

const dir = tempDir("scoutfs-real-mkfs-");
let vol: NodeVolume;

beforeAll(() => {
  const meta = fixtureImage("v2-mount", "meta", dir, META_BYTES);
  const data = fixtureImage("v2-mount", "data", dir, DATA_BYTES);
  vol = NodeVolume.of(dir, meta, data);
});

afterAll(async () => {
  await vol?.cleanup();
  fs.rmSync(dir, { recursive: true, force: true });
}, 30_000);

function syncDir(d: string): void {
  const fd = fs.openSync(d, "r");
  fs.fsyncSync(fd);
  fs.closeSync(fd);
}

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 131 + seed + (i >> 12)) & 0xff;
  return b;
}

describe("a volume made by the real mkfs", () => {
  test("mounts, serves files, and keeps them across a remount", async () => {
    vol.mount();
    const m = vol.mnt;
    const st = fs.statfsSync(m);
    expect(st.bsize).toBe(4096);
    expect(st.blocks).toBe(DATA_BLOCKS_FREE);
    expect(st.bfree).toBe(DATA_BLOCKS_FREE);
    expect(fs.readdirSync(m)).toEqual([]);
    expect(fs.statSync(m).ino).toBe(1);

    fs.mkdirSync(path.join(m, "a/b"), { recursive: true });
    const big = pattern(3 << 20, 1);
    fs.writeFileSync(path.join(m, "a/b/big"), big);
    fs.writeFileSync(path.join(m, "small"), "hello from a real-mkfs volume\n");
    fs.symlinkSync("a/b/big", path.join(m, "ln"));
    fs.linkSync(path.join(m, "small"), path.join(m, "a/hard"));
    expect(sys.setxattr(path.join(m, "small"), "user.origin", Buffer.from("real mkfs"))).toBe(0);
    fs.chmodSync(path.join(m, "small"), 0o640);
    // statfs counts what the server has committed: allocations show after the next commit
    syncDir(m);
    expect(fs.statfsSync(m).bfree).toBe(DATA_BLOCKS_FREE - 768 - 1);

    await vol.unmount();
    vol.mount();
    expect(fs.readFileSync(path.join(m, "a/b/big")).equals(big)).toBe(true);
    expect(fs.readFileSync(path.join(m, "a/hard"), "utf8")).toBe("hello from a real-mkfs volume\n");
    expect(fs.statSync(path.join(m, "small")).nlink).toBe(2);
    expect(fs.statSync(path.join(m, "small")).mode & 0o777).toBe(0o640);
    expect(fs.readlinkSync(path.join(m, "ln"))).toBe("a/b/big");
    expect((sys.getxattr(path.join(m, "small"), "user.origin") as Buffer).toString()).toBe("real mkfs");
    expect(fs.readdirSync(m).sort()).toEqual(["a", "ln", "small"]);
  }, 60_000);

  test("filling the data device gives ENOSPC; nothing written is lost; unlink gives the space back", async () => {
    if (vol.nodePids().length === 0) vol.mount();
    const m = vol.mnt;
    const keep = pattern(8 << 20, 2);
    const kfd = fs.openSync(path.join(m, "keep"), "w");
    fs.writeSync(kfd, keep);
    fs.fsyncSync(kfd);
    fs.closeSync(kfd);

    // fill with 1 MiB writes until the device is full
    const fill = path.join(m, "fill");
    const fd = fs.openSync(fill, "w");
    let written = 0;
    let code: string | undefined;
    const chunk = pattern(1 << 20, 3);
    for (let i = 0; i < 100 && code === undefined; i++) {
      try {
        written += fs.writeSync(fd, chunk, 0, chunk.length, written);
      } catch (e) {
        code = (e as NodeJS.ErrnoException).code;
      }
    }
    expect(code).toBe("ENOSPC");
    // every data block but less than one write's worth is in use
    expect(written).toBeGreaterThan((DATA_BLOCKS_FREE - 768 - 1 - 2048 - 256) * 4096);
    syncDir(m);
    expect(fs.statfsSync(m).bfree).toBeLessThan(256);
    // small files still fail cleanly, metadata-only changes still work
    expect(() => fs.writeFileSync(path.join(m, "more"), Buffer.alloc(1 << 20, 1))).toThrow(/ENOSPC/);
    fs.mkdirSync(path.join(m, "still-works"));
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    expect(fs.statSync(fill).size).toBe(written);

    await vol.unmount();
    vol.mount();
    expect(fs.readFileSync(path.join(m, "keep")).equals(keep)).toBe(true);
    const back = fs.readFileSync(fill);
    expect(back.length).toBe(written);
    for (let off = 0; off < written; off += 1 << 20) expect(back.subarray(off, off + (1 << 20)).equals(chunk)).toBe(true);
    expect(fs.readFileSync(path.join(m, "a/b/big")).equals(pattern(3 << 20, 1))).toBe(true);
    expect(fs.statSync(path.join(m, "still-works")).isDirectory()).toBe(true);

    // freed blocks come back (after the commit that frees them) and can be written again
    fs.unlinkSync(fill);
    syncDir(m);
    expect(fs.statfsSync(m).bfree).toBeGreaterThan(written / 4096);
    fs.writeFileSync(path.join(m, "again"), pattern(16 << 20, 4));
    expect(fs.readFileSync(path.join(m, "again")).equals(pattern(16 << 20, 4))).toBe(true);
    await vol.unmount();
  }, 90_000);
});
