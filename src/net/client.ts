/**
 * NetClient: the connecting side of the scoutfs client/server protocol, run by every mount. It
 * keeps one NetConnection (the message state) for the life of the mount and keeps finding a
 * socket for it: ask `resolveServer` where the server is (the client role reads the quorum
 * blocks), connect, greet, resend, and on any failure wait and try again.
 *
 * Greeting: the first frame on each socket is our greeting request: fsid, format version, the
 * term of the last server that answered us (0 before any), our rid, and flags (QUORUM if the
 * mount has a quorum slot, FAREWELL once it is unmounting). The response must come from the
 * same volume and format and echo our rid; otherwise the error is recorded (lastError,
 * onGreetingError, waitGreeted rejects) and the socket closed. A response from a server whose
 * term differs from the last one is a new server: recv_seq and kept responses are reset before
 * the socket joins the connection and our kept requests are resent (see conn.ts). The same
 * happens when the same server answers with a greeting seq at or below our recv_seq: it has
 * started fresh state for us (only after our farewell, when it had already dropped ours).
 *
 * Retry pacing as in the kmod's client.c: after a socket that was greeted breaks, reconnect at
 * once; after a failed attempt (no address, refused, timed out, greeting refused), wait
 * connect_delay_ms first. A single TCP connect gives up after connect_timeout_ms.
 */
import type { Socket } from "bun";
import {
  NetGreeting,
  NET_CMD_GREETING,
  NET_CLIENT_CONNECT_DELAY_MS,
  NET_CLIENT_CONNECT_TIMEOUT_MS,
  NET_GREETING_FLAG_FAREWELL,
  NET_GREETING_FLAG_QUORUM,
  netErrToErrno,
} from "../format/net.ts";
import { ScoutfsError } from "../util/errors.ts";
import { assert } from "../util/assert.ts";
import { isResponse, type RecvHeader } from "./frame.ts";
import { NetLink, linkSocketHandlers, type LinkSlot } from "./link.ts";
import { NetConnection, type NetRequestHandler, type NetRequestOptions } from "./conn.ts";
import { hex64, type NetCounters } from "./counters.ts";
import { resolveCommonOptions, type NetCommonOptions, type ResolvedCommonOptions } from "./options.ts";

export interface NetAddress {
  hostname: string;
  port: number;
}

export interface NetClientOptions extends NetCommonOptions {
  fsid: bigint;
  fmt_vers: bigint;
  /** The mount's random id, fixed for its lifetime. */
  rid: bigint;
  /** The mount has a quorum slot (sets the greeting's QUORUM flag). */
  quorum?: boolean;
  /** Where the server is now; undefined when no server is elected yet (retried after a delay). */
  resolveServer: () => NetAddress | undefined | Promise<NetAddress | undefined>;
  connect_timeout_ms?: number;
  connect_delay_ms?: number;
  /** A greeting was accepted; `new_server` when its term differs from the previous server's. */
  onGreeted?: (info: { server_term: bigint; new_server: boolean }) => void;
  /**
   * A greeted socket is about to carry our requests: those not answered yet are sent (again) on
   * it, perhaps to another server than the one they were first sent to. The caller makes good
   * here whatever they relied on that server for (ClientStore: the device flush a co-located
   * server did for its commits). A throw closes the socket instead; the next one tries again.
   */
  beforeAttach?: (info: { server_term: bigint }) => void;
  /** The greeted socket was lost (the client is reconnecting). */
  onDisconnect?: (reason: string) => void;
  /** A server refused our greeting or answered with the wrong identity. */
  onGreetingError?: (err: ScoutfsError) => void;
}

interface ClientSocketState {
  phase: "greet" | "valid";
  greetingId: bigint;
}

interface Waiter {
  resolve: () => void;
  reject: (err: ScoutfsError) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** Waiters for a greeting at once (waitGreeted callers). */
const MAX_GREETING_WAITERS = 1024;

export class NetClient {
  private readonly opts: ResolvedCommonOptions;
  private readonly handlers = new Map<number, NetRequestHandler>();
  private readonly conn: NetConnection;
  private readonly connect_timeout_ms: number;
  private readonly connect_delay_ms: number;
  private link: NetLink | undefined;
  private linkState: ClientSocketState | undefined;
  /** Each connect attempt's number; sockets from older attempts are closed on arrival. */
  private attempt = 0;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;
  private started = false;
  private closed = false;
  private farewell = false;
  private waiters: Waiter[] = [];
  /** Term of the last server that accepted our greeting; 0 before any. */
  server_term = 0n;
  /** The last greeting or connection error, cleared by a successful greeting. */
  lastError: ScoutfsError | undefined;

  constructor(private readonly o: NetClientOptions) {
    this.opts = resolveCommonOptions(o);
    this.connect_timeout_ms = o.connect_timeout_ms ?? NET_CLIENT_CONNECT_TIMEOUT_MS;
    this.connect_delay_ms = o.connect_delay_ms ?? NET_CLIENT_CONNECT_DELAY_MS;
    this.conn = new NetConnection(o.rid, this.handlers, this.opts, this.opts.counters, this.opts.log, `client ${hex64(o.rid)}`);
  }

  get counters(): NetCounters {
    return this.opts.counters;
  }

  get rid(): bigint {
    return this.o.rid;
  }

  /** A socket has passed the greeting and carries requests now. */
  get greeted(): boolean {
    return this.linkState?.phase === "valid";
  }

  get pendingRequests(): number {
    return this.conn.pendingRequests;
  }

  /** Register the handler for requests of `cmd` from the server (lock grants, invalidations...). */
  handle(cmd: number, handler: NetRequestHandler): void {
    assert(cmd !== NET_CMD_GREETING, "greetings are handled by the net layer");
    this.handlers.set(cmd, handler);
  }

  /** Start connecting (and keep reconnecting until close()). */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.scheduleConnect(0);
  }

  /**
   * Send a request to the server and wait for its response, across reconnects: it is sent when
   * a socket is greeted and resent on every new socket until answered.
   */
  request(cmd: number, data?: Uint8Array, opts?: NetRequestOptions): Promise<Uint8Array> {
    return this.conn.request(cmd, data, opts);
  }

  /** Greet with the FAREWELL flag from now on (the mount is unmounting). */
  setFarewell(on: boolean): void {
    this.farewell = on;
  }

  /** Resolves when a socket is greeted (at once if one is); rejects on a greeting error or timeout. */
  waitGreeted(timeout_ms: number): Promise<void> {
    if (this.greeted) return Promise.resolve();
    if (this.closed) return Promise.reject(new ScoutfsError("ENOLINK", "client is closed"));
    if (this.waiters.length >= MAX_GREETING_WAITERS) {
      return Promise.reject(new ScoutfsError("EBUSY", `${MAX_GREETING_WAITERS} callers already wait for a greeting`));
    }
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((x) => x !== w);
          reject(this.lastError ?? new ScoutfsError("EIO", `no greeting from a server within ${timeout_ms} ms`));
        }, timeout_ms),
      };
      this.waiters.push(w);
    });
  }

  /** Test trigger: drop the current socket abruptly, as a network failure would. */
  dropConnection(reason = "dropped by test trigger"): void {
    this.link?.close(reason);
  }

  /** Stop reconnecting, close the socket, fail pending requests with ENOLINK. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.attempt++;
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
    this.link?.close("client closing");
    const err = new ScoutfsError("ENOLINK", "client is closed");
    this.conn.destroy(err);
    this.settleWaiters(err);
  }

  private settleWaiters(err?: ScoutfsError): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) {
      clearTimeout(w.timer);
      if (err) w.reject(err);
      else w.resolve();
    }
  }

  private scheduleConnect(delay_ms: number): void {
    if (this.closed || this.connectTimer) return;
    this.connectTimer = setTimeout(() => {
      this.connectTimer = undefined;
      void this.connect();
    }, delay_ms);
  }

  private connectFailed(attempt: number, why: string): void {
    if (attempt !== this.attempt || this.closed) return;
    this.attempt++;
    this.opts.counters.connect_errors++;
    this.opts.log("info", `client ${hex64(this.o.rid)}: ${why}; retrying in ${this.connect_delay_ms} ms`);
    this.scheduleConnect(this.connect_delay_ms);
  }

  private async connect(): Promise<void> {
    if (this.closed || this.link) return;
    const attempt = ++this.attempt;
    this.opts.counters.connect_attempts++;
    let addr: NetAddress | undefined;
    try {
      addr = await this.o.resolveServer();
    } catch (err) {
      this.connectFailed(attempt, `resolving the server failed: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    if (attempt !== this.attempt || this.closed) return;
    if (!addr) {
      this.connectFailed(attempt, "no server address yet");
      return;
    }
    const timer = setTimeout(() => this.connectFailed(attempt, `connect to ${addr.hostname}:${addr.port} timed out after ${this.connect_timeout_ms} ms`), this.connect_timeout_ms);
    const handlers = linkSocketHandlers((socket) => {
      clearTimeout(timer);
      this.opened(socket, attempt);
    });
    try {
      await Bun.connect<LinkSlot>({
        hostname: addr.hostname,
        port: addr.port,
        data: { link: undefined },
        socket: {
          ...handlers,
          connectError: (_socket, err) => {
            clearTimeout(timer);
            this.connectFailed(attempt, `connect to ${addr.hostname}:${addr.port} failed: ${err.message}`);
          },
        },
      });
    } catch (err) {
      clearTimeout(timer);
      this.connectFailed(attempt, `connect to ${addr.hostname}:${addr.port} failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  private opened(socket: Socket<LinkSlot>, attempt: number): void {
    if (attempt !== this.attempt || this.closed || this.link) {
      socket.terminate(); // a connect that outlived its timeout
      return;
    }
    const link = new NetLink(
      socket,
      {
        keepalive_timeout_ms: this.opts.keepalive_timeout_ms,
        max_send_queue_bytes: this.opts.max_send_queue_bytes,
        counters: this.opts.counters,
        log: this.opts.log,
        name: `client ${hex64(this.o.rid)}`,
      },
      {
        onFrame: (l, h, p) => this.onFrame(l, h, p),
        onHeartbeat: (l, recvSeq) => {
          if (l === this.link && this.greeted) {
            const problem = this.conn.ack(recvSeq);
            if (problem) l.reject(problem);
          }
        },
        onClose: (l, reason) => this.onLinkClosed(l, reason),
      },
    );
    socket.data.link = link;
    this.link = link;
    let flags = 0n;
    if (this.farewell) flags |= NET_GREETING_FLAG_FAREWELL;
    if (this.o.quorum) flags |= NET_GREETING_FLAG_QUORUM;
    const g = NetGreeting.encode({ fsid: this.o.fsid, fmt_vers: this.o.fmt_vers, server_term: this.server_term, rid: this.o.rid, flags });
    const { frame, id } = this.conn.greetingRequestFrame(g);
    this.linkState = { phase: "greet", greetingId: id };
    link.send(frame);
  }

  private onFrame(link: NetLink, h: RecvHeader, payload: Uint8Array): void {
    if (link !== this.link || !this.linkState) return;
    if (this.linkState.phase === "valid") {
      const problem = this.conn.receive(h, payload);
      if (problem) link.reject(problem);
      return;
    }
    if (h.cmd !== NET_CMD_GREETING || !isResponse(h) || h.id !== this.linkState.greetingId) {
      link.reject(`expected the greeting response (id ${this.linkState.greetingId}), got cmd ${h.cmd} id ${h.id} flags ${h.flags}`);
      return;
    }
    const code = netErrToErrno(h.error);
    if (code !== undefined) {
      this.greetingFailed(link, new ScoutfsError(code, `server ${link.remote} refused our greeting: ${code}`));
      return;
    }
    if (payload.length !== NetGreeting.size) {
      this.greetingFailed(link, new ScoutfsError("EINVAL", `server greeting response is ${payload.length} bytes, not ${NetGreeting.size}`));
      return;
    }
    const g = NetGreeting.decode(payload);
    if (g.fsid !== this.o.fsid) {
      this.greetingFailed(link, new ScoutfsError("EINVAL", `server greeting response fsid 0x${g.fsid.toString(16)} did not match client fsid 0x${this.o.fsid.toString(16)}`));
      return;
    }
    if (g.fmt_vers !== this.o.fmt_vers) {
      this.greetingFailed(link, new ScoutfsError("EINVAL", `server greeting response format version ${g.fmt_vers} did not match client format version ${this.o.fmt_vers}`));
      return;
    }
    if (g.rid !== this.o.rid) {
      this.greetingFailed(link, new ScoutfsError("EINVAL", `server greeting response rid ${hex64(g.rid)} is not ours (${hex64(this.o.rid)})`));
      return;
    }
    try {
      this.o.beforeAttach?.({ server_term: g.server_term });
    } catch (e) {
      link.reject(`before sending our requests to server term ${g.server_term}: ${(e as Error).message}`);
      return;
    }
    const new_server = g.server_term !== this.server_term;
    // The server numbers its messages per client state, so a greeting response at or below our
    // recv_seq means the same server started fresh state for us (it had dropped ours after our
    // farewell): its old seqs are meaningless now, exactly as with a new server.
    const restarted = !new_server && h.seq <= this.conn.receivedSeq;
    if (new_server || restarted) this.conn.resetForNewServer();
    if (restarted) this.opts.log("info", `client ${hex64(this.o.rid)}: server term ${g.server_term} restarted our message state`);
    this.server_term = g.server_term;
    this.linkState.phase = "valid";
    link.greeted = true;
    this.lastError = undefined;
    this.opts.counters.greetings++;
    this.conn.attach(link);
    this.opts.log("info", `client ${hex64(this.o.rid)}: greeted server ${link.remote} term ${g.server_term}${new_server ? " (new server)" : ""}`);
    this.settleWaiters();
    this.o.onGreeted?.({ server_term: g.server_term, new_server });
  }

  private greetingFailed(link: NetLink, err: ScoutfsError): void {
    this.lastError = err;
    this.opts.counters.greeting_errors++;
    this.opts.log("warn", `client ${hex64(this.o.rid)}: ${err.message}`);
    this.settleWaiters(err);
    this.o.onGreetingError?.(err);
    link.close(`greeting failed: ${err.message}`);
  }

  private onLinkClosed(link: NetLink, reason: string): void {
    if (link !== this.link) return;
    const wasGreeted = this.greeted;
    this.link = undefined;
    this.linkState = undefined;
    this.conn.detach(link);
    if (this.closed) return;
    if (wasGreeted) this.o.onDisconnect?.(reason);
    this.scheduleConnect(wasGreeted ? 0 : this.connect_delay_ms);
  }
}
