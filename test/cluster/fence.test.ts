// A client node that disappears (SIGKILL of a follower process) is fenced by the server after the
// reconnect timeout (the local fence agent of src/server/fence.ts: the registered process is gone),
// and its resources are reclaimed: its mounted_clients item goes, its log tree is finalized with
// every allocator handed back, statfs loses nothing, its committed items stay readable and its
// uncommitted ones are gone; the leader keeps serving the other node throughout.
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import {
  TEST_TUNING,
  accountVolume,
  checkOneLeaderPerTerm,
  makeClusterVolume,
  clusterScope,
  spawnNode,
  stopAll,
  waitLeader,
  type NodeProc,
} from "./harness.ts";

const { vols, procs } = clusterScope();

interface LtView {
  rid: string;
  nr: string;
  finalized: boolean;
  metaAvail: string;
  metaFreed: string;
  dataAvail: string;
  dataFreed: string;
}

test("a SIGKILLed client is fenced and its log tree and allocators are reclaimed", async () => {
  const v = await makeClusterVolume("fence", 3);
  vols.push(v);
  const nodes = [0, 1, 2].map((s) => spawnNode(v, s));
  procs.push(...nodes);
  const { leader } = await waitLeader(nodes, 10_000);
  for (const n of nodes) await n.waitEvent((e) => e.event === "store-ready", 10_000);
  const [victim, other] = nodes.filter((n) => n !== leader) as [NodeProc, NodeProc];
  for (const n of nodes) {
    await n.cmd(`put ${n.slot} 0 400 1`);
    await n.cmd("sync");
  }
  // uncommitted work in the victim: lost with it
  await victim.cmd(`put ${victim.slot} 400 100 2`);
  await victim.cmd(`del ${victim.slot} 0 10`);
  const before = await leader.cmd("server");
  const victimLt = (before.logTrees as LtView[]).find((l) => l.rid === victim.rid)!;
  expect(BigInt(victimLt.metaAvail)).toBeGreaterThan(0n);
  expect(BigInt(victimLt.dataAvail)).toBeGreaterThan(0n);
  expect(fs.existsSync(path.join(v.runDir, v.fsid.toString(16).padStart(16, "0"), victim.rid))).toBe(true);

  const t0 = performance.now();
  victim.kill("SIGKILL");
  await victim.exited;
  const mark = leader.events.length;
  // the server waits the reconnect timeout, fences, reclaims
  await leader.waitEvent((e) => e.event === "fenced" && e.rid === victim.rid, (TEST_TUNING.clientReconnectTimeoutMs ?? 0) + 5000, mark);
  const fencedMs = performance.now() - t0;
  let after = await leader.cmd("server");
  for (let i = 0; i < 50 && (after.mounted as string[]).includes(victim.rid); i++) {
    await Bun.sleep(50);
    after = await leader.cmd("server");
  }
  console.log(`client fenced and reclaimed ${fencedMs.toFixed(0)} ms after SIGKILL (reconnect timeout ${TEST_TUNING.clientReconnectTimeoutMs} ms)`);
  expect(fencedMs).toBeGreaterThanOrEqual((TEST_TUNING.clientReconnectTimeoutMs ?? 0) - 100);
  expect((after.mounted as string[]).sort()).toEqual([leader.rid, other.rid].sort());
  expect(after.departed).toBe(1);
  // its tree stays for merging, finalized, with nothing left in its allocators
  const gone = (after.logTrees as LtView[]).filter((l) => l.rid === victim.rid);
  expect(gone.length).toBeGreaterThan(0);
  for (const l of gone) {
    expect(l.finalized).toBe(true);
    expect([l.metaAvail, l.metaFreed, l.dataAvail, l.dataFreed]).toEqual(["0", "0", "0", "0"]);
  }
  // statfs counts every mount's allocators as free, so its avail blocks were free before and
  // still are; what it gains are the blocks that held the mount's lists and extent trees
  type St = { freeMeta: string; freeData: string; inodes: string };
  const [b, a] = [before.statfs as St, after.statfs as St];
  expect(a.freeData).toBe(b.freeData);
  expect(a.inodes).toBe(b.inodes);
  expect(BigInt(a.freeMeta) - BigInt(b.freeMeta)).toBeGreaterThanOrEqual(0n);
  expect(BigInt(a.freeMeta) - BigInt(b.freeMeta)).toBeLessThan(8n);
  // its registration went with the fencing
  expect(fs.existsSync(path.join(v.runDir, v.fsid.toString(16).padStart(16, "0"), victim.rid))).toBe(false);
  expect(fs.readFileSync(v.logPath(leader.slot), "utf8")).toContain(`fenced mount rid ${victim.rid}`);

  // committed items survive, uncommitted ones are gone; the others carry on
  for (const n of [leader, other]) {
    expect(await n.cmd(`scan ${victim.slot}`)).toMatchObject({ count: 400, bad: 0, gens: { "1": 400 } });
    await n.cmd(`put ${n.slot} 400 50 3`);
    await n.cmd("sync");
  }
  expect(await other.cmd(`scan ${leader.slot}`)).toMatchObject({ count: 450, bad: 0 });

  expect(await stopAll([leader, other])).toEqual([0, 0]);
  checkOneLeaderPerTerm(v, 3);
  const acct = accountVolume(v);
  expect(acct.dup).toEqual([]);
  expect(acct.seen).toBe(acct.total);
  expect(acct.mounted).toBe(0);
}, 40_000);
