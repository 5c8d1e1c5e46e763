/**
 * Directories: entries, readdir, link backrefs, and the namespace operations built on them
 * (create/mknod/mkdir/symlink, link, unlink/rmdir, rename).
 *
 * Every entry is three items with the same value (`struct scoutfs_dirent` + the name bytes):
 * - DIRENT  (dir ino, name hash, pos): lookup by name. The hash (see format/hash.ts) can collide;
 *   including the readdir pos in the key lets colliding names coexist, and lookup walks every
 *   item of the hash comparing names.
 * - READDIR (dir ino, pos): readdir in creation order. Positions come from the directory's
 *   next_readdir_pos, start at 2 (0 and 1 are "." and ".."), and are never reused, so a listing
 *   that resumes at a position never returns an entry twice, whatever changes meanwhile.
 * - LINK_BACKREF (target ino, dir ino, pos): the names of an inode (ino-path, get-referring
 *   entries, and ".." of a directory, which has exactly one).
 * A rename creates the new name at a fresh position of the new directory.
 *
 * Directory attributes as the kernel keeps them: size is the sum of the entry name lengths (a
 * directory is empty iff its size is 0); nlink is 2 + the number of subdirectories; a removed
 * directory drops to nlink 0. An inode whose nlink drops to 0 gets an orphan item in the same
 * transaction (see orphan.ts); whoever drops the last reference deletes it.
 *
 * scoutfs itself refuses RENAME_EXCHANGE; we implement it (both names swap in one transaction)
 * because the FUSE checklist expects what local filesystems do. RENAME_WHITEOUT is EINVAL.
 */
import {
  DIRENT_LAST_POS,
  DT_BLK,
  DT_CHR,
  DT_DIR,
  DT_FIFO,
  DT_LNK,
  DT_REG,
  DT_SOCK,
  INO_FLAG_RETENTION,
  LINK_BACKREF_TYPE,
  LINK_MAX,
  NAME_LEN,
  ROOT_INO,
  U64_MAX,
} from "../format/constants.ts";
import { direntNameHash } from "../format/hash.ts";
import { DIRENT_NAME_OFF, Dirent } from "../format/items.ts";
import type { ItemReader } from "../item/types.ts";
import { assert } from "../util/assert.ts";
import { fsFail } from "./errors.ts";
import {
  type FsInode,
  S_IFMT,
  S_ISGID,
  inodeCreate,
  inodeCreateItem,
  inodeGet,
  inodeSave,
  isDir,
  isLnk,
  touchCtime,
  touchMtime,
} from "./inode.ts";
import { direntKey, inoTypeLast, keySecond, linkBackrefKey, readdirKey } from "./keys.ts";
import { orphanCreate, orphanDelete } from "./orphan.ts";
import { symlinkCreate } from "./symlink.ts";
import type { FsTime, Tx } from "./trans.ts";
import { aclInherit } from "./xattr.ts";

export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;
export const RENAME_WHITEOUT = 4;

export interface DirentVal {
  ino: bigint;
  hash: bigint;
  pos: bigint;
  /** scoutfs DT_* (not the Linux numbering). */
  type: number;
  name: Uint8Array;
}

const MODE_TO_DT: Record<number, number> = {
  0o010000: DT_FIFO,
  0o020000: DT_CHR,
  0o040000: DT_DIR,
  0o060000: DT_BLK,
  0o100000: DT_REG,
  0o120000: DT_LNK,
  0o140000: DT_SOCK,
};

export function modeToDt(mode: number): number {
  return MODE_TO_DT[mode & S_IFMT] ?? DT_REG;
}

// Entries are encoded and decoded through one scratch buffer (the struct codec's DataView over
// an item value asks for its `.buffer`, which costs an allocation and a copy for the small typed
// arrays items live in); the bytes are exactly Dirent's.
const DO = Dirent.off;
const dscratch = new Uint8Array(DIRENT_NAME_OFF + NAME_LEN);
const ddv = new DataView(dscratch.buffer);

export function direntEncode(d: DirentVal): Uint8Array {
  const len = DIRENT_NAME_OFF + d.name.length;
  assert(d.name.length <= NAME_LEN, `dirent name of ${d.name.length} bytes`);
  dscratch.fill(0, 0, DIRENT_NAME_OFF);
  ddv.setBigUint64(DO.ino, BigInt.asUintN(64, d.ino), true);
  ddv.setBigUint64(DO.hash, BigInt.asUintN(64, d.hash), true);
  ddv.setBigUint64(DO.pos, BigInt.asUintN(64, d.pos), true);
  dscratch[DO.type] = d.type;
  dscratch.set(d.name, DIRENT_NAME_OFF);
  return dscratch.slice(0, len);
}

export function direntDecode(val: Uint8Array): DirentVal {
  const nameLen = val.length - DIRENT_NAME_OFF;
  if (nameLen < 1 || nameLen > NAME_LEN) fsFail("EIO", `dirent value of ${val.length} bytes`);
  dscratch.set(val);
  return {
    ino: ddv.getBigUint64(DO.ino, true),
    hash: ddv.getBigUint64(DO.hash, true),
    pos: ddv.getBigUint64(DO.pos, true),
    type: dscratch[DO.type]!,
    name: dscratch.slice(DIRENT_NAME_OFF, val.length),
  };
}

function namesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function checkName(name: Uint8Array): void {
  if (name.length > NAME_LEN) fsFail("ENAMETOOLONG", `name of ${name.length} bytes`);
  if (name.length === 0) fsFail("ENOENT", "empty name");
}

/** The entry `name` in directory `dirIno`, or null. */
export function dirLookup(r: ItemReader, dirIno: bigint, name: Uint8Array): DirentVal | null {
  checkName(name);
  return lookupHashed(r, dirIno, name, direntNameHash(name));
}

/** dirLookup of a checked name whose hash the caller has (a create hashes the name once). */
function lookupHashed(r: ItemReader, dirIno: bigint, name: Uint8Array, hash: bigint): DirentVal | null {
  const last = direntKey(dirIno, hash, U64_MAX);
  let key = direntKey(dirIno, hash, 0n);
  for (;;) {
    const it = r.next(key, last);
    if (it === null) return null;
    const d = direntDecode(it.val);
    if (namesEqual(d.name, name)) return d;
    if (d.pos === U64_MAX) return null;
    key = direntKey(dirIno, hash, d.pos + 1n);
  }
}

/** Create the three items of an entry. */
export function dirAddEntryItems(tx: Tx, dirIno: bigint, d: DirentVal): void {
  const val = direntEncode(d);
  tx.w.create(direntKey(dirIno, d.hash, d.pos), val);
  tx.w.create(readdirKey(dirIno, d.pos), val);
  tx.w.create(linkBackrefKey(d.ino, dirIno, d.pos), val);
}

export function dirDelEntryItems(tx: Tx, dirIno: bigint, d: DirentVal): void {
  tx.w.delete(direntKey(dirIno, d.hash, d.pos));
  tx.w.delete(readdirKey(dirIno, d.pos));
  tx.w.delete(linkBackrefKey(d.ino, dirIno, d.pos));
}

/** Add `name` -> `target` to `dir` at its next readdir position; dir size and times follow. */
function addEntry(tx: Tx, dir: FsInode, name: Uint8Array, target: FsInode, now: FsTime, hash = direntNameHash(name)): DirentVal {
  const pos = dir.v.next_readdir_pos;
  if (pos > DIRENT_LAST_POS) fsFail("ENOSPC", `directory ${dir.ino} ran out of readdir positions`);
  dir.v.next_readdir_pos = pos + 1n;
  const d: DirentVal = { ino: target.ino, hash, pos, type: modeToDt(target.v.mode), name };
  dirAddEntryItems(tx, dir.ino, d);
  dir.v.size += BigInt(name.length);
  touchMtime(dir, now);
  return d;
}

function delEntry(tx: Tx, dir: FsInode, d: DirentVal, now: FsTime): void {
  dirDelEntryItems(tx, dir.ino, d);
  dir.v.size -= BigInt(d.name.length);
  assert(dir.v.size >= 0n, `directory ${dir.ino} size below zero`);
  touchMtime(dir, now);
}

/**
 * Entries of `dirIno` at positions >= `fromPos`, in position order, until `fn` returns false.
 */
export function dirReaddir(r: ItemReader, dirIno: bigint, fromPos: bigint, fn: (d: DirentVal) => boolean): void {
  const last = readdirKey(dirIno, DIRENT_LAST_POS);
  let pos = fromPos;
  while (pos <= DIRENT_LAST_POS) {
    const it = r.next(readdirKey(dirIno, pos), last);
    if (it === null) return;
    const d = direntDecode(it.val);
    if (!fn(d)) return;
    pos = d.pos + 1n;
  }
}

export interface Backref {
  dirIno: bigint;
  d: DirentVal;
}

/** Every name of an inode from its link backrefs, in (dir, pos) order. */
export function dirBackrefs(r: ItemReader, ino: bigint, limit = Number.MAX_SAFE_INTEGER): Backref[] {
  const out: Backref[] = [];
  const last = inoTypeLast(ino, LINK_BACKREF_TYPE);
  let key = linkBackrefKey(ino, 0n, 0n);
  while (out.length < limit) {
    const it = r.next(key, last);
    if (it === null) break;
    const d = direntDecode(it.val);
    const dirIno = keySecond(it.key);
    out.push({ dirIno, d });
    key = d.pos === U64_MAX ? linkBackrefKey(ino, dirIno + 1n, 0n) : linkBackrefKey(ino, dirIno, d.pos + 1n);
  }
  return out;
}

/** The parent of a directory (root is its own parent); 0 for an unlinked directory. */
export function dirParentIno(r: ItemReader, dirIno: bigint): bigint {
  if (dirIno === ROOT_INO) return ROOT_INO;
  const it = r.next(linkBackrefKey(dirIno, 0n, 0n), inoTypeLast(dirIno, LINK_BACKREF_TYPE));
  return it === null ? 0n : keySecond(it.key);
}

function loadDir(tx: Tx, dirIno: bigint): FsInode {
  const d = inodeGet(tx.w, dirIno, tx.fmtVers);
  if (!isDir(d.v.mode)) fsFail("ENOTDIR", `inode ${dirIno} is not a directory`);
  if (d.v.nlink === 0) fsFail("ENOENT", `directory ${dirIno} was removed`);
  return d;
}

function checkRetention(i: FsInode): void {
  if (i.v.flags & INO_FLAG_RETENTION) fsFail("EPERM", `inode ${i.ino} is under retention`);
}

// ---------------------------------------------------------------------------------------------
// Namespace operations. Each runs inside the caller's transaction and saves what it changed.

export interface CreateArgs {
  mode: number;
  rdev: number;
  uid: number;
  gid: number;
  /** Applied unless the parent has a default ACL (which is inherited instead). */
  umask: number;
  /** For symlinks: the target bytes (no NUL). */
  target?: Uint8Array;
  /** O_TMPFILE: no name, nlink 0, an orphan item. */
  tmpfile?: boolean;
  /** The new inode's number, when the caller allocated it (to lock its group first). */
  ino?: bigint;
}

/** Make a new inode named `name` in `dirIno` (or an unnamed tmpfile). */
export function dirCreate(tx: Tx, dirIno: bigint, name: Uint8Array | null, a: CreateArgs, now: FsTime): FsInode {
  const dir = loadDir(tx, dirIno);
  let hash = 0n;
  if (name !== null) {
    checkName(name);
    hash = direntNameHash(name);
    if (lookupHashed(tx.w, dirIno, name, hash) !== null) fsFail("EEXIST", "name exists");
  }
  let mode = a.mode;
  if (isDir(mode) && !a.tmpfile && dir.v.nlink >= LINK_MAX) fsFail("EMLINK", `directory ${dirIno} has too many links`);
  if (a.target !== undefined) symlinkCheck(a.target);
  let gid = a.gid;
  if (dir.v.mode & S_ISGID) {
    gid = dir.v.gid;
    if (isDir(mode)) mode |= S_ISGID;
  }
  const ino = a.ino ?? tx.store.allocIno();
  const inode = inodeCreate(tx, ino, {
    mode,
    uid: a.uid,
    gid,
    rdev: a.rdev,
    nlink: a.tmpfile ? 0 : isDir(mode) ? 2 : 1,
    proj: dir.v.proj,
    now,
  });
  aclInherit(tx, dir, inode, a.umask);
  if (a.target !== undefined) {
    assert(isLnk(mode), "symlink target for a non-symlink");
    symlinkCreate(tx, ino, a.target);
    inode.v.size = BigInt(a.target.length + 1);
  }
  if (a.tmpfile) {
    orphanCreate(tx, ino);
  } else {
    addEntry(tx, dir, name!, inode, now, hash);
    if (isDir(mode)) dir.v.nlink++;
  }
  inodeCreateItem(tx, inode);
  inodeSave(tx, dir);
  return inode;
}

function symlinkCheck(target: Uint8Array): void {
  if (target.length + 1 > 4096) fsFail("ENAMETOOLONG", `symlink target of ${target.length} bytes`);
  if (target.length === 0) fsFail("ENOENT", "empty symlink target");
}

/** A new name for an existing inode (also links an O_TMPFILE inode into the namespace). */
export function dirLink(tx: Tx, ino: bigint, dirIno: bigint, name: Uint8Array, now: FsTime): FsInode {
  checkName(name);
  const inode = inodeGet(tx.w, ino, tx.fmtVers);
  if (isDir(inode.v.mode)) fsFail("EPERM", "hard link to a directory");
  if (inode.v.nlink >= LINK_MAX) fsFail("EMLINK", `inode ${ino} has too many links`);
  const dir = loadDir(tx, dirIno);
  if (dirLookup(tx.w, dirIno, name) !== null) fsFail("EEXIST", "name exists");
  if (inode.v.nlink === 0) orphanDelete(tx, ino);
  addEntry(tx, dir, name, inode, now);
  inode.v.nlink++;
  touchCtime(inode, now);
  inodeSave(tx, inode);
  inodeSave(tx, dir);
  return inode;
}

/** Remove a name (rmdir when `rmdir`); returns the inode whose link count dropped. */
export function dirUnlink(tx: Tx, dirIno: bigint, name: Uint8Array, rmdir: boolean, now: FsTime): FsInode {
  const dir = loadDir(tx, dirIno);
  const d = dirLookup(tx.w, dirIno, name) ?? fsFail("ENOENT", "no such name");
  const inode = inodeGet(tx.w, d.ino, tx.fmtVers);
  if (rmdir) {
    if (!isDir(inode.v.mode)) fsFail("ENOTDIR", "rmdir of a non-directory");
    if (inode.v.size !== 0n) fsFail("ENOTEMPTY", `directory ${inode.ino} is not empty`);
  } else if (isDir(inode.v.mode)) {
    fsFail("EISDIR", "unlink of a directory");
  }
  checkRetention(inode);
  delEntry(tx, dir, d, now);
  dropLink(tx, dir, inode, now);
  inodeSave(tx, inode);
  inodeSave(tx, dir);
  return inode;
}

/** One name of `inode` in `dir` is gone: link counts, orphan item. */
function dropLink(tx: Tx, dir: FsInode, inode: FsInode, now: FsTime): void {
  touchCtime(inode, now);
  if (isDir(inode.v.mode)) {
    inode.v.nlink = 0;
    dir.v.nlink--;
  } else {
    assert(inode.v.nlink > 0, `inode ${inode.ino} nlink underflow`);
    inode.v.nlink--;
  }
  if (inode.v.nlink === 0) orphanCreate(tx, inode.ino);
}

/** Is `anc` the directory `ino` or one of its ancestors? Walks link backrefs up to the root. */
function isAncestor(r: ItemReader, anc: bigint, ino: bigint): boolean {
  let cur = ino;
  for (let depth = 0; depth < 1 << 16; depth++) {
    if (cur === anc) return true;
    if (cur === ROOT_INO || cur === 0n) return false;
    cur = dirParentIno(r, cur);
  }
  return fsFail("ELOOP", `directory ${ino} is too deep`);
}

export interface RenameResult {
  /** An inode that lost its last name by being replaced (candidate for deletion). */
  replaced: FsInode | null;
  moved: FsInode | null;
}

export function dirRename(
  tx: Tx,
  oldDirIno: bigint,
  oldName: Uint8Array,
  newDirIno: bigint,
  newName: Uint8Array,
  flags: number,
  now: FsTime,
): RenameResult {
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) fsFail("EINVAL", `rename flags ${flags}`);
  if (flags & RENAME_NOREPLACE && flags & RENAME_EXCHANGE) fsFail("EINVAL", "NOREPLACE with EXCHANGE");
  checkName(newName);
  const odir = loadDir(tx, oldDirIno);
  const ndir = newDirIno === oldDirIno ? odir : loadDir(tx, newDirIno);
  const oldEnt = dirLookup(tx.w, oldDirIno, oldName) ?? fsFail("ENOENT", "no such name");
  const newEnt = dirLookup(tx.w, newDirIno, newName);
  const src = inodeGet(tx.w, oldEnt.ino, tx.fmtVers);
  if (newEnt === null && flags & RENAME_EXCHANGE) fsFail("ENOENT", "exchange with a missing name");
  if (newEnt !== null && flags & RENAME_NOREPLACE) fsFail("EEXIST", "name exists");
  // Two names of one inode: POSIX says do nothing.
  if (newEnt !== null && newEnt.ino === src.ino) return { replaced: null, moved: null };
  const tgt = newEnt === null ? null : inodeGet(tx.w, newEnt.ino, tx.fmtVers);
  const srcDir = isDir(src.v.mode);
  const tgtDir = tgt !== null && isDir(tgt.v.mode);
  if (odir !== ndir) {
    if (srcDir && isAncestor(tx.w, src.ino, ndir.ino)) fsFail("EINVAL", "moving a directory below itself");
    if (flags & RENAME_EXCHANGE && tgtDir && isAncestor(tx.w, tgt!.ino, odir.ino)) fsFail("EINVAL", "moving a directory below itself");
  }
  checkRetention(src);
  if (tgt !== null) checkRetention(tgt);

  if (flags & RENAME_EXCHANGE) {
    const t = tgt!;
    dirDelEntryItems(tx, odir.ino, oldEnt);
    dirDelEntryItems(tx, ndir.ino, newEnt!);
    odir.v.size -= BigInt(oldName.length);
    ndir.v.size -= BigInt(newName.length);
    addEntry(tx, odir, oldName, t, now);
    addEntry(tx, ndir, newName, src, now);
    if (odir !== ndir) {
      if (srcDir) {
        odir.v.nlink--;
        ndir.v.nlink++;
      }
      if (tgtDir) {
        ndir.v.nlink--;
        odir.v.nlink++;
      }
    }
    touchCtime(src, now);
    touchCtime(t, now);
    inodeSave(tx, src);
    inodeSave(tx, t);
    inodeSave(tx, odir);
    if (ndir !== odir) inodeSave(tx, ndir);
    return { replaced: null, moved: src };
  }

  if (tgt !== null) {
    if (srcDir && !tgtDir) fsFail("ENOTDIR", "renaming a directory over a non-directory");
    if (!srcDir && tgtDir) fsFail("EISDIR", "renaming a non-directory over a directory");
    if (tgtDir && tgt.v.size !== 0n) fsFail("ENOTEMPTY", `directory ${tgt.ino} is not empty`);
    delEntry(tx, ndir, newEnt!, now);
    dropLink(tx, ndir, tgt, now);
  }
  addEntry(tx, ndir, newName, src, now);
  delEntry(tx, odir, oldEnt, now);
  if (srcDir && odir !== ndir) {
    odir.v.nlink--;
    ndir.v.nlink++;
  }
  touchCtime(src, now);
  inodeSave(tx, src);
  if (tgt !== null) inodeSave(tx, tgt);
  inodeSave(tx, odir);
  if (ndir !== odir) inodeSave(tx, ndir);
  return { replaced: tgt !== null && tgt.v.nlink === 0 ? tgt : null, moved: src };
}

