/**
 * `scoutfs mkfs`: make a new volume on a metadata device and a data device.
 *
 * Layout written (identical in shape to the real mkfs, so either tool's volumes look alike):
 *   meta blkno 2        fs_root leaf: root inode's meta_seq index item and the root inode
 *   meta blkno 3        server_meta_avail[0] alloc list: blknos 4..1027 (64 MiB) for the server's
 *                       first transactions
 *   meta blkno 1028     data_alloc btree: one free extent covering the data device
 *   meta blkno 1029/30  meta_alloc[0]/[1] btrees: the remaining metadata blocks, split in two
 *   small blknos 17..31 quorum blocks, header only
 *   small blkno 16      super block on the data device (no META flag), then on the meta device
 *                       (last: a volume exists only once the meta super is written and synced)
 *
 * Everything is validated before the first write: arguments, both devices (exclusive open,
 * existing signatures unless forced, not the same file), sizes (the 64 GiB minimum unless -A,
 * and the structural minimum even with -A). A refused device is never written.
 */
import { randomBytes } from "node:crypto";
import { Device, sealBlock } from "../block/device.ts";
import { probeDevice } from "../block/probe.ts";
import { buildBtreeBlock, type BuildItem } from "../btree/build.ts";
import * as C from "../format/constants.ts";
import { SuperBlock, uuidToString, type SuperBlock as Super } from "../format/super.ts";
import { AllocListBlock, ALLOC_LIST_BLKNOS_OFF, freeExtentOrder, type AllocRoot } from "../format/alloc.ts";
import { Inode, inodeVersBytes } from "../format/items.ts";
import { makeKey } from "../format/key.ts";
import { ipv4ToString } from "../format/quorum.ts";
import { view } from "../format/struct.ts";
import { ScoutfsError } from "../util/errors.ts";
import { baseSize, blocksSize } from "../util/size.ts";

export interface QuorumSlotSpec {
  nr: number;
  /** IPv4 address as a host-order u32. */
  addr: number;
  port: number;
}

export interface MkfsOptions {
  metaPath: string;
  dataPath: string;
  slots: QuorumSlotSpec[];
  maxMetaSize?: bigint;
  maxDataSize?: bigint;
  dataAllocZoneBlocks?: bigint;
  fmtVers?: number;
  force?: boolean;
  allowSmallSize?: boolean;
  /** Fixed identity and time, for reproducible test volumes. */
  fsid?: bigint;
  uuid?: Uint8Array;
  now?: { sec: bigint; nsec: number };
}

export interface MkfsIO {
  out: (line: string) => void;
  warn: (line: string) => void;
}

export interface MkfsResult {
  fsid: bigint;
  uuid: string;
  totalMetaBlocks: bigint;
  totalDataBlocks: bigint;
}

export const MIN_DEVICE_BYTES = 64n * 1024n * 1024n * 1024n;
/** 64 MiB of single blocks handed to the server's first transactions. */
export const INITIAL_SERVER_AVAIL_BLOCKS = (64 * 1024 * 1024) >> C.BLOCK_LG_SHIFT;
/** Blocks mkfs uses before the free metadata extents start: fs_root, list, listed, 3 alloc roots. */
const META_RESERVED_END = C.META_DEV_START_BLKNO + 2 + INITIAL_SERVER_AVAIL_BLOCKS + 3;
/** Each of the two meta_alloc trees must start with at least one free block. */
export const MIN_META_BLOCKS = BigInt(META_RESERVED_END + 2); // 1033
export const MIN_DATA_BLOCKS = BigInt(C.DATA_DEV_START_BLKNO + 1); // 65

/** Parse "NR,ADDR,PORT" as scoutfs(8) describes; errors name the bad token. */
export function parseQuorumSlot(arg: string): QuorumSlotSpec {
  const m = /^(\d+),([^,]+),(\d+)$/.exec(arg);
  if (!m) throw new ScoutfsError("EINVAL", `quorum slot '${arg}' is not NR,ADDR,PORT (for example 0,192.168.1.10,5000)`);
  const nr = Number(m[1]);
  if (!Number.isInteger(nr) || nr < 0 || nr >= C.QUORUM_MAX_SLOTS) {
    throw new ScoutfsError("EINVAL", `invalid nr '${m[1]}' in quorum slot '${arg}', must be between 0 and ${C.QUORUM_MAX_SLOTS - 1}`);
  }
  const port = Number(m[3]);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new ScoutfsError("EINVAL", `invalid ipv4 port '${m[3]}' in quorum slot '${arg}', must be between 1 and 65535`);
  }
  const addr = parseIpv4(m[2]!);
  if (addr === null || addr === 0 || addr === 0xffffffff) {
    throw new ScoutfsError("EINVAL", `invalid ipv4 address '${m[2]}' in quorum slot '${arg}'`);
  }
  return { nr, addr, port };
}

/** Dotted-quad IPv4 to a host-order u32, or null. */
export function parseIpv4(s: string): number | null {
  const parts = s.split(".");
  if (parts.length !== 4) return null;
  let v = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    v = v * 256 + n;
  }
  return v >>> 0;
}

/** Check a set of slots: at least one, unique numbers, unique addresses. */
export function validateSlots(slots: readonly QuorumSlotSpec[]): void {
  if (slots.length === 0) throw new ScoutfsError("EINVAL", "must specify at least one quorum slot with --quorum-slot|-Q");
  const byNr = new Map<number, QuorumSlotSpec>();
  for (const s of slots) {
    if (byNr.has(s.nr)) throw new ScoutfsError("EINVAL", `quorum slot ${s.nr} is specified more than once`);
    byNr.set(s.nr, s);
  }
  const byAddr = new Map<string, number>();
  for (const s of [...slots].sort((a, b) => a.nr - b.nr)) {
    const a = `${ipv4ToString(s.addr)}:${s.port}`;
    const other = byAddr.get(a);
    if (other !== undefined) throw new ScoutfsError("EINVAL", `quorum slot nr ${other} and ${s.nr} have the same address ${a}`);
    byAddr.set(a, s.nr);
  }
}

function limitSize(dev: Device, max: bigint | undefined, allowSmall: boolean, use: "meta" | "data", io: MkfsIO): bigint {
  let size = dev.sizeBytes;
  if (max !== undefined && max !== 0n) {
    if (size > max) {
      io.out(`Limiting use of ${baseSize(size)} ${use} device to ${baseSize(max)}`);
      size = max;
    } else if (size < max) {
      io.out(`Device size limit of ${baseSize(max)} for ${use} device is greater than ${baseSize(size)} available, ignored.`);
    }
  }
  if (size < MIN_DEVICE_BYTES) {
    const msg = `${baseSize(size)} too small for min ${baseSize(MIN_DEVICE_BYTES)} ${use} device`;
    if (!allowSmall) {
      throw new ScoutfsError("EINVAL", `${use} device '${dev.path}': ${msg}`, "use -A (--allow-small-size) for test volumes");
    }
    io.warn(`${msg}, allowing with -A`);
  }
  return size;
}

function checkDataAllocZoneBlocks(totalDataBlocks: bigint, zone: bigint): void {
  const target = BigInt(C.SERVER_DATA_FILL_TARGET);
  if (zone < target) {
    throw new ScoutfsError("EINVAL", `setting data_alloc_zone_blocks to '${zone}' failed, must be at least ${target} mount data allocation target blocks`);
  }
  const nr = totalDataBlocks / BigInt(C.DATA_ALLOC_MAX_ZONES);
  if (zone < nr) {
    throw new ScoutfsError("EINVAL", `setting data_alloc_zone_blocks to '${zone}' failed, must be greater than ${nr} blocks which results in max ${C.DATA_ALLOC_MAX_ZONES} zones`);
  }
  if (zone > totalDataBlocks) {
    throw new ScoutfsError("EINVAL", `setting data_alloc_zone_blocks to '${zone}' failed, must be at most ${totalDataBlocks} total data device blocks`);
  }
}

function refuseExisting(dev: Device, use: "meta" | "data"): void {
  const p = probeDevice(dev);
  if (p.kind === "none") return;
  const what = p.kind === "scoutfs" ? `an existing ScoutFS ${p.meta ? "metadata" : "data"} superblock` : `an existing ${p.name} signature`;
  throw new ScoutfsError("EEXIST", `${use} device '${dev.path}' appears to contain ${what}`, "use -f (--force) to overwrite it");
}

/** A single-leaf free extent btree holding [start, start+len): indexed by blkno and by order. */
function allocLeaf(start: bigint, len: bigint): BuildItem[] {
  const end = start + len - 1n;
  return [
    { key: makeKey(C.FREE_EXTENT_BLKNO_ZONE, end, 0, len), seq: 1n, flags: 0, val: null },
    { key: makeKey(C.FREE_EXTENT_ORDER_ZONE, C.U64_MAX - freeExtentOrder(len), 0, end, len), seq: 1n, flags: 0, val: null },
  ];
}

function allocRoot(blkno: bigint, len: bigint): AllocRoot {
  return { total_len: len, flags: 0, _pad: 0, root: { ref: { blkno, seq: 1n }, height: 1 } };
}

export function mkfs(opts: MkfsOptions, io: MkfsIO): MkfsResult {
  const fmtVers = opts.fmtVers ?? C.FORMAT_VERSION_MAX;
  if (!Number.isInteger(fmtVers) || fmtVers < C.FORMAT_VERSION_MIN || fmtVers > C.FORMAT_VERSION_MAX) {
    throw new ScoutfsError("EINVAL", `format-version ${fmtVers} is outside supported range of ${C.FORMAT_VERSION_MIN}-${C.FORMAT_VERSION_MAX}`);
  }
  validateSlots(opts.slots);
  if (opts.dataAllocZoneBlocks === 0n) throw new ScoutfsError("EINVAL", "must provide non-zero data-alloc-zone-blocks");

  const meta = Device.open(opts.metaPath, { write: true, exclusive: true });
  let data: Device | undefined;
  try {
    data = Device.open(opts.dataPath, { write: true, exclusive: true });
    if (meta.sameAs(data)) {
      throw new ScoutfsError("EINVAL", `metadata and data device are the same file '${opts.metaPath}'; scoutfs needs two devices`);
    }
    if (!opts.force) {
      refuseExisting(meta, "meta");
      refuseExisting(data, "data");
    }
    const maxMeta = opts.maxMetaSize === undefined ? undefined : opts.maxMetaSize & ~BigInt(C.BLOCK_LG_SIZE - 1);
    const maxData = opts.maxDataSize === undefined ? undefined : opts.maxDataSize & ~BigInt(C.BLOCK_SM_SIZE - 1);
    if (maxMeta !== undefined && maxMeta !== opts.maxMetaSize) io.warn(`Meta dev size ${opts.maxMetaSize} rounded down to ${maxMeta} bytes`);
    if (maxData !== undefined && maxData !== opts.maxDataSize) io.warn(`Data dev size ${opts.maxDataSize} rounded down to ${maxData} bytes`);
    const metaSize = limitSize(meta, maxMeta, !!opts.allowSmallSize, "meta", io);
    const dataSize = limitSize(data, maxData, !!opts.allowSmallSize, "data", io);

    const totalMeta = metaSize >> BigInt(C.BLOCK_LG_SHIFT);
    const totalData = dataSize >> BigInt(C.BLOCK_SM_SHIFT);
    if (totalMeta < MIN_META_BLOCKS) {
      throw new ScoutfsError("ENOSPC", `meta device '${meta.path}' of ${baseSize(metaSize)} cannot hold a volume: at least ${blocksSize(MIN_META_BLOCKS, C.BLOCK_LG_SIZE)} 64KB blocks are needed`);
    }
    if (totalData < MIN_DATA_BLOCKS) {
      throw new ScoutfsError("ENOSPC", `data device '${data.path}' of ${baseSize(dataSize)} cannot hold a volume: at least ${blocksSize(MIN_DATA_BLOCKS, C.BLOCK_SM_SIZE)} 4KB blocks are needed`);
    }
    if (opts.dataAllocZoneBlocks !== undefined) checkDataAllocZoneBlocks(totalData, opts.dataAllocZoneBlocks);

    return writeVolume(meta, data, opts, fmtVers, totalMeta, totalData, io);
  } finally {
    meta.close();
    data?.close();
  }
}

function randomNonZero64(): bigint {
  for (;;) {
    const v = view(randomBytes(8)).getBigUint64(0, true);
    if (v !== 0n) return v;
  }
}

function randomUuidV4(): Uint8Array {
  const u = new Uint8Array(randomBytes(16));
  u[6] = (u[6]! & 0x0f) | 0x40;
  u[8] = (u[8]! & 0x3f) | 0x80;
  return u;
}

function writeVolume(
  meta: Device, data: Device, opts: MkfsOptions, fmtVers: number, totalMeta: bigint, totalData: bigint, io: MkfsIO,
): MkfsResult {
  const fsid = opts.fsid ?? randomNonZero64();
  const uuid = opts.uuid ?? randomUuidV4();
  const now = opts.now ?? (() => {
    const ms = Date.now();
    return { sec: BigInt(Math.floor(ms / 1000)), nsec: (ms % 1000) * 1_000_000 };
  })();

  const sup: Super = SuperBlock.zero();
  sup.fmt_vers = BigInt(fmtVers);
  sup.uuid = uuid;
  sup.next_ino = BigInt(C.LOCK_INODE_GROUP_NR); // round_up(ROOT_INO + 1, group)
  sup.inode_count = 1n;
  sup.seq = 1n;
  sup.total_meta_blocks = totalMeta;
  sup.total_data_blocks = totalData;
  sup.qconf.version = 1n;
  for (const s of opts.slots) sup.qconf.slots[s.nr] = { family: C.AF_IPV4, port: s.port, addr: s.addr };
  if (opts.dataAllocZoneBlocks !== undefined) {
    sup.volopt.set_bits |= C.VOLOPT_DATA_ALLOC_ZONE_BLOCKS_BIT;
    sup.volopt.data_alloc_zone_blocks = opts.dataAllocZoneBlocks;
  }

  let next = BigInt(C.META_DEV_START_BLKNO);
  const lastMeta = totalMeta - 1n;
  const firstData = BigInt(C.DATA_DEV_START_BLKNO);
  const lastData = totalData - 1n;

  // fs_root: the root inode and its meta_seq index item
  const inode = Inode.zero();
  inode.next_readdir_pos = C.DIRENT_FIRST_POS;
  inode.nlink = 2;
  inode.mode = 0o040755;
  inode.atime = inode.ctime = inode.mtime = inode.crtime = { sec: now.sec, nsec: now.nsec };
  const inodeVal = Inode.encode(inode).subarray(0, inodeVersBytes(fmtVers));
  const fsRootBlkno = next++;
  const fsRoot = buildBtreeBlock(0, [
    { key: makeKey(C.INODE_INDEX_ZONE, 0n, C.INODE_INDEX_META_SEQ_TYPE, 0n, C.ROOT_INO), seq: 1n, flags: 0, val: null },
    { key: makeKey(C.FS_ZONE, C.ROOT_INO, C.INODE_TYPE), seq: 1n, flags: 0, val: inodeVal },
  ]);
  sup.fs_root = { ref: { blkno: fsRootBlkno, seq: 1n }, height: 1 };

  // the server's first avail list
  const listBlkno = next++;
  const list = new Uint8Array(C.BLOCK_LG_SIZE);
  const ldv = view(list);
  for (let i = 0; i < INITIAL_SERVER_AVAIL_BLOCKS; i++) ldv.setBigUint64(ALLOC_LIST_BLKNOS_OFF + i * 8, next++, true);
  ldv.setUint32(AllocListBlock.off.nr, INITIAL_SERVER_AVAIL_BLOCKS, true);
  sup.server_meta_avail[0] = {
    ref: { blkno: listBlkno, seq: 1n },
    total_nr: BigInt(INITIAL_SERVER_AVAIL_BLOCKS),
    first_nr: INITIAL_SERVER_AVAIL_BLOCKS,
    flags: 0,
  };

  // data allocator: one extent over the whole data device
  const dataAllocBlkno = next++;
  const dataLen = lastData - firstData + 1n;
  const dataAlloc = buildBtreeBlock(0, allocLeaf(firstData, dataLen));
  sup.data_alloc = allocRoot(dataAllocBlkno, dataLen);

  // meta allocators: the rest of the metadata device, split between the two roots
  const metaAllocBlknos = [next++, next++];
  let metaStart = next;
  const metaLen = (lastMeta - metaStart + 1n + 1n) / 2n;
  const metaAllocs = metaAllocBlknos.map((blkno, i) => {
    const len = metaLen < lastMeta - metaStart + 1n ? metaLen : lastMeta - metaStart + 1n;
    const blk = buildBtreeBlock(0, allocLeaf(metaStart, len));
    sup.meta_alloc[i] = allocRoot(blkno, len);
    metaStart += metaLen;
    return { blkno, blk };
  });

  const LG = C.BLOCK_LG_SHIFT;
  meta.write(fsRootBlkno, LG, sealBlock(fsRoot, C.BLOCK_MAGIC_BTREE, fsid, 1n, fsRootBlkno));
  meta.write(listBlkno, LG, sealBlock(list, C.BLOCK_MAGIC_ALLOC_LIST, fsid, 1n, listBlkno));
  meta.write(dataAllocBlkno, LG, sealBlock(dataAlloc, C.BLOCK_MAGIC_BTREE, fsid, 1n, dataAllocBlkno));
  for (const m of metaAllocs) meta.write(m.blkno, LG, sealBlock(m.blk, C.BLOCK_MAGIC_BTREE, fsid, 1n, m.blkno));
  for (let i = 0; i < C.QUORUM_BLOCKS; i++) {
    const blkno = BigInt(C.QUORUM_BLKNO + i);
    meta.write(blkno, C.BLOCK_SM_SHIFT, sealBlock(new Uint8Array(C.BLOCK_SM_SIZE), C.BLOCK_MAGIC_QUORUM, fsid, 1n, blkno));
  }
  meta.sync();

  const superBuf = (flags: bigint) => {
    sup.flags = flags;
    const b = SuperBlock.encode(sup, new Uint8Array(C.BLOCK_SM_SIZE));
    return sealBlock(b, C.BLOCK_MAGIC_SUPER, fsid, 1n, BigInt(C.SUPER_BLKNO));
  };
  data.write(C.SUPER_BLKNO, C.BLOCK_SM_SHIFT, superBuf(0n));
  data.sync();
  meta.write(C.SUPER_BLKNO, C.BLOCK_SM_SHIFT, superBuf(C.FLAG_IS_META_BDEV));
  meta.sync();

  const uuidStr = uuidToString(uuid);
  const slotLines = opts.slots
    .slice()
    .sort((a, b) => a.nr - b.nr)
    .map((s, i) => `${i === 0 ? "" : " ".repeat(26)}${s.nr}: ${ipv4ToString(s.addr)}:${s.port}`);
  io.out(
    [
      "Created scoutfs filesystem:",
      `  meta device path:       ${opts.metaPath}`,
      `  data device path:       ${opts.dataPath}`,
      `  fsid:                   ${fsid.toString(16)}`,
      `  uuid:                   ${uuidStr}`,
      `  format version:         ${fmtVers}`,
      `  64KB metadata blocks:   ${blocksSize(totalMeta, C.BLOCK_LG_SIZE)}`,
      `  4KB data blocks:        ${blocksSize(totalData, C.BLOCK_SM_SIZE)}`,
      `  quorum config version:  1`,
      `  quorum slots:           ${slotLines.join("\n")}`,
    ].join("\n"),
  );
  return { fsid, uuid: uuidStr, totalMetaBlocks: totalMeta, totalDataBlocks: totalData };
}
