/**
 * The opcode table: for every opcode its name, the size of its fixed input struct, and the handler
 * that decodes the input, calls the Filesystem and encodes the reply (go-fuse's fuse/opcode.go).
 *
 * The session checks the header and that at least `inSize` payload bytes are present before a
 * handler runs, so handlers read their fixed struct without further checks. Variable parts (names,
 * write data, xattr values, forget arrays) are bounds-checked here against `end`, the end of the
 * payload; a request that does not fit is answered EINVAL. Opcodes absent from the table, or
 * present without a handler, are answered ENOSYS.
 */
import { Errno, FuseError } from "./errno.ts";
import type { AttrReply, CreateReply, DirentSink, Entry, FileLock, OpenReply, SetattrRequest, StatfsReply } from "./filesystem.ts";
import type { Request, Session } from "./session.ts";
import {
  AccessIn,
  AttrOut,
  BatchForgetIn,
  CopyFileRangeIn,
  CreateIn,
  Dirent,
  EntryOut,
  FUSE_GETATTR_FH,
  FUSE_IOCTL_UNRESTRICTED,
  FUSE_LK_FLOCK,
  FileLockLayout,
  FallocateIn,
  FlushIn,
  ForgetIn,
  ForgetOne,
  FsyncIn,
  FUSE_FSYNC_FDATASYNC,
  GetattrIn,
  GetxattrIn,
  GetxattrOut,
  InitIn,
  InterruptIn,
  IoctlIn,
  IoctlOut,
  LinkIn,
  LkIn,
  LkOut,
  LseekIn,
  LseekOut,
  MkdirIn,
  MknodIn,
  NotifyRetrieveIn,
  Opcode,
  OpenIn,
  OpenOut,
  OutHeader,
  ReadIn,
  ReleaseIn,
  Rename2In,
  RenameIn,
  SetattrIn,
  SetxattrIn,
  StatfsOut,
  WriteIn,
  WriteOut,
  direntType,
  encodeAttr,
  getU64,
  putTimeout,
  putU64,
  recAlign,
} from "./types.ts";

/** Decode the request at [off, end) of buf/v and answer it. See Session.dispatch for the return. */
export type Handler = (s: Session, req: Request, v: DataView, buf: Buffer, off: number, end: number) => Promise<void> | undefined;

export interface OpcodeInfo {
  name: string;
  /** Bytes of the fixed input struct that must be present. */
  inSize: number;
  handler: Handler | undefined;
  /** The kernel expects no reply (FORGET, BATCH_FORGET, INTERRUPT, NOTIFY_REPLY). */
  noReply?: boolean;
  /** The handler may keep a view of the request buffer past dispatch (see Session.dispatch). */
  holdsBuffer?: boolean;
}

const NAME_MAX_BYTES = 255;
const PATH_MAX_BYTES = 4096;
const XATTR_NAME_MAX_BYTES = 255;
const XATTR_SIZE_MAX_BYTES = 65536;
/** Lock ranges end at OFFSET_MAX (2^63-1) for "to end of file"; we call that Infinity. */
const OFFSET_MAX = 0x7fffffffffffffffn;
/** The u32 reply of COPY_FILE_RANGE bounds one copy; the kernel loops for more. */
const COPY_MAX_BYTES = 0xfffff000;

// ---------------------------------------------------------------------------------------------
// Decoding helpers: bounds-checked, throwing FuseError(EINVAL) on bad input.

function badRequest(what: string): never {
  throw new FuseError("EINVAL", what);
}

/** A NUL-terminated byte string starting at `off`; returns it and the offset after the NUL. */
function cstr(buf: Buffer, off: number, end: number, maxBytes: number, what: string): [string, number] {
  const nul = buf.indexOf(0, off);
  if (nul < 0 || nul >= end) badRequest(`${what}: no NUL before the end of the request`);
  if (nul - off > maxBytes) throw new FuseError("ENAMETOOLONG", `${what}: ${nul - off} bytes`);
  return [buf.toString("latin1", off, nul), nul + 1];
}

function name(buf: Buffer, off: number, end: number): string {
  const [n] = cstr(buf, off, end, NAME_MAX_BYTES, "name");
  if (n.length === 0) badRequest("empty name");
  return n;
}

/** A file offset or size: must be exact as a number. */
function offset(v: DataView, off: number): number {
  const n = getU64(v, off);
  if (n > Number.MAX_SAFE_INTEGER) throw new FuseError("EFBIG", `offset ${v.getBigUint64(off, true)} beyond 2^53`);
  return n;
}

function decodeLock(v: DataView, off: number): FileLock {
  const end = v.getBigUint64(off + FileLockLayout.END, true);
  return {
    start: Math.min(getU64(v, off + FileLockLayout.START), Number.MAX_SAFE_INTEGER),
    end: end >= OFFSET_MAX || end > BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(end),
    type: v.getUint32(off + FileLockLayout.TYPE, true),
    pid: v.getUint32(off + FileLockLayout.PID, true),
  };
}

// ---------------------------------------------------------------------------------------------
// Encoding helpers: into the session's shared out buffer at OutHeader.SIZE.

export function encodeEntry(v: DataView, p: number, e: Entry): void {
  putU64(v, p + EntryOut.NODEID, e.nodeid);
  putU64(v, p + EntryOut.GENERATION, e.generation);
  putTimeout(v, p + EntryOut.ENTRY_VALID, p + EntryOut.ENTRY_VALID_NSEC, e.entryTimeout);
  putTimeout(v, p + EntryOut.ATTR_VALID, p + EntryOut.ATTR_VALID_NSEC, e.attrTimeout);
  encodeAttr(v, p + EntryOut.ATTR, e.attr);
}

function replyEntry(s: Session, req: Request, e: Entry): void {
  encodeEntry(s.outView, OutHeader.SIZE, e);
  s.replyOut(req, EntryOut.SIZEOF);
}

function replyAttr(s: Session, req: Request, r: AttrReply): void {
  const o = s.outView;
  const p = OutHeader.SIZE;
  putTimeout(o, p + AttrOut.ATTR_VALID, p + AttrOut.ATTR_VALID_NSEC, r.attrTimeout);
  o.setUint32(p + AttrOut.ATTR_VALID_NSEC + 4, 0, true);
  encodeAttr(o, p + AttrOut.ATTR, r.attr);
  s.replyOut(req, AttrOut.SIZEOF);
}

function replyOpen(s: Session, req: Request, o: OpenReply): void {
  encodeOpen(s.outView, OutHeader.SIZE, o);
  s.replyOut(req, OpenOut.SIZEOF);
}

function replyCreate(s: Session, req: Request, r: CreateReply): void {
  encodeEntry(s.outView, OutHeader.SIZE, r.entry);
  encodeOpen(s.outView, OutHeader.SIZE + EntryOut.SIZEOF, r.open);
  s.replyOut(req, EntryOut.SIZEOF + OpenOut.SIZEOF);
}

function replyWritten(s: Session, req: Request, n: number): void {
  s.outView.setUint32(OutHeader.SIZE + WriteOut.SIZE, n, true);
  s.outView.setUint32(OutHeader.SIZE + WriteOut.SIZE + 4, 0, true);
  s.replyOut(req, WriteOut.SIZEOF);
}

function replyRead(s: Session, req: Request, data: Uint8Array, size: number): void {
  s.replyData(req, data.byteLength > size ? data.subarray(0, size) : data);
}

function encodeOpen(v: DataView, p: number, o: OpenReply): void {
  putU64(v, p + OpenOut.FH, o.fh);
  v.setUint32(p + OpenOut.OPEN_FLAGS, o.openFlags, true);
  v.setUint32(p + OpenOut.OPEN_FLAGS + 4, 0, true);
}

function replyEmpty(s: Session, req: Request, _value?: unknown): void {
  s.replyOut(req, 0);
}

function replyStatfs(s: Session, req: Request, st: StatfsReply): void {
  const v = s.outView;
  const p = OutHeader.SIZE;
  s.out.fill(0, p, p + StatfsOut.SIZEOF);
  putU64(v, p + StatfsOut.BLOCKS, st.blocks);
  putU64(v, p + StatfsOut.BFREE, st.bfree);
  putU64(v, p + StatfsOut.BAVAIL, st.bavail);
  putU64(v, p + StatfsOut.FILES, st.files);
  putU64(v, p + StatfsOut.FFREE, st.ffree);
  v.setUint32(p + StatfsOut.BSIZE, st.bsize, true);
  v.setUint32(p + StatfsOut.NAMELEN, st.namelen, true);
  v.setUint32(p + StatfsOut.FRSIZE, st.frsize, true);
  s.replyOut(req, StatfsOut.SIZEOF);
}

function need<T>(fn: T | undefined): T {
  if (fn === undefined) throw new FuseError("ENOSYS");
  return fn;
}

/** Reply bytes of a variable-size answer to GETXATTR / LISTXATTR given the caller's buffer size. */
function replySized(s: Session, req: Request, data: Uint8Array, size: number): void {
  if (size === 0) {
    const v = s.outView;
    v.setUint32(OutHeader.SIZE + GetxattrOut.SIZE, data.byteLength, true);
    v.setUint32(OutHeader.SIZE + GetxattrOut.SIZE + 4, 0, true);
    s.replyOut(req, GetxattrOut.SIZEOF);
  } else if (data.byteLength > size) {
    s.replyError(req, Errno.ERANGE);
  } else {
    s.replyData(req, data);
  }
}

// ---------------------------------------------------------------------------------------------
// Directory listing: one reply buffer per request, filled by the Filesystem through a sink.

class DirBuffer implements DirentSink {
  readonly buf: Buffer;
  readonly view: DataView;
  pos = OutHeader.SIZE;
  constructor(
    readonly plus: boolean,
    size: number,
  ) {
    this.buf = Buffer.allocUnsafe(OutHeader.SIZE + size);
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
  }

  add(entryName: string, ino: number, mode: number, nextOffset: number, entry?: Entry): boolean {
    const namelen = entryName.length;
    if (namelen === 0 || namelen > NAME_MAX_BYTES) throw new FuseError("EIO", `readdir entry name of ${namelen} bytes`);
    const fixed = (this.plus ? EntryOut.SIZEOF : 0) + Dirent.NAME;
    const rec = recAlign(fixed + namelen);
    if (this.pos + rec > this.buf.byteLength) return false;
    const v = this.view;
    let p = this.pos;
    if (this.plus) {
      if (entry !== undefined) encodeEntry(v, p, entry);
      else this.buf.fill(0, p, p + EntryOut.SIZEOF);
      p += EntryOut.SIZEOF;
    }
    putU64(v, p + Dirent.INO, ino);
    putU64(v, p + Dirent.OFF, nextOffset);
    v.setUint32(p + Dirent.NAMELEN, namelen, true);
    v.setUint32(p + Dirent.TYPE, direntType(mode), true);
    const written = this.buf.write(entryName, p + Dirent.NAME, "latin1");
    if (written !== namelen) throw new FuseError("EIO", "readdir entry name is not a byte string");
    this.buf.fill(0, p + Dirent.NAME + namelen, this.pos + rec);
    this.pos += rec;
    return true;
  }
}

function readdirHandler(plus: boolean): Handler {
  return (s, req, v, _buf, off) => {
    const fh = getU64(v, off + ReadIn.FH);
    const pos = getU64(v, off + ReadIn.OFFSET);
    const size = v.getUint32(off + ReadIn.SIZE, true);
    const fn = need(s.fs.readdir);
    const sink = new DirBuffer(plus, Math.min(size, s.requestBufferBytes));
    return s.call(
      req,
      () => fn.call(s.fs, req, req.nodeid, fh, pos, sink),
      () => s.replyData(req, sink.buf.subarray(OutHeader.SIZE, sink.pos)),
    );
  };
}

// ---------------------------------------------------------------------------------------------
// The handlers.

// The hot handlers call the Filesystem directly (dispatch answers a synchronous throw) and reply
// through module-level functions: a synchronous LOOKUP or GETATTR allocates no closure.

const lookup: Handler = (s, req, _v, buf, off, end) => {
  const n = name(buf, off, end);
  return s.settle(req, need(s.fs.lookup).call(s.fs, req, req.nodeid, n), replyEntry);
};

const forget: Handler = (s, req, v, _buf, off) => {
  s.fs.forget?.(req.nodeid, getU64(v, off + ForgetIn.NLOOKUP));
  return undefined;
};

const batchForget: Handler = (s, _req, v, _buf, off, end) => {
  const count = v.getUint32(off + BatchForgetIn.COUNT, true);
  let p = off + BatchForgetIn.SIZEOF;
  if (p + count * ForgetOne.SIZEOF > end) badRequest(`BATCH_FORGET of ${count} does not fit`);
  const f = s.fs.forget;
  if (f === undefined) return undefined;
  for (let i = 0; i < count; i++, p += ForgetOne.SIZEOF) f.call(s.fs, getU64(v, p + ForgetOne.NODEID), getU64(v, p + ForgetOne.NLOOKUP));
  return undefined;
};

const getattr: Handler = (s, req, v, _buf, off) => {
  const flags = v.getUint32(off + GetattrIn.FLAGS, true);
  const fh = flags & FUSE_GETATTR_FH ? getU64(v, off + GetattrIn.FH) : undefined;
  return s.settle(req, need(s.fs.getattr).call(s.fs, req, req.nodeid, fh), replyAttr);
};

const setattr: Handler = (s, req, v, _buf, off) => {
  const set: SetattrRequest = {
    valid: v.getUint32(off + SetattrIn.VALID, true),
    fh: getU64(v, off + SetattrIn.FH),
    size: offset(v, off + SetattrIn.SIZE),
    lockOwner: v.getBigUint64(off + SetattrIn.LOCK_OWNER, true),
    atime: Number(v.getBigInt64(off + SetattrIn.ATIME, true)),
    mtime: Number(v.getBigInt64(off + SetattrIn.MTIME, true)),
    ctime: Number(v.getBigInt64(off + SetattrIn.CTIME, true)),
    atimensec: v.getUint32(off + SetattrIn.ATIMENSEC, true),
    mtimensec: v.getUint32(off + SetattrIn.MTIMENSEC, true),
    ctimensec: v.getUint32(off + SetattrIn.CTIMENSEC, true),
    mode: v.getUint32(off + SetattrIn.MODE, true),
    uid: v.getUint32(off + SetattrIn.UID, true),
    gid: v.getUint32(off + SetattrIn.GID, true),
  };
  return s.settle(req, need(s.fs.setattr).call(s.fs, req, req.nodeid, set), replyAttr);
};

const readlink: Handler = (s, req) => {
  const fn = need(s.fs.readlink);
  return s.call(
    req,
    () => fn.call(s.fs, req, req.nodeid),
    (target) => s.replyData(req, Buffer.from(target, "latin1")),
  );
};

const symlink: Handler = (s, req, _v, buf, off, end) => {
  const [n, next] = cstr(buf, off, end, NAME_MAX_BYTES, "symlink name");
  const [target] = cstr(buf, next, end, PATH_MAX_BYTES, "symlink target");
  const fn = need(s.fs.symlink);
  return s.call(req, () => fn.call(s.fs, req, req.nodeid, n, target), (e) => replyEntry(s, req, e));
};

const mknod: Handler = (s, req, v, buf, off, end) => {
  const mode = v.getUint32(off + MknodIn.MODE, true);
  const rdev = v.getUint32(off + MknodIn.RDEV, true);
  const umask = v.getUint32(off + MknodIn.UMASK, true);
  const n = name(buf, off + MknodIn.SIZEOF, end);
  return s.settle(req, need(s.fs.mknod).call(s.fs, req, req.nodeid, n, mode, rdev, umask), replyEntry);
};

const mkdir: Handler = (s, req, v, buf, off, end) => {
  const mode = v.getUint32(off + MkdirIn.MODE, true);
  const umask = v.getUint32(off + MkdirIn.UMASK, true);
  const n = name(buf, off + MkdirIn.SIZEOF, end);
  return s.settle(req, need(s.fs.mkdir).call(s.fs, req, req.nodeid, n, mode, umask), replyEntry);
};

const unlink: Handler = (s, req, _v, buf, off, end) => {
  const n = name(buf, off, end);
  return s.settle(req, need(s.fs.unlink).call(s.fs, req, req.nodeid, n), replyEmpty);
};

const rmdir: Handler = (s, req, _v, buf, off, end) => {
  const n = name(buf, off, end);
  return s.settle(req, need(s.fs.rmdir).call(s.fs, req, req.nodeid, n), replyEmpty);
};

function renameCommon(s: Session, req: Request, buf: Buffer, namesOff: number, end: number, newDir: number, flags: number): Promise<void> | undefined {
  const [oldName, next] = cstr(buf, namesOff, end, NAME_MAX_BYTES, "rename old name");
  const [newName] = cstr(buf, next, end, NAME_MAX_BYTES, "rename new name");
  if (oldName.length === 0 || newName.length === 0) badRequest("rename with an empty name");
  return s.settle(req, need(s.fs.rename).call(s.fs, req, req.nodeid, oldName, newDir, newName, flags), replyEmpty);
}

const rename: Handler = (s, req, v, buf, off, end) =>
  renameCommon(s, req, buf, off + RenameIn.SIZEOF, end, getU64(v, off + RenameIn.NEWDIR), 0);

const rename2: Handler = (s, req, v, buf, off, end) =>
  renameCommon(s, req, buf, off + Rename2In.SIZEOF, end, getU64(v, off + Rename2In.NEWDIR), v.getUint32(off + Rename2In.FLAGS, true));

const link: Handler = (s, req, v, buf, off, end) => {
  const oldNode = getU64(v, off + LinkIn.OLDNODEID);
  const n = name(buf, off + LinkIn.SIZEOF, end);
  const fn = need(s.fs.link);
  return s.call(req, () => fn.call(s.fs, req, oldNode, req.nodeid, n), (e) => replyEntry(s, req, e));
};

function openHandler(dir: boolean): Handler {
  return (s, req, v, _buf, off) => {
    const flags = v.getUint32(off + OpenIn.FLAGS, true);
    if (dir) return s.settle(req, need(s.fs.opendir).call(s.fs, req, req.nodeid, flags), replyOpen);
    return s.settle(req, need(s.fs.open).call(s.fs, req, req.nodeid, flags, v.getUint32(off + OpenIn.OPEN_FLAGS, true)), replyOpen);
  };
}

const read: Handler = (s, req, v, _buf, off) => {
  const fh = getU64(v, off + ReadIn.FH);
  const pos = offset(v, off + ReadIn.OFFSET);
  const size = v.getUint32(off + ReadIn.SIZE, true);
  return s.settle(req, need(s.fs.read).call(s.fs, req, req.nodeid, fh, pos, size), replyRead, false, size);
};

const write: Handler = (s, req, v, buf, off, end) => {
  const fh = getU64(v, off + WriteIn.FH);
  const pos = offset(v, off + WriteIn.OFFSET);
  const size = v.getUint32(off + WriteIn.SIZE, true);
  const flags = v.getUint32(off + WriteIn.WRITE_FLAGS, true);
  const dataOff = off + WriteIn.SIZEOF;
  if (dataOff + size !== end) badRequest(`WRITE of ${size} bytes carries ${end - dataOff}`);
  if (pos + size > Number.MAX_SAFE_INTEGER) throw new FuseError("EFBIG");
  const data = buf.subarray(dataOff, end);
  return s.settle(req, need(s.fs.write).call(s.fs, req, req.nodeid, fh, pos, data, flags), replyWritten, true);
};

const statfs: Handler = (s, req) => {
  const fn = s.fs.statfs;
  if (fn === undefined) {
    // statfs(2) must work on every filesystem; report an empty one with sane sizes.
    replyStatfs(s, req, { blocks: 0, bfree: 0, bavail: 0, files: 0, ffree: 0, bsize: 4096, namelen: NAME_MAX_BYTES, frsize: 4096 });
    return undefined;
  }
  return s.call(req, () => fn.call(s.fs, req, req.nodeid), (st) => replyStatfs(s, req, st));
};

const release: Handler = (s, req, v, _buf, off) => {
  const fh = getU64(v, off + ReleaseIn.FH);
  const flags = v.getUint32(off + ReleaseIn.FLAGS, true);
  const rflags = v.getUint32(off + ReleaseIn.RELEASE_FLAGS, true);
  const owner = v.getBigUint64(off + ReleaseIn.LOCK_OWNER, true);
  const fn = s.fs.release;
  if (fn === undefined) {
    replyEmpty(s, req);
    return undefined;
  }
  return s.settle(req, fn.call(s.fs, req, req.nodeid, fh, flags, rflags, owner), replyEmpty);
};

const releasedir: Handler = (s, req, v, _buf, off) => {
  const fh = getU64(v, off + ReleaseIn.FH);
  const fn = s.fs.releasedir;
  if (fn === undefined) {
    replyEmpty(s, req);
    return undefined;
  }
  return s.call(req, () => fn.call(s.fs, req, req.nodeid, fh), () => replyEmpty(s, req));
};

function fsyncHandler(dir: boolean): Handler {
  return (s, req, v, _buf, off) => {
    const fh = getU64(v, off + FsyncIn.FH);
    const datasync = (v.getUint32(off + FsyncIn.FSYNC_FLAGS, true) & FUSE_FSYNC_FDATASYNC) !== 0;
    const fn = need(dir ? s.fs.fsyncdir : s.fs.fsync);
    return s.call(req, () => fn.call(s.fs, req, req.nodeid, fh, datasync), () => replyEmpty(s, req));
  };
}

const flush: Handler = (s, req, v, _buf, off) => {
  const fh = getU64(v, off + FlushIn.FH);
  const owner = v.getBigUint64(off + FlushIn.LOCK_OWNER, true);
  return s.settle(req, need(s.fs.flush).call(s.fs, req, req.nodeid, fh, owner), replyEmpty);
};

const setxattr: Handler = (s, req, v, buf, off, end) => {
  const size = v.getUint32(off + SetxattrIn.SIZE, true);
  const flags = v.getUint32(off + SetxattrIn.FLAGS, true);
  const fixed = s.setxattrExt ? SetxattrIn.SIZEOF : SetxattrIn.COMPAT_SIZEOF;
  if (off + fixed > end) badRequest("SETXATTR fixed part");
  const [n, valueOff] = cstr(buf, off + fixed, end, XATTR_NAME_MAX_BYTES, "xattr name");
  if (size > XATTR_SIZE_MAX_BYTES) throw new FuseError("E2BIG");
  if (valueOff + size !== end) badRequest(`SETXATTR value of ${size} bytes carries ${end - valueOff}`);
  const value = buf.subarray(valueOff, end);
  const fn = need(s.fs.setxattr);
  return s.call(req, () => fn.call(s.fs, req, req.nodeid, n, value, flags), () => replyEmpty(s, req), true);
};

const getxattr: Handler = (s, req, v, buf, off, end) => {
  const size = v.getUint32(off + GetxattrIn.SIZE, true);
  const [n] = cstr(buf, off + GetxattrIn.SIZEOF, end, XATTR_NAME_MAX_BYTES, "xattr name");
  const fn = need(s.fs.getxattr);
  return s.call(req, () => fn.call(s.fs, req, req.nodeid, n), (value) => replySized(s, req, value, size));
};

const listxattr: Handler = (s, req, v, _buf, off) => {
  const size = v.getUint32(off + GetxattrIn.SIZE, true);
  const fn = need(s.fs.listxattr);
  return s.call(
    req,
    () => fn.call(s.fs, req, req.nodeid),
    (names) => {
      let total = 0;
      for (const n of names) total += n.length + 1;
      const out = Buffer.allocUnsafe(total);
      let p = 0;
      for (const n of names) {
        p += out.write(n, p, "latin1");
        out[p++] = 0;
      }
      replySized(s, req, out, size);
    },
  );
};

const removexattr: Handler = (s, req, _v, buf, off, end) => {
  const [n] = cstr(buf, off, end, XATTR_NAME_MAX_BYTES, "xattr name");
  const fn = need(s.fs.removexattr);
  return s.call(req, () => fn.call(s.fs, req, req.nodeid, n), () => replyEmpty(s, req));
};

const access: Handler = (s, req, v, _buf, off) => {
  const mask = v.getUint32(off + AccessIn.MASK, true);
  const fn = s.fs.access;
  if (fn === undefined) {
    // No access method: the kernel's default_permissions checks are the whole story.
    replyEmpty(s, req);
    return undefined;
  }
  return s.call(req, () => fn.call(s.fs, req, req.nodeid, mask), () => replyEmpty(s, req));
};

function createHandler(tmp: boolean): Handler {
  return (s, req, v, buf, off, end) => {
    const flags = v.getUint32(off + CreateIn.FLAGS, true);
    const mode = v.getUint32(off + CreateIn.MODE, true);
    const umask = v.getUint32(off + CreateIn.UMASK, true);
    if (tmp) return s.settle(req, need(s.fs.tmpfile).call(s.fs, req, req.nodeid, mode, umask, flags), replyCreate);
    const n = name(buf, off + CreateIn.SIZEOF, end);
    return s.settle(req, need(s.fs.create).call(s.fs, req, req.nodeid, n, mode, umask, flags, v.getUint32(off + CreateIn.OPEN_FLAGS, true)), replyCreate);
  };
}

const fallocate: Handler = (s, req, v, _buf, off) => {
  const fh = getU64(v, off + FallocateIn.FH);
  const pos = offset(v, off + FallocateIn.OFFSET);
  const len = offset(v, off + FallocateIn.LENGTH);
  const mode = v.getUint32(off + FallocateIn.MODE, true);
  const fn = need(s.fs.fallocate);
  return s.call(req, () => fn.call(s.fs, req, req.nodeid, fh, pos, len, mode), () => replyEmpty(s, req));
};

const lseek: Handler = (s, req, v, _buf, off) => {
  const fh = getU64(v, off + LseekIn.FH);
  const pos = offset(v, off + LseekIn.OFFSET);
  const whence = v.getUint32(off + LseekIn.WHENCE, true);
  const fn = need(s.fs.lseek);
  return s.call(
    req,
    () => fn.call(s.fs, req, req.nodeid, fh, pos, whence),
    (r) => {
      putU64(s.outView, OutHeader.SIZE + LseekOut.OFFSET, r);
      s.replyOut(req, LseekOut.SIZEOF);
    },
  );
};

const copyFileRange: Handler = (s, req, v, _buf, off) => {
  const fhIn = getU64(v, off + CopyFileRangeIn.FH_IN);
  const offIn = offset(v, off + CopyFileRangeIn.OFF_IN);
  const nodeOut = getU64(v, off + CopyFileRangeIn.NODEID_OUT);
  const fhOut = getU64(v, off + CopyFileRangeIn.FH_OUT);
  const offOut = offset(v, off + CopyFileRangeIn.OFF_OUT);
  const len = Math.min(getU64(v, off + CopyFileRangeIn.LEN), COPY_MAX_BYTES);
  const flags = Number(v.getBigUint64(off + CopyFileRangeIn.FLAGS, true) & 0xffffffffn);
  const fn = need(s.fs.copyFileRange);
  return s.call(
    req,
    () => fn.call(s.fs, req, req.nodeid, fhIn, offIn, nodeOut, fhOut, offOut, len, flags),
    (n) => {
      s.outView.setUint32(OutHeader.SIZE + WriteOut.SIZE, n, true);
      s.outView.setUint32(OutHeader.SIZE + WriteOut.SIZE + 4, 0, true);
      s.replyOut(req, WriteOut.SIZEOF);
    },
  );
};

const ioctl: Handler = (s, req, v, buf, off, end) => {
  const fh = getU64(v, off + IoctlIn.FH);
  const flags = v.getUint32(off + IoctlIn.FLAGS, true);
  const cmd = v.getUint32(off + IoctlIn.CMD, true);
  const arg = v.getBigUint64(off + IoctlIn.ARG, true);
  const inSize = v.getUint32(off + IoctlIn.IN_SIZE, true);
  const outSize = v.getUint32(off + IoctlIn.OUT_SIZE, true);
  // Unrestricted ioctls need the retry protocol to learn their sizes; we serve fixed-size only.
  if (flags & FUSE_IOCTL_UNRESTRICTED) throw new FuseError("ENOSYS");
  const dataOff = off + IoctlIn.SIZEOF;
  if (dataOff + inSize > end) badRequest(`IOCTL input of ${inSize} bytes carries ${end - dataOff}`);
  const input = buf.subarray(dataOff, dataOff + inSize);
  const fn = s.fs.ioctl;
  if (fn === undefined) throw new FuseError("ENOTTY");
  return s.call(
    req,
    () => fn.call(s.fs, req, req.nodeid, fh, cmd, arg, input, outSize, flags),
    (r) => {
      const data = r.data ?? new Uint8Array(0);
      if (data.byteLength > outSize) throw new FuseError("EIO", `ioctl ${cmd} reply of ${data.byteLength} bytes, kernel allows ${outSize}`);
      const o = s.outView;
      const p = OutHeader.SIZE;
      o.setInt32(p + IoctlOut.RESULT, r.result, true);
      o.setUint32(p + IoctlOut.FLAGS, 0, true);
      o.setUint32(p + IoctlOut.IN_IOVS, 0, true);
      o.setUint32(p + IoctlOut.OUT_IOVS, 0, true);
      s.out.set(data, p + IoctlOut.SIZEOF);
      s.replyOut(req, IoctlOut.SIZEOF + data.byteLength);
    },
    true,
  );
};

function lockHandler(kind: "get" | "set" | "setw"): Handler {
  return (s, req, v, _buf, off) => {
    const fh = getU64(v, off + LkIn.FH);
    const owner = v.getBigUint64(off + LkIn.OWNER, true);
    const lk = decodeLock(v, off + LkIn.LK);
    const flock = (v.getUint32(off + LkIn.LK_FLAGS, true) & FUSE_LK_FLOCK) !== 0;
    if (kind === "get") {
      const fn = need(s.fs.getlk);
      return s.call(
        req,
        () => fn.call(s.fs, req, req.nodeid, fh, owner, lk),
        (r) => {
          const o = s.outView;
          const p = OutHeader.SIZE + LkOut.LK;
          putU64(o, p + FileLockLayout.START, r.start);
          if (r.end === Infinity || r.end > Number.MAX_SAFE_INTEGER) o.setBigUint64(p + FileLockLayout.END, OFFSET_MAX, true);
          else putU64(o, p + FileLockLayout.END, r.end);
          o.setUint32(p + FileLockLayout.TYPE, r.type, true);
          o.setUint32(p + FileLockLayout.PID, r.pid, true);
          s.replyOut(req, LkOut.SIZEOF);
        },
      );
    }
    const fn = need(s.fs.setlk);
    return s.call(req, () => fn.call(s.fs, req, req.nodeid, fh, owner, lk, kind === "setw", flock), () => replyEmpty(s, req));
  };
}

const notifyReply: Handler = (s, req, v, buf, off, end) => {
  const pos = getU64(v, off + NotifyRetrieveIn.OFFSET);
  const size = v.getUint32(off + NotifyRetrieveIn.SIZE, true);
  const dataOff = off + NotifyRetrieveIn.SIZEOF;
  if (dataOff + size > end) badRequest(`NOTIFY_REPLY of ${size} bytes carries ${end - dataOff}`);
  s.fs.retrieveReply?.(req.unique, req.nodeid, pos, buf.subarray(dataOff, dataOff + size));
  return undefined;
};

// ---------------------------------------------------------------------------------------------

export const OPCODES: Record<number, OpcodeInfo> = {
  [Opcode.LOOKUP]: { name: "LOOKUP", inSize: 0, handler: lookup },
  [Opcode.FORGET]: { name: "FORGET", inSize: ForgetIn.SIZEOF, handler: forget, noReply: true },
  [Opcode.GETATTR]: { name: "GETATTR", inSize: GetattrIn.SIZEOF, handler: getattr },
  [Opcode.SETATTR]: { name: "SETATTR", inSize: SetattrIn.SIZEOF, handler: setattr },
  [Opcode.READLINK]: { name: "READLINK", inSize: 0, handler: readlink },
  [Opcode.SYMLINK]: { name: "SYMLINK", inSize: 0, handler: symlink },
  [Opcode.MKNOD]: { name: "MKNOD", inSize: MknodIn.SIZEOF, handler: mknod },
  [Opcode.MKDIR]: { name: "MKDIR", inSize: MkdirIn.SIZEOF, handler: mkdir },
  [Opcode.UNLINK]: { name: "UNLINK", inSize: 0, handler: unlink },
  [Opcode.RMDIR]: { name: "RMDIR", inSize: 0, handler: rmdir },
  [Opcode.RENAME]: { name: "RENAME", inSize: RenameIn.SIZEOF, handler: rename },
  [Opcode.LINK]: { name: "LINK", inSize: LinkIn.SIZEOF, handler: link },
  [Opcode.OPEN]: { name: "OPEN", inSize: OpenIn.SIZEOF, handler: openHandler(false) },
  [Opcode.READ]: { name: "READ", inSize: ReadIn.SIZEOF, handler: read },
  [Opcode.WRITE]: { name: "WRITE", inSize: WriteIn.SIZEOF, handler: write, holdsBuffer: true },
  [Opcode.STATFS]: { name: "STATFS", inSize: 0, handler: statfs },
  [Opcode.RELEASE]: { name: "RELEASE", inSize: ReleaseIn.SIZEOF, handler: release },
  [Opcode.FSYNC]: { name: "FSYNC", inSize: FsyncIn.SIZEOF, handler: fsyncHandler(false) },
  [Opcode.SETXATTR]: { name: "SETXATTR", inSize: SetxattrIn.COMPAT_SIZEOF, handler: setxattr, holdsBuffer: true },
  [Opcode.GETXATTR]: { name: "GETXATTR", inSize: GetxattrIn.SIZEOF, handler: getxattr },
  [Opcode.LISTXATTR]: { name: "LISTXATTR", inSize: GetxattrIn.SIZEOF, handler: listxattr },
  [Opcode.REMOVEXATTR]: { name: "REMOVEXATTR", inSize: 0, handler: removexattr },
  [Opcode.FLUSH]: { name: "FLUSH", inSize: FlushIn.SIZEOF, handler: flush },
  [Opcode.INIT]: {
    name: "INIT",
    inSize: InitIn.COMPAT_SIZEOF,
    handler: (s, req, v, _buf, off, end) => {
      s.handleInit(req, v, off, end);
      return undefined;
    },
  },
  [Opcode.OPENDIR]: { name: "OPENDIR", inSize: OpenIn.SIZEOF, handler: openHandler(true) },
  [Opcode.READDIR]: { name: "READDIR", inSize: ReadIn.SIZEOF, handler: readdirHandler(false) },
  [Opcode.RELEASEDIR]: { name: "RELEASEDIR", inSize: ReleaseIn.SIZEOF, handler: releasedir },
  [Opcode.FSYNCDIR]: { name: "FSYNCDIR", inSize: FsyncIn.SIZEOF, handler: fsyncHandler(true) },
  [Opcode.GETLK]: { name: "GETLK", inSize: LkIn.SIZEOF, handler: lockHandler("get") },
  [Opcode.SETLK]: { name: "SETLK", inSize: LkIn.SIZEOF, handler: lockHandler("set") },
  [Opcode.SETLKW]: { name: "SETLKW", inSize: LkIn.SIZEOF, handler: lockHandler("setw") },
  [Opcode.ACCESS]: { name: "ACCESS", inSize: AccessIn.SIZEOF, handler: access },
  [Opcode.CREATE]: { name: "CREATE", inSize: CreateIn.SIZEOF, handler: createHandler(false) },
  [Opcode.INTERRUPT]: {
    name: "INTERRUPT",
    inSize: InterruptIn.SIZEOF,
    noReply: true,
    handler: (s, req, v, _buf, off) => {
      s.handleInterrupt(req, v, off);
      return undefined;
    },
  },
  [Opcode.BMAP]: { name: "BMAP", inSize: 16, handler: undefined },
  [Opcode.DESTROY]: {
    name: "DESTROY",
    inSize: 0,
    handler: (s, req) => {
      s.handleDestroy(req);
      return undefined;
    },
  },
  [Opcode.IOCTL]: { name: "IOCTL", inSize: IoctlIn.SIZEOF, handler: ioctl, holdsBuffer: true },
  [Opcode.POLL]: { name: "POLL", inSize: 24, handler: undefined },
  [Opcode.NOTIFY_REPLY]: { name: "NOTIFY_REPLY", inSize: NotifyRetrieveIn.SIZEOF, handler: notifyReply, noReply: true },
  [Opcode.BATCH_FORGET]: { name: "BATCH_FORGET", inSize: BatchForgetIn.SIZEOF, handler: batchForget, noReply: true },
  [Opcode.FALLOCATE]: { name: "FALLOCATE", inSize: FallocateIn.SIZEOF, handler: fallocate },
  [Opcode.READDIRPLUS]: { name: "READDIRPLUS", inSize: ReadIn.SIZEOF, handler: readdirHandler(true) },
  [Opcode.RENAME2]: { name: "RENAME2", inSize: Rename2In.SIZEOF, handler: rename2 },
  [Opcode.LSEEK]: { name: "LSEEK", inSize: LseekIn.SIZEOF, handler: lseek },
  [Opcode.COPY_FILE_RANGE]: { name: "COPY_FILE_RANGE", inSize: CopyFileRangeIn.SIZEOF, handler: copyFileRange },
  [Opcode.SETUPMAPPING]: { name: "SETUPMAPPING", inSize: 40, handler: undefined },
  [Opcode.REMOVEMAPPING]: { name: "REMOVEMAPPING", inSize: 4, handler: undefined },
  [Opcode.SYNCFS]: { name: "SYNCFS", inSize: 8, handler: undefined },
  [Opcode.TMPFILE]: { name: "TMPFILE", inSize: CreateIn.SIZEOF, handler: createHandler(true) },
  [Opcode.STATX]: { name: "STATX", inSize: 0, handler: undefined },
  [Opcode.COPY_FILE_RANGE_64]: { name: "COPY_FILE_RANGE_64", inSize: 0, handler: undefined },
};

export function opcodeName(opcode: number): string {
  return OPCODES[opcode]?.name ?? `opcode ${opcode}`;
}
