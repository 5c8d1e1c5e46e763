/**
 * One FUSE connection: request dispatch, request lifetime, reply writing, interrupts, INIT
 * negotiation and kernel notifications (go-fuse's fuse/server.go).
 *
 * Flow. A Reader (reader.ts, worker-reader.ts) delivers each request read from /dev/fuse as a
 * view of a reusable buffer. `dispatch` checks the header, looks the opcode up in the table
 * (opcodes.ts: name, fixed input size, handler), and the handler decodes the input, calls the
 * Filesystem and encodes the reply (`settle`: at once for a value, later for a promise). Nothing
 * in here blocks: the reply is one write(2)/writev(2) to the device, which the kernel completes at
 * once.
 *
 * Request lifetime.
 * - A handler that finishes synchronously has replied before dispatch returns.
 * - A handler whose Filesystem method returns a promise is "in flight": it is kept in `inflight`
 *   by unique id so INTERRUPT can find it, and replies when the promise settles, in any order.
 * - Requests that keep a view of the request buffer (WRITE data, SETXATTR value, IOCTL input)
 *   return their promise from dispatch; the reader lends the buffer until it settles and reads
 *   the next request into another one.
 * - Every request except FORGET, BATCH_FORGET, INTERRUPT and NOTIFY_REPLY gets exactly one reply:
 *   `answered` guards against a second one (asserted), errors become negative errnos, and a bug
 *   in the Filesystem (a thrown non-errno error) is logged and answered with EIO.
 * - Malformed input (short header, length mismatch, short fixed part, missing NUL in a name) is
 *   answered with EINVAL/EIO and logged, never thrown out of dispatch.
 *
 * Reply buffers. Small replies are encoded into one shared `out` buffer and written before the
 * encoding function returns, so concurrent requests never see each other's bytes. READ replies
 * go out as writev(header, data) to avoid copying the data. Readdir builds its reply in its own
 * buffer because the Filesystem may fill it across awaits.
 *
 * Counters: `counters`, requests per opcode (`opcodeCounts`), and with `profile` the time of
 * each stage (reader handoff, dispatch, reply write; see SessionProfile and docs/fuse.md).
 *
 * Notifications (inval_inode, inval_entry, delete, store, retrieve) are written with an async
 * write: the kernel takes inode locks to process them, and a request holding such a lock may be
 * waiting for us, so writing them synchronously from the only JS thread could deadlock.
 */
import * as fs from "node:fs";
import { Errno, FuseError, assert, errnoName, errnoOf } from "./errno.ts";
import type { Filesystem, InitInfo, RequestContext } from "./filesystem.ts";
import { OPCODES, opcodeName } from "./opcodes.ts";
import {
  FUSE_INT_REQ_BIT,
  FUSE_KERNEL_MINOR_VERSION,
  FUSE_KERNEL_VERSION,
  FUSE_MIN_MINOR_VERSION,
  InHeader,
  InitFlag,
  InitIn,
  InitOut,
  InterruptIn,
  NotifyCode,
  NotifyDeleteOut,
  NotifyInvalEntryOut,
  NotifyInvalInodeOut,
  NotifyRetrieveOut,
  NotifyStoreOut,
  Opcode,
  OutHeader,
  getU64,
  initFlagNames,
  putU64,
} from "./types.ts";

export interface SessionOptions {
  /** Largest WRITE payload (and READ size) the kernel may send; at most 1 MiB (max_pages 256). */
  maxWrite?: number;
  maxReadahead?: number;
  /** Let the kernel cache writes (FUSE_WRITEBACK_CACHE): faster, but mtime/size are the kernel's. */
  writebackCache?: boolean;
  /** Ask for POSIX ACL support (the kernel enforces ACLs stored in system.posix_acl_* xattrs). */
  posixAcl?: boolean;
  /** Maximum background requests the kernel keeps outstanding (readahead, async writes). */
  maxBackground?: number;
  /**
   * Let the kernel compare mtime/size on every attribute refresh and drop cached pages when they
   * changed (FUSE_AUTO_INVAL_DATA). Off by default: it makes every read(2) of a file whose
   * attributes have expired wait for a GETATTR, and a filesystem that invalidates explicitly
   * (notifyInvalInode when it loses the right to let the kernel cache) does not need it.
   */
  autoInvalData?: boolean;
  /** Log every request and reply to stderr. */
  debug?: boolean;
  /** Time every request (handoff from the reader thread, dispatch, reply write): see SessionProfile. */
  profile?: boolean;
  /** Where errors and malformed requests are reported; stderr by default. */
  log?: (msg: string) => void;
}

/** Counters readable at run time, for the benchmark and for the management API. */
export interface SessionCounters {
  requests: number;
  replies: number;
  errors: number;
  async: number;
  interrupts: number;
  malformed: number;
  fsBugs: number;
  writeFailures: number;
  notifications: number;
}

/**
 * Where the time of requests goes, collected when SessionOptions.profile is set. Times are sums in
 * milliseconds; divide by the counts. `handoffMs` is measured only by the worker reader (from
 * read(2) returning on the reader thread to dispatch starting on the main thread).
 */
export interface SessionProfile {
  handoffMs: number;
  handoffs: number;
  /**
   * The synchronous part of dispatch (decode + Filesystem call + encode + reply write for a request
   * answered at once), for requests that did not keep their buffer.
   */
  dispatchMs: number;
  dispatches: number;
  /** The reply write(2)/writev(2) alone. */
  replyMs: number;
  replies: number;
  /** Wake-ups of the event loop by the reader (requests per wake-up = dispatches / wakeups). */
  wakeups: number;
  /**
   * Per opcode (index; opcodes >= 64 count under 0): time from dispatch to the reply's write
   * returning, in ms, and how many replies that sums. Answers where the time goes per operation.
   */
  opMs: Float64Array;
  opReplies: Float64Array;
}

/** The request state kept while a Filesystem promise is outstanding. */
export class Request implements RequestContext {
  answered = false;
  interrupted = false;
  onInterrupt: (() => void) | undefined = undefined;
  constructor(
    /** The kernel's request id as two u32 halves, copied into the reply without a bigint. */
    readonly uniqueLo: number,
    readonly uniqueHi: number,
    readonly opcode: number,
    readonly nodeid: number,
    readonly uid: number,
    readonly gid: number,
    readonly pid: number,
  ) {}

  /** When dispatch began (performance.now() ms), kept only while profiling. */
  startMs = 0;

  get unique(): bigint {
    return (BigInt(this.uniqueHi) << 32n) | BigInt(this.uniqueLo);
  }

  /** The unique as a number: exact, the kernel counts up from 0 in steps of 2. */
  get key(): number {
    return this.uniqueHi * 2 ** 32 + this.uniqueLo;
  }
}

/** Bytes of the shared reply buffer: headers + the largest fixed reply, xattr values, names. */
const OUT_SIZE_BYTES = 128 * 1024;
const MAX_WRITE_LIMIT_BYTES = 1 << 20;
const PAGE_SIZE_BYTES = 4096;
/** Room in a request buffer beyond the WRITE payload: header, write_in, slack for extensions. */
export const REQUEST_OVERHEAD_BYTES = 4096;

export class Session {
  readonly fd: number;
  readonly fs: Filesystem;
  readonly opts: Required<Omit<SessionOptions, "log">> & { log: (msg: string) => void };
  readonly counters: SessionCounters = {
    requests: 0,
    replies: 0,
    errors: 0,
    async: 0,
    interrupts: 0,
    malformed: 0,
    fsBugs: 0,
    writeFailures: 0,
    notifications: 0,
  };
  /** Requests whose Filesystem promise has not settled, by unique (Request.key). */
  readonly inflight = new Map<number, Request>();
  /** Requests received per opcode (index: opcode; 0 holds opcodes above 63). */
  readonly opcodeCounts = new Float64Array(64);
  /** Set when SessionOptions.profile is. */
  readonly profile: SessionProfile | undefined;
  /** performance.timeOrigin + now() of the read(2) that returned the request being dispatched. */
  readAtMs = Number.NaN;
  /** Set by INIT: what the kernel offered and what we enabled. */
  init: InitInfo | undefined = undefined;
  /** The SETXATTR fixed part is 16 bytes once SETXATTR_EXT is enabled, else 8. */
  setxattrExt = false;
  destroyed = false;
  /** Resolves when INIT has been answered (or rejects if it failed). */
  readonly ready: Promise<InitInfo>;
  private readyResolve!: (info: InitInfo) => void;
  private readyReject!: (err: Error) => void;

  readonly out = Buffer.allocUnsafe(OUT_SIZE_BYTES);
  readonly outView = new DataView(this.out.buffer, this.out.byteOffset, this.out.byteLength);
  private readonly hdr = Buffer.allocUnsafe(OutHeader.SIZE);
  private readonly hdrView = new DataView(this.hdr.buffer, this.hdr.byteOffset, OutHeader.SIZE);
  private nextNotifyUnique = 1n;

  constructor(fd: number, filesystem: Filesystem, opts: SessionOptions = {}) {
    const maxWrite = opts.maxWrite ?? MAX_WRITE_LIMIT_BYTES;
    assert(maxWrite >= PAGE_SIZE_BYTES && maxWrite <= MAX_WRITE_LIMIT_BYTES && maxWrite % PAGE_SIZE_BYTES === 0, `maxWrite ${maxWrite} must be a multiple of 4096 in [4096, 1 MiB]`);
    this.fd = fd;
    this.fs = filesystem;
    this.opts = {
      maxWrite,
      maxReadahead: opts.maxReadahead ?? MAX_WRITE_LIMIT_BYTES,
      writebackCache: opts.writebackCache ?? false,
      posixAcl: opts.posixAcl ?? true,
      maxBackground: opts.maxBackground ?? 64,
      autoInvalData: opts.autoInvalData ?? false,
      debug: opts.debug ?? false,
      profile: opts.profile ?? false,
      log: opts.log ?? ((msg: string) => process.stderr.write(`fuse: ${msg}\n`)),
    };
    this.profile = this.opts.profile ? { handoffMs: 0, handoffs: 0, dispatchMs: 0, dispatches: 0, replyMs: 0, replies: 0, wakeups: 0, opMs: new Float64Array(64), opReplies: new Float64Array(64) } : undefined;
    this.ready = new Promise<InitInfo>((resolve, reject) => {
      this.readyResolve = resolve;
      this.readyReject = reject;
    });
    this.ready.catch(() => {});
  }

  /** Bytes a request buffer needs to hold any request the kernel may send us. */
  get requestBufferBytes(): number {
    return this.opts.maxWrite + REQUEST_OVERHEAD_BYTES;
  }

  /**
   * Handle one request of `len` bytes at the start of `buf`. Returns a promise when the request
   * still references `buf` after returning (the caller must not reuse it until it settles).
   * `view`, a DataView of all of `buf` kept by the reader, saves making one per request.
   * Never throws for bad input.
   */
  dispatch(buf: Buffer, len: number, view?: DataView): Promise<void> | undefined {
    const prof = this.profile;
    if (prof === undefined) return this.dispatch1(buf, len, view);
    const t0 = performance.timeOrigin + performance.now();
    if (!Number.isNaN(this.readAtMs)) {
      prof.handoffMs += t0 - this.readAtMs;
      prof.handoffs++;
      this.readAtMs = Number.NaN;
    }
    const r = this.dispatch1(buf, len, view);
    if (r === undefined) {
      const ms = performance.timeOrigin + performance.now() - t0;
      prof.dispatchMs += ms;
      prof.dispatches++;
      // FORGET and BATCH_FORGET have no reply: their (synchronous) time counts here instead
      const opcode = len >= InHeader.SIZE ? buf.readUInt32LE(InHeader.OPCODE) : 0;
      if (opcode === Opcode.FORGET || opcode === Opcode.BATCH_FORGET) {
        prof.opMs[opcode] = prof.opMs[opcode]! + ms;
        prof.opReplies[opcode] = prof.opReplies[opcode]! + 1;
      }
    }
    return r;
  }

  private dispatch1(buf: Buffer, len: number, view: DataView | undefined): Promise<void> | undefined {
    this.counters.requests++;
    if (len < InHeader.SIZE || len > buf.byteLength) {
      this.counters.malformed++;
      this.opts.log(`dropped a ${len}-byte request: shorter than the ${InHeader.SIZE}-byte header`);
      return undefined;
    }
    const v = view ?? new DataView(buf.buffer, buf.byteOffset, len);
    const hdrLen = v.getUint32(InHeader.LEN, true);
    const opcode = v.getUint32(InHeader.OPCODE, true);
    this.opcodeCounts[opcode < 64 ? opcode : 0]!++;
    const req = new Request(
      v.getUint32(InHeader.UNIQUE, true),
      v.getUint32(InHeader.UNIQUE + 4, true),
      opcode,
      getU64(v, InHeader.NODEID),
      v.getUint32(InHeader.UID, true),
      v.getUint32(InHeader.GID, true),
      v.getUint32(InHeader.PID, true),
    );
    if (this.profile !== undefined) req.startMs = performance.now();
    const extBytes = v.getUint16(InHeader.TOTAL_EXTLEN, true) * 8;
    const info = OPCODES[opcode];
    if (this.opts.debug) this.opts.log(`<- ${opcodeName(opcode)} unique=${req.unique} nodeid=${req.nodeid} len=${len}`);
    if (hdrLen !== len) {
      this.malformed(req, `${opcodeName(opcode)}: header says ${hdrLen} bytes, read returned ${len}`);
      return undefined;
    }
    if (info === undefined || info.handler === undefined) {
      // Unknown or unimplemented opcode (STATX, POLL, BMAP, SETUPMAPPING...): ENOSYS makes the
      // kernel fall back or stop asking.
      if (opcode !== Opcode.FORGET && opcode !== Opcode.BATCH_FORGET) this.replyError(req, Errno.ENOSYS);
      return undefined;
    }
    if (this.init === undefined && opcode !== Opcode.INIT) {
      this.malformed(req, `${info.name} before INIT`);
      return undefined;
    }
    // Extensions (security contexts, supplementary groups) trail the request; we negotiate none
    // of them, but never mistake them for payload.
    const end = len - extBytes;
    if (end < InHeader.SIZE + info.inSize) {
      this.malformed(req, `${info.name}: ${end - InHeader.SIZE} payload bytes, fixed part needs ${info.inSize}`);
      return undefined;
    }
    try {
      return info.handler(this, req, v, buf, InHeader.SIZE, end);
    } catch (err) {
      // Decoders throw FuseError(EINVAL) for bad input; anything else is a bug somewhere.
      if (!req.answered && info.noReply !== true) this.replyError(req, err);
      else this.opts.log(`${info.name}: ${String(err)}`);
      return undefined;
    }
  }

  private malformed(req: Request, what: string): void {
    this.counters.malformed++;
    this.opts.log(`malformed request: ${what}`);
    if (req.opcode !== Opcode.FORGET && req.opcode !== Opcode.BATCH_FORGET && req.opcode !== Opcode.INTERRUPT)
      this.replyError(req, Errno.EINVAL);
  }

  /**
   * Run a Filesystem call and reply with `ok(value)` or with its errno. `holdsBuffer` makes the
   * returned promise (if any) keep the request buffer borrowed until the call settles.
   */
  call<T>(req: Request, fn: () => T | Promise<T>, ok: (value: T) => void, holdsBuffer = false): Promise<void> | undefined {
    let r: T | Promise<T>;
    try {
      r = fn();
    } catch (err) {
      this.replyError(req, err);
      return undefined;
    }
    return this.settle(req, r, callOk, holdsBuffer, ok);
  }

  /**
   * Reply to a Filesystem result `r`: `ok(session, req, value, arg)` at once for a value, or
   * when the promise settles (errors become errno replies). The hot handlers call the Filesystem
   * themselves (dispatch answers a synchronous throw) and pass module-level `ok` functions, so a
   * synchronous request allocates no closures. `holdsBuffer` as for call.
   */
  settle<T, A = undefined>(
    req: Request,
    r: T | Promise<T>,
    ok: (s: Session, req: Request, value: T, arg: A) => void,
    holdsBuffer = false,
    arg?: A,
  ): Promise<void> | undefined {
    if (!(r instanceof Promise)) {
      this.finish(req, r, ok, arg as A);
      return undefined;
    }
    this.counters.async++;
    const key = req.key;
    this.inflight.set(key, req);
    const p = r.then(
      (value) => {
        this.inflight.delete(key);
        this.finish(req, value, ok, arg as A);
      },
      (err: unknown) => {
        this.inflight.delete(key);
        this.replyError(req, err);
      },
    );
    return holdsBuffer ? p : undefined;
  }

  private finish<T, A>(req: Request, value: T, ok: (s: Session, req: Request, value: T, arg: A) => void, arg: A): void {
    try {
      ok(this, req, value, arg);
    } catch (err) {
      if (!req.answered) this.replyError(req, err);
      else this.opts.log(`${opcodeName(req.opcode)}: error after reply: ${String(err)}`);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Replies.

  /** Write a header + the first `payloadBytes` of `out` (already encoded at OutHeader.SIZE). */
  replyOut(req: Request, payloadBytes: number): void {
    assert(!req.answered, `second reply to ${opcodeName(req.opcode)} unique=${req.unique}`);
    const total = OutHeader.SIZE + payloadBytes;
    assert(total <= this.out.byteLength, `reply of ${total} bytes exceeds the reply buffer`);
    req.answered = true;
    const v = this.outView;
    v.setUint32(OutHeader.LEN, total, true);
    v.setInt32(OutHeader.ERROR, 0, true);
    v.setUint32(OutHeader.UNIQUE, req.uniqueLo, true);
    v.setUint32(OutHeader.UNIQUE + 4, req.uniqueHi, true);
    this.counters.replies++;
    this.writeReply(req, this.out, total, undefined, 0);
  }

  /** Reply with a header then `data` in one writev, without copying the data. */
  replyData(req: Request, data: Uint8Array): void {
    assert(!req.answered, `second reply to ${opcodeName(req.opcode)} unique=${req.unique}`);
    req.answered = true;
    const v = this.hdrView;
    v.setUint32(OutHeader.LEN, OutHeader.SIZE + data.byteLength, true);
    v.setInt32(OutHeader.ERROR, 0, true);
    v.setUint32(OutHeader.UNIQUE, req.uniqueLo, true);
    v.setUint32(OutHeader.UNIQUE + 4, req.uniqueHi, true);
    this.counters.replies++;
    this.writeReply(req, this.hdr, OutHeader.SIZE, data.byteLength === 0 ? undefined : data, 0);
  }

  /** Reply with a negative errno. `err` is an errno number or anything thrown by a Filesystem. */
  replyError(req: Request, err: unknown): void {
    let errno: number;
    if (typeof err === "number") errno = err;
    else {
      errno = errnoOf(err);
      if (errno === 0) {
        this.counters.fsBugs++;
        this.opts.log(`${opcodeName(req.opcode)} nodeid=${req.nodeid} failed with a non-errno error (answering EIO): ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
        errno = Errno.EIO;
      }
    }
    assert(errno > 0 && errno < 4096, `errno ${errno} out of range`);
    if (req.answered) {
      this.opts.log(`${opcodeName(req.opcode)}: ${errnoName(errno)} after the request was answered`);
      return;
    }
    req.answered = true;
    this.counters.errors++;
    const v = this.hdrView;
    v.setUint32(OutHeader.LEN, OutHeader.SIZE, true);
    v.setInt32(OutHeader.ERROR, -errno, true);
    v.setUint32(OutHeader.UNIQUE, req.uniqueLo, true);
    v.setUint32(OutHeader.UNIQUE + 4, req.uniqueHi, true);
    this.writeReply(req, this.hdr, OutHeader.SIZE, undefined, errno);
  }

  /** Write `head[0, headBytes)` and then `data` (if any) as one reply. */
  private writeReply(req: Request, head: Buffer, headBytes: number, data: Uint8Array | undefined, errno: number): void {
    if (this.opts.debug) this.opts.log(`-> ${opcodeName(req.opcode)} unique=${req.unique} ${errno ? errnoName(errno) : "ok"}`);
    const prof = this.profile;
    const t0 = prof === undefined ? 0 : performance.now();
    try {
      if (data === undefined) fs.writeSync(this.fd, head, 0, headBytes);
      else fs.writevSync(this.fd, [head.subarray(0, headBytes), data]);
      if (prof !== undefined) {
        const t1 = performance.now();
        prof.replyMs += t1 - t0;
        prof.replies++;
        const op = req.opcode < 64 ? req.opcode : 0;
        prof.opMs[op] = prof.opMs[op]! + t1 - req.startMs;
        prof.opReplies[op] = prof.opReplies[op]! + 1;
      }
    } catch (err) {
      const code = (err as { code?: string }).code;
      // ENOENT: the kernel no longer waits for this request (interrupted and given up, or the
      // connection was aborted). ENODEV: the filesystem was unmounted. Neither is our bug.
      if (code === "ENOENT" || code === "ENODEV") return;
      this.counters.writeFailures++;
      this.opts.log(`writing the reply to ${opcodeName(req.opcode)} unique=${req.unique} failed: ${String(err)}`);
    }
  }

  // -------------------------------------------------------------------------------------------
  // INIT, INTERRUPT, DESTROY: the session's own opcodes.

  handleInit(req: Request, v: DataView, off: number, end: number): void {
    const major = v.getUint32(off + InitIn.MAJOR, true);
    const minor = v.getUint32(off + InitIn.MINOR, true);
    if (this.init !== undefined) {
      this.malformed(req, "second INIT");
      return;
    }
    if (major !== FUSE_KERNEL_VERSION || minor < FUSE_MIN_MINOR_VERSION) {
      this.opts.log(`kernel speaks FUSE ${major}.${minor}; we need ${FUSE_KERNEL_VERSION}.${FUSE_MIN_MINOR_VERSION} or newer`);
      this.replyError(req, Errno.EPROTO);
      this.readyReject(new FuseError("EPROTO", `unsupported FUSE protocol ${major}.${minor}`));
      return;
    }
    let kernelFlags = v.getUint32(off + InitIn.FLAGS, true);
    if (end - off >= InitIn.SIZEOF && kernelFlags & InitFlag.INIT_EXT) kernelFlags += v.getUint32(off + InitIn.FLAGS2, true) * 2 ** 32;
    const kernelReadahead = v.getUint32(off + InitIn.MAX_READAHEAD, true);

    const want = this.wantedFlags();
    const enabled = andFlags(want, kernelFlags);
    const maxWrite = this.opts.maxWrite;
    const maxReadahead = Math.min(kernelReadahead, this.opts.maxReadahead);
    const info: InitInfo = { major, minor: Math.min(minor, FUSE_KERNEL_MINOR_VERSION), kernelFlags, enabledFlags: enabled, maxWrite, maxReadahead };
    this.setxattrExt = hasFlag(enabled, InitFlag.SETXATTR_EXT);

    const o = this.outView;
    const p = OutHeader.SIZE;
    this.out.fill(0, p, p + InitOut.SIZEOF);
    o.setUint32(p + InitOut.MAJOR, FUSE_KERNEL_VERSION, true);
    o.setUint32(p + InitOut.MINOR, info.minor, true);
    o.setUint32(p + InitOut.MAX_READAHEAD, maxReadahead, true);
    o.setUint32(p + InitOut.FLAGS, enabled % 2 ** 32, true);
    o.setUint16(p + InitOut.MAX_BACKGROUND, this.opts.maxBackground, true);
    o.setUint16(p + InitOut.CONGESTION_THRESHOLD, Math.floor((this.opts.maxBackground * 3) / 4), true);
    o.setUint32(p + InitOut.MAX_WRITE, maxWrite, true);
    o.setUint32(p + InitOut.TIME_GRAN, 1, true);
    o.setUint16(p + InitOut.MAX_PAGES, maxWrite / PAGE_SIZE_BYTES, true);
    o.setUint32(p + InitOut.FLAGS2, Math.floor(enabled / 2 ** 32), true);
    this.init = info;
    if (this.opts.debug) {
      this.opts.log(`INIT kernel ${major}.${minor} offers ${initFlagNames(kernelFlags).join(",")}`);
      this.opts.log(`INIT enabled ${initFlagNames(enabled).join(",")} max_write=${maxWrite}`);
    }
    this.call(
      req,
      () => this.fs.init?.(info),
      () => {
        this.replyOut(req, InitOut.SIZEOF);
        this.readyResolve(info);
      },
    );
  }

  /** The INIT flags we ask for, before masking with what the kernel offers. */
  private wantedFlags(): number {
    const f = this.fs;
    let want =
      InitFlag.ASYNC_READ |
      InitFlag.EXPORT_SUPPORT |
      InitFlag.BIG_WRITES |
      InitFlag.HAS_IOCTL_DIR |
      InitFlag.ASYNC_DIO |
      InitFlag.PARALLEL_DIROPS |
      InitFlag.MAX_PAGES |
      InitFlag.CACHE_SYMLINKS;
    // O_TRUNC handled by OPEN. Without an open method the kernel sends no OPEN (after the first
    // ENOSYS) and, with this flag, would then truncate nothing: it must send a SETATTR instead.
    if (f.open) want |= InitFlag.ATOMIC_O_TRUNC;
    if (f.readdir) want |= InitFlag.DO_READDIRPLUS | InitFlag.READDIRPLUS_AUTO;
    if (f.getlk && f.setlk) want |= InitFlag.POSIX_LOCKS | InitFlag.FLOCK_LOCKS;
    if (this.opts.writebackCache) want |= InitFlag.WRITEBACK_CACHE;
    if (this.opts.autoInvalData) want |= InitFlag.AUTO_INVAL_DATA;
    if (this.opts.posixAcl && f.getxattr && f.setxattr) want |= InitFlag.POSIX_ACL;
    // the filesystem removes privileges itself: no GETXATTR of security.capability per write
    if (f.killPrivV2 === true) want |= InitFlag.HANDLE_KILLPRIV_V2;
    want >>>= 0;
    // INIT_EXT lets us answer with flags2; we ask for no bit above 31 today but keep the door open.
    return want + InitFlag.INIT_EXT;
  }

  handleInterrupt(req: Request, v: DataView, off: number): void {
    this.counters.interrupts++;
    const target = getU64(v, off + InterruptIn.UNIQUE);
    const victim = this.inflight.get(target);
    if (victim !== undefined) {
      if (victim.interrupted) return;
      victim.interrupted = true;
      const cb = victim.onInterrupt;
      victim.onInterrupt = undefined;
      if (cb) {
        try {
          cb();
        } catch (err) {
          this.opts.log(`interrupt callback of ${opcodeName(victim.opcode)} threw: ${String(err)}`);
        }
      }
      return;
    }
    // Not in flight: either already answered (the kernel will drop this answer) or read by
    // another reader slot but not dispatched yet. EAGAIN asks the kernel to queue the interrupt
    // again, which covers the second case.
    const ireq = new Request((req.uniqueLo | FUSE_INT_REQ_BIT) >>> 0, req.uniqueHi, Opcode.INTERRUPT, 0, 0, 0, 0);
    this.replyError(ireq, Errno.EAGAIN);
  }

  handleDestroy(req: Request): void {
    this.call(
      req,
      () => this.runDestroy(),
      () => this.replyOut(req, 0),
    );
  }

  /** Call Filesystem.destroy once, whether the kernel sent DESTROY or the device went away. */
  runDestroy(): void | Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    return this.fs.destroy?.();
  }

  // -------------------------------------------------------------------------------------------
  // Notifications to the kernel (unique 0, error = notify code). They resolve when written; a
  // kernel answer of ENOENT (nothing cached for that inode/name) counts as success.

  /** Drop cached attributes and pages [off, off+len) of an inode (len 0: to the end; off -1: attributes only). */
  notifyInvalInode(nodeid: number, off: number, len: number): Promise<void> {
    const b = this.notifyBuffer(NotifyInvalInodeOut.SIZEOF);
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const p = OutHeader.SIZE;
    putU64(v, p + NotifyInvalInodeOut.INO, nodeid);
    v.setBigInt64(p + NotifyInvalInodeOut.OFF, BigInt(off), true);
    v.setBigInt64(p + NotifyInvalInodeOut.LEN, BigInt(len), true);
    return this.notify(NotifyCode.INVAL_INODE, b);
  }

  /** Drop the cached dentry `name` in directory `parent`. */
  notifyInvalEntry(parent: number, name: string): Promise<void> {
    const nameBytes = Buffer.byteLength(name, "latin1");
    const b = this.notifyBuffer(NotifyInvalEntryOut.SIZEOF + nameBytes + 1);
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const p = OutHeader.SIZE;
    putU64(v, p + NotifyInvalEntryOut.PARENT, parent);
    v.setUint32(p + NotifyInvalEntryOut.NAMELEN, nameBytes, true);
    v.setUint32(p + NotifyInvalEntryOut.FLAGS, 0, true);
    b.write(name, p + NotifyInvalEntryOut.SIZEOF, "latin1");
    b[p + NotifyInvalEntryOut.SIZEOF + nameBytes] = 0;
    return this.notify(NotifyCode.INVAL_ENTRY, b);
  }

  /** Tell the kernel `name` in `parent`, which pointed at `child`, was deleted (by another node). */
  notifyDelete(parent: number, child: number, name: string): Promise<void> {
    const nameBytes = Buffer.byteLength(name, "latin1");
    const b = this.notifyBuffer(NotifyDeleteOut.SIZEOF + nameBytes + 1);
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const p = OutHeader.SIZE;
    putU64(v, p + NotifyDeleteOut.PARENT, parent);
    putU64(v, p + NotifyDeleteOut.CHILD, child);
    v.setUint32(p + NotifyDeleteOut.NAMELEN, nameBytes, true);
    b.write(name, p + NotifyDeleteOut.SIZEOF, "latin1");
    b[p + NotifyDeleteOut.SIZEOF + nameBytes] = 0;
    return this.notify(NotifyCode.DELETE, b);
  }

  /** Put `data` into the kernel's page cache of an inode at `offset`. */
  notifyStore(nodeid: number, offset: number, data: Uint8Array): Promise<void> {
    const b = this.notifyBuffer(NotifyStoreOut.SIZEOF + data.byteLength);
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const p = OutHeader.SIZE;
    putU64(v, p + NotifyStoreOut.NODEID, nodeid);
    putU64(v, p + NotifyStoreOut.OFFSET, offset);
    v.setUint32(p + NotifyStoreOut.SIZE, data.byteLength, true);
    b.set(data, p + NotifyStoreOut.SIZEOF);
    return this.notify(NotifyCode.STORE, b);
  }

  /**
   * Ask the kernel for cached pages of an inode; they arrive as NOTIFY_REPLY and are handed to
   * Filesystem.retrieveReply with the returned cookie.
   */
  notifyRetrieve(nodeid: number, offset: number, size: number): { cookie: bigint; written: Promise<void> } {
    const cookie = this.nextNotifyUnique++;
    const b = this.notifyBuffer(NotifyRetrieveOut.SIZEOF);
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const p = OutHeader.SIZE;
    v.setBigUint64(p + NotifyRetrieveOut.NOTIFY_UNIQUE, cookie, true);
    putU64(v, p + NotifyRetrieveOut.NODEID, nodeid);
    putU64(v, p + NotifyRetrieveOut.OFFSET, offset);
    v.setUint32(p + NotifyRetrieveOut.SIZE, size, true);
    return { cookie, written: this.notify(NotifyCode.RETRIEVE, b) };
  }

  private notifyBuffer(payloadBytes: number): Buffer {
    const b = Buffer.alloc(OutHeader.SIZE + payloadBytes);
    return b;
  }

  private notify(code: number, b: Buffer): Promise<void> {
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    v.setUint32(OutHeader.LEN, b.byteLength, true);
    v.setInt32(OutHeader.ERROR, code, true);
    v.setBigUint64(OutHeader.UNIQUE, 0n, true);
    this.counters.notifications++;
    return new Promise<void>((resolve, reject) => {
      fs.write(this.fd, b, 0, b.byteLength, null, (err) => {
        const c = (err as { code?: string } | null)?.code;
        if (!err || c === "ENOENT") resolve();
        else reject(new FuseError(errnoOf(err) || Errno.EIO, `notify ${code}: ${String(err)}`));
      });
    });
  }
}

function callOk<T>(_s: Session, _req: Request, value: T, ok: (value: T) => void): void {
  ok(value);
}

function hasFlag(flags: number, bit: number): boolean {
  return Math.floor(flags / bit) % 2 === 1;
}

/** Bitwise AND of two 64-bit flag sets held as numbers. */
function andFlags(a: number, b: number): number {
  const lo = ((a % 2 ** 32) & (b % 2 ** 32)) >>> 0;
  const hi = (Math.floor(a / 2 ** 32) & Math.floor(b / 2 ** 32)) >>> 0;
  return hi * 2 ** 32 + lo;
}
