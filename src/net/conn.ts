/**
 * A NetConnection is the message state between a client mount and a server: it outlives the TCP
 * sockets (links) that carry it, so that requests and responses survive reconnects and are
 * processed exactly once. The design is the kmod's (net.c); the code is ours.
 *
 * Sequence numbers. Each side numbers every message it queues with `seq` (1, 2, 3, ...; never
 * reordered) and stamps every frame it writes with `recv_seq`, the highest seq it has received
 * from the peer. Requests also get an increasing `id`; a response carries its request's id.
 *
 * What is kept. A sent request is kept until its response arrives. A sent response is kept
 * until the peer's recv_seq reaches its seq (the peer has it). Nothing else is kept: greetings
 * and heartbeats are per socket.
 *
 * Reconnect and resend. When a socket dies, its connection keeps everything kept. On the next
 * socket, once the greeting exchange has validated it, every kept message is written again in
 * seq order, followed by anything queued meanwhile.
 *
 * Duplicates. A receiver drops any message whose seq is not above its recv_seq: it has seen it.
 * A request is therefore processed at most once per connection even if it is resent many times.
 * If its handler was still running when the socket died, the response is queued when it is
 * ready and reaches the peer on the next socket; if the response was already sent but lost, it
 * is still kept (unacknowledged) and is resent. Either way the requester sees exactly one
 * response and the handler runs exactly once.
 *
 * New server. A client that greets a different server (a new quorum term, after failover)
 * resets its recv_seq to 0 and drops its kept responses: the new server has no requests waiting
 * for them and numbers its messages from 1. Its kept requests are resent to the new server.
 * Responses its handlers finish later for the old server are dropped (the `epoch` check).
 *
 * Receiving, in order: stateless header checks (frame.ts); then here: seq duplicate check,
 * recv_seq acknowledgement, then a response completes its pending request, a request runs its
 * handler. A response to an id this side never issued, or with the wrong cmd, is a protocol
 * violation and closes the socket; a response to an issued id that is no longer pending (the
 * request timed out) is dropped and counted, as the kmod does for canceled requests.
 *
 * Handlers start in the order their requests arrive (the kmod needs per-lock ordering of lock
 * messages; a handler that does its ordering-sensitive work before its first await gets it).
 * They may finish in any order; responses are matched by id.
 *
 * Bounds: pending outgoing requests (max_pending_requests; more is EBUSY), incoming requests
 * being processed plus unacknowledged responses (max_incoming_requests; a peer exceeding it
 * breaks the protocol and its socket is closed), payloads (NET_MAX_DATA_LEN).
 */
import {
  NET_CMD_FAREWELL,
  NET_CMD_GREETING,
  NET_CMD_UNKNOWN,
  NET_ERR_EINVAL,
  NET_ERR_EIO,
  NET_ERR_NONE,
  NET_FLAG_RESPONSE,
  NET_MAX_DATA_LEN,
  netCmdName,
  netErrFromErrno,
  netErrToErrno,
  netErrnoIsWireSafe,
} from "../format/net.ts";
import { ScoutfsError } from "../util/errors.ts";
import { assert } from "../util/assert.ts";
import { encodeFrame, isResponse, type RecvHeader } from "./frame.ts";
import type { NetLink } from "./link.ts";
import { hex64, type NetCounters, type NetLogger } from "./counters.ts";

/** What a request handler sees. `data` is the handler's own copy. */
export interface NetIncomingRequest {
  cmd: number;
  id: bigint;
  data: Uint8Array;
  /** The client mount's rid (on both sides: the server's peer, or the client itself). */
  rid: bigint;
}

/**
 * Handles one incoming request: returns the response payload (or nothing for an empty one), or
 * throws a ScoutfsError whose errno is sent back (translated through the net errno table).
 */
export type NetRequestHandler = (req: NetIncomingRequest) => Uint8Array | void | Promise<Uint8Array | void>;

export interface NetRequestOptions {
  /** Give up after this long: the request is canceled and rejected with EIO. Default: never. */
  timeout_ms?: number;
}

export interface ConnLimits {
  max_pending_requests: number;
  max_incoming_requests: number;
}

interface KeptRequest {
  seq: bigint;
  id: bigint;
  cmd: number;
  frame: Uint8Array;
  resolve: (data: Uint8Array) => void;
  reject: (err: ScoutfsError) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

interface KeptResponse {
  seq: bigint;
  frame: Uint8Array;
}

const EMPTY = new Uint8Array(0);

export class NetConnection {
  private nextSendSeq = 1n;
  private nextSendId = 1n;
  private recvSeq = 0n;
  /** By id; Map order is insertion order, which is seq order. */
  private readonly requests = new Map<bigint, KeptRequest>();
  /** By seq, in seq order. */
  private readonly responses = new Map<bigint, KeptResponse>();
  private processing = 0;
  /** Bumped when responses of running handlers must be dropped (new server, destroyed). */
  private epoch = 0;
  private link: NetLink | undefined;
  private destroyed = false;
  /** Server: the newest greeting's request id (older concurrent reconnects lose). */
  greetingId = 0n;
  /** Server: a farewell response was sent; when the socket goes, the client is gone for good. */
  sawFarewell = false;

  constructor(
    readonly rid: bigint,
    private readonly handlers: ReadonlyMap<number, NetRequestHandler>,
    private readonly limits: ConnLimits,
    private readonly counters: NetCounters,
    private readonly log: NetLogger,
    private readonly name: string,
  ) {}

  get attached(): boolean {
    return this.link !== undefined;
  }

  get isDestroyed(): boolean {
    return this.destroyed;
  }

  get pendingRequests(): number {
    return this.requests.size;
  }

  /** The highest seq received from the peer. */
  get receivedSeq(): bigint {
    return this.recvSeq;
  }

  get keptResponses(): number {
    return this.responses.size;
  }

  /** Send a request and wait for its response payload; errors come back as ScoutfsError. */
  request(cmd: number, data: Uint8Array = EMPTY, opts: NetRequestOptions = {}): Promise<Uint8Array> {
    if (this.destroyed) return Promise.reject(new ScoutfsError("ENOLINK", `${this.name}: connection is shut down`));
    if (cmd <= NET_CMD_GREETING || cmd >= NET_CMD_UNKNOWN) {
      return Promise.reject(new ScoutfsError("EINVAL", `${this.name}: cannot send request cmd ${cmd}`));
    }
    if (data.length > NET_MAX_DATA_LEN) {
      return Promise.reject(
        new ScoutfsError("EINVAL", `${this.name}: ${netCmdName(cmd)} request of ${data.length} bytes exceeds ${NET_MAX_DATA_LEN}`),
      );
    }
    if (this.requests.size >= this.limits.max_pending_requests) {
      return Promise.reject(
        new ScoutfsError("EBUSY", `${this.name}: ${this.limits.max_pending_requests} requests already pending`),
      );
    }
    return new Promise<Uint8Array>((resolve, reject) => {
      const seq = this.nextSendSeq++;
      const id = this.nextSendId++;
      const req: KeptRequest = { seq, id, cmd, frame: encodeFrame(seq, id, cmd, 0, NET_ERR_NONE, data), resolve, reject, timer: undefined };
      if (opts.timeout_ms !== undefined) {
        const timeout_ms = opts.timeout_ms;
        req.timer = setTimeout(() => {
          if (this.requests.get(id) !== req) return;
          this.requests.delete(id);
          this.counters.request_timeouts++;
          reject(new ScoutfsError("EIO", `${this.name}: ${netCmdName(cmd)} request id ${id} timed out after ${timeout_ms} ms`));
        }, timeout_ms);
      }
      this.requests.set(id, req);
      this.link?.send(req.frame);
    });
  }

  /** Client: the greeting request frame for a new socket (not kept; greetings are per socket). */
  greetingRequestFrame(payload: Uint8Array): { frame: Uint8Array; id: bigint } {
    const id = this.nextSendId++;
    return { frame: encodeFrame(this.nextSendSeq++, id, NET_CMD_GREETING, 0, NET_ERR_NONE, payload), id };
  }

  /** Server: the greeting response frame for a socket joining this connection. */
  greetingResponseFrame(id: bigint, payload: Uint8Array): Uint8Array {
    return encodeFrame(this.nextSendSeq++, id, NET_CMD_GREETING, NET_FLAG_RESPONSE, NET_ERR_NONE, payload);
  }

  /**
   * A socket has passed the greeting: it carries this connection from now on. Everything kept is
   * written again in seq order (the peer drops what it already has).
   */
  attach(link: NetLink): void {
    assert(!this.destroyed, "attach to a live connection");
    assert(this.link === undefined, "a connection has one socket at a time");
    this.link = link;
    link.recvSeqSource = () => this.recvSeq;
    const reqs = [...this.requests.values()];
    const resps = [...this.responses.values()];
    let i = 0;
    let j = 0;
    while (i < reqs.length || j < resps.length) {
      const takeReq = j >= resps.length || (i < reqs.length && reqs[i]!.seq < resps[j]!.seq);
      link.send(takeReq ? reqs[i++]!.frame : resps[j++]!.frame);
    }
    this.counters.resent_messages += reqs.length + resps.length;
  }

  /** The socket is gone; messages stay kept for the next one. */
  detach(link: NetLink): void {
    if (this.link !== link) return;
    this.link = undefined;
    link.recvSeqSource = () => 0n;
  }

  /** Client: the greeting came from a different server than the last one. */
  resetForNewServer(): void {
    assert(this.link === undefined, "reset before the new socket attaches");
    this.recvSeq = 0n;
    this.responses.clear();
    this.epoch++;
  }

  /** Fail every pending request with `err` and forget all state. */
  destroy(err: ScoutfsError): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.epoch++;
    const link = this.link;
    this.link = undefined;
    link?.close(err.message);
    const reqs = [...this.requests.values()];
    this.requests.clear();
    this.responses.clear();
    for (const r of reqs) {
      if (r.timer) clearTimeout(r.timer);
      r.reject(err);
    }
  }

  /** The peer's recv_seq: free the responses it has received. Returns a problem or undefined. */
  ack(peerRecvSeq: bigint): string | undefined {
    if (peerRecvSeq >= this.nextSendSeq) return `recv_seq ${peerRecvSeq} acknowledges seqs never sent (next ${this.nextSendSeq})`;
    for (const [seq] of this.responses) {
      if (seq > peerRecvSeq) break;
      this.responses.delete(seq);
    }
    return undefined;
  }

  /**
   * A non-greeting, non-heartbeat frame from the attached socket. The payload view is only valid
   * during the call. Returns a problem (the caller closes the socket) or undefined.
   */
  receive(h: RecvHeader, payload: Uint8Array): string | undefined {
    if (h.cmd === NET_CMD_GREETING) return "a second greeting on one socket";
    if (h.seq <= this.recvSeq) {
      this.counters.recv_dropped_duplicate++;
      return undefined;
    }
    const ackProblem = this.ack(h.recv_seq);
    if (ackProblem) return ackProblem;
    this.recvSeq = h.seq;
    return isResponse(h) ? this.receiveResponse(h, payload) : this.receiveRequest(h, payload);
  }

  private receiveResponse(h: RecvHeader, payload: Uint8Array): string | undefined {
    if (h.id >= this.nextSendId) return `response to id ${h.id}, which was never sent`;
    const req = this.requests.get(h.id);
    if (!req) {
      this.counters.dropped_response++;
      return undefined;
    }
    if (req.cmd !== h.cmd) return `${netCmdName(h.cmd)} response to ${netCmdName(req.cmd)} request id ${h.id}`;
    this.requests.delete(h.id);
    if (req.timer) clearTimeout(req.timer);
    const code = netErrToErrno(h.error);
    if (code !== undefined) {
      req.reject(new ScoutfsError(code, `${this.name}: ${netCmdName(h.cmd)} request failed on the peer: ${code}`));
    } else {
      req.resolve(payload.slice());
    }
    return undefined;
  }

  private receiveRequest(h: RecvHeader, payload: Uint8Array): string | undefined {
    if (this.processing + this.responses.size >= this.limits.max_incoming_requests) {
      return `more than ${this.limits.max_incoming_requests} requests in progress or unacknowledged`;
    }
    const cmd = h.cmd;
    const id = h.id;
    const handler = this.handlers.get(cmd);
    if (!handler) {
      this.counters.unknown_request++;
      this.log("warn", `${this.name}: no handler for ${netCmdName(cmd)} request id ${id}, answering EINVAL`);
      this.queueResponse(cmd, id, NET_ERR_EINVAL, EMPTY);
      return undefined;
    }
    const epoch = this.epoch;
    this.processing++;
    const done = (result: Uint8Array | void, err?: unknown) => {
      this.processing--;
      if (this.destroyed || epoch !== this.epoch) {
        this.counters.dropped_stale_response++;
        return;
      }
      if (err !== undefined) {
        this.queueResponse(cmd, id, this.netErrOf(cmd, err), EMPTY);
        return;
      }
      const data = result ?? EMPTY;
      if (data.length > NET_MAX_DATA_LEN) {
        this.log("error", `${this.name}: ${netCmdName(cmd)} handler returned ${data.length} bytes, over ${NET_MAX_DATA_LEN}; answering EINVAL`);
        this.queueResponse(cmd, id, NET_ERR_EINVAL, EMPTY);
        return;
      }
      this.queueResponse(cmd, id, NET_ERR_NONE, data);
    };
    let result: ReturnType<NetRequestHandler>;
    try {
      result = handler({ cmd, id, data: payload.slice(), rid: this.rid });
    } catch (err) {
      done(undefined, err ?? new Error("handler threw a nullish value"));
      return undefined;
    }
    if (result instanceof Promise) {
      result.then(
        (r) => done(r),
        (err) => done(undefined, err ?? new Error("handler rejected with a nullish value")),
      );
    } else {
      done(result);
    }
    return undefined;
  }

  private netErrOf(cmd: number, err: unknown): number {
    if (err instanceof ScoutfsError) {
      if (!netErrnoIsWireSafe(err.code)) {
        this.counters.untranslated_errno++;
        this.log("warn", `${this.name}: ${netCmdName(cmd)} handler errno ${err.code} is not in the wire table, sent as EINVAL`);
      }
      return netErrFromErrno(err.code);
    }
    this.counters.handler_errors++;
    this.log("error", `${this.name}: ${netCmdName(cmd)} handler failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    return NET_ERR_EIO;
  }

  private queueResponse(cmd: number, id: bigint, netErr: number, data: Uint8Array): void {
    const seq = this.nextSendSeq++;
    const resp: KeptResponse = { seq, frame: encodeFrame(seq, id, cmd, NET_FLAG_RESPONSE, netErr, netErr === NET_ERR_NONE ? data : EMPTY) };
    this.responses.set(seq, resp);
    if (cmd === NET_CMD_FAREWELL) this.sawFarewell = true;
    this.link?.send(resp.frame);
  }

  describe(): string {
    return `${this.name} rid ${hex64(this.rid)} seq ${this.nextSendSeq} recv_seq ${this.recvSeq} pending ${this.requests.size} kept_responses ${this.responses.size}`;
  }
}
