/**
 * The ItemStore of a mount in a cluster (scoutfs trans.c + item.c + forest.c writes): items are
 * read from the forest (fs_root + every log tree, forest.ts) and written into this mount's own
 * log tree, which the server hands out (get_log_trees) and records (commit_log_trees). The mount
 * never writes the super block.
 *
 * Transactions: `transact(fn)` changes items in the item cache (cache.ts) with rollback on throw,
 * exactly as the standalone store. Item changes reach blocks only at commit:
 *   1. (synchronous) every dirty item is forced into the log tree's item_root with the
 *      transaction's item seq — deletions as deletion items (ITEM_FLAG_DELETION) that hide older
 *      versions elsewhere in the forest until a merge applies them to fs_root; data blocks
 *      allocated since the last commit are removed from data_avail and freed ones inserted into
 *      data_freed; the data device is flushed; the dirty metadata blocks are written and flushed
 *      (cache.commit with no root to write). Metadata blocks come from the tree's meta_avail list
 *      and frees go to its meta_freed list (list.ts).
 *   2. (async) commit_log_trees with the updated log_trees struct: once answered, the
 *      transaction is durable. Then get_log_trees (the server reclaims the freed allocators,
 *      refills the avail ones, opens the next transaction with a new seq, perhaps finalizing the
 *      tree for a merge), and get_roots to see everyone's latest commits.
 * A crash before step 2 is answered leaves the previous log_trees item, whose blocks were never
 * overwritten (a transaction only writes blocks its avail list offered): the uncommitted
 * transaction is simply lost.
 *
 * While step 2 is in flight, transactions go on: items collect in the item cache for the next
 * commit, and data blocks are allocated from an in-memory view of data_avail (the btree itself
 * changes only in step 1, so it is never touched while the server owns it). The server only ever
 * adds to a mount's data_avail between its transactions, so these allocations stay valid; the
 * view is rebuilt from the new data_avail minus them when the new log_trees arrives.
 *
 * Item seqs: max(the transaction's get_trans_seq, the greatest lock write seq this mount has
 * been granted — `noteWriteSeq`), so a key's versions grow as its lock moves between mounts.
 * Known gap: transSeq() during step 2 is still the committing transaction's seq, though changes
 * made then commit in the next one.
 *
 * Inode numbers come in ranges from alloc_inodes, fetched ahead so allocIno() never waits.
 */
import { Device } from "../block/device.ts";
import { MetaCache, TRANS_DIRTY_BLOCKS_MAX } from "../block/cache.ts";
import { readSuper } from "../block/super.ts";
import { ListAlloc } from "../alloc/list.ts";
import { ExtentAlloc, type Extent } from "../alloc/extents.ts";
import { btreeExtentOps } from "../alloc/btree-ops.ts";
import { btreeForce, btreeWalkNodes, type BtreeRootRef } from "../btree/cow.ts";
import { LogTrees } from "../format/log_trees.ts";
import * as C from "../format/constants.ts";
import { ScoutfsError } from "../util/errors.ts";
import { assert } from "../util/assert.ts";
import { Client, type ClientOptions } from "../client/client.ts";
import { ItemCache } from "./cache.ts";
import { InodeCountDelta } from "./inode-count.ts";
import { Forest } from "./forest.ts";
import type { DataStore, ItemReader, ItemStore, ItemWriter } from "./types.ts";
import { dataBlockIO } from "./data-io.ts";
import { type Bloom, BloomCodec, bloomSet, bloomTest, emptyBloom } from "./bloom.ts";
import { lockStartOf } from "../format/lock-ranges.ts";
import type { PackedKey } from "../format/key.ts";

export interface ClientStoreOptions {
  metaPath: string;
  dataPath: string;
  client?: Partial<ClientOptions>;
  cacheBlocks?: number;
  /** Inode numbers fetched per alloc_inodes. */
  inoBatch?: bigint;
  /** Commit on a timer this often when dirty; 0 disables. */
  commitIntervalMs?: number;
  /**
   * The term of a server running in this process that records mounts' commits on `meta` (our
   * metadata device), or null (none, closed, another device). Its commit flushes the device
   * before writing the super that references our new blocks, so a commit sent to it (the
   * client is greeted by that term) leaves our flush to it: one device flush less per commit.
   * Should our requests go to another server before it answered, we flush first
   * (ClientOptions.beforeAttach).
   */
  colocatedServerTerm?: (meta: Device) => bigint | null;
}

export const CLIENT_INO_BATCH = 1024n;
/** Operations wait for the next inode range when fewer numbers than this are left. */
const CLIENT_INO_HOLD_LOW = 16n;
export const CLIENT_COMMIT_INTERVAL_MS = 10_000;
/** A commit starts on its own when dirty items reach this many bytes... */
export const CLIENT_DIRTY_BYTES_COMMIT = 16 << 20;
/**
 * Commit once this many items are dirty: a commit writes them on the thread every request waits
 * for (~4.5 µs an item: 8192 items ~40 ms; 32k, what meta_avail alone allowed, stalled one
 * request 150 ms), and its fixed cost (a server transaction, four flushes) stays small beside it.
 */
export const CLIENT_DIRTY_ITEMS_COMMIT = 8192;
/**
 * Metadata blocks of meta_avail kept back from the dirty-item budget: the allocators' own
 * copy-on-write in a commit (list blocks, data_avail/data_freed btree paths) and one more
 * operation's items.
 */
export const CLIENT_META_RESERVE_BLOCKS = 64;
/** hold() asks the server for room (an empty commit) at most this often before ENOSPC. */
export const CLIENT_ROOM_ASK_MS = 1000;
/** A removal refused metadata room keeps asking this long before ENOSPC. */
export const CLIENT_FREEING_WAIT_MS = 5000;
/** hold() asks for more data blocks when fewer than this (one 1 MiB write) are left. */
export const CLIENT_DATA_REFILL_BLOCKS = 256n;
const EMPTY = new Uint8Array(0);

export class ClientStore implements ItemStore {
  readonly client: Client;
  readonly meta: Device;
  readonly dataDev: Device;
  readonly cache: MetaCache;
  readonly items: ItemCache;
  readonly forest: Forest;
  readonly fmtVers: number;
  readonly data: DataStore;
  /** This mount's open log tree as we last committed or received it. */
  lt: LogTrees;
  private writeSeq = 0n;
  /** In-memory free extents of data_avail not yet allocated (sorted by start). */
  private dataView: Extent[] = [];
  private pendingAllocs: Extent[] = [];
  private pendingFrees: Extent[] = [];
  private txAllocs: Extent[] | null = null;
  private dataWritten = false;
  private inoNext = 0n;
  private inoEnd = 0n;
  private inoNextRange: { ino: bigint; nr: bigint } | null = null;
  private inoFetching: Promise<void> | null = null;
  /** The server had no inode numbers left to give. */
  private inoExhausted = false;
  private committing: Promise<void> | null = null;
  private syncWanted = false;
  private timer: ReturnType<typeof setInterval> | undefined;
  private failed: ScoutfsError | null = null;
  private closed = false;
  lastCommitError: unknown = null;
  /**
   * commitBlocksMax: the most metadata blocks one commit allocated, and commitBlocksOver: commits
   * that allocated more than commitBlocksEstimate() promised when they started (must stay 0:
   * admission and the commit triggers rely on the estimate).
   */
  readonly counters = {
    commits: 0,
    commitFailures: 0,
    syncRequests: 0,
    holdWaits: 0,
    metaEnospc: 0,
    commitBlocksMax: 0,
    commitBlocksOver: 0,
    /** Commits whose metadata flush was left to the co-located server. */
    flushesLeftToServer: 0,
    /** Flushes made before our requests went to a socket after such a commit. */
    resendFlushes: 0,
  };

  private readonly colocatedServerTerm: ((meta: Device) => bigint | null) | undefined;

  private constructor(o: ClientStoreOptions, client: Client, meta: Device, dataDev: Device, lt: LogTrees) {
    this.colocatedServerTerm = o.colocatedServerTerm;
    this.client = client;
    this.meta = meta;
    this.dataDev = dataDev;
    this.lt = lt;
    this.fmtVers = Number(client.fmtVers);
    this.cache = new MetaCache(meta, client.fsid, o.cacheBlocks ? { maxCleanBlocks: o.cacheBlocks } : {});
    this.forest = new Forest(
      this.cache,
      () => {
        const s = readSuper(this.meta, { meta: true, fsid: this.client.fsid });
        return { fs_root: s.fs_root, logs_root: s.logs_root };
      },
      () => this.ownTree(),
    );
    this.items = new ItemCache(this.forest);
    this.ownBlocks = this.countOwnBlocks(lt);
    this.data = this.makeDataStore();
    this.rebuildDataView();
    const iv = o.commitIntervalMs ?? CLIENT_COMMIT_INTERVAL_MS;
    if (iv > 0) this.timer = setInterval(() => void this.commitQuietly(false), iv);
  }

  /** Connect to the server, get this mount's log tree, roots and a first inode range. */
  static async open(o: ClientStoreOptions): Promise<ClientStore> {
    const meta = Device.open(o.metaPath, { write: true });
    let dataDev: Device | null = null;
    let client: Client | null = null;
    try {
      const sup = readSuper(meta, { meta: true });
      dataDev = Device.open(o.dataPath, { write: true });
      readSuper(dataDev, { meta: false, fsid: sup.hdr.fsid });
      let store: ClientStore | null = null;
      client = await Client.connect({
        metaPath: o.metaPath,
        ...o.client,
        onSyncLogTrees: () => {
          o.client?.onSyncLogTrees?.();
          store?.syncRequested();
        },
        beforeAttach: (info) => {
          o.client?.beforeAttach?.(info);
          store?.flushLeftToServer();
        },
      });
      const lt = await client.getLogTrees();
      const roots = await client.getRoots();
      store = new ClientStore(o, client, meta, dataDev, lt);
      store.forest.setRoots(roots);
      const batch = o.inoBatch ?? CLIENT_INO_BATCH;
      store.inoBatch = batch;
      const r = await client.allocInodes(batch);
      store.inoNext = r.ino;
      store.inoEnd = r.ino + r.nr;
      return store;
    } catch (err) {
      client?.close();
      meta.close();
      dataDev?.close();
      throw err;
    }
  }

  private inoBatch = CLIENT_INO_BATCH;

  // -------------------------------------------------------------------------------------------
  // ItemStore

  get reader(): ItemReader {
    return this.items;
  }

  transact<T>(fn: (w: ItemWriter) => T): T {
    if (this.failed) throw this.failed;
    if (this.items.inTransaction) return this.inodes.run(true, () => this.items.transact((w) => fn(this.noting(w))));
    this.txAllocs = [];
    let r: T;
    try {
      r = this.inodes.run(false, () => this.items.transact((w) => fn(this.noting(w))));
    } catch (err) {
      for (const e of this.txAllocs) this.giveBack(e);
      this.txAllocs = null;
      throw err;
    }
    this.txAllocs = null;
    // (not while a commit is in flight: every transaction then queued one more commit behind
    // it, a storm of commits once it finished; the next transaction after it asks again)
    if (this.committing === null && (this.items.dirtyBytes >= this.dirtyBytesLimit() || this.items.dirtyCount >= this.dirtyItemsLimit() || this.commitBlocksEstimate() * 2 > this.lt.meta_avail.first_nr - CLIENT_META_RESERVE_BLOCKS || this.commitBlocksEstimate() > TRANS_DIRTY_BLOCKS_MAX)) {
      void this.commitQuietly(false);
    }
    return r;
  }

  /**
   * May a transaction start now (scoutfs trans.c hold_trans)? null: yes. A promise: a commit has
   * to make room first (the dirty items could not all be written with the metadata blocks left in
   * this transaction's meta_avail); the caller waits for it and asks again. ENOSPC: nothing is
   * dirty and meta_avail still has less than the reserve — the server could not refill it even
   * when asked again (at most every CLIENT_ROOM_ASK_MS; removals keep asking for up to
   * CLIENT_FREEING_WAIT_MS), the metadata device is full. Without this a full device let
   * operations succeed whose items no commit could ever write (every later commit failed, and
   * they were lost at unmount). Every wait is bounded: a full device never loops an operation.
   */
  hold(freeing = false): Promise<void> | null {
    if (this.failed) throw this.failed;
    if (this.items.inTransaction) return null;
    // removals keep working on a full device with a smaller reserve: they are how room comes back
    const reserve = freeing ? CLIENT_META_RESERVE_BLOCKS / 4 : CLIENT_META_RESERVE_BLOCKS;
    // a burst of creates may use up the inode range before the next one arrives: wait for it
    // rather than fail allocIno() with a transient ENOSPC (once: a fetch that failed is not
    // waited for again until one succeeds, so a server that cannot answer never loops us)
    if (!freeing && !this.inoExhausted && this.inoFetchFailed === null && this.inoNextRange === null && this.inoEnd - this.inoNext < CLIENT_INO_HOLD_LOW) {
      this.fetchInodes();
      if (this.inoFetching !== null) {
        this.counters.holdWaits++;
        return this.inoFetching;
      }
    }
    // data blocks: ask the server for more (a commit refills data_avail) before they run out
    if (!freeing && this.dataRefillWanted()) {
      this.counters.holdWaits++;
      // a commit under way refills too: wait for it; else commit, even with nothing dirty
      if (this.committing !== null) return this.settle();
      const left = this.dataLeft();
      this.dataAskedAt = performance.now();
      // (commit() returns once the commit is durable; the refill comes with its get_log_trees)
      return this.commit(true)
        .then(() => this.settle())
        .then(() => {
          // nothing came: remember, so that we do not ask again at once (dataRefillWanted)
          this.dataAskedWith = this.dataLeft() > left ? -1n : left;
        });
    }
    if (this.commitBlocksEstimate() <= this.lt.meta_avail.first_nr - reserve) {
      this.freeingRefusedAt = null;
      return null;
    }
    if (this.dirty || this.committing !== null) {
      // the commit writes what is dirty and brings a refilled meta_avail; then ask again
      this.counters.holdWaits++;
      return this.commit(false);
    }
    // Nothing to commit and too few blocks. Room may have come back since our last commit (a
    // merge freed trees, another mount left): ask the server once — an empty commit is a
    // get_log_trees, which refills — but at most every CLIENT_ROOM_ASK_MS, so operations on a
    // full device get ENOSPC after one round trip at most, never an endless retry. Sooner when
    // we have read newer roots since the last answer (a lock grant, a refresh): the server may
    // have merged meanwhile — a mount that asked just before a merge freed room must not refuse
    // work for the rest of the second.
    const now = performance.now();
    if (now - this.roomAskedAt >= CLIENT_ROOM_ASK_MS || this.forest.counters.refreshes !== this.roomAskedRefreshes) {
      this.roomAskedAt = now;
      this.counters.holdWaits++;
      return this.commit(true)
        .then(() => this.settle())
        .then(() => {
          // (the ask refreshed the roots itself: only later refreshes count as news)
          this.roomAskedRefreshes = this.forest.counters.refreshes;
        });
    }
    // a removal waits a little longer (asking every second): the server starts a merge when it
    // refuses a mount room, and the merge applies deletions and frees the merged trees
    if (freeing) {
      this.freeingRefusedAt ??= now;
      if (now - this.freeingRefusedAt < CLIENT_FREEING_WAIT_MS) {
        this.counters.holdWaits++;
        return Bun.sleep(this.roomAskedAt + CLIENT_ROOM_ASK_MS - now);
      }
    }
    this.counters.metaEnospc++;
    throw new ScoutfsError("ENOSPC", `metadata device full: ${this.lt.meta_avail.first_nr} metadata blocks left for this mount`);
  }

  /**
   * scoutfs trans.c commit_before_hold: commit (the next get_log_trees refills data_avail) when
   * the data blocks left are under a quarter of what the last refill left us (the server tops a
   * mount up once it holds less than half of what it would give, at most 1 GiB of its 4 GiB),
   * or under one largest write (CLIENT_DATA_REFILL_BLOCKS) — unless the server flagged
   * data_avail LOW (it has no more to give), or a refill asked for in the last
   * CLIENT_ROOM_ASK_MS brought nothing and we have not used half of what was left then (the
   * server's threshold was not reached: asking again at once would loop).
   */
  private dataRefillWanted(): boolean {
    if ((this.lt.data_avail.flags & C.ALLOC_FLAG_LOW) !== 0) return false;
    const left = this.dataLeft();
    if (left >= CLIENT_DATA_REFILL_BLOCKS && left * 4n >= this.dataGiven) return false;
    // after an ask that brought nothing, ask again only once half of what was left then is used
    return this.dataAskedWith < 0n || left * 2n <= this.dataAskedWith || performance.now() - this.dataAskedAt >= CLIENT_ROOM_ASK_MS;
  }

  /** Data blocks left in our view of data_avail. */
  private dataLeft(): bigint {
    let n = 0n;
    for (const e of this.dataView) n += e.len;
    return n;
  }

  /** Data blocks left right after the last refill (rebuildDataView), and the last ask (dataRefillWanted). */
  private dataGiven = 0n;
  private dataAskedWith = -1n;
  private dataAskedAt = -Infinity;

  /** When hold() last asked the server for room with an empty commit (performance.now()). */
  private roomAskedAt = -Infinity;
  /** forest.counters.refreshes when that ask was answered (-1: never asked). */
  private roomAskedRefreshes = -1;
  /** When a removal was first refused room since one was last admitted. */
  private freeingRefusedAt: number | null = null;
  /** The last alloc_inodes failed (cleared by the next that succeeds). */
  private inoFetchFailed: unknown = null;

  /**
   * Metadata blocks a commit of the dirty items could need, the smaller of two upper bounds:
   * - by keys: a new copy of every block on the path to each leaf they touch, one level more for
   *   splits. Leaves touched: at most one per dirty item; items of one (zone, first, type) — an
   *   inode's xattr parts, a directory's entries, a run of index items — sit side by side in key
   *   order, so one per such group plus a leaf per half block of item bytes.
   * - by our trees' size: a commit copies each block of our log tree's btrees (items, bloom,
   *   data allocators: `ownBlocks`) at most once, and each split adds one block: at most one per
   *   block it copies, plus the new leaves the added bytes fill (a quarter leaf each, to be
   *   generous), a new root per level. A mount's tree holds only what it committed since its last
   *   merge, so a burst of creates (three key groups per inode) is bounded by this one long before
   *   the first: 250 creates made a commit before.
   */
  private commitBlocksEstimate(): number {
    const height = this.lt.item_root.height;
    const leaves = Math.min(this.items.dirtyCount, this.dirtyGroups.size + Math.ceil(this.items.dirtyBytes / (C.BLOCK_LG_SIZE / 2)));
    const byKeys = (height + 1) * leaves;
    const bySize = 2 * this.ownBlocks + 2 * Math.ceil(this.items.dirtyBytes / (C.BLOCK_LG_SIZE / 4)) + 2 * (height + 2) + 2;
    return byKeys < bySize ? byKeys : bySize;
  }

  /**
   * Blocks of our open log tree's btrees (items, bloom, data_avail, data_freed): counted when the
   * tree is first seen, then moved by every commit by what it allocated less what it freed.
   */
  private ownBlocks = 0;

  /** Count the blocks of `lt`'s btrees (at open, and when the server hands us a new tree). */
  private countOwnBlocks(lt: LogTrees): number {
    let n = lt.bloom_ref.blkno !== 0n ? 1 : 0;
    for (const root of [lt.item_root, lt.data_avail.root, lt.data_freed.root]) btreeWalkNodes(this.cache, root as BtreeRootRef, () => void n++);
    return n;
  }

  /** Inodes created minus deleted since the last commit took them (log_trees inode_count_delta). */
  private readonly inodes = new InodeCountDelta();

  countInodes(delta: number): void {
    assert(this.items.inTransaction, "inodes are counted inside a transaction");
    this.inodes.add(delta);
  }

  /** Key groups (zone, first, type) changed since the last commit started: see commitBlocksEstimate. */
  private dirtyGroups = new Set<string>();

  /** The group last added to dirtyGroups (reset with it): consecutive changes share one. */
  private lastNoted = "";

  /** Note the group (zone, first, type: the first 10 characters) of a changed key. */
  private note(key: string): void {
    const l = this.lastNoted;
    if (l.length === 10 && key.length >= 10) {
      let i = 0;
      while (i < 10 && key.charCodeAt(i) === l.charCodeAt(i)) i++;
      if (i === 10) return;
    }
    const g = key.slice(0, 10);
    this.lastNoted = g;
    this.dirtyGroups.add(g);
  }

  /** The noting writer over the item cache's writer, made once per writer (every transaction). */
  private notingOf: ItemWriter | null = null;
  private notingW: ItemWriter | null = null;

  /**
   * Our open tree for the forest, made again only when `lt` is replaced (a commit's next tree, a
   * rollback): each log_trees has its own item_root object, changed in place by commits.
   */
  private ownV: { rid: bigint; nr: bigint; root: BtreeRootRef } | null = null;
  private ownTree(): { rid: bigint; nr: bigint; root: BtreeRootRef } {
    const lt = this.lt;
    if (this.ownV === null || this.ownV.root !== lt.item_root) this.ownV = { rid: lt.rid, nr: lt.nr, root: lt.item_root as BtreeRootRef };
    return this.ownV;
  }

  /** The item writer `fn` sees: notes each changed key's group on the way. */
  private noting(w: ItemWriter): ItemWriter {
    if (this.notingOf === w && this.notingW !== null) return this.notingW;
    const note = (key: string) => this.note(key);
    this.notingOf = w;
    this.notingW = {
      lookup: (key) => w.lookup(key),
      next: (key, last) => w.next(key, last),
      prev: (key, first) => w.prev(key, first),
      create: (key, val) => (note(key), w.create(key, val)),
      update: (key, val) => (note(key), w.update(key, val)),
      put: (key, val) => (note(key), w.put(key, val)),
      delete: (key) => (note(key), w.delete(key)),
    };
    return this.notingW;
  }

  /**
   * Dirty items the next commit can surely absorb with the blocks of meta_avail (a leaf each),
   * and at most CLIENT_DIRTY_ITEMS_COMMIT: writing them holds the thread (~4.5 µs an item).
   */
  private dirtyItemsLimit(): number {
    return Math.min(CLIENT_DIRTY_ITEMS_COMMIT, Math.max(64, Number(this.lt.meta_avail.first_nr) * 4));
  }

  private dirtyBytesLimit(): number {
    return Math.min(CLIENT_DIRTY_BYTES_COMMIT, Math.max(1 << 20, this.lt.meta_avail.first_nr * (C.BLOCK_LG_SIZE / 4)));
  }

  allocIno(): bigint {
    if (this.inoNext >= this.inoEnd && this.inoNextRange) {
      this.inoNext = this.inoNextRange.ino;
      this.inoEnd = this.inoNextRange.ino + this.inoNextRange.nr;
      this.inoNextRange = null;
    }
    if (this.inoNext >= this.inoEnd) {
      this.fetchInodes();
      throw new ScoutfsError("ENOSPC", "no inode numbers left in this mount's range (more are being fetched)");
    }
    const ino = this.inoNext++;
    if (this.inoEnd - this.inoNext < this.inoBatch / 2n) this.fetchInodes();
    return ino;
  }

  private fetchInodes(): void {
    if (this.inoFetching || this.inoNextRange || this.closed) return;
    this.inoFetching = this.client
      .allocInodes(this.inoBatch)
      .then((r) => {
        this.inoFetchFailed = null;
        if (r.nr > 0n) this.inoNextRange = r;
        else this.inoExhausted = true;
      })
      .catch((err) => {
        this.inoFetchFailed = err;
        this.lastCommitError = err;
      })
      .finally(() => (this.inoFetching = null));
  }

  transSeq(): bigint {
    return this.lt.get_trans_seq;
  }

  /** A lock grant's write seq: later item versions must sort after it. */
  noteWriteSeq(seq: bigint): void {
    if (seq > this.writeSeq) this.writeSeq = seq;
  }

  /**
   * fsync/syncfs: make everything changed so far durable. Waits for a commit in flight (it may
   * hold our changes) and commits what is still dirty; with nothing dirty there is nothing to do
   * (a forced empty commit per fsync cost four device flushes for nothing).
   */
  async sync(): Promise<void> {
    await this.commit(false);
  }

  /** The server asked for a commit (it is finalizing trees for a merge). */
  syncRequested(): void {
    this.counters.syncRequests++;
    void this.commitQuietly(true);
  }

  private async commitQuietly(force: boolean): Promise<void> {
    try {
      await this.commit(force);
    } catch (err) {
      this.lastCommitError = err;
    }
  }

  get dirty(): boolean {
    return this.items.dirtyCount > 0 || this.pendingAllocs.length > 0 || this.pendingFrees.length > 0 || this.dataWritten;
  }

  /** Re-read fs_root and logs_root from the server. */
  async refreshRoots(): Promise<void> {
    await this.fetchRoots();
  }

  private rootsAsked = 0;
  private rootsApplied = 0;

  /**
   * get_roots, applied only if no later-asked get_roots was applied first. Lock grants and
   * commits ask concurrently; the server answers in order, so the answer to the later question
   * is the newer state, and an older answer arriving last must not replace it (it could lack the
   * tree our own commit just finalized, hiding our own items).
   */
  private async fetchRoots(): Promise<void> {
    const ticket = ++this.rootsAsked;
    const roots = await this.client.getRoots();
    if (ticket < this.rootsApplied) return;
    this.rootsApplied = ticket;
    this.forest.setRoots(roots);
  }

  // -------------------------------------------------------------------------------------------
  // Data

  private makeDataStore(): DataStore {
    return {
      alloc: (count: bigint) => {
        assert(count > 0n, `allocating ${count} data blocks`);
        const e = this.takeData(count);
        this.pendingAllocs.push(e);
        this.txAllocs?.push(e);
        return e;
      },
      free: (start: bigint, len: bigint) => {
        this.pendingFrees.push({ start, len });
      },
      ...dataBlockIO(this.dataDev, () => (this.dataWritten = true)),
    };
  }

  /** ItemStore.moreData: commit (the server refills data_avail) and say whether we got more. */
  async moreData(): Promise<boolean> {
    await this.commit(true);
    await this.settle();
    return this.lastDataRefill > 0n;
  }

  /** Data blocks the server added to data_avail at the last commit (what moreData reports). */
  private lastDataRefill = 0n;

  /** ItemStore.openInoMap: asked of the server, which asks every other mount. */
  openInoMap(groupNr: bigint): Promise<Uint8Array> {
    if (this.failed) return Promise.reject(this.failed);
    return this.client.openInoMap(groupNr);
  }

  /** Data blocks allocated since the last commit: the server's statfs does not know of them yet. */
  get uncommittedDataBlocks(): bigint {
    let n = 0n;
    for (const e of this.pendingAllocs) n += e.len;
    return n;
  }

  /** The front of the first extent that holds `count` blocks whole, else of the largest one. */
  private takeData(count: bigint): Extent {
    let pick = -1;
    for (let i = 0; i < this.dataView.length; i++) {
      const e = this.dataView[i]!;
      if (e.len >= count) {
        pick = i;
        break;
      }
      if (pick < 0 || e.len > this.dataView[pick]!.len) pick = i;
    }
    if (pick < 0) throw new ScoutfsError("ENOSPC", "no free data blocks left in this mount's allocator");
    const e = this.dataView[pick]!;
    const n = e.len < count ? e.len : count;
    const got = { start: e.start, len: n };
    if (n === e.len) this.dataView.splice(pick, 1);
    else this.dataView[pick] = { start: e.start + n, len: e.len - n };
    return got;
  }

  private giveBack(e: Extent): void {
    const i = this.pendingAllocs.indexOf(e);
    if (i >= 0) this.pendingAllocs.splice(i, 1);
    this.dataView.push(e);
    this.dataView.sort((a, b) => (a.start < b.start ? -1 : 1));
  }

  /** data_avail's extents minus the allocations not yet committed. */
  private rebuildDataView(): void {
    let view = this.dataAvail().extents(this.cache);
    for (const a of this.pendingAllocs) {
      const out: Extent[] = [];
      for (const e of view) {
        const end = e.start + e.len;
        const aEnd = a.start + a.len;
        if (aEnd <= e.start || a.start >= end) {
          out.push(e);
          continue;
        }
        assert(a.start >= e.start && aEnd <= end, `pending data allocation ${a.start},${a.len} is not inside data_avail`);
        if (a.start > e.start) out.push({ start: e.start, len: a.start - e.start });
        if (aEnd < end) out.push({ start: aEnd, len: end - aEnd });
      }
      view = out;
    }
    this.dataView = view;
    this.dataGiven = this.dataLeft();
  }

  private dataAvail(): ExtentAlloc {
    return new ExtentAlloc(this.lt.data_avail, btreeExtentOps, { first: BigInt(C.DATA_DEV_START_BLKNO), last: C.U64_MAX });
  }

  private dataFreed(): ExtentAlloc {
    return new ExtentAlloc(this.lt.data_freed, btreeExtentOps, { first: BigInt(C.DATA_DEV_START_BLKNO), last: C.U64_MAX });
  }

  // -------------------------------------------------------------------------------------------
  // Commit

  /**
   * Commit everything changed so far (see the header). Commits are serialized; `force` commits
   * even with nothing dirty (the server is waiting to finalize our tree).
   */
  async commit(force = false): Promise<void> {
    if (this.failed) throw this.failed;
    if (force) this.syncWanted = true;
    while (this.committing) await this.committing.catch(() => {});
    // the commit we waited for may have failed after writing our changes: never report success then
    if (this.failed) throw this.failed;
    if (!this.dirty && !this.syncWanted) return;
    // Our changes are durable once the server has recorded our tree (commit_log_trees answered);
    // the rest of the commit — the next transaction's get_log_trees and fresh roots — goes on
    // while the caller (fsync, a lock writeback) continues. The next commit waits for it.
    let durable!: () => void;
    const durableP = new Promise<void>((resolve) => (durable = resolve));
    const p = this.client_commit(durable);
    this.committing = p;
    const done = p.finally(() => {
      if (this.committing === p) this.committing = null;
    });
    done.catch(() => {});
    await Promise.race([durableP, done]);
  }

  /** Wait for the commit in flight to finish entirely (its next transaction opened). */
  async settle(): Promise<void> {
    while (this.committing) await this.committing.catch(() => {});
    if (this.failed) throw this.failed;
  }

  /**
   * Our last commit's blocks were written without a flush, for the co-located server's commit to
   * flush (ClientStoreOptions.colocatedServerTerm), and that server has not answered yet.
   */
  private metaLeftToServer = false;

  /** Flush what a co-located server was to flush for us: our requests may go elsewhere now. */
  private flushLeftToServer(): void {
    if (!this.metaLeftToServer) return;
    this.meta.sync();
    this.metaLeftToServer = false;
    this.counters.resendFlushes++;
  }

  /** Will the server our commit goes to flush our metadata device before recording it? */
  private serverFlushesForUs(): boolean {
    const term = this.colocatedServerTerm?.(this.meta) ?? null;
    return term !== null && term === this.client.serverTerm;
  }

  private async client_commit(durable: () => void = () => {}): Promise<void> {
    this.syncWanted = false;
    // (before the groups it counts are taken)
    const estimate = this.commitBlocksEstimate();
    const items = this.items.dirtyItems();
    const groups = this.dirtyGroups;
    this.dirtyGroups = new Set();
    this.lastNoted = "";
    const allocs = this.pendingAllocs;
    const frees = this.pendingFrees;
    const saved = LogTrees.encode(this.lt);
    const inodes = this.inodes.take();
    try {
      this.lt.inode_count_delta = BigInt.asIntN(64, this.lt.inode_count_delta + BigInt(inodes));
      const w = { cache: this.cache, alloc: new ListAlloc(this.cache, this.lt.meta_avail, this.lt.meta_freed) };
      const seq = this.lt.get_trans_seq > this.writeSeq ? this.lt.get_trans_seq : this.writeSeq;
      const root = this.lt.item_root as BtreeRootRef;
      for (const { key, val } of items) {
        if (val !== null) btreeForce(w, root, key, seq, 0, val);
        else btreeForce(w, root, key, seq, C.ITEM_FLAG_DELETION, EMPTY);
      }
      if (seq > this.lt.max_item_seq && items.length > 0) this.lt.max_item_seq = seq;
      this.setBloomBits(w, items);
      this.dataAvail().removeAll(w, allocs);
      this.dataFreed().insertAll(w, frees);
      if (this.dataWritten) this.dataDev.sync();
      const leave = this.serverFlushesForUs();
      this.cache.commit(null, !leave);
      if (leave) {
        this.metaLeftToServer = true;
        this.counters.flushesLeftToServer++;
      }
      this.ownBlocks += w.alloc.counters.alloc - w.alloc.counters.free;
      const used = w.alloc.counters.alloc;
      if (used > this.counters.commitBlocksMax) this.counters.commitBlocksMax = used;
      if (used > estimate) this.counters.commitBlocksOver++;
    } catch (err) {
      this.cache.discardDirty();
      this.lt = LogTrees.decode(saved);
      this.inodes.giveBack(inodes);
      for (const k of groups) this.dirtyGroups.add(k);
      this.counters.commitFailures++;
      throw err;
    }
    // the blocks are written: items are readable from our tree, data changes are in it
    this.items.clear();
    this.pendingAllocs = [];
    this.pendingFrees = [];
    this.dataWritten = false;
    try {
      await this.client.commitLogTrees(this.lt);
      // recorded: by a server that flushed our blocks first (its own, or the one we flushed for)
      this.metaLeftToServer = false;
      durable();
      const next = await this.client.getLogTrees();
      this.lastDataRefill = next.data_avail.total_len - this.lt.data_avail.total_len;
      await this.fetchRoots();
      // a new tree (ours was finalized for a merge): its allocators' trees came along
      if (next.nr !== this.lt.nr || next.item_root.ref.blkno !== this.lt.item_root.ref.blkno) this.ownBlocks = this.countOwnBlocks(next);
      this.lt = next;
      this.rebuildDataView();
    } catch (err) {
      // our tree holds changes the server may not have: refuse further work
      this.failed = new ScoutfsError("EIO", `commit of log trees to the server failed: ${(err as Error).message}`);
      this.counters.commitFailures++;
      throw this.failed;
    }
    this.lastCommitError = null;
    this.counters.commits++;
  }

  /**
   * Set the bloom bits of the locks covering `items` in our tree's bloom block (bloom.ts), copying
   * the block on write when a bit is missing; nothing is written when every bit is already set.
   */
  private setBloomBits(w: { cache: MetaCache; alloc: ListAlloc }, items: readonly { key: PackedKey }[]): void {
    const starts = new Set<PackedKey>();
    let last: PackedKey | null = null;
    for (const { key } of items) {
      const ls = lockStartOf(key);
      if (ls !== null && ls !== last) starts.add(ls);
      last = ls;
    }
    if (starts.size === 0) return;
    const ref = this.lt.bloom_ref;
    const old = ref.blkno !== 0n ? this.cache.read(ref, BloomCodec) : null;
    if (old !== null) {
      let missing = false;
      for (const s of starts) if (!bloomTest(old, s)) missing = true;
      if (!missing) return;
    }
    const b: Bloom = old !== null ? { totalSet: old.totalSet, bits: old.bits.slice() } : emptyBloom();
    for (const s of starts) bloomSet(b, s);
    const blkno = w.alloc.allocMeta();
    const seq = this.cache.create(blkno, BloomCodec, b);
    if (old !== null) w.alloc.freeMeta(ref.blkno);
    this.lt.bloom_ref = { blkno, seq } as typeof ref;
  }

  /** Commit, say farewell, disconnect, close the devices. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.timer) clearInterval(this.timer);
    try {
      if (!this.failed) {
        await this.commit(false);
        await this.settle();
      }
      await this.inoFetching;
      await this.client.farewell();
    } finally {
      this.closed = true;
      this.client.close();
      this.meta.close();
      this.dataDev.close();
    }
  }

  /** Drop everything without committing or saying farewell (tests: a mount that dies). */
  abandon(): void {
    if (this.timer) clearInterval(this.timer);
    this.closed = true;
    this.client.close();
    this.meta.close();
    this.dataDev.close();
  }
}
