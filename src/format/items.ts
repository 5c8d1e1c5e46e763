/**
 * Values of filesystem items: inodes, directory entries (stored three times with the same value),
 * xattr part headers, file data extents, .totl. totals, quota rules.
 */
import { struct, u8, u16, u32, u64, s64, pad, array } from "./struct.ts";
import { Timespec } from "./block.ts";

export const Inode = struct("inode", 168, {
  size: [0, u64],
  meta_seq: [8, u64],
  data_seq: [16, u64],
  data_version: [24, u64],
  online_blocks: [32, u64],
  offline_blocks: [40, u64],
  next_readdir_pos: [48, u64],
  next_xattr_id: [56, u64],
  version: [64, u64],
  nlink: [72, u32],
  uid: [76, u32],
  gid: [80, u32],
  mode: [84, u32],
  rdev: [88, u32],
  flags: [92, u32],
  atime: [96, Timespec],
  ctime: [112, Timespec],
  mtime: [128, Timespec],
  crtime: [144, Timespec],
  proj: [160, u64],
} as const);
export type Inode = ReturnType<typeof Inode.decode>;

/** Format version 1 inodes end before `proj`. */
export const INODE_FMT_V1_BYTES = Inode.off.proj;

/** The inode value size written for a format version. */
export function inodeVersBytes(fmtVers: bigint | number): number {
  return BigInt(fmtVers) === 1n ? INODE_FMT_V1_BYTES : Inode.size;
}

/** Whether an inode value of `len` bytes is valid to read on a volume of `fmtVers`. */
export function inodeValidVersBytes(fmtVers: bigint | number, len: number): boolean {
  return (len === Inode.size && BigInt(fmtVers) === 2n) || len === INODE_FMT_V1_BYTES;
}

/** Decode an inode value of either version; a v1 inode reads with proj 0. */
export function decodeInode(val: Uint8Array): Inode {
  if (val.length >= Inode.size) return Inode.decode(val);
  const full = new Uint8Array(Inode.size);
  full.set(val.subarray(0, Math.min(val.length, INODE_FMT_V1_BYTES)));
  return Inode.decode(full);
}

export const Dirent = struct("dirent", 32, {
  ino: [0, u64],
  hash: [8, u64],
  pos: [16, u64],
  type: [24, u8],
  _pad: [25, pad(7)],
} as const);
export type Dirent = ReturnType<typeof Dirent.decode>;
export const DIRENT_NAME_OFF = Dirent.size;

export const XattrHeader = struct("xattr", 8, {
  val_len: [0, u16],
  name_len: [2, u8],
  _pad: [3, pad(5)],
} as const);
export const XATTR_NAME_OFF = XattrHeader.size;

export const DataExtentVal = struct("data_extent_val", 16, {
  blkno: [0, u64],
  flags: [8, u8],
  _pad: [9, pad(7)],
} as const);
export type DataExtentVal = ReturnType<typeof DataExtentVal.decode>;

export const XattrTotlVal = struct("xattr_totl_val", 16, {
  total: [0, s64],
  count: [8, s64],
} as const);

export const QuotaRuleVal = struct("quota_rule_val", 48, {
  name_val: [0, array(u64, 3)],
  limit: [24, u64],
  prio: [32, u8],
  op: [33, u8],
  rule_flags: [34, u8],
  name_source: [35, array(u8, 3)],
  name_flags: [38, array(u8, 3)],
  _pad: [41, pad(7)],
} as const);
