// Cluster locks between node processes: a follower's write grant is invalidated when another
// node asks for write; after the leader is SIGKILLed, the new server learns the locks every
// surviving node holds (lock_recover) before granting anything, so a conflicting request is
// granted only after the holder has been invalidated — never two writers at once.
import { expect, test } from "bun:test";
import * as C from "../../src/format/constants.ts";
import { checkOneLeaderPerTerm, clusterScope, makeClusterVolume, spawnNode, stopAll, waitLeader, type NodeProc } from "./harness.ts";

const { vols, procs } = clusterScope();

test("write locks move between nodes by invalidation, and survive a failover through lock recovery", async () => {
  const v = await makeClusterVolume("locks", 3);
  vols.push(v);
  const nodes = [0, 1, 2].map((s) => spawnNode(v, s));
  procs.push(...nodes);
  const first = await waitLeader(nodes, 10_000);
  for (const n of nodes) await n.waitEvent((e) => e.event === "store-ready", 10_000);
  const [a, b] = nodes.filter((n) => n !== first.leader) as [NodeProc, NodeProc];

  await a.cmd(`lock 7 ${C.LOCK_WRITE}`);
  expect(await a.cmd("held 7")).toMatchObject({ mode: C.LOCK_WRITE, invalidations: 0 });
  await b.cmd(`lock 7 ${C.LOCK_WRITE}`); // a's grant is invalidated first
  expect(await a.cmd("held 7")).toMatchObject({ mode: C.LOCK_NULL, invalidations: 1 });
  expect(await b.cmd("held 7")).toMatchObject({ mode: C.LOCK_WRITE, invalidations: 0 });
  // readers share
  await a.cmd(`lock 8 ${C.LOCK_READ}`);
  await b.cmd(`lock 8 ${C.LOCK_READ}`);
  expect(await a.cmd("held 8")).toMatchObject({ mode: C.LOCK_READ, invalidations: 1 });

  // the leader dies; the new server must learn that b holds write on 7 and a and b read on 8
  first.leader.kill("SIGKILL");
  await first.leader.exited;
  const second = await waitLeader([a, b], 10_000, first.term);
  await a.cmd(`lock 7 ${C.LOCK_WRITE}`, 20_000);
  expect(await b.cmd("held 7")).toMatchObject({ mode: C.LOCK_NULL, invalidations: 1 });
  expect(await a.cmd("held 7")).toMatchObject({ mode: C.LOCK_WRITE });
  await b.cmd(`lock 8 ${C.LOCK_WRITE}`, 20_000); // a's recovered read goes first
  expect(await a.cmd("held 8")).toMatchObject({ mode: C.LOCK_NULL, invalidations: 2 });
  expect(second.term).toBeGreaterThan(first.term);

  expect(await stopAll([a, b])).toEqual([0, 0]);
  checkOneLeaderPerTerm(v, 3);
}, 40_000);
