/**
 * Devices: a metadata or data device that is a block device or a plain (usually sparse) image
 * file. Sizes come from fstat for files and from the BLKGETSIZE64 ioctl for block devices.
 * Blocks are read and written at the scoutfs offsets: small (4 KiB) block N at N << 12, large
 * (64 KiB) block N at N << 16.
 *
 * Reads of metadata blocks are verified (crc, magic, fsid, blkno and, given a ref, seq) and
 * return a typed result instead of throwing, because bad bytes on a disk are an expected event
 * for a filesystem, not a bug: callers decide whether that is EIO, a stale read to retry, or a
 * line in `print`.
 */
import * as fs from "node:fs";
import { dlopen, FFIType, ptr } from "bun:ffi";
import { BlockHeader } from "../format/block.ts";
import { blockCrc } from "../format/crc.ts";
import { view } from "../format/struct.ts";
import { BLOCK_LG_SHIFT, BLOCK_SM_SHIFT } from "../format/constants.ts";
import { ScoutfsError, fromSystemError } from "../util/errors.ts";

const BLKGETSIZE64 = 0x80081272;

let libc: { symbols: { ioctl: (fd: number, req: number, arg: unknown) => number } } | null = null;
function ioctlGetSize64(fd: number): bigint {
  libc ??= dlopen("libc.so.6", {
    ioctl: { args: [FFIType.i32, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
  }) as unknown as typeof libc;
  const out = new BigUint64Array(1);
  const rc = libc!.symbols.ioctl(fd, BLKGETSIZE64, ptr(out));
  if (rc !== 0) throw new ScoutfsError("EIO", "BLKGETSIZE64 ioctl failed");
  return out[0]!;
}

export type DeviceKind = "file" | "block";

/**
 * Flushes (sync) per device path since the last takeFlushStats(), and their time in ms: what a
 * commit costs in cache flushes, for benchmarks and diagnostics (two numbers per flush).
 */
const flushStats = new Map<string, { flushes: number; ms: number }>();

/** The flush counts and times since the last call, by device path; resets them. */
export function takeFlushStats(): Record<string, { flushes: number; ms: number }> {
  const out = Object.fromEntries(flushStats);
  flushStats.clear();
  return out;
}

export interface OpenOptions {
  write?: boolean;
  /** Open block devices with O_EXCL so a mounted or otherwise claimed device is refused. */
  exclusive?: boolean;
}

export class Device {
  private constructor(
    readonly path: string,
    readonly fd: number,
    readonly kind: DeviceKind,
    readonly sizeBytes: bigint,
    readonly dev: number,
    readonly ino: number,
    readonly writable: boolean,
  ) {}

  static open(path: string, opts: OpenOptions = {}): Device {
    let st: fs.Stats;
    try {
      st = fs.statSync(path);
    } catch (err) {
      throw fromSystemError(err, `cannot open device '${path}'`);
    }
    let kind: DeviceKind;
    if (st.isFile()) kind = "file";
    else if (st.isBlockDevice()) kind = "block";
    else throw new ScoutfsError("EINVAL", `'${path}' is not a regular file or block device`);

    let flags = opts.write ? fs.constants.O_RDWR : fs.constants.O_RDONLY;
    if (opts.exclusive && kind === "block") flags |= fs.constants.O_EXCL;
    let fd: number;
    try {
      fd = fs.openSync(path, flags);
    } catch (err) {
      const e = fromSystemError(err, `cannot open device '${path}'`);
      if (e.code === "EBUSY") throw new ScoutfsError("EBUSY", `device '${path}' is busy (mounted or in use)`);
      throw e;
    }
    try {
      const size = kind === "file" ? BigInt(st.size) : ioctlGetSize64(fd);
      return new Device(path, fd, kind, size, st.dev, st.ino, !!opts.write);
    } catch (err) {
      fs.closeSync(fd);
      throw fromSystemError(err, `cannot size device '${path}'`);
    }
  }

  /** True when both paths name the same file or device node. */
  sameAs(other: Device): boolean {
    return this.dev === other.dev && this.ino === other.ino;
  }

  readAt(buf: Uint8Array, offset: number): void {
    let done = 0;
    while (done < buf.length) {
      let n: number;
      try {
        n = fs.readSync(this.fd, buf, done, buf.length - done, offset + done);
      } catch (err) {
        throw fromSystemError(err, `read of ${buf.length} bytes at ${offset} on '${this.path}' failed`);
      }
      if (n === 0) {
        throw new ScoutfsError("EIO", `short read on '${this.path}': ${done} of ${buf.length} bytes at offset ${offset} (device too small?)`);
      }
      done += n;
    }
  }

  writeAt(buf: Uint8Array, offset: number): void {
    if (!this.writable) throw new ScoutfsError("EROFS", `'${this.path}' was opened read-only`);
    let done = 0;
    while (done < buf.length) {
      let n: number;
      try {
        n = fs.writeSync(this.fd, buf, done, buf.length - done, offset + done);
      } catch (err) {
        throw fromSystemError(err, `write of ${buf.length} bytes at ${offset} on '${this.path}' failed`);
      }
      if (n === 0) throw new ScoutfsError("EIO", `short write on '${this.path}' at offset ${offset + done}`);
      done += n;
    }
  }

  read(blkno: number | bigint, shift: number): Uint8Array {
    const buf = new Uint8Array(1 << shift);
    this.readAt(buf, blockOffset(blkno, shift));
    return buf;
  }

  write(blkno: number | bigint, shift: number, buf: Uint8Array): void {
    if (buf.length !== 1 << shift) throw new RangeError(`block buffer of ${buf.length} bytes for shift ${shift}`);
    this.writeAt(buf, blockOffset(blkno, shift));
  }

  /**
   * Make everything written so far durable. fdatasync: the file's data and what is needed to read
   * it back (its size, its block map), not its timestamps. On an image file, fsync also forced a
   * journal commit of the host filesystem for every mtime change; on a block device both are the
   * same cache flush.
   */
  sync(): void {
    const t0 = performance.now();
    try {
      fs.fdatasyncSync(this.fd);
    } catch (err) {
      throw fromSystemError(err, `fsync of '${this.path}' failed`);
    }
    const st = flushStats.get(this.path);
    const ms = performance.now() - t0;
    if (st === undefined) flushStats.set(this.path, { flushes: 1, ms });
    else {
      st.flushes++;
      st.ms += ms;
    }
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

export function blockOffset(blkno: number | bigint, shift: number): number {
  const off = BigInt(blkno) << BigInt(shift);
  if (off > BigInt(Number.MAX_SAFE_INTEGER)) throw new ScoutfsError("EINVAL", `block ${blkno} is beyond the supported device size`);
  return Number(off);
}

/** Fill in a block's header (magic, fsid, seq, blkno) and its crc, in place. */
export function sealBlock(buf: Uint8Array, magic: number, fsid: bigint, seq: bigint, blkno: bigint): Uint8Array {
  const dv = view(buf);
  dv.setUint32(BlockHeader.off.magic, magic, true);
  dv.setBigUint64(BlockHeader.off.fsid, fsid, true);
  dv.setBigUint64(BlockHeader.off.seq, seq, true);
  dv.setBigUint64(BlockHeader.off.blkno, blkno, true);
  dv.setUint32(BlockHeader.off.crc, blockCrc(buf), true);
  return buf;
}

export type VerifyFailure = "crc" | "magic" | "fsid" | "blkno" | "seq";

export interface Expect {
  magic: number;
  /** 0n skips the fsid check (the first read of a super block learns it). */
  fsid: bigint;
  blkno: bigint;
  /** Given with a ref: the block must carry exactly this seq. */
  seq?: bigint;
}

export type Verified =
  | { ok: true; buf: Uint8Array; hdr: BlockHeader }
  | { ok: false; reason: VerifyFailure; buf: Uint8Array; hdr: BlockHeader; message: string };

/** Check a block's header against what the reader expected. */
export function verifyBlock(buf: Uint8Array, want: Expect): Verified {
  const hdr = BlockHeader.decode(buf);
  const crc = blockCrc(buf);
  const bad = (reason: VerifyFailure, message: string): Verified => ({ ok: false, reason, buf, hdr, message });
  if (crc !== hdr.crc) return bad("crc", `block ${want.blkno} crc ${hex32(hdr.crc)} does not match computed ${hex32(crc)}`);
  if (hdr.magic !== want.magic) return bad("magic", `block ${want.blkno} has magic ${hex32(hdr.magic)}, expected ${hex32(want.magic)}`);
  if (want.fsid !== 0n && hdr.fsid !== want.fsid) return bad("fsid", `block ${want.blkno} has fsid ${hdr.fsid.toString(16)}, expected ${want.fsid.toString(16)}`);
  if (hdr.blkno !== want.blkno) return bad("blkno", `block ${want.blkno} claims to be block ${hdr.blkno}`);
  if (want.seq !== undefined && hdr.seq !== want.seq) return bad("seq", `block ${want.blkno} has seq ${hdr.seq}, expected ${want.seq} (stale or overwritten)`);
  return { ok: true, buf, hdr };
}

export function readVerified(dev: Device, shift: number, want: Expect): Verified {
  return verifyBlock(dev.read(want.blkno, shift), want);
}

export function hex32(v: number): string {
  return (v >>> 0).toString(16).padStart(8, "0");
}

export { BLOCK_LG_SHIFT, BLOCK_SM_SHIFT };
