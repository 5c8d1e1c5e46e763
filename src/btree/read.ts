/**
 * Reading btree blocks without trusting them: walk the in-block AVL tree in key order with every
 * link checked (inside the item array, on an item boundary, parent links consistent, no more
 * steps than items), and every value checked to lie inside the block. A block that fails any
 * check is reported as EIO with the reason; it never sends a reader out of bounds or into a loop.
 */
import { ScoutfsError } from "../util/errors.ts";
import { view } from "../format/struct.ts";
import { KeyStruct, type Key } from "../format/key.ts";
import { AVL_ROOT_OFF, BTREE_ITEMS_OFF, BtreeBlock, BtreeItem, BTREE_LEAF_ITEM_HASH_OFF } from "../format/btree.ts";
import { BLOCK_LG_SIZE, BTREE_MAX_HEIGHT } from "../format/constants.ts";

export interface BlockInfo {
  level: number;
  nrItems: number;
  totalItemBytes: number;
  midFreeLen: number;
  itemRoot: number;
}

export interface ItemView {
  /** Position in key order within the block. */
  index: number;
  /** Byte offset of the item header in the block. */
  off: number;
  parent: number;
  left: number;
  right: number;
  height: number;
  key: Key;
  seq: bigint;
  valOff: number;
  valLen: number;
  flags: number;
  val: Uint8Array;
}

export const MAX_ITEMS_PER_BLOCK = Math.floor((BLOCK_LG_SIZE - BtreeBlock.size) / BtreeItem.size);

export function corrupt(blkno: bigint | number | undefined, why: string): ScoutfsError {
  const where = blkno === undefined ? "btree block" : `btree block ${blkno}`;
  return new ScoutfsError("EIO", `${where} is corrupt: ${why}`);
}

export function blockInfo(buf: Uint8Array, blkno?: bigint): BlockInfo {
  if (buf.length !== BLOCK_LG_SIZE) throw corrupt(blkno, `size ${buf.length}`);
  const dv = view(buf);
  const info = {
    level: dv.getUint8(BtreeBlock.off.level),
    nrItems: dv.getUint16(BtreeBlock.off.nr_items, true),
    totalItemBytes: dv.getUint16(BtreeBlock.off.total_item_bytes, true),
    midFreeLen: dv.getUint16(BtreeBlock.off.mid_free_len, true),
    itemRoot: dv.getUint16(BtreeBlock.off.item_root, true),
  };
  if (info.level >= BTREE_MAX_HEIGHT) throw corrupt(blkno, `level ${info.level}`);
  if (info.nrItems > MAX_ITEMS_PER_BLOCK) throw corrupt(blkno, `nr_items ${info.nrItems}`);
  return info;
}

/** Item header offset for an AVL link, or an error if the link is not an item in the array. */
function linkToItem(link: number, nrItems: number, blkno: bigint | undefined): number {
  const off = link + AVL_ROOT_OFF;
  const rel = off - BTREE_ITEMS_OFF;
  if (rel < 0 || rel % BtreeItem.size !== 0 || rel / BtreeItem.size >= nrItems) {
    throw corrupt(blkno, `avl link ${link} is not an item`);
  }
  return off;
}

/**
 * Byte offsets of a block's item headers in key order: an AVL in-order walk with every link
 * checked (inside the item array, on an item boundary, parent links consistent, bounded steps).
 * The engine's decoder uses this directly; `readItems` adds the decoded fields.
 */
export function itemOffsetsInOrder(buf: Uint8Array, info: BlockInfo, blkno?: bigint): number[] {
  const dv = view(buf);
  const out: number[] = [];
  if (info.itemRoot === 0) {
    if (info.nrItems !== 0) throw corrupt(blkno, `no avl root with ${info.nrItems} items`);
    return out;
  }
  const nr = info.nrItems;
  let node = linkToItem(info.itemRoot, nr, blkno);
  if (dv.getUint16(node, true) !== 0) throw corrupt(blkno, "avl root has a parent");
  let steps = 0;
  for (let l = dv.getUint16(node + 2, true); l; l = dv.getUint16(node + 2, true)) {
    const child = linkToItem(l, nr, blkno);
    if (dv.getUint16(child, true) !== node - AVL_ROOT_OFF) throw corrupt(blkno, "avl parent link does not match");
    node = child;
    if (++steps > nr) throw corrupt(blkno, "avl tree has a cycle");
  }
  for (;;) {
    if (out.length >= nr) throw corrupt(blkno, "avl tree has more nodes than nr_items");
    out.push(node);
    // in-order successor through the right subtree or up the parent links
    const r = dv.getUint16(node + 4, true);
    if (r) {
      let next = linkToItem(r, nr, blkno);
      if (dv.getUint16(next, true) !== node - AVL_ROOT_OFF) throw corrupt(blkno, "avl parent link does not match");
      let s = 0;
      for (let l = dv.getUint16(next + 2, true); l; l = dv.getUint16(next + 2, true)) {
        const child = linkToItem(l, nr, blkno);
        if (dv.getUint16(child, true) !== next - AVL_ROOT_OFF) throw corrupt(blkno, "avl parent link does not match");
        next = child;
        if (++s > nr) throw corrupt(blkno, "avl tree has a cycle");
      }
      node = next;
    } else {
      let cur = node;
      let s = 0;
      for (;;) {
        const p = dv.getUint16(cur, true);
        if (!p) return finish(out, info, blkno);
        const pOff = linkToItem(p, nr, blkno);
        const link = cur - AVL_ROOT_OFF;
        if (dv.getUint16(pOff + 2, true) === link) {
          node = pOff;
          break;
        }
        if (dv.getUint16(pOff + 4, true) !== link) throw corrupt(blkno, "avl parent link does not match");
        cur = pOff;
        if (++s > nr) throw corrupt(blkno, "avl parent links have a cycle");
      }
    }
  }
}

/** All items of a block in key order (AVL in-order walk with bounds checks). */
export function readItems(buf: Uint8Array, blkno?: bigint): ItemView[] {
  const info = blockInfo(buf, blkno);
  const dv = view(buf);
  const valEnd = info.level === 0 ? BTREE_LEAF_ITEM_HASH_OFF : BLOCK_LG_SIZE;
  return itemOffsetsInOrder(buf, info, blkno).map((node, index) => {
    const valOff = dv.getUint16(node + BtreeItem.off.val_off, true);
    const valLen = dv.getUint16(node + BtreeItem.off.val_len, true);
    if (valLen > 0 && (valOff < BTREE_ITEMS_OFF || valOff + valLen > valEnd)) {
      throw corrupt(blkno, `item value ${valOff}+${valLen} outside the block`);
    }
    return {
      index,
      off: node,
      parent: dv.getUint16(node, true),
      left: dv.getUint16(node + 2, true),
      right: dv.getUint16(node + 4, true),
      height: dv.getUint8(node + 6),
      key: KeyStruct.get(dv, node + BtreeItem.off.key),
      seq: dv.getBigUint64(node + BtreeItem.off.seq, true),
      valOff,
      valLen,
      flags: dv.getUint8(node + BtreeItem.off.flags),
      val: buf.subarray(valOff, valOff + valLen),
    };
  });
}

function finish<T>(items: T[], info: BlockInfo, blkno: bigint | undefined): T[] {
  if (items.length !== info.nrItems) throw corrupt(blkno, `avl tree reaches ${items.length} of ${info.nrItems} items`);
  return items;
}
