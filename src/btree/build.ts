/**
 * Build a whole btree block from a sorted list of items in one pass: the item array in key order,
 * values packed from the end of the free space (8-byte aligned), a perfectly balanced AVL tree
 * over the array, and (for leaves) the item offset hash table. Used by mkfs and by bulk writers
 * that produce fresh blocks; the incremental COW btree edits blocks in place instead.
 */
import { assert } from "../util/assert.ts";
import { ScoutfsError } from "../util/errors.ts";
import { view } from "../format/struct.ts";
import { KeyStruct, keyCompare, type Key } from "../format/key.ts";
import {
  AVL_ROOT_OFF,
  BTREE_ITEMS_OFF,
  BTREE_LEAF_ITEM_HASH_BYTES,
  BTREE_LEAF_ITEM_HASH_NR,
  BTREE_LEAF_ITEM_HASH_OFF,
  BtreeBlock,
  BtreeItem,
} from "../format/btree.ts";
import { BLOCK_LG_SIZE, BTREE_MAX_VAL_LEN, BTREE_VALUE_ALIGN } from "../format/constants.ts";
import { fnv1a32 } from "../format/hash.ts";

export interface BuildItem {
  key: Key;
  seq: bigint;
  flags: number;
  /** Leaf values; parent items carry an encoded block ref (16 bytes). */
  val: Uint8Array | null;
}

export function valBytes(len: number): number {
  return (len + BTREE_VALUE_ALIGN - 1) & ~(BTREE_VALUE_ALIGN - 1);
}

/** Free bytes in an empty block of this level. */
export function emptyBlockFree(level: number): number {
  return BLOCK_LG_SIZE - BtreeBlock.size - (level === 0 ? BTREE_LEAF_ITEM_HASH_BYTES : 0);
}

/** Bytes the items would use in a block: headers plus aligned values. */
export function itemsBytes(items: readonly BuildItem[]): number {
  let n = 0;
  for (const it of items) n += BtreeItem.size + valBytes(it.val?.length ?? 0);
  return n;
}

/** Hash table bucket a key starts probing from. */
export function leafHashIndex(block: Uint8Array, keyOff: number): number {
  return fnv1a32(block, keyOff, keyOff + KeyStruct.size) % BTREE_LEAF_ITEM_HASH_NR;
}

/** Lay out a block (header fields other than the block header are filled; the caller seals it). */
export function buildBtreeBlock(level: number, items: readonly BuildItem[]): Uint8Array {
  for (let i = 1; i < items.length; i++) {
    assert(keyCompare(items[i - 1]!.key, items[i]!.key) < 0, "build items must be sorted and unique");
  }
  const used = itemsBytes(items);
  const free = emptyBlockFree(level);
  if (used > free) throw new ScoutfsError("ENOSPC", `${items.length} items need ${used} bytes, a level ${level} block holds ${free}`);

  const buf = new Uint8Array(BLOCK_LG_SIZE);
  const dv = view(buf);
  let valEnd = level === 0 ? BTREE_LEAF_ITEM_HASH_OFF : BLOCK_LG_SIZE;
  let totalBytes = 0;

  items.forEach((it, i) => {
    const off = BTREE_ITEMS_OFF + i * BtreeItem.size;
    const len = it.val?.length ?? 0;
    if (len > BTREE_MAX_VAL_LEN && level === 0) throw new ScoutfsError("EINVAL", `item value of ${len} bytes exceeds the ${BTREE_MAX_VAL_LEN} byte maximum`);
    let valOff = 0;
    if (len > 0) {
      valEnd -= valBytes(len);
      valOff = valEnd;
      buf.set(it.val!, valOff);
    }
    KeyStruct.set(dv, off + BtreeItem.off.key, it.key);
    dv.setBigUint64(off + BtreeItem.off.seq, it.seq, true);
    dv.setUint16(off + BtreeItem.off.val_off, valOff, true);
    dv.setUint16(off + BtreeItem.off.val_len, len, true);
    dv.setUint8(off + BtreeItem.off.flags, it.flags);
    totalBytes += BtreeItem.size + valBytes(len);
  });

  // Balanced AVL over the sorted array; links are offsets from the avl root field.
  const nodeOff = (i: number) => BTREE_ITEMS_OFF + i * BtreeItem.size - AVL_ROOT_OFF;
  const link = (lo: number, hi: number, parent: number): { root: number; height: number } => {
    if (lo > hi) return { root: 0, height: 0 };
    const mid = (lo + hi) >> 1;
    const me = nodeOff(mid);
    const l = link(lo, mid - 1, me);
    const r = link(mid + 1, hi, me);
    const at = BTREE_ITEMS_OFF + mid * BtreeItem.size;
    dv.setUint16(at + 0, parent, true);
    dv.setUint16(at + 2, l.root, true);
    dv.setUint16(at + 4, r.root, true);
    const height = 1 + Math.max(l.height, r.height);
    dv.setUint8(at + 6, height);
    return { root: me, height };
  };
  const tree = link(0, items.length - 1, 0);

  dv.setUint16(BtreeBlock.off.item_root, tree.root, true);
  dv.setUint16(BtreeBlock.off.nr_items, items.length, true);
  dv.setUint16(BtreeBlock.off.total_item_bytes, totalBytes, true);
  dv.setUint16(BtreeBlock.off.mid_free_len, free - totalBytes, true);
  dv.setUint8(BtreeBlock.off.level, level);

  if (level === 0) {
    for (let i = 0; i < items.length; i++) {
      const off = BTREE_ITEMS_OFF + i * BtreeItem.size;
      let b = leafHashIndex(buf, off + BtreeItem.off.key);
      for (let n = 0; n < BTREE_LEAF_ITEM_HASH_NR; n++) {
        const at = BTREE_LEAF_ITEM_HASH_OFF + b * 2;
        if (dv.getUint16(at, true) === 0) {
          dv.setUint16(at, off, true);
          break;
        }
        b = b + 1 === BTREE_LEAF_ITEM_HASH_NR ? 0 : b + 1;
      }
    }
  }
  return buf;
}
