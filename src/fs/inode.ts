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
import { Inode, decodeInode, inodeValidVersBytes, inodeVersBytes } from "../format/items.ts";
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

/** Decode an inode value, refusing sizes the volume's format version cannot hold. */
export function inodeDecode(ino: bigint, val: Uint8Array, fmtVers: number): InodeVal {
  if (!inodeValidVersBytes(fmtVers, val.length)) fsFail("EIO", `inode ${ino}: value of ${val.length} bytes on format ${fmtVers}`);
  return decodeInode(val);
}

export function inodeEncode(v: InodeVal, fmtVers: number): Uint8Array {
  const full = Inode.encode(v);
  const bytes = inodeVersBytes(fmtVers);
  return bytes === full.length ? full : full.slice(0, bytes);
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

/** Create the inode item and its index items at the transaction's seq. */
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
  tx.w.create(inodeKey(ino), inodeEncode(v, tx.fmtVers));
  tx.w.create(inodeIndexKey(INODE_INDEX_META_SEQ_TYPE, v.meta_seq, ino), EMPTY);
  if (hasDataSeqIndex(v.mode)) tx.w.create(inodeIndexKey(INODE_INDEX_DATA_SEQ_TYPE, v.data_seq, ino), EMPTY);
  return { ino, v };
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
  const old = inodeDecode(inode.ino, oldVal, tx.fmtVers);
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
