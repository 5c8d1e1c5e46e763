/**
 * Reading requests from /dev/fuse without blocking the JavaScript event loop.
 *
 * A read of /dev/fuse blocks until the kernel has a request. Three ways keep that wait off the
 * event loop (measured in scripts/bench/fuse.ts, discussed in docs/fuse.md):
 *
 * - "poll" (default, poll-reader.ts): the main thread reads the device itself, non-blocking,
 *   waiting in ppoll(2) on the device and on the event loop's own epoll descriptor while requests
 *   flow, and through a watcher thread when idle: no handoff between threads per request.
 *
 * - "async": `slots` concurrent `fs.read(fd, buf, cb)` calls, each with its own
 *   request-sized buffer. Bun runs each one on a thread of its I/O thread pool; the callback runs
 *   on the event loop with the request in the buffer. Several outstanding reads let the kernel hand
 *   us the next request while the previous callback is still queued, so a burst of requests costs
 *   one wake-up each, not one read round-trip each.
 *
 *   Each pending read occupies a thread of Bun's I/O pool (as many threads as CPUs by default):
 *   with 2 CPUs and 2 slots, every other async fs call of the process waits forever, so a
 *   filesystem that itself does async file I/O deadlocks. Measured and shown in docs/fuse.md.
 *
 * - "worker": a worker thread blocking in readSync publishes requests in a ring of shared slots
 *   and wakes the main thread only when it sleeps. See worker-reader.ts; it is faster per request
 *   than "async" and never occupies the I/O pool, slower than "poll" (one more wake-up).
 *
 * Buffer lending: a request that keeps a view of its buffer past dispatch (WRITE data, SETXATTR
 * value, IOCTL input) returns a promise; the slot reads the next request into a buffer from the
 * spare pool and gets its own back when the promise settles. So a slow write never stalls reading
 * (which would deadlock a filesystem whose write waits on a later request).
 *
 * Shutdown: once the filesystem is unmounted every pending read fails with ENODEV; each slot then
 * stops, and when all have stopped `closed` resolves. Reads failing with EINTR/EAGAIN are retried;
 * ENOENT (the request was aborted between poll and read) too.
 */
import * as fs from "node:fs";
import { assert } from "./errno.ts";
import type { Session } from "./session.ts";

export interface RequestReader {
  /** Resolves when the device read loop has ended (unmount, abort or stop()). */
  readonly closed: Promise<void>;
  start(): void;
}

/** Most spare buffers kept for lent slots; beyond that they are dropped for the GC. */
const SPARE_BUFFERS_MAX = 16;

export class AsyncReader implements RequestReader {
  readonly closed: Promise<void>;
  private closedResolve!: () => void;
  private active = 0;
  private stopping = false;
  private readonly spares: Buffer[] = [];
  private readonly bufferBytes: number;
  /** Why the loop ended: "ENODEV" for unmount, else the unexpected error. */
  endReason = "";

  constructor(
    private readonly session: Session,
    private readonly fd: number,
    private readonly slots = 2,
  ) {
    assert(slots >= 1 && slots <= 64, `reader slots ${slots} outside [1, 64]`);
    this.bufferBytes = session.requestBufferBytes;
    this.closed = new Promise((resolve) => {
      this.closedResolve = resolve;
    });
  }

  start(): void {
    for (let i = 0; i < this.slots; i++) {
      this.active++;
      this.arm(Buffer.allocUnsafe(this.bufferBytes));
    }
  }

  private takeSpare(): Buffer {
    return this.spares.pop() ?? Buffer.allocUnsafe(this.bufferBytes);
  }

  private giveBack(buf: Buffer): void {
    if (this.spares.length < SPARE_BUFFERS_MAX) this.spares.push(buf);
  }

  private arm(buf: Buffer): void {
    fs.read(this.fd, buf, 0, buf.byteLength, null, (err, n) => this.onRead(buf, err, n));
  }

  private onRead(buf: Buffer, err: NodeJS.ErrnoException | null, n: number): void {
    if (err) {
      const code = err.code;
      if (!this.stopping && (code === "EINTR" || code === "EAGAIN" || code === "ENOENT")) {
        this.arm(buf);
        return;
      }
      if (code !== "ENODEV" && !this.stopping) this.session.opts.log(`reading /dev/fuse failed: ${String(err)}`);
      this.endReason ||= code ?? String(err);
      this.stopSlot();
      return;
    }
    if (this.stopping) {
      // Stopping while a request arrived: answer it anyway so no caller is left waiting.
      this.session.dispatch(buf, n);
      this.stopSlot();
      return;
    }
    const lent = this.session.dispatch(buf, n);
    if (lent === undefined) {
      this.arm(buf);
      return;
    }
    this.arm(this.takeSpare());
    const back = (): void => this.giveBack(buf);
    lent.then(back, back);
  }

  private stopSlot(): void {
    this.stopping = true;
    this.active--;
    assert(this.active >= 0, "reader slot count below zero");
    if (this.active === 0) this.closedResolve();
  }
}
