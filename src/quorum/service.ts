/**
 * The quorum agent wired to the real world: UDP on our slot's address (Bun.udpSocket), our slot's
 * quorum block on the metadata device, wall-clock timers. A node with a quorum_slot_nr runs one.
 */
import { Device } from "../block/device.ts";
import { ipv4ToString, type InetAddr } from "../format/quorum.ts";
import * as C from "../format/constants.ts";
import { ScoutfsError } from "../util/errors.ts";
import { QuorumAgent, type AgentEvent, type ServerControl, type QuorumStore } from "./agent.ts";
import { findLeader, presentSlots, readGreatestTerm, updateQuorumEvent, type QuorumSlot } from "./blocks.ts";

export interface QuorumServiceOptions {
  dev: Device;
  fsid: bigint;
  /** The super block's quorum config slots. */
  slots: readonly InetAddr[];
  slot: number;
  rid: bigint;
  heartbeatTimeoutMs: number;
  server: ServerControl;
  log?: (ev: AgentEvent) => void;
}

export class DeviceQuorumStore implements QuorumStore {
  constructor(
    private readonly dev: Device,
    private readonly fsid: bigint,
    private readonly slot: number,
    private readonly rid: bigint,
    private readonly slots: readonly QuorumSlot[],
  ) {}
  greatestTerm(): bigint {
    return readGreatestTerm(this.dev, this.fsid, this.slots);
  }
  serverRecorded(): boolean {
    try {
      return findLeader(this.dev, this.fsid, this.slots) !== null;
    } catch {
      return false;
    }
  }
  record(event: number, term: bigint): void {
    updateQuorumEvent(this.dev, this.fsid, this.slot, this.rid, event, term);
  }
}

export interface QuorumService {
  agent: QuorumAgent;
  address: string;
  /** Stop the server if ours, resign, record stop/end events, close the socket. */
  shutdown(waitServerDown: () => Promise<void>): Promise<void>;
  /** Drop everything at once, like a killed process (tests). */
  crash(): void;
}

export function validateQuorumSlot(slots: readonly InetAddr[], slot: number): QuorumSlot[] {
  const present = presentSlots(slots);
  if (present.length === 0) throw new ScoutfsError("EINVAL", "no populated quorum slots in the super block");
  if (!present.some((s) => s.nr === slot)) {
    throw new ScoutfsError(
      "EINVAL",
      `quorum_slot_nr=${slot} references an unused slot, must be one of the configured slots: ${present.map((s) => s.nr).join(",")}`,
    );
  }
  return present;
}

export async function startQuorum(o: QuorumServiceOptions): Promise<QuorumService> {
  if (o.heartbeatTimeoutMs < C.QUORUM_MIN_HB_TIMEO_MS || o.heartbeatTimeoutMs > C.QUORUM_MAX_HB_TIMEO_MS) {
    throw new ScoutfsError("EINVAL", `invalid quorum_heartbeat_timeout_ms value ${o.heartbeatTimeoutMs}, must be between ${C.QUORUM_MIN_HB_TIMEO_MS} and ${C.QUORUM_MAX_HB_TIMEO_MS}`);
  }
  const present = validateQuorumSlot(o.slots, o.slot);
  const me = present.find((s) => s.nr === o.slot)!;
  const host = ipv4ToString(me.addr.addr);
  let agent: QuorumAgent | null = null;
  let sock: Bun.udp.Socket<"buffer">;
  try {
    sock = await Bun.udpSocket<"buffer">({
      hostname: host,
      port: me.addr.port,
      socket: {
        data(_s, buf) {
          agent?.receive(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength));
        },
        // ICMP errors from sends to members that are down (ECONNREFUSED) are expected while
        // peers come and go; the protocol tolerates loss, so note them and carry on.
        error(_s, err) {
          if (agent) agent.counters.udp_error = (agent.counters.udp_error ?? 0) + 1;
          void err;
        },
      },
    });
  } catch (err) {
    throw new ScoutfsError("EBUSY", `quorum could not bind udp ${host}:${me.addr.port}: ${(err as Error).message}`, "is another mount using this quorum slot?");
  }
  const byNr = new Map(present.map((s) => [s.nr, s.addr]));
  agent = new QuorumAgent({
    fsid: o.fsid,
    slot: o.slot,
    slots: present.map((s) => s.nr),
    heartbeatTimeoutMs: o.heartbeatTimeoutMs,
    server: o.server,
    store: new DeviceQuorumStore(o.dev, o.fsid, o.slot, o.rid, present),
    net: {
      send(to, bytes) {
        const a = byNr.get(to);
        if (!a) return false;
        // Linux reports an ICMP port-unreachable from a dead peer as a pending error on the
        // socket's *next* sendto, which then fails and drops its datagram, whoever it was for.
        // A failed send has consumed that error, so try once more before calling it lost:
        // otherwise every message to a live member right after one to a dead member is lost.
        const host = ipv4ToString(a.addr);
        for (let attempt = 0; attempt < 2; attempt++) {
          try {
            if (sock.send(bytes, a.port, host)) return true;
          } catch {
            // pending socket error or a closed socket: retried once below
          }
        }
        return false;
      },
    },
    clock: {
      now: () => performance.now(),
      setTimer: (fn, ms) => setTimeout(fn, ms),
      clearTimer: (t) => clearTimeout(t as ReturnType<typeof setTimeout>),
      random: Math.random,
    },
    ...(o.log ? { log: o.log } : {}),
  });
  agent.start();
  const a = agent;
  return {
    agent: a,
    address: `${host}:${me.addr.port}`,
    async shutdown(waitServerDown) {
      await a.shutdown(waitServerDown);
      sock.close();
    },
    crash() {
      a.crash();
      sock.close();
    },
  };
}
