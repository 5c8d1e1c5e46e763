/**
 * Quorum structures: addresses of the configured slots (in the super block), the per-slot quorum
 * block with its event log, and the UDP election message.
 */
import { struct, u8, u16, u32, u64, bytes, pad, array } from "./struct.ts";
import { BlockHeader, Timespec } from "./block.ts";
import { QUORUM_EVENT_NR, QUORUM_MAX_SLOTS } from "./constants.ts";

/** union scoutfs_inet_addr: the ipv4 arm, padded to the ipv6 arm's 32 bytes. */
export const InetAddr = struct("inet_addr", 32, {
  family: [0, u16],
  port: [2, u16],
  addr: [4, u32],
  _v6: [8, pad(24)],
} as const);
export type InetAddr = ReturnType<typeof InetAddr.decode>;

export const InetAddr6 = struct("inet_addr6", 32, {
  family: [0, u16],
  port: [2, u16],
  addr: [4, bytes(16)],
  flow_info: [20, u32],
  scope_id: [24, u32],
  _pad: [28, pad(4)],
} as const);

export const QuorumConfig = struct("quorum_config", 8 + 32 * QUORUM_MAX_SLOTS, {
  version: [0, u64],
  slots: [8, array(InetAddr, QUORUM_MAX_SLOTS)],
} as const);
export type QuorumConfig = ReturnType<typeof QuorumConfig.decode>;

export const QuorumEvent = struct("quorum_block_event", 40, {
  write_nr: [0, u64],
  rid: [8, u64],
  term: [16, u64],
  ts: [24, Timespec],
} as const);
export type QuorumEvent = ReturnType<typeof QuorumEvent.decode>;

export const QuorumBlock = struct("quorum_block", 32 + 8 + 40 * QUORUM_EVENT_NR, {
  hdr: [0, BlockHeader],
  write_nr: [32, u64],
  events: [40, array(QuorumEvent, QUORUM_EVENT_NR)],
} as const);
export type QuorumBlock = ReturnType<typeof QuorumBlock.decode>;

export const QuorumMessage = struct("quorum_message", 32, {
  fsid: [0, u64],
  version: [8, u64],
  term: [16, u64],
  type: [24, u8],
  from: [25, u8],
  _pad: [26, pad(2)],
  crc: [28, u32],
} as const);
export type QuorumMessage = ReturnType<typeof QuorumMessage.decode>;

/** "a.b.c.d" for an address stored as a host-order u32 (how scoutfs stores ipv4 addresses). */
export function ipv4ToString(addr: number): string {
  return `${(addr >>> 24) & 0xff}.${(addr >>> 16) & 0xff}.${(addr >>> 8) & 0xff}.${addr & 0xff}`;
}
