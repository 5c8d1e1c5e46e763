/**
 * The interop tree (see interop.ts): a 250k-item fs_root of height 3 written by the engine into a
 * volume made by our mkfs passes our strict invariant check from the device bytes, reads back
 * through a cold cache, and our `print` walks it. (By hand, `scoutfs-real print META` printed the
 * same volume without complaint and byte-identically to ours; tests do not depend on it.)
 */
import { expect, test } from "bun:test";
import * as path from "node:path";
import * as fs from "node:fs";
import { mkfs, parseQuorumSlot } from "../../src/offline/mkfs.ts";
import { Device } from "../../src/block/device.ts";
import { MetaCache } from "../../src/block/cache.ts";
import { SuperBlock } from "../../src/format/super.ts";
import * as C from "../../src/format/constants.ts";
import { keyPack, makeKey } from "../../src/format/key.ts";
import * as B from "../../src/btree/cow.ts";
import { btreeCheck } from "../../src/btree/check.ts";
import { runCli, sparseFile, tempDir } from "../helpers/images.ts";
import { writeBigFsRoot } from "./interop.ts";

test("a 250k-item fs_root of height 3 in an mkfs volume passes the checker and print", () => {
  const dir = tempDir("scoutfs-btree-interop-");
  try {
    const meta = sparseFile(path.join(dir, "META"), 1 << 30);
    const data = sparseFile(path.join(dir, "DATA"), 4 * (1 << 30));
    mkfs({ metaPath: meta, dataPath: data, slots: [parseQuorumSlot("0,127.0.0.1,42000")], allowSmallSize: true, force: true }, { out: () => {}, warn: () => {} });
    const r = writeBigFsRoot(meta, 250_000);
    expect(r.height).toBe(3);

    const dev = Device.open(meta);
    try {
      const sup = SuperBlock.decode(dev.read(C.SUPER_BLKNO, C.BLOCK_SM_SHIFT));
      const root = B.rootFromStruct(sup.fs_root);
      const res = btreeCheck(dev, sup.hdr.fsid, root);
      expect(res.items.length).toBe(250_002);
      expect(res.blocksPerLevel.length).toBe(3);
      const cache = new MetaCache(dev, sup.hdr.fsid);
      const it = B.btreeLookup(cache, root, keyPack(makeKey(C.FS_ZONE, 1000n + 12345n, C.INODE_TYPE)));
      expect(it).not.toBeNull();
      expect(B.btreeCount(cache, root)).toBe(250_002);
    } finally {
      dev.close();
    }
    const out = runCli(["print", meta]);
    expect(out.code).toBe(0);
    expect(out.stderr).toBe("");
    expect(out.stdout.split("\n").filter((l) => l.startsWith("fs_root btree blkno")).length).toBe(r.blocks);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
