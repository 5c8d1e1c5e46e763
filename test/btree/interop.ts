/**
 * Interop fixture: replace the fs_root of a volume made by our mkfs with a big tree built by the
 * COW engine (inode items for inos 1000.., in shuffled order, values cloned from the root inode),
 * committed in one transaction and referenced from a re-sealed super block. The real
 * `scoutfs print` must read it without complaint and print exactly what ours prints.
 *
 *   bun test/btree/interop.ts META DATA [ITEMS]    # writes the tree into an existing volume
 *
 * Allocator bookkeeping is ignored: the tree's blocks come from the free metadata extents
 * without the allocator btrees being updated, which print does not look at.
 */
import { Device, sealBlock } from "../../src/block/device.ts";
import { MetaCache } from "../../src/block/cache.ts";
import { SuperBlock } from "../../src/format/super.ts";
import { Inode } from "../../src/format/items.ts";
import { readItems } from "../../src/btree/read.ts";
import { keyPack, makeKey } from "../../src/format/key.ts";
import * as C from "../../src/format/constants.ts";
import * as B from "../../src/btree/cow.ts";
import { prng, TestAlloc } from "./helpers.ts";

/** Blknos from here on are free in any volume our mkfs makes (it uses 2..1030). */
const FIRST_TREE_BLKNO = 2048n;

export function writeBigFsRoot(metaPath: string, items: number): { height: number; blocks: number; fsid: bigint; root: B.BtreeRootRef } {
  const dev = Device.open(metaPath, { write: true });
  try {
    const superBuf = dev.read(C.SUPER_BLKNO, C.BLOCK_SM_SHIFT);
    const sup = SuperBlock.decode(superBuf);
    const fsid = sup.hdr.fsid;
    const end = sup.total_meta_blocks;
    const cache = new MetaCache(dev, fsid);
    const alloc = new TestAlloc(FIRST_TREE_BLKNO, end);
    const w = { cache, alloc };
    const root = B.emptyRoot();

    // keep mkfs's items (meta_seq index item, root inode) and add many more inodes like the root
    const old = readItems(dev.read(sup.fs_root.ref.blkno, C.BLOCK_LG_SHIFT), sup.fs_root.ref.blkno);
    for (const it of old) B.btreeInsert(w, root, keyPack(it.key), it.seq, it.flags, it.val);
    const rootInode = old.find((it) => it.key.zone === C.FS_ZONE && it.key.type === C.INODE_TYPE)!.val;
    const order = Array.from({ length: items }, (_, i) => i);
    const rnd = prng(3);
    for (let i = items - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    const val = rootInode.slice();
    const dv = new DataView(val.buffer);
    for (const i of order) {
      const ino = 1000n + BigInt(i);
      dv.setBigUint64(Inode.off.size, BigInt(i) * 4096n, true);
      dv.setUint32(Inode.off.nlink, 1, true);
      B.btreeInsert(w, root, keyPack(makeKey(C.FS_ZONE, ino, C.INODE_TYPE)), 1n, 0, val);
    }
    const blocks = cache.dirtyCount;
    cache.commit(() => {
      sup.fs_root = B.rootToStruct(root);
      const buf = new Uint8Array(C.BLOCK_SM_SIZE);
      SuperBlock.encode(sup, buf);
      sealBlock(buf, C.BLOCK_MAGIC_SUPER, fsid, sup.hdr.seq, BigInt(C.SUPER_BLKNO));
      dev.write(C.SUPER_BLKNO, C.BLOCK_SM_SHIFT, buf);
    });
    return { height: root.height, blocks, fsid, root };
  } finally {
    dev.close();
  }
}

if (import.meta.main) {
  const [meta, , n] = process.argv.slice(2);
  if (!meta) throw new Error("usage: bun test/btree/interop.ts META DATA [ITEMS]");
  const r = writeBigFsRoot(meta, Number(n ?? 250_000));
  console.log(`fs_root: height ${r.height}, ${r.blocks} blocks, root blkno ${r.root.ref.blkno}`);
}
