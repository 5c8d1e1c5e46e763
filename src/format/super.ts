/**
 * The super block: a 4 KiB block at small-block 16 on both devices. The metadata device's copy
 * has FLAG_IS_META_BDEV set and is the root of every persistent structure; the data device's copy
 * identifies the data device (same fsid) and is otherwise not updated.
 */
import { struct, u64, bytes, array } from "./struct.ts";
import { BlockHeader } from "./block.ts";
import { AllocRoot, AllocListHead } from "./alloc.ts";
import { BtreeRoot } from "./btree.ts";
import { QuorumConfig } from "./quorum.ts";
import { UUID_BYTES } from "./constants.ts";

export const VolumeOptions = struct("volume_options", 8 + 8 + 63 * 8, {
  set_bits: [0, u64],
  data_alloc_zone_blocks: [8, u64],
  __future_expansion: [16, array(u64, 63)],
} as const);
export type VolumeOptions = ReturnType<typeof VolumeOptions.decode>;

export const SuperBlock = struct("super_block", 1488, {
  hdr: [0, BlockHeader],
  id: [32, u64],
  fmt_vers: [40, u64],
  flags: [48, u64],
  uuid: [56, bytes(UUID_BYTES)],
  seq: [72, u64],
  next_ino: [80, u64],
  inode_count: [88, u64],
  total_meta_blocks: [96, u64],
  total_data_blocks: [104, u64],
  qconf: [112, QuorumConfig],
  meta_alloc: [600, array(AllocRoot, 2)],
  data_alloc: [680, AllocRoot],
  server_meta_avail: [720, array(AllocListHead, 2)],
  server_meta_freed: [784, array(AllocListHead, 2)],
  fs_root: [848, BtreeRoot],
  logs_root: [872, BtreeRoot],
  log_merge: [896, BtreeRoot],
  mounted_clients: [920, BtreeRoot],
  srch_root: [944, BtreeRoot],
  volopt: [968, VolumeOptions],
} as const);
export type SuperBlock = ReturnType<typeof SuperBlock.decode>;

export function uuidToString(uuid: Uint8Array): string {
  const h = Array.from(uuid, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}
