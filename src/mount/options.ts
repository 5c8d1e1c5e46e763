/**
 * Mount options as scoutfs(5) defines them: names, defaults and ranges, with the kernel's error
 * messages. Unknown options are errors. Generic mount(8) options that make sense for a FUSE mount
 * (ro, rw, nosuid, nodev, noexec, noatime, relatime, ...) and fstab-only options (defaults, auto,
 * noauto, nofail, _netdev, x-*) are accepted and kept apart in `generic`.
 */
import * as C from "../format/constants.ts";
import { ScoutfsError } from "../util/errors.ts";

export interface MountOptions {
  acl: boolean;
  dataPreallocBlocks: bigint;
  dataPreallocContigOnly: boolean;
  inoAllocPerLock: number;
  lockIdleCount: number;
  logMergeWaitTimeoutMs: number;
  metadevPath: string;
  orphanScanDelayMs: number;
  quorumHeartbeatTimeoutMs: number;
  /** -1: not a quorum member. */
  quorumSlotNr: number;
  tcpKeepaliveTimeoutMs: number;
  /** Generic VFS options to pass to the FUSE mount, e.g. ["ro", "nosuid"]. */
  generic: string[];
}

export const DATA_PREALLOC_DEFAULT_BLOCKS = (8n * 1024n * 1024n) >> BigInt(C.BLOCK_SM_SHIFT);
export const MIN_LOCK_IDLE_COUNT = 32;
export const DEFAULT_LOCK_IDLE_COUNT = 10_000;
export const MAX_LOCK_IDLE_COUNT = 100_000;
export const MIN_LOG_MERGE_WAIT_TIMEOUT_MS = 100;
export const DEFAULT_LOG_MERGE_WAIT_TIMEOUT_MS = 500;
export const MAX_LOG_MERGE_WAIT_TIMEOUT_MS = 60_000;
export const MIN_ORPHAN_SCAN_DELAY_MS = 100;
export const DEFAULT_ORPHAN_SCAN_DELAY_MS = 10_000;
export const MAX_ORPHAN_SCAN_DELAY_MS = 60_000;
export const DEFAULT_TCP_KEEPALIVE_TIMEOUT_MS = 24_000;
/** Keepalive must outlast this many one-second probes. */
export const TCP_KEEPALIVE_UNRESPONSIVE_PROBES = 3;
const MAX_DATA_PREALLOC_BLOCKS = C.U64_MAX >> BigInt(C.BLOCK_SM_SHIFT);

const GENERIC_VFS = new Set(["ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "noatime", "atime", "relatime", "norelatime", "strictatime", "nodiratime", "diratime", "lazytime", "nolazytime", "sync", "async", "dirsync"]);
const FSTAB_ONLY = new Set(["defaults", "auto", "noauto", "nofail", "_netdev", "user", "nouser", "users", "owner", "group", "comment"]);

function bad(msg: string): never {
  throw new ScoutfsError("EINVAL", msg);
}

function parseNum(name: string, v: string | undefined): bigint {
  if (v === undefined || !/^(0|[1-9][0-9]*|0x[0-9a-fA-F]+)$/.test(v)) bad(`failed to parse ${name} value${v === undefined ? "" : ` '${v}'`}`);
  return BigInt(v);
}

function inRange(name: string, v: bigint, min: number | bigint, max: number | bigint): number {
  if (v < BigInt(min) || v > BigInt(max)) bad(`invalid ${name} value ${v}, must be between ${min} and ${max}`);
  return Number(v);
}

export function defaultOptions(metadevPath = ""): MountOptions {
  return {
    acl: true,
    dataPreallocBlocks: DATA_PREALLOC_DEFAULT_BLOCKS,
    dataPreallocContigOnly: true,
    inoAllocPerLock: C.LOCK_INODE_GROUP_NR,
    lockIdleCount: DEFAULT_LOCK_IDLE_COUNT,
    logMergeWaitTimeoutMs: DEFAULT_LOG_MERGE_WAIT_TIMEOUT_MS,
    metadevPath,
    orphanScanDelayMs: DEFAULT_ORPHAN_SCAN_DELAY_MS,
    quorumHeartbeatTimeoutMs: C.QUORUM_DEF_HB_TIMEO_MS,
    quorumSlotNr: -1,
    tcpKeepaliveTimeoutMs: DEFAULT_TCP_KEEPALIVE_TIMEOUT_MS,
    generic: [],
  };
}

/** Parse a comma-separated option string (one or more -o arguments joined with commas). */
export function parseMountOptions(str: string): MountOptions {
  const o = defaultOptions();
  let sawMetadev = false;
  let sawSlot = false;
  let sawOrphan = false;
  for (const raw of str.split(",")) {
    const opt = raw.trim();
    if (opt === "") continue;
    const eq = opt.indexOf("=");
    const name = eq < 0 ? opt : opt.slice(0, eq);
    const val = eq < 0 ? undefined : opt.slice(eq + 1);
    switch (name) {
      case "acl":
        if (val !== undefined) bad(`option "acl" takes no value`);
        o.acl = true;
        break;
      case "noacl":
        if (val !== undefined) bad(`option "noacl" takes no value`);
        o.acl = false;
        break;
      case "data_prealloc_blocks": {
        const v = parseNum(name, val);
        if (v < 1n || v > MAX_DATA_PREALLOC_BLOCKS) bad(`invalid data_prealloc_blocks option, must be between 1 and ${MAX_DATA_PREALLOC_BLOCKS}`);
        o.dataPreallocBlocks = v;
        break;
      }
      case "data_prealloc_contig_only": {
        if (val !== "0" && val !== "1") bad("invalid data_prealloc_contig_only option, bool must only be 0 or 1");
        o.dataPreallocContigOnly = val === "1";
        break;
      }
      case "ino_alloc_per_lock": {
        const v = parseNum(name, val);
        if (v < 1n || v > BigInt(C.LOCK_INODE_GROUP_NR)) bad(`invalid ino_alloc_per_lock option, must be between 1 and ${C.LOCK_INODE_GROUP_NR}`);
        o.inoAllocPerLock = Number(v);
        break;
      }
      case "lock_idle_count":
        o.lockIdleCount = inRange(name, parseNum(name, val), MIN_LOCK_IDLE_COUNT, MAX_LOCK_IDLE_COUNT);
        break;
      case "log_merge_wait_timeout_ms":
        o.logMergeWaitTimeoutMs = inRange(name, parseNum(name, val), MIN_LOG_MERGE_WAIT_TIMEOUT_MS, MAX_LOG_MERGE_WAIT_TIMEOUT_MS);
        break;
      case "metadev_path":
        if (!val) bad(`option "metadev_path" needs a device path`);
        if (sawMetadev) bad("multiple metadev_path options provided, only provide one.");
        sawMetadev = true;
        o.metadevPath = val;
        break;
      case "orphan_scan_delay_ms":
        if (sawOrphan) bad("multiple orphan_scan_delay_ms options provided, only provide one.");
        sawOrphan = true;
        o.orphanScanDelayMs = inRange(name, parseNum(name, val), MIN_ORPHAN_SCAN_DELAY_MS, MAX_ORPHAN_SCAN_DELAY_MS);
        break;
      case "quorum_heartbeat_timeout_ms":
        o.quorumHeartbeatTimeoutMs = inRange(name, parseNum(name, val), C.QUORUM_MIN_HB_TIMEO_MS, C.QUORUM_MAX_HB_TIMEO_MS);
        break;
      case "quorum_slot_nr": {
        if (sawSlot) bad("multiple quorum_slot_nr options provided, only provide one.");
        sawSlot = true;
        const v = parseNum(name, val);
        if (v >= BigInt(C.QUORUM_MAX_SLOTS)) bad(`invalid quorum_slot_nr option, must be between 0 and ${C.QUORUM_MAX_SLOTS - 1}`);
        o.quorumSlotNr = Number(v);
        break;
      }
      case "tcp_keepalive_timeout_ms": {
        const v = parseNum(name, val);
        const min = TCP_KEEPALIVE_UNRESPONSIVE_PROBES * 1000;
        if (v <= BigInt(min) || v > 0x7fffffffn) bad(`invalid tcp_keepalive_timeout_ms value ${v}, must be larger than ${min}`);
        o.tcpKeepaliveTimeoutMs = Number(v);
        break;
      }
      default:
        if (val === undefined && GENERIC_VFS.has(name)) {
          o.generic.push(name);
        } else if ((val === undefined && FSTAB_ONLY.has(name)) || name.startsWith("x-") || name === "comment") {
          // meaningful to mount(8) and fstab only
        } else {
          bad(`Unknown or malformed option, "${opt}"`);
        }
    }
  }
  if (!o.metadevPath) bad('Required mount option "metadev_path" not found');
  return o;
}

/** The options in -o form, as /proc/mounts-style listings show them. */
export function formatMountOptions(o: MountOptions): string {
  const parts = [
    ...o.generic,
    `metadev_path=${o.metadevPath}`,
    o.acl ? "acl" : "noacl",
    `data_prealloc_blocks=${o.dataPreallocBlocks}`,
    `data_prealloc_contig_only=${o.dataPreallocContigOnly ? 1 : 0}`,
    `ino_alloc_per_lock=${o.inoAllocPerLock}`,
    `lock_idle_count=${o.lockIdleCount}`,
    `log_merge_wait_timeout_ms=${o.logMergeWaitTimeoutMs}`,
    `orphan_scan_delay_ms=${o.orphanScanDelayMs}`,
    `quorum_heartbeat_timeout_ms=${o.quorumHeartbeatTimeoutMs}`,
    ...(o.quorumSlotNr >= 0 ? [`quorum_slot_nr=${o.quorumSlotNr}`] : []),
    `tcp_keepalive_timeout_ms=${o.tcpKeepaliveTimeoutMs}`,
  ];
  return parts.join(",");
}
