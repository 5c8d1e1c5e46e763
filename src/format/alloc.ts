/**
 * Allocator structures. Metadata blocks for a transaction come from alloc list blocks (arrays of
 * single blknos, the live ones at [start, start+nr)); free extents live in alloc roots (btrees
 * with each extent indexed by blkno and by length order).
 */
import { struct, u32, u64 } from "./struct.ts";
import { BlockHeader, BlockRef } from "./block.ts";
import { BtreeRoot } from "./btree.ts";
import { BLOCK_LG_SIZE } from "./constants.ts";

export const AllocListHead = struct("alloc_list_head", 32, {
  ref: [0, BlockRef],
  total_nr: [16, u64],
  first_nr: [24, u32],
  flags: [28, u32],
} as const);
export type AllocListHead = ReturnType<typeof AllocListHead.decode>;

export const AllocListBlock = struct("alloc_list_block", 56, {
  hdr: [0, BlockHeader],
  next: [32, BlockRef],
  start: [48, u32],
  nr: [52, u32],
} as const);
export const ALLOC_LIST_BLKNOS_OFF = AllocListBlock.size;
export const ALLOC_LIST_MAX_BLOCKS = Math.floor((BLOCK_LG_SIZE - AllocListBlock.size) / 8); // 8185

export const AllocRoot = struct("alloc_root", 40, {
  total_len: [0, u64],
  flags: [8, u32],
  _pad: [12, u32],
  root: [16, BtreeRoot],
} as const);
export type AllocRoot = ReturnType<typeof AllocRoot.decode>;

/** floor(log8(len)): the order a free extent is indexed under (0..7 -> 0, 8..63 -> 1, ...). */
export function freeExtentOrder(len: bigint): bigint {
  let v = len | 1n;
  let fls = 0n;
  while (v > 0n) {
    fls++;
    v >>= 1n;
  }
  return (fls - 1n) / 3n;
}
