/**
 * The scoutfs inode item and its two inode index items.
 *
 * An inode is one item in the FS zone (key: ino, INODE) whose value is `struct scoutfs_inode`:
 * 168 bytes on format version 2, 160 (no `proj`) on version 1 — we write the size of the
 * volume's version and read either. Every field is kept the way the kernel keeps it:
 * - size: file bytes; for directories the sum of the entry name lengths (0 means empty); for
 *   symlinks the target length including its terminating NUL.
 * - meta_seq: the transaction seq of the last change to the inode (every save sets it);
 *   data_seq: the seq of the last change to file contents (writes, truncates).
 * - data_version: bumped on every change of file contents or size (archive agents compare it).
 * - online_blocks / offline_blocks: 4 KiB blocks mapped by written or preallocated extents vs
 *   blocks whose contents live offline (unmapped extents with SEF_OFFLINE).
 * - next_readdir_pos (starts at 2, after "." and ".."), next_xattr_id (starts at 0).
 * - version: the inode's change counter (i_version), bumped on every change.
 * - flags: INO_FLAG_TRUNCATE while a truncate is in progress; INO_FLAG_RETENTION.
 * - times, including crtime (set once at creation), and proj (v2 only).
 *
 * Inode index items (zone INODE_INDEX, value-less, key: type, major = seq, ino) let walk-inodes
 * find changed inodes without a namespace walk. Invariant: exactly one META_SEQ item per inode,
 * and one DATA_SEQ item per regular file, at the seq currently stored in the inode item. `inodeSave`
 * moves them whenever a save changes the seqs; `inodeDeleteItems` removes them with the inode.
 */
import {
  INODE_INDEX_DATA_SEQ_TYPE,
  INODE_INDEX_META_SEQ_TYPE,
  DIRENT_FIRST_POS,
  ROOT_INO,
} from "../format/constants.ts";
import { Inode, inodeValidVersBytes, inodeVersBytes } from "../format/items.ts";
import type { ItemReader } from "../item/types.ts";
import { assert } from "../util/assert.ts";
import { fsFail } from "./errors.ts";
import { inodeIndexKey, inodeKey } from "./keys.ts";
import type { FsTime, Tx } from "./trans.ts";
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK, S_ISGID, S_ISUID } from "../fuse/types.ts";

export type InodeVal = Inode;

/** An inode as loaded in a transaction: change `v`, then `inodeSave` it. */
export interface FsInode {
  readonly ino: bigint;
  v: InodeVal;
}

// the mode bits are the kernel's, declared once with the FUSE types
export { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK, S_ISGID, S_ISUID };

export const isDir = (mode: number): boolean => (mode & S_IFMT) === S_IFDIR;
export const isReg = (mode: number): boolean => (mode & S_IFMT) === S_IFREG;
export const isLnk = (mode: number): boolean => (mode & S_IFMT) === S_IFLNK;

// Inode values are decoded on every operation (each FUSE request loads its inode, each change
// saves it): the field-by-field codec below does what `Inode.decode`/`Inode.encode` do (same
// fields, same order, same bytes; test/fs/inode-codec.test.ts checks both ways) without the
// generic table walk, which cost several microseconds per request. Values are read and written
// through one scratch buffer: a DataView over an item value would ask for its `.buffer`, which
// for the small typed arrays items are kept in makes the engine allocate and copy one.
const O = Inode.off;
const V1_BYTES = Inode.off.proj;
const scratch = new Uint8Array(Inode.size);
const sdv = new DataView(scratch.buffer);

/** The scratch view holding `val` (at most one inode value). */
function dvOf(val: Uint8Array): DataView {
  scratch.set(val);
  return sdv;
}

function getTime(dv: DataView, at: number): { sec: bigint; nsec: number } {
  return { sec: dv.getBigUint64(at, true), nsec: dv.getUint32(at + 8, true) };
}

function putTime(dv: DataView, at: number, t: { sec: bigint; nsec: number }): void {
  dv.setBigUint64(at, BigInt.asUintN(64, t.sec), true);
  dv.setUint32(at + 8, t.nsec >>> 0, true);
}

/** `decodeInode` of a value of either version (v1 reads with proj 0), field by field. */
function decodeInodeFast(val: Uint8Array): InodeVal {
  const dv = dvOf(val);
  return {
    size: dv.getBigUint64(O.size, true),
    meta_seq: dv.getBigUint64(O.meta_seq, true),
    data_seq: dv.getBigUint64(O.data_seq, true),
    data_version: dv.getBigUint64(O.data_version, true),
    online_blocks: dv.getBigUint64(O.online_blocks, true),
    offline_blocks: dv.getBigUint64(O.offline_blocks, true),
    next_readdir_pos: dv.getBigUint64(O.next_readdir_pos, true),
    next_xattr_id: dv.getBigUint64(O.next_xattr_id, true),
    version: dv.getBigUint64(O.version, true),
    nlink: dv.getUint32(O.nlink, true),
    uid: dv.getUint32(O.uid, true),
    gid: dv.getUint32(O.gid, true),
    mode: dv.getUint32(O.mode, true),
    rdev: dv.getUint32(O.rdev, true),
    flags: dv.getUint32(O.flags, true),
    atime: getTime(dv, O.atime),
    ctime: getTime(dv, O.ctime),
    mtime: getTime(dv, O.mtime),
    crtime: getTime(dv, O.crtime),
    proj: val.length >= Inode.size ? dv.getBigUint64(O.proj, true) : 0n,
  };
}

/** Decode an inode value, refusing sizes the volume's format version cannot hold. */
export function inodeDecode(ino: bigint, val: Uint8Array, fmtVers: number): InodeVal {
  if (!inodeValidVersBytes(fmtVers, val.length)) fsFail("EIO", `inode ${ino}: value of ${val.length} bytes on format ${fmtVers}`);
  return decodeInodeFast(val);
}

/** The fields `inodeSave` needs of the stored inode (its seqs, version and type), without a full decode. */
function inodeStoredSeqs(ino: bigint, val: Uint8Array, fmtVers: number): { meta_seq: bigint; data_seq: bigint; version: bigint; mode: number } {
  if (!inodeValidVersBytes(fmtVers, val.length)) fsFail("EIO", `inode ${ino}: value of ${val.length} bytes on format ${fmtVers}`);
  const dv = dvOf(val);
  return { meta_seq: dv.getBigUint64(O.meta_seq, true), data_seq: dv.getBigUint64(O.data_seq, true), version: dv.getBigUint64(O.version, true), mode: dv.getUint32(O.mode, true) };
}

export function inodeEncode(v: InodeVal, fmtVers: number): Uint8Array {
  const bytes = inodeVersBytes(fmtVers);
  const dv = sdv;
  // padding (after each nsec) is written as zeros, as the struct codec does
  scratch.fill(0);
  dv.setBigUint64(O.size, BigInt.asUintN(64, v.size), true);
  dv.setBigUint64(O.meta_seq, BigInt.asUintN(64, v.meta_seq), true);
  dv.setBigUint64(O.data_seq, BigInt.asUintN(64, v.data_seq), true);
  dv.setBigUint64(O.data_version, BigInt.asUintN(64, v.data_version), true);
  dv.setBigUint64(O.online_blocks, BigInt.asUintN(64, v.online_blocks), true);
  dv.setBigUint64(O.offline_blocks, BigInt.asUintN(64, v.offline_blocks), true);
  dv.setBigUint64(O.next_readdir_pos, BigInt.asUintN(64, v.next_readdir_pos), true);
  dv.setBigUint64(O.next_xattr_id, BigInt.asUintN(64, v.next_xattr_id), true);
  dv.setBigUint64(O.version, BigInt.asUintN(64, v.version), true);
  dv.setUint32(O.nlink, v.nlink >>> 0, true);
  dv.setUint32(O.uid, v.uid >>> 0, true);
  dv.setUint32(O.gid, v.gid >>> 0, true);
  dv.setUint32(O.mode, v.mode >>> 0, true);
  dv.setUint32(O.rdev, v.rdev >>> 0, true);
  dv.setUint32(O.flags, v.flags >>> 0, true);
  putTime(dv, O.atime, v.atime);
  putTime(dv, O.ctime, v.ctime);
  putTime(dv, O.mtime, v.mtime);
  putTime(dv, O.crtime, v.crtime);
  if (bytes > V1_BYTES) dv.setBigUint64(O.proj, BigInt.asUintN(64, v.proj), true);
  return scratch.slice(0, bytes);
}

export function inodeLoad(r: ItemReader, ino: bigint, fmtVers: number): FsInode | null {
  const val = r.lookup(inodeKey(ino));
  return val === null ? null : { ino, v: inodeDecode(ino, val, fmtVers) };
}

export function inodeGet(r: ItemReader, ino: bigint, fmtVers: number): FsInode {
  return inodeLoad(r, ino, fmtVers) ?? fsFail("ENOENT", `no inode ${ino}`);
}

function hasDataSeqIndex(mode: number): boolean {
  return isReg(mode);
}

export interface NewInode {
  mode: number;
  uid: number;
  gid: number;
  rdev: number;
  nlink: number;
  proj: bigint;
  now: FsTime;
}

/**
 * Create the inode item and its index items at the transaction's seq. The inode is saved (as
 * after inodeSave) when the caller finishes it: create the inode item then with
 * `inodeCreateItem`, written once instead of created and rewritten in the same transaction.
 */
export function inodeCreate(tx: Tx, ino: bigint, n: NewInode): FsInode {
  const t = { sec: n.now.sec, nsec: n.now.nsec };
  const v: InodeVal = {
    size: 0n,
    meta_seq: tx.seq,
    data_seq: tx.seq,
    data_version: 0n,
    online_blocks: 0n,
    offline_blocks: 0n,
    next_readdir_pos: DIRENT_FIRST_POS,
    next_xattr_id: 0n,
    version: 1n,
    nlink: n.nlink,
    uid: n.uid >>> 0,
    gid: n.gid >>> 0,
    mode: n.mode >>> 0,
    rdev: n.rdev >>> 0,
    flags: 0,
    atime: { ...t },
    ctime: { ...t },
    mtime: { ...t },
    crtime: { ...t },
    proj: tx.fmtVers >= 2 ? n.proj : 0n,
  };
  tx.w.create(inodeIndexKey(INODE_INDEX_META_SEQ_TYPE, v.meta_seq, ino), EMPTY);
  if (hasDataSeqIndex(v.mode)) tx.w.create(inodeIndexKey(INODE_INDEX_DATA_SEQ_TYPE, v.data_seq, ino), EMPTY);
  return { ino, v };
}

/**
 * Write the item of an inode made by inodeCreate in this transaction, finished: what creating it
 * at once and saving it at the end left (version 2, the seqs of this transaction). Its type must
 * not have changed (the index items were made for it).
 */
export function inodeCreateItem(tx: Tx, inode: FsInode): void {
  const v = inode.v;
  assert(v.meta_seq === tx.seq && v.data_seq === tx.seq && v.version === 1n, `inode ${inode.ino} was not created in this transaction`);
  v.version = 2n;
  tx.w.create(inodeKey(inode.ino), inodeEncode(v, tx.fmtVers));
  tx.store.countInodes?.(1);
}

export interface SaveOpts {
  /** File contents changed: data_seq moves to this transaction too. */
  data?: boolean;
}

/**
 * Write a changed inode: meta_seq (and data_seq for content changes) become the transaction's
 * seq, the version counter moves, and the index items follow the stored seqs.
 */
export function inodeSave(tx: Tx, inode: FsInode, opts: SaveOpts = {}): void {
  const key = inodeKey(inode.ino);
  const oldVal = tx.w.lookup(key) ?? fsFail("ENOENT", `saving deleted inode ${inode.ino}`);
  const old = inodeStoredSeqs(inode.ino, oldVal, tx.fmtVers);
  const v = inode.v;
  assert((old.mode & S_IFMT) === (v.mode & S_IFMT), `inode ${inode.ino} changed type`);
  v.meta_seq = tx.seq;
  if (opts.data) v.data_seq = tx.seq;
  v.version = old.version + 1n;
  moveIndex(tx, inode.ino, INODE_INDEX_META_SEQ_TYPE, old.meta_seq, v.meta_seq);
  if (hasDataSeqIndex(v.mode)) moveIndex(tx, inode.ino, INODE_INDEX_DATA_SEQ_TYPE, old.data_seq, v.data_seq);
  tx.w.update(key, inodeEncode(v, tx.fmtVers));
}

function moveIndex(tx: Tx, ino: bigint, type: number, from: bigint, to: bigint): void {
  if (from === to) return;
  tx.w.delete(inodeIndexKey(type, from, ino));
  tx.w.create(inodeIndexKey(type, to, ino), EMPTY);
}

/** Remove the inode item and its index items (the caller has removed everything else). */
export function inodeDeleteItems(tx: Tx, inode: FsInode): void {
  const key = inodeKey(inode.ino);
  const val = tx.w.lookup(key) ?? fsFail("ENOENT", `deleting missing inode ${inode.ino}`);
  const stored = inodeDecode(inode.ino, val, tx.fmtVers);
  tx.w.delete(inodeIndexKey(INODE_INDEX_META_SEQ_TYPE, stored.meta_seq, inode.ino));
  if (hasDataSeqIndex(stored.mode)) tx.w.delete(inodeIndexKey(INODE_INDEX_DATA_SEQ_TYPE, stored.data_seq, inode.ino));
  tx.w.delete(key);
  tx.store.countInodes?.(-1);
}

/** The root directory as mkfs writes it: seqs 0 (its meta_seq index item at 0), nlink 2. */
export function inodeMkfsRoot(tx: Tx, now: FsTime, mode: number, uid: number, gid: number): FsInode {
  const t = { sec: now.sec, nsec: now.nsec };
  const v: InodeVal = {
    size: 0n, meta_seq: 0n, data_seq: 0n, data_version: 0n, online_blocks: 0n, offline_blocks: 0n,
    next_readdir_pos: DIRENT_FIRST_POS, next_xattr_id: 0n, version: 0n, nlink: 2, uid, gid, mode, rdev: 0,
    flags: 0, atime: { ...t }, ctime: { ...t }, mtime: { ...t }, crtime: { ...t }, proj: 0n,
  };
  tx.w.create(inodeIndexKey(INODE_INDEX_META_SEQ_TYPE, 0n, ROOT_INO), EMPTY);
  tx.w.create(inodeKey(ROOT_INO), inodeEncode(v, tx.fmtVers));
  return { ino: ROOT_INO, v };
}

export function touchCtime(inode: FsInode, now: FsTime): void {
  inode.v.ctime = { sec: now.sec, nsec: now.nsec };
}

export function touchMtime(inode: FsInode, now: FsTime): void {
  inode.v.mtime = { sec: now.sec, nsec: now.nsec };
  inode.v.ctime = { sec: now.sec, nsec: now.nsec };
}

/** Adjust the block counts as extents come and go; a negative result is corruption. */
export function inodeAddOnoff(inode: FsInode, online: bigint, offline: bigint): void {
  const on = inode.v.online_blocks + online;
  const off = inode.v.offline_blocks + offline;
  if (on < 0n || off < 0n) fsFail("EIO", `inode ${inode.ino}: block counts out of sync with extents`);
  inode.v.online_blocks = on;
  inode.v.offline_blocks = off;
}

export const EMPTY = new Uint8Array(0);
