// Elections with real node processes (headless nodes, src/mount/headless.ts) sharing image files
// made by our mkfs, each quorum slot on its own loopback port: 1, 3 and 5 slots elect exactly one
// leader and every node — leader or not — commits items through it as a client; a minority of a
// 5-slot volume cannot elect until a third node joins; clean stops leave stop and end events and
// an empty mounted_clients behind, with every metadata block accounted for.
import { describe, expect, test } from "bun:test";
import {
  ELECTION_MS,
  HB_MS,
  accountVolume,
  checkOneLeaderPerTerm,
  makeClusterVolume,
  quorumEvents,
  clusterScope,
  spawnNode,
  stopAll,
  waitLeader,
  type NodeProc,
} from "./harness.ts";

const { vols, procs } = clusterScope();

async function electAndCommit(slots: number): Promise<void> {
  const v = await makeClusterVolume(`elect${slots}`, slots);
  vols.push(v);
  const t0 = performance.now();
  const nodes = Array.from({ length: slots }, (_, s) => spawnNode(v, s));
  procs.push(...nodes);
  const { leader, term } = await waitLeader(nodes, 5000 + slots * 1000);
  const electedMs = performance.now() - t0;
  // still exactly one after a few heartbeat intervals
  await Bun.sleep(500);
  const again = await waitLeader(nodes, 1000);
  expect(again.leader).toBe(leader);
  expect(again.term).toBe(term);
  // every node opens its store as a client of the leader and commits through it
  for (const n of nodes) await n.waitEvent((e) => e.event === "store-ready", 10_000);
  await Promise.all(nodes.map(async (n) => {
    await n.cmd(`put ${n.slot} 0 200 1`);
    await n.cmd("sync");
  }));
  for (const n of nodes) {
    for (let tag = 0; tag < slots; tag++) expect(await n.cmd(`scan ${tag}`)).toMatchObject({ count: 200, bad: 0 });
  }
  const view = await leader.cmd("server");
  expect((view.mounted as string[]).sort()).toEqual(nodes.map((n) => n.rid).sort());
  expect(await stopAll(nodes)).toEqual(nodes.map(() => 0));
  const ev = quorumEvents(v);
  const el = ev.filter((e) => e.elect > 0n);
  expect(el.length).toBe(1);
  expect(el[0]!.slot).toBe(leader.slot);
  expect(el[0]!.stop).toBe(el[0]!.elect); // the leader recorded its stop
  for (const e of ev) expect(e.end).toBeGreaterThanOrEqual(term); // every node recorded its end
  checkOneLeaderPerTerm(v, slots);
  const acct = accountVolume(v);
  expect(acct.dup).toEqual([]);
  expect(acct.seen).toBe(acct.total);
  expect(acct.mounted).toBe(0); // every farewell was answered
  console.log(`${slots} slot(s): leader slot ${leader.slot} term ${term} after ${electedMs.toFixed(0)} ms from spawn`);
}

describe("elections between node processes", () => {
  test("one slot elects itself and serves its own client", () => electAndCommit(1), 30_000);
  test("three slots elect exactly one leader; all three commit through it", () => electAndCommit(3), 30_000);
  test("five slots elect exactly one leader; all five commit through it", () => electAndCommit(5), 40_000);

  test("a minority of five cannot elect; the third node makes a majority", async () => {
    const v = await makeClusterVolume("minority", 5);
    vols.push(v);
    const two = [spawnNode(v, 3), spawnNode(v, 4)];
    procs.push(...two);
    await Promise.all(two.map((n) => n.waitEvent((e) => e.event === "started", 5000)));
    // several election rounds come and go without anyone winning
    await Bun.sleep(HB_MS + 4 * ELECTION_MS);
    for (const n of two) {
      const st = await n.cmd("status");
      expect(st.server).toBe("down");
      expect(st.store).toBe(false);
      expect(n.events.some((e) => e.event === "elected")).toBe(false);
    }
    expect(quorumEvents(v).every((e) => e.elect === 0n)).toBe(true);
    const third = spawnNode(v, 0);
    procs.push(third);
    const nodes = [...two, third];
    const { leader } = await waitLeader(nodes, HB_MS + 10 * ELECTION_MS + 2000);
    expect(nodes).toContain(leader);
    for (const n of nodes) await n.waitEvent((e) => e.event === "store-ready", 10_000);
    expect(await stopAll(nodes)).toEqual([0, 0, 0]);
    checkOneLeaderPerTerm(v, 5);
  }, 40_000);
});
