/**
 * Btree blocks. A 64 KiB block holds a header, a dense array of item headers growing from the
 * front, values packed from the back (8-byte aligned), free space in the middle, and in leaves a
 * fixed hash table of item offsets at the very end. Items are threaded in key order by an AVL
 * tree whose links are byte offsets from the avl root field (which is at block offset 32). A node
 * height of 1 is a leaf of the AVL tree; 0 means no node.
 */
import { struct, u8, u16, u64, pad } from "./struct.ts";
import { BlockHeader, BlockRef } from "./block.ts";
import { KeyStruct } from "./key.ts";
import { BLOCK_LG_SIZE, BTREE_VALUE_ALIGN } from "./constants.ts";

export const AvlNode = struct("avl_node", 8, {
  parent: [0, u16],
  left: [2, u16],
  right: [4, u16],
  height: [6, u8],
  _pad: [7, pad(1)],
} as const);

export const BtreeRoot = struct("btree_root", 24, {
  ref: [0, BlockRef],
  height: [16, u8],
  _pad: [17, pad(7)],
} as const);
export type BtreeRoot = ReturnType<typeof BtreeRoot.decode>;

export const BtreeItem = struct("btree_item", 56, {
  node: [0, AvlNode],
  key: [8, KeyStruct],
  seq: [40, u64],
  val_off: [48, u16],
  val_len: [50, u16],
  flags: [52, u8],
  _pad: [53, pad(3)],
} as const);
export type BtreeItem = ReturnType<typeof BtreeItem.decode>;

export const BtreeBlock = struct("btree_block", 48, {
  hdr: [0, BlockHeader],
  item_root: [32, u16],
  nr_items: [34, u16],
  total_item_bytes: [36, u16],
  mid_free_len: [38, u16],
  level: [40, u8],
  _pad: [41, pad(7)],
} as const);
export type BtreeBlockHeader = ReturnType<typeof BtreeBlock.decode>;

/** AVL links are offsets from the avl root field, which sits right after the block header. */
export const AVL_ROOT_OFF = BtreeBlock.off.item_root;
export const BTREE_ITEMS_OFF = BtreeBlock.size;

/** Leaf item hash: sized for a 75% load of a leaf full of value-less items, rounded to 8. */
const HASH_NR_UNALIGNED = Math.floor(
  (Math.floor((BLOCK_LG_SIZE - BtreeBlock.size) / (BtreeItem.size + 2)) * 100) / 75,
);
export const BTREE_LEAF_ITEM_HASH_NR =
  Math.ceil(HASH_NR_UNALIGNED / BTREE_VALUE_ALIGN) * BTREE_VALUE_ALIGN; // 1512
export const BTREE_LEAF_ITEM_HASH_BYTES = BTREE_LEAF_ITEM_HASH_NR * 2;
export const BTREE_LEAF_ITEM_HASH_OFF = BLOCK_LG_SIZE - BTREE_LEAF_ITEM_HASH_BYTES;
