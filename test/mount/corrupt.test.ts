// A corrupted metadata block on an unmounted volume: a btree leaf holding the inode items of some
// files is overwritten with garbage, then the volume is mounted with `scoutfs mount`. Those files
// answer EIO; every other file, directory listings and new writes keep working, and the node does
// not crash (it is still running and unmounts cleanly).
//
// The leaf is found by walking the volume's item btrees (fs_root and every log tree in logs_root:
// a one-mount volume keeps its items in its finalized log tree until a merge) block by block with
// src/btree/read.ts's untrusting block reader.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { tempDir } from "../helpers/images.ts";
import { NodeVolume } from "../fs/node-mount.ts";
import { sys } from "../fuse/helpers.ts";
import { Device } from "../../src/block/device.ts";
import { readSuper } from "../../src/block/super.ts";
import { blockInfo, readItems, type ItemView } from "../../src/btree/read.ts";
import { LogTrees } from "../../src/format/log_trees.ts";
import * as C from "../../src/format/constants.ts";

const dir = tempDir("scoutfs-corrupt-");
let vol: NodeVolume;
const FILES = 400;

beforeAll(async () => {
  vol = await NodeVolume.mkfs(dir, { metaBytes: 1 << 30, dataBytes: 1 << 30 });
  vol.mount();
}, 30_000);

afterAll(async () => {
  await vol?.cleanup();
  fs.rmSync(dir, { recursive: true, force: true });
}, 30_000);

/** Leaf blocks of every item btree of the volume, with the inode numbers whose INODE item each holds. */
function inodeLeaves(meta: string): { blkno: bigint; inos: bigint[]; firsts: Set<bigint> }[] {
  const dev = Device.open(meta);
  try {
    const sup = readSuper(dev, { meta: true });
    const out: { blkno: bigint; inos: bigint[]; firsts: Set<bigint> }[] = [];
    // raw blocks, parsed by the untrusting reader (src/btree/read.ts)
    const walk = (blkno: bigint, visit: (items: ItemView[], blkno: bigint) => void): void => {
      if (blkno === 0n) return;
      const buf = dev.read(blkno, C.BLOCK_LG_SHIFT);
      const items = readItems(buf, blkno);
      if (blockInfo(buf, blkno).level === 0) return visit(items, blkno);
      for (const it of items) walk(new DataView(it.val.buffer, it.val.byteOffset).getBigUint64(0, true), visit);
    };
    const roots: bigint[] = [sup.fs_root.ref.blkno];
    walk(sup.logs_root.ref.blkno, (items) => {
      for (const it of items) roots.push(LogTrees.decode(it.val).item_root.ref.blkno);
    });
    for (const root of roots) {
      walk(root, (items, blkno) => {
        const inos: bigint[] = [];
        const firsts = new Set<bigint>();
        for (const it of items) {
          if (it.key.zone === C.FS_ZONE) firsts.add(it.key.first);
          if (it.key.zone === C.FS_ZONE && it.key.type === C.INODE_TYPE) inos.push(it.key.first);
        }
        out.push({ blkno, inos, firsts });
      });
    }
    return out;
  } finally {
    dev.close();
  }
}

describe("a corrupted metadata block", () => {
  test("gives EIO on the files whose items it held; the rest works and the node keeps running", async () => {
    const m = vol.mnt;
    fs.mkdirSync(path.join(m, "victims"));
    fs.mkdirSync(path.join(m, "others"));
    for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(m, "others", `o${i}`), `other ${i}`);
    // xattrs make each inode's items large, so the files spread over many leaves
    for (let i = 0; i < FILES; i++) {
      const f = path.join(m, "victims", `v${i}`);
      fs.writeFileSync(f, `victim ${i}`);
      expect(sys.setxattr(f, "user.pad", Buffer.alloc(1500, i & 0xff))).toBe(0);
    }
    const inoOf = new Map<bigint, string>();
    for (const n of fs.readdirSync(path.join(m, "victims"))) inoOf.set(BigInt(fs.statSync(path.join(m, "victims", n)).ino), n);
    const protectedInos = new Set<bigint>([1n, BigInt(fs.statSync(path.join(m, "victims")).ino), BigInt(fs.statSync(path.join(m, "others")).ino)]);
    for (const n of fs.readdirSync(path.join(m, "others"))) protectedInos.add(BigInt(fs.statSync(path.join(m, "others", n)).ino));
    await vol.unmount();

    // a leaf that holds only victim files' items, several of their inode items among them
    const leaves = inodeLeaves(vol.meta);
    expect(leaves.length).toBeGreaterThan(3);
    const pick = leaves.find((l) => l.inos.length >= 3 && [...l.firsts].every((f) => inoOf.has(f) && !protectedInos.has(f)));
    expect(pick).toBeDefined();
    const bad = pick!.inos.map((ino) => inoOf.get(ino)!);
    const dev = Device.open(vol.meta, { write: true });
    const junk = Buffer.alloc(C.BLOCK_LG_SIZE);
    for (let i = 0; i < junk.length; i++) junk[i] = (i * 37 + 11) & 0xff;
    dev.writeAt(junk, Number(pick!.blkno) * C.BLOCK_LG_SIZE);
    dev.sync();
    dev.close();

    vol.mount();
    const pid = vol.nodePids()[0]!;
    for (const n of bad) {
      let code: string | undefined;
      try {
        fs.statSync(path.join(m, "victims", n));
      } catch (e) {
        code = (e as NodeJS.ErrnoException).code;
      }
      expect(code).toBe("EIO");
    }
    // every victim outside the bad leaf, the other directory and new files work
    let good = 0;
    for (const [ino, n] of inoOf) {
      if (pick!.firsts.has(ino)) continue;
      expect(fs.readFileSync(path.join(m, "victims", n), "utf8")).toBe(`victim ${n.slice(1)}`);
      good++;
    }
    expect(good).toBeGreaterThan(FILES / 2);
    expect(fs.readdirSync(path.join(m, "victims")).length).toBe(FILES);
    for (let i = 0; i < 20; i++) expect(fs.readFileSync(path.join(m, "others", `o${i}`), "utf8")).toBe(`other ${i}`);
    fs.writeFileSync(path.join(m, "others", "new"), "written after the corruption");
    expect(fs.readFileSync(path.join(m, "others", "new"), "utf8")).toBe("written after the corruption");
    // the same node still serves, and unmounts cleanly
    expect(vol.nodePids()).toEqual([pid]);
    await vol.unmount();
  }, 60_000);
});
