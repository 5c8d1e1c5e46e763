/**
 * The Linux FUSE kernel protocol: opcodes, flags and every struct we exchange with the kernel, as
 * named byte offsets plus small encoders and decoders (after go-fuse's fuse/types.go).
 *
 * Layouts follow include/uapi/linux/fuse.h (7.38 installed here; the running kernel speaks 7.45,
 * whose additions are flag bits and opcodes we either leave unnegotiated or answer ENOSYS). All
 * fields are little-endian on x86-64 and aarch64, the only hosts we run on.
 *
 * Conventions:
 * - 64-bit fields that we assign (node ids, file handles) or that stay far below 2^53 in practice
 *   (sizes, offsets, times) are plain numbers; `u64` decodes them and callers reject values above
 *   Number.MAX_SAFE_INTEGER where precision matters (file offsets, sizes). Lock owners are opaque
 *   kernel cookies and stay bigint.
 * - Names, symlink targets and xattr names are "byte strings": one char per byte (latin1), which
 *   round-trips arbitrary non-UTF-8 names losslessly and costs no UTF-8 validation.
 */
import { assert } from "./errno.ts";

export const FUSE_KERNEL_VERSION = 7;
/** The newest minor we understand; we answer INIT with min(kernel's minor, this). */
export const FUSE_KERNEL_MINOR_VERSION = 45;
/** Oldest minor we accept: 7.31 (Linux 5.4) has every struct at its current size. */
export const FUSE_MIN_MINOR_VERSION = 31;
export const FUSE_ROOT_ID = 1;
export const FUSE_MIN_READ_BUFFER = 8192;

export const Opcode = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  READLINK: 5,
  SYMLINK: 6,
  MKNOD: 8,
  MKDIR: 9,
  UNLINK: 10,
  RMDIR: 11,
  RENAME: 12,
  LINK: 13,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  STATFS: 17,
  RELEASE: 18,
  FSYNC: 20,
  SETXATTR: 21,
  GETXATTR: 22,
  LISTXATTR: 23,
  REMOVEXATTR: 24,
  FLUSH: 25,
  INIT: 26,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  FSYNCDIR: 30,
  GETLK: 31,
  SETLK: 32,
  SETLKW: 33,
  ACCESS: 34,
  CREATE: 35,
  INTERRUPT: 36,
  BMAP: 37,
  DESTROY: 38,
  IOCTL: 39,
  POLL: 40,
  NOTIFY_REPLY: 41,
  BATCH_FORGET: 42,
  FALLOCATE: 43,
  READDIRPLUS: 44,
  RENAME2: 45,
  LSEEK: 46,
  COPY_FILE_RANGE: 47,
  SETUPMAPPING: 48,
  REMOVEMAPPING: 49,
  SYNCFS: 50,
  TMPFILE: 51,
  STATX: 52,
  COPY_FILE_RANGE_64: 53,
} as const;

export const NotifyCode = {
  POLL: 1,
  INVAL_INODE: 2,
  INVAL_ENTRY: 3,
  STORE: 4,
  RETRIEVE: 5,
  DELETE: 6,
  RESEND: 7,
} as const;

/** INIT flags (fuse_init_in.flags | flags2 << 32). Bits above 31 are named as numbers > 2^31. */
export const InitFlag = {
  ASYNC_READ: 1 << 0,
  POSIX_LOCKS: 1 << 1,
  FILE_OPS: 1 << 2,
  ATOMIC_O_TRUNC: 1 << 3,
  EXPORT_SUPPORT: 1 << 4,
  BIG_WRITES: 1 << 5,
  DONT_MASK: 1 << 6,
  SPLICE_WRITE: 1 << 7,
  SPLICE_MOVE: 1 << 8,
  SPLICE_READ: 1 << 9,
  FLOCK_LOCKS: 1 << 10,
  HAS_IOCTL_DIR: 1 << 11,
  AUTO_INVAL_DATA: 1 << 12,
  DO_READDIRPLUS: 1 << 13,
  READDIRPLUS_AUTO: 1 << 14,
  ASYNC_DIO: 1 << 15,
  WRITEBACK_CACHE: 1 << 16,
  NO_OPEN_SUPPORT: 1 << 17,
  PARALLEL_DIROPS: 1 << 18,
  HANDLE_KILLPRIV: 1 << 19,
  POSIX_ACL: 1 << 20,
  ABORT_ERROR: 1 << 21,
  MAX_PAGES: 1 << 22,
  CACHE_SYMLINKS: 1 << 23,
  NO_OPENDIR_SUPPORT: 1 << 24,
  EXPLICIT_INVAL_DATA: 1 << 25,
  MAP_ALIGNMENT: 1 << 26,
  SUBMOUNTS: 1 << 27,
  HANDLE_KILLPRIV_V2: 1 << 28,
  SETXATTR_EXT: 1 << 29,
  INIT_EXT: 1 << 30,
  INIT_RESERVED: 2 ** 31,
  SECURITY_CTX: 2 ** 32,
  HAS_INODE_DAX: 2 ** 33,
  CREATE_SUPP_GROUP: 2 ** 34,
  HAS_EXPIRE_ONLY: 2 ** 35,
  DIRECT_IO_ALLOW_MMAP: 2 ** 36,
  PASSTHROUGH: 2 ** 37,
  NO_EXPORT_SUPPORT: 2 ** 38,
  HAS_RESEND: 2 ** 39,
  ALLOW_IDMAP: 2 ** 40,
  OVER_IO_URING: 2 ** 41,
  REQUEST_TIMEOUT: 2 ** 42,
} as const;

/** Names of the INIT flag bits, for logs and docs. */
export function initFlagNames(flags: number): string[] {
  const out: string[] = [];
  for (const [name, bit] of Object.entries(InitFlag)) if (Math.floor(flags / bit) % 2 === 1) out.push(name);
  const known = Object.values(InitFlag).reduce((a, b) => a + b, 0);
  for (let bit = 0; bit < 64; bit++) {
    const v = 2 ** bit;
    if (Math.floor(flags / v) % 2 === 1 && Math.floor(known / v) % 2 === 0) out.push(`bit${bit}`);
  }
  return out;
}

/** fuse_setattr_in.valid */
export const FATTR = {
  MODE: 1 << 0,
  UID: 1 << 1,
  GID: 1 << 2,
  SIZE: 1 << 3,
  ATIME: 1 << 4,
  MTIME: 1 << 5,
  FH: 1 << 6,
  ATIME_NOW: 1 << 7,
  MTIME_NOW: 1 << 8,
  LOCKOWNER: 1 << 9,
  CTIME: 1 << 10,
  KILL_SUIDGID: 1 << 11,
} as const;

/** fuse_open_out.open_flags */
export const FOPEN = {
  DIRECT_IO: 1 << 0,
  KEEP_CACHE: 1 << 1,
  NONSEEKABLE: 1 << 2,
  CACHE_DIR: 1 << 3,
  STREAM: 1 << 4,
  NOFLUSH: 1 << 5,
  PARALLEL_DIRECT_WRITES: 1 << 6,
} as const;

export const FUSE_RELEASE_FLUSH = 1 << 0;
export const FUSE_RELEASE_FLOCK_UNLOCK = 1 << 1;
export const FUSE_GETATTR_FH = 1 << 0;
export const FUSE_LK_FLOCK = 1 << 0;
export const FUSE_WRITE_CACHE = 1 << 0;
export const FUSE_WRITE_LOCKOWNER = 1 << 1;
export const FUSE_WRITE_KILL_SUIDGID = 1 << 2;
/** fuse_open_in.open_flags / fuse_create_in.open_flags: kill suid/sgid (HANDLE_KILLPRIV_V2, O_TRUNC). */
export const FUSE_OPEN_KILL_SUIDGID = 1 << 0;
export const FUSE_FSYNC_FDATASYNC = 1 << 0;
export const FUSE_IOCTL_COMPAT = 1 << 0;
export const FUSE_IOCTL_UNRESTRICTED = 1 << 1;
export const FUSE_IOCTL_RETRY = 1 << 2;
export const FUSE_IOCTL_32BIT = 1 << 3;
export const FUSE_IOCTL_DIR = 1 << 4;
export const FUSE_SETXATTR_ACL_KILL_SGID = 1 << 0;
/** The kernel sets this bit in the unique of an INTERRUPT request's own header. */
export const FUSE_INT_REQ_BIT = 1;

/** renameat2 flags */
export const RENAME_NOREPLACE = 1 << 0;
export const RENAME_EXCHANGE = 1 << 1;
export const RENAME_WHITEOUT = 1 << 2;

/** setxattr flags */
export const XATTR_CREATE = 1;
export const XATTR_REPLACE = 2;

/** lseek whence */
export const SEEK_SET = 0;
export const SEEK_CUR = 1;
export const SEEK_END = 2;
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;

/** fcntl lock types */
export const F_RDLCK = 0;
export const F_WRLCK = 1;
export const F_UNLCK = 2;

/** fallocate modes */
export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;
export const FALLOC_FL_ZERO_RANGE = 0x10;

/** d_type values for dirents, from the S_IFMT bits of a mode. */
export function direntType(mode: number): number {
  return (mode >>> 12) & 0xf;
}

export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;
export const S_ISUID = 0o4000;
export const S_ISGID = 0o2000;
export const S_ISVTX = 0o1000;

// ---------------------------------------------------------------------------------------------
// Struct layouts: byte offsets and sizes.

export const InHeader = {
  LEN: 0,
  OPCODE: 4,
  UNIQUE: 8,
  NODEID: 16,
  UID: 24,
  GID: 28,
  PID: 32,
  TOTAL_EXTLEN: 36,
  SIZE: 40,
} as const;

export const OutHeader = { LEN: 0, ERROR: 4, UNIQUE: 8, SIZE: 16 } as const;

export const AttrLayout = {
  INO: 0,
  SIZE: 8,
  BLOCKS: 16,
  ATIME: 24,
  MTIME: 32,
  CTIME: 40,
  ATIMENSEC: 48,
  MTIMENSEC: 52,
  CTIMENSEC: 56,
  MODE: 60,
  NLINK: 64,
  UID: 68,
  GID: 72,
  RDEV: 76,
  BLKSIZE: 80,
  FLAGS: 84,
  SIZEOF: 88,
} as const;

export const EntryOut = {
  NODEID: 0,
  GENERATION: 8,
  ENTRY_VALID: 16,
  ATTR_VALID: 24,
  ENTRY_VALID_NSEC: 32,
  ATTR_VALID_NSEC: 36,
  ATTR: 40,
  SIZEOF: 128,
} as const;

export const AttrOut = { ATTR_VALID: 0, ATTR_VALID_NSEC: 8, ATTR: 16, SIZEOF: 104 } as const;
export const OpenOut = { FH: 0, OPEN_FLAGS: 8, SIZEOF: 16 } as const;
export const StatfsOut = {
  BLOCKS: 0,
  BFREE: 8,
  BAVAIL: 16,
  FILES: 24,
  FFREE: 32,
  BSIZE: 40,
  NAMELEN: 44,
  FRSIZE: 48,
  SIZEOF: 80,
} as const;
export const FileLockLayout = { START: 0, END: 8, TYPE: 16, PID: 20, SIZEOF: 24 } as const;

export const ForgetIn = { NLOOKUP: 0, SIZEOF: 8 } as const;
export const BatchForgetIn = { COUNT: 0, SIZEOF: 8 } as const;
export const ForgetOne = { NODEID: 0, NLOOKUP: 8, SIZEOF: 16 } as const;
export const GetattrIn = { FLAGS: 0, FH: 8, SIZEOF: 16 } as const;
export const SetattrIn = {
  VALID: 0,
  FH: 8,
  SIZE: 16,
  LOCK_OWNER: 24,
  ATIME: 32,
  MTIME: 40,
  CTIME: 48,
  ATIMENSEC: 56,
  MTIMENSEC: 60,
  CTIMENSEC: 64,
  MODE: 68,
  UID: 76,
  GID: 80,
  SIZEOF: 88,
} as const;
export const MknodIn = { MODE: 0, RDEV: 4, UMASK: 8, SIZEOF: 16 } as const;
export const MkdirIn = { MODE: 0, UMASK: 4, SIZEOF: 8 } as const;
export const RenameIn = { NEWDIR: 0, SIZEOF: 8 } as const;
export const Rename2In = { NEWDIR: 0, FLAGS: 8, SIZEOF: 16 } as const;
export const LinkIn = { OLDNODEID: 0, SIZEOF: 8 } as const;
export const OpenIn = { FLAGS: 0, OPEN_FLAGS: 4, SIZEOF: 8 } as const;
export const CreateIn = { FLAGS: 0, MODE: 4, UMASK: 8, OPEN_FLAGS: 12, SIZEOF: 16 } as const;
export const ReleaseIn = { FH: 0, FLAGS: 8, RELEASE_FLAGS: 12, LOCK_OWNER: 16, SIZEOF: 24 } as const;
export const FlushIn = { FH: 0, LOCK_OWNER: 16, SIZEOF: 24 } as const;
export const ReadIn = { FH: 0, OFFSET: 8, SIZE: 16, READ_FLAGS: 20, LOCK_OWNER: 24, FLAGS: 32, SIZEOF: 40 } as const;
export const WriteIn = { FH: 0, OFFSET: 8, SIZE: 16, WRITE_FLAGS: 20, LOCK_OWNER: 24, FLAGS: 32, SIZEOF: 40 } as const;
export const WriteOut = { SIZE: 0, SIZEOF: 8 } as const;
export const FsyncIn = { FH: 0, FSYNC_FLAGS: 8, SIZEOF: 16 } as const;
/** 8 bytes unless SETXATTR_EXT was negotiated, then 16 (setxattr_flags follows). */
export const SetxattrIn = { SIZE: 0, FLAGS: 4, SETXATTR_FLAGS: 8, COMPAT_SIZEOF: 8, SIZEOF: 16 } as const;
export const GetxattrIn = { SIZE: 0, SIZEOF: 8 } as const;
export const GetxattrOut = { SIZE: 0, SIZEOF: 8 } as const;
export const LkIn = { FH: 0, OWNER: 8, LK: 16, LK_FLAGS: 40, SIZEOF: 48 } as const;
export const LkOut = { LK: 0, SIZEOF: 24 } as const;
export const AccessIn = { MASK: 0, SIZEOF: 8 } as const;
export const InitIn = { MAJOR: 0, MINOR: 4, MAX_READAHEAD: 8, FLAGS: 12, FLAGS2: 16, COMPAT_SIZEOF: 16, SIZEOF: 64 } as const;
export const InitOut = {
  MAJOR: 0,
  MINOR: 4,
  MAX_READAHEAD: 8,
  FLAGS: 12,
  MAX_BACKGROUND: 16,
  CONGESTION_THRESHOLD: 18,
  MAX_WRITE: 20,
  TIME_GRAN: 24,
  MAX_PAGES: 28,
  MAP_ALIGNMENT: 30,
  FLAGS2: 32,
  MAX_STACK_DEPTH: 36,
  SIZEOF: 64,
} as const;
export const InterruptIn = { UNIQUE: 0, SIZEOF: 8 } as const;
export const IoctlIn = { FH: 0, FLAGS: 8, CMD: 12, ARG: 16, IN_SIZE: 24, OUT_SIZE: 28, SIZEOF: 32 } as const;
export const IoctlOut = { RESULT: 0, FLAGS: 4, IN_IOVS: 8, OUT_IOVS: 12, SIZEOF: 16 } as const;
export const FallocateIn = { FH: 0, OFFSET: 8, LENGTH: 16, MODE: 24, SIZEOF: 32 } as const;
export const LseekIn = { FH: 0, OFFSET: 8, WHENCE: 16, SIZEOF: 24 } as const;
export const LseekOut = { OFFSET: 0, SIZEOF: 8 } as const;
export const CopyFileRangeIn = {
  FH_IN: 0,
  OFF_IN: 8,
  NODEID_OUT: 16,
  FH_OUT: 24,
  OFF_OUT: 32,
  LEN: 40,
  FLAGS: 48,
  SIZEOF: 56,
} as const;
export const Dirent = { INO: 0, OFF: 8, NAMELEN: 16, TYPE: 20, NAME: 24 } as const;
export const NotifyInvalInodeOut = { INO: 0, OFF: 8, LEN: 16, SIZEOF: 24 } as const;
export const NotifyInvalEntryOut = { PARENT: 0, NAMELEN: 8, FLAGS: 12, SIZEOF: 16 } as const;
export const NotifyDeleteOut = { PARENT: 0, CHILD: 8, NAMELEN: 16, SIZEOF: 24 } as const;
export const NotifyStoreOut = { NODEID: 0, OFFSET: 8, SIZE: 16, SIZEOF: 24 } as const;
export const NotifyRetrieveOut = { NOTIFY_UNIQUE: 0, NODEID: 8, OFFSET: 16, SIZE: 24, SIZEOF: 32 } as const;
export const NotifyRetrieveIn = { OFFSET: 8, SIZE: 16, SIZEOF: 40 } as const;

/** FUSE_DEV_IOC_CLONE = _IOR(229, 0, uint32_t) */
export const FUSE_DEV_IOC_CLONE = (2 << 30) | (4 << 16) | (229 << 8) | 0;

/** Variable-length records (dirents) are padded to 8 bytes. */
export function recAlign(n: number): number {
  return (n + 7) & ~7;
}

// ---------------------------------------------------------------------------------------------
// Field access.

const TWO32 = 2 ** 32;

/** A u64 as a number (exact below 2^53; callers check MAX_SAFE_INTEGER where it matters). */
export function getU64(v: DataView, off: number): number {
  return v.getUint32(off, true) + v.getUint32(off + 4, true) * TWO32;
}

/** Store a non-negative integer number, or a negative one as two's complement (times before 1970). */
export function putU64(v: DataView, off: number, n: number): void {
  if (n >= 0 && n < TWO32) {
    v.setUint32(off, n, true);
    v.setUint32(off + 4, 0, true);
  } else if (n >= 0 && n <= Number.MAX_SAFE_INTEGER) {
    v.setUint32(off, n % TWO32, true);
    v.setUint32(off + 4, Math.floor(n / TWO32), true);
  } else {
    assert(Number.isInteger(n), `putU64 of a non-integer ${n}`);
    v.setBigInt64(off, BigInt(n), true);
  }
}

/** File attributes as the kernel caches them (struct fuse_attr). Times are seconds + nanoseconds. */
export interface Attr {
  ino: number;
  size: number;
  blocks: number;
  atime: number;
  atimensec: number;
  mtime: number;
  mtimensec: number;
  ctime: number;
  ctimensec: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  blksize: number;
}

export function encodeAttr(v: DataView, off: number, a: Attr): void {
  putU64(v, off + AttrLayout.INO, a.ino);
  putU64(v, off + AttrLayout.SIZE, a.size);
  putU64(v, off + AttrLayout.BLOCKS, a.blocks);
  putU64(v, off + AttrLayout.ATIME, a.atime);
  putU64(v, off + AttrLayout.MTIME, a.mtime);
  putU64(v, off + AttrLayout.CTIME, a.ctime);
  v.setUint32(off + AttrLayout.ATIMENSEC, a.atimensec, true);
  v.setUint32(off + AttrLayout.MTIMENSEC, a.mtimensec, true);
  v.setUint32(off + AttrLayout.CTIMENSEC, a.ctimensec, true);
  v.setUint32(off + AttrLayout.MODE, a.mode, true);
  v.setUint32(off + AttrLayout.NLINK, a.nlink, true);
  v.setUint32(off + AttrLayout.UID, a.uid, true);
  v.setUint32(off + AttrLayout.GID, a.gid, true);
  v.setUint32(off + AttrLayout.RDEV, a.rdev, true);
  v.setUint32(off + AttrLayout.BLKSIZE, a.blksize, true);
  v.setUint32(off + AttrLayout.FLAGS, 0, true);
}

export function decodeAttr(v: DataView, off: number): Attr {
  return {
    ino: getU64(v, off + AttrLayout.INO),
    size: getU64(v, off + AttrLayout.SIZE),
    blocks: getU64(v, off + AttrLayout.BLOCKS),
    atime: getU64(v, off + AttrLayout.ATIME),
    mtime: getU64(v, off + AttrLayout.MTIME),
    ctime: getU64(v, off + AttrLayout.CTIME),
    atimensec: v.getUint32(off + AttrLayout.ATIMENSEC, true),
    mtimensec: v.getUint32(off + AttrLayout.MTIMENSEC, true),
    ctimensec: v.getUint32(off + AttrLayout.CTIMENSEC, true),
    mode: v.getUint32(off + AttrLayout.MODE, true),
    nlink: v.getUint32(off + AttrLayout.NLINK, true),
    uid: v.getUint32(off + AttrLayout.UID, true),
    gid: v.getUint32(off + AttrLayout.GID, true),
    rdev: v.getUint32(off + AttrLayout.RDEV, true),
    blksize: v.getUint32(off + AttrLayout.BLKSIZE, true),
  };
}

/** A cache timeout in seconds (may be fractional) as the kernel's (seconds, nanoseconds) pair. */
export function putTimeout(v: DataView, secOff: number, nsecOff: number, seconds: number): void {
  const s = seconds > 0 ? Math.floor(seconds) : 0;
  const ns = seconds > 0 ? Math.min(999_999_999, Math.round((seconds - s) * 1e9)) : 0;
  putU64(v, secOff, s);
  v.setUint32(nsecOff, ns, true);
}
