/**
 * The quorum agent: leader election among the volume's configured quorum slots, a simplified raft
 * (roles, terms, randomized election timeouts, votes, heartbeats) without a replicated log. The
 * elected leader starts the server role in its own process and keeps sending heartbeats; when
 * they stop, the others elect a new leader.
 *
 * The agent is a state machine driven by two inputs, a received message or a timer firing, each
 * handled by `step()` in a fixed order (the order matters: a greater term demotes before votes
 * are counted, a leader's server is stopped before it resigns). Its surroundings are interfaces
 * so the same code runs over UDP and disk in a node, and over a simulated lossy network and
 * in-memory blocks in the model tests:
 *   - QuorumNet     sends a 32-byte message to a slot and delivers received ones,
 *   - QuorumStore   persists events in our quorum block and reads the others,
 *   - ServerControl starts/stops the server role and reports its state,
 *   - Clock         time and a single timer.
 *
 * Safety rules:
 *   - terms never go backward: every term we adopt is written to our block (TERM event) before
 *     we act in it, and we start from the greatest term found in any block;
 *   - a follower votes at most once per term; after a restart we do not vote in the term we
 *     start in (we may have voted in it before the restart), only in greater ones — stricter
 *     than the kernel, which forgets its vote across a restart;
 *   - a leader that sees a greater term stops its server at once;
 *   - with one or two slots a single vote elects, otherwise a strict majority; with two slots
 *     each slot stands only in alternate terms so a split election cannot put two leaders in
 *     one term (scoutfs(8) documents such splits for the kernel; here they land in different
 *     terms and the greater one wins).
 */
import { QuorumMessage } from "../format/quorum.ts";
import { crc32c } from "../format/crc.ts";
import * as C from "../format/constants.ts";

export type Role = "follower" | "candidate" | "leader";
export type ServerState = "down" | "starting" | "up" | "stopping";

export interface QuorumNet {
  /** Send to a slot; false if the send failed at once (counted, never fatal). */
  send(toSlot: number, bytes: Uint8Array): boolean;
}

export interface QuorumStore {
  greatestTerm(): bigint;
  /** Whether the blocks show an elected leader whose server has not stopped. */
  serverRecorded(): boolean;
  record(event: number, term: bigint): void;
}

export interface ServerControl {
  start(term: bigint): void;
  stop(): void;
  state(): ServerState;
}

export interface Clock {
  now(): number;
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(t: unknown): void;
  random(): number;
}

export interface AgentConfig {
  fsid: bigint;
  slot: number;
  /** Configured slot numbers (including ours). */
  slots: readonly number[];
  heartbeatTimeoutMs: number;
  net: QuorumNet;
  store: QuorumStore;
  server: ServerControl;
  clock: Clock;
  log?: (ev: AgentEvent) => void;
}

export type AgentEvent =
  | { what: "term"; term: bigint; why: string }
  | { what: "candidate"; term: bigint }
  | { what: "elected"; term: bigint; votes: number }
  | { what: "vote"; term: bigint; for: number }
  | { what: "demoted"; term: bigint; from: number }
  | { what: "server-start"; term: bigint }
  | { what: "server-stop"; term: bigint }
  | { what: "resigned"; term: bigint }
  | { what: "invalid-message"; reason: string }
  | { what: "error"; message: string };

export const QUORUM_MESSAGE_BYTES = QuorumMessage.size;
const CRC_OFF = QuorumMessage.off.crc;

export function encodeQuorumMessage(fsid: bigint, term: bigint, type: number, from: number): Uint8Array {
  const buf = QuorumMessage.encode({ fsid, version: 0n, term, type, from, crc: 0 });
  new DataView(buf.buffer).setUint32(CRC_OFF, crc32c(0xffffffff, buf, 0, CRC_OFF), true);
  return buf;
}

export interface HostMessage {
  term: bigint;
  type: number;
  from: number;
}

/** Validate a received datagram; a reason string for anything we must ignore. */
export function decodeQuorumMessage(bytes: Uint8Array, fsid: bigint, slots: ReadonlySet<number>): HostMessage | string {
  if (bytes.length !== QUORUM_MESSAGE_BYTES) return `length ${bytes.length}`;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dv.getUint32(CRC_OFF, true) !== crc32c(0xffffffff, bytes, 0, CRC_OFF)) return "bad crc";
  const m = QuorumMessage.decode(bytes);
  if (m.fsid !== fsid) return `fsid ${m.fsid.toString(16)}`;
  if (m.type >= C.QUORUM_MSG_INVALID) return `type ${m.type}`;
  if (m.from >= C.QUORUM_MAX_SLOTS || !slots.has(m.from)) return `from unconfigured slot ${m.from}`;
  return { term: m.term, type: m.type, from: m.from };
}

export interface AgentStatus {
  role: Role;
  term: bigint;
  voteFor: number;
  votes: number;
  serverStartTerm: bigint;
  counters: Record<string, number>;
}

export class QuorumAgent {
  private role: Role = "follower";
  private term = 0n;
  private voteFor = -1;
  private voteBits = 0;
  private serverStartTerm = 0n;
  private serverEvent = -1;
  private timeoutAt = 0;
  private timer: unknown = null;
  private stopped = false;
  private failed = false;
  private readonly votesNeeded: number;
  private readonly slotSet: ReadonlySet<number>;
  readonly counters: Record<string, number> = {};

  constructor(private readonly cfg: AgentConfig) {
    const n = cfg.slots.length;
    this.votesNeeded = n < 3 ? 1 : Math.floor(n / 2) + 1;
    this.slotSet = new Set(cfg.slots);
  }

  status(): AgentStatus {
    return {
      role: this.role, term: this.term, voteFor: this.voteFor, votes: popcount(this.voteBits),
      serverStartTerm: this.serverStartTerm, counters: { ...this.counters },
    };
  }

  private count(name: string, n = 1): void {
    this.counters[name] = (this.counters[name] ?? 0) + n;
  }

  private electionTimeout(): number {
    return this.cfg.clock.now() + C.QUORUM_ELECT_MIN_MS + Math.floor(this.cfg.clock.random() * C.QUORUM_ELECT_VAR_MS);
  }

  private heartbeatTimeout(): number {
    return this.cfg.clock.now() + this.cfg.heartbeatTimeoutMs;
  }

  private sendOthers(type: number, term: bigint): number {
    const bytes = encodeQuorumMessage(this.cfg.fsid, term, type, this.cfg.slot);
    let failed = 0;
    for (const s of this.cfg.slots) if (s !== this.cfg.slot && !this.cfg.net.send(s, bytes)) failed++;
    return failed;
  }

  /** Start: adopt the greatest recorded term, record begin, wait for a leader or an election. */
  start(): void {
    this.term = this.cfg.store.greatestTerm();
    this.voteFor = this.cfg.slot; // never vote in the term we start in: we may have already
    this.timeoutAt = this.cfg.store.serverRecorded() ? this.heartbeatTimeout() : this.electionTimeout();
    this.cfg.store.record(C.QUORUM_EVENT_BEGIN, this.term);
    this.schedule();
  }

  /** Deliver a received datagram. */
  receive(bytes: Uint8Array): void {
    if (this.stopped || this.failed) return;
    const m = decodeQuorumMessage(bytes, this.cfg.fsid, this.slotSet);
    if (typeof m === "string") {
      this.count("recv_invalid");
      this.cfg.log?.({ what: "invalid-message", reason: m });
      return;
    }
    this.step(m);
  }

  /** Re-evaluate after the server role changed state. */
  poke(): void {
    if (!this.stopped && !this.failed) this.step(null);
  }

  private schedule(): void {
    if (this.timer !== null) this.cfg.clock.clearTimer(this.timer);
    if (this.stopped || this.failed) return;
    const ms = Math.max(0, this.timeoutAt - this.cfg.clock.now());
    this.timer = this.cfg.clock.setTimer(() => {
      this.timer = null;
      this.step(null);
    }, ms + 1);
  }

  /**
   * The term we stand in. Normally the next one. With exactly two slots a single vote elects, so
   * two candidates timing out together could both win the same term; instead each slot owns
   * alternate terms (by its index among the configured slots) and only stands in terms it owns.
   * Two leaders can still exist in different terms while partitioned — fencing settles that, and
   * the greater term wins once they hear each other — but never two in one term.
   */
  private nextCandidateTerm(): bigint {
    let t = this.term + 1n;
    if (this.cfg.slots.length === 2) {
      const mine = BigInt([...this.cfg.slots].sort((a, b) => a - b).indexOf(this.cfg.slot));
      if (t % 2n !== mine) t++;
    }
    return t;
  }

  private record(event: number, term: bigint): void {
    this.cfg.store.record(event, term);
  }

  private setTerm(term: bigint, why: string): void {
    this.term = term;
    this.record(C.QUORUM_EVENT_TERM, term);
    this.cfg.log?.({ what: "term", term, why });
  }

  private step(msg: HostMessage | null): void {
    try {
      this.stepInner(msg);
    } catch (err) {
      // Writing our quorum block failed: we can no longer take part safely. Stop the server and
      // go quiet, exactly as a mount whose quorum service failed (it must be remounted).
      this.failed = true;
      this.cfg.log?.({ what: "error", message: (err as Error).message });
      if (this.cfg.server.state() !== "down") this.cfg.server.stop();
      return;
    }
    this.schedule();
  }

  private stepInner(input: HostMessage | null): void {
    const { server, clock } = this.cfg;
    let msg = input;
    if (msg && msg.term < this.term) msg = null; // ignore older terms

    // a greater term: follow it
    if (msg && msg.term > this.term) {
      if (this.role === "leader") this.cfg.log?.({ what: "demoted", term: msg.term, from: msg.from });
      this.role = "follower";
      this.voteFor = -1;
      this.voteBits = 0;
      this.count("term_follower");
      this.timeoutAt = msg.type === C.QUORUM_MSG_HEARTBEAT ? this.heartbeatTimeout() : this.electionTimeout();
      this.setTerm(msg.term, `message type ${msg.type} from slot ${msg.from}`);
    }

    if (msg?.type === C.QUORUM_MSG_HEARTBEAT) {
      this.timeoutAt = this.heartbeatTimeout();
      this.count("recv_heartbeat");
    }

    if (msg?.type === C.QUORUM_MSG_RESIGNATION && this.role === "follower" && msg.term === this.term) {
      this.timeoutAt = this.electionTimeout();
      this.count("recv_resignation");
    }

    // followers and candidates stand for election when their timeout passes
    if (this.role !== "leader" && msg === null && clock.now() >= this.timeoutAt) {
      if (server.state() !== "down") {
        // our previous server is still shutting down: wait for it
        this.timeoutAt = this.electionTimeout();
        this.count("candidate_server_stopping");
        return;
      }
      this.role = "candidate";
      this.voteFor = -1;
      this.voteBits = 1 << this.cfg.slot;
      this.setTerm(this.nextCandidateTerm(), "election timeout");
      this.cfg.log?.({ what: "candidate", term: this.term });
      this.sendOthers(C.QUORUM_MSG_REQUEST_VOTE, this.term);
      this.timeoutAt = this.electionTimeout();
      this.count("send_request");
    }

    if (this.role === "candidate" && msg?.type === C.QUORUM_MSG_VOTE) {
      if (this.voteBits & (1 << msg.from)) this.count("dup_vote");
      this.voteBits |= 1 << msg.from;
      this.count("recv_vote");
    }

    if (this.role === "candidate" && popcount(this.voteBits) >= this.votesNeeded) {
      this.role = "leader";
      this.count("elected");
      this.sendOthers(C.QUORUM_MSG_HEARTBEAT, this.term);
      this.timeoutAt = clock.now() + C.QUORUM_HB_IVAL_MS;
      this.record(C.QUORUM_EVENT_ELECT, this.term);
      this.cfg.log?.({ what: "elected", term: this.term, votes: popcount(this.voteBits) });
      this.serverStartTerm = this.term;
      this.serverEvent = C.QUORUM_EVENT_ELECT;
      this.cfg.log?.({ what: "server-start", term: this.term });
      server.start(this.term);
    }

    // our server finished fencing and is up: let future leaders know
    if (this.role === "leader" && this.serverEvent !== C.QUORUM_EVENT_FENCE && server.state() === "up") {
      this.record(C.QUORUM_EVENT_FENCE, this.term);
      this.serverEvent = C.QUORUM_EVENT_FENCE;
    }

    // a server running for a term we no longer lead must stop
    const serverRunning = server.state() === "starting" || server.state() === "up";
    if (!(this.role === "leader" && this.term === this.serverStartTerm) && serverRunning) {
      this.cfg.log?.({ what: "server-stop", term: this.serverStartTerm });
      server.stop();
    }

    // a server we started has stopped (demoted, or it failed on its own)
    if (this.serverStartTerm > 0n && server.state() === "down") {
      if (this.role === "leader") {
        this.role = "follower";
        this.voteFor = -1;
        this.voteBits = 0;
        this.timeoutAt = this.electionTimeout();
        this.count("server_shutdown");
        this.sendOthers(C.QUORUM_MSG_RESIGNATION, this.serverStartTerm);
        this.cfg.log?.({ what: "resigned", term: this.serverStartTerm });
      }
      this.record(C.QUORUM_EVENT_STOP, this.serverStartTerm);
      this.serverStartTerm = 0n;
      this.serverEvent = -1;
    }

    // leaders send heartbeats at an interval
    if (this.role === "leader" && clock.now() >= this.timeoutAt) {
      const dropped = this.sendOthers(C.QUORUM_MSG_HEARTBEAT, this.term);
      if (dropped) this.count("send_heartbeat_dropped", dropped);
      this.timeoutAt = clock.now() + C.QUORUM_HB_IVAL_MS;
      this.count("send_heartbeat");
    }

    // followers vote once per term
    if (this.role === "follower" && msg?.type === C.QUORUM_MSG_REQUEST_VOTE && this.voteFor === -1) {
      this.voteFor = msg.from;
      this.cfg.net.send(msg.from, encodeQuorumMessage(this.cfg.fsid, this.term, C.QUORUM_MSG_VOTE, this.cfg.slot));
      this.cfg.log?.({ what: "vote", term: this.term, for: msg.from });
      this.count("send_vote");
    }
  }

  /**
   * Leave the quorum: stop our server (waiting for it), resign so others elect at once, and
   * record stop and end events.
   */
  async shutdown(waitServerDown: () => Promise<void>): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer !== null) this.cfg.clock.clearTimer(this.timer);
    this.timer = null;
    if (this.failed) return;
    if (this.cfg.server.state() !== "down") {
      this.cfg.server.stop();
      await waitServerDown();
    }
    if (this.serverStartTerm > 0n || this.role === "leader") {
      this.sendOthers(C.QUORUM_MSG_RESIGNATION, this.term);
      if (this.serverStartTerm > 0n) this.record(C.QUORUM_EVENT_STOP, this.serverStartTerm);
    }
    this.role = "follower";
    this.serverStartTerm = 0n;
    this.record(C.QUORUM_EVENT_END, this.term);
  }

  /** Stop without any I/O, as if the process died (for tests that model crashes). */
  crash(): void {
    this.stopped = true;
    if (this.timer !== null) this.cfg.clock.clearTimer(this.timer);
    this.timer = null;
  }
}

function popcount(x: number): number {
  let n = 0;
  while (x) {
    x &= x - 1;
    n++;
  }
  return n;
}
