// Quorum agents over real UDP on loopback and a real metadata image: election, quorum block
// events, leader lookup for clients, failover after a leader dies, clean shutdown events, and
// garbage datagrams ignored.
import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { Device } from "../../src/block/device.ts";
import { mkfs, parseQuorumSlot } from "../../src/offline/mkfs.ts";
import { SuperBlock } from "../../src/format/super.ts";
import { startQuorum, type QuorumService } from "../../src/quorum/service.ts";
import { findLeader, presentSlots, readQuorumBlock, leadersToFence } from "../../src/quorum/blocks.ts";
import type { ServerState } from "../../src/quorum/agent.ts";
import * as C from "../../src/format/constants.ts";
import { sparseFile, tempDir } from "../helpers/images.ts";
import { freePorts } from "../helpers/ports.ts";

const dir = tempDir();
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const HB = 2000;

async function volume(name: string, n: number) {
  const ports = await freePorts(n);
  const metaPath = sparseFile(path.join(dir, `${name}.meta`), 67698688);
  const dataPath = sparseFile(path.join(dir, `${name}.data`), 266240);
  const r = mkfs({ metaPath, dataPath, allowSmallSize: true, slots: ports.map((p, i) => parseQuorumSlot(`${i},127.0.0.1,${p}`)) }, { out: () => {}, warn: () => {} });
  return { metaPath, fsid: r.fsid, ports };
}

interface Member { q: QuorumService; dev: Device; server: { state: ServerState; starts: bigint[]; fence: ReturnType<typeof leadersToFence>[] } }

async function member(metaPath: string, fsid: bigint, slot: number, rid: bigint): Promise<Member> {
  const dev = Device.open(metaPath, { write: true });
  const sup = SuperBlock.decode(dev.read(C.SUPER_BLKNO, C.BLOCK_SM_SHIFT));
  const server = { state: "down" as ServerState, starts: [] as bigint[], fence: [] as ReturnType<typeof leadersToFence>[] };
  let q!: QuorumService;
  q = await startQuorum({
    dev, fsid, slots: sup.qconf.slots, slot, rid, heartbeatTimeoutMs: HB,
    server: {
      start: (term) => {
        server.starts.push(term);
        // what a real server does first: find previous leaders to fence
        server.fence.push(leadersToFence(dev, fsid, presentSlots(sup.qconf.slots), term, rid));
        server.state = "starting";
        setTimeout(() => { server.state = "up"; q.agent.poke(); }, 20);
      },
      stop: () => {
        server.state = "stopping";
        setTimeout(() => { server.state = "down"; q.agent.poke(); }, 10);
      },
      state: () => server.state,
    },
  });
  return { q, dev, server };
}

async function waitFor<T>(what: string, fn: () => T | undefined | false, ms: number): Promise<T> {
  const end = performance.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await Bun.sleep(20);
  }
}

describe("quorum over UDP", () => {
  test("one slot elects itself and records begin, term, elect, fence; shutdown records stop and end", async () => {
    const v = await volume("one", 1);
    const m = await member(v.metaPath, v.fsid, 0, 0x1111n);
    await waitFor("leader", () => m.server.state === "up", 3000);
    await Bun.sleep(50);
    const slots = presentSlots(SuperBlock.decode(m.dev.read(16, 12)).qconf.slots);
    expect(findLeader(m.dev, v.fsid, slots)).toMatchObject({ slot: 0, term: 1n, rid: 0x1111n });
    let blk = readQuorumBlock(m.dev, v.fsid, 0).blk;
    for (const e of [C.QUORUM_EVENT_BEGIN, C.QUORUM_EVENT_TERM, C.QUORUM_EVENT_ELECT, C.QUORUM_EVENT_FENCE]) {
      expect(blk.events[e]!.rid).toBe(0x1111n);
    }
    expect(blk.events[C.QUORUM_EVENT_ELECT]!.term).toBe(1n);
    await m.q.shutdown(() => waitFor("down", () => m.server.state === "down", 1000).then(() => {}));
    blk = readQuorumBlock(m.dev, v.fsid, 0).blk;
    expect(blk.events[C.QUORUM_EVENT_STOP]!.term).toBe(1n);
    expect(blk.events[C.QUORUM_EVENT_END]!.write_nr).toBe(blk.write_nr);
    expect(findLeader(m.dev, v.fsid, slots)).toBeNull();
    m.dev.close();
  });

  test("three slots elect exactly one leader; killing it elects another within the heartbeat timeout plus an election", async () => {
    const v = await volume("three", 3);
    const ms = await Promise.all([0, 1, 2].map((s) => member(v.metaPath, v.fsid, s, BigInt(0x100 + s))));
    const leader = await waitFor("a leader", () => ms.find((m) => m.server.state === "up"), 5000);
    await Bun.sleep(300);
    expect(ms.filter((m) => m.server.state !== "down").length).toBe(1);
    const slots = presentSlots(SuperBlock.decode(leader.dev.read(16, 12)).qconf.slots);
    const first = findLeader(leader.dev, v.fsid, slots)!;
    expect(first.slot).toBe(ms.indexOf(leader));

    // garbage on the quorum ports changes nothing
    const junk = await Bun.udpSocket({});
    for (const p of v.ports) {
      junk.send(new Uint8Array(32).fill(7), p, "127.0.0.1");
      junk.send(new Uint8Array(3), p, "127.0.0.1");
      junk.send(new Uint8Array(9000), p, "127.0.0.1");
    }
    junk.close();
    await Bun.sleep(200);
    expect(ms.filter((m) => m.server.state !== "down").length).toBe(1);
    expect(ms.reduce((n, m) => n + (m.q.agent.counters.recv_invalid ?? 0), 0)).toBeGreaterThan(0);

    // the leader dies without a word
    const t0 = performance.now();
    leader.q.crash();
    leader.server.state = "down";
    const rest = ms.filter((m) => m !== leader);
    const next = await waitFor("a new leader", () => rest.find((m) => m.server.state === "up"), HB + 3000);
    const failoverMs = performance.now() - t0;
    expect(failoverMs).toBeLessThan(HB + 1500);
    const second = findLeader(next.dev, v.fsid, slots)!;
    expect(second.term).toBeGreaterThan(first.term);
    // the new leader must fence the old one, which never recorded a stop
    expect(next.server.fence.at(-1)).toEqual([
      expect.objectContaining({ slot: first.slot, rid: first.rid, term: first.term, reason: "elected-leader-running" }),
    ]);
    for (const m of rest) await m.q.shutdown(() => waitFor("down", () => m.server.state === "down", 1000).then(() => {}));
    for (const m of ms) m.dev.close();
  }, 20000);

  test("a minority cannot elect", async () => {
    const v = await volume("minority", 3);
    const m = await member(v.metaPath, v.fsid, 2, 0x222n);
    await Bun.sleep(1500);
    expect(m.server.starts).toEqual([]);
    expect(m.q.agent.status().role).toBe("candidate");
    expect(m.q.agent.status().term).toBeGreaterThan(1n); // it keeps trying
    await m.q.shutdown(async () => {});
    m.dev.close();
  });

  test("a slot that is not configured is refused", async () => {
    const v = await volume("badslot", 1);
    await expect(member(v.metaPath, v.fsid, 3, 1n)).rejects.toThrow(/quorum_slot_nr=3 references an unused slot, must be one of the configured slots: 0/);
  });
});
