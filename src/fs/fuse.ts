/**
 * ScoutfsFuse: the scoutfs POSIX filesystem (src/fs/*) served through the FUSE library's
 * Filesystem API.
 *
 * Node ids are inode numbers: scoutfs's root is ino 1, as is FUSE's root node id, and scoutfs
 * never reuses inode numbers, so the identity mapping needs no table and no generations (inode
 * numbers must stay below 2^53, which a volume cannot exhaust). What the kernel holds is
 * tracked per inode: the lookup count (every reply carrying an Entry adds one, forget drops
 * them) and open handles. An inode that has lost its last name (nlink 0, an orphan item) is
 * deleted — all its items, its data blocks freed — when the last of those references goes.
 *
 * Every mutating operation is one store transaction (src/fs/trans.ts): it either happens whole
 * or, if anything throws, not at all. Deleting an orphan and long truncations of dying inodes
 * use several bounded transactions, made safe by the orphan item (see orphan.ts).
 *
 * Permissions are the kernel's (default_permissions, POSIX ACLs from the system.posix_acl_*
 * xattrs); what the kernel leaves to filesystems is done here: owners from the caller, setgid
 * directories, umask or default-ACL inheritance, the ACL/mode coupling on chmod and setfacl.
 * Errors thrown by the fs layer (ScoutfsError, FuseError) become FuseErrors with their errno.
 */
import { DT_BLK, DT_CHR, DT_DIR, DT_FIFO, DT_LNK, DT_REG, DT_SOCK, ROOT_INO } from "../format/constants.ts";
import { FuseError } from "../fuse/errno.ts";
import type {
  AttrReply,
  CreateReply,
  DirentSink,
  Entry,
  Filesystem,
  OpenReply,
  RequestContext,
  SetattrRequest,
  StatfsReply,
} from "../fuse/filesystem.ts";
import { type Attr, FATTR, SEEK_DATA, SEEK_HOLE } from "../fuse/types.ts";
import type { ItemStore } from "../item/types.ts";
import { ScoutfsError } from "../util/errors.ts";
import { dataFallocate, dataRead, dataSeek, dataTruncate, dataWrite } from "./data.ts";
import { dirCreate, dirLink, dirLookup, dirParentIno, dirReaddir, dirRename, dirUnlink } from "./dir.ts";
import { fsFail } from "./errors.ts";
import {
  type FsInode,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  inodeGet,
  inodeLoad,
  inodeMkfsRoot,
  inodeSave,
  isDir,
  isLnk,
  isReg,
} from "./inode.ts";
import { inodeDelete, orphanExists, orphanScan } from "./orphan.ts";
import { symlinkRead } from "./symlink.ts";
import { type FsTime, fsNow, fsTransact } from "./trans.ts";
import { aclChmod, xattrGet, xattrList, xattrSet } from "./xattr.ts";

const BLOCK_BYTES = 4096;
const O_ACCMODE = 3;
const O_TRUNC = 0o1000;
/** copy_file_range copies at most this much per call (the caller loops, as copy_file_range allows). */
const COPY_MAX_BYTES = 16 * 1024 * 1024;

export interface ScoutfsFuseOptions {
  /** Seconds the kernel may cache names (entry) and attributes. */
  entryTimeout?: number;
  attrTimeout?: number;
  /** statfs(2) numbers; by default a large empty volume. */
  statfs?: () => StatfsReply;
  /** Delete orphaned inodes left by a previous run when the kernel sends INIT (single mount). */
  deleteOrphansOnInit?: boolean;
}

interface Refs {
  nlookup: number;
  opens: number;
}

interface Handle {
  ino: bigint;
  flags: number;
}

const DT_TO_MODE: Record<number, number> = {
  [DT_FIFO]: 0o010000,
  [DT_CHR]: 0o020000,
  [DT_DIR]: 0o040000,
  [DT_BLK]: 0o060000,
  [DT_REG]: 0o100000,
  [DT_LNK]: 0o120000,
  [DT_SOCK]: 0o140000,
};

const bytes = (s: string): Uint8Array => Buffer.from(s, "latin1");
const latin1 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("latin1");

function toIno(nodeid: number): bigint {
  return BigInt(nodeid);
}

function toNodeid(ino: bigint): number {
  if (ino > BigInt(Number.MAX_SAFE_INTEGER)) fsFail("EOVERFLOW", `inode ${ino} beyond node id range`);
  return Number(ino);
}

/** Run `fn`, turning fs-layer errors into FuseErrors (anything else is a bug: EIO upstream). */
function fuseCall<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof ScoutfsError) throw new FuseError(e.errno, e.message);
    throw e;
  }
}

/**
 * The answers of the hot negative paths — a name that does not exist (every create looks it up
 * first), an xattr that does not exist (the kernel asks for security.capability before every
 * write) — made once: building an Error and its stack per request was a visible share of them.
 */
const ENOENT_NAME = new FuseError("ENOENT", "no such name");
const ENODATA_XATTR = new FuseError("ENODATA", "no such xattr");

/** A rejection from the store (a commit that made room failed) as the FuseError it answers. */
function toFuseError(e: unknown): unknown {
  return e instanceof ScoutfsError ? new FuseError(e.errno, e.message) : e;
}

/** Ensure the root directory exists (a fresh MemStore has none; mkfs writes it on real volumes). */
export function fsEnsureRoot(store: ItemStore, mode = 0o755, uid = 0, gid = 0): void {
  if (inodeLoad(store.reader, ROOT_INO, store.fmtVers) !== null) return;
  fsTransact(store, (tx) => inodeMkfsRoot(tx, fsNow(), S_IFDIR | mode, uid, gid));
}

export class ScoutfsFuse implements Filesystem {
  private readonly refs = new Map<bigint, Refs>();
  private readonly handles = new Map<number, Handle>();
  private nextFh = 1;
  readonly entryTimeout: number;
  readonly attrTimeout: number;
  private readonly statfsFn: (() => StatfsReply) | undefined;
  private readonly deleteOrphansOnInit: boolean;
  counters = { deletedInodes: 0, transactions: 0, holdWaits: 0 };

  constructor(
    readonly store: ItemStore,
    opts: ScoutfsFuseOptions = {},
  ) {
    this.entryTimeout = opts.entryTimeout ?? 1;
    this.attrTimeout = opts.attrTimeout ?? 1;
    this.statfsFn = opts.statfs;
    this.deleteOrphansOnInit = opts.deleteOrphansOnInit ?? false;
  }

  // ------------------------------------------------------------------------------------------
  // References and attributes.

  private ref(ino: bigint): Refs {
    let r = this.refs.get(ino);
    if (r === undefined) {
      r = { nlookup: 0, opens: 0 };
      this.refs.set(ino, r);
    }
    return r;
  }

  /** Does the kernel still hold `ino` (lookups or open files)? */
  inUse(ino: bigint): boolean {
    const r = this.refs.get(ino);
    return r !== undefined && (r.nlookup > 0 || r.opens > 0);
  }

  /** Delete `ino` if it has no names and the kernel has let go of it. */
  private maybeDelete(ino: bigint): void {
    if (this.inUse(ino) || ino === ROOT_INO) return;
    this.refs.delete(ino);
    if (!orphanExists(this.store.reader, ino)) return;
    const i = inodeLoad(this.store.reader, ino, this.store.fmtVers);
    if (i !== null && i.v.nlink > 0) return;
    inodeDelete(this.store, ino);
    this.counters.deletedInodes++;
  }

  attrOf(i: FsInode): Attr {
    const v = i.v;
    return {
      ino: toNodeid(i.ino),
      size: Number(v.size),
      blocks: Number((v.online_blocks + v.offline_blocks) * BigInt(BLOCK_BYTES / 512)),
      atime: Number(v.atime.sec),
      atimensec: v.atime.nsec,
      mtime: Number(v.mtime.sec),
      mtimensec: v.mtime.nsec,
      ctime: Number(v.ctime.sec),
      ctimensec: v.ctime.nsec,
      mode: v.mode,
      nlink: v.nlink,
      uid: v.uid,
      gid: v.gid,
      rdev: v.rdev,
      blksize: BLOCK_BYTES,
    };
  }

  /** An Entry reply for `i`, counting one kernel reference. */
  private entry(i: FsInode): Entry {
    this.ref(i.ino).nlookup++;
    return { nodeid: toNodeid(i.ino), generation: 0, attr: this.attrOf(i), entryTimeout: this.entryTimeout, attrTimeout: this.attrTimeout };
  }

  private load(nodeid: number): FsInode {
    return inodeGet(this.store.reader, toIno(nodeid), this.store.fmtVers);
  }

  /**
   * Run a mutating operation once the store admits a transaction (ItemStore.hold): at once
   * normally; after the commit that makes room when the dirty items could not otherwise be
   * written; ENOSPC when the metadata device is full. Arguments that view the request buffer
   * must be copied before calling this (it is reused while we wait).
   */
  private held<T>(fn: () => T, freeing = false): T | Promise<T> {
    const wait = fuseCall(() => this.store.hold?.(freeing) ?? null);
    if (wait === null) return fn();
    this.counters.holdWaits++;
    return wait.then(
      () => this.held(fn, freeing),
      (e: unknown) => {
        throw toFuseError(e);
      },
    );
  }

  private tx<T>(fn: (tx: import("./trans.ts").Tx, now: FsTime) => T): T {
    this.counters.transactions++;
    return fuseCall(() => fsTransact(this.store, (tx) => fn(tx, fsNow())));
  }

  private newHandle(ino: bigint, flags: number): number {
    const fh = this.nextFh++;
    this.handles.set(fh, { ino, flags });
    this.ref(ino).opens++;
    return fh;
  }

  private dropHandle(fh: number): void {
    const h = this.handles.get(fh);
    if (h === undefined) throw new FuseError("EBADF");
    this.handles.delete(fh);
    const r = this.refs.get(h.ino);
    if (r !== undefined) r.opens = Math.max(0, r.opens - 1);
    fuseCall(() => this.maybeDelete(h.ino));
  }

  // ------------------------------------------------------------------------------------------
  // Lifecycle.

  init(): void {
    if (this.deleteOrphansOnInit) fuseCall(() => orphanScan(this.store, (ino) => this.inUse(ino)));
  }

  destroy(): Promise<void> {
    return this.store.sync();
  }

  // ------------------------------------------------------------------------------------------
  // Names.

  lookup(_ctx: RequestContext, parent: number, name: string): Entry {
    return fuseCall(() => {
      const r = this.store.reader;
      const dir = this.load(parent);
      if (!isDir(dir.v.mode)) fsFail("ENOTDIR", "lookup in a non-directory");
      let ino: bigint;
      if (name === ".") ino = dir.ino;
      else if (name === "..") ino = dirParentIno(r, dir.ino) || fsFail("ENOENT", "removed directory");
      else {
        const ent = dirLookup(r, dir.ino, bytes(name));
        if (ent === null) throw ENOENT_NAME;
        ino = ent.ino;
      }
      return this.entry(inodeGet(r, ino, this.store.fmtVers));
    });
  }

  forget(nodeid: number, nlookup: number): void {
    const ino = toIno(nodeid);
    const r = this.refs.get(ino);
    if (r === undefined) return;
    r.nlookup = Math.max(0, r.nlookup - nlookup);
    try {
      this.maybeDelete(ino);
    } catch (e) {
      // forget has no reply: the orphan item stays and a later scan retries.
      process.stderr.write(`scoutfs: deleting inode ${ino} failed: ${(e as Error).message}\n`);
    }
  }

  getattr(_ctx: RequestContext, nodeid: number): AttrReply {
    return fuseCall(() => ({ attr: this.attrOf(this.load(nodeid)), attrTimeout: this.attrTimeout }));
  }

  setattr(_ctx: RequestContext, nodeid: number, set: SetattrRequest): AttrReply | Promise<AttrReply> {
    return this.held(() => {
      const i = this.tx((tx, now) => {
        const i = inodeGet(tx.w, toIno(nodeid), tx.fmtVers);
        const v = set.valid;
        const sizeChange = (v & FATTR.SIZE) !== 0;
        if (sizeChange) {
          if (isDir(i.v.mode)) fsFail("EISDIR", "truncate of a directory");
          if (!isReg(i.v.mode)) fsFail("EINVAL", "truncate of a special file");
          dataTruncate(tx, i, set.size, now);
        }
        if (v & FATTR.MODE) {
          i.v.mode = (i.v.mode & S_IFMT) | (set.mode & 0o7777);
          aclChmod(tx, i);
        }
        if (v & FATTR.UID) i.v.uid = set.uid >>> 0;
        if (v & FATTR.GID) i.v.gid = set.gid >>> 0;
        if (v & FATTR.ATIME_NOW) i.v.atime = { ...now };
        else if (v & FATTR.ATIME) i.v.atime = { sec: BigInt(set.atime), nsec: set.atimensec };
        if (v & FATTR.MTIME_NOW) i.v.mtime = { ...now };
        else if (v & FATTR.MTIME) i.v.mtime = { sec: BigInt(set.mtime), nsec: set.mtimensec };
        if (v & FATTR.CTIME) i.v.ctime = { sec: BigInt(set.ctime), nsec: set.ctimensec };
        else i.v.ctime = { ...now };
        inodeSave(tx, i, { data: sizeChange });
        return i;
      });
      return { attr: this.attrOf(i), attrTimeout: this.attrTimeout };
    });
  }

  readlink(_ctx: RequestContext, nodeid: number): string {
    return fuseCall(() => {
      const i = this.load(nodeid);
      if (!isLnk(i.v.mode)) fsFail("EINVAL", "readlink of a non-symlink");
      return latin1(symlinkRead(this.store.reader, i.ino, i.v.size));
    });
  }

  private create1(ctx: RequestContext, parent: number, name: string | null, mode: number, rdev: number, umask: number, target?: string): FsInode {
    return this.tx((tx, now) =>
      dirCreate(
        tx,
        toIno(parent),
        name === null ? null : bytes(name),
        { mode, rdev, uid: ctx.uid, gid: ctx.gid, umask, target: target === undefined ? undefined : bytes(target), tmpfile: name === null },
        now,
      ),
    );
  }

  symlink(ctx: RequestContext, parent: number, name: string, target: string): Entry | Promise<Entry> {
    return this.held(() => {
      return this.entry(this.create1(ctx, parent, name, S_IFLNK | 0o777, 0, 0, target));
    });
  }

  mknod(ctx: RequestContext, parent: number, name: string, mode: number, rdev: number, umask: number): Entry | Promise<Entry> {
    return this.held(() => {
      if ((mode & S_IFMT) === 0) mode |= S_IFREG;
      if (isDir(mode) || isLnk(mode)) throw new FuseError("EINVAL");
      return this.entry(this.create1(ctx, parent, name, mode, rdev, umask));
    });
  }

  mkdir(ctx: RequestContext, parent: number, name: string, mode: number, umask: number): Entry | Promise<Entry> {
    return this.held(() => {
      return this.entry(this.create1(ctx, parent, name, S_IFDIR | (mode & 0o7777), 0, umask));
    });
  }

  unlink(_ctx: RequestContext, parent: number, name: string): void | Promise<void> {
    return this.held(() => {
      const i = this.tx((tx, now) => dirUnlink(tx, toIno(parent), bytes(name), false, now));
      fuseCall(() => this.maybeDelete(i.ino));
    }, true);
  }

  rmdir(_ctx: RequestContext, parent: number, name: string): void | Promise<void> {
    return this.held(() => {
      const i = this.tx((tx, now) => dirUnlink(tx, toIno(parent), bytes(name), true, now));
      fuseCall(() => this.maybeDelete(i.ino));
    }, true);
  }

  rename(_ctx: RequestContext, parent: number, name: string, newParent: number, newName: string, flags: number): void | Promise<void> {
    return this.held(() => {
      const r = this.tx((tx, now) => dirRename(tx, toIno(parent), bytes(name), toIno(newParent), bytes(newName), flags, now));
      if (r.replaced !== null) fuseCall(() => this.maybeDelete(r.replaced!.ino));
    });
  }

  link(_ctx: RequestContext, nodeid: number, newParent: number, newName: string): Entry | Promise<Entry> {
    return this.held(() => {
      return this.entry(this.tx((tx, now) => dirLink(tx, toIno(nodeid), toIno(newParent), bytes(newName), now)));
    });
  }

  // ------------------------------------------------------------------------------------------
  // Files.

  open(_ctx: RequestContext, nodeid: number, flags: number): OpenReply | Promise<OpenReply> {
    const ino = toIno(nodeid);
    const i = fuseCall(() => this.load(nodeid));
    if (isDir(i.v.mode)) throw new FuseError("EISDIR");
    if (flags & O_TRUNC && (flags & O_ACCMODE) !== 0 && isReg(i.v.mode) && i.v.size !== 0n) {
      // only a truncating open changes anything: only it waits for the store's admission
      return this.held(() => {
        this.tx((tx, now) => {
          const t = inodeGet(tx.w, ino, tx.fmtVers);
          dataTruncate(tx, t, 0, now);
          inodeSave(tx, t, { data: true });
        });
        return { fh: this.newHandle(ino, flags), openFlags: 0 };
      });
    }
    return { fh: this.newHandle(ino, flags), openFlags: 0 };
  }


  create(ctx: RequestContext, parent: number, name: string, mode: number, umask: number, flags: number): CreateReply | Promise<CreateReply> {
    return this.held(() => {
      const i = this.create1(ctx, parent, name, S_IFREG | (mode & 0o7777), 0, umask);
      return { entry: this.entry(i), open: { fh: this.newHandle(i.ino, flags), openFlags: 0 } };
    });
  }

  tmpfile(ctx: RequestContext, parent: number, mode: number, umask: number, flags: number): CreateReply | Promise<CreateReply> {
    return this.held(() => {
      const i = this.create1(ctx, parent, null, S_IFREG | (mode & 0o7777), 0, umask);
      return { entry: this.entry(i), open: { fh: this.newHandle(i.ino, flags), openFlags: 0 } };
    });
  }

  read(_ctx: RequestContext, nodeid: number, _fh: number, offset: number, size: number): Uint8Array {
    return fuseCall(() => {
      const i = this.load(nodeid);
      if (isDir(i.v.mode)) fsFail("EISDIR", "read of a directory");
      return dataRead({ w: this.store.reader, store: this.store }, i, offset, size);
    });
  }

  write(ctx: RequestContext, nodeid: number, fh: number, offset: number, data: Uint8Array): number | Promise<number> {
    const wait = fuseCall(() => this.store.hold?.() ?? null);
    if (wait !== null) {
      // `data` views the request buffer, reused while we wait
      const copy = new Uint8Array(data);
      this.counters.holdWaits++;
      return wait.then(
        () => this.write(ctx, nodeid, fh, offset, copy),
        (e: unknown) => {
          throw toFuseError(e);
        },
      );
    }
    return this.tx((tx, now) => {
      const i = inodeGet(tx.w, toIno(nodeid), tx.fmtVers);
      if (isDir(i.v.mode)) fsFail("EISDIR", "write to a directory");
      const n = dataWrite(tx, i, offset, data, now);
      inodeSave(tx, i, { data: true });
      return n;
    });
  }

  flush(): void {}

  release(_ctx: RequestContext, _nodeid: number, fh: number, _flags?: number, _releaseFlags?: number, _lockOwner?: bigint): void {
    this.dropHandle(fh);
  }

  async fsync(): Promise<void> {
    await this.store.sync();
  }

  fallocate(_ctx: RequestContext, nodeid: number, _fh: number, offset: number, length: number, mode: number): void | Promise<void> {
    return this.held(() => {
      this.tx((tx, now) => {
        const i = inodeGet(tx.w, toIno(nodeid), tx.fmtVers);
        if (!isReg(i.v.mode)) fsFail(isDir(i.v.mode) ? "EISDIR" : "ENODEV", "fallocate of a non-file");
        const changed = dataFallocate(tx, i, offset, length, mode, now);
        inodeSave(tx, i, { data: changed });
      });
    });
  }

  lseek(_ctx: RequestContext, nodeid: number, _fh: number, offset: number, whence: number): number {
    if (whence !== SEEK_DATA && whence !== SEEK_HOLE) throw new FuseError("EINVAL");
    return fuseCall(() => dataSeek(this.store.reader, this.load(nodeid), offset, whence));
  }

  copyFileRange(
    _ctx: RequestContext,
    nodeIn: number,
    _fhIn: number,
    offIn: number,
    nodeOut: number,
    _fhOut: number,
    offOut: number,
    len: number,
    flags: number,
  ): number | Promise<number> {
    if (flags !== 0) throw new FuseError("EINVAL");
    return this.held(() => this.tx((tx, now) => {
      const src = inodeGet(tx.w, toIno(nodeIn), tx.fmtVers);
      const dst = nodeOut === nodeIn ? src : inodeGet(tx.w, toIno(nodeOut), tx.fmtVers);
      if (isDir(src.v.mode) || isDir(dst.v.mode)) fsFail("EISDIR", "copy of a directory");
      if (!isReg(src.v.mode) || !isReg(dst.v.mode)) fsFail("EINVAL", "copy of a special file");
      const data = dataRead(tx, src, offIn, Math.min(len, COPY_MAX_BYTES));
      if (data.length === 0) return 0;
      const n = dataWrite(tx, dst, offOut, data, now);
      inodeSave(tx, dst, { data: true });
      return n;
    }));
  }

  statfs(): StatfsReply {
    if (this.statfsFn) return this.statfsFn();
    const blocks = 2 ** 32;
    return { blocks, bfree: blocks, bavail: blocks, files: 2 ** 32, ffree: 2 ** 32, bsize: BLOCK_BYTES, namelen: 255, frsize: BLOCK_BYTES };
  }

  access(ctx: RequestContext, nodeid: number, mask: number): void {
    const i = fuseCall(() => this.load(nodeid));
    if (ctx.uid === 0 || mask === 0) return;
    const m = i.v.mode;
    const bits = ctx.uid === i.v.uid ? (m >> 6) & 7 : ctx.gid === i.v.gid ? (m >> 3) & 7 : m & 7;
    if ((bits & mask) !== mask) throw new FuseError("EACCES");
  }

  // ------------------------------------------------------------------------------------------
  // Extended attributes.

  setxattr(ctx: RequestContext, nodeid: number, name: string, value: Uint8Array, flags: number): void | Promise<void> {
    // A copy: `value` views the request buffer, which is reused (Buffer#slice would be a view too).
    const copy = new Uint8Array(value);
    return this.held(() =>
      this.tx((tx, now) => {
        const i = inodeGet(tx.w, toIno(nodeid), tx.fmtVers);
        xattrSet(tx, i, name, copy, flags, { uid: ctx.uid }, now);
        inodeSave(tx, i);
      }),
    );
  }

  getxattr(_ctx: RequestContext, nodeid: number, name: string): Uint8Array {
    return fuseCall(() => {
      const v = xattrGet(this.store.reader, toIno(nodeid), name);
      if (v === null) throw ENODATA_XATTR;
      return v;
    });
  }

  listxattr(_ctx: RequestContext, nodeid: number): string[] {
    return fuseCall(() => xattrList(this.store.reader, this.load(nodeid).ino));
  }

  removexattr(ctx: RequestContext, nodeid: number, name: string): void | Promise<void> {
    return this.held(() => {
      this.tx((tx, now) => {
        const i = inodeGet(tx.w, toIno(nodeid), tx.fmtVers);
        xattrSet(tx, i, name, null, 0, { uid: ctx.uid }, now);
        inodeSave(tx, i);
      });
    }, true);
  }

  // ------------------------------------------------------------------------------------------
  // Directories.

  opendir(_ctx: RequestContext, nodeid: number, flags: number): OpenReply {
    const i = fuseCall(() => this.load(nodeid));
    if (!isDir(i.v.mode)) throw new FuseError("ENOTDIR");
    return { fh: this.newHandle(i.ino, flags), openFlags: 0 };
  }

  /**
   * Offsets: "." is followed by offset 1, ".." by 2 (DIRENT_FIRST_POS); an entry at readdir pos
   * p by p + 1, so resuming at an offset resumes at the next position, as scoutfs's f_pos does.
   */
  readdir(_ctx: RequestContext, nodeid: number, _fh: number, offset: number, sink: DirentSink): void {
    fuseCall(() => {
      const r = this.store.reader;
      const dir = this.load(nodeid);
      if (!isDir(dir.v.mode)) fsFail("ENOTDIR", "readdir of a non-directory");
      if (offset === 0 && !this.addDirent(sink, ".", dir, 1, false)) return;
      if (offset <= 1) {
        const p = dirParentIno(r, dir.ino) || dir.ino;
        if (!this.addDirent(sink, "..", inodeGet(r, p, this.store.fmtVers), 2, false)) return;
      }
      dirReaddir(r, dir.ino, BigInt(Math.max(offset, 2)), (d) => {
        const next = Number(d.pos + 1n);
        if (!sink.plus) return sink.add(latin1(d.name), toNodeid(d.ino), DT_TO_MODE[d.type] ?? 0, next);
        let i: FsInode | null;
        try {
          i = inodeLoad(r, d.ino, this.store.fmtVers);
        } catch (e) {
          // an unreadable inode (EIO: a corrupt block) still has its name listed, without
          // attributes (node id 0); a lookup of it answers the error
          if (!(e instanceof ScoutfsError) || e.code !== "EIO") throw e;
          return sink.add(latin1(d.name), toNodeid(d.ino), DT_TO_MODE[d.type] ?? 0, next);
        }
        if (i === null) return true;
        return this.addDirent(sink, latin1(d.name), i, next, true);
      });
    });
  }

  private addDirent(sink: DirentSink, name: string, i: FsInode, next: number, counts: boolean): boolean {
    if (!sink.plus) return sink.add(name, toNodeid(i.ino), i.v.mode, next);
    const e: Entry = { nodeid: toNodeid(i.ino), generation: 0, attr: this.attrOf(i), entryTimeout: this.entryTimeout, attrTimeout: this.attrTimeout };
    const ok = sink.add(name, toNodeid(i.ino), i.v.mode, next, e);
    if (ok && counts) this.ref(i.ino).nlookup++;
    return ok;
  }

  releasedir(_ctx: RequestContext, _nodeid: number, fh: number): void {
    this.dropHandle(fh);
  }

  async fsyncdir(): Promise<void> {
    await this.store.sync();
  }
}

