/**
 * The "worker" read strategy: worker threads block in readSync on /dev/fuse and hand each
 * request to the main thread through a SharedArrayBuffer, so neither the event loop nor Bun's
 * I/O thread pool ever waits for the kernel.
 *
 * Each worker owns one shared request buffer plus a state word. It reads a request into the
 * buffer, stores its length in the state word and posts a wake-up message; then waits (Atomics.
 * wait, in the worker) until the main thread has copied the request out into a pooled buffer and
 * reset the state to FREE. The copy keeps the worker loop independent of how long the Filesystem
 * keeps the request (a WRITE awaiting a remote lock, say), at the price of one memcpy per request.
 *
 * All workers read the same fd: the kernel hands each request to exactly one reader, and replies
 * are written on that fd by the main thread. (FUSE_DEV_IOC_CLONE would give each worker its own
 * processing queue, but then replies must go to the fd the request was read from; with one
 * JavaScript thread doing all replies there is nothing to gain.)
 */
import { assert } from "./errno.ts";
import type { RequestReader } from "./reader.ts";
import type { Session } from "./session.ts";

const STATE_FREE = 0;
/** State word values above 0 are request lengths; below 0 negative errnos that end the worker. */
const SPARE_BUFFERS_MAX = 16;

const WORKER_CODE = `
const fs = require("node:fs");
self.onmessage = (ev) => {
  const { fd, sab, stateSab } = ev.data;
  const buf = Buffer.from(sab);
  const state = new Int32Array(stateSab);
  for (;;) {
    let n;
    try {
      n = fs.readSync(fd, buf, 0, buf.byteLength, null);
    } catch (err) {
      const code = err && err.code;
      if (code === "EINTR" || code === "EAGAIN" || code === "ENOENT") continue;
      Atomics.store(state, 0, code === "ENODEV" ? -19 : -5);
      postMessage(code || String(err));
      return;
    }
    Atomics.store(state, 0, n);
    postMessage(0);
    while (Atomics.load(state, 0) !== 0) Atomics.wait(state, 0, n);
  }
};`;

export class WorkerReader implements RequestReader {
  readonly closed: Promise<void>;
  private closedResolve!: () => void;
  private active = 0;
  private readonly spares: Buffer[] = [];
  private readonly workers: Worker[] = [];
  endReason = "";

  constructor(
    private readonly session: Session,
    private readonly fd: number,
    private readonly threads = 2,
  ) {
    assert(threads >= 1 && threads <= 16, `reader threads ${threads} outside [1, 16]`);
    this.closed = new Promise((resolve) => {
      this.closedResolve = resolve;
    });
  }

  start(): void {
    const url = URL.createObjectURL(new Blob([WORKER_CODE], { type: "application/javascript" }));
    const bytes = this.session.requestBufferBytes;
    for (let i = 0; i < this.threads; i++) {
      const sab = new SharedArrayBuffer(bytes);
      const stateSab = new SharedArrayBuffer(4);
      const shared = Buffer.from(sab);
      const state = new Int32Array(stateSab);
      const w = new Worker(url);
      this.active++;
      w.onmessage = (ev: MessageEvent<number | string>) => {
        const n = Atomics.load(state, 0);
        if (n <= 0) {
          if (ev.data !== "ENODEV") this.session.opts.log(`reader thread ended: ${String(ev.data)}`);
          this.endReason ||= String(ev.data);
          w.terminate();
          if (--this.active === 0) this.closedResolve();
          return;
        }
        const buf = this.spares.pop() ?? Buffer.allocUnsafe(bytes);
        shared.copy(buf, 0, 0, n);
        Atomics.store(state, 0, STATE_FREE);
        Atomics.notify(state, 0);
        const lent = this.session.dispatch(buf, n);
        if (lent === undefined) this.giveBack(buf);
        else {
          const back = (): void => this.giveBack(buf);
          lent.then(back, back);
        }
      };
      w.postMessage({ fd: this.fd, sab, stateSab });
      this.workers.push(w);
    }
    // Workers keep the process alive only while mounted; closing resolves when all have ended.
    this.closed.then(() => URL.revokeObjectURL(url));
  }

  private giveBack(buf: Buffer): void {
    if (this.spares.length < SPARE_BUFFERS_MAX) this.spares.push(buf);
  }
}
