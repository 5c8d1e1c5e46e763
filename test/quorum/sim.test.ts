// Model test of the quorum agent: many agents on a simulated clock and a lossy, reordering,
// partitionable network, with crashes and restarts, checked for election safety (never two
// leaders in one term, terms never go backward in a slot's block) and liveness (a connected
// majority elects one leader within a bounded time). Every run is reproducible from its seed.
import { describe, expect, test } from "bun:test";
import { QuorumAgent, encodeQuorumMessage, decodeQuorumMessage, type Clock, type QuorumStore, type ServerState, type AgentEvent } from "../../src/quorum/agent.ts";
import * as C from "../../src/format/constants.ts";

function rng(seed: number) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 0x100000000;
  };
}

class Sim {
  now = 0;
  private q: { at: number; seq: number; fn: () => void; dead?: boolean }[] = [];
  // events are returned to callers as cancellable handles
  private seq = 0;
  at(ms: number, fn: () => void) {
    const ev: { at: number; seq: number; fn: () => void; dead?: boolean } = { at: this.now + ms, seq: this.seq++, fn };
    this.q.push(ev);
    return ev;
  }
  runUntil(t: number) {
    for (;;) {
      let best = -1;
      for (let i = 0; i < this.q.length; i++) {
        const e = this.q[i]!;
        if (best < 0 || e.at < this.q[best]!.at || (e.at === this.q[best]!.at && e.seq < this.q[best]!.seq)) best = i;
      }
      if (best < 0 || this.q[best]!.at > t) break;
      const ev = this.q.splice(best, 1)[0]!;
      this.now = ev.at;
      if (!ev.dead) ev.fn();
    }
    this.now = t;
  }
}

interface Block { write_nr: bigint; events: { rid: bigint; term: bigint; write_nr: bigint }[] }

function runScenario(seed: number, nSlots: number, opts: { drop: number; crashes: number; partitions: boolean; duration: number }) {
  const rand = rng(seed);
  const sim = new Sim();
  const fsid = 0xabcdn;
  const slots = Array.from({ length: nSlots }, (_, i) => i * 2 + 1); // sparse slot numbers
  const blocks = new Map<number, Block>(slots.map((s) => [s, { write_nr: 0n, events: Array.from({ length: 6 }, () => ({ rid: 0n, term: 0n, write_nr: 0n })) }]));
  const leaders = new Map<bigint, number>(); // term -> slot
  const violations: string[] = [];
  const cut = new Set<string>(); // "a-b" pairs that cannot talk
  const HB = 2000;

  interface Node { agent: QuorumAgent; server: { state: ServerState; timer?: { dead?: boolean } }; alive: boolean; rid: bigint }
  const nodes = new Map<number, Node>();

  function storeFor(slot: number, rid: () => bigint): QuorumStore {
    return {
      greatestTerm: () => {
        let t = 0n;
        for (const b of blocks.values()) for (const e of b.events) if (e.rid !== 0n && e.term > t) t = e.term;
        return t;
      },
      serverRecorded: () => [...blocks.values()].some((b) => b.events[C.QUORUM_EVENT_ELECT]!.term > b.events[C.QUORUM_EVENT_STOP]!.term),
      record: (event, term) => {
        const b = blocks.get(slot)!;
        const prevMax = b.events.reduce((m, e) => (e.term > m ? e.term : m), 0n);
        if (event === C.QUORUM_EVENT_TERM && term < prevMax) violations.push(`slot ${slot} term went back from ${prevMax} to ${term}`);
        b.write_nr++;
        b.events[event] = { rid: rid(), term, write_nr: b.write_nr };
        if (event === C.QUORUM_EVENT_ELECT) {
          const other = leaders.get(term);
          if (other !== undefined && other !== slot) violations.push(`term ${term} elected both slot ${other} and slot ${slot}`);
          leaders.set(term, slot);
        }
      },
    };
  }

  function boot(slot: number) {
    const rid = BigInt(Math.floor(rand() * 2 ** 48)) + 1n;
    const node: Node = { agent: null as unknown as QuorumAgent, server: { state: "down" }, alive: true, rid };
    const clock: Clock = {
      now: () => sim.now,
      setTimer: (fn, ms) => sim.at(ms, () => node.alive && fn()),
      clearTimer: (t) => ((t as { dead?: boolean }).dead = true),
      random: rand,
    };
    const server = {
      start: (_term: bigint) => {
        node.server.state = "starting";
        node.server.timer = sim.at(20 + rand() * 50, () => {
          if (node.alive && node.server.state === "starting") {
            node.server.state = "up";
            node.agent.poke();
          }
        });
      },
      stop: () => {
        if (node.server.state === "down" || node.server.state === "stopping") return;
        node.server.state = "stopping";
        sim.at(10 + rand() * 30, () => {
          if (!node.alive) return;
          node.server.state = "down";
          node.agent.poke();
        });
      },
      state: () => node.server.state,
    };
    const net = {
      send: (to: number, bytes: Uint8Array) => {
        if (cut.has(`${slot}-${to}`) || rand() < opts.drop) return true;
        sim.at(rand() * 15, () => {
          const dst = nodes.get(to);
          if (dst?.alive) dst.agent.receive(bytes);
        });
        return true;
      },
    };
    node.agent = new QuorumAgent({ fsid, slot, slots, heartbeatTimeoutMs: HB, net, store: storeFor(slot, () => rid), server, clock });
    nodes.set(slot, node);
    node.agent.start();
  }

  for (const s of slots) sim.at(rand() * 100, () => boot(s));

  // chaos phase: crashes, restarts and partitions
  const chaosEnd = opts.duration;
  for (let i = 0; i < opts.crashes; i++) {
    const t = rand() * chaosEnd;
    const slot = slots[Math.floor(rand() * slots.length)]!;
    sim.at(t, () => {
      const n = nodes.get(slot);
      if (!n || !n.alive) return;
      n.alive = false;
      n.agent.crash();
      n.server.state = "down";
      sim.at(500 + rand() * 3000, () => boot(slot));
    });
  }
  if (opts.partitions) {
    for (let i = 0; i < 3; i++) {
      const t = rand() * chaosEnd;
      sim.at(t, () => {
        const a = slots[Math.floor(rand() * slots.length)]!;
        for (const b of slots) if (b !== a) { cut.add(`${a}-${b}`); cut.add(`${b}-${a}`); }
        sim.at(1000 + rand() * 4000, () => { for (const b of slots) { cut.delete(`${a}-${b}`); cut.delete(`${b}-${a}`); } });
      });
    }
  }
  sim.runUntil(chaosEnd + 6000);
  // heal everything, no more loss, and let it settle
  cut.clear();
  opts.drop = 0;
  for (const s of slots) if (!nodes.get(s)?.alive) boot(s);
  sim.runUntil(sim.now + 3 * HB + 2000);

  const st = slots.map((s) => nodes.get(s)!.agent.status());
  const up = slots.filter((s) => nodes.get(s)!.server.state === "up");
  return { violations, st, up, leaders };
}

describe("quorum election model", () => {
  const configs: [number, number][] = [[1, 30], [2, 80], [3, 200], [5, 200]];
  for (const [n, seeds] of configs) {
    test(`${n} slot(s): one leader per term and one server up after chaos (${seeds} seeds)`, () => {
      let elections = 0;
      for (let seed = 1; seed <= seeds; seed++) {
        const r = runScenario(seed * 7919 + n, n, { drop: 0.05, crashes: n === 1 ? 2 : 4, partitions: n > 1, duration: 15000 });
        const ctx = `seed ${seed * 7919 + n}`;
        expect(r.violations, ctx).toEqual([]);
        expect(r.up.length, `${ctx}: servers up ${r.up}`).toBe(1);
        const leaderTerms = r.st.filter((s) => s.role === "leader").map((s) => s.term);
        expect(leaderTerms.length, ctx).toBe(1);
        // everyone agrees on the leader's term
        for (const s of r.st) expect(s.term, ctx).toBe(leaderTerms[0]!);
        elections += r.leaders.size;
      }
      // the chaos really forces failovers: on average well over one election per run
      expect(elections).toBeGreaterThan(seeds * 1.5);
    });
  }
});

describe("quorum messages", () => {
  const slots = new Set([0, 1, 2]);
  test("encode/decode round trip with crc", () => {
    const b = encodeQuorumMessage(0x1234n, 7n, C.QUORUM_MSG_VOTE, 2);
    expect(b.length).toBe(32);
    expect(decodeQuorumMessage(b, 0x1234n, slots)).toEqual({ term: 7n, type: C.QUORUM_MSG_VOTE, from: 2 });
  });
  test("rejects corrupt, foreign and malformed datagrams", () => {
    const b = encodeQuorumMessage(0x1234n, 7n, C.QUORUM_MSG_VOTE, 2);
    expect(decodeQuorumMessage(b.subarray(0, 31), 0x1234n, slots)).toBe("length 31");
    const flipped = b.slice(); flipped[17]! ^= 1;
    expect(decodeQuorumMessage(flipped, 0x1234n, slots)).toBe("bad crc");
    expect(decodeQuorumMessage(b, 0x9999n, slots)).toMatch(/^fsid/);
    expect(decodeQuorumMessage(encodeQuorumMessage(0x1234n, 1n, 4, 0), 0x1234n, slots)).toBe("type 4");
    expect(decodeQuorumMessage(encodeQuorumMessage(0x1234n, 1n, 0, 5), 0x1234n, slots)).toBe("from unconfigured slot 5");
    expect(decodeQuorumMessage(new Uint8Array(4096), 0x1234n, slots)).toBe("length 4096");
  });
});
