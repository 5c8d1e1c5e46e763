/**
 * Benchmark: a cluster of headless node processes on loopback (src/mount/headless.ts, driven
 * through test/cluster/node-main.ts), sharing sparse image files made by our mkfs.
 *
 *   bun scripts/bench/cluster.ts [--slots N,N] [--runs N] [--lock-ms MS]
 *
 * Measured, each over --runs fresh clusters of --slots nodes (default 3 and 5):
 *   election  cold start: all nodes spawned at once until the first one is elected / its server
 *             accepts (from the spawn, so process start-up is included; also from the moment the
 *             last node reported its quorum agent running);
 *   failover  SIGKILL of the leader until a survivor is elected / its server accepts / a
 *             survivor's client has reconnected and committed a transaction through it;
 *   locks     lock requests between two nodes (a follower's client and the leader's server):
 *             alternating write and null requests on one lock, each a round trip; the same from
 *             the leader's own client over loopback; and two nodes taking write on one lock in
 *             turn, so every grant first invalidates the other node's.
 * The peer measured in the same run is a TCP echo of 48-byte messages (a net_lock's size) between
 * two Bun processes on loopback: the round trip rate with no protocol above it.
 * Timeouts in force are printed with the table: a failover cannot beat the heartbeat timeout.
 */
import * as os from "node:os";
import * as path from "node:path";
import { makeClusterVolume, removeClusterVolume, spawnNode, stopAll, waitLeader, HB_MS, type NodeProc, type NodeTuning } from "../../test/cluster/harness.ts";
import * as C from "../../src/format/constants.ts";

interface Opts {
  slots: number[];
  runs: number;
  lockMs: number;
}

function parse(argv: string[]): Opts {
  const o: Opts = { slots: [3, 5], runs: 3, lockMs: 3000 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = argv[++i];
    if (a === "--slots") o.slots = v!.split(",").map(Number);
    else if (a === "--runs") o.runs = Number(v);
    else if (a === "--lock-ms") o.lockMs = Number(v);
    else throw new Error(`unknown argument ${a}`);
  }
  return o;
}

const TUNING: NodeTuning = {
  heartbeatTimeoutMs: HB_MS,
  clientReconnectTimeoutMs: 5000,
  lockRecoveryTimeoutMs: 5000,
  keepaliveTimeoutMs: 10_000,
  commitIntervalMs: 0,
};

/** Lock requests per uncontended measurement (alternating write and null). */
const LOCK_REQUESTS = 5000;

function stats(xs: number[]): string {
  const s = [...xs].sort((a, b) => a - b);
  const med = s[Math.floor(s.length / 2)]!;
  return `${med.toFixed(0)} (${s[0]!.toFixed(0)}–${s[s.length - 1]!.toFixed(0)})`;
}

async function electionAndFailover(slots: number, runs: number) {
  const out = { spawnToElected: [] as number[], agentsToElected: [] as number[], spawnToServer: [] as number[], killToElected: [] as number[], killToServer: [] as number[], killToCommit: [] as number[] };
  for (let run = 0; run < runs; run++) {
    const v = await makeClusterVolume(`bench${slots}`, slots, { metaMiB: 16 * 1024, dataMiB: 16 * 1024 });
    const t0 = performance.now();
    const nodes = Array.from({ length: slots }, (_, s) => spawnNode(v, s, TUNING));
    try {
      const started = await Promise.all(nodes.map((n) => n.waitEvent((e) => e.event === "started", 10_000)));
      const allStarted = Math.max(...started.map((e) => e.at as number));
      const el = await Promise.any(nodes.map((n) => n.waitEvent((e) => e.event === "elected", 10_000)));
      const up = await Promise.any(nodes.map((n) => n.waitEvent((e) => e.event === "server-up", 10_000)));
      out.spawnToElected.push((el.at as number) - t0);
      out.agentsToElected.push(Math.max(0, (el.at as number) - allStarted));
      out.spawnToServer.push((up.at as number) - t0);
      const { leader } = await waitLeader(nodes, 5000);
      for (const n of nodes) await n.waitEvent((e) => e.event === "store-ready", 10_000);
      for (const n of nodes) {
        await n.cmd(`put ${n.slot} 0 100 1`);
        await n.cmd("sync");
      }
      const survivors = nodes.filter((n) => n !== leader);
      const marks = survivors.map((n) => n.events.length);
      const k0 = performance.now();
      leader.kill("SIGKILL");
      const writer = survivors[0]!;
      await writer.cmd(`put ${writer.slot} 100 10 2`);
      const commit = writer.cmd("sync", 30_000).then(() => performance.now());
      const e2 = await Promise.any(survivors.map((n, i) => n.waitEvent((e) => e.event === "elected", 30_000, marks[i])));
      const u2 = await Promise.any(survivors.map((n, i) => n.waitEvent((e) => e.event === "server-up", 30_000, marks[i])));
      out.killToElected.push((e2.at as number) - k0);
      out.killToServer.push((u2.at as number) - k0);
      out.killToCommit.push((await commit) - k0);
      await stopAll(survivors);
    } finally {
      for (const n of nodes) n.kill();
      removeClusterVolume(v);
    }
  }
  return out;
}

async function locks(lockMs: number) {
  const v = await makeClusterVolume("benchlocks", 2, { metaMiB: 16 * 1024, dataMiB: 16 * 1024 });
  const nodes = [spawnNode(v, 0, TUNING), spawnNode(v, 1, TUNING)];
  try {
    const { leader } = await waitLeader(nodes, 10_000);
    const follower = nodes.find((n) => n !== leader)!;
    for (const n of nodes) await n.waitEvent((e) => e.event === "store-ready", 10_000);
    const count = async (n: NodeProc, lock: number) => {
      await n.cmd(`lockbench ${lock} 200`); // warm up
      const r = await n.cmd(`lockbench ${lock} ${LOCK_REQUESTS}`, 120_000);
      return ((r.count as number) / (r.ms as number)) * 1000;
    };
    const remote = await count(follower, 1);
    const local = await count(leader, 2);
    const pp = await Promise.all([leader.cmd(`lockpingpong 3 ${lockMs}`, lockMs + 30_000), follower.cmd(`lockpingpong 3 ${lockMs}`, lockMs + 30_000)]);
    const grants = pp.reduce((n, r) => n + (r.grants as number), 0);
    await stopAll(nodes);
    return { remote, local, pingpong: (grants / lockMs) * 1000 };
  } finally {
    for (const n of nodes) n.kill();
    removeClusterVolume(v);
  }
}

/** The peer: 48-byte request/response over loopback TCP between two Bun processes. */
async function tcpEcho(ms: number): Promise<number> {
  const script = path.join(os.tmpdir(), `scoutfs-bench-echo-${process.pid}.ts`);
  await Bun.write(
    script,
    `const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data(sock, d) { sock.write(d); } } });\nconsole.log(s.port);\nawait new Promise(() => {});\n`,
  );
  const child = Bun.spawn([process.execPath, script], { stdout: "pipe" });
  try {
    const reader = child.stdout.getReader();
    const { value } = await reader.read();
    const port = Number(new TextDecoder().decode(value).trim());
    let got = 0;
    let wake: (() => void) | null = null;
    const sock = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data(_s, d) {
          got += d.length;
          if (got >= 48) {
            got -= 48;
            wake?.();
          }
        },
      },
    });
    sock.setNoDelay(true);
    const msg = new Uint8Array(48);
    const end = performance.now() + ms;
    const t0 = performance.now();
    let n = 0;
    while (performance.now() < end) {
      const p = new Promise<void>((r) => (wake = r));
      sock.write(msg);
      await p;
      n++;
    }
    sock.end();
    return (n / (performance.now() - t0)) * 1000;
  } finally {
    child.kill();
    await Bun.file(script).delete().catch(() => {});
  }
}

const o = parse(process.argv.slice(2));
console.log(`cluster benchmark: ${o.runs} run(s) per size, ${navigator.hardwareConcurrency} CPUs, bun ${Bun.version}`);
console.log(`timeouts: quorum_heartbeat_timeout_ms ${HB_MS}, election ${C.QUORUM_ELECT_MIN_MS}+rand(${C.QUORUM_ELECT_VAR_MS}) ms, heartbeat interval ${C.QUORUM_HB_IVAL_MS} ms, client reconnect ${TUNING.clientReconnectTimeoutMs} ms, lock recovery ${TUNING.lockRecoveryTimeoutMs} ms, tcp keepalive ${TUNING.keepaliveTimeoutMs} ms, connect retry 100 ms`);
console.log("");
const rows: [string, string, string][] = [];
for (const slots of o.slots) {
  const r = await electionAndFailover(slots, o.runs);
  rows.push([`election, ${slots} nodes: spawn → elected`, stats(r.spawnToElected), "ms"]);
  rows.push([`election, ${slots} nodes: all agents up → elected`, stats(r.agentsToElected), "ms"]);
  rows.push([`election, ${slots} nodes: spawn → server accepting`, stats(r.spawnToServer), "ms"]);
  rows.push([`failover, ${slots} nodes: SIGKILL → elected`, stats(r.killToElected), "ms"]);
  rows.push([`failover, ${slots} nodes: SIGKILL → server accepting`, stats(r.killToServer), "ms"]);
  rows.push([`failover, ${slots} nodes: SIGKILL → survivor's commit done`, stats(r.killToCommit), "ms"]);
}
const l = await locks(o.lockMs);
rows.push(["locks: follower ↔ leader's server, write/null requests", l.remote.toFixed(0), "round trips/s"]);
rows.push(["locks: leader's own client ↔ its server (loopback)", l.local.toFixed(0), "round trips/s"]);
rows.push(["locks: two nodes taking write in turn (grant + invalidation)", l.pingpong.toFixed(0), "grants/s"]);
rows.push(["peer: TCP echo, 48 bytes, two Bun processes", (await tcpEcho(o.lockMs)).toFixed(0), "round trips/s"]);
const w0 = Math.max(...rows.map((r) => r[0].length));
const w1 = Math.max(...rows.map((r) => r[1].length), 8);
console.log(`${"measure".padEnd(w0)}  ${"median (min–max)".padStart(w1)}  unit`);
for (const [a, b, c] of rows) console.log(`${a.padEnd(w0)}  ${b.padStart(w1)}  ${c}`);
