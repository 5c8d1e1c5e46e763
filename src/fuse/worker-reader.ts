/**
 * The "worker" read strategy: worker threads block in readSync on /dev/fuse and hand requests to
 * the main thread through rings of request slots in shared memory, so neither the event loop nor
 * Bun's I/O thread pool ever waits for the kernel. Measurements behind this shape: docs/fuse.md.
 *
 * Each worker owns a ring of SLOTS request-sized slots in one SharedArrayBuffer, plus a control
 * block (Int32Array) holding per slot a state word and a sequence number:
 * - state FREE (0): the worker may read into the slot;
 * - state > 0: the slot holds a request of that many bytes, not yet dispatched;
 * - state HELD (-1): the main thread is dispatching it, or lent it to a request that keeps a view
 *   of its buffer (WRITE data, SETXATTR value, IOCTL input) until that request settles.
 * The worker never waits for the main thread to take a request: after publishing one it reads the
 * next into any other free slot, and waits (Atomics.wait on FREE_GEN) only when all are taken.
 * The main thread dispatches straight from the slot, without copying.
 *
 * Wake-ups. A shared SLEEPING word says the main thread has drained every ring and gone back to
 * its event loop. A worker that publishes a request swaps SLEEPING to 0 and posts a message only
 * if it was 1: so a burst of requests costs one wake-up, and requests that arrive while the main
 * thread is working cost none. No wake-up is lost: the main thread sets SLEEPING and then looks at
 * the rings once more; a worker publishes and then swaps SLEEPING. With sequentially consistent
 * atomics one of the two sees the other (at worst both do, and a spurious message finds nothing).
 * One drain dispatches at most DRAIN_MAX requests, then yields to the event loop (setImmediate)
 * so promise callbacks, timers and I/O keep running under a flood.
 *
 * Lending without deadlock. A filesystem's WRITE may wait on something that needs a later request
 * (a lock another request releases). If lent slots could fill a ring, the worker could not read
 * that request. So a request of an opcode that may keep its buffer is dispatched in place only
 * while at least LEND_RESERVE other slots of its ring are free; otherwise it is first copied into
 * a heap buffer and its slot is freed at once.
 *
 * All workers read the same fd: the kernel hands each request to exactly one reader, and the main
 * thread writes every reply on that fd. (FUSE_DEV_IOC_CLONE gives each reader its own processing
 * queue, but replies must then go to the fd the request came from; with one JavaScript thread
 * writing all replies there is nothing to gain.)
 */
import { assert } from "./errno.ts";
import { OPCODES } from "./opcodes.ts";
import type { RequestReader } from "./reader.ts";
import type { Session } from "./session.ts";
import { InHeader } from "./types.ts";

/** Request slots per worker ring. */
export const SLOTS = 4;
/** Free slots that must remain in a ring for a request to borrow its slot past dispatch. */
const LEND_RESERVE = 2;
/** Requests dispatched per wake-up before yielding to the event loop. */
const DRAIN_MAX = 64;
const SPARE_BUFFERS_MAX = 16;

const STATE_FREE = 0;
const STATE_HELD = -1;
/** Control block layout (Int32 words) of one ring. */
const CTL_FREE_GEN = 0;
const CTL_END = 1;
const CTL_STATE = 2;
const CTL_SEQ = CTL_STATE + SLOTS;
const CTL_WORDS = CTL_SEQ + SLOTS;
/** The shared wake block: SLEEPING, set while the main thread waits in its event loop. */
const WAKE_SLEEPING = 0;

const WORKER_CODE = `
const fs = require("node:fs");
self.onmessage = (ev) => {
  const { fd, sab, ctlSab, timeSab, wakeSab, slots, slotBytes } = ev.data;
  const ctl = new Int32Array(ctlSab);
  const times = new Float64Array(timeSab);
  const wake = new Int32Array(wakeSab);
  const bufs = [];
  for (let k = 0; k < slots; k++) bufs.push(Buffer.from(sab, k * slotBytes, slotBytes));
  const STATE = ${CTL_STATE}, SEQ = ${CTL_SEQ}, FREE_GEN = ${CTL_FREE_GEN}, END = ${CTL_END};
  let next = 0;
  let seq = 0;
  for (;;) {
    let slot = -1;
    for (;;) {
      const gen = Atomics.load(ctl, FREE_GEN);
      for (let k = 0; k < slots; k++) {
        const s = (next + k) % slots;
        if (Atomics.load(ctl, STATE + s) === 0) { slot = s; break; }
      }
      if (slot >= 0) break;
      Atomics.wait(ctl, FREE_GEN, gen);
    }
    next = (slot + 1) % slots;
    let n;
    try {
      n = fs.readSync(fd, bufs[slot], 0, slotBytes, null);
    } catch (err) {
      const code = err && err.code;
      if (code === "EINTR" || code === "EAGAIN" || code === "ENOENT") continue;
      Atomics.store(ctl, END, 1);
      postMessage(code || String(err));
      return;
    }
    times[slot] = performance.timeOrigin + performance.now();
    ctl[SEQ + slot] = ++seq;
    Atomics.store(ctl, STATE + slot, n);
    if (Atomics.exchange(wake, ${WAKE_SLEEPING}, 0) === 1) postMessage(0);
  }
};`;

/** One worker and its ring, as the main thread sees them. */
interface Ring {
  worker: Worker;
  ctl: Int32Array;
  times: Float64Array;
  bufs: Buffer[];
  views: DataView[];
  ended: boolean;
}

export class WorkerReader implements RequestReader {
  readonly closed: Promise<void>;
  private closedResolve!: () => void;
  private active = 0;
  private readonly spares: Buffer[] = [];
  private readonly rings: Ring[] = [];
  private readonly wake = new Int32Array(new SharedArrayBuffer(4));
  private drainScheduled = false;
  private nextRing = 0;
  private readonly drainNow = (): void => {
    this.drainScheduled = false;
    this.drain();
  };
  endReason = "";

  constructor(
    private readonly session: Session,
    private readonly fd: number,
    private readonly threads = 1,
  ) {
    assert(threads >= 1 && threads <= 16, `reader threads ${threads} outside [1, 16]`);
    this.closed = new Promise((resolve) => {
      this.closedResolve = resolve;
    });
  }

  start(): void {
    const url = URL.createObjectURL(new Blob([WORKER_CODE], { type: "application/javascript" }));
    const slotBytes = this.session.requestBufferBytes;
    Atomics.store(this.wake, WAKE_SLEEPING, 1);
    for (let i = 0; i < this.threads; i++) {
      const sab = new SharedArrayBuffer(slotBytes * SLOTS);
      const ctlSab = new SharedArrayBuffer(CTL_WORDS * 4);
      const timeSab = new SharedArrayBuffer(SLOTS * 8);
      const bufs: Buffer[] = [];
      const views: DataView[] = [];
      for (let k = 0; k < SLOTS; k++) {
        bufs.push(Buffer.from(sab, k * slotBytes, slotBytes));
        views.push(new DataView(sab, k * slotBytes, slotBytes));
      }
      const w = new Worker(url);
      const ring: Ring = { worker: w, ctl: new Int32Array(ctlSab), times: new Float64Array(timeSab), bufs, views, ended: false };
      this.active++;
      w.onmessage = (ev: MessageEvent<number | string>) => {
        if (typeof ev.data === "string") this.onEnd(ring, ev.data);
        else this.drain();
      };
      w.postMessage({ fd: this.fd, sab, ctlSab, timeSab, wakeSab: this.wake.buffer, slots: SLOTS, slotBytes });
      this.rings.push(ring);
    }
    this.closed.then(() => URL.revokeObjectURL(url));
  }

  /** Dispatch every published request, oldest first per ring, until the rings are empty. */
  private drain(): void {
    if (this.drainScheduled) return;
    const prof = this.session.profile;
    if (prof !== undefined) prof.wakeups++;
    for (let handled = 0; ; handled++) {
      if (handled === DRAIN_MAX) {
        // SLEEPING stays 0: the workers post nothing while the continuation is pending.
        this.drainScheduled = true;
        setImmediate(this.drainNow);
        return;
      }
      if (!this.dispatchOne()) {
        Atomics.store(this.wake, WAKE_SLEEPING, 1);
        if (!this.anyPublished()) return;
        Atomics.store(this.wake, WAKE_SLEEPING, 0);
        this.dispatchOne();
      }
    }
  }

  private anyPublished(): boolean {
    for (const r of this.rings) for (let s = 0; s < SLOTS; s++) if (Atomics.load(r.ctl, CTL_STATE + s) > 0) return true;
    return false;
  }

  /**
   * Dispatch the oldest published request of the next ring (round robin, so a busy ring cannot
   * starve the others) that has one; false if none has.
   */
  private dispatchOne(): boolean {
    const rings = this.rings;
    for (let i = 0; i < rings.length; i++) {
      const r = rings[this.nextRing]!;
      this.nextRing = this.nextRing + 1 === rings.length ? 0 : this.nextRing + 1;
      let slot = -1;
      let seq = 0;
      for (let s = 0; s < SLOTS; s++) {
        if (Atomics.load(r.ctl, CTL_STATE + s) <= 0) continue;
        const q = r.ctl[CTL_SEQ + s]!;
        if (slot < 0 || q - seq < 0) {
          slot = s;
          seq = q;
        }
      }
      if (slot >= 0) {
        this.dispatchSlot(r, slot);
        return true;
      }
    }
    return false;
  }

  private dispatchSlot(r: Ring, slot: number): void {
    const n = r.ctl[CTL_STATE + slot]!;
    r.ctl[CTL_STATE + slot] = STATE_HELD;
    const buf = r.bufs[slot]!;
    const s = this.session;
    if (s.profile !== undefined) s.readAtMs = r.times[slot]!;
    const opcode = n >= InHeader.SIZE ? r.views[slot]!.getUint32(InHeader.OPCODE, true) : 0;
    if (OPCODES[opcode]?.holdsBuffer === true && this.freeSlots(r) < LEND_RESERVE) {
      // Too few free slots to lend this one: copy the request out and free the slot now.
      const copy = this.spares.pop() ?? Buffer.allocUnsafe(buf.byteLength);
      buf.copy(copy, 0, 0, n);
      this.release(r, slot);
      const lent = s.dispatch(copy, n);
      if (lent === undefined) this.giveBack(copy);
      else {
        const back = (): void => this.giveBack(copy);
        lent.then(back, back);
      }
      return;
    }
    const lent = s.dispatch(buf, n, r.views[slot]);
    if (lent === undefined) this.release(r, slot);
    else {
      const back = (): void => this.release(r, slot);
      lent.then(back, back);
    }
  }

  private freeSlots(r: Ring): number {
    let free = 0;
    for (let s = 0; s < SLOTS; s++) if (Atomics.load(r.ctl, CTL_STATE + s) === STATE_FREE) free++;
    return free;
  }

  private release(r: Ring, slot: number): void {
    Atomics.store(r.ctl, CTL_STATE + slot, STATE_FREE);
    Atomics.add(r.ctl, CTL_FREE_GEN, 1);
    Atomics.notify(r.ctl, CTL_FREE_GEN);
  }

  private onEnd(r: Ring, reason: string): void {
    if (r.ended) return;
    // Requests read before the error still get their answers.
    this.drain();
    r.ended = true;
    if (reason !== "ENODEV") this.session.opts.log(`reader thread ended: ${reason}`);
    this.endReason ||= reason;
    r.worker.terminate();
    if (--this.active === 0) this.closedResolve();
  }

  private giveBack(buf: Buffer): void {
    if (this.spares.length < SPARE_BUFFERS_MAX) this.spares.push(buf);
  }
}
