/**
 * The client/server wire format of scoutfs format version 2 (the "messages over the wire" part of
 * kmod/src/format.h): the greeting, the 32-byte message header, the command numbers, the message
 * flags, the errnos that may cross the wire and their translation, the payload limit, and the
 * fixed payload structs of the commands.
 *
 * Every message on a socket is a `NetHeader` followed by `data_len` payload bytes. The header's
 * `seq`/`recv_seq` carry reliable delivery across reconnects (see src/net/conn.ts), `id` pairs a
 * response with its request, and `error` (responses only) is a `NET_ERR_*` value, never a raw
 * errno: the sender translates its host errno through the table below and the receiver
 * translates back, so errno numbering can never leak between hosts.
 *
 * The timing defaults at the end are not wire format but the kmod's networking constants; they
 * live here so that every net constant is in one place.
 */
import { struct, u8, u16, u64, bytes, pad, array, view } from "./struct.ts";
import { BtreeRoot } from "./btree.ts";
import { KeyStruct } from "./key.ts";
import { OPEN_INO_MAP_BITS, OPEN_INO_MAP_SHIFT, UUID_BYTES } from "./constants.ts";
import { ERRNO, ScoutfsError, type ErrnoName } from "../util/errors.ts";

/* ---------------------------------------------------------------------------------------------
 * Greeting: the first request on every socket (client -> server) and its response. Verifies that
 * both ends belong to the same volume and format, and carries what reconnects need.
 * ------------------------------------------------------------------------------------------- */

/**
 * struct scoutfs_net_greeting.
 * - `server_term`: the quorum term that elected the server. 0 from a client that has never had a
 *   greeting response; afterwards the term of the last server it greeted. Lets a server tell a
 *   first contact from a reconnect, and a client tell a new server (failover) from the same one.
 * - `rid`: the mount's random id, chosen once at mount; echoed in the response.
 */
export const NetGreeting = struct("net_greeting", 40, {
  fsid: [0, u64],
  fmt_vers: [8, u64],
  server_term: [16, u64],
  rid: [24, u64],
  flags: [32, u64],
} as const);
export type NetGreeting = ReturnType<typeof NetGreeting.decode>;

/** The client is unmounting and has sent (or is about to send) its farewell request. */
export const NET_GREETING_FLAG_FAREWELL = 1n << 0n;
/** The client mount has a quorum slot (its farewell may be held back by the server). */
export const NET_GREETING_FLAG_QUORUM = 1n << 1n;
/** Every bit above the known flags: a greeting with any of them set is invalid. */
export const NET_GREETING_FLAG_INVALID = BigInt.asUintN(64, ~0n << 2n);

/* ---------------------------------------------------------------------------------------------
 * Message header.
 * ------------------------------------------------------------------------------------------- */

/**
 * struct scoutfs_net_header, followed by `data_len` bytes of payload.
 * - `seq`: increases for each message a connection queues; never 0.
 * - `recv_seq`: the highest seq the sender has received from its peer, set as each frame leaves.
 * - `id`: increasing per sender for requests; a response repeats its request's id; never 0.
 */
export const NetHeader = struct("net_header", 32, {
  seq: [0, u64],
  recv_seq: [8, u64],
  id: [16, u64],
  data_len: [24, u16],
  cmd: [26, u8],
  flags: [27, u8],
  error: [28, u8],
  _pad: [29, pad(3)],
} as const);
export type NetHeader = ReturnType<typeof NetHeader.decode>;
export const NET_HEADER_BYTES = NetHeader.size;

/** "arbitrarily chosen to be safely less than mss and allow 1k with header" (format.h). */
export const NET_MAX_DATA_LEN = 1100;
export const NET_MAX_FRAME_BYTES = NET_HEADER_BYTES + NET_MAX_DATA_LEN;

/** Message flags. */
export const NET_FLAG_RESPONSE = 1 << 0;
/** Every flag bit that is not known: a header with any of them set is invalid. */
export const NET_FLAGS_UNKNOWN = (0xff << 1) & 0xff; // 0xfe

/* ---------------------------------------------------------------------------------------------
 * Commands, in format.h's order (the numbers are the wire values).
 * ------------------------------------------------------------------------------------------- */
export const NET_CMD_GREETING = 0;
export const NET_CMD_ALLOC_INODES = 1;
export const NET_CMD_GET_LOG_TREES = 2;
export const NET_CMD_COMMIT_LOG_TREES = 3;
export const NET_CMD_SYNC_LOG_TREES = 4;
export const NET_CMD_GET_ROOTS = 5;
export const NET_CMD_GET_LAST_SEQ = 6;
export const NET_CMD_LOCK = 7;
export const NET_CMD_LOCK_RECOVER = 8;
export const NET_CMD_SRCH_GET_COMPACT = 9;
export const NET_CMD_SRCH_COMMIT_COMPACT = 10;
export const NET_CMD_GET_LOG_MERGE = 11;
export const NET_CMD_COMMIT_LOG_MERGE = 12;
export const NET_CMD_OPEN_INO_MAP = 13;
export const NET_CMD_GET_VOLOPT = 14;
export const NET_CMD_SET_VOLOPT = 15;
export const NET_CMD_CLEAR_VOLOPT = 16;
export const NET_CMD_RESIZE_DEVICES = 17;
export const NET_CMD_STATFS = 18;
export const NET_CMD_FAREWELL = 19;
/** First invalid command number: a header with cmd >= this is invalid. */
export const NET_CMD_UNKNOWN = 20;

/** Lower-case command names indexed by command number, for logs and counters. */
export const NET_CMD_NAMES = [
  "greeting",
  "alloc_inodes",
  "get_log_trees",
  "commit_log_trees",
  "sync_log_trees",
  "get_roots",
  "get_last_seq",
  "lock",
  "lock_recover",
  "srch_get_compact",
  "srch_commit_compact",
  "get_log_merge",
  "commit_log_merge",
  "open_ino_map",
  "get_volopt",
  "set_volopt",
  "clear_volopt",
  "resize_devices",
  "statfs",
  "farewell",
] as const;

export function netCmdName(cmd: number): string {
  return NET_CMD_NAMES[cmd] ?? `cmd${cmd}`;
}

/* ---------------------------------------------------------------------------------------------
 * Errors on the wire: a small closed set, translated at both ends.
 * ------------------------------------------------------------------------------------------- */
export const NET_ERR_NONE = 0;
export const NET_ERR_ENOENT = 1;
export const NET_ERR_ENOMEM = 2;
export const NET_ERR_EIO = 3;
export const NET_ERR_ENOSPC = 4;
export const NET_ERR_EINVAL = 5;
export const NET_ERR_ENOLINK = 6;
/** First invalid net error: a header with error >= this is invalid. */
export const NET_ERR_UNKNOWN = 7;

/** The errno each net error stands for, indexed by net error (index 0 is "no error"). */
export const NET_ERR_ERRNOS: readonly (ErrnoName | undefined)[] = [
  undefined,
  "ENOENT",
  "ENOMEM",
  "EIO",
  "ENOSPC",
  "EINVAL",
  "ENOLINK",
];

/**
 * The net error that carries `code` over the wire. Errnos outside the table travel as EINVAL, as
 * the kmod does (it warns once; callers that care can compare `netErrFromErrno(c) !== ...`).
 */
export function netErrFromErrno(code: ErrnoName): number {
  const i = NET_ERR_ERRNOS.indexOf(code);
  return i > 0 ? i : NET_ERR_EINVAL;
}

/** Whether `code` crosses the wire unchanged (is in format.h's table). */
export function netErrnoIsWireSafe(code: ErrnoName): boolean {
  return NET_ERR_ERRNOS.indexOf(code) > 0;
}

/**
 * The errno a received net error stands for: undefined for NET_ERR_NONE, EINVAL for a value
 * outside the table (the kmod's choice; receivers reject such headers before this anyway).
 */
export function netErrToErrno(netErr: number): ErrnoName | undefined {
  if (netErr === NET_ERR_NONE) return undefined;
  return NET_ERR_ERRNOS[netErr] ?? "EINVAL";
}

/** Linux errno number of a net error, 0 for none (for logs that want the number). */
export function netErrToErrnoNumber(netErr: number): number {
  const name = netErrToErrno(netErr);
  return name === undefined ? 0 : ERRNO[name];
}

/* ---------------------------------------------------------------------------------------------
 * Fixed command payloads.
 * ------------------------------------------------------------------------------------------- */

/** alloc_inodes response; ino = ~0 and nr = 0 when no inode numbers are left. */
export const NetInodeAlloc = struct("net_inode_alloc", 16, {
  ino: [0, u64],
  nr: [8, u64],
} as const);
export type NetInodeAlloc = ReturnType<typeof NetInodeAlloc.decode>;

/** get_roots response. */
export const NetRoots = struct("net_roots", 72, {
  fs_root: [0, BtreeRoot],
  logs_root: [24, BtreeRoot],
  srch_root: [48, BtreeRoot],
} as const);
export type NetRoots = ReturnType<typeof NetRoots.decode>;

/** resize_devices request. */
export const NetResizeDevices = struct("net_resize_devices", 16, {
  new_total_meta_blocks: [0, u64],
  new_total_data_blocks: [8, u64],
} as const);
export type NetResizeDevices = ReturnType<typeof NetResizeDevices.decode>;

/** statfs response. */
export const NetStatfs = struct("net_statfs", 56, {
  uuid: [0, bytes(UUID_BYTES)],
  free_meta_blocks: [16, u64],
  total_meta_blocks: [24, u64],
  free_data_blocks: [32, u64],
  total_data_blocks: [40, u64],
  inode_count: [48, u64],
} as const);
export type NetStatfs = ReturnType<typeof NetStatfs.decode>;

/** lock request, grant response and invalidation request. */
export const NetLock = struct("net_lock", 48, {
  key: [0, KeyStruct],
  write_seq: [32, u64],
  old_mode: [40, u8],
  new_mode: [41, u8],
  _pad: [42, pad(6)],
} as const);
export type NetLock = ReturnType<typeof NetLock.decode>;

/** lock_recover response header, followed by `nr` NetLock entries. */
export const NetLockRecover = struct("net_lock_recover", 8, {
  nr: [0, u16],
  _pad: [2, pad(6)],
} as const);
export type NetLockRecover = ReturnType<typeof NetLockRecover.decode>;
export const NET_LOCK_MAX_RECOVER_NR = Math.floor((NET_MAX_DATA_LEN - NetLockRecover.size) / NetLock.size); // 22

/** Encode a lock_recover payload: the header and `locks` (at most NET_LOCK_MAX_RECOVER_NR). */
export function encodeNetLockRecover(locks: readonly NetLock[]): Uint8Array {
  if (locks.length > NET_LOCK_MAX_RECOVER_NR) {
    throw new ScoutfsError("EINVAL", `lock_recover carries at most ${NET_LOCK_MAX_RECOVER_NR} locks, got ${locks.length}`);
  }
  const buf = new Uint8Array(NetLockRecover.size + locks.length * NetLock.size);
  NetLockRecover.encode({ nr: locks.length }, buf, 0);
  array(NetLock, locks.length).set(view(buf), NetLockRecover.size, locks as NetLock[]);
  return buf;
}

/** Decode a lock_recover payload, checking that its length matches its count. */
export function decodeNetLockRecover(buf: Uint8Array): NetLock[] {
  const { nr } = NetLockRecover.decodeChecked(buf, 0, "lock_recover");
  const want = NetLockRecover.size + nr * NetLock.size;
  if (nr > NET_LOCK_MAX_RECOVER_NR || buf.length !== want) {
    throw new ScoutfsError("EINVAL", `lock_recover: ${nr} locks need ${want} bytes, payload has ${buf.length}`);
  }
  return array(NetLock, nr).get(view(buf), NetLockRecover.size);
}

/**
 * open_ino_map (format.h scoutfs_open_ino_map_args): a mount asks the server which of the
 * OPEN_INO_MAP_BITS inodes of `group_nr` (ino >> OPEN_INO_MAP_SHIFT) other mounts still cache,
 * before it deletes an unlinked inode; the server asks every other mount with the same args
 * (`req_id` its own), each answers with a NetOpenInoMap, and the server answers the first mount
 * with their bits ORed together.
 */
export const NetOpenInoMapArgs = struct("net_open_ino_map_args", 16, {
  group_nr: [0, u64],
  req_id: [8, u64],
} as const);
export type NetOpenInoMapArgs = ReturnType<typeof NetOpenInoMapArgs.decode>;

/** Bytes of the bitmap: bit b of inode (group_nr << OPEN_INO_MAP_SHIFT) + b, little-endian le64s. */
export const NET_OPEN_INO_MAP_BITS_BYTES = OPEN_INO_MAP_BITS / 8;

/** open_ino_map response (format.h scoutfs_open_ino_map): the args, then the bitmap. */
export const NetOpenInoMap = struct("net_open_ino_map", 16 + NET_OPEN_INO_MAP_BITS_BYTES, {
  args: [0, NetOpenInoMapArgs],
  bits: [16, bytes(NET_OPEN_INO_MAP_BITS_BYTES)],
} as const);
export type NetOpenInoMap = ReturnType<typeof NetOpenInoMap.decode>;

/** The omap group of an inode and its bit in the group's map. */
export function openInoMapGroup(ino: bigint): { groupNr: bigint; bit: number } {
  return { groupNr: ino >> BigInt(OPEN_INO_MAP_SHIFT), bit: Number(ino & BigInt(OPEN_INO_MAP_BITS - 1)) };
}

/** Is `bit` set in an omap bitmap (bit b is bit b%8 of byte b/8: le64 words, little-endian)? */
export function openInoMapTest(bits: Uint8Array, bit: number): boolean {
  return ((bits[bit >> 3] ?? 0) & (1 << (bit & 7))) !== 0;
}

/** Set `bit` in an omap bitmap. */
export function openInoMapSet(bits: Uint8Array, bit: number): void {
  bits[bit >> 3]! |= 1 << (bit & 7);
}

/* ---------------------------------------------------------------------------------------------
 * Networking timing defaults of the kmod (not wire format; named here with their units).
 * ------------------------------------------------------------------------------------------- */

/** Mount option tcp_keepalive_timeout_ms default: a silent peer is declared dead after this. */
export const NET_DEFAULT_TCP_KEEPALIVE_TIMEOUT_MS = 24_000;
/** A server keeps a disconnected client's message state this long, waiting for it to return. */
export const NET_CLIENT_RECONNECT_TIMEOUT_MS = 20_000;
/** A client waits this long between failed connection attempts. */
export const NET_CLIENT_CONNECT_DELAY_MS = 100;
/** A client gives up a single TCP connection attempt after this long. */
export const NET_CLIENT_CONNECT_TIMEOUT_MS = 1_000;
