// Model test of the lock server with simulated clients over in-order, delayed connections: no
// two clients ever hold incompatible modes at the same time (as the clients themselves see their
// modes), every request is eventually granted, write grants carry increasing seqs, and recovery
// after a failover rebuilds the state from what clients report.
import { describe, expect, test } from "bun:test";
import { LockServer, lockModesCompatible, type NetLock } from "../../src/server/lock_server.ts";
import { makeKey, keyFormat } from "../../src/format/key.ts";
import * as C from "../../src/format/constants.ts";

function rng(seed: number) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s / 0x100000000;
  };
}

type Msg = { kind: "grant"; netId: bigint; nl: NetLock } | { kind: "invalidate"; nl: NetLock } | { kind: "request"; rid: bigint; netId: bigint; nl: NetLock } | { kind: "response"; rid: bigint; nl: NetLock };

function simulate(seed: number, nClients: number, nLocks: number, steps: number) {
  const rand = rng(seed);
  const keys = Array.from({ length: nLocks }, (_, i) => makeKey(C.FS_ZONE, BigInt(i * 1024), 0));
  const rids = Array.from({ length: nClients }, (_, i) => BigInt(0x100 + i));
  const toClient = new Map<bigint, Msg[]>(rids.map((r) => [r, []]));
  const toServer: Msg[] = [];
  let seq = 0n;
  const lastWriteSeq = new Map<bigint, bigint>(); // per client: grants arrive in send order
  const violations: string[] = [];
  const server = new LockServer({
    grant: (rid, netId, nl) => toClient.get(rid)!.push({ kind: "grant", netId, nl: { ...nl } }),
    invalidate: (rid, nl) => toClient.get(rid)!.push({ kind: "invalidate", nl: { ...nl } }),
    nextSeq: () => ++seq,
  });
  // client view: held mode and outstanding request per lock
  const held = new Map<string, number>();
  const pending = new Map<string, number>();
  const id = (rid: bigint, k: number) => `${rid}:${k}`;
  let netId = 0n;

  const check = () => {
    for (let k = 0; k < nLocks; k++) {
      for (const a of rids) for (const b of rids) {
        if (a >= b) continue;
        const ma = held.get(id(a, k)) ?? C.LOCK_NULL;
        const mb = held.get(id(b, k)) ?? C.LOCK_NULL;
        const ok = lockModesCompatible({ rid: a, netId: 0n, mode: ma }, { rid: b, netId: 0n, mode: mb });
        if (!ok) violations.push(`lock ${k}: client ${a} holds ${ma} while ${b} holds ${mb}`);
      }
    }
  };

  const deliverClient = (rid: bigint) => {
    const q = toClient.get(rid)!;
    const m = q.shift();
    if (!m) return;
    const k = keys.findIndex((x) => keyFormat(x) === keyFormat(m.nl.key));
    if (m.kind === "grant") {
      held.set(id(rid, k), m.nl.newMode);
      pending.delete(id(rid, k));
      if (m.nl.newMode === C.LOCK_WRITE || m.nl.newMode === C.LOCK_WRITE_ONLY) {
        const last = lastWriteSeq.get(rid) ?? 0n;
        if (m.nl.writeSeq <= last) violations.push(`client ${rid} write seq ${m.nl.writeSeq} after ${last}`);
        lastWriteSeq.set(rid, m.nl.writeSeq);
      }
    } else if (m.kind === "invalidate") {
      // write back, drop caches, then answer (the answer travels in order behind nothing else)
      const cur = held.get(id(rid, k)) ?? C.LOCK_NULL;
      const next = Math.min(cur, m.nl.newMode);
      held.set(id(rid, k), next);
      toServer.push({ kind: "response", rid, nl: { ...m.nl, newMode: next } });
    }
  };

  for (let i = 0; i < steps; i++) {
    const r = rand();
    if (r < 0.3) {
      const rid = rids[Math.floor(rand() * nClients)]!;
      const k = Math.floor(rand() * nLocks);
      if (!pending.has(id(rid, k))) {
        const mode = [C.LOCK_NULL, C.LOCK_READ, C.LOCK_READ, C.LOCK_WRITE, C.LOCK_WRITE_ONLY][Math.floor(rand() * 5)]!;
        pending.set(id(rid, k), mode);
        toServer.push({ kind: "request", rid, netId: ++netId, nl: { key: keys[k]!, writeSeq: 0n, oldMode: held.get(id(rid, k)) ?? 0, newMode: mode } });
      }
    } else if (r < 0.65) {
      const m = toServer.shift();
      if (m?.kind === "request") server.request(m.rid, m.netId, m.nl);
      else if (m?.kind === "response") server.response(m.rid, m.nl);
    } else {
      deliverClient(rids[Math.floor(rand() * nClients)]!);
    }
    check();
  }
  // drain: everything in flight is delivered and answered
  for (let guard = 0; guard < 100000 && (toServer.length || [...toClient.values()].some((q) => q.length)); guard++) {
    const m = toServer.shift();
    if (m?.kind === "request") server.request(m.rid, m.netId, m.nl);
    else if (m?.kind === "response") server.response(m.rid, m.nl);
    for (const rid of rids) deliverClient(rid);
    check();
  }
  return { violations, pending, server, held };
}

describe("lock server model", () => {
  test("never two incompatible holders; every request granted (300 seeds)", () => {
    for (let seed = 1; seed <= 300; seed++) {
      const r = simulate(seed, 2 + (seed % 4), 1 + (seed % 3), 400);
      expect(r.violations, `seed ${seed}`).toEqual([]);
      expect(r.pending.size, `seed ${seed}: requests never granted`).toBe(0);
    }
  });

  test("invalidation modes: write drops to read for a reader, to null for a writer", () => {
    const sent: [string, bigint, number, number][] = [];
    const s = new LockServer({
      grant: (rid, _n, nl) => sent.push(["grant", rid, nl.oldMode, nl.newMode]),
      invalidate: (rid, nl) => sent.push(["inval", rid, nl.oldMode, nl.newMode]),
      nextSeq: () => 7n,
    });
    const key = makeKey(C.FS_ZONE, 0n, 0);
    s.request(1n, 1n, { key, writeSeq: 0n, oldMode: 0, newMode: C.LOCK_WRITE });
    s.request(2n, 2n, { key, writeSeq: 0n, oldMode: 0, newMode: C.LOCK_READ });
    expect(sent).toEqual([["grant", 1n, 0, C.LOCK_WRITE], ["inval", 1n, C.LOCK_WRITE, C.LOCK_READ]]);
    s.response(1n, { key, writeSeq: 0n, oldMode: C.LOCK_WRITE, newMode: C.LOCK_READ });
    expect(sent.at(-1)).toEqual(["grant", 2n, 0, C.LOCK_READ]);
    // a read holder upgrading to write keeps its own read (no self-invalidation) but others drop
    s.request(1n, 3n, { key, writeSeq: 0n, oldMode: C.LOCK_READ, newMode: C.LOCK_WRITE });
    expect(sent.at(-1)).toEqual(["inval", 2n, C.LOCK_READ, C.LOCK_NULL]);
    s.response(2n, { key, writeSeq: 0n, oldMode: C.LOCK_READ, newMode: C.LOCK_NULL });
    expect(sent.at(-1)).toEqual(["grant", 1n, C.LOCK_READ, C.LOCK_WRITE]);
  });

  test("recovery holds requests until every client reported, then resumes", () => {
    const sent: string[] = [];
    const s = new LockServer({
      grant: (rid, _n, nl) => sent.push(`grant ${rid} ${nl.newMode}`),
      invalidate: (rid, nl) => sent.push(`inval ${rid} ${nl.newMode}`),
      nextSeq: () => 1n,
    });
    const key = makeKey(C.FS_ZONE, 0n, 0);
    s.beginRecovery([1n, 2n]);
    s.request(3n, 1n, { key, writeSeq: 0n, oldMode: 0, newMode: C.LOCK_WRITE });
    expect(sent).toEqual([]);
    s.recover(1n, [{ key, writeSeq: 0n, oldMode: 0, newMode: C.LOCK_READ }]);
    s.recover(1n, []);
    expect(sent).toEqual([]);
    s.recover(2n, []);
    expect(sent).toEqual(["inval 1 0"]); // client 1's recovered read must go before 3 writes
    s.response(1n, { key, writeSeq: 0n, oldMode: C.LOCK_READ, newMode: C.LOCK_NULL });
    expect(sent).toEqual(["inval 1 0", "grant 3 2"]);
  });

  test("a departed client's grants no longer block others; bad input is refused", () => {
    const sent: string[] = [];
    const s = new LockServer({ grant: (rid) => sent.push(`grant ${rid}`), invalidate: (rid) => sent.push(`inval ${rid}`), nextSeq: () => 1n });
    const key = makeKey(C.FS_ZONE, 0n, 0);
    s.request(1n, 1n, { key, writeSeq: 0n, oldMode: 0, newMode: C.LOCK_WRITE });
    s.request(2n, 1n, { key, writeSeq: 0n, oldMode: 0, newMode: C.LOCK_WRITE });
    expect(sent).toEqual(["grant 1", "inval 1"]);
    s.removeClient(1n);
    expect(sent).toEqual(["grant 1", "inval 1", "grant 2"]);
    expect(() => s.request(2n, 2n, { key, writeSeq: 0n, oldMode: 0, newMode: 9 })).toThrow(/invalid mode/);
    expect(() => s.response(5n, { key, writeSeq: 0n, oldMode: 2, newMode: 0 })).toThrow(/not sent/);
    expect(() => s.recover(5n, [])).toThrow(/not recovering/);
  });
});
