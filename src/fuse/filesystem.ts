/**
 * The API a filesystem implements to be served by this library (go-fuse's "raw filesystem" level:
 * node ids and file handles, no path names, no inode objects imposed).
 *
 * Every method is optional; the session answers ENOSYS for a missing one (and the kernel then
 * stops asking, or falls back, as it does for STATX or COPY_FILE_RANGE). A method returns its
 * reply value directly or as a promise; it fails by throwing a FuseError (or any error with an
 * errno, see errno.ts). Returning synchronously is cheaper: hot paths (lookup, getattr, read of
 * cached data) avoid a promise and a microtask hop.
 *
 * Lifetimes the implementation must honour (these are the kernel's rules, not ours):
 * - lookup count: every successful reply carrying an Entry (lookup, mknod, mkdir, symlink, link,
 *   create, tmpfile, and readdirplus entries other than "." and "..") adds one reference to that
 *   node id; `forget(nodeid, nlookup)` drops nlookup of them. A node id must stay valid while it
 *   has references, even after the last name and open handle are gone.
 * - buffers: `data` passed to write() and `value` passed to setxattr() are views into the request
 *   buffer, valid until the returned promise settles (or the method returns); copy what you keep.
 * - names are byte strings (one char per byte, latin1), never longer than 255 bytes; the session
 *   rejects NUL-less or over-long names before calling you.
 */
import type { Attr } from "./types.ts";

/** Who asked, and a way to learn that the kernel wants the request abandoned. */
export interface RequestContext {
  readonly unique: bigint;
  readonly nodeid: number;
  readonly uid: number;
  readonly gid: number;
  readonly pid: number;
  /** Set when the kernel sent INTERRUPT for this request (the caller got a signal). */
  interrupted: boolean;
  /**
   * Called once if the request is interrupted. A filesystem that blocks (a lock wait, a remote
   * call) should then fail with EINTR; one that completes normally is also correct, since the
   * kernel waits for the real answer either way.
   */
  onInterrupt: (() => void) | undefined;
}

/** Reply to lookup-like operations: a node id, its attributes and how long the kernel may cache. */
export interface Entry {
  /** 0 is a negative entry (cached "does not exist"), only valid for lookup. */
  nodeid: number;
  generation: number;
  attr: Attr;
  /** Seconds the kernel may cache the name -> node id mapping. */
  entryTimeout: number;
  /** Seconds the kernel may cache the attributes. */
  attrTimeout: number;
}

export interface AttrReply {
  attr: Attr;
  attrTimeout: number;
}

export interface OpenReply {
  fh: number;
  /** FOPEN_* bits (DIRECT_IO, KEEP_CACHE, CACHE_DIR, ...). */
  openFlags: number;
}

export interface CreateReply {
  entry: Entry;
  open: OpenReply;
}

export interface StatfsReply {
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  bsize: number;
  namelen: number;
  frsize: number;
}

/** What setattr asked to change: only the fields whose FATTR bit is in `valid` mean anything. */
export interface SetattrRequest {
  valid: number;
  fh: number;
  size: number;
  lockOwner: bigint;
  atime: number;
  atimensec: number;
  mtime: number;
  mtimensec: number;
  ctime: number;
  ctimensec: number;
  mode: number;
  uid: number;
  gid: number;
}

/** A POSIX byte-range lock; `end` is inclusive, Infinity for "to end of file". */
export interface FileLock {
  start: number;
  end: number;
  /** F_RDLCK, F_WRLCK or F_UNLCK */
  type: number;
  pid: number;
}

export interface IoctlReply {
  result: number;
  /** Output bytes, at most the out_size the kernel asked for. */
  data?: Uint8Array;
}

/**
 * Receives directory entries for one READDIR / READDIRPLUS reply. `add` returns false when the
 * reply is full: the entry was NOT taken, and the filesystem should stop (the kernel asks again
 * from that entry's offset). `offset` is the cookie of the NEXT entry (what telldir returns after
 * this one). For readdirplus the filesystem passes the Entry (and counts a lookup only for entries
 * that were taken, except "." and "..").
 */
export interface DirentSink {
  readonly plus: boolean;
  add(name: string, ino: number, mode: number, offset: number, entry?: Entry): boolean;
}

export interface InitInfo {
  major: number;
  minor: number;
  /** Flags the kernel offered and the flags we enabled (64-bit sets as numbers). */
  kernelFlags: number;
  enabledFlags: number;
  maxWrite: number;
  maxReadahead: number;
}

type R<T> = T | Promise<T>;

export interface Filesystem {
  /**
   * The filesystem removes privileges itself (FUSE_HANDLE_KILLPRIV_V2); the session then asks
   * the kernel for it. Without it the kernel does that work: before every write, truncate and
   * chown of a file it asks for security.capability (a GETXATTR round trip per write) and removes
   * what it finds. With it the kernel stops asking (one GETXATTR per inode at most) and the
   * filesystem must, in the same change as the operation:
   * - on every write: remove the security.capability xattr; when `writeFlags` has
   *   FUSE_WRITE_KILL_SUIDGID (a caller without CAP_FSETID) also clear S_ISUID, and S_ISGID when
   *   S_IXGRP is set;
   * - on setattr changing the size, uid or gid: remove security.capability; when `valid` has
   *   FATTR.KILL_SUIDGID clear S_ISUID, and S_ISGID when S_IXGRP is set;
   * - on open with O_TRUNC: the same as a size change, with `openFlags` FUSE_OPEN_KILL_SUIDGID
   *   in the role of KILL_SUIDGID (create passes it too; a new file has nothing to remove).
   * ("Same as the kernel", Documentation/filesystems/fuse.rst; should_remove_suid in fs/inode.c.)
   */
  readonly killPrivV2?: boolean;

  init?(info: InitInfo): R<void>;
  destroy?(): R<void>;

  lookup?(ctx: RequestContext, parent: number, name: string): R<Entry>;
  forget?(nodeid: number, nlookup: number): void;
  getattr?(ctx: RequestContext, nodeid: number, fh: number | undefined): R<AttrReply>;
  setattr?(ctx: RequestContext, nodeid: number, set: SetattrRequest): R<AttrReply>;
  readlink?(ctx: RequestContext, nodeid: number): R<string>;
  symlink?(ctx: RequestContext, parent: number, name: string, target: string): R<Entry>;
  mknod?(ctx: RequestContext, parent: number, name: string, mode: number, rdev: number, umask: number): R<Entry>;
  mkdir?(ctx: RequestContext, parent: number, name: string, mode: number, umask: number): R<Entry>;
  unlink?(ctx: RequestContext, parent: number, name: string): R<void>;
  rmdir?(ctx: RequestContext, parent: number, name: string): R<void>;
  /** flags: RENAME_NOREPLACE / RENAME_EXCHANGE / RENAME_WHITEOUT (0 for plain rename). */
  rename?(ctx: RequestContext, parent: number, name: string, newParent: number, newName: string, flags: number): R<void>;
  link?(ctx: RequestContext, nodeid: number, newParent: number, newName: string): R<Entry>;

  /** openFlags: fuse_open_in.open_flags (FUSE_OPEN_KILL_SUIDGID, see killPrivV2). */
  open?(ctx: RequestContext, nodeid: number, flags: number, openFlags: number): R<OpenReply>;
  /** Returns at most `size` bytes; fewer means end of file (unless DIRECT_IO). */
  read?(ctx: RequestContext, nodeid: number, fh: number, offset: number, size: number): R<Uint8Array>;
  /** Returns the number of bytes written. */
  write?(ctx: RequestContext, nodeid: number, fh: number, offset: number, data: Uint8Array, writeFlags: number): R<number>;
  flush?(ctx: RequestContext, nodeid: number, fh: number, lockOwner: bigint): R<void>;
  release?(ctx: RequestContext, nodeid: number, fh: number, flags: number, releaseFlags: number, lockOwner: bigint): R<void>;
  fsync?(ctx: RequestContext, nodeid: number, fh: number, datasync: boolean): R<void>;
  statfs?(ctx: RequestContext, nodeid: number): R<StatfsReply>;

  setxattr?(ctx: RequestContext, nodeid: number, name: string, value: Uint8Array, flags: number): R<void>;
  /** The whole value; the session handles size probes and ERANGE. */
  getxattr?(ctx: RequestContext, nodeid: number, name: string): R<Uint8Array>;
  /** All names; the session encodes and handles size probes and ERANGE. */
  listxattr?(ctx: RequestContext, nodeid: number): R<string[]>;
  removexattr?(ctx: RequestContext, nodeid: number, name: string): R<void>;

  opendir?(ctx: RequestContext, nodeid: number, flags: number): R<OpenReply>;
  readdir?(ctx: RequestContext, nodeid: number, fh: number, offset: number, sink: DirentSink): R<void>;
  releasedir?(ctx: RequestContext, nodeid: number, fh: number): R<void>;
  fsyncdir?(ctx: RequestContext, nodeid: number, fh: number, datasync: boolean): R<void>;

  access?(ctx: RequestContext, nodeid: number, mask: number): R<void>;
  create?(ctx: RequestContext, parent: number, name: string, mode: number, umask: number, flags: number, openFlags: number): R<CreateReply>;
  tmpfile?(ctx: RequestContext, parent: number, mode: number, umask: number, flags: number): R<CreateReply>;
  fallocate?(ctx: RequestContext, nodeid: number, fh: number, offset: number, length: number, mode: number): R<void>;
  lseek?(ctx: RequestContext, nodeid: number, fh: number, offset: number, whence: number): R<number>;
  copyFileRange?(
    ctx: RequestContext,
    nodeIn: number,
    fhIn: number,
    offIn: number,
    nodeOut: number,
    fhOut: number,
    offOut: number,
    len: number,
    flags: number,
  ): R<number>;
  /** Fixed-size ioctls only: `input` holds in_size bytes, the reply at most outSize bytes. */
  ioctl?(ctx: RequestContext, nodeid: number, fh: number, cmd: number, arg: bigint, input: Uint8Array, outSize: number, flags: number): R<IoctlReply>;

  getlk?(ctx: RequestContext, nodeid: number, fh: number, owner: bigint, lock: FileLock): R<FileLock>;
  /** sleep: SETLKW (wait for the lock; honour ctx.onInterrupt). flock: BSD flock() semantics. */
  setlk?(ctx: RequestContext, nodeid: number, fh: number, owner: bigint, lock: FileLock, sleep: boolean, flock: boolean): R<void>;

  /** Answer to a retrieve notification (see Session.notifyRetrieve). */
  retrieveReply?(notifyUnique: bigint, nodeid: number, offset: number, data: Uint8Array): void;
}
