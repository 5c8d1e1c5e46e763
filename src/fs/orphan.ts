/**
 * Orphans: inodes with no names left that must be deleted once nothing uses them.
 *
 * Dropping an inode's last link (unlink, rmdir, rename over it) or creating an O_TMPFILE
 * creates an orphan item (zone ORPHAN, key ino) in the same transaction. While the kernel still
 * references the inode (lookup count or open files) it stays whole and usable; when the last
 * reference goes, `inodeDelete` removes every item of the inode and frees its data blocks, with
 * the orphan item going last, together with the inode item. The deletion may take several
 * transactions (a file can have more extents than one transaction should hold); if the node
 * dies part way, the orphan item still names the inode and `orphanScan` finishes the job on the
 * next mount. Linking an O_TMPFILE inode into the namespace removes its orphan item.
 *
 * In a cluster another mount may still have the inode open; scoutfs asks the open-inode map
 * (omap) before deleting. That check belongs to the cluster layers; here the caller decides.
 */
import type { ItemReader, ItemStore } from "../item/types.ts";
import { dataFreeBlocks } from "./data.ts";
import { EMPTY, type FsInode, inodeDeleteItems, inodeEncode, inodeLoad, isLnk, isReg } from "./inode.ts";
import { ORPHAN_FIRST, ORPHAN_LAST, inodeKey, orphanKey, orphanKeyIno } from "./keys.ts";
import { symlinkDrop } from "./symlink.ts";
import { type Tx, fsTransact } from "./trans.ts";
import { xattrDropAll } from "./xattr.ts";

/** Extents freed (and xattr items deleted) per transaction while deleting an inode. */
export const DELETE_ITEMS_PER_TRANS = 1024;

export function orphanCreate(tx: Tx, ino: bigint): void {
  tx.w.create(orphanKey(ino), EMPTY);
}

export function orphanDelete(tx: Tx, ino: bigint): void {
  tx.w.delete(orphanKey(ino));
}

export function orphanExists(r: ItemReader, ino: bigint): boolean {
  return r.lookup(orphanKey(ino)) !== null;
}

/** Inode numbers of all orphan items. */
export function orphanList(r: ItemReader): bigint[] {
  const out: bigint[] = [];
  let key = ORPHAN_FIRST;
  for (;;) {
    const it = r.next(key, ORPHAN_LAST);
    if (it === null) return out;
    const ino = orphanKeyIno(it.key);
    out.push(ino);
    key = orphanKey(ino + 1n);
  }
}

/**
 * Delete an unlinked inode and everything it owns: data extents (blocks freed), xattrs,
 * symlink parts, index items, the inode item and its orphan item. Idempotent: a missing inode
 * (already deleted) only loses its orphan item, if any.
 */
export function inodeDelete(store: ItemStore, ino: bigint): void {
  // Data and xattrs in bounded transactions; the inode stays (and stays an orphan) until the
  // last one, which also removes the inode and its orphan item — a small file (the common case)
  // goes in one transaction.
  for (;;) {
    const done = fsTransact(store, (tx) => {
      const inode = inodeLoad(tx.w, ino, tx.fmtVers);
      if (inode !== null) {
        if (isReg(inode.v.mode)) {
          const freed = dataFreeBlocks(tx, inode, 0n, 0xfffffffffffffn, DELETE_ITEMS_PER_TRANS);
          if (!freed) {
            // Keep the inode item's block counts true to its extents between the batches.
            saveCounts(tx, inode);
            return false;
          }
        }
        if (!xattrDropAll(tx, ino, DELETE_ITEMS_PER_TRANS)) {
          if (isReg(inode.v.mode)) saveCounts(tx, inode);
          return false;
        }
        if (isLnk(inode.v.mode)) symlinkDrop(tx, ino, inode.v.size);
        inodeDeleteItems(tx, inode);
      }
      if (orphanExists(tx.w, ino)) orphanDelete(tx, ino);
      return true;
    });
    if (done) break;
  }
}

/** Write the block counts without moving seqs: a dying inode is not a change to index. */
function saveCounts(tx: Tx, inode: FsInode): void {
  tx.w.update(inodeKey(inode.ino), inodeEncode(inode.v, tx.fmtVers));
}

/** Delete every orphaned inode that `inUse` does not claim; returns the inode numbers deleted. */
export function orphanScan(store: ItemStore, inUse: (ino: bigint) => boolean): bigint[] {
  const deleted: bigint[] = [];
  for (const ino of orphanList(store.reader)) {
    if (inUse(ino)) continue;
    inodeDelete(store, ino);
    deleted.push(ino);
  }
  return deleted;
}
