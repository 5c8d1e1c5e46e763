/**
 * Btree nodes as the engine holds them in the block cache: decoded, not as 64 KiB of bytes.
 *
 * A node is its level and a key-sorted array of items. Items are immutable objects (a change
 * replaces the item), so copying a clean node for copy-on-write is a shallow copy of one array,
 * and a clean node shared with readers of the committed tree can never change under them.
 * Parent items carry the child's encoded 16-byte block ref as their value (seq 0, flags 0, as
 * scoutfs writes them) and, alongside, the decoded ref for the walkers.
 *
 * Byte accounting is that of the real block: every item costs its 56-byte header plus its value
 * rounded up to 8 (`bytes` is the block's total_item_bytes), and a node holds at most
 * `nodeCapacity(level)` bytes (leaves lose the item hash table). Because a node is always laid
 * out compacted, a real block's mid_free_len is exactly capacity - bytes when we write it, and
 * the engine splits exactly when a compacted real block could not take the item.
 *
 * The codec decodes through read.ts (the AVL walk that trusts nothing) and checks everything
 * else a walker relies on: key order, value bounds and sizes, parent refs, byte accounting.
 * Anything wrong is EIO. It encodes through build.ts (balanced AVL, values packed from the end,
 * leaf hash), so every block we write is laid out the same way mkfs lays out its blocks.
 */
import { assert } from "../util/assert.ts";
import { view } from "../format/struct.ts";
import { packedFromRaw, type PackedKey } from "../format/key.ts";
import { BtreeItem, BTREE_ITEMS_OFF, BTREE_LEAF_ITEM_HASH_OFF } from "../format/btree.ts";
import { BLOCK_LG_SIZE, BLOCK_MAGIC_BTREE, BTREE_MAX_VAL_LEN } from "../format/constants.ts";
import type { BlockCodec } from "../block/cache.ts";
import { emptyBlockFree, encodeBtreeItems, itemBytes } from "./build.ts";
import { blockInfo, corrupt, itemOffsetsInOrder } from "./read.ts";

/** A block ref as the engine passes it around (the on-disk scoutfs_block_ref). */
export interface ChildRef {
  readonly blkno: bigint;
  readonly seq: bigint;
}

/**
 * One item. Never modified once made: the engine replaces items instead. `val` is shared with
 * the cache, so callers that get items from reads must not write into it.
 */
export interface NodeItem {
  readonly key: PackedKey;
  readonly seq: bigint;
  readonly flags: number;
  readonly val: Uint8Array;
  /** The decoded child ref of a parent item; null in leaves. */
  readonly ref: ChildRef | null;
}

export interface BtreeNode {
  level: number;
  /** Sorted by key, unique. */
  items: NodeItem[];
  /** Sum of the items' block bytes: the block's total_item_bytes. */
  bytes: number;
}

export const BLOCK_REF_BYTES = 16;
/** Bytes of one parent item (header + 16-byte ref). */
export const PARENT_ITEM_BYTES = itemBytes(BLOCK_REF_BYTES);
const LEAF_CAPACITY = emptyBlockFree(0);
const PARENT_CAPACITY = emptyBlockFree(1);

/** Item bytes a node of this level can hold. */
export function nodeCapacity(level: number): number {
  return level === 0 ? LEAF_CAPACITY : PARENT_CAPACITY;
}

export function leafItem(key: PackedKey, seq: bigint, flags: number, val: Uint8Array): NodeItem {
  return { key, seq, flags, val, ref: null };
}

export function parentItem(key: PackedKey, blkno: bigint, seq: bigint): NodeItem {
  const val = new Uint8Array(BLOCK_REF_BYTES);
  const dv = view(val);
  dv.setBigUint64(0, blkno, true);
  dv.setBigUint64(8, seq, true);
  return { key, seq: 0n, flags: 0, val, ref: { blkno, seq } };
}

export function cloneNode(n: BtreeNode): BtreeNode {
  return { level: n.level, items: n.items.slice(), bytes: n.bytes };
}

const OFF_KEY = BtreeItem.off.key;
const OFF_SEQ = BtreeItem.off.seq;
const OFF_VAL_OFF = BtreeItem.off.val_off;
const OFF_VAL_LEN = BtreeItem.off.val_len;
const OFF_FLAGS = BtreeItem.off.flags;

function decodeNode(buf: Uint8Array, blkno: bigint): BtreeNode {
  const info = blockInfo(buf, blkno);
  const offs = itemOffsetsInOrder(buf, info, blkno);
  const dv = view(buf);
  const level = info.level;
  const valEnd = level === 0 ? BTREE_LEAF_ITEM_HASH_OFF : BLOCK_LG_SIZE;
  const items: NodeItem[] = new Array(offs.length);
  let bytes = 0;
  let prev = "";
  const itemsEnd = BTREE_ITEMS_OFF + offs.length * BtreeItem.size;
  for (let i = 0; i < offs.length; i++) {
    const off = offs[i]!;
    const key = packedFromRaw(buf, off + OFF_KEY);
    if (i > 0 && !(prev < key)) throw corrupt(blkno, `item ${i} key is not greater than the previous key`);
    prev = key;
    const valOff = dv.getUint16(off + OFF_VAL_OFF, true);
    const valLen = dv.getUint16(off + OFF_VAL_LEN, true);
    if (valLen > 0 && (valOff < itemsEnd || valOff + valLen > valEnd)) {
      throw corrupt(blkno, `item value ${valOff}+${valLen} outside the value area`);
    }
    bytes += itemBytes(valLen);
    if (level === 0) {
      if (valLen > BTREE_MAX_VAL_LEN) throw corrupt(blkno, `item value of ${valLen} bytes`);
      items[i] = {
        key,
        seq: dv.getBigUint64(off + OFF_SEQ, true),
        flags: buf[off + OFF_FLAGS]!,
        val: buf.slice(valOff, valOff + valLen),
        ref: null,
      };
    } else {
      if (valLen !== BLOCK_REF_BYTES) throw corrupt(blkno, `parent item value of ${valLen} bytes`);
      const childBlkno = dv.getBigUint64(valOff, true);
      const childSeq = dv.getBigUint64(valOff + 8, true);
      if (childBlkno === 0n) throw corrupt(blkno, `parent item ${i} references block 0`);
      items[i] = {
        key,
        seq: dv.getBigUint64(off + OFF_SEQ, true),
        flags: buf[off + OFF_FLAGS]!,
        val: buf.slice(valOff, valOff + valLen),
        ref: { blkno: childBlkno, seq: childSeq },
      };
    }
  }
  if (bytes !== info.totalItemBytes) throw corrupt(blkno, `total_item_bytes ${info.totalItemBytes} but the items use ${bytes}`);
  const cap = nodeCapacity(level);
  if (bytes + info.midFreeLen > cap) throw corrupt(blkno, `items ${bytes} + mid_free_len ${info.midFreeLen} exceed ${cap} bytes`);
  return { level, items, bytes };
}

export const btreeCodec: BlockCodec<BtreeNode> = {
  name: "btree",
  magic: BLOCK_MAGIC_BTREE,
  decode: decodeNode,
  encode(node: BtreeNode, buf: Uint8Array): void {
    const total = encodeBtreeItems(buf, node.level, node.items);
    assert(total === node.bytes, `btree node accounting says ${node.bytes} bytes, its items use ${total}`);
  },
};
