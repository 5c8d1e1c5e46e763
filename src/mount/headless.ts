/**
 * A headless node: everything a mount runs except FUSE (ARCHITECTURE.md §1 steps 1-3 and 6).
 * It is how followers run today, and how the multi-process cluster tests and the cluster
 * benchmark drive real nodes: several processes on one host sharing the image files, each in its
 * own quorum slot on its own loopback port.
 *
 *   - every node runs the quorum agent in its slot;
 *   - the elected one fences previous leaders that did not stop cleanly and starts the Server on
 *     its slot's address; losing leadership (a newer term) closes the server at once and records
 *     the stop — the node itself lives on;
 *   - EVERY node, leader or not, opens a ClientStore as a client of whichever node is the current
 *     leader (found through the quorum blocks) with the same rid as its quorum slot, so the
 *     server's fencing of a vanished client and the new leader's fencing of an old one name the
 *     same registered process. The store follows failover by itself: NetClient resolves the
 *     leader again from the quorum blocks after every lost socket and resends what was pending;
 *   - a clean stop (`shutdown()`, SIGTERM in the entry point): final commit, farewell to the
 *     current server, then the quorum resignation (our server stops, stop and end events), and
 *     the registration goes. Each step is bounded so a node without a quorum can still exit.
 *
 * A line protocol (`serveControl`) lets a test or benchmark drive the node over stdin/stdout:
 * item transactions and commits, reads, statfs, the server's view, lock requests. Events
 * (elected, server up/down, store ready, greeted) are written as JSON lines as they happen.
 * Why not FUSE here: a follower's FUSE mount needs the client lock cache to keep its kernel
 * caches coherent with the other nodes (docs/cluster.md); the item-level interface needs none.
 */
import { Device } from "../block/device.ts";
import { readSuper, type Super } from "../block/super.ts";
import { ClientStore } from "../item/client-store.ts";
import { Server, type ServerOptions } from "../server/server.ts";
import { startQuorum, validateQuorumSlot, type QuorumService } from "../quorum/service.ts";
import type { QuorumSlot } from "../quorum/blocks.ts";
import type { ServerState } from "../quorum/agent.ts";
import { Fencer, MountRegistry, DEFAULT_REGISTRY_DIR } from "../server/fence.ts";
import { ltIsFinalized } from "../server/log_trees.ts";
import { fenceMount, fencePreviousLeaders } from "./fencing.ts";
import { NetLock } from "../format/net.ts";
import { keyCompare, keyPack, type Key } from "../format/key.ts";
import * as C from "../format/constants.ts";
import { ScoutfsError } from "../util/errors.ts";
import { assert } from "../util/assert.ts";
import { randomRid } from "../client/client.ts";
import { hex16 } from "../util/hex.ts";

/** How long a busy quorum port is retried (a node that just stopped may still hold it). */
const QUORUM_BIND_RETRY_MS = 5000;
/** Bounds of the clean stop: the final commit and farewell, then the server's wind-down. */
const SHUTDOWN_FAREWELL_MS = 10_000;
const SHUTDOWN_SERVER_MS = 5000;
/** Pause between attempts to open the store while no server answers. */
const STORE_RETRY_MS = 200;
/** Items a single `put` command may write (one transaction). */
const MAX_PUT_ITEMS = 100_000;

export interface HeadlessOptions {
  metaPath: string;
  dataPath: string;
  slot: number;
  heartbeatTimeoutMs: number;
  registryDir?: string;
  /** Commit dirty items on a timer this often (0: only when asked). */
  commitIntervalMs?: number;
  /** The server's wait for a vanished client before fencing it (reconnect timeout). */
  clientReconnectTimeoutMs?: number;
  /** A new server's wait for previously mounted clients' lock recovery. */
  lockRecoveryTimeoutMs?: number;
  keepaliveTimeoutMs?: number;
  /** Extra server options (tests: fill targets, merge pacing). */
  server?: Partial<Pick<ServerOptions, "fill" | "mergeCommits" | "mergeIntervalMs" | "mergeRoundTimeoutMs">>;
  log: (msg: string) => void;
  event?: (ev: Record<string, unknown>) => void;
}


/** A lock this node holds, as the server granted it (lock requests are driven by the control). */
interface HeldLock {
  key: Key;
  mode: number;
  writeSeq: bigint;
}

export class HeadlessNode {
  readonly rid = randomRid();
  readonly fsid: bigint;
  readonly qdev: Device;
  readonly sup: Super;
  readonly slots: QuorumSlot[];
  private readonly registry: MountRegistry;
  private readonly fencer: Fencer;
  private quorum: QuorumService | null = null;
  server: Server | null = null;
  private serverState: ServerState = "down";
  private serverTerm = 0n;
  store: ClientStore | null = null;
  private storeIsReady!: (s: ClientStore) => void;
  private readonly storeReady = new Promise<ClientStore>((resolve) => (this.storeIsReady = resolve));
  private storeOpening: Promise<void> | null = null;
  private stopping = false;
  greetedTerm = 0n;
  private invalidDatagrams = 0;
  readonly locks = new Map<string, HeldLock>();
  /** Our lock requests waiting for their grant, by lock; see lockInvalidated. */
  private readonly lockPending = new Map<string, { mode: number; invalidated: NetLock | null }>();
  /** Waiters for a lock's mode to change through an invalidation. */
  private readonly lockWaiters = new Map<string, (() => void)[]>();
  readonly counters = { elections: 0, serverStarts: 0, serverStops: 0, greetings: 0, newServers: 0, invalidations: 0 };

  private constructor(private readonly o: HeadlessOptions) {
    this.qdev = Device.open(o.metaPath, { write: true });
    try {
      this.sup = readSuper(this.qdev, { meta: true });
      const ddev = Device.open(o.dataPath);
      try {
        if (ddev.sameAs(this.qdev)) throw new ScoutfsError("EINVAL", "the metadata and data devices are the same file");
        readSuper(ddev, { meta: false, fsid: this.sup.hdr.fsid });
      } finally {
        ddev.close();
      }
      this.fsid = this.sup.hdr.fsid;
      this.slots = validateQuorumSlot(this.sup.qconf.slots, o.slot);
    } catch (err) {
      this.qdev.close();
      throw err;
    }
    this.registry = new MountRegistry(o.registryDir ?? DEFAULT_REGISTRY_DIR, this.fsid);
    this.fencer = Fencer.fromEnv(this.registry, o.log);
  }

  private event(ev: Record<string, unknown>): void {
    this.o.event?.(ev);
  }

  /** Join the quorum and start opening the store (it connects once some node serves). */
  static async start(o: HeadlessOptions): Promise<HeadlessNode> {
    const n = new HeadlessNode(o);
    n.registry.register(n.rid);
    const until = performance.now() + QUORUM_BIND_RETRY_MS;
    for (;;) {
      try {
        n.quorum = await n.startQuorumOnce();
        break;
      } catch (err) {
        if (err instanceof ScoutfsError && err.code === "EBUSY" && performance.now() < until) {
          await Bun.sleep(100);
          continue;
        }
        n.registry.unregister(n.rid);
        n.qdev.close();
        throw err;
      }
    }
    o.log(`node slot ${o.slot} rid ${hex16(n.rid)} pid ${process.pid} started: fsid ${hex16(n.fsid)}, heartbeat timeout ${o.heartbeatTimeoutMs} ms`);
    n.storeOpening = n.openStore();
    return n;
  }

  private startQuorumOnce(): Promise<QuorumService> {
    return startQuorum({
      dev: this.qdev,
      fsid: this.fsid,
      slots: this.sup.qconf.slots,
      slot: this.o.slot,
      rid: this.rid,
      heartbeatTimeoutMs: this.o.heartbeatTimeoutMs,
      server: {
        start: (term) => this.serverStart(term),
        stop: () => this.serverStop(),
        state: () => this.serverState,
      },
      log: (ev) => {
        const j = JSON.stringify(ev, (_k, v) => (typeof v === "bigint" ? String(v) : v));
        if (ev.what === "elected") {
          // the line the cluster tests collect: one leader per term, across every run
          this.counters.elections++;
          this.o.log(`quorum: elected term ${ev.term} slot ${this.o.slot} rid ${hex16(this.rid)} votes ${ev.votes}`);
          this.event({ event: "elected", term: String(ev.term) });
        } else if (ev.what !== "invalid-message" && ev.what !== "vote") this.o.log(`quorum: ${j}`);
        // garbage must not fill the log: the first few, then every 1000th
        if (ev.what === "invalid-message" && (++this.invalidDatagrams <= 16 || this.invalidDatagrams % 1000 === 0)) {
          this.o.log(`quorum: ignored a datagram (${this.invalidDatagrams} so far): ${ev.reason}`);
        }
      },
    });
  }

  // -------------------------------------------------------------------------------------------
  // The server role

  private serverStart(term: bigint): void {
    assert(this.serverState === "down", `server start in term ${term} while ${this.serverState}`);
    this.serverState = "starting";
    this.serverTerm = term;
    this.counters.serverStarts++;
    this.startServer(term).then(
      (srv) => {
        if (this.serverState !== "starting" || this.serverTerm !== term) {
          // demoted while fencing: never serve an old term
          srv.close();
          return;
        }
        this.server = srv;
        this.serverState = "up";
        this.o.log(`server: up for term ${term} on port ${srv.port}`);
        this.event({ event: "server-up", term: String(term), port: srv.port });
        this.quorum?.agent.poke();
      },
      (err) => {
        this.o.log(`server: could not start for term ${term}: ${(err as Error).message}`);
        this.serverState = "down";
        this.event({ event: "server-failed", term: String(term), error: (err as Error).message });
        this.quorum?.agent.poke();
      },
    );
  }

  /** Fence earlier leaders that never recorded a clean stop, then open the volume as its server. */
  private async startServer(term: bigint): Promise<Server> {
    const fencedRids = await fencePreviousLeaders(
      { qdev: this.qdev, fsid: this.fsid, slots: this.slots, term, rid: this.rid, fencer: this.fencer, registry: this.registry, log: this.o.log },
      (rid, reason) => this.event({ event: "fenced", rid: hex16(rid), reason }),
    );
    return Server.start({
      metaPath: this.o.metaPath,
      term,
      slot: this.o.slot,
      fencedRids,
      ...this.o.server,
      ...(this.o.lockRecoveryTimeoutMs !== undefined ? { lockRecoveryTimeoutMs: this.o.lockRecoveryTimeoutMs } : {}),
      net: {
        log: (level, m) => this.o.log(`net ${level}: ${m}`),
        ...(this.o.clientReconnectTimeoutMs !== undefined ? { reconnect_timeout_ms: this.o.clientReconnectTimeoutMs } : {}),
        ...(this.o.keepaliveTimeoutMs !== undefined ? { keepalive_timeout_ms: this.o.keepaliveTimeoutMs } : {}),
      },
      log: (m) => this.o.log(`server: ${m}`),
      fence: async (rid, ipv4) => {
        const reason = "mount stopped responding";
        await fenceMount(this.fencer, this.registry, { rid, ipv4, reason }, this.o.log);
        this.event({ event: "fenced", rid: hex16(rid), reason });
      },
    });
  }

  private serverStop(): void {
    if (this.serverState === "down") return;
    const term = this.serverTerm;
    this.serverState = "stopping";
    try {
      this.server?.close();
    } catch (err) {
      this.o.log(`server: stopping failed: ${(err as Error).message}`);
    }
    this.server = null;
    this.serverState = "down";
    this.counters.serverStops++;
    this.o.log(`server: stopped (term ${term})${this.stopping ? "" : ": no longer the leader; the client carries on"}`);
    this.event({ event: "server-down", term: String(term) });
    // the agent records the stop and resigns when it re-evaluates; not from inside its own step
    queueMicrotask(() => this.quorum?.agent.poke());
  }

  // -------------------------------------------------------------------------------------------
  // The client role

  private async openStore(): Promise<void> {
    while (!this.stopping) {
      try {
        const store = await ClientStore.open({
          metaPath: this.o.metaPath,
          dataPath: this.o.dataPath,
          commitIntervalMs: this.o.commitIntervalMs ?? 0,
          // as a mount does: our own server, while it runs, flushes our commits' blocks
          colocatedServerTerm: (dev) => this.server?.recordsOn(dev) ?? null,
          client: {
            rid: this.rid,
            quorum: true,
            net: { connect_delay_ms: 100, log: (level, m) => this.o.log(`net ${level}: ${m}`), ...(this.o.keepaliveTimeoutMs !== undefined ? { keepalive_timeout_ms: this.o.keepaliveTimeoutMs } : {}) },
            onGreeted: ({ server_term, new_server }) => {
              this.counters.greetings++;
              if (new_server) this.counters.newServers++;
              this.greetedTerm = server_term;
              if (new_server) this.o.log(`client: greeted the server of term ${server_term}`);
              this.event({ event: "greeted", term: String(server_term), newServer: new_server });
            },
            onLockInvalidate: (nl) => this.lockInvalidated(nl),
            onLockRecover: (from) => this.locksFrom(from),
          },
        });
        if (this.stopping) {
          store.abandon();
          return;
        }
        this.store = store;
        this.storeIsReady(store);
        this.o.log(`client: store open (log tree nr ${store.lt.nr})`);
        this.event({ event: "store-ready", rid: hex16(this.rid) });
        return;
      } catch (err) {
        if (this.stopping) return;
        this.o.log(`client: no server yet (${(err as Error).message}); retrying`);
        await Bun.sleep(STORE_RETRY_MS);
      }
    }
  }

  /**
   * The store, once a server has answered. Commands wait for it, bounded, and resume in the order
   * they started waiting (a later `sync` never overtakes an earlier `put`).
   */
  async waitStore(timeoutMs: number): Promise<ClientStore> {
    if (this.store) return this.store;
    if (this.stopping) throw new ScoutfsError("ENOLINK", "the node is stopping");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_r, reject) => {
      timer = setTimeout(() => reject(new ScoutfsError("ENOLINK", `no server answered within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([this.storeReady, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * An invalidation: we now hold `new_mode`. The server sends it only for a mode it granted, and
   * the wire keeps order, but a grant's response and the invalidation that follows it can arrive
   * in one read: the invalidation handler then runs before the code awaiting the grant. So an
   * invalidation of the very mode a request of ours is waiting for (and that we do not hold yet)
   * is for that grant: answered now, applied right after the grant is.
   */
  private lockInvalidated(nl: NetLock): NetLock {
    this.counters.invalidations++;
    const id = keyIdOf(nl.key);
    const pending = this.lockPending.get(id);
    if (pending && pending.mode === nl.old_mode && this.heldMode(nl.key) !== nl.old_mode) pending.invalidated = nl;
    else this.applyInvalidation(nl);
    return nl;
  }

  private applyInvalidation(nl: NetLock): void {
    const id = keyIdOf(nl.key);
    const held = this.locks.get(id);
    if (nl.new_mode === C.LOCK_NULL) this.locks.delete(id);
    else this.locks.set(id, { key: nl.key, mode: nl.new_mode, writeSeq: held?.writeSeq ?? 0n });
    for (const w of this.lockWaiters.get(id) ?? []) w();
    this.lockWaiters.delete(id);
  }

  private locksFrom(from: Key): NetLock[] {
    return [...this.locks.values()]
      .filter((l) => keyCompare(l.key, from) >= 0)
      .sort((a, b) => keyCompare(a.key, b.key))
      .map((l) => ({ key: l.key, write_seq: l.writeSeq, old_mode: l.mode, new_mode: l.mode }) as NetLock);
  }

  /** Ask the server for `mode` on the lock starting at `key`; resolves when granted. */
  async lock(key: Key, mode: number): Promise<void> {
    const store = await this.waitStore(30_000);
    const id = keyIdOf(key);
    const held = this.locks.get(id)?.mode ?? C.LOCK_NULL;
    if (this.lockPending.has(id)) throw new ScoutfsError("EBUSY", "a request for this lock is already waiting");
    const pending: { mode: number; invalidated: NetLock | null } = { mode, invalidated: null };
    this.lockPending.set(id, pending);
    let grant: NetLock;
    try {
      grant = await store.client.lock({ key, write_seq: 0n, old_mode: held, new_mode: mode } as NetLock);
    } finally {
      this.lockPending.delete(id);
    }
    if (grant.new_mode === C.LOCK_NULL) this.locks.delete(id);
    else this.locks.set(id, { key, mode: grant.new_mode, writeSeq: grant.write_seq });
    if (grant.write_seq > 0n) store.noteWriteSeq(grant.write_seq);
    if (pending.invalidated) this.applyInvalidation(pending.invalidated);
  }

  /** Resolve when an invalidation changes the lock at `key`, or after `ms`. */
  waitInvalidated(key: Key, ms: number): Promise<boolean> {
    const id = keyIdOf(key);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      const list = this.lockWaiters.get(id) ?? [];
      list.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
      this.lockWaiters.set(id, list);
    });
  }

  heldMode(key: Key): number {
    return this.locks.get(keyIdOf(key))?.mode ?? C.LOCK_NULL;
  }

  status(): Record<string, unknown> {
    const q = this.quorum?.agent.status();
    return {
      slot: this.o.slot,
      rid: hex16(this.rid),
      pid: process.pid,
      role: q?.role,
      term: String(q?.term ?? 0n),
      server: this.serverState,
      serverTerm: String(this.serverState === "down" ? 0n : this.serverTerm),
      store: this.store !== null,
      greetedTerm: String(this.greetedTerm),
      commits: this.store?.counters.commits ?? 0,
      counters: { ...this.counters },
    };
  }

  /** The server's view (leader only): mounted clients, log trees and their allocators, statfs. */
  serverView(): Record<string, unknown> {
    const srv = this.server;
    if (!srv || this.serverState !== "up") throw new ScoutfsError("ENOLINK", "this node is not serving");
    const st = srv.statfs();
    return {
      term: String(this.serverTerm),
      mounted: srv.mountedRids().map(hex16),
      logTrees: srv.lts.all().map((lt) => ({
        rid: hex16(lt.rid),
        nr: String(lt.nr),
        finalized: ltIsFinalized(lt),
        metaAvail: String(lt.meta_avail.total_nr),
        metaFreed: String(lt.meta_freed.total_nr),
        dataAvail: String(lt.data_avail.total_len),
        dataFreed: String(lt.data_freed.total_len),
      })),
      statfs: { freeMeta: String(st.free_meta_blocks), freeData: String(st.free_data_blocks), inodes: String(st.inode_count) },
      departed: srv.counters.departed,
      merges: srv.merge.counters.merges,
      netInvalid: srv.net.counters.recv_invalid_message,
    };
  }

  /**
   * Stop cleanly: final commit and farewell (bounded: without a server there is nobody to say it
   * to), then resign from the quorum (our server stops first), unregister, close the device.
   */
  async shutdown(): Promise<{ clean: boolean }> {
    if (this.stopping) return { clean: false };
    this.stopping = true;
    let clean = true;
    await this.storeOpening;
    const store = this.store;
    this.store = null;
    if (store) {
      const done = store.close().then(
        () => "ok" as const,
        (err) => {
          this.o.log(`client: final commit or farewell failed: ${(err as Error).message}`);
          return "failed" as const;
        },
      );
      const r = await Promise.race([done, Bun.sleep(SHUTDOWN_FAREWELL_MS).then(() => "timeout" as const)]);
      if (r === "timeout") {
        this.o.log(`client: no farewell answer within ${SHUTDOWN_FAREWELL_MS} ms; leaving without it`);
        store.abandon();
      }
      if (r !== "ok") clean = false;
      else this.o.log("client: final commit and farewell done");
    }
    await this.quorum?.shutdown(async () => {
      const end = performance.now() + SHUTDOWN_SERVER_MS;
      while (this.serverState !== "down" && performance.now() < end) await Bun.sleep(10);
    });
    this.o.log("quorum: resigned (stop and end events recorded)");
    this.registry.unregister(this.rid);
    this.qdev.close();
    return { clean };
  }
}

function keyIdOf(k: Key): string {
  return keyPack(k);
}

// ---------------------------------------------------------------------------------------------
// The control protocol: one command per stdin line, `ID CMD ARGS...`; one JSON answer per
// command, `{"id":ID,"ok":true,...}` or `{"id":ID,"ok":false,"error":"..."}`; events as
// `{"event":...}` lines in between.

/** The items a node writes for `tag`: a fake inode per tag, one xattr-type item per index. */
export function controlKey(tag: number, i: number): Key {
  return { zone: C.FS_ZONE, first: BigInt(1_000_000 + tag), type: C.XATTR_TYPE, second: BigInt(i), third: 0n, fourth: 0 };
}

export function controlVal(tag: number, i: number, gen: number): Uint8Array {
  const v = new Uint8Array(8 + ((i * 13 + gen) % 64));
  const dv = new DataView(v.buffer);
  dv.setUint32(0, i, true);
  dv.setUint32(4, gen, true);
  for (let b = 8; b < v.length; b++) v[b] = (tag + i + b + gen) & 0xff;
  return v;
}

function lockKey(n: number): Key {
  return { zone: C.FS_ZONE, first: BigInt(2_000_000 + n), type: 0, second: 0n, third: 0n, fourth: 0 };
}

function int(s: string | undefined, what: string, max = 1e9): number {
  const n = Number(s);
  if (s === undefined || !Number.isInteger(n) || n < 0 || n > max) throw new ScoutfsError("EINVAL", `bad ${what} '${s}'`);
  return n;
}

const STORE_WAIT_MS = 30_000;

export async function controlCommand(node: HeadlessNode, words: string[]): Promise<Record<string, unknown>> {
  const [cmd, ...a] = words;
  switch (cmd) {
    case "status":
      return node.status();
    case "put": {
      // put TAG FROM COUNT GEN: one transaction
      const [tag, from, count, gen] = [int(a[0], "tag"), int(a[1], "from"), int(a[2], "count", MAX_PUT_ITEMS), int(a[3], "gen")];
      const s = await node.waitStore(STORE_WAIT_MS);
      s.transact((w) => {
        for (let i = from; i < from + count; i++) w.put(keyPack(controlKey(tag, i)), controlVal(tag, i, gen));
      });
      return {};
    }
    case "del": {
      const [tag, from, count] = [int(a[0], "tag"), int(a[1], "from"), int(a[2], "count", MAX_PUT_ITEMS)];
      const s = await node.waitStore(STORE_WAIT_MS);
      s.transact((w) => {
        for (let i = from; i < from + count; i++) w.delete(keyPack(controlKey(tag, i)));
      });
      return {};
    }
    case "sync": {
      const s = await node.waitStore(STORE_WAIT_MS);
      const t0 = performance.now();
      await s.sync();
      return { ms: performance.now() - t0, seq: String(s.transSeq()) };
    }
    case "scan": {
      // scan TAG: every item of the tag after refreshing the roots: count, and the gen of each
      // item whose value is as written (mismatches counted)
      const tag = int(a[0], "tag");
      const s = await node.waitStore(STORE_WAIT_MS);
      await s.refreshRoots();
      const end = keyPack(controlKey(tag + 1, 0));
      let k = keyPack(controlKey(tag, 0));
      let n = 0;
      let bad = 0;
      const gens: Record<string, number> = {};
      for (;;) {
        const it = s.reader.next(k, end);
        if (!it || it.key >= end) break;
        const dv = new DataView(it.val.buffer, it.val.byteOffset, it.val.byteLength);
        const i = it.val.length >= 8 ? dv.getUint32(0, true) : -1;
        const gen = it.val.length >= 8 ? dv.getUint32(4, true) : -1;
        if (i < 0 || keyPack(controlKey(tag, i)) !== it.key || !bytesEqual(it.val, controlVal(tag, i, gen))) bad++;
        else gens[gen] = (gens[gen] ?? 0) + 1;
        n++;
        k = keyPack(controlKey(tag, i + 1));
      }
      return { count: n, bad, gens };
    }
    case "statfs": {
      const s = await node.waitStore(STORE_WAIT_MS);
      const st = await s.client.statfs();
      return { freeMeta: String(st.free_meta_blocks), totalMeta: String(st.total_meta_blocks), freeData: String(st.free_data_blocks), totalData: String(st.total_data_blocks), inodes: String(st.inode_count) };
    }
    case "server":
      return node.serverView();
    case "lock": {
      // lock N MODE: one request, its round trip time
      const n = int(a[0], "lock"), mode = int(a[1], "mode", C.LOCK_WRITE_ONLY);
      const t0 = performance.now();
      await node.lock(lockKey(n), mode);
      return { ms: performance.now() - t0 };
    }
    case "held":
      // held N: the mode this node holds on lock N, and invalidations received so far
      return { mode: node.heldMode(lockKey(int(a[0], "lock"))), invalidations: node.counters.invalidations };
    case "lockbench": {
      // lockbench N COUNT: COUNT requests alternating write and null on lock N
      const n = int(a[0], "lock"), count = int(a[1], "count", 1e7);
      await node.waitStore(STORE_WAIT_MS);
      const t0 = performance.now();
      for (let i = 0; i < count; i++) await node.lock(lockKey(n), i % 2 === 0 ? C.LOCK_WRITE : C.LOCK_NULL);
      return { count, ms: performance.now() - t0 };
    }
    case "lockpingpong": {
      // lockpingpong N MS: take write on lock N, wait for another node to take it away, again,
      // for MS; run on two nodes at once, every grant costs an invalidation of the other
      const n = int(a[0], "lock"), ms = int(a[1], "ms", 600_000);
      await node.waitStore(STORE_WAIT_MS);
      const key = lockKey(n);
      const end = performance.now() + ms;
      let grants = 0;
      while (performance.now() < end) {
        if (node.heldMode(key) !== C.LOCK_WRITE) {
          await node.lock(key, C.LOCK_WRITE);
          grants++;
        } else await node.waitInvalidated(key, Math.max(1, end - performance.now()));
      }
      return { grants, ms };
    }
    default:
      throw new ScoutfsError("EINVAL", `unknown command '${cmd}'`);
  }
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Serve the control protocol on stdin/stdout until `quit`, end of input or SIGTERM/SIGINT (each
 * a clean stop). Commands run concurrently; answers carry their id. Resolves with the exit status.
 */
export async function serveControl(node: HeadlessNode, write: (line: string) => void): Promise<number> {
  let quit!: () => void;
  const quitting = new Promise<void>((r) => (quit = r));
  const onSignal = () => quit();
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  const reply = (obj: Record<string, unknown>) => write(JSON.stringify(obj, (_k, v) => (typeof v === "bigint" ? String(v) : v)));
  const reader = (async () => {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of Bun.stdin.stream()) {
      buf += dec.decode(chunk);
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        const [id, ...words] = line.split(/\s+/);
        if (words[0] === "quit") {
          quit();
          return;
        }
        controlCommand(node, words).then(
          (r) => reply({ id, ok: true, ...r }),
          (err) => reply({ id, ok: false, error: (err as Error).message }),
        );
      }
    }
    quit(); // stdin closed: the driver is gone
  })();
  void reader;
  await quitting;
  process.off("SIGTERM", onSignal);
  process.off("SIGINT", onSignal);
  const r = await node.shutdown();
  reply({ event: "stopped", clean: r.clean });
  return r.clean ? 0 : 1;
}
