/**
 * Block header and block reference. Every metadata block (super, quorum, btree, alloc list,
 * bloom, srch) starts with the header; the crc covers the whole block after the crc field. A ref
 * names a block by (blkno, seq) and a reader checks both against the header it reads.
 */
import { struct, u32, u64 } from "./struct.ts";

export const BlockHeader = struct("block_header", 32, {
  crc: [0, u32],
  magic: [4, u32],
  fsid: [8, u64],
  seq: [16, u64],
  blkno: [24, u64],
} as const);
export type BlockHeader = ReturnType<typeof BlockHeader.decode>;

export const BlockRef = struct("block_ref", 16, {
  blkno: [0, u64],
  seq: [8, u64],
} as const);
export type BlockRef = ReturnType<typeof BlockRef.decode>;

export const Timespec = struct("timespec", 16, {
  sec: [0, u64],
  nsec: [8, u32],
} as const);
export type Timespec = ReturnType<typeof Timespec.decode>;
