/**
 * NetServer: the listening side of the scoutfs client/server protocol, run by the elected
 * quorum leader. It accepts sockets, verifies each one's greeting, and joins the socket to the
 * message state (NetConnection) of the client mount it comes from, identified by its rid.
 *
 * Greeting (the first frame on every socket, a request from the client):
 * - fsid and format version must match ours, flags must be known, else the greeting is answered
 *   with EINVAL and the socket closed (logged and counted);
 * - `server_term` 0 means the mount has never greeted any server; our own term means it is
 *   reconnecting to us; another term means it is meeting us for the first time after failover;
 * - a client reconnecting to us whose state we already dropped (it stayed away longer than
 *   reconnect_timeout_ms) is refused with ENOLINK, unless its FAREWELL flag says it only wants
 *   its farewell answered (then it gets fresh state, as in the kmod);
 * - otherwise the socket joins the rid's connection (new or existing) and everything kept is
 *   resent after the greeting response. If the rid's previous socket still looks alive, the
 *   greeting with the newer request id wins and the other socket is closed.
 *   A first-contact greeting for a rid we already hold state for (the client never saw our
 *   greeting response) reuses that state: the client has received nothing from it yet.
 *
 * When a client's socket closes, its state waits reconnect_timeout_ms for it to come back; then
 * it is dropped, its pending requests fail with ENOLINK, and onClientDown(rid, "timeout") tells
 * the server role to fence it. After a farewell response has been sent, state is dropped at
 * once (onClientDown(rid, "farewell")).
 */
import type { Socket, TCPSocketListener } from "bun";
import {
  NetGreeting,
  NET_CMD_GREETING,
  NET_ERR_EINVAL,
  NET_FLAG_RESPONSE,
  NET_GREETING_FLAG_FAREWELL,
  NET_GREETING_FLAG_INVALID,
  NET_CLIENT_RECONNECT_TIMEOUT_MS,
  netErrFromErrno,
} from "../format/net.ts";
import { ScoutfsError } from "../util/errors.ts";
import { assert } from "../util/assert.ts";
import { encodeFrame, isResponse, type RecvHeader } from "./frame.ts";
import { NetLink, linkSocketHandlers, type LinkSlot } from "./link.ts";
import { NetConnection, type NetRequestHandler, type NetRequestOptions } from "./conn.ts";
import { hex64, type NetCounters } from "./counters.ts";
import { resolveCommonOptions, type NetCommonOptions, type ResolvedCommonOptions } from "./options.ts";

export interface NetGreetingInfo {
  greeting: NetGreeting;
  /** The client has greeted some server before (server_term != 0). */
  reconnecting: boolean;
  /** The client has not greeted this server before (server_term != our term). */
  first_contact: boolean;
  farewell: boolean;
  remote: string;
}

export interface NetServerOptions extends NetCommonOptions {
  fsid: bigint;
  fmt_vers: bigint;
  /** The quorum term that elected us; never 0. */
  server_term: bigint;
  hostname: string;
  /** 0 picks a free port (see NetServer.port). */
  port: number;
  /** How long a disconnected client's state waits for it to reconnect. */
  reconnect_timeout_ms?: number;
  /** Sockets open at once (greeting or greeted); more are closed at accept. */
  max_sockets?: number;
  /**
   * Runs after a greeting is verified, before it is answered (the server role records mounted
   * clients here). Throwing a ScoutfsError refuses the greeting with that errno.
   */
  onGreeting?: (info: NetGreetingInfo) => void | Promise<void>;
  /** A rid's connection was created (first greeting we accepted from it). */
  onClientUp?: (rid: bigint, info: NetGreetingInfo) => void;
  /** A rid's connection was dropped: after its farewell, or after it failed to reconnect in time. */
  onClientDown?: (rid: bigint, reason: "farewell" | "timeout") => void;
}

export const NET_DEFAULT_MAX_SOCKETS = 1024;

type Phase = "greet" | "greeting" | "valid";
interface ServerSocketState {
  phase: Phase;
  conn: NetConnection | undefined;
}

export class NetServer {
  private readonly opts: ResolvedCommonOptions;
  private readonly listener: TCPSocketListener<LinkSlot>;
  private readonly handlers = new Map<number, NetRequestHandler>();
  private readonly conns = new Map<bigint, NetConnection>();
  private readonly reconnectTimers = new Map<bigint, ReturnType<typeof setTimeout>>();
  private readonly links = new Map<NetLink, ServerSocketState>();
  private readonly reconnect_timeout_ms: number;
  private readonly max_sockets: number;
  private closed = false;

  private constructor(private readonly o: NetServerOptions) {
    assert(o.server_term !== 0n, "a server term is never 0");
    this.opts = resolveCommonOptions(o);
    this.reconnect_timeout_ms = o.reconnect_timeout_ms ?? NET_CLIENT_RECONNECT_TIMEOUT_MS;
    this.max_sockets = o.max_sockets ?? NET_DEFAULT_MAX_SOCKETS;
    this.listener = Bun.listen<LinkSlot>({
      hostname: o.hostname,
      port: o.port,
      socket: linkSocketHandlers((socket) => this.accept(socket)),
    });
  }

  /** Start listening on hostname:port (throws the system error if the address is taken). */
  static listen(o: NetServerOptions): NetServer {
    return new NetServer(o);
  }

  get port(): number {
    return this.listener.port;
  }

  get hostname(): string {
    return this.listener.hostname;
  }

  get counters(): NetCounters {
    return this.opts.counters;
  }

  get server_term(): bigint {
    return this.o.server_term;
  }

  /** Register the handler for requests of `cmd` from clients (replaces any previous one). */
  handle(cmd: number, handler: NetRequestHandler): void {
    assert(cmd !== NET_CMD_GREETING, "greetings are handled by the net layer");
    this.handlers.set(cmd, handler);
  }

  /**
   * Send a request to the client mount `rid` and wait for its response. If the client is between
   * sockets the request waits for it to reconnect; if its state is dropped the request fails
   * with ENOLINK. An unknown rid is ENXIO.
   */
  request(rid: bigint, cmd: number, data?: Uint8Array, opts?: NetRequestOptions): Promise<Uint8Array> {
    const conn = this.conns.get(rid);
    if (!conn) return Promise.reject(new ScoutfsError("ENXIO", `no client with rid ${hex64(rid)}`));
    return conn.request(cmd, data, opts);
  }

  /** rids with connection state (connected, or waiting for them to reconnect). */
  clientRids(): bigint[] {
    return [...this.conns.keys()];
  }

  isConnected(rid: bigint): boolean {
    return this.conns.get(rid)?.attached ?? false;
  }

  /** Test trigger: drop the socket of `rid` abruptly, as a network failure would. */
  dropClientSocket(rid: bigint): void {
    for (const [link, st] of this.links) if (st.conn?.rid === rid) link.close("dropped by test trigger");
  }

  /** Stop listening, close every socket, fail every pending request with ENOLINK. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.listener.stop(true);
    for (const t of this.reconnectTimers.values()) clearTimeout(t);
    this.reconnectTimers.clear();
    for (const link of [...this.links.keys()]) link.close("server shutting down");
    for (const conn of this.conns.values()) conn.destroy(new ScoutfsError("ENOLINK", "server shut down"));
    this.conns.clear();
  }

  private accept(socket: Socket<LinkSlot>): void {
    socket.data = { link: undefined };
    if (this.closed || this.links.size >= this.max_sockets) {
      this.opts.counters.sockets_rejected++;
      this.opts.log("warn", `server: refusing ${socket.remoteAddress}:${socket.remotePort}: ${this.closed ? "shutting down" : `${this.max_sockets} sockets open`}`);
      socket.terminate();
      return;
    }
    this.opts.counters.sockets_accepted++;
    const link = new NetLink(
      socket,
      {
        keepalive_timeout_ms: this.opts.keepalive_timeout_ms,
        max_send_queue_bytes: this.opts.max_send_queue_bytes,
        counters: this.opts.counters,
        log: this.opts.log,
        name: `server <- ${socket.remoteAddress}:${socket.remotePort}`,
      },
      {
        onFrame: (l, h, p) => this.onFrame(l, h, p),
        onHeartbeat: (l, recvSeq) => this.onHeartbeat(l, recvSeq),
        onClose: (l) => this.onLinkClosed(l),
      },
    );
    socket.data.link = link;
    this.links.set(link, { phase: "greet", conn: undefined });
  }

  private onFrame(link: NetLink, h: RecvHeader, payload: Uint8Array): void {
    const st = this.links.get(link);
    if (!st) return;
    switch (st.phase) {
      case "greet":
        if (h.cmd !== NET_CMD_GREETING || isResponse(h)) {
          link.reject(`expected a greeting request first, got cmd ${h.cmd} flags ${h.flags}`);
          return;
        }
        st.phase = "greeting";
        this.greet(link, st, h.id, payload.slice()).catch((err) => {
          this.opts.log("error", `server: greeting from ${link.remote} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
          link.close("greeting failed");
        });
        return;
      case "greeting":
        link.reject("message before the greeting response");
        return;
      case "valid": {
        const problem = st.conn!.receive(h, payload);
        if (problem) link.reject(problem);
        return;
      }
    }
  }

  private onHeartbeat(link: NetLink, recvSeq: bigint): void {
    const st = this.links.get(link);
    if (st?.phase !== "valid") return;
    const problem = st.conn!.ack(recvSeq);
    if (problem) link.reject(problem);
  }

  private greetingPayload(rid: bigint): Uint8Array {
    return NetGreeting.encode({ fsid: this.o.fsid, fmt_vers: this.o.fmt_vers, server_term: this.o.server_term, rid, flags: 0n });
  }

  /** Answer a greeting with an error and close the socket once the answer is written. */
  private refuse(link: NetLink, id: bigint, netErr: number, why: string): void {
    this.opts.counters.greeting_errors++;
    this.opts.log("warn", `server: refusing greeting from ${link.remote}: ${why}`);
    link.send(encodeFrame(1n, id, NET_CMD_GREETING, NET_FLAG_RESPONSE, netErr, new Uint8Array(0)));
    link.close(`greeting refused: ${why}`, true);
  }

  private async greet(link: NetLink, st: ServerSocketState, id: bigint, payload: Uint8Array): Promise<void> {
    if (payload.length !== NetGreeting.size) {
      this.refuse(link, id, NET_ERR_EINVAL, `greeting payload is ${payload.length} bytes, not ${NetGreeting.size}`);
      return;
    }
    const g = NetGreeting.decode(payload);
    const who = `client rid ${hex64(g.rid)}`;
    if (g.fsid !== this.o.fsid) {
      this.refuse(link, id, NET_ERR_EINVAL, `${who} greeting fsid 0x${g.fsid.toString(16)} did not match server fsid 0x${this.o.fsid.toString(16)}`);
      return;
    }
    if (g.fmt_vers !== this.o.fmt_vers) {
      this.refuse(link, id, NET_ERR_EINVAL, `${who} greeting format version ${g.fmt_vers} did not match server format version ${this.o.fmt_vers}`);
      return;
    }
    if ((g.flags & NET_GREETING_FLAG_INVALID) !== 0n) {
      this.refuse(link, id, NET_ERR_EINVAL, `${who} greeting has unknown flags 0x${g.flags.toString(16)}`);
      return;
    }
    const info: NetGreetingInfo = {
      greeting: g,
      reconnecting: g.server_term !== 0n,
      first_contact: g.server_term !== this.o.server_term,
      farewell: (g.flags & NET_GREETING_FLAG_FAREWELL) !== 0n,
      remote: link.remote,
    };
    if (this.o.onGreeting) {
      try {
        await this.o.onGreeting(info);
      } catch (err) {
        const code = err instanceof ScoutfsError ? err.code : "EIO";
        if (!link.isClosed) this.refuse(link, id, netErrFromErrno(code), `${who}: ${err instanceof Error ? err.message : String(err)}`);
        return;
      }
    }
    if (link.isClosed || this.closed) return;

    let conn = this.conns.get(g.rid);
    let created = false;
    if (!conn) {
      if (info.reconnecting && !info.first_contact && !info.farewell) {
        this.refuse(link, id, netErrFromErrno("ENOLINK"), `${who} reconnected after its state was dropped`);
        return;
      }
      conn = new NetConnection(g.rid, this.handlers, this.opts, this.opts.counters, this.opts.log, `server conn ${hex64(g.rid)}`);
      this.conns.set(g.rid, conn);
      created = true;
    } else {
      if (id <= conn.greetingId) {
        // an older connection attempt than the one that joined: it loses
        link.close(`${who}: stale greeting id ${id} (have ${conn.greetingId})`);
        return;
      }
      for (const [other, ost] of this.links) {
        if (other !== link && ost.conn === conn) other.close(`${who} greeted again on a new socket`);
      }
      const t = this.reconnectTimers.get(g.rid);
      if (t) {
        clearTimeout(t);
        this.reconnectTimers.delete(g.rid);
      }
    }

    conn.greetingId = id;
    this.opts.counters.greetings++;
    link.send(conn.greetingResponseFrame(id, this.greetingPayload(g.rid)));
    st.phase = "valid";
    st.conn = conn;
    link.greeted = true;
    conn.attach(link);
    this.opts.log("info", `server: ${who} greeted from ${link.remote} (term ${g.server_term}${created ? ", new" : ""})`);
    if (created) this.o.onClientUp?.(g.rid, info);
  }

  private onLinkClosed(link: NetLink): void {
    const st = this.links.get(link);
    this.links.delete(link);
    const conn = st?.conn;
    if (!conn || conn.isDestroyed) return;
    conn.detach(link);
    if (this.closed || conn.attached) return;
    if (conn.sawFarewell) {
      this.dropClient(conn, "farewell");
      return;
    }
    if (!this.reconnectTimers.has(conn.rid)) {
      this.reconnectTimers.set(
        conn.rid,
        setTimeout(() => {
          this.reconnectTimers.delete(conn.rid);
          if (conn.attached || this.conns.get(conn.rid) !== conn) return;
          this.opts.counters.reconnect_timeouts++;
          this.opts.log("warn", `server: client rid ${hex64(conn.rid)} did not reconnect within ${this.reconnect_timeout_ms} ms`);
          this.dropClient(conn, "timeout");
        }, this.reconnect_timeout_ms),
      );
    }
  }

  private dropClient(conn: NetConnection, reason: "farewell" | "timeout"): void {
    this.conns.delete(conn.rid);
    const t = this.reconnectTimers.get(conn.rid);
    if (t) clearTimeout(t);
    this.reconnectTimers.delete(conn.rid);
    conn.destroy(new ScoutfsError("ENOLINK", `client rid ${hex64(conn.rid)} is gone (${reason})`));
    this.o.onClientDown?.(conn.rid, reason);
  }
}
