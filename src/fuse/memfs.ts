/**
 * memfs: an in-memory POSIX filesystem served through this library. It exists to prove the
 * library on a real mount (test/fuse runs a POSIX checklist against it) and to measure the
 * library's own cost (scripts/bench/fuse.ts): every operation is synchronous and cheap, so what
 * the benchmark sees is the frontend.
 *
 * Semantics. Mounted with default_permissions, the kernel checks modes, ownership changes, sticky
 * directories and ACLs from the attributes we report; memfs keeps those attributes right:
 * owners from the caller, setgid directories passing their group on, nlink of directories
 * (2 + subdirectories), ctime/mtime on every change. Files keep data in chunks of at most
 * CHUNK_BYTES, allocated on first write and grown as written, so sparse files cost only what
 * was written and SEEK_DATA/SEEK_HOLE work at chunk granularity. Directories list in insertion
 * order; each open directory handle lists a snapshot taken at opendir (and at rewinddir), so a
 * listing of a directory that changes meanwhile returns every unchanged entry exactly once.
 *
 * Lifetimes. An inode lives while it has a name (nlink), an open handle, or kernel references
 * (lookup count, dropped by forget); the last of the three to go frees it.
 *
 * Locks: POSIX byte-range locks per owner and BSD flock()s, with SETLKW waiters woken on unlock
 * and answered EINTR when interrupted; or, with `kernelLocks`, none of that here: the kernel keeps
 * both kinds itself (as for a filesystem without lock methods), and close(2) sends no FLUSH.
 */
import { Errno, FuseError, assert } from "./errno.ts";
import type {
  AttrReply,
  CreateReply,
  DirentSink,
  Entry,
  FileLock,
  Filesystem,
  IoctlReply,
  OpenReply,
  RequestContext,
  SetattrRequest,
  StatfsReply,
} from "./filesystem.ts";
import {
  type Attr,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  FALLOC_FL_ZERO_RANGE,
  FATTR,
  FOPEN,
  FUSE_OPEN_KILL_SUIDGID,
  FUSE_RELEASE_FLOCK_UNLOCK,
  FUSE_WRITE_KILL_SUIDGID,
  F_RDLCK,
  F_UNLCK,
  F_WRLCK,
  RENAME_EXCHANGE,
  RENAME_NOREPLACE,
  RENAME_WHITEOUT,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  S_ISGID,
  S_ISUID,
  SEEK_CUR,
  SEEK_DATA,
  SEEK_END,
  SEEK_HOLE,
  SEEK_SET,
  XATTR_CREATE,
  XATTR_REPLACE,
} from "./types.ts";

export const CHUNK_BYTES = 1 << 20;
const BLOCK_BYTES = 4096;
const ROOT_INO = 1;
const XATTR_VALUE_MAX_BYTES = 65536;
const XATTR_LIST_MAX_BYTES = 65536;
const O_ACCMODE = 3;
const O_TRUNC = 0o1000;
const O_WRONLY = 1;
/** File capabilities: what a write, truncate or chown removes. */
const CAPABILITY_XATTR = "security.capability";
/** FS_IOC_GETFLAGS / FS_IOC_SETFLAGS (_IOR/_IOW('f', 1, long)) */
export const FS_IOC_GETFLAGS = 0x80086601;
export const FS_IOC_SETFLAGS = 0x40086602;
/** FS_IOC_GETVERSION (_IOR('v', 1, long)) */
export const FS_IOC_GETVERSION = 0x80087601;
/** FS_IOC_FSGETXATTR / FS_IOC_FSSETXATTR (_IOR/_IOW('X', 31/32, struct fsxattr)), 28 bytes */
export const FS_IOC_FSGETXATTR = 0x801c581f;
export const FS_IOC_FSSETXATTR = 0x401c5820;
const FSXATTR_BYTES = 28;
/** FS_*_FL inode flags and the FS_XFLAG_* bits the kernel maps them to. */
const FLAG_TO_XFLAG: Array<[number, number]> = [
  [0x08, 0x20], // SYNC
  [0x10, 0x08], // IMMUTABLE
  [0x20, 0x10], // APPEND
  [0x40, 0x80], // NODUMP
  [0x80, 0x40], // NOATIME
];
const MAX_FILE_BYTES = 2 ** 52;
const LINK_MAX = 65000;

interface PosixLock {
  owner: bigint;
  pid: number;
  start: number;
  end: number;
  type: number;
}

interface Waiter {
  retry: () => boolean;
}

const NO_LOCKS: readonly PosixLock[] = Object.freeze([]);

/** The answer to a lookup of a name that does not exist (see Memfs.lookup). */
const NO_ENTRY: Entry = Object.freeze({
  nodeid: 0,
  generation: 0,
  entryTimeout: 0,
  attrTimeout: 0,
  attr: Object.freeze({ ino: 0, size: 0, blocks: 0, atime: 0, atimensec: 0, mtime: 0, mtimensec: 0, ctime: 0, ctimensec: 0, mode: 0, nlink: 0, uid: 0, gid: 0, rdev: 0, blksize: 0 }),
});

export class Inode {
  nlink: number;
  size = 0;
  atime: number;
  atimensec: number;
  mtime: number;
  mtimensec: number;
  ctime: number;
  ctimensec: number;
  rdev = 0;
  /** Kernel references (lookup count) and open handles. */
  nlookup = 0;
  opens = 0;
  /** Directory entries: name -> ino, in insertion order. */
  children: Map<string, number> | undefined;
  parent = 0;
  /** File data chunks by index (offset / CHUNK_BYTES); a chunk may be shorter than CHUNK_BYTES. */
  chunks: Map<number, Uint8Array> | undefined;
  target = "";
  xattrs: Map<string, Uint8Array> | undefined;
  iflags = 0;
  /** Replaced, never changed in place: every inode starts with the same empty list. */
  locks: readonly PosixLock[] = NO_LOCKS;
  /** flock() holders and lock waiters, made on first use. */
  flocks: Map<bigint, number> | undefined;
  waiters: Waiter[] | undefined;

  constructor(
    readonly ino: number,
    public mode: number,
    public uid: number,
    public gid: number,
    readonly generation: number,
  ) {
    const [s, ns] = now();
    this.atime = this.mtime = this.ctime = s;
    this.atimensec = this.mtimensec = this.ctimensec = ns;
    this.nlink = (mode & S_IFMT) === S_IFDIR ? 2 : 1;
    if ((mode & S_IFMT) === S_IFDIR) this.children = new Map();
    if ((mode & S_IFMT) === S_IFREG) this.chunks = new Map();
  }

  get isDir(): boolean {
    return (this.mode & S_IFMT) === S_IFDIR;
  }

  /** Bytes of data chunks held (kept up to date where chunks are made, grown and dropped). */
  allocated = 0;

  allocatedBytes(): number {
    return this.allocated;
  }

  attr(): Attr {
    return {
      ino: this.ino,
      size: this.isDir ? BLOCK_BYTES : this.size,
      blocks: Math.ceil(this.allocatedBytes() / 512),
      atime: this.atime,
      atimensec: this.atimensec,
      mtime: this.mtime,
      mtimensec: this.mtimensec,
      ctime: this.ctime,
      ctimensec: this.ctimensec,
      mode: this.mode,
      nlink: this.nlink,
      uid: this.uid,
      gid: this.gid,
      rdev: this.rdev,
      blksize: BLOCK_BYTES,
    };
  }

  touchM(): void {
    const [s, ns] = now();
    this.mtime = this.ctime = s;
    this.mtimensec = this.ctimensec = ns;
  }

  touchC(): void {
    const [s, ns] = now();
    this.ctime = s;
    this.ctimensec = ns;
  }
}

function now(): [number, number] {
  const ms = Date.now();
  // sub-millisecond digits from the monotonic clock (no allocation, unlike process.hrtime())
  const sub = Math.floor((performance.now() % 1) * 1_000_000);
  return [Math.floor(ms / 1000), (ms % 1000) * 1_000_000 + sub];
}

interface Handle {
  ino: number;
  flags: number;
  /** Directory listing snapshot: [name, ino] pairs after "." and "..". */
  listing?: Array<[string, number]>;
}

export interface MemfsOptions {
  /** Seconds the kernel may cache names and attributes. */
  entryTimeout?: number;
  attrTimeout?: number;
  /** Total bytes the filesystem will hold (statfs and ENOSPC). */
  capacityBytes?: number;
  /** Mode of the root directory. */
  rootMode?: number;
  /** Remove privileges on write/truncate/chown here instead of in the kernel (Filesystem.killPrivV2). */
  killPrivV2?: boolean;
  /**
   * Leave POSIX byte-range locks and flock()s to the kernel: memfs then has no getlk/setlk (the
   * session does not negotiate POSIX_LOCKS/FLOCK_LOCKS, and the kernel keeps the locks of this
   * mount in its own lock tables, with all their semantics: conflicts, waiting, release on close
   * and exit) and no flush (its only job was dropping the closing owner's POSIX locks; without
   * it the kernel answers close(2) without a FLUSH round trip after the first ENOSYS). Correct
   * for any filesystem whose files are reached through this one mount only, memfs among them,
   * and the configuration of the scoutfs frontend (src/fs/fuse.ts has no lock methods either).
   */
  kernelLocks?: boolean;
  /**
   * No open/create (FUSE's "no open" mode, libfuse's FUSE_CAP_NO_OPEN_SUPPORT): the first OPEN is
   * answered ENOSYS and the kernel then opens files without asking (file handle 0) and sends no
   * RELEASE on close; the first CREATE likewise, and the kernel creates files with MKNOD. memfs
   * keeps no per-open state that needs them: reads and writes go by node id, and an unlinked
   * file stays alive while the kernel holds a reference (lookup count) to it, which it does while
   * the file is open. O_TRUNC then arrives as a SETATTR (the session does not negotiate
   * ATOMIC_O_TRUNC without an open method). Directories keep opendir (their listing snapshots)
   * and O_TMPFILE keeps tmpfile (with its handle and RELEASE).
   */
  noOpen?: boolean;
}

export class Memfs implements Filesystem {
  readonly inodes = new Map<number, Inode>();
  private readonly handles = new Map<number, Handle>();
  private nextIno = ROOT_INO + 1;
  private nextFh = 1;
  private generation = 1;
  private usedBytes = 0;
  readonly entryTimeout: number;
  readonly attrTimeout: number;
  readonly capacityBytes: number;
  readonly killPrivV2: boolean;

  constructor(opts: MemfsOptions = {}) {
    this.killPrivV2 = opts.killPrivV2 ?? false;
    if (opts.kernelLocks === true) {
      // Hide the lock methods from the session (it looks for them when negotiating and dispatching).
      for (const m of ["getlk", "setlk", "flush"] as const) Object.defineProperty(this, m, { value: undefined });
    }
    if (opts.noOpen === true) for (const m of ["open", "create"] as const) Object.defineProperty(this, m, { value: undefined });
    this.entryTimeout = opts.entryTimeout ?? 1;
    this.attrTimeout = opts.attrTimeout ?? 1;
    this.capacityBytes = opts.capacityBytes ?? 64 * 2 ** 30;
    const root = new Inode(ROOT_INO, S_IFDIR | (opts.rootMode ?? 0o755), process.getuid?.() ?? 0, process.getgid?.() ?? 0, 0);
    root.parent = ROOT_INO;
    root.nlookup = 1;
    this.inodes.set(ROOT_INO, root);
  }

  // ------------------------------------------------------------------------------------------
  // Helpers.

  get(ino: number): Inode {
    const i = this.inodes.get(ino);
    if (i === undefined) throw new FuseError("ENOENT", `no inode ${ino}`);
    return i;
  }

  /**
   * What the kernel's file_remove_privs does, when we asked to do it (killPrivV2): the
   * security.capability xattr goes; with `suidgid` (the caller lacks CAP_FSETID, or a chown) so
   * does S_ISUID, and S_ISGID when group execute is set.
   */
  private killPriv(i: Inode, suidgid: boolean): void {
    if (!this.killPrivV2 || i.isDir) return;
    let changed = i.xattrs?.delete(CAPABILITY_XATTR) ?? false;
    if (suidgid) {
      const kill = S_ISUID | ((i.mode & 0o010) !== 0 ? S_ISGID : 0);
      if (i.mode & kill) {
        i.mode &= ~kill;
        changed = true;
      }
    }
    if (changed) i.touchC();
  }

  private dir(ino: number): Inode {
    const d = this.get(ino);
    if (!d.isDir) throw new FuseError("ENOTDIR");
    return d;
  }

  private entry(i: Inode): Entry {
    i.nlookup++;
    return { nodeid: i.ino, generation: i.generation, attr: i.attr(), entryTimeout: this.entryTimeout, attrTimeout: this.attrTimeout };
  }

  private newInode(ctx: RequestContext, parent: Inode, mode: number): Inode {
    let gid = ctx.gid;
    if (parent.mode & S_ISGID) {
      gid = parent.gid;
      if ((mode & S_IFMT) === S_IFDIR) mode |= S_ISGID;
    }
    const i = new Inode(this.nextIno++, mode, ctx.uid, gid, this.generation);
    this.inodes.set(i.ino, i);
    return i;
  }

  private addName(d: Inode, name: string, i: Inode): void {
    assert(!d.children!.has(name), `adding existing name ${name}`);
    d.children!.set(name, i.ino);
    if (i.isDir) {
      d.nlink++;
      i.parent = d.ino;
    }
    d.touchM();
  }

  private create1(ctx: RequestContext, parentIno: number, name: string, mode: number): Inode {
    const d = this.dir(parentIno);
    if (d.children!.has(name)) throw new FuseError("EEXIST");
    if (d.nlink >= LINK_MAX && (mode & S_IFMT) === S_IFDIR) throw new FuseError("EMLINK");
    const i = this.newInode(ctx, d, mode);
    this.addName(d, name, i);
    return i;
  }

  /** Drop one name of `i`; free it if nothing else holds it. */
  private dropLink(i: Inode): void {
    i.nlink--;
    if (i.isDir) i.nlink = 0;
    i.touchC();
    this.maybeFree(i);
  }

  private maybeFree(i: Inode): void {
    if (i.nlink === 0 && i.opens === 0 && i.nlookup === 0 && i.ino !== ROOT_INO) {
      this.usedBytes -= i.allocatedBytes();
      this.inodes.delete(i.ino);
    }
  }

  // ------------------------------------------------------------------------------------------
  // Names.

  lookup(_ctx: RequestContext, parent: number, name: string): Entry {
    const d = this.dir(parent);
    let ino: number | undefined;
    if (name === ".") ino = d.ino;
    else if (name === "..") ino = d.parent;
    else ino = d.children!.get(name);
    // "No such name" as a negative entry that may not be cached (node id 0, entry timeout 0):
    // the kernel treats it exactly as ENOENT, and it spares a thrown error per miss (every
    // create and rename target is looked up first). Caching negative entries would need
    // invalidation when a name appears behind the kernel's back; see docs/fuse.md.
    if (ino === undefined) return NO_ENTRY;
    return this.entry(this.get(ino));
  }

  forget(nodeid: number, nlookup: number): void {
    const i = this.inodes.get(nodeid);
    if (i === undefined) return;
    i.nlookup -= nlookup;
    if (i.nlookup < 0) i.nlookup = 0;
    this.maybeFree(i);
  }

  getattr(_ctx: RequestContext, nodeid: number): AttrReply {
    return { attr: this.get(nodeid).attr(), attrTimeout: this.attrTimeout };
  }

  setattr(_ctx: RequestContext, nodeid: number, set: SetattrRequest): AttrReply {
    const i = this.get(nodeid);
    const v = set.valid;
    if (v & FATTR.SIZE) {
      if (i.isDir) throw new FuseError("EISDIR");
      if ((i.mode & S_IFMT) !== S_IFREG) throw new FuseError("EINVAL");
      this.truncate(i, set.size);
      i.touchM();
    }
    if (v & (FATTR.SIZE | FATTR.UID | FATTR.GID)) this.killPriv(i, (v & FATTR.KILL_SUIDGID) !== 0);
    if (v & FATTR.MODE) i.mode = (i.mode & S_IFMT) | (set.mode & 0o7777);
    if (v & FATTR.UID) i.uid = set.uid;
    if (v & FATTR.GID) i.gid = set.gid;
    const [s, ns] = now();
    if (v & FATTR.ATIME_NOW) [i.atime, i.atimensec] = [s, ns];
    else if (v & FATTR.ATIME) [i.atime, i.atimensec] = [set.atime, set.atimensec];
    if (v & FATTR.MTIME_NOW) [i.mtime, i.mtimensec] = [s, ns];
    else if (v & FATTR.MTIME) [i.mtime, i.mtimensec] = [set.mtime, set.mtimensec];
    if (v & FATTR.CTIME) [i.ctime, i.ctimensec] = [set.ctime, set.ctimensec];
    else i.touchC();
    return { attr: i.attr(), attrTimeout: this.attrTimeout };
  }

  readlink(_ctx: RequestContext, nodeid: number): string {
    const i = this.get(nodeid);
    if ((i.mode & S_IFMT) !== S_IFLNK) throw new FuseError("EINVAL");
    return i.target;
  }

  symlink(ctx: RequestContext, parent: number, name: string, target: string): Entry {
    const i = this.create1(ctx, parent, name, S_IFLNK | 0o777);
    i.target = target;
    i.size = target.length;
    return this.entry(i);
  }

  mknod(ctx: RequestContext, parent: number, name: string, mode: number, rdev: number): Entry {
    const i = this.create1(ctx, parent, name, mode);
    i.rdev = rdev;
    return this.entry(i);
  }

  mkdir(ctx: RequestContext, parent: number, name: string, mode: number): Entry {
    return this.entry(this.create1(ctx, parent, name, S_IFDIR | (mode & 0o7777)));
  }

  unlink(_ctx: RequestContext, parent: number, name: string): void {
    const d = this.dir(parent);
    const ino = d.children!.get(name);
    if (ino === undefined) throw new FuseError("ENOENT");
    const i = this.get(ino);
    if (i.isDir) throw new FuseError("EISDIR");
    d.children!.delete(name);
    d.touchM();
    this.dropLink(i);
  }

  rmdir(_ctx: RequestContext, parent: number, name: string): void {
    const d = this.dir(parent);
    const ino = d.children!.get(name);
    if (ino === undefined) throw new FuseError("ENOENT");
    const i = this.get(ino);
    if (!i.isDir) throw new FuseError("ENOTDIR");
    if (i.children!.size > 0) throw new FuseError("ENOTEMPTY");
    d.children!.delete(name);
    d.nlink--;
    d.touchM();
    this.dropLink(i);
  }

  /** Is `a` the directory `b` or one of its ancestors? */
  private isAncestor(a: Inode, b: Inode): boolean {
    let cur = b;
    for (let depth = 0; depth < 1 << 16; depth++) {
      if (cur.ino === a.ino) return true;
      if (cur.ino === ROOT_INO) return false;
      cur = this.get(cur.parent);
    }
    throw new FuseError("ELOOP");
  }

  rename(_ctx: RequestContext, parent: number, name: string, newParent: number, newName: string, flags: number): void {
    if (flags & RENAME_WHITEOUT || flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) throw new FuseError("EINVAL");
    if (flags & RENAME_NOREPLACE && flags & RENAME_EXCHANGE) throw new FuseError("EINVAL");
    const d = this.dir(parent);
    const nd = this.dir(newParent);
    const ino = d.children!.get(name);
    if (ino === undefined) throw new FuseError("ENOENT");
    const i = this.get(ino);
    const targetIno = nd.children!.get(newName);
    const t = targetIno === undefined ? undefined : this.get(targetIno);
    if (i.isDir && nd.ino !== d.ino && this.isAncestor(i, nd)) throw new FuseError("EINVAL");

    if (flags & RENAME_EXCHANGE) {
      if (t === undefined) throw new FuseError("ENOENT");
      if (t.isDir && d.ino !== nd.ino && this.isAncestor(t, d)) throw new FuseError("EINVAL");
      d.children!.set(name, t.ino);
      nd.children!.set(newName, i.ino);
      if (i.isDir !== t.isDir) {
        const dirGoesToNew = i.isDir;
        if (dirGoesToNew) {
          nd.nlink++;
          d.nlink--;
        } else {
          d.nlink++;
          nd.nlink--;
        }
      }
      if (i.isDir) i.parent = nd.ino;
      if (t.isDir) t.parent = d.ino;
      d.touchM();
      nd.touchM();
      i.touchC();
      t.touchC();
      return;
    }
    if (t !== undefined) {
      if (flags & RENAME_NOREPLACE) throw new FuseError("EEXIST");
      if (t.ino === i.ino) return; // two links to one inode: POSIX says do nothing
      if (i.isDir && !t.isDir) throw new FuseError("ENOTDIR");
      if (!i.isDir && t.isDir) throw new FuseError("EISDIR");
      if (t.isDir && t.children!.size > 0) throw new FuseError("ENOTEMPTY");
    }
    d.children!.delete(name);
    if (i.isDir) d.nlink--;
    if (t !== undefined) {
      nd.children!.delete(newName);
      if (t.isDir) nd.nlink--;
      this.dropLink(t);
    }
    nd.children!.set(newName, i.ino);
    if (i.isDir) {
      nd.nlink++;
      i.parent = nd.ino;
    }
    d.touchM();
    nd.touchM();
    i.touchC();
  }

  link(_ctx: RequestContext, nodeid: number, newParent: number, newName: string): Entry {
    const i = this.get(nodeid);
    if (i.isDir) throw new FuseError("EPERM");
    if (i.nlink >= LINK_MAX) throw new FuseError("EMLINK");
    const d = this.dir(newParent);
    if (d.children!.has(newName)) throw new FuseError("EEXIST");
    d.children!.set(newName, i.ino);
    d.touchM();
    i.nlink++;
    i.touchC();
    return this.entry(i);
  }

  // ------------------------------------------------------------------------------------------
  // Files.

  private newHandle(i: Inode, flags: number): number {
    const fh = this.nextFh++;
    this.handles.set(fh, { ino: i.ino, flags });
    i.opens++;
    return fh;
  }

  open(_ctx: RequestContext, nodeid: number, flags: number, openFlags = 0): OpenReply {
    const i = this.get(nodeid);
    if (i.isDir) throw new FuseError("EISDIR");
    if (flags & O_TRUNC && (flags & O_ACCMODE) !== 0 && (i.mode & S_IFMT) === S_IFREG) {
      this.truncate(i, 0);
      i.touchM();
      this.killPriv(i, (openFlags & FUSE_OPEN_KILL_SUIDGID) !== 0);
    }
    return { fh: this.newHandle(i, flags), openFlags: FOPEN.KEEP_CACHE };
  }

  create(ctx: RequestContext, parent: number, name: string, mode: number, _umask: number, flags: number): CreateReply {
    const i = this.create1(ctx, parent, name, S_IFREG | (mode & 0o7777));
    return { entry: this.entry(i), open: { fh: this.newHandle(i, flags), openFlags: FOPEN.KEEP_CACHE } };
  }

  tmpfile(ctx: RequestContext, parent: number, mode: number, _umask: number, flags: number): CreateReply {
    const d = this.dir(parent);
    const i = this.newInode(ctx, d, S_IFREG | (mode & 0o7777));
    i.nlink = 0;
    return { entry: this.entry(i), open: { fh: this.newHandle(i, flags), openFlags: FOPEN.KEEP_CACHE } };
  }

  release(_ctx: RequestContext, nodeid: number, fh: number, _flags: number, releaseFlags: number, lockOwner: bigint): void {
    const h = this.handles.get(fh);
    if (h === undefined) throw new FuseError("EBADF");
    this.handles.delete(fh);
    const i = this.inodes.get(h.ino);
    if (i === undefined) return;
    assert(h.ino === nodeid, `release of fh ${fh} for inode ${nodeid}, opened on ${h.ino}`);
    if (releaseFlags & FUSE_RELEASE_FLOCK_UNLOCK) {
      i.flocks?.delete(lockOwner);
      this.wake(i);
    }
    i.opens--;
    this.maybeFree(i);
  }

  /** close(2) of a descriptor: POSIX says the process's byte-range locks on the file go with it. */
  flush(_ctx: RequestContext, nodeid: number, _fh: number, lockOwner: bigint): void {
    const i = this.inodes.get(nodeid);
    if (i === undefined || i.locks.length === 0) return;
    const kept = i.locks.filter((l) => l.owner !== lockOwner);
    if (kept.length !== i.locks.length) {
      i.locks = kept;
      this.wake(i);
    }
  }

  fsync(): void {}

  read(_ctx: RequestContext, nodeid: number, _fh: number, offset: number, size: number): Uint8Array {
    const i = this.get(nodeid);
    if (i.isDir) throw new FuseError("EISDIR");
    if (offset >= i.size) return EMPTY;
    const len = Math.min(size, i.size - offset);
    const first = Math.floor(offset / CHUNK_BYTES);
    const within = offset - first * CHUNK_BYTES;
    const chunks = i.chunks!;
    if (within + len <= CHUNK_BYTES) {
      const c = chunks.get(first);
      // Fast path: the whole range is written data of one chunk; answer with a view, no copy.
      if (c !== undefined && within + len <= c.byteLength) return c.subarray(within, within + len);
    }
    const out = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const pos = offset + done;
      const idx = Math.floor(pos / CHUNK_BYTES);
      const at = pos - idx * CHUNK_BYTES;
      const n = Math.min(len - done, CHUNK_BYTES - at);
      const c = chunks.get(idx);
      if (c !== undefined && at < c.byteLength) out.set(c.subarray(at, Math.min(at + n, c.byteLength)), done);
      done += n;
    }
    return out;
  }

  write(_ctx: RequestContext, nodeid: number, _fh: number, offset: number, data: Uint8Array, writeFlags = 0): number {
    const i = this.get(nodeid);
    if (i.isDir) throw new FuseError("EISDIR");
    if (offset + data.byteLength > MAX_FILE_BYTES) throw new FuseError("EFBIG");
    this.killPriv(i, (writeFlags & FUSE_WRITE_KILL_SUIDGID) !== 0);
    this.writeAt(i, offset, data);
    if (offset + data.byteLength > i.size) i.size = offset + data.byteLength;
    i.touchM();
    return data.byteLength;
  }

  private writeAt(i: Inode, offset: number, data: Uint8Array): void {
    const chunks = i.chunks!;
    let done = 0;
    while (done < data.byteLength) {
      const pos = offset + done;
      const idx = Math.floor(pos / CHUNK_BYTES);
      const at = pos - idx * CHUNK_BYTES;
      const n = Math.min(data.byteLength - done, CHUNK_BYTES - at);
      const c = this.chunkFor(i, chunks, idx, at + n);
      c.set(data.subarray(done, done + n), at);
      done += n;
    }
  }

  /** The chunk `idx`, at least `len` bytes long (grown in powers of two, capped at CHUNK_BYTES). */
  private chunkFor(i: Inode, chunks: Map<number, Uint8Array>, idx: number, len: number): Uint8Array {
    const c = chunks.get(idx);
    if (c !== undefined && c.byteLength >= len) return c;
    let cap = Math.max(BLOCK_BYTES, c?.byteLength ?? 0);
    while (cap < len) cap *= 2;
    cap = Math.min(cap, CHUNK_BYTES);
    const grow = cap - (c?.byteLength ?? 0);
    if (this.usedBytes + grow > this.capacityBytes) throw new FuseError("ENOSPC");
    const n = new Uint8Array(cap);
    if (c !== undefined) n.set(c);
    chunks.set(idx, n);
    this.usedBytes += grow;
    i.allocated += grow;
    return n;
  }

  private truncate(i: Inode, size: number): void {
    if (size > MAX_FILE_BYTES) throw new FuseError("EFBIG");
    if (size < i.size) this.zeroRange(i, size, i.size - size, true);
    i.size = size;
  }

  /** Zero [offset, offset+len): whole chunks are dropped, partial ones cleared. */
  private zeroRange(i: Inode, offset: number, len: number, dropTail: boolean): void {
    const chunks = i.chunks!;
    const end = offset + len;
    for (const [idx, c] of chunks) {
      const cs = idx * CHUNK_BYTES;
      const ce = cs + CHUNK_BYTES;
      if (ce <= offset || cs >= end) continue;
      if (cs >= offset && (ce <= end || (dropTail && end >= i.size))) {
        chunks.delete(idx);
        this.usedBytes -= c.byteLength;
        i.allocated -= c.byteLength;
      } else {
        const a = Math.max(offset, cs) - cs;
        const b = Math.min(end, ce) - cs;
        if (a < c.byteLength) c.fill(0, a, Math.min(b, c.byteLength));
      }
    }
  }

  fallocate(_ctx: RequestContext, nodeid: number, _fh: number, offset: number, length: number, mode: number): void {
    const i = this.get(nodeid);
    if ((i.mode & S_IFMT) !== S_IFREG) throw new FuseError("ENODEV");
    if (offset + length > MAX_FILE_BYTES) throw new FuseError("EFBIG");
    if (mode & FALLOC_FL_PUNCH_HOLE) {
      if (!(mode & FALLOC_FL_KEEP_SIZE)) throw new FuseError("EOPNOTSUPP");
      this.zeroRange(i, offset, length, false);
    } else if (mode & FALLOC_FL_ZERO_RANGE) {
      this.zeroRange(i, offset, length, false);
      if (!(mode & FALLOC_FL_KEEP_SIZE) && offset + length > i.size) i.size = offset + length;
    } else if ((mode & ~FALLOC_FL_KEEP_SIZE) === 0) {
      // Reserve space: allocate zeroed chunks so later writes cannot fail with ENOSPC.
      const chunks = i.chunks!;
      for (let pos = offset; pos < offset + length; ) {
        const idx = Math.floor(pos / CHUNK_BYTES);
        const at = pos - idx * CHUNK_BYTES;
        const n = Math.min(offset + length - pos, CHUNK_BYTES - at);
        this.chunkFor(i, chunks, idx, at + n);
        pos += n;
      }
      if (!(mode & FALLOC_FL_KEEP_SIZE) && offset + length > i.size) i.size = offset + length;
    } else {
      throw new FuseError("EOPNOTSUPP");
    }
    i.touchM();
  }

  lseek(_ctx: RequestContext, nodeid: number, _fh: number, offset: number, whence: number): number {
    const i = this.get(nodeid);
    if (whence === SEEK_SET || whence === SEEK_CUR || whence === SEEK_END) throw new FuseError("EINVAL"); // the kernel does these itself
    if (whence !== SEEK_DATA && whence !== SEEK_HOLE) throw new FuseError("EINVAL");
    if (offset >= i.size) throw new FuseError("ENXIO");
    const chunks = i.chunks!;
    let pos = offset;
    while (pos < i.size) {
      const idx = Math.floor(pos / CHUNK_BYTES);
      const isData = chunks.has(idx);
      if (whence === SEEK_DATA && isData) return pos;
      if (whence === SEEK_HOLE && !isData) return pos;
      pos = (idx + 1) * CHUNK_BYTES;
    }
    if (whence === SEEK_HOLE) return i.size;
    throw new FuseError("ENXIO");
  }

  copyFileRange(_ctx: RequestContext, nodeIn: number, _fhIn: number, offIn: number, nodeOut: number, _fhOut: number, offOut: number, len: number): number {
    const src = this.get(nodeIn);
    const dst = this.get(nodeOut);
    if (src.isDir || dst.isDir) throw new FuseError("EISDIR");
    const n = Math.max(0, Math.min(len, src.size - offIn));
    if (n === 0) return 0;
    // A copy, not a view (Buffer#slice shares memory): source and target may be the same file.
    const data = new Uint8Array(this.read(_ctx, nodeIn, 0, offIn, n));
    return this.write(_ctx, dst.ino, 0, offOut, data);
  }

  statfs(): StatfsReply {
    const blocks = Math.floor(this.capacityBytes / BLOCK_BYTES);
    const used = Math.ceil(this.usedBytes / BLOCK_BYTES);
    return {
      blocks,
      bfree: blocks - used,
      bavail: blocks - used,
      files: 1 << 30,
      ffree: (1 << 30) - this.inodes.size,
      bsize: BLOCK_BYTES,
      namelen: 255,
      frsize: BLOCK_BYTES,
    };
  }

  access(ctx: RequestContext, nodeid: number, mask: number): void {
    const i = this.get(nodeid);
    if (ctx.uid === 0 || mask === 0) return;
    const bits = ctx.uid === i.uid ? (i.mode >> 6) & 7 : ctx.gid === i.gid ? (i.mode >> 3) & 7 : i.mode & 7;
    if ((bits & mask) !== mask) throw new FuseError("EACCES");
  }

  // ------------------------------------------------------------------------------------------
  // Extended attributes.

  setxattr(_ctx: RequestContext, nodeid: number, name: string, value: Uint8Array, flags: number): void {
    const i = this.get(nodeid);
    if (value.byteLength > XATTR_VALUE_MAX_BYTES) throw new FuseError("E2BIG");
    i.xattrs ??= new Map();
    const exists = i.xattrs.has(name);
    if (flags & XATTR_CREATE && exists) throw new FuseError("EEXIST");
    if (flags & XATTR_REPLACE && !exists) throw new FuseError("ENODATA");
    let listBytes = name.length + 1;
    for (const k of i.xattrs.keys()) if (k !== name) listBytes += k.length + 1;
    if (listBytes > XATTR_LIST_MAX_BYTES) throw new FuseError("ENOSPC");
    // A copy: `value` views the request buffer, which is reused (and Buffer#slice would not copy).
    i.xattrs.set(name, new Uint8Array(value));
    i.touchC();
  }

  getxattr(_ctx: RequestContext, nodeid: number, name: string): Uint8Array {
    const v = this.get(nodeid).xattrs?.get(name);
    if (v === undefined) throw new FuseError("ENODATA");
    return v;
  }

  listxattr(_ctx: RequestContext, nodeid: number): string[] {
    return [...(this.get(nodeid).xattrs?.keys() ?? [])];
  }

  removexattr(_ctx: RequestContext, nodeid: number, name: string): void {
    const i = this.get(nodeid);
    if (!i.xattrs?.delete(name)) throw new FuseError("ENODATA");
    i.touchC();
  }

  // ------------------------------------------------------------------------------------------
  // Directories.

  opendir(_ctx: RequestContext, nodeid: number, flags: number): OpenReply {
    const i = this.dir(nodeid);
    const fh = this.newHandle(i, flags);
    return { fh, openFlags: 0 };
  }

  readdir(_ctx: RequestContext, nodeid: number, fh: number, offset: number, sink: DirentSink): void {
    const d = this.dir(nodeid);
    const h = this.handles.get(fh);
    if (h === undefined || h.ino !== nodeid) throw new FuseError("EBADF");
    // Offsets: 1 and 2 follow "." and ".."; entry k of the snapshot has offset k + 3.
    if (offset === 0 || h.listing === undefined) h.listing = [...d.children!];
    let pos = offset;
    if (pos === 0) {
      if (!this.addDirent(sink, ".", d, 1, false)) return;
      pos = 1;
    }
    if (pos === 1) {
      const p = this.get(d.parent);
      if (!this.addDirent(sink, "..", p, 2, false)) return;
      pos = 2;
    }
    const listing = h.listing;
    for (let k = pos - 2; k < listing.length; k++) {
      const [name, ino] = listing[k]!;
      // Skip names removed since the snapshot; a name now pointing elsewhere lists its new inode.
      const cur = d.children!.get(name);
      if (cur === undefined) continue;
      const i = this.inodes.get(cur);
      if (i === undefined) continue;
      void ino;
      if (!this.addDirent(sink, name, i, k + 3, true)) return;
    }
  }

  private addDirent(sink: DirentSink, name: string, i: Inode, next: number, counts: boolean): boolean {
    if (!sink.plus) return sink.add(name, i.ino, i.mode, next);
    const e: Entry = { nodeid: i.ino, generation: i.generation, attr: i.attr(), entryTimeout: this.entryTimeout, attrTimeout: this.attrTimeout };
    const ok = sink.add(name, i.ino, i.mode, next, e);
    if (ok && counts) i.nlookup++;
    return ok;
  }

  releasedir(_ctx: RequestContext, _nodeid: number, fh: number): void {
    const h = this.handles.get(fh);
    if (h === undefined) throw new FuseError("EBADF");
    this.handles.delete(fh);
    const i = this.inodes.get(h.ino);
    if (i !== undefined) {
      i.opens--;
      this.maybeFree(i);
    }
  }

  fsyncdir(): void {}

  // ------------------------------------------------------------------------------------------
  // ioctl: a few fixed-size commands.

  ioctl(_ctx: RequestContext, nodeid: number, _fh: number, cmd: number, _arg: bigint, input: Uint8Array, outSize: number): IoctlReply {
    const i = this.get(nodeid);
    const inView = new DataView(input.buffer, input.byteOffset, input.byteLength);
    switch (cmd >>> 0) {
      case FS_IOC_GETFLAGS:
      case FS_IOC_GETVERSION: {
        // The kernel's fileattr code asks with a 4-byte int; a direct ioctl with a long.
        const out = new Uint8Array(Math.min(outSize, 8));
        if (out.byteLength < 4) throw new FuseError("EINVAL");
        new DataView(out.buffer).setUint32(0, cmd >>> 0 === FS_IOC_GETFLAGS ? i.iflags : i.generation, true);
        return { result: 0, data: out };
      }
      case FS_IOC_SETFLAGS:
        if (input.byteLength < 4) throw new FuseError("EINVAL");
        i.iflags = inView.getUint32(0, true);
        i.touchC();
        return { result: 0 };
      case FS_IOC_FSGETXATTR: {
        if (outSize < FSXATTR_BYTES) throw new FuseError("EINVAL");
        const out = new Uint8Array(FSXATTR_BYTES);
        let x = 0;
        for (const [fl, xfl] of FLAG_TO_XFLAG) if (i.iflags & fl) x |= xfl;
        new DataView(out.buffer).setUint32(0, x, true);
        return { result: 0, data: out };
      }
      case FS_IOC_FSSETXATTR: {
        if (input.byteLength < FSXATTR_BYTES) throw new FuseError("EINVAL");
        const x = inView.getUint32(0, true);
        let f = 0;
        for (const [fl, xfl] of FLAG_TO_XFLAG) if (x & xfl) f |= fl;
        i.iflags = f;
        i.touchC();
        return { result: 0 };
      }
      default:
        throw new FuseError("ENOTTY");
    }
  }

  // ------------------------------------------------------------------------------------------
  // Locks.

  getlk(_ctx: RequestContext, nodeid: number, _fh: number, owner: bigint, lock: FileLock): FileLock {
    const i = this.get(nodeid);
    const c = this.conflict(i, owner, lock);
    if (c === undefined) return { start: lock.start, end: lock.end, type: F_UNLCK, pid: 0 };
    return { start: c.start, end: c.end, type: c.type, pid: c.pid };
  }

  setlk(ctx: RequestContext, nodeid: number, _fh: number, owner: bigint, lock: FileLock, sleep: boolean, flock: boolean): void | Promise<void> {
    const i = this.get(nodeid);
    const attempt = flock ? () => this.tryFlock(i, owner, lock.type) : () => this.tryPosix(i, owner, lock);
    if (attempt()) return;
    if (!sleep) throw new FuseError("EAGAIN");
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = {
        retry: () => {
          if (ctx.interrupted) return true;
          if (!attempt()) return false;
          resolve();
          return true;
        },
      };
      (i.waiters ??= []).push(w);
      ctx.onInterrupt = () => {
        const k = i.waiters?.indexOf(w) ?? -1;
        if (k >= 0) i.waiters!.splice(k, 1);
        reject(new FuseError("EINTR"));
      };
    });
  }

  private tryFlock(i: Inode, owner: bigint, type: number): boolean {
    if (type === F_UNLCK) {
      i.flocks?.delete(owner);
      this.wake(i);
      return true;
    }
    i.flocks ??= new Map();
    for (const [o, t] of i.flocks) if (o !== owner && (t === F_WRLCK || type === F_WRLCK)) return false;
    i.flocks.set(owner, type);
    return true;
  }

  private conflict(i: Inode, owner: bigint, lock: FileLock): PosixLock | undefined {
    for (const l of i.locks) {
      if (l.owner === owner) continue;
      if (l.end < lock.start || l.start > lock.end) continue;
      if (l.type === F_WRLCK || lock.type === F_WRLCK) return l;
    }
    return undefined;
  }

  private tryPosix(i: Inode, owner: bigint, lock: FileLock): boolean {
    if (lock.type !== F_UNLCK && this.conflict(i, owner, lock) !== undefined) return false;
    // Remove this owner's locks over the range (splitting partial overlaps), then add the new one.
    const out: PosixLock[] = [];
    for (const l of i.locks) {
      if (l.owner !== owner || l.end < lock.start || l.start > lock.end) {
        out.push(l);
        continue;
      }
      if (l.start < lock.start) out.push({ ...l, end: lock.start - 1 });
      if (l.end > lock.end) out.push({ ...l, start: lock.end + 1 });
    }
    if (lock.type === F_RDLCK || lock.type === F_WRLCK) out.push({ owner, pid: lock.pid, start: lock.start, end: lock.end, type: lock.type });
    i.locks = out;
    this.wake(i);
    return true;
  }

  /** Let waiters retry after locks changed. */
  private wake(i: Inode): void {
    const ws = i.waiters;
    if (ws === undefined || ws.length === 0) return;
    i.waiters = [];
    for (const w of ws) if (!w.retry()) i.waiters.push(w);
  }
}

const EMPTY = new Uint8Array(0);

export { Errno };
