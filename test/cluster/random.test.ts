// Seeded random runs of node processes: nodes are SIGKILLed (leaders and followers, sometimes down
// to a minority), stopped cleanly and restarted in their slots while the live ones commit items.
// After every step, and at the end, no term may ever have had two leaders — checked from every
// election line of every process's log and from the quorum blocks. At the end every slot runs
// again, one leader serves them all, every node sees the same items (everything each process
// committed, nothing it never wrote), and every metadata block is accounted for.
// Replay one run with CLUSTER_SEED=<seed>; CLUSTER_KEEP=1 keeps its images and logs.
import { expect, test } from "bun:test";
import {
  ELECTION_MS,
  HB_MS,
  accountVolume,
  checkOneLeaderPerTerm,
  makeClusterVolume,
  clusterScope,
  spawnNode,
  stopAll,
  waitLeader,
  type NodeProc,
} from "./harness.ts";
import { rng } from "../helpers/rng.ts";

const { vols, procs } = clusterScope();

/** Seeds run by default, and the action time each run gets (the file stays well under 90 s). */
const SEEDS = process.env.CLUSTER_SEED ? [Number(process.env.CLUSTER_SEED)] : [11, 23, 37];
const RUN_ACTIONS_MS = Number(process.env.CLUSTER_RUN_MS ?? 12_000);
const CMD_MS = HB_MS + 3000;

/**
 * What one process wrote of its tag: `written` items asked for (an upper bound: a put that timed
 * out here may still run), `applied` of them answered, `committed` answered before a sync that
 * was answered (a lower bound).
 */
interface Writer {
  tag: number;
  written: number;
  applied: number;
  committed: number;
}

async function randomRun(seed: number): Promise<string> {
  const r = rng(seed);
  const slots = r(2) === 0 ? 3 : 5;
  const majority = Math.floor(slots / 2) + 1;
  const v = await makeClusterVolume(`random${seed}`, slots);
  vols.push(v);
  const live: (NodeProc | null)[] = Array.from({ length: slots }, () => null);
  const writers = new Map<NodeProc, Writer>();
  let incarnations = 0;
  const start = (slot: number) => {
    const n = spawnNode(v, slot);
    procs.push(n);
    live[slot] = n;
    writers.set(n, { tag: slot * 100 + incarnations++, written: 0, applied: 0, committed: 0 });
    return n;
  };
  const history: string[] = [];
  const note = (s: string) => history.push(`${((performance.now() - t0) / 1000).toFixed(1)}s ${s}`);
  const t0 = performance.now();
  try {
    for (let s = 0; s < slots; s++) start(s);
    await waitLeader(live.filter((n): n is NodeProc => n !== null), 10_000);
    let steps = 0;
    while (performance.now() - t0 < RUN_ACTIONS_MS) {
      steps++;
      // processes that died on their own (fenced as an old leader, or a crash) are noted
      for (let s = 0; s < slots; s++) {
        const n = live[s];
        if (n && !n.alive) {
          note(`slot ${s} exited by itself (${n.exitCode})`);
          live[s] = null;
        }
      }
      const alive = live.filter((n): n is NodeProc => n !== null);
      const dead = live.map((n, s) => (n ? -1 : s)).filter((s) => s >= 0);
      const a = r(100);
      if (a < 45 && alive.length > 0) {
        // work: a batch of items and a commit on a random live node (it may have no server now)
        const n = alive[r(alive.length)]!;
        const w = writers.get(n)!;
        const count = 1 + r(200);
        // a command that times out here may still run in the node later (it waits for a
        // server): count its items as written before asking
        const from = w.written;
        w.written += count;
        try {
          await n.cmd(`put ${w.tag} ${from} ${count} 1`, CMD_MS);
          w.applied += count;
          await n.cmd("sync", CMD_MS);
          w.committed = w.applied; // every put answered before this sync is in it
          note(`slot ${n.slot} committed ${w.committed} items of tag ${w.tag}`);
        } catch (err) {
          note(`slot ${n.slot} work failed: ${(err as Error).message}`);
        }
      } else if (a < 62 && alive.length > 0) {
        // SIGKILL the leader if there is one, else anyone
        const st = await Promise.all(alive.map((n) => n.cmd("status", 3000).catch(() => null)));
        const leader = alive.find((_n, i) => st[i]?.server === "up") ?? alive[r(alive.length)]!;
        note(`SIGKILL slot ${leader.slot}${st[alive.indexOf(leader)]?.server === "up" ? " (leader)" : ""}`);
        leader.kill("SIGKILL");
        await leader.exited;
        live[leader.slot] = null;
      } else if (a < 72 && alive.length > 0) {
        const n = alive[r(alive.length)]!;
        note(`SIGKILL slot ${n.slot}`);
        n.kill("SIGKILL");
        await n.exited;
        live[n.slot] = null;
      } else if (a < 80 && alive.length > majority) {
        // a clean stop keeps a majority (a farewell needs a server to answer it)
        const n = alive[r(alive.length)]!;
        const code = await n.quit(15_000);
        note(`clean stop of slot ${n.slot}: exit ${code}`);
        expect(code).toBe(0);
        live[n.slot] = null;
      } else if (dead.length > 0) {
        const s = dead[r(dead.length)]!;
        start(s);
        note(`restart slot ${s}`);
      }
      // with a majority alive, a leader must come (a failover takes the heartbeat timeout)
      const now = live.filter((n): n is NodeProc => n !== null);
      if (now.length >= majority && r(3) === 0) {
        const l = await waitLeader(now, HB_MS + 10 * ELECTION_MS + 3000);
        note(`leader slot ${l.leader.slot} term ${l.term} (${l.ms.toFixed(0)} ms)`);
      }
      checkOneLeaderPerTerm(v, slots);
    }

    // everyone back: one leader, every node sees the same items, all within what was written
    for (let s = 0; s < slots; s++) if (!live[s]) start(s);
    const all = live as NodeProc[];
    const { leader, term } = await waitLeader(all, HB_MS + 10 * ELECTION_MS + 5000);
    note(`final leader slot ${leader.slot} term ${term}`);
    for (const n of all) await n.waitEvent((e) => e.event === "store-ready", 15_000);
    // what a node applied but has not committed is visible to it alone: commit it everywhere
    await Promise.all(all.map((n) => n.cmd("sync", CMD_MS * 2)));
    const want = [...writers.values()];
    let seen: Record<number, number> | null = null;
    for (const n of all) {
      const got: Record<number, number> = {};
      for (const w of want) {
        const sc = await n.cmd(`scan ${w.tag}`, CMD_MS);
        expect(sc.bad).toBe(0);
        const c = sc.count as number;
        if (c < w.committed || c > w.written) throw new Error(`slot ${n.slot} sees ${c} items of tag ${w.tag}: committed ${w.committed}, written ${w.written}`);
        got[w.tag] = c;
      }
      if (seen) expect(got).toEqual(seen);
      seen = got;
    }
    // mounts that died are fenced and reclaimed by the final server (after its lock recovery
    // or reconnect timeout): mounted_clients ends up naming exactly the live nodes
    const liveRids = all.map((n) => n.rid).sort();
    const until = performance.now() + 15_000;
    let mounted: string[] = [];
    for (;;) {
      mounted = ((await leader.cmd("server")).mounted as string[]).sort();
      if (JSON.stringify(mounted) === JSON.stringify(liveRids) || performance.now() > until) break;
      await Bun.sleep(200);
    }
    expect(mounted).toEqual(liveRids);
    note(`dead mounts reclaimed; ${(await leader.cmd("server")).departed} departed under the final server`);
    const codes = await stopAll(all);
    expect(codes).toEqual(all.map(() => 0));
    const { terms } = checkOneLeaderPerTerm(v, slots);
    const acct = accountVolume(v);
    expect(acct.dup).toEqual([]);
    expect(acct.seen).toBe(acct.total);
    expect(acct.mounted).toBe(0);
    return `seed ${seed}: ${slots} slots, ${steps} steps, ${incarnations} processes, ${terms} terms, ${want.reduce((n, w) => n + w.committed, 0)} items committed`;
  } catch (err) {
    console.error(`cluster random run failed: replay with CLUSTER_SEED=${seed} (CLUSTER_KEEP=1 keeps ${v.dir})\n  ${history.join("\n  ")}`);
    throw err;
  } finally {
    for (const n of live) n?.kill();
  }
}

for (const seed of SEEDS) {
  test(`random kills, stops and restarts (seed ${seed}): never two leaders in a term, nothing committed lost`, async () => {
    console.log(await randomRun(seed));
  }, RUN_ACTIONS_MS + 45_000);
}
