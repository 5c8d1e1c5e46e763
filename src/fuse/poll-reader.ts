/**
 * The "poll" read strategy (default): the main thread reads /dev/fuse itself, so a request costs
 * the two wake-ups of a libfuse loop (the kernel wakes us; our reply wakes the caller) instead of
 * three (the kernel wakes a reader thread, which wakes the main thread). Measurements and the
 * reasoning: docs/fuse.md.
 *
 * The event loop must never block, and Bun cannot watch a character device. So:
 *
 * - Hot (while requests keep coming): the main thread runs a setImmediate chain. Each turn reads
 *   and dispatches every request already queued (the device is opened O_NONBLOCK, reads stop at
 *   EAGAIN) and returns to the event loop, so the microtasks and callbacks they queued run (a
 *   Filesystem promise that settled at once answers there) before we ever wait. A turn that finds
 *   nothing waits in ppoll(2) on two descriptors: /dev/fuse, and the epoll descriptor of Bun's own
 *   event loop. The latter becomes readable whenever the loop has anything to do (socket or pipe
 *   I/O, a worker's message, a thread-pool completion, a child's exit, a signal): the turn then
 *   returns to the event loop at once. Timers are not descriptors: a turn waits at most `pollUs`,
 *   which bounds how late a timer (or a setImmediate queued by a promise callback) can run while
 *   we are hot.
 * - Cold (after `hotMs` without a request): the main thread goes back to sleeping in the event
 *   loop like any idle program; a small worker thread blocks in poll(2) on /dev/fuse and posts a
 *   message when a request arrives, which makes us hot again. The worker never reads: requests
 *   are read only by the main thread, so nothing crosses threads but that one wake-up.
 *
 * Buffers: requests are read into request-sized buffers; a request that keeps a view of its buffer
 * past dispatch (WRITE data, SETXATTR value, IOCTL input whose Filesystem promise is pending) keeps
 * that buffer, and reading goes on in a spare one (as many as needed: no reserve to run out of, so
 * a write waiting for a later request never stops us from reading that request).
 *
 * The loop's epoll descriptor is found by asking the loop (probeEventLoopEpollFd). If it cannot
 * be found (no /proc, a Bun that works differently), the wait still ends every `pollUs`:
 * everything keeps working, I/O callbacks are merely late by up to that much while hot.
 */
import { dlopen, FFIType, ptr, read as ffiRead } from "bun:ffi";
import * as fs from "node:fs";
import { assert } from "./errno.ts";
import type { RequestReader } from "./reader.ts";
import type { Session } from "./session.ts";

/** Longest wait in ppoll while hot, in µs: the bound on timer lateness while requests flow. */
export const POLL_US_DEFAULT = 500;
/** Stay hot this long after the last request, in ms, then let a watcher thread wait instead. */
export const HOT_MS_DEFAULT = 20;
/** Requests dispatched per turn before yielding to the event loop. */
const DRAIN_MAX = 64;
const SPARE_BUFFERS_MAX = 16;
/** Turns that may look for the event loop's epoll descriptor before we do without it. */
const PROBES_MAX = 200;

const POLLIN = 0x1;
const EINTR = 4;
const EAGAIN = 11;
const ENOENT = 2;
const ENODEV = 19;

/** Shared state word between the main thread and the watcher. */
const ST_HOT = 0;
const ST_COLD = 1;
const ST_WAKING = 2;
const ST_ENDED = 3;

type Libc = {
  symbols: {
    ppoll: (fds: number, nfds: number, timeout: number | null, sigmask: number | null) => number;
    read: (fd: number, buf: number, count: number) => number;
    __errno_location: () => number | null;
  };
};
let libcHandle: Libc | undefined;
function libc(): Libc {
  libcHandle ??= dlopen("libc.so.6", {
    ppoll: { args: [FFIType.ptr, FFIType.u64, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
    // ssize_t, but a request is at most a few MiB: the low 32 bits, signed, are exact (and -1 is -1)
    read: { args: [FFIType.i32, FFIType.ptr, FFIType.u64], returns: FFIType.i32 },
    __errno_location: { args: [], returns: FFIType.ptr },
  }) as unknown as Libc;
  return libcHandle;
}

function errno(): number {
  const p = libc().symbols.__errno_location();
  assert(p !== null, "__errno_location returned NULL");
  return ffiRead.i32(p, 0);
}

/** The eventpoll descriptors of this process (every Bun event loop has one), lowest first. */
function eventpollFds(): number[] {
  const out: number[] = [];
  try {
    for (const name of fs.readdirSync("/proc/self/fd")) {
      try {
        if (fs.readlinkSync(`/proc/self/fd/${name}`) === "anon_inode:[eventpoll]") out.push(Number(name));
      } catch {
        // closed meanwhile (the readdir's own descriptor)
      }
    }
  } catch {
    // no /proc
  }
  return out.sort((a, b) => a - b);
}

/**
 * The epoll descriptor of the calling thread's Bun event loop; -1 if there is none to be found,
 * -2 if this moment cannot tell (try again later). A process has one per event loop (a plain
 * `bun` has the main thread's as its lowest descriptor, `bun test` another one below it, every
 * worker its own), so we ask the loop: an async fs call's completion is handed to this thread's
 * loop by Bun's thread pool, which wakes the loop through a descriptor in its epoll set, so exactly
 * that epoll descriptor becomes readable. This only tells if every loop is quiet when we ask
 * (else the answer is -2), and if only one wakes. Blocks for at most `waitMs`.
 */
export function probeEventLoopEpollFd(waitMs = 200): number {
  if (process.platform !== "linux") return -1;
  const fds = eventpollFds();
  if (fds.length === 0) return -1;
  const poll = libc().symbols.ppoll;
  const ready = (set: number[], ms: number): number[] => {
    const pf = new Int32Array(set.length * 2);
    set.forEach((fd, k) => {
      pf[2 * k] = fd;
      pf[2 * k + 1] = POLLIN;
    });
    const ts = new BigInt64Array([BigInt(Math.floor(ms / 1000)), BigInt(Math.floor((ms % 1000) * 1_000_000))]);
    if (poll(ptr(pf), set.length, ptr(ts), null) <= 0) return [];
    return set.filter((_, k) => pf[2 * k + 1]! >>> 16 !== 0);
  };
  // A loop with events pending could be ours: ask again when every one is quiet.
  if (ready(fds, 0).length > 0) return -2;
  fs.stat("/", () => {}); // completes on Bun's thread pool, then wakes this thread's loop
  const r = ready(fds, waitMs);
  return r.length === 1 ? r[0]! : r.length === 0 ? -1 : -2;
}

const WATCHER_CODE = `
import { dlopen, FFIType, ptr } from "bun:ffi";
self.onmessage = (ev) => {
  const { fd, stateSab } = ev.data;
  const st = new Int32Array(stateSab);
  const libc = dlopen("libc.so.6", { poll: { args: [FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i32 } });
  const pfd = new Int32Array(2);
  pfd[0] = fd;
  const p = ptr(pfd);
  for (;;) {
    const s = Atomics.load(st, 0);
    if (s === ${ST_ENDED}) break;
    if (s !== ${ST_COLD}) { Atomics.wait(st, 0, s); continue; }
    pfd[1] = ${POLLIN}; // events = POLLIN, revents = 0
    if (libc.symbols.poll(p, 1, -1) <= 0) continue; // EINTR
    // A request (or the end of the connection: POLLERR): wake the main thread, once.
    if (Atomics.compareExchange(st, 0, ${ST_COLD}, ${ST_WAKING}) === ${ST_COLD}) postMessage(0);
  }
  libc.close();
  postMessage(1);
};`;

interface Slot {
  buf: Buffer;
  view: DataView;
}

export interface PollReaderOptions {
  pollUs?: number;
  hotMs?: number;
}

export class PollReader implements RequestReader {
  readonly closed: Promise<void>;
  private closedResolve!: () => void;
  endReason = "";
  private readonly bufferBytes: number;
  private cur: Slot;
  private readonly spares: Slot[] = [];
  /** struct pollfd[2]: /dev/fuse, then the event loop's epoll descriptor (or -1: ignored). */
  private readonly pollfds = new Int32Array(4);
  private readonly pollfdsPtr: number;
  /** struct timespec of the longest wait. */
  private readonly timeout = new BigInt64Array(2);
  private readonly timeoutPtr: number;
  private readonly state = new Int32Array(new SharedArrayBuffer(4));
  private watcher: Worker | undefined;
  private watcherUrl = "";
  private scheduled = false;
  private ended = false;
  private lastRequestMs = 0;
  private readonly hotMs: number;
  private readonly pollUs: number;
  /** The last read found no request (EAGAIN): read again only once ppoll reports one. */
  private drained = false;
  /** Turns left to find the event loop's epoll descriptor in. */
  private probes = PROBES_MAX;
  private readonly turnNow = (): void => {
    this.scheduled = false;
    this.turn();
  };

  constructor(
    private readonly session: Session,
    private readonly fd: number,
    opts: PollReaderOptions = {},
  ) {
    const pollUs = opts.pollUs ?? POLL_US_DEFAULT;
    this.pollUs = pollUs;
    this.hotMs = opts.hotMs ?? HOT_MS_DEFAULT;
    assert(pollUs >= 1 && pollUs <= 1_000_000, `pollUs ${pollUs} outside [1, 1e6]`);
    assert(this.hotMs >= 0 && this.hotMs <= 60_000, `hotMs ${this.hotMs} outside [0, 60000]`);
    this.bufferBytes = session.requestBufferBytes;
    this.cur = this.newSlot();
    this.pollfds[0] = fd;
    this.pollfds[1] = POLLIN;
    this.pollfds[2] = -1;
    this.pollfds[3] = POLLIN;
    this.pollfdsPtr = ptr(this.pollfds);
    this.timeoutPtr = ptr(this.timeout);
    this.closed = new Promise((resolve) => {
      this.closedResolve = resolve;
    });
  }

  /**
   * The event loop's epoll descriptor we also wait on, -1 if none (yet: it is looked for in the
   * first turns; without it waits end every pollUs only).
   */
  get loopFd(): number {
    return this.pollfds[2]!;
  }

  /** Polling for requests on the main thread (else idle: the watcher thread waits for one). */
  get hot(): boolean {
    return Atomics.load(this.state, 0) === ST_HOT;
  }

  start(): void {
    this.watcherUrl = URL.createObjectURL(new Blob([WATCHER_CODE], { type: "application/typescript" }));
    const w = new Worker(this.watcherUrl);
    w.onmessage = (ev: MessageEvent<number>) => {
      if (ev.data === 1) {
        w.terminate();
        URL.revokeObjectURL(this.watcherUrl);
        return;
      }
      // Woken from cold: a request is waiting.
      if (this.ended) return;
      const prof = this.session.profile;
      if (prof !== undefined) prof.wakeups++;
      Atomics.store(this.state, 0, ST_HOT);
      this.lastRequestMs = performance.now();
      this.drained = false;
      this.schedule();
    };
    w.postMessage({ fd: this.fd, stateSab: this.state.buffer });
    this.watcher = w;
    Atomics.store(this.state, 0, ST_HOT);
    this.lastRequestMs = performance.now();
    this.schedule();
  }

  private newSlot(): Slot {
    const buf = Buffer.allocUnsafe(this.bufferBytes);
    return { buf, view: new DataView(buf.buffer, buf.byteOffset, buf.byteLength) };
  }

  private schedule(): void {
    if (this.scheduled || this.ended) return;
    this.scheduled = true;
    setImmediate(this.turnNow);
  }

  /**
   * One turn of the hot loop: dispatch what is queued and return to the event loop (which runs
   * the microtasks and callbacks those requests queued); if nothing is queued, wait in ppoll for a
   * request, for at most pollUs in all, and return to the event loop early when it has work of
   * its own (its epoll descriptor became readable).
   */
  private turn(): void {
    if (this.ended) return;
    if (this.probes > 0) {
      // Look for the loop's epoll descriptor from inside the loop, where it has just taken its
      // events: at mount time it may have some pending, which hides it (see the probe).
      const fd = probeEventLoopEpollFd();
      this.probes = fd === -2 ? this.probes - 1 : 0;
      if (fd >= 0) this.pollfds[2] = fd;
    }
    const t0 = performance.now();
    for (;;) {
      // Since the last read found the device empty, only ppoll can tell us of a request.
      const n = this.drained ? 0 : this.drain();
      if (this.ended) return;
      const now = performance.now();
      if (n > 0) {
        this.lastRequestMs = now;
        break;
      }
      const left = this.pollUs - (now - t0) * 1000;
      if (left <= 0) break;
      if (now - this.lastRequestMs >= this.hotMs) {
        this.goCold();
        return;
      }
      const pf = this.pollfds;
      pf[1] = POLLIN; // events POLLIN, revents 0 (little-endian shorts in one int)
      pf[3] = POLLIN;
      this.timeout[0] = BigInt(Math.floor(left / 1e6));
      this.timeout[1] = BigInt(Math.min(999_999_999, Math.ceil((left % 1e6) * 1000)));
      const r = libc().symbols.ppoll(this.pollfdsPtr, pf[2]! >= 0 ? 2 : 1, this.timeoutPtr, null);
      if (r <= 0) break; // time is up (or a signal): let the loop run
      if (pf[1]! >>> 16 !== 0) {
        this.drained = false;
        const prof = this.session.profile;
        if (prof !== undefined) prof.wakeups++;
      }
      if (pf[3]! >>> 16 !== 0) break; // the event loop has work
    }
    this.schedule();
  }

  /**
   * Read and dispatch queued requests until the device has none (EAGAIN) or DRAIN_MAX were read.
   * Returns how many were dispatched.
   */
  private drain(): number {
    const s = this.session;
    const c = libc().symbols;
    let handled = 0;
    while (handled < DRAIN_MAX) {
      const slot = this.cur;
      const n = c.read(this.fd, ptr(slot.buf), slot.buf.byteLength);
      if (n < 0) {
        const e = errno();
        if (e === EAGAIN) {
          this.drained = true;
          break;
        }
        // EINTR: a signal; ENOENT: the request went away between poll and read (aborted).
        if (e === EINTR || e === ENOENT) continue;
        this.end(e === ENODEV ? "ENODEV" : `errno ${e}`);
        break;
      }
      handled++;
      if (s.profile !== undefined) s.readAtMs = performance.timeOrigin + performance.now();
      const lent = s.dispatch(slot.buf, n, slot.view);
      if (lent !== undefined) {
        // The request keeps this buffer until its promise settles: read on into another.
        this.cur = this.spares.pop() ?? this.newSlot();
        const back = (): void => {
          if (this.spares.length < SPARE_BUFFERS_MAX) this.spares.push(slot);
        };
        lent.then(back, back);
      }
    }
    return handled;
  }

  /**
   * No request for hotMs: sleep in the event loop; the watcher thread waits for the next request.
   * A request that arrived just now is not lost: poll(2) is level-triggered, so the watcher sees it.
   */
  private goCold(): void {
    Atomics.store(this.state, 0, ST_COLD);
    Atomics.notify(this.state, 0);
  }

  private end(reason: string): void {
    if (this.ended) return;
    this.ended = true;
    if (reason !== "ENODEV") this.session.opts.log(`reading /dev/fuse failed: ${reason}`);
    this.endReason ||= reason;
    Atomics.store(this.state, 0, ST_ENDED);
    Atomics.notify(this.state, 0);
    // The watcher leaves its loop (its poll returns: the device is gone) and says so; it is
    // terminated then, or here if it is not running.
    if (this.watcher === undefined) URL.revokeObjectURL(this.watcherUrl);
    this.closedResolve();
  }
}
