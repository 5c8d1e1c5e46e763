/**
 * File data: extent items mapping logical 4 KiB blocks to blocks of the data device.
 *
 * An extent is one DATA_EXTENT item of its inode keyed by (last logical block, length) whose
 * value is `struct scoutfs_data_extent_val` (blkno, flags). Extents never overlap. The mapping
 * kinds, and how they count in the inode's block counts (as scoutfs's add_onoff counts them):
 * - map != 0, flags 0: written data ............................. online_blocks
 * - map != 0, SEF_UNWRITTEN: allocated, reads as zeros (fallocate) . neither
 * - map == 0, SEF_OFFLINE: contents archived offline (release) ..... offline_blocks
 * - no extent: a hole, reads as zeros.
 * `extSet` keeps the scoutfs shape: after any change, neighbours that are logically contiguous,
 * have contiguous (or both no) mappings and equal flags are merged into one item; a range set to
 * map 0 and flags 0 simply has no items.
 *
 * Invariants the write paths keep: bytes of a mapped written block beyond i_size are zero (so
 * growing a file never exposes old bytes); a block is written to the device before (in the same
 * transaction as) the extent that makes it readable. Freed blocks go back to store.data, which
 * reuses them only after the transaction commits.
 *
 * Content changes (write, truncate, punch, zero range, size growth by fallocate) bump
 * data_version; write and truncate also move data_seq (the caller saves with {data: true}).
 * Reading or writing an offline region raises DataOfflineError; staging and waiting for offline
 * data (scoutfs data-wait) belong to the archive layer.
 */
import { BLOCK_SM_SHIFT, BLOCK_SM_SIZE, SEF_OFFLINE, SEF_UNWRITTEN } from "../format/constants.ts";
import { DataExtentVal } from "../format/items.ts";
import type { ItemReader } from "../item/types.ts";
import { ScoutfsError } from "../util/errors.ts";
import { assert } from "../util/assert.ts";
import { fsFail } from "./errors.ts";
import { type FsInode, inodeAddOnoff, isReg } from "./inode.ts";
import { dataExtentKey, dataExtentLastKey, keySecond, keyThird } from "./keys.ts";
import type { Tx } from "./trans.ts";

const BS = BigInt(BLOCK_SM_SIZE);
const SHIFT = BigInt(BLOCK_SM_SHIFT);
/** Largest file size we accept: byte offsets stay exact JavaScript numbers. */
export const MAX_FILE_BYTES = 2 ** 53 - BLOCK_SM_SIZE;
/** Blocks asked of the data allocator at once. */
const ALLOC_CHUNK_BLOCKS = 8192n;

export class DataOfflineError extends ScoutfsError {
  constructor(
    readonly ino: bigint,
    readonly iblock: bigint,
  ) {
    super("EIO", `inode ${ino}: block ${iblock} is offline`);
  }
}

export interface Ext {
  start: bigint;
  len: bigint;
  map: bigint;
  flags: number;
}

const extEnd = (e: Ext): bigint => e.start + e.len - 1n;

// Extent values go through a scratch buffer (a DataView over the item value would ask for its
// `.buffer`: an allocation and a copy for the small typed arrays items live in).
const escratch = new Uint8Array(DataExtentVal.size);
const edv = new DataView(escratch.buffer);

function extDecode(ino: bigint, key: string, val: Uint8Array): Ext {
  if (val.length !== DataExtentVal.size) fsFail("EIO", `inode ${ino}: data extent value of ${val.length} bytes`);
  const last = keySecond(key);
  const len = keyThird(key);
  if (len === 0n || len > last + 1n) fsFail("EIO", `inode ${ino}: data extent ${last}/${len}`);
  escratch.set(val);
  return { start: last - len + 1n, len, map: edv.getBigUint64(DataExtentVal.off.blkno, true), flags: escratch[DataExtentVal.off.flags]! };
}

function extEncode(map: bigint, flags: number): Uint8Array {
  escratch.fill(0);
  edv.setBigUint64(DataExtentVal.off.blkno, BigInt.asUintN(64, map), true);
  escratch[DataExtentVal.off.flags] = flags;
  return escratch.slice();
}

/** The first extent that ends at or after `iblock` (it may start after it), or null. */
export function extNext(r: ItemReader, ino: bigint, iblock: bigint): Ext | null {
  const it = r.next(dataExtentKey(ino, iblock, 0n), dataExtentLastKey(ino));
  return it === null ? null : extDecode(ino, it.key, it.val);
}

/** All extents of an inode (tests, printing). */
export function extAll(r: ItemReader, ino: bigint): Ext[] {
  const out: Ext[] = [];
  for (let e = extNext(r, ino, 0n); e !== null; e = extNext(r, ino, extEnd(e) + 1n)) out.push(e);
  return out;
}

function onoff(e: Ext, sign: bigint): [bigint, bigint] {
  if (e.map !== 0n && !(e.flags & SEF_UNWRITTEN)) return [sign * e.len, 0n];
  if (e.flags & SEF_OFFLINE) return [0n, sign * e.len];
  return [0n, 0n];
}

function extInsert(tx: Tx, inode: FsInode, e: Ext): void {
  assert(e.len > 0n, "inserting an empty extent");
  tx.w.create(dataExtentKey(inode.ino, extEnd(e), e.len), extEncode(e.map, e.flags));
  const [on, off] = onoff(e, 1n);
  inodeAddOnoff(inode, on, off);
}

function extRemove(tx: Tx, inode: FsInode, e: Ext): void {
  tx.w.delete(dataExtentKey(inode.ino, extEnd(e), e.len));
  const [on, off] = onoff(e, -1n);
  inodeAddOnoff(inode, on, off);
}

function canMerge(l: Ext, r: Ext): boolean {
  return l.start + l.len === r.start && ((l.map === 0n && r.map === 0n) || (l.map !== 0n && l.map + l.len === r.map)) && l.flags === r.flags;
}

/**
 * Map logical blocks [start, start+len) to `map` (0: unmapped) with `flags`, replacing whatever
 * mapped them (the caller frees replaced blocks first), and merge with neighbours. `noneFrom`:
 * the caller just found that no extent ends at or after `start` (a write past the last extent:
 * every append, every write of a new file), so there is nothing to replace and no right
 * neighbour, and their two searches are skipped.
 */
export function extSet(tx: Tx, inode: FsInode, start: bigint, len: bigint, map: bigint, flags: number, noneFrom = false): void {
  assert(len > 0n, "extSet of nothing");
  const end = start + len - 1n;
  for (let e = noneFrom ? null : extNext(tx.w, inode.ino, start); e !== null && e.start <= end; e = extNext(tx.w, inode.ino, end + 1n)) {
    extRemove(tx, inode, e);
    if (e.start < start) extInsert(tx, inode, { start: e.start, len: start - e.start, map: e.map, flags: e.flags });
    if (extEnd(e) > end) {
      const skip = end + 1n - e.start;
      extInsert(tx, inode, { start: end + 1n, len: extEnd(e) - end, map: e.map === 0n ? 0n : e.map + skip, flags: e.flags });
    }
  }
  if (map === 0n && flags === 0) return;
  const set: Ext = { start, len, map, flags };
  if (start > 0n) {
    const l = extNext(tx.w, inode.ino, start - 1n);
    if (l !== null && l.start <= start - 1n && canMerge(l, set)) {
      extRemove(tx, inode, l);
      set.start = l.start;
      set.map = l.map;
      set.len += l.len;
    }
  }
  const r = noneFrom ? null : extNext(tx.w, inode.ino, end + 1n);
  if (r !== null && r.start === end + 1n && canMerge(set, r)) {
    extRemove(tx, inode, r);
    set.len += r.len;
  }
  extInsert(tx, inode, set);
}

/**
 * Free the blocks of logical blocks [first, last] and remove their extents, visiting at most
 * `limit` extents. Returns true when the range is done.
 */
export function dataFreeBlocks(tx: Tx, inode: FsInode, first: bigint, last: bigint, limit = Number.MAX_SAFE_INTEGER): boolean {
  let ib = first;
  for (let n = 0; ib <= last; n++) {
    if (n === limit) return false;
    const e = extNext(tx.w, inode.ino, ib);
    if (e === null || e.start > last) return true;
    const s = e.start > ib ? e.start : ib;
    const en = extEnd(e) < last ? extEnd(e) : last;
    const cnt = en - s + 1n;
    if (e.map !== 0n) tx.store.data.free(e.map + (s - e.start), cnt);
    // a whole extent simply goes (what extSet to nothing does for it, without looking it and
    // its successor up again: two item searches less per extent of a deleted file)
    if (s === e.start && en === extEnd(e)) extRemove(tx, inode, e);
    else extSet(tx, inode, s, cnt, 0n, 0);
    ib = en + 1n;
  }
  return true;
}

/** Allocate up to `want` blocks (at least 1). */
function allocBlocks(tx: Tx, want: bigint): { start: bigint; len: bigint } {
  const got = tx.store.data.alloc(want < ALLOC_CHUNK_BLOCKS ? want : ALLOC_CHUNK_BLOCKS);
  assert(got.len > 0n && got.len <= want, `data allocator returned ${got.len} of ${want} blocks`);
  return got;
}

function checkRegular(inode: FsInode): void {
  if (!isReg(inode.v.mode)) fsFail("EINVAL", `inode ${inode.ino} is not a regular file`);
}

// ---------------------------------------------------------------------------------------------
// Reading.

/**
 * Read up to `size` bytes at `offset` (fewer at end of file). The blocks covering the range are
 * read straight into one buffer (holes and unwritten extents stay zero) and the requested bytes
 * are returned as a view of it: no second buffer, no copy.
 */
export function dataRead(tx: { w: ItemReader; store: Tx["store"] }, inode: FsInode, offset: number, size: number): Uint8Array {
  checkRegular(inode);
  const isize = Number(inode.v.size);
  if (offset >= isize || size <= 0) return new Uint8Array(0);
  const len = Math.min(size, isize - offset);
  const firstN = Math.floor(offset / BLOCK_SM_SIZE);
  const lastN = Math.floor((offset + len - 1) / BLOCK_SM_SIZE);
  // not zeroed: the extents fill it, and only what they leave (holes, unwritten) is zeroed
  const buf: Uint8Array = Buffer.allocUnsafe((lastN - firstN + 1) * BLOCK_SM_SIZE);
  let filled = 0;
  const first = BigInt(firstN);
  const last = BigInt(lastN);
  // an extent reaching `last` is the final one: no lookup past it (a 4 KiB read is one lookup)
  for (let e = extNext(tx.w, inode.ino, first); e !== null && e.start <= last; e = extEnd(e) >= last ? null : extNext(tx.w, inode.ino, extEnd(e) + 1n)) {
    const s = e.start > first ? e.start : first;
    const en = extEnd(e) < last ? extEnd(e) : last;
    if (e.map === 0n) {
      if (e.flags & SEF_OFFLINE) throw new DataOfflineError(inode.ino, s);
      continue;
    }
    if (e.flags & SEF_UNWRITTEN) continue;
    const cnt = Number(en - s + 1n);
    const at = Number(s - first) * BLOCK_SM_SIZE;
    if (at > filled) buf.fill(0, filled, at);
    tx.store.data.read(e.map + (s - e.start), cnt, buf.subarray(at, at + cnt * BLOCK_SM_SIZE));
    filled = at + cnt * BLOCK_SM_SIZE;
  }
  if (filled < buf.length) buf.fill(0, filled);
  const skip = offset - firstN * BLOCK_SM_SIZE;
  return skip === 0 && len === buf.length ? buf : buf.subarray(skip, skip + len);
}

// ---------------------------------------------------------------------------------------------
// Writing.

/**
 * Put `data` (covering bytes [byteOff, byteOff+data.length)) into the `cnt` physical blocks at
 * `phys` that hold logical blocks from `ib`. `keep`: the blocks hold valid data whose bytes
 * outside the write must be kept (read-modify-write of partial edge blocks); otherwise those
 * bytes become zeros.
 */
function writeRun(tx: Tx, ib: bigint, cnt: bigint, phys: bigint, byteOff: number, data: Uint8Array, keep: boolean): void {
  const runStart = Number(ib) * BLOCK_SM_SIZE;
  const runLen = Number(cnt) * BLOCK_SM_SIZE;
  const from = Math.max(byteOff, runStart);
  const to = Math.min(byteOff + data.length, runStart + runLen);
  if (from === runStart && to === runStart + runLen) {
    tx.store.data.write(phys, data.subarray(from - byteOff, to - byteOff));
    return;
  }
  const buf = new Uint8Array(runLen);
  if (keep) {
    if (from > runStart) tx.store.data.read(phys, 1, buf.subarray(0, BLOCK_SM_SIZE));
    const lastBlk = runLen - BLOCK_SM_SIZE;
    if (to < runStart + runLen && (lastBlk > 0 || from === runStart)) {
      tx.store.data.read(phys + cnt - 1n, 1, buf.subarray(lastBlk, runLen));
    }
  }
  buf.set(data.subarray(from - byteOff, to - byteOff), from - runStart);
  tx.store.data.write(phys, buf);
}

/**
 * Write `data` at `offset`: allocate holes (as contiguously as the allocator allows), fill
 * unwritten preallocations, overwrite written blocks. Size, times, data_version follow; the
 * caller saves the inode with {data: true}.
 */
export function dataWrite(tx: Tx, inode: FsInode, offset: number, data: Uint8Array, now: { sec: bigint; nsec: number }): number {
  checkRegular(inode);
  if (data.length === 0) return 0;
  const endByte = offset + data.length;
  if (offset < 0 || endByte > MAX_FILE_BYTES) fsFail("EFBIG", `write past ${MAX_FILE_BYTES}`);
  const last = BigInt(endByte - 1) >> SHIFT;
  let ib = BigInt(offset) >> SHIFT;
  while (ib <= last) {
    const e = extNext(tx.w, inode.ino, ib);
    if (e !== null && e.start <= ib && (e.map !== 0n || e.flags & SEF_OFFLINE)) {
      if (e.map === 0n) throw new DataOfflineError(inode.ino, ib);
      const en = extEnd(e) < last ? extEnd(e) : last;
      const cnt = en - ib + 1n;
      const phys = e.map + (ib - e.start);
      if (e.flags & SEF_UNWRITTEN) {
        writeRun(tx, ib, cnt, phys, offset, data, false);
        extSet(tx, inode, ib, cnt, phys, e.flags & ~SEF_UNWRITTEN);
      } else {
        writeRun(tx, ib, cnt, phys, offset, data, true);
      }
      ib = en + 1n;
      continue;
    }
    // A hole up to the next extent (or a stray flag-only extent, which the allocation replaces).
    let holeEnd = last;
    if (e !== null && e.start > ib && e.start - 1n < holeEnd) holeEnd = e.start - 1n;
    if (e !== null && e.start <= ib && extEnd(e) < holeEnd) holeEnd = extEnd(e);
    const got = allocBlocks(tx, holeEnd - ib + 1n);
    writeRun(tx, ib, got.len, got.start, offset, data, false);
    extSet(tx, inode, ib, got.len, got.start, 0, e === null);
    ib += got.len;
  }
  if (BigInt(endByte) > inode.v.size) inode.v.size = BigInt(endByte);
  contentChanged(inode, now);
  return data.length;
}

function contentChanged(inode: FsInode, now: { sec: bigint; nsec: number }): void {
  inode.v.data_version++;
  inode.v.mtime = { sec: now.sec, nsec: now.nsec };
  inode.v.ctime = { sec: now.sec, nsec: now.nsec };
}

/** Zero bytes [from, to) that lie inside one block, if that block holds written data. */
function zeroInBlock(tx: Tx, inode: FsInode, from: number, to: number): void {
  if (from >= to) return;
  const ib = BigInt(from) >> SHIFT;
  assert(BigInt(to - 1) >> SHIFT === ib, "zeroInBlock across blocks");
  const e = extNext(tx.w, inode.ino, ib);
  if (e === null || e.start > ib || e.map === 0n || e.flags & SEF_UNWRITTEN) {
    if (e !== null && e.start <= ib && e.map === 0n && e.flags & SEF_OFFLINE) throw new DataOfflineError(inode.ino, ib);
    return;
  }
  writeRun(tx, ib, 1n, e.map + (ib - e.start), from, new Uint8Array(to - from), true);
}

/**
 * Zero bytes [from, to): partial edge blocks are zeroed in place, whole blocks are freed.
 * Does not change the size.
 */
function zeroBytes(tx: Tx, inode: FsInode, from: number, to: number): void {
  if (from >= to) return;
  const firstWhole = Math.ceil(from / BLOCK_SM_SIZE);
  const endWhole = Math.floor(to / BLOCK_SM_SIZE);
  if (firstWhole >= endWhole) {
    // Inside one block, or straddling one block boundary without a whole block.
    const cut = Math.min(to, firstWhole * BLOCK_SM_SIZE);
    zeroInBlock(tx, inode, from, cut);
    zeroInBlock(tx, inode, Math.max(from, cut), to);
    return;
  }
  zeroInBlock(tx, inode, from, firstWhole * BLOCK_SM_SIZE);
  zeroInBlock(tx, inode, endWhole * BLOCK_SM_SIZE, to);
  dataFreeBlocks(tx, inode, BigInt(firstWhole), BigInt(endWhole - 1));
}

/** setattr size: zero the tail of the new last block, free blocks past it, set the size. */
export function dataTruncate(tx: Tx, inode: FsInode, newSize: number, now: { sec: bigint; nsec: number }): void {
  checkRegular(inode);
  if (newSize < 0 || newSize > MAX_FILE_BYTES) fsFail("EFBIG", `size ${newSize}`);
  const old = Number(inode.v.size);
  if (newSize <= old) {
    const tailEnd = Math.ceil(newSize / BLOCK_SM_SIZE) * BLOCK_SM_SIZE;
    // bytes past the old size are zero already (the invariant): only [newSize, old) needs it,
    // and a truncate to the same size (as every writeFileSync ends) reads and writes nothing
    zeroInBlock(tx, inode, newSize, Math.min(tailEnd, old));
    dataFreeBlocks(tx, inode, BigInt(tailEnd) >> SHIFT, 0xffffffffffffffffn >> SHIFT);
  }
  if (newSize !== old) inode.v.data_version++;
  inode.v.size = BigInt(newSize);
  inode.v.mtime = { sec: now.sec, nsec: now.nsec };
  inode.v.ctime = { sec: now.sec, nsec: now.nsec };
}

export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;
export const FALLOC_FL_ZERO_RANGE = 0x10;

/** Preallocate unwritten blocks over the holes of logical blocks [first, last]. */
function preallocate(tx: Tx, inode: FsInode, first: bigint, last: bigint): void {
  let ib = first;
  while (ib <= last) {
    const e = extNext(tx.w, inode.ino, ib);
    if (e !== null && e.start <= ib && e.map !== 0n) {
      ib = extEnd(e) + 1n;
      continue;
    }
    let holeEnd = last;
    let flags = SEF_UNWRITTEN;
    if (e !== null && e.start <= ib) {
      // An unmapped (offline) extent: keep its flags, as scoutfs does for staging.
      flags |= e.flags;
      if (extEnd(e) < holeEnd) holeEnd = extEnd(e);
    } else if (e !== null && e.start - 1n < holeEnd) {
      holeEnd = e.start - 1n;
    }
    const got = allocBlocks(tx, holeEnd - ib + 1n);
    extSet(tx, inode, ib, got.len, got.start, flags);
    ib += got.len;
  }
}

/**
 * fallocate(2): mode 0 / KEEP_SIZE preallocate; PUNCH_HOLE|KEEP_SIZE frees; ZERO_RANGE zeroes
 * and preallocates. Returns whether contents changed (data_seq moves).
 */
export function dataFallocate(tx: Tx, inode: FsInode, offset: number, length: number, mode: number, now: { sec: bigint; nsec: number }): boolean {
  checkRegular(inode);
  if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) fsFail("EOPNOTSUPP", `fallocate mode ${mode}`);
  if (mode & FALLOC_FL_PUNCH_HOLE && (mode & FALLOC_FL_ZERO_RANGE || !(mode & FALLOC_FL_KEEP_SIZE))) fsFail("EOPNOTSUPP", `fallocate mode ${mode}`);
  if (offset < 0 || length <= 0) fsFail("EINVAL", "fallocate range");
  const end = offset + length;
  if (end > MAX_FILE_BYTES) fsFail("EFBIG", `fallocate past ${MAX_FILE_BYTES}`);
  const isize = Number(inode.v.size);
  let changed = false;
  if (mode & FALLOC_FL_PUNCH_HOLE) {
    zeroBytes(tx, inode, offset, end);
    changed = true;
  } else {
    if (mode & FALLOC_FL_ZERO_RANGE) {
      zeroBytes(tx, inode, offset, end);
      changed = true;
    }
    preallocate(tx, inode, BigInt(offset) >> SHIFT, BigInt(end - 1) >> SHIFT);
    if (!(mode & FALLOC_FL_KEEP_SIZE) && end > isize) {
      inode.v.size = BigInt(end);
      changed = true;
    }
  }
  if (changed) inode.v.data_version++;
  inode.v.ctime = { sec: now.sec, nsec: now.nsec };
  if (changed) inode.v.mtime = { sec: now.sec, nsec: now.nsec };
  return changed;
}

export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;

const isData = (e: Ext): boolean => (e.map !== 0n && !(e.flags & SEF_UNWRITTEN)) || (e.map === 0n && (e.flags & SEF_OFFLINE) !== 0);

/** lseek SEEK_DATA / SEEK_HOLE at block granularity; unwritten preallocations are holes. */
export function dataSeek(r: ItemReader, inode: FsInode, offset: number, whence: number): number {
  checkRegular(inode);
  const isize = Number(inode.v.size);
  if (offset < 0) fsFail("EINVAL", "negative offset");
  if (offset >= isize) fsFail("ENXIO", "offset at or past end of file");
  let ib = BigInt(offset) >> SHIFT;
  if (whence === SEEK_DATA) {
    for (let e = extNext(r, inode.ino, ib); e !== null; e = extNext(r, inode.ino, extEnd(e) + 1n)) {
      if (!isData(e)) continue;
      const pos = Math.max(offset, Number(e.start * BS));
      if (pos >= isize) break;
      return pos;
    }
    return fsFail("ENXIO", "no data past offset");
  }
  if (whence !== SEEK_HOLE) fsFail("EINVAL", `whence ${whence}`);
  for (;;) {
    const e = extNext(r, inode.ino, ib);
    if (e === null || e.start > ib || !isData(e)) break;
    ib = extEnd(e) + 1n;
  }
  return Math.min(isize, Math.max(offset, Number(ib * BS)));
}
