/**
 * Server btree values: each mount's log_trees item (its item btree, bloom block, allocators and
 * srch log file), mounted client records, srch files and compactions, and log merge state.
 */
import { struct, u8, u32, u64, s64, pad, array } from "./struct.ts";
import { BlockHeader, BlockRef } from "./block.ts";
import { AllocListHead, AllocRoot } from "./alloc.ts";
import { BtreeRoot } from "./btree.ts";
import { KeyStruct } from "./key.ts";
import { InetAddr } from "./quorum.ts";
import { BLOCK_LG_SIZE, DATA_ALLOC_ZONE_LE64S, SRCH_COMPACT_NR, SRCH_ENTRY_MAX_BYTES } from "./constants.ts";

export const SrchEntry = struct("srch_entry", 24, {
  hash: [0, u64],
  ino: [8, u64],
  id: [16, u64],
} as const);
export type SrchEntry = ReturnType<typeof SrchEntry.decode>;

export const SrchFile = struct("srch_file", 88, {
  first: [0, SrchEntry],
  last: [24, SrchEntry],
  ref: [48, BlockRef],
  blocks: [64, u64],
  entries: [72, u64],
  height: [80, u8],
  _pad: [81, pad(7)],
} as const);
export type SrchFile = ReturnType<typeof SrchFile.decode>;

export const SrchParentHeader = struct("srch_parent", 32, {
  hdr: [0, BlockHeader],
} as const);
export const SRCH_PARENT_REFS = Math.floor((BLOCK_LG_SIZE - SrchParentHeader.size) / BlockRef.size);

export const SrchBlock = struct("srch_block", 112, {
  hdr: [0, BlockHeader],
  first: [32, SrchEntry],
  last: [56, SrchEntry],
  tail: [80, SrchEntry],
  entry_nr: [104, u32],
  entry_bytes: [108, u32],
} as const);
export const SRCH_BLOCK_ENTRIES_OFF = SrchBlock.size;
/** Entries are only started below this byte count so a full-size final entry still fits. */
export const SRCH_BLOCK_SAFE_BYTES = BLOCK_LG_SIZE - SrchBlock.size - SRCH_ENTRY_MAX_BYTES;

export const SrchCompactInput = struct("srch_compact_input", 104, {
  sfl: [0, SrchFile],
  blk: [88, u64],
  pos: [96, u64],
} as const);

export const SrchCompact = struct("srch_compact", 32 + 32 + 16 + 88 + 104 * SRCH_COMPACT_NR, {
  meta_avail: [0, AllocListHead],
  meta_freed: [32, AllocListHead],
  id: [64, u64],
  nr: [72, u8],
  flags: [73, u8],
  _pad: [74, pad(6)],
  out: [80, SrchFile],
  in: [168, array(SrchCompactInput, SRCH_COMPACT_NR)],
} as const);
export type SrchCompact = ReturnType<typeof SrchCompact.decode>;

export const LogTrees = struct("log_trees", 472, {
  meta_avail: [0, AllocListHead],
  meta_freed: [32, AllocListHead],
  item_root: [64, BtreeRoot],
  bloom_ref: [88, BlockRef],
  data_avail: [104, AllocRoot],
  data_freed: [144, AllocRoot],
  srch_file: [184, SrchFile],
  data_alloc_zone_blocks: [272, u64],
  data_alloc_zones: [280, array(u64, DATA_ALLOC_ZONE_LE64S)],
  inode_count_delta: [408, s64],
  get_trans_seq: [416, u64],
  commit_trans_seq: [424, u64],
  max_item_seq: [432, u64],
  finalize_seq: [440, u64],
  rid: [448, u64],
  nr: [456, u64],
  flags: [464, u64],
} as const);
export type LogTrees = ReturnType<typeof LogTrees.decode>;

export const BloomBlock = struct("bloom_block", 40, {
  hdr: [0, BlockHeader],
  total_set: [32, u64],
} as const);
export const BLOOM_BITS_OFF = BloomBlock.size;
/** Bits in a bloom block: every whole u64 after the header. */
export const FOREST_BLOOM_BITS = Math.floor((BLOCK_LG_SIZE - BloomBlock.size) / 8) * 64;

export const MountedClientVal = struct("mounted_client_btree_val", 40, {
  addr: [0, InetAddr],
  flags: [32, u8],
  _pad: [33, pad(7)],
} as const);
export type MountedClientVal = ReturnType<typeof MountedClientVal.decode>;

export const LogMergeStatus = struct("log_merge_status", 56, {
  next_range_key: [0, KeyStruct],
  nr_requests: [32, u64],
  nr_complete: [40, u64],
  seq: [48, u64],
} as const);

export const LogMergeRequest = struct("log_merge_request", 32 + 32 + 24 + 24 + 32 + 32 + 32, {
  meta_avail: [0, AllocListHead],
  meta_freed: [32, AllocListHead],
  logs_root: [64, BtreeRoot],
  root: [88, BtreeRoot],
  start: [112, KeyStruct],
  end: [144, KeyStruct],
  input_seq: [176, u64],
  rid: [184, u64],
  seq: [192, u64],
  flags: [200, u64],
} as const);

export const LogMergeComplete = struct("log_merge_complete", 32 + 32 + 24 + 32 * 3 + 24, {
  meta_avail: [0, AllocListHead],
  meta_freed: [32, AllocListHead],
  root: [64, BtreeRoot],
  start: [88, KeyStruct],
  end: [120, KeyStruct],
  remain: [152, KeyStruct],
  rid: [184, u64],
  seq: [192, u64],
  flags: [200, u64],
} as const);

export const LogMergeRange = struct("log_merge_range", 64, {
  start: [0, KeyStruct],
  end: [32, KeyStruct],
} as const);

export const LogMergeFreeing = struct("log_merge_freeing", 64, {
  root: [0, BtreeRoot],
  key: [24, KeyStruct],
  seq: [56, u64],
} as const);
