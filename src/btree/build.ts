/**
 * Lay out a whole btree block from sorted items in one pass: the item array in key order, values
 * packed downward from the leaf hash table (or the block end for parents), 8-byte aligned, a
 * perfectly balanced AVL tree over the array, and (for leaves) the item offset hash table.
 *
 * Two entry points share one layout: `encodeBtreeItems` is the hot path of the COW engine's
 * codec (packed keys, writes into the cache's zeroed buffer, no per-item allocation), and
 * `buildBtreeBlock` is the convenience form for mkfs and tests (unpacked keys, new buffer).
 * The layout is deterministic, so the same items always give the same bytes.
 */
import { assert } from "../util/assert.ts";
import { ScoutfsError } from "../util/errors.ts";
import { view } from "../format/struct.ts";
import { KeyStruct, keyCompare, keyPack, packedToRaw, type Key, type PackedKey } from "../format/key.ts";
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

/** An item as the engine holds it: packed key, value always present (maybe empty). */
export interface EncodeItem {
  readonly key: PackedKey;
  readonly seq: bigint;
  readonly flags: number;
  readonly val: Uint8Array;
}

export function valBytes(len: number): number {
  return (len + BTREE_VALUE_ALIGN - 1) & ~(BTREE_VALUE_ALIGN - 1);
}

/** Bytes one item uses in a block: its header plus its aligned value. */
export function itemBytes(valLen: number): number {
  return BtreeItem.size + valBytes(valLen);
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

const ITEM_SIZE = BtreeItem.size;
const OFF_KEY = BtreeItem.off.key;
const OFF_SEQ = BtreeItem.off.seq;
const OFF_VAL_OFF = BtreeItem.off.val_off;
const OFF_VAL_LEN = BtreeItem.off.val_len;
const OFF_FLAGS = BtreeItem.off.flags;

/**
 * Lay out `items` (sorted, unique keys; the caller guarantees it and that they fit) into `buf`,
 * a zeroed 64 KiB block. Everything after the 32-byte block header is written; the header is the
 * sealer's job. Returns total_item_bytes.
 */
export function encodeBtreeItems(buf: Uint8Array, level: number, items: readonly EncodeItem[]): number {
  const dv = view(buf);
  const nr = items.length;
  const free = emptyBlockFree(level);
  let valEnd = level === 0 ? BTREE_LEAF_ITEM_HASH_OFF : BLOCK_LG_SIZE;
  let totalBytes = 0;

  for (let i = 0; i < nr; i++) {
    const it = items[i]!;
    const off = BTREE_ITEMS_OFF + i * ITEM_SIZE;
    const val = it.val;
    const len = val.length;
    const vb = (len + 7) & ~7;
    let valOff = 0;
    if (len > 0) {
      valEnd -= vb;
      valOff = valEnd;
      if (len <= 64) {
        for (let b = 0; b < len; b++) buf[valOff + b] = val[b]!;
      } else {
        buf.set(val, valOff);
      }
    }
    packedToRaw(it.key, buf, off + OFF_KEY);
    dv.setBigUint64(off + OFF_SEQ, it.seq, true);
    dv.setUint16(off + OFF_VAL_OFF, valOff, true);
    dv.setUint16(off + OFF_VAL_LEN, len, true);
    buf[off + OFF_FLAGS] = it.flags;
    totalBytes += ITEM_SIZE + vb;
  }
  if (totalBytes > free) throw new ScoutfsError("ENOSPC", `${nr} items need ${totalBytes} bytes, a level ${level} block holds ${free}`);
  linkAndHash(buf, level, nr, totalBytes);
  return totalBytes;
}

/**
 * Finish a block whose item headers (keys, seqs, values, flags) are in place in key order at the
 * item array: link the balanced AVL tree over them, fill the btree header fields and, for leaves,
 * the item hash table. The rest of `buf` must be zero where the layout leaves it unused.
 */
export function linkAndHash(buf: Uint8Array, level: number, nr: number, totalBytes: number): void {
  const dv = view(buf);
  const free = emptyBlockFree(level);
  const root = nr === 0 ? 0 : linkBalanced(dv, 0, nr - 1, 0);
  dv.setUint16(BtreeBlock.off.item_root, root, true);
  dv.setUint16(BtreeBlock.off.nr_items, nr, true);
  dv.setUint16(BtreeBlock.off.total_item_bytes, totalBytes, true);
  dv.setUint16(BtreeBlock.off.mid_free_len, free - totalBytes, true);
  buf[BtreeBlock.off.level] = level;

  if (level === 0) {
    for (let i = 0; i < nr; i++) {
      const off = BTREE_ITEMS_OFF + i * ITEM_SIZE;
      let b = leafHashIndex(buf, off + OFF_KEY);
      for (let n = 0; n < BTREE_LEAF_ITEM_HASH_NR; n++) {
        const at = BTREE_LEAF_ITEM_HASH_OFF + b * 2;
        if (buf[at] === 0 && buf[at + 1] === 0) {
          dv.setUint16(at, off, true);
          break;
        }
        b = b + 1 === BTREE_LEAF_ITEM_HASH_NR ? 0 : b + 1;
      }
    }
  }
}

/** AVL link (offset from the avl root field) of the item at array index i. */
function nodeLink(i: number): number {
  return BTREE_ITEMS_OFF + i * ITEM_SIZE - AVL_ROOT_OFF;
}

/**
 * Link items lo..hi as a balanced AVL subtree under `parent`; returns the subtree root's link.
 * The middle item is the root, so a subtree of n nodes has height bit_length(n).
 */
function linkBalanced(dv: DataView, lo: number, hi: number, parent: number): number {
  const mid = (lo + hi) >> 1;
  const me = nodeLink(mid);
  const at = BTREE_ITEMS_OFF + mid * ITEM_SIZE;
  dv.setUint16(at + 0, parent, true);
  dv.setUint16(at + 2, lo < mid ? linkBalanced(dv, lo, mid - 1, me) : 0, true);
  dv.setUint16(at + 4, mid < hi ? linkBalanced(dv, mid + 1, hi, me) : 0, true);
  dv.setUint8(at + 6, 32 - Math.clz32(hi - lo + 1));
  return me;
}

/** Lay out a block (header fields other than the block header are filled; the caller seals it). */
export function buildBtreeBlock(level: number, items: readonly BuildItem[]): Uint8Array {
  for (let i = 1; i < items.length; i++) {
    assert(keyCompare(items[i - 1]!.key, items[i]!.key) < 0, "build items must be sorted and unique");
  }
  const packed: EncodeItem[] = items.map((it) => {
    const len = it.val?.length ?? 0;
    if (len > BTREE_MAX_VAL_LEN && level === 0) throw new ScoutfsError("EINVAL", `item value of ${len} bytes exceeds the ${BTREE_MAX_VAL_LEN} byte maximum`);
    return { key: keyPack(it.key), seq: it.seq, flags: it.flags, val: it.val ?? new Uint8Array(0) };
  });
  const buf = new Uint8Array(BLOCK_LG_SIZE);
  encodeBtreeItems(buf, level, packed);
  return buf;
}
