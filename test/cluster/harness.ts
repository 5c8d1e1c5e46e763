/**
 * Multi-process clusters for the tests and the benchmark: a volume made by our mkfs on sparse
 * image files with N quorum slots on 127.0.0.1 (each its own port, from test/helpers/ports.ts),
 * and headless node processes (node-main.ts) driven over stdin/stdout. Every node logs to one
 * file per slot (appended across restarts) so a test can read every election that happened.
 */
import { afterAll } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Subprocess } from "bun";
import { mkfs } from "../../src/offline/mkfs.ts";
import { Device } from "../../src/block/device.ts";
import { readSuper } from "../../src/block/super.ts";
import { presentSlots, readQuorumBlock } from "../../src/quorum/blocks.ts";
import * as C from "../../src/format/constants.ts";
import { MetaCache } from "../../src/block/cache.ts";
import { ListAlloc } from "../../src/alloc/list.ts";
import { ExtentAlloc } from "../../src/alloc/extents.ts";
import { btreeExtentOps } from "../../src/alloc/btree-ops.ts";
import { btreeItems, btreeWalkNodes } from "../../src/btree/cow.ts";
import { LogTrees } from "../../src/format/log_trees.ts";
import type { HeadlessOptions } from "../../src/mount/headless.ts";
import { BUN, sparseFile, tempDir } from "../helpers/images.ts";
import { freePorts } from "../helpers/ports.ts";

export const NODE_MAIN = path.join(import.meta.dir, "node-main.ts");
/** The shortest heartbeat timeout scoutfs allows: failover tests wait for it. */
export const HB_MS = C.QUORUM_MIN_HB_TIMEO_MS;
/** One election: the longest randomized election timeout. */
export const ELECTION_MS = C.QUORUM_ELECT_MIN_MS + C.QUORUM_ELECT_VAR_MS;
/** Small allocator fill targets so several mounts share small sparse devices. */
export const SMALL_FILL = { metaLo: 256, metaTarget: 1024, dataLo: 2048n, dataTarget: 8192n };

export interface ClusterVolume {
  dir: string;
  metaPath: string;
  dataPath: string;
  runDir: string;
  fsid: bigint;
  ports: number[];
  logPath(slot: number): string;
}

export async function makeClusterVolume(name: string, slots: number, o: { metaMiB?: number; dataMiB?: number } = {}): Promise<ClusterVolume> {
  const dir = tempDir(`scoutfs-cluster-${name}-`);
  const ports = await freePorts(slots);
  const metaPath = sparseFile(path.join(dir, "meta.img"), (o.metaMiB ?? 2048) * 1024 * 1024);
  const dataPath = sparseFile(path.join(dir, "data.img"), (o.dataMiB ?? 1024) * 1024 * 1024);
  const r = mkfs(
    { metaPath, dataPath, allowSmallSize: true, slots: ports.map((port, nr) => ({ nr, addr: 0x7f000001, port })) },
    { out: () => {}, warn: () => {} },
  );
  const runDir = path.join(dir, "run");
  fs.mkdirSync(runDir);
  return { dir, metaPath, dataPath, runDir, fsid: r.fsid, ports, logPath: (slot) => path.join(dir, `node${slot}.log`) };
}

export type NodeEvent = Record<string, unknown> & { event?: string; id?: string; ok?: boolean };

/** One node process. */
export class NodeProc {
  readonly events: NodeEvent[] = [];
  private readonly answers = new Map<string, (a: NodeEvent) => void>();
  private nextId = 1;
  private waiters: (() => void)[] = [];
  exitCode: number | null = null;
  readonly exited: Promise<number>;
  rid = "";
  readonly startedAt = performance.now();

  constructor(readonly slot: number, readonly proc: Subprocess<"pipe", "pipe", "pipe">) {
    this.exited = proc.exited.then((c) => {
      this.exitCode = c;
      for (const a of this.answers.values()) a({ ok: false, error: `node exited with ${c}` });
      this.answers.clear();
      this.wake();
      return c;
    });
    void this.pump();
    void new Response(proc.stderr).text().then((t) => {
      if (t.trim()) this.events.push({ event: "stderr", text: t });
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private async pump(): Promise<void> {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of this.proc.stdout) {
      buf += dec.decode(chunk);
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let ev: NodeEvent;
        try {
          ev = JSON.parse(line) as NodeEvent;
        } catch {
          ev = { event: "garbage", text: line };
        }
        ev.at = performance.now();
        if (ev.id !== undefined && this.answers.has(String(ev.id))) {
          const a = this.answers.get(String(ev.id))!;
          this.answers.delete(String(ev.id));
          a(ev);
        } else {
          if (ev.event === "started") this.rid = String(ev.rid);
          this.events.push(ev);
        }
        this.wake();
      }
    }
  }

  get alive(): boolean {
    return this.exitCode === null;
  }

  /** Send a command; resolves with its answer (throws on an error answer or timeout). */
  async cmd(line: string, timeoutMs = 30_000): Promise<NodeEvent> {
    if (!this.alive) throw new Error(`slot ${this.slot}: node is not running (cmd ${line})`);
    const id = String(this.nextId++);
    const p = new Promise<NodeEvent>((resolve) => this.answers.set(id, resolve));
    this.proc.stdin.write(`${id} ${line}\n`);
    this.proc.stdin.flush();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const a = await Promise.race([p, new Promise<NodeEvent>((resolve) => (timer = setTimeout(() => resolve({ ok: false, error: `timed out after ${timeoutMs} ms` }), timeoutMs)))]);
    clearTimeout(timer);
    this.answers.delete(id);
    if (!a.ok) throw new Error(`slot ${this.slot}: '${line}' failed: ${a.error}`);
    return a;
  }

  /** Wait for an event matching `pred` (already received ones count, after index `from`). */
  async waitEvent(pred: (e: NodeEvent) => boolean, timeoutMs: number, from = 0): Promise<NodeEvent> {
    const end = performance.now() + timeoutMs;
    for (;;) {
      const e = this.events.slice(from).find(pred);
      if (e) return e;
      if (!this.alive) throw new Error(`slot ${this.slot}: node exited (${this.exitCode}) while waiting`);
      const left = end - performance.now();
      if (left <= 0) throw new Error(`slot ${this.slot}: timed out after ${timeoutMs} ms waiting for an event`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  kill(sig: "SIGKILL" | "SIGTERM" = "SIGKILL"): void {
    if (this.alive) this.proc.kill(sig);
  }

  /** Clean stop: quit, wait for the exit (SIGKILL after `ms`). */
  async quit(ms = 20_000): Promise<number> {
    if (!this.alive) return this.exitCode!;
    this.proc.stdin.write("0 quit\n");
    this.proc.stdin.flush();
    const t = setTimeout(() => this.kill(), ms);
    const c = await this.exited;
    clearTimeout(t);
    return c;
  }
}

export interface NodeTuning {
  heartbeatTimeoutMs?: number;
  clientReconnectTimeoutMs?: number;
  lockRecoveryTimeoutMs?: number;
  keepaliveTimeoutMs?: number;
  commitIntervalMs?: number;
  server?: HeadlessOptions["server"];
}

export const TEST_TUNING: NodeTuning = {
  heartbeatTimeoutMs: HB_MS,
  clientReconnectTimeoutMs: 3000,
  lockRecoveryTimeoutMs: 5000,
  keepaliveTimeoutMs: 6000,
  commitIntervalMs: 0,
  server: { fill: SMALL_FILL, mergeIntervalMs: 0 },
};

export function spawnNode(v: ClusterVolume, slot: number, t: NodeTuning = TEST_TUNING): NodeProc {
  const o = {
    metaPath: v.metaPath,
    dataPath: v.dataPath,
    slot,
    registryDir: v.runDir,
    logPath: v.logPath(slot),
    heartbeatTimeoutMs: t.heartbeatTimeoutMs ?? HB_MS,
    ...(t.clientReconnectTimeoutMs !== undefined ? { clientReconnectTimeoutMs: t.clientReconnectTimeoutMs } : {}),
    ...(t.lockRecoveryTimeoutMs !== undefined ? { lockRecoveryTimeoutMs: t.lockRecoveryTimeoutMs } : {}),
    ...(t.keepaliveTimeoutMs !== undefined ? { keepaliveTimeoutMs: t.keepaliveTimeoutMs } : {}),
    ...(t.commitIntervalMs !== undefined ? { commitIntervalMs: t.commitIntervalMs } : {}),
    ...(t.server ? { server: t.server } : {}),
  };
  const json = JSON.stringify(o, (_k, val) => (typeof val === "bigint" ? Number(val) : val));
  const proc = Bun.spawn([BUN, NODE_MAIN, json], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  return new NodeProc(slot, proc);
}

/** Poll until exactly one live node reports its server up; returns it. */
export async function waitLeader(nodes: readonly NodeProc[], timeoutMs: number, notTerm = 0n): Promise<{ leader: NodeProc; term: bigint; ms: number }> {
  const t0 = performance.now();
  const end = t0 + timeoutMs;
  for (;;) {
    const up: { n: NodeProc; term: bigint }[] = [];
    for (const n of nodes) {
      if (!n.alive) continue;
      const st = await n.cmd("status", 5000).catch(() => null);
      if (st && st.server === "up" && BigInt(String(st.serverTerm)) > notTerm) up.push({ n, term: BigInt(String(st.serverTerm)) });
    }
    if (up.length > 1) {
      const terms = new Set(up.map((u) => u.term));
      if (terms.size === 1) throw new Error(`two servers up in term ${up[0]!.term}: slots ${up.map((u) => u.n.slot).join(",")}`);
      // an old leader not yet demoted: the greater term wins; wait for it to settle
    }
    if (up.length === 1) return { leader: up[0]!.n, term: up[0]!.term, ms: performance.now() - t0 };
    if (performance.now() > end) throw new Error(`no single leader within ${timeoutMs} ms (${up.length} servers up)`);
    await Bun.sleep(50);
  }
}

/** Each configured slot's latest events, from the quorum blocks on the metadata image. */
export function quorumEvents(v: ClusterVolume): { slot: number; elect: bigint; electRid: bigint; stop: bigint; fence: bigint; begin: bigint; end: bigint }[] {
  const dev = Device.open(v.metaPath);
  try {
    const sup = readSuper(dev, { meta: true });
    return presentSlots(sup.qconf.slots).map((s) => {
      const b = readQuorumBlock(dev, v.fsid, s.nr).blk;
      return {
        slot: s.nr,
        elect: b.events[C.QUORUM_EVENT_ELECT]!.term,
        electRid: b.events[C.QUORUM_EVENT_ELECT]!.rid,
        stop: b.events[C.QUORUM_EVENT_STOP]!.term,
        fence: b.events[C.QUORUM_EVENT_FENCE]!.term,
        begin: b.events[C.QUORUM_EVENT_BEGIN]!.term,
        end: b.events[C.QUORUM_EVENT_END]!.term,
      };
    });
  } finally {
    dev.close();
  }
}

/** Every `elected` line in every slot's log: term -> the (slot, rid) pairs elected in it. */
export function electionsFromLogs(v: ClusterVolume, slots: number): Map<bigint, { slot: number; rid: string }[]> {
  const out = new Map<bigint, { slot: number; rid: string }[]>();
  for (let s = 0; s < slots; s++) {
    if (!fs.existsSync(v.logPath(s))) continue;
    for (const m of fs.readFileSync(v.logPath(s), "utf8").matchAll(/quorum: elected term (\d+) slot (\d+) rid ([0-9a-f]+)/g)) {
      const term = BigInt(m[1]!);
      const list = out.get(term) ?? [];
      list.push({ slot: Number(m[2]), rid: m[3]! });
      out.set(term, list);
    }
  }
  return out;
}

/**
 * The invariant: no term ever had two leaders — neither in the logs (every election of every
 * process) nor in the quorum blocks (each slot's latest elect event names a distinct term).
 */
export function checkOneLeaderPerTerm(v: ClusterVolume, slots: number): { terms: number } {
  const el = electionsFromLogs(v, slots);
  for (const [term, who] of el) {
    if (who.length !== 1) throw new Error(`term ${term} had ${who.length} leaders: ${who.map((w) => `slot ${w.slot} rid ${w.rid}`).join(", ")}`);
  }
  const ev = quorumEvents(v).filter((e) => e.elect > 0n);
  const seen = new Map<bigint, number>();
  for (const e of ev) {
    if (seen.has(e.elect)) throw new Error(`quorum blocks: slots ${seen.get(e.elect)} and ${e.slot} both record an election in term ${e.elect}`);
    seen.set(e.elect, e.slot);
    const logged = el.get(e.elect);
    if (!logged || logged[0]!.slot !== e.slot) throw new Error(`quorum block of slot ${e.slot} records an election in term ${e.elect} that no log of that slot shows`);
  }
  return { terms: el.size };
}

export function removeClusterVolume(v: ClusterVolume): void {
  if (process.env.CLUSTER_KEEP) {
    console.error(`kept cluster volume in ${v.dir}`);
    return;
  }
  fs.rmSync(v.dir, { recursive: true, force: true });
}

/** The volumes and node processes of one test file: its nodes are killed and volumes removed after it. */
export function clusterScope(): { vols: ClusterVolume[]; procs: NodeProc[] } {
  const scope = { vols: [] as ClusterVolume[], procs: [] as NodeProc[] };
  afterAll(() => {
    for (const p of scope.procs) p.kill();
    scope.vols.forEach(removeClusterVolume);
  });
  return scope;
}

/** Clean stops, followers first (their farewells need the server), then the leader. */
export async function stopAll(nodes: readonly NodeProc[]): Promise<number[]> {
  const serving = new Set<NodeProc>();
  for (const n of nodes) {
    const st = n.alive ? await n.cmd("status", 5000).catch(() => null) : null;
    if (st && st.server !== "down") serving.add(n);
  }
  await Promise.all(nodes.filter((n) => !serving.has(n)).map((n) => n.quit()));
  await Promise.all([...serving].map((n) => n.quit()));
  return nodes.map((n) => n.exitCode ?? -1);
}


/**
 * Offline metadata accounting of a stopped volume (as test/client/helpers.ts accountMeta does
 * through a live server): every metadata block is referenced by a btree or an alloc list, or
 * free in meta_alloc, exactly once. Also the data extents: free in data_alloc, or in some
 * mount's data_avail/data_freed — returned as totals.
 */
export function accountVolume(v: ClusterVolume): { seen: number; dup: bigint[]; total: number; freeMeta: bigint; mounted: number; logTrees: number } {
  const dev = Device.open(v.metaPath);
  try {
    const sup = readSuper(dev, { meta: true });
    const cache = new MetaCache(dev, sup.hdr.fsid);
    const seen = new Set<bigint>();
    const dup: bigint[] = [];
    const add = (b: bigint) => (seen.has(b) ? dup.push(b) : seen.add(b));
    const walk = (r: { ref: { blkno: bigint; seq: bigint }; height: number }) => btreeWalkNodes(cache, r, (_n, ref) => void add(ref.blkno));
    const list = (h: Parameters<typeof ListAlloc.listBlknos>[1]) => {
      const l = ListAlloc.listBlknos(cache, h);
      l.blknos.forEach(add);
      l.listBlocks.forEach(add);
    };
    for (const r of [sup.fs_root, sup.logs_root, sup.mounted_clients, sup.srch_root, sup.log_merge, sup.data_alloc.root, sup.meta_alloc[0]!.root, sup.meta_alloc[1]!.root]) walk(r);
    for (const h of [...sup.server_meta_avail, ...sup.server_meta_freed]) list(h);
    const lts = btreeItems(cache, sup.logs_root);
    for (const it of lts) {
      const lt = LogTrees.decode(it.val);
      walk(lt.item_root);
      if (lt.bloom_ref.blkno !== 0n) add(lt.bloom_ref.blkno);
      list(lt.meta_avail);
      list(lt.meta_freed);
      walk(lt.data_avail.root);
      walk(lt.data_freed.root);
    }
    const lastDev = dev.sizeBytes / BigInt(C.BLOCK_LG_SIZE) - 1n;
    const bounds = { first: BigInt(C.META_DEV_START_BLKNO), last: sup.total_meta_blocks - 1n < lastDev ? sup.total_meta_blocks - 1n : lastDev };
    let freeMeta = 0n;
    for (const r of sup.meta_alloc) {
      for (const e of new ExtentAlloc(r, btreeExtentOps, bounds).extents(cache)) for (let b = e.start; b < e.start + e.len; b++) add(b);
      freeMeta += r.total_len;
    }
    return {
      seen: seen.size,
      dup,
      total: Number(sup.total_meta_blocks) - C.META_DEV_START_BLKNO,
      freeMeta,
      mounted: btreeItems(cache, sup.mounted_clients).length,
      logTrees: lts.length,
    };
  } finally {
    dev.close();
  }
}
