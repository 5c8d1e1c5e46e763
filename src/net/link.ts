/**
 * A link is one TCP socket's life: it parses incoming frames, writes outgoing frames with
 * backpressure, and watches liveness. It knows nothing of seqs, greetings or requests; the
 * client and server own a link's meaning, and a NetConnection (conn.ts) outlives many links.
 *
 * Writing: frames are queued and written together on the next microtask, so a burst of
 * messages costs one write. recv_seq is stamped into each frame as it is copied out (it is the
 * connection's state at send time, not at queue time). A partial write keeps the rest and waits
 * for Bun's drain callback. Queued bytes are bounded; a peer that stops reading until the bound
 * is exceeded gets its socket closed.
 *
 * Liveness: a timer ticks every keepalive_timeout_ms / 4. A link whose greeting exchange has not
 * completed within keepalive_timeout_ms closes (heartbeats alone must not keep an ungreeted
 * socket open). If nothing was received for
 * keepalive_timeout_ms the link closes (the peer or the path is dead; the client reconnects and
 * the server waits for it). If nothing was sent for a tick, a heartbeat frame goes out, so an
 * idle but healthy peer never looks dead, and its recv_seq acknowledges kept responses early.
 *
 * Closing is idempotent and synchronous: the owner's onClose runs exactly once, before close()
 * returns. Nothing here throws on network input; problems close the link with a reason.
 */
import type { Socket } from "bun";
import { FrameReader, encodeHeartbeat, isHeartbeat, patchRecvSeq, type RecvHeader } from "./frame.ts";
import type { NetCounters, NetLogger } from "./counters.ts";
import { assert } from "../util/assert.ts";

/** What Bun sockets carry in `socket.data`: the link once it exists. */
export interface LinkSlot {
  link: NetLink | undefined;
}

export interface LinkEvents {
  /** A valid non-heartbeat frame; the payload view is only valid during the call. */
  onFrame(link: NetLink, h: RecvHeader, payload: Uint8Array): void;
  onHeartbeat(link: NetLink, recvSeq: bigint): void;
  onClose(link: NetLink, reason: string): void;
}

export interface LinkOptions {
  keepalive_timeout_ms: number;
  max_send_queue_bytes: number;
  counters: NetCounters;
  log: NetLogger;
  /** For log lines: "client rid ..." or "server <- 127.0.0.1:4567". */
  name: string;
}

/** Smallest liveness tick, so tiny test timeouts do not spin. */
const MIN_TICK_MS = 5;

export class NetLink {
  readonly reader: FrameReader;
  /** The connection's recv_seq, stamped into frames as they leave; 0 until a conn attaches. */
  recvSeqSource: () => bigint = () => 0n;
  private queued: Uint8Array[] = [];
  private queuedBytes = 0;
  /** Bytes a partial write left behind, waiting for drain. */
  private unsent: Uint8Array | undefined;
  private flushScheduled = false;
  private closed = false;
  private closeWhenFlushed = false;
  private lastRecvMs: number;
  private lastSendMs: number;
  private readonly timer: ReturnType<typeof setInterval>;
  readonly openedMs: number;
  /** Set by the owner once the greeting exchange succeeded; until then the link is on a deadline. */
  greeted = false;
  /** The peer's address, "a.b.c.d:port" (kept: a closed socket no longer knows it). */
  readonly remote: string;

  constructor(
    private readonly socket: Socket<LinkSlot>,
    private readonly opts: LinkOptions,
    private readonly events: LinkEvents,
  ) {
    assert(opts.keepalive_timeout_ms > 0, "keepalive timeout is positive");
    this.remote = `${socket.remoteAddress}:${socket.remotePort}`;
    this.reader = new FrameReader((h, payload) => this.frame(h, payload));
    this.openedMs = this.lastRecvMs = this.lastSendMs = performance.now();
    const tick_ms = Math.max(MIN_TICK_MS, Math.floor(opts.keepalive_timeout_ms / 4));
    this.timer = setInterval(() => this.tick(tick_ms), tick_ms);
    socket.setNoDelay(true);
    // OS keepalive as a second line of defence; the tick above is what enforces the timeout.
    socket.setKeepAlive(true, Math.max(1000, opts.keepalive_timeout_ms));
  }

  get name(): string {
    return this.opts.name;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Queue a frame for writing. Frames queued after close are dropped (their owner resends). */
  send(frame: Uint8Array): void {
    if (this.closed || this.closeWhenFlushed) return;
    this.queued.push(frame);
    this.queuedBytes += frame.length;
    if (this.queuedBytes > this.opts.max_send_queue_bytes) {
      this.opts.counters.send_queue_overflows++;
      this.close(`send queue exceeded ${this.opts.max_send_queue_bytes} bytes: peer is not reading`);
      return;
    }
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  /** Bun data callback. */
  onData(chunk: Uint8Array): void {
    if (this.closed) return;
    this.lastRecvMs = performance.now();
    this.opts.counters.recv_bytes += chunk.length;
    const problem = this.reader.push(chunk);
    if (problem !== undefined) this.reject(problem);
  }

  /** Bun drain callback: the kernel has room again. */
  onDrain(): void {
    if ((this.closed && !this.closeWhenFlushed) || !this.unsent) return;
    const rest = this.unsent;
    this.unsent = undefined;
    this.writeBytes(rest);
    if (!this.unsent && this.queued.length > 0) this.flush();
    this.maybeFinishClose();
  }

  /** Bun close callback, or the socket failed. */
  onSocketClosed(err?: Error): void {
    this.close(err ? `socket error: ${err.message}` : "peer closed the connection");
  }

  /** Close because the peer broke the protocol: counted and logged. */
  reject(problem: string): void {
    if (this.closed) return;
    this.opts.counters.recv_invalid_message++;
    this.opts.log("warn", `${this.opts.name} (${this.remote}): invalid message, closing: ${problem}`);
    this.close(`invalid message: ${problem}`);
  }

  /**
   * Close the link. `graceful` writes what is queued first (greeting error responses), then
   * ends the socket; otherwise the socket is dropped at once.
   */
  close(reason: string, graceful = false): void {
    if (this.closed) return;
    if (graceful && (this.queued.length > 0 || this.unsent)) {
      this.closeWhenFlushed = true;
      this.finishClose(reason, false);
      // a peer that never reads must not hold the socket open forever
      setTimeout(() => {
        if (this.closeWhenFlushed) this.socket.terminate();
      }, this.opts.keepalive_timeout_ms).unref();
      return;
    }
    this.finishClose(reason, !graceful);
  }

  private finishClose(reason: string, abort: boolean): void {
    this.closed = true;
    this.reader.stop();
    clearInterval(this.timer);
    this.opts.counters.sockets_closed++;
    if (!this.closeWhenFlushed) {
      this.queued = [];
      this.queuedBytes = 0;
      this.unsent = undefined;
      if (abort) this.socket.terminate();
      else this.socket.end();
    }
    this.opts.log("info", `${this.opts.name} (${this.remote}): closed: ${reason}`);
    this.events.onClose(this, reason);
  }

  /** After a graceful close, end the socket once the queue is written. */
  private maybeFinishClose(): void {
    if (!this.closeWhenFlushed || this.unsent || this.queued.length > 0) return;
    this.closeWhenFlushed = false;
    this.socket.end();
  }

  private frame(h: RecvHeader, payload: Uint8Array): void {
    if (isHeartbeat(h)) {
      this.opts.counters.heartbeats_recv++;
      this.events.onHeartbeat(this, h.recv_seq);
      return;
    }
    this.opts.counters.recv_messages++;
    this.events.onFrame(this, h, payload);
  }

  private flush(): void {
    this.flushScheduled = false;
    if ((this.closed && !this.closeWhenFlushed) || this.unsent || this.queued.length === 0) return;
    const frames = this.queued;
    const recvSeq = this.recvSeqSource();
    let out: Uint8Array;
    if (frames.length === 1) {
      out = frames[0]!;
      patchRecvSeq(out, recvSeq);
      // the kept frame may be resent later: write a copy only if the write is partial (below)
    } else {
      out = new Uint8Array(this.queuedBytes);
      let at = 0;
      for (const f of frames) {
        patchRecvSeq(f, recvSeq);
        out.set(f, at);
        at += f.length;
      }
    }
    this.opts.counters.send_messages += frames.length;
    this.queued = [];
    this.queuedBytes = 0;
    this.writeBytes(out);
    this.maybeFinishClose();
  }

  private writeBytes(buf: Uint8Array): void {
    const n = this.socket.write(buf);
    if (n < 0) {
      if (this.closed) this.closeWhenFlushed = false;
      else this.close("write failed: socket closed");
      return;
    }
    this.lastSendMs = performance.now();
    this.opts.counters.send_bytes += Math.max(0, n);
    // A partial write leaves the rest to drain; copy it, the frame itself may be patched again.
    if (n < buf.length) this.unsent = buf.slice(n);
  }

  private tick(tick_ms: number): void {
    if (this.closed) return;
    const now = performance.now();
    if (!this.greeted && now - this.openedMs >= this.opts.keepalive_timeout_ms) {
      this.opts.counters.greeting_timeouts++;
      this.opts.log("warn", `${this.opts.name} (${this.remote}): no greeting exchange within ${this.opts.keepalive_timeout_ms} ms, closing`);
      this.close(`greeting timeout: not greeted within ${this.opts.keepalive_timeout_ms} ms`);
      return;
    }
    if (now - this.lastRecvMs >= this.opts.keepalive_timeout_ms) {
      this.opts.counters.keepalive_timeouts++;
      this.opts.log("warn", `${this.opts.name} (${this.remote}): nothing received for ${Math.round(now - this.lastRecvMs)} ms, closing`);
      this.close(`keepalive timeout: nothing received for ${this.opts.keepalive_timeout_ms} ms`);
      return;
    }
    if (now - this.lastSendMs >= tick_ms && !this.unsent && this.queued.length === 0) {
      this.opts.counters.heartbeats_sent++;
      this.send(encodeHeartbeat());
    }
  }
}

/** Bun socket handlers that forward to the link stored in socket.data. */
export function linkSocketHandlers(onOpen: (socket: Socket<LinkSlot>) => void) {
  return {
    binaryType: "uint8array" as const,
    open: onOpen,
    data(socket: Socket<LinkSlot>, chunk: Uint8Array) {
      socket.data.link?.onData(chunk);
    },
    drain(socket: Socket<LinkSlot>) {
      socket.data.link?.onDrain();
    },
    close(socket: Socket<LinkSlot>, err?: Error) {
      socket.data.link?.onSocketClosed(err);
    },
    error(socket: Socket<LinkSlot>, err: Error) {
      socket.data.link?.onSocketClosed(err);
    },
  };
}
