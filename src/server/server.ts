/**
 * The server role (scoutfs server.c): started by the elected quorum leader inside its own
 * process, it is the only writer of the super block. It owns the global allocators, the
 * mounted_clients and logs_root btrees, next_ino, and (through merging) fs_root. Mounts talk to
 * it over TCP (src/net/) on the leader's quorum slot address.
 *
 * Requests (payloads as in format.h), each answered after the server transaction holding its
 * change is committed (trans.ts):
 *   greeting          a first-contact greeting (server_term 0) records the mount in
 *                     mounted_clients (rid -> address, QUORUM flag) before it is answered;
 *   alloc_inodes      a range [ino, ino+nr) from super.next_ino;
 *   get_log_trees     the mount's open log tree, its allocators reclaimed and refilled, a new
 *                     transaction seq (log_trees.ts); during a merge round, its tree is finalized
 *                     first (merge.ts);
 *   commit_log_trees  stores the mount's log_trees item once its blocks are written: from then on
 *                     the mount's transaction is durable;
 *   get_roots         fs_root, logs_root and srch_root of the last commit;
 *   get_last_seq      the greatest seq below every open mount transaction;
 *   statfs            free metadata/data blocks over every allocator, inode count;
 *   lock, lock_recover   the lock server (locks.ts);
 *   open_ino_map      which inodes of a group the other mounts still cache, asked of each of them
 *                     (omap.ts), before the asking mount deletes an unlinked inode;
 *   farewell          the mount's open tree is finalized (kept for merging) and its allocators
 *                     returned; its mounted_clients item is deleted.
 * A mount that disconnects and does not come back within the reconnect timeout is treated as
 * departed the same way (after fencing, which the node runtime provides through `fence`).
 *
 * Not done yet (docs/cluster.md): srch compaction, get/commit_log_merge (merging is done in this
 * process, merge.ts), volume options, resize, data_alloc zones.
 */
import { Device } from "../block/device.ts";
import { btreeDelete, btreeInsert, btreeLookup, btreeNext } from "../btree/cow.ts";
import { NetServer, type NetCommonOptions, type NetGreetingInfo, type NetIncomingRequest } from "../net/index.ts";
import {
  NET_CMD_ALLOC_INODES,
  NET_CMD_COMMIT_LOG_TREES,
  NET_CMD_FAREWELL,
  NET_CMD_GET_LAST_SEQ,
  NET_CMD_GET_LOG_TREES,
  NET_CMD_GET_ROOTS,
  NET_CMD_LOCK,
  NET_CMD_OPEN_INO_MAP,
  NET_CMD_STATFS,
  NET_CMD_SYNC_LOG_TREES,
  NET_GREETING_FLAG_QUORUM,
  NetInodeAlloc,
  NetRoots,
  NetStatfs,
} from "../format/net.ts";
import { LogTrees, MountedClientVal } from "../format/log_trees.ts";
import { ipv4ToString } from "../format/quorum.ts";
import * as C from "../format/constants.ts";
import { ScoutfsError } from "../util/errors.ts";
import { ServerTrans, type ServerTransOptions } from "./trans.ts";
import { ServerLogTrees, ltIsFinalized, ltIsOpen, ltIsUnopened, newLogTrees, type LogTreesFill } from "./log_trees.ts";
import { ServerMerge } from "./merge.ts";
import { ServerLocks } from "./locks.ts";
import { ServerOmap } from "./omap.ts";
import { decodeLe64, decodeLogTrees, encodeLe64, expectEmpty, mountedClientKey, mountedClientRid } from "./wire.ts";

/** scoutfs alloc.h: mounts' meta_avail is filled to a full list block when under half of it. */
export const SERVER_META_FILL_TARGET = 8185;
export const SERVER_META_FILL_LO = Math.floor(8185 / 2);
export const SERVER_DATA_FILL_TARGET = BigInt(C.SERVER_DATA_FILL_TARGET);
export const SERVER_DATA_FILL_LO = (1n << 30n) >> BigInt(C.BLOCK_SM_SHIFT);
/** Start a merge round after this many commit_log_trees since the last one. */
export const SERVER_MERGE_COMMITS = 64;
export const SERVER_MERGE_INTERVAL_MS = 30_000;
export const SERVER_MERGE_ROUND_TIMEOUT_MS = 10_000;
/** A mount refused metadata room starts a merge round at most this often (mergeForRoom). */
export const SERVER_MERGE_FOR_ROOM_MS = 1000;
export const SERVER_LOCK_RECOVERY_TIMEOUT_MS = 30_000;

export interface ServerOptions {
  metaPath: string;
  /** The quorum term that elected us (never 0). */
  term: bigint;
  /** Listen on this quorum slot's address (from the super block)... */
  slot?: number;
  /** ...or on this one (tests); port 0 picks a free port. */
  listen?: { hostname: string; port: number };
  fill?: Partial<LogTreesFill>;
  trans?: ServerTransOptions;
  mergeCommits?: number;
  /** 0 disables the merge timer. */
  mergeIntervalMs?: number;
  mergeRoundTimeoutMs?: number;
  lockRecoveryTimeoutMs?: number;
  net?: NetCommonOptions & { reconnect_timeout_ms?: number };
  /**
   * Mounts already fenced before this server started (the node fences previous leaders at
   * election): their resources are reclaimed at once instead of after the recovery timeout.
   */
  fencedRids?: readonly bigint[];
  /** Fence a mount that vanished before its resources are reclaimed; throwing keeps them. */
  fence?: (rid: bigint, ipv4: string) => Promise<void>;
  log?: (msg: string) => void;
}

function parseRemote(remote: string): { addr: number; port: number } {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+):(\d+)$/.exec(remote);
  if (!m) return { addr: 0, port: 0 };
  const addr = ((+m[1]! << 24) | (+m[2]! << 16) | (+m[3]! << 8) | +m[4]!) >>> 0;
  return { addr, port: +m[5]! };
}

export class Server {
  readonly dev: Device;
  readonly t: ServerTrans;
  readonly lts: ServerLogTrees;
  readonly merge: ServerMerge;
  readonly locks: ServerLocks;
  readonly omap: ServerOmap;
  readonly net: NetServer;
  private readonly log: (msg: string) => void;
  private commitsSinceMerge = 0;
  /** Metadata blocks the mounts' trees grew by since the last merge round started (mergeForRoom). */
  private metaGrowthSinceMerge = 0n;
  /** When the last merge round started, and the refused fills counted then (mergeForRoom). */
  private mergeStartedAt = -Infinity;
  private refusedAtMerge = 0;
  private mergeTimer: ReturnType<typeof setInterval> | undefined;
  private recoveryTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly recovering = new Set<bigint>();
  /** Waiting for recovery to end (open_ino_map requests): settled when `recovering` empties or at close. */
  private recoveryWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private closed = false;
  readonly counters = { greetings: 0, allocInodes: 0, getLogTrees: 0, commitLogTrees: 0, farewells: 0, departed: 0, preOpened: 0 };

  private constructor(private readonly o: ServerOptions) {
    this.log = o.log ?? (() => {});
    this.dev = Device.open(o.metaPath, { write: true });
    try {
      this.t = new ServerTrans(this.dev, o.trans);
      const fill: LogTreesFill = {
        metaLo: o.fill?.metaLo ?? SERVER_META_FILL_LO,
        metaTarget: o.fill?.metaTarget ?? SERVER_META_FILL_TARGET,
        dataLo: o.fill?.dataLo ?? SERVER_DATA_FILL_LO,
        dataTarget: o.fill?.dataTarget ?? SERVER_DATA_FILL_TARGET,
      };
      this.lts = new ServerLogTrees(this.t, fill);
      const where = this.listenAddress();
      this.net = NetServer.listen({
        ...o.net,
        fsid: this.t.fsid,
        fmt_vers: this.t.sup.fmt_vers,
        server_term: o.term,
        hostname: where.hostname,
        port: where.port,
        onGreeting: (info) => this.server_greeting(info),
        onClientUp: (rid, info) => this.server_client_up(rid, info),
        onClientDown: (rid, reason) => {
          if (reason === "timeout") void this.server_client_departed(rid, "did not reconnect");
        },
      });
    } catch (err) {
      this.dev.close();
      throw err;
    }
    this.locks = new ServerLocks({ net: this.net, nextSeq: () => this.t.nextSeq(), setSeqIfGreater: (s) => this.t.setSeqIfGreater(s), log: this.log });
    this.merge = new ServerMerge(this.t, this.lts, {
      roundTimeoutMs: o.mergeRoundTimeoutMs ?? SERVER_MERGE_ROUND_TIMEOUT_MS,
      syncMount: (rid) => {
        if (this.net.clientRids().includes(rid)) this.net.request(rid, NET_CMD_SYNC_LOG_TREES).catch(() => {});
      },
      log: this.log,
    });
    this.omap = new ServerOmap({ net: this.net, recovered: () => this.recovered() });
    this.registerHandlers();
    this.startRecovery();
    const iv = o.mergeIntervalMs ?? SERVER_MERGE_INTERVAL_MS;
    if (iv > 0) this.mergeTimer = setInterval(() => this.mergeTick(), iv);
  }

  /** Open the meta device, verify it, recover state left by a previous server, and listen. */
  static start(o: ServerOptions): Server {
    if (o.term === 0n) throw new ScoutfsError("EINVAL", "a server term is never 0");
    return new Server(o);
  }

  get port(): number {
    return this.net.port;
  }

  private listenAddress(): { hostname: string; port: number } {
    if (this.o.listen) return this.o.listen;
    const slot = this.o.slot ?? 0;
    const a = this.t.sup.qconf.slots[slot];
    if (!a || a.family !== C.AF_IPV4) throw new ScoutfsError("EINVAL", `quorum slot ${slot} is not configured`);
    return { hostname: ipv4ToString(a.addr), port: a.port };
  }

  private registerHandlers(): void {
    const n = this.net;
    n.handle(NET_CMD_ALLOC_INODES, (r) => this.server_alloc_inodes(r));
    n.handle(NET_CMD_GET_LOG_TREES, (r) => this.server_get_log_trees(r));
    n.handle(NET_CMD_COMMIT_LOG_TREES, (r) => this.server_commit_log_trees(r));
    n.handle(NET_CMD_GET_ROOTS, (r) => this.server_get_roots(r));
    n.handle(NET_CMD_GET_LAST_SEQ, (r) => this.server_get_last_seq(r));
    n.handle(NET_CMD_STATFS, (r) => this.server_statfs(r));
    n.handle(NET_CMD_LOCK, (r) => this.locks.handleRequest(r));
    n.handle(NET_CMD_FAREWELL, (r) => this.server_farewell(r));
    n.handle(NET_CMD_OPEN_INO_MAP, (r) => this.omap.handleRequest(r));
  }

  // ---------------------------------------------------------------------------------------------
  // Mounted clients and recovery

  mountedRids(): bigint[] {
    const out: bigint[] = [];
    let key = mountedClientKey(0n);
    for (;;) {
      const it = btreeNext(this.t.cache, this.t.sup.mounted_clients, key);
      const rid = it ? mountedClientRid(it.key) : null;
      if (rid === null) return out;
      out.push(rid);
      key = mountedClientKey(rid + 1n);
    }
  }

  /**
   * Mounts recorded by a previous server may hold locks: wait for each to reconnect and tell us
   * (lock_recover), or declare it departed after the recovery timeout. Trees of rids that are no
   * longer mounted (a crash between farewell steps) are reclaimed now.
   */
  private startRecovery(): void {
    const mounted = this.mountedRids();
    const orphans = this.lts.lastPerRid().filter((lt) => !ltIsFinalized(lt) && !mounted.includes(lt.rid));
    if (orphans.length > 0) {
      this.t.transact("reclaim orphan log trees", (w) => {
        for (const lt of orphans) this.lts.finalize(w, lt, false);
      });
    }
    const fenced = mounted.filter((r) => this.o.fencedRids?.includes(r));
    for (const rid of fenced) {
      this.log(`client rid ${rid.toString(16)} was fenced before this server started: reclaiming its resources`);
      this.counters.departed++;
      this.server_remove_mount(rid);
    }
    const live = mounted.filter((r) => !fenced.includes(r));
    if (live.length === 0) return;
    for (const r of live) this.recovering.add(r);
    this.locks.beginRecovery(live);
    this.recoveryTimer = setTimeout(() => {
      for (const rid of [...this.recovering]) void this.server_client_departed(rid, "did not return after the server started");
    }, this.o.lockRecoveryTimeoutMs ?? SERVER_LOCK_RECOVERY_TIMEOUT_MS);
  }

  private server_greeting(info: NetGreetingInfo): void {
    const g = info.greeting;
    this.counters.greetings++;
    if (this.closed) throw new ScoutfsError("ENOLINK", "server is shutting down");
    if (g.server_term !== 0n) return;
    const key = mountedClientKey(g.rid);
    if (btreeLookup(this.t.cache, this.t.sup.mounted_clients, key)) return;
    const { addr, port } = parseRemote(info.remote);
    const val = MountedClientVal.encode({
      addr: { family: C.AF_IPV4, port, addr } as MountedClientVal["addr"],
      flags: (g.flags & NET_GREETING_FLAG_QUORUM) !== 0n ? C.MOUNTED_CLIENT_QUORUM : 0,
    } as MountedClientVal);
    this.t.transact("insert mounted client", (w) => btreeInsert(w, this.t.sup.mounted_clients, key, 0n, 0, val));
  }

  private server_client_up(rid: bigint, _info: NetGreetingInfo): void {
    if (!this.recovering.has(rid)) return;
    this.locks
      .recoverClient(rid)
      .then(() => this.recoveryDone(rid))
      .catch((err) => this.log(`lock recovery of rid ${rid.toString(16)} failed: ${(err as Error).message}`));
  }

  private recoveryDone(rid: bigint): void {
    this.recovering.delete(rid);
    if (this.recovering.size > 0) return;
    if (this.recoveryTimer) clearTimeout(this.recoveryTimer);
    const w = this.recoveryWaiters;
    this.recoveryWaiters = [];
    for (const x of w) x.resolve();
  }

  /** Resolves once every mount of the previous server came back or was declared departed. */
  private recovered(): Promise<void> {
    if (this.closed) return Promise.reject(new ScoutfsError("ENOLINK", "server is shutting down"));
    if (this.recovering.size === 0) return Promise.resolve();
    return new Promise((resolve, reject) => this.recoveryWaiters.push({ resolve, reject }));
  }

  /**
   * A mount left without a farewell (or never came back after a restart): fence it, then give
   * back its allocators, finalize its tree for merging and forget it.
   */
  private async server_client_departed(rid: bigint, why: string): Promise<void> {
    if (this.closed) return;
    this.log(`client rid ${rid.toString(16)} ${why}: reclaiming its resources`);
    if (this.o.fence) {
      const mc = btreeLookup(this.t.cache, this.t.sup.mounted_clients, mountedClientKey(rid));
      const ip = mc ? ipv4ToString(MountedClientVal.decode(mc.val).addr.addr) : "0.0.0.0";
      try {
        await this.o.fence(rid, ip);
      } catch (err) {
        this.log(`fencing rid ${rid.toString(16)} failed, its resources stay: ${(err as Error).message}`);
        return;
      }
    }
    if (this.closed) return;
    this.counters.departed++;
    this.server_remove_mount(rid);
  }

  private server_remove_mount(rid: bigint): void {
    this.t.transact("remove mount", (w) => {
      const lt = this.lts.findLast(rid);
      if (lt && !ltIsFinalized(lt)) this.lts.finalize(w, lt, false);
      const key = mountedClientKey(rid);
      if (btreeLookup(w.cache, this.t.sup.mounted_clients, key)) btreeDelete(w, this.t.sup.mounted_clients, key);
    });
    this.recoveryDone(rid);
    this.locks.removeClient(rid);
    this.merge.checkCut();
  }

  // ---------------------------------------------------------------------------------------------
  // Requests

  private server_alloc_inodes(req: NetIncomingRequest): Uint8Array {
    const count = decodeLe64(req.data, "alloc_inodes");
    const r = this.t.transact("alloc inodes", () => {
      const ino = this.t.sup.next_ino;
      const left = C.U64_MAX - ino;
      const nr = count < left ? count : left;
      this.t.sup.next_ino = ino + nr;
      return { ino, nr };
    });
    this.counters.allocInodes++;
    return NetInodeAlloc.encode(r);
  }

  private async server_get_log_trees(req: NetIncomingRequest): Promise<Uint8Array> {
    expectEmpty(req.data, "get_log_trees");
    const rid = req.rid;
    this.counters.getLogTrees++;
    // finalize first when a merge round is waiting for this mount
    if (this.merge.inRound) {
      const finalized = this.t.transact("finalize log trees", (w) => {
        const lt = this.lts.findLast(rid);
        if (!lt || ltIsFinalized(lt) || ltIsOpen(lt) || ltIsUnopened(lt)) return false;
        this.lts.finalize(w, lt, true);
        return true;
      });
      if (finalized) {
        this.merge.checkCut();
        await this.merge.waitForCut();
      }
    }
    // the transaction its commit_log_trees opened (or a resend after failover): nothing to commit
    const last = this.lts.findLast(rid);
    const lt = last && ltIsOpen(last) ? last : this.t.transact("get log trees", (w) => {
      let lt = this.lts.findLast(rid);
      if (!lt) lt = newLogTrees(rid, 1n);
      else if (ltIsFinalized(lt)) {
        const next = newLogTrees(rid, lt.nr + 1n);
        lt = next;
      }
      if (lt.get_trans_seq < lt.commit_trans_seq) throw new ScoutfsError("EINVAL", `log trees ${rid.toString(16)}.${lt.nr} commit seq is past its get seq`);
      this.lts.refill(w, lt);
      lt.get_trans_seq = this.t.nextSeq();
      this.lts.put(w, lt);
      return lt;
    });
    if (this.mergeForRoom()) this.requestMerge();
    return LogTrees.encode(lt);
  }

  private server_commit_log_trees(req: NetIncomingRequest): Uint8Array {
    const lt = decodeLogTrees(req.data, "commit_log_trees");
    if (lt.rid !== req.rid) throw new ScoutfsError("EIO", `commit_log_trees from rid ${req.rid.toString(16)} carries rid ${lt.rid.toString(16)}`);
    this.t.transact("commit log trees", (w) => {
      const exist = this.lts.lookup(lt.rid, lt.nr);
      if (!exist) throw new ScoutfsError("EIO", `commit_log_trees for missing log trees ${lt.rid.toString(16)}.${lt.nr}`);
      if (ltIsFinalized(exist)) throw new ScoutfsError("EIO", `commit_log_trees for finalized log trees ${lt.rid.toString(16)}.${lt.nr}`);
      // already committed (resent): the next transaction may have been opened by it too
      if (exist.commit_trans_seq === lt.get_trans_seq) return;
      if (exist.get_trans_seq !== lt.get_trans_seq) throw new ScoutfsError("EIO", `commit_log_trees get_trans_seq ${lt.get_trans_seq} != ${exist.get_trans_seq}`);
      lt.commit_trans_seq = lt.get_trans_seq;
      lt.flags = exist.flags;
      // blocks the mount's trees grew by in this transaction: used from its list, less its frees
      const used = exist.meta_avail.total_nr - lt.meta_avail.total_nr;
      const freed = lt.meta_freed.total_nr - exist.meta_freed.total_nr;
      this.metaGrowthSinceMerge += used - freed;
      // Open the mount's next transaction in this same server commit: its get_log_trees, which
      // follows at once, then answers without a commit of its own (scoutfs commits twice; every
      // server commit is two device flushes). Reclaiming what this commit freed in the commit
      // that records it is atomic: the tree stops referencing the blocks in the same step in
      // which they become free. Not while a merge round waits for trees to be finalized: then
      // get_log_trees finalizes this one first, as before.
      if (!this.merge.inRound) {
        this.lts.refill(w, lt);
        lt.get_trans_seq = this.t.nextSeq();
        this.counters.preOpened++;
      }
      this.lts.put(w, lt);
    });
    this.counters.commitLogTrees++;
    if (++this.commitsSinceMerge >= (this.o.mergeCommits ?? SERVER_MERGE_COMMITS) || this.mergeForRoom()) this.requestMerge();
    return new Uint8Array(0);
  }

  private server_get_roots(req: NetIncomingRequest): Uint8Array {
    expectEmpty(req.data, "get_roots");
    const s = this.t.stable;
    return NetRoots.encode({ fs_root: s.fs_root, logs_root: s.logs_root, srch_root: s.srch_root });
  }

  /** scoutfs get_stable_trans_seq: every seq up to the result is in committed transactions only. */
  lastStableSeq(): bigint {
    let last = this.t.currentSeq() - 1n;
    const mounted = new Set(this.mountedRids());
    for (const lt of this.lts.lastPerRid()) {
      if (ltIsOpen(lt) && lt.get_trans_seq <= last && mounted.has(lt.rid)) last = lt.get_trans_seq - 1n;
    }
    return last;
  }

  private server_get_last_seq(req: NetIncomingRequest): Uint8Array {
    expectEmpty(req.data, "get_last_seq");
    return encodeLe64(this.lastStableSeq());
  }

  /** Free blocks in every allocator (the server's and every mount's) and the inode count. */
  statfs(): NetStatfs {
    const s = this.t.stable;
    let meta = s.meta_alloc.reduce((n, r) => n + r.total_len, 0n);
    for (const h of [...s.server_meta_avail, ...s.server_meta_freed]) meta += h.total_nr;
    let data = s.data_alloc.total_len;
    let inodes = s.inode_count;
    for (const lt of this.lts.all()) {
      meta += lt.meta_avail.total_nr + lt.meta_freed.total_nr;
      data += lt.data_avail.total_len + lt.data_freed.total_len;
      inodes += lt.inode_count_delta;
    }
    return {
      uuid: s.uuid,
      free_meta_blocks: meta,
      total_meta_blocks: s.total_meta_blocks,
      free_data_blocks: data,
      total_data_blocks: s.total_data_blocks,
      inode_count: BigInt.asUintN(64, inodes),
    };
  }

  private server_statfs(req: NetIncomingRequest): Uint8Array {
    expectEmpty(req.data, "statfs");
    return NetStatfs.encode(this.statfs());
  }

  private server_farewell(req: NetIncomingRequest): Uint8Array {
    expectEmpty(req.data, "farewell");
    this.counters.farewells++;
    this.server_remove_mount(req.rid);
    return new Uint8Array(0);
  }

  // ---------------------------------------------------------------------------------------------
  // Merging

  /** Start a merge round now (if none is under way); see merge.ts. */
  requestMerge(): boolean {
    const started = this.merge.requestMerge();
    if (started) {
      this.commitsSinceMerge = 0;
      this.metaGrowthSinceMerge = 0n;
      this.mergeStartedAt = performance.now();
      this.refusedAtMerge = this.t.counters.mountFillsRefused;
    }
    return started;
  }

  /**
   * Merge early when metadata room is short (docs/cluster.md, "Metadata space"):
   * - a merge needs new fs_root blocks for what the merged trees hold before it frees them, so
   *   on a nearly full device unmerged trees must stay small enough for the server's reserve to
   *   absorb, or no merge could ever finish. Once meta_alloc holds less than four times the
   *   server's list target beyond its reserve, a round starts whenever the mounts' trees have
   *   grown by half that target since the last one;
   * - a mount was refused room (nothing beyond the reserve): merging is how room comes back —
   *   deletion items are applied and the merged trees freed — so a round starts, at most every
   *   SERVER_MERGE_FOR_ROOM_MS (a full device with nothing to merge must not loop rounds).
   */
  private mergeForRoom(): boolean {
    const r = this.t.reserve;
    const tight = this.t.metaAllocFree() < r.keep + BigInt(4 * r.ownTarget);
    if (tight && this.metaGrowthSinceMerge >= BigInt(r.ownTarget >> 1)) return true;
    return this.t.counters.mountFillsRefused > this.refusedAtMerge && performance.now() - this.mergeStartedAt >= SERVER_MERGE_FOR_ROOM_MS;
  }

  private mergeTick(): void {
    if (this.lts.all().some((lt) => lt.item_root.height > 0 || ltIsFinalized(lt))) this.requestMerge();
  }

  /**
   * The term in which this server records mounts' commits on `dev`, when `dev` is its metadata
   * device and it is running (null otherwise). Every commit of ours flushes that device before
   * it writes the super: a mount of this process may leave its own flush to us
   * (ClientStoreOptions.colocatedServerTerm).
   */
  recordsOn(dev: Device): bigint | null {
    return !this.closed && this.dev.sameAs(dev) ? this.o.term : null;
  }

  /** Stop: close every socket (clients reconnect to the next server) and the device. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.mergeTimer) clearInterval(this.mergeTimer);
    if (this.recoveryTimer) clearTimeout(this.recoveryTimer);
    for (const x of this.recoveryWaiters) x.reject(new ScoutfsError("ENOLINK", "server shut down"));
    this.recoveryWaiters = [];
    this.net.close();
    this.dev.close();
  }
}
