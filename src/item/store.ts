/**
 * A standalone ItemStore: one writer that owns the volume and commits items straight into the
 * super block's fs_root, with the server's allocators. It is what a mount uses until the node
 * runtime (quorum, server, client, log trees and merging) takes over writing: the ItemStore
 * contract (types.ts) stays the same, only the source of clean items (fs_root plus log trees) and
 * the commit target (this mount's log tree, committed through the server) change.
 *
 * Transactions. `transact(fn)` runs fn against the item cache (cache.ts); a throw rolls back its
 * item changes and gives back the data blocks it allocated. Item changes reach btree blocks only
 * at commit: the dirty items are applied to fs_root in key order, then the block cache commits
 * (blocks, flush, super, flush).
 *
 * Allocators, all in the super block:
 * - metadata blocks come from server_meta_avail[0] (list.ts). Before applying items the commit
 *   refills that list from the meta_alloc extent trees when it is below META_AVAIL_LOW, so a
 *   commit never runs dry half way in normal operation.
 * - freed metadata blocks go to server_meta_freed[seq % 2]. Each commit first empties the OTHER
 *   freed list (filled by the previous, already durable commit) back into meta_alloc: a block is
 *   reusable only after the commit that freed it is on disk.
 * - data blocks come from data_alloc. Freed data extents are inserted into data_alloc as the last
 *   change of the commit that freed them, so no transaction can reuse them before that commit is
 *   durable, and a crash cannot leak them.
 * A commit that fails (ENOSPC because meta_alloc is exhausted, EIO) discards its dirty blocks:
 * the device keeps the previous commit and the dirty items stay in the cache, readable, for a
 * later retry. Nothing of a failed commit is ever half on disk.
 *
 * Data ordering: data blocks are written in place by `data.write`; the data device is flushed
 * before the metadata commit that references newly written blocks.
 */
import { Device } from "../block/device.ts";
import { MetaCache, TRANS_DIRTY_BLOCKS_MAX } from "../block/cache.ts";
import { readSuper, writeSuper, type Super } from "../block/super.ts";
import { ListAlloc, type ListHead } from "../alloc/list.ts";
import { ExtentAlloc } from "../alloc/extents.ts";
import { btreeExtentOps } from "../alloc/btree-ops.ts";
import { btreeDelete, btreeForce, btreeLookup, btreeNext, btreePrev, type BtreeRootRef } from "../btree/cow.ts";
import * as C from "../format/constants.ts";
import type { PackedKey } from "../format/key.ts";
import { ScoutfsError } from "../util/errors.ts";
import { InodeCountDelta } from "./inode-count.ts";
import { assert } from "../util/assert.ts";
import { ItemCache, type ItemSource } from "./cache.ts";
import type { DataStore, ItemReader, ItemRef, ItemStore, ItemWriter } from "./types.ts";
import { dataBlockIO } from "./data-io.ts";
import { reclaimListInto, refillAvailFrom } from "../alloc/recycle.ts";

/** Refill the metadata avail list at commit when it holds fewer blknos than this. */
export const META_AVAIL_LOW = 2048;
/** ...up to this many (it must fit in the list's first block). */
const META_AVAIL_TARGET = 6144;
/** Commit on its own once the dirty items reach this many bytes. */
export const DIRTY_BYTES_COMMIT = 16 << 20;
/**
 * ...or this many items: each can dirty a leaf at commit (their parents are shared), so a commit
 * stays under TRANS_DIRTY_BLOCKS_MAX dirty blocks (128 MiB) and within the META_AVAIL_TARGET
 * blocks the avail list holds. (Was 20000: up to 1.25 GiB of dirty blocks for random keys,
 * more than the avail list could supply.)
 */
export const DIRTY_ITEMS_COMMIT = TRANS_DIRTY_BLOCKS_MAX - 48;

/** Clean items from one btree (the fs_root); deletion items never appear in it. */
export class BtreeSource implements ItemSource {
  constructor(
    private readonly cache: MetaCache,
    private readonly root: BtreeRootRef,
  ) {}
  lookup(key: PackedKey): Uint8Array | null {
    const it = btreeLookup(this.cache, this.root, key);
    return it && !(it.flags & C.ITEM_FLAG_DELETION) ? it.val : null;
  }
  next(key: PackedKey, last: PackedKey): ItemRef | null {
    const it = btreeNext(this.cache, this.root, key);
    return it && it.key <= last ? { key: it.key, val: it.val } : null;
  }
  prev(key: PackedKey, first: PackedKey): ItemRef | null {
    const it = btreePrev(this.cache, this.root, key);
    return it && it.key >= first ? { key: it.key, val: it.val } : null;
  }
}

export interface StandaloneOptions {
  metaPath: string;
  dataPath: string;
  /** Clean metadata blocks kept in memory. */
  cacheBlocks?: number;
}

export class StandaloneStore implements ItemStore {
  readonly meta: Device;
  readonly dataDev: Device;
  readonly sup: Super;
  readonly cache: MetaCache;
  readonly items: ItemCache;
  private readonly fsRoot: BtreeRootRef;
  private lists: ListAlloc | null = null;
  private readonly dataAlloc: ExtentAlloc;
  private readonly metaAllocs: ExtentAlloc[];
  /** Data extents freed since the last commit: inserted into data_alloc by the commit. */
  private pendingDataFrees: { start: bigint; len: bigint }[] = [];
  /** Data extents allocated in the current top-level transaction (given back on rollback). */
  private txAllocs: { start: bigint; len: bigint }[] | null = null;
  /** Data extents allocated since the last commit and still in use (re-applied after a failed commit). */
  private periodAllocs: { start: bigint; len: bigint }[] = [];
  /** Allocator heads and roots as of the last commit (what the device holds). */
  private committedSnap = "";
  /** Set when the store could not recover from a failed commit: everything is refused. */
  private failed: ScoutfsError | null = null;
  lastCommitError: unknown = null;
  private dataWritten = false;
  private committing: Promise<void> | null = null;
  readonly counters = { commits: 0, commitFailures: 0, metaRefills: 0, metaRecycled: 0 };
  readonly fmtVers: number;
  readonly data: DataStore;

  private constructor(meta: Device, dataDev: Device, sup: Super, opts: StandaloneOptions) {
    this.meta = meta;
    this.dataDev = dataDev;
    this.sup = sup;
    this.fmtVers = Number(sup.fmt_vers);
    this.cache = new MetaCache(meta, sup.hdr.fsid, opts.cacheBlocks ? { maxCleanBlocks: opts.cacheBlocks } : {});
    this.fsRoot = sup.fs_root;
    this.items = new ItemCache(new BtreeSource(this.cache, this.fsRoot));
    const lastMeta = meta.sizeBytes / BigInt(C.BLOCK_LG_SIZE) - 1n;
    const metaBounds = { first: BigInt(C.META_DEV_START_BLKNO), last: sup.total_meta_blocks - 1n < lastMeta ? sup.total_meta_blocks - 1n : lastMeta };
    this.metaAllocs = sup.meta_alloc.map((r) => new ExtentAlloc(r, btreeExtentOps, metaBounds));
    this.dataAlloc = new ExtentAlloc(sup.data_alloc, btreeExtentOps, { first: BigInt(C.DATA_DEV_START_BLKNO), last: sup.total_data_blocks - 1n });
    this.data = this.makeDataStore();
    this.committedSnap = snapshotAllocHeads(sup);
  }

  /** Open both devices and verify them as one volume. */
  static open(opts: StandaloneOptions): StandaloneStore {
    const meta = Device.open(opts.metaPath, { write: true, exclusive: true });
    let dataDev: Device | null = null;
    try {
      const sup = readSuper(meta, { meta: true });
      dataDev = Device.open(opts.dataPath, { write: true, exclusive: true });
      if (dataDev.sameAs(meta)) throw new ScoutfsError("EINVAL", "the metadata and data devices are the same file");
      readSuper(dataDev, { meta: false, fsid: sup.hdr.fsid });
      return new StandaloneStore(meta, dataDev, sup, opts);
    } catch (err) {
      meta.close();
      dataDev?.close();
      throw err;
    }
  }

  /** The metadata allocator of the current transaction period (until the next commit). */
  private metaAlloc(): ListAlloc {
    this.lists ??= new ListAlloc(this.cache, this.sup.server_meta_avail[0]!, this.freedHead());
    return this.lists;
  }

  private freedHead(): ListHead {
    return this.sup.server_meta_freed[Number(this.sup.seq % 2n)]!;
  }

  private writer() {
    return { cache: this.cache, alloc: this.metaAlloc() };
  }

  // -------------------------------------------------------------------------------------------
  // ItemStore

  get reader(): ItemReader {
    return this.items;
  }

  transact<T>(fn: (w: ItemWriter) => T): T {
    if (this.failed) throw this.failed;
    if (this.items.inTransaction) return this.inodes.run(true, () => this.items.transact(fn));
    this.txAllocs = [];
    let r: T;
    try {
      r = this.inodes.run(false, () => this.items.transact(fn));
    } catch (err) {
      // the items are rolled back; blocks allocated for them were never referenced
      const allocs = this.txAllocs;
      this.txAllocs = null;
      for (const e of allocs) {
        this.dataAlloc.insert(this.writer(), e.start, e.len);
        const i = this.periodAllocs.indexOf(e);
        if (i >= 0) this.periodAllocs.splice(i, 1);
      }
      throw err;
    }
    this.txAllocs = null;
    this.maybeCommit();
    return r;
  }

  /** Inodes created minus deleted since the last commit: added to the super's inode_count. */
  private readonly inodes = new InodeCountDelta();

  countInodes(delta: number): void {
    assert(this.items.inTransaction, "inodes are counted inside a transaction");
    this.inodes.add(delta);
  }

  allocIno(): bigint {
    const ino = this.sup.next_ino;
    this.sup.next_ino += 1n;
    return ino;
  }

  transSeq(): bigint {
    return this.sup.seq;
  }

  private makeDataStore(): DataStore {
    return {
      alloc: (count: bigint) => {
        const e = this.dataAlloc.allocData(this.writer(), count);
        if (!e) throw new ScoutfsError("ENOSPC", "no free data blocks left on the data device");
        this.txAllocs?.push(e);
        this.periodAllocs.push(e);
        return e;
      },
      free: (start: bigint, len: bigint) => {
        this.pendingDataFrees.push({ start, len });
      },
      ...dataBlockIO(this.dataDev, () => (this.dataWritten = true)),
    };
  }

  // -------------------------------------------------------------------------------------------
  // Commit

  /** A commit forced by size: its failure is kept for the next sync (the operation succeeded). */
  private maybeCommit(): void {
    if (this.items.dirtyBytes < DIRTY_BYTES_COMMIT && this.items.dirtyCount < DIRTY_ITEMS_COMMIT) return;
    try {
      this.commitNow();
    } catch (err) {
      this.lastCommitError = err;
    }
  }

  async sync(): Promise<void> {
    if (this.failed) throw this.failed;
    this.commitNow();
  }

  /** True when there is anything to commit. */
  get dirty(): boolean {
    return this.items.dirtyCount > 0 || this.cache.dirtyCount > 0 || this.pendingDataFrees.length > 0 || this.dataWritten || this.dataAlloc.cached.len > 0n;
  }

  /**
   * Commit everything: recycle the previous commit's freed metadata, refill the avail list,
   * apply dirty items to fs_root, return freed data, write blocks, flush, super, flush.
   */
  commitNow(): void {
    assert(!this.items.inTransaction, "commit inside a transaction");
    if (this.failed) throw this.failed;
    if (!this.dirty) return;
    const inodes = this.inodes.take();
    const inodeCount = this.sup.inode_count;
    try {
      this.sup.inode_count = BigInt.asUintN(64, inodeCount + BigInt(inodes));
      const w = this.writer();
      this.recycleFreed(w);
      this.refillAvail(w);
      for (const { key, val } of this.items.dirtyItems()) {
        if (val !== null) btreeForce(w, this.fsRoot, key, this.sup.seq, 0, val);
        else if (btreeLookup(this.cache, this.fsRoot, key)) btreeDelete(w, this.fsRoot, key);
      }
      this.dataAlloc.returnCached(w);
      this.dataAlloc.insertAll(w, this.pendingDataFrees);
      if (this.dataWritten) this.dataDev.sync();
      this.cache.commit(() => {
        this.sup.seq += 1n;
        writeSuper(this.meta, this.sup);
      });
    } catch (err) {
      this.sup.inode_count = inodeCount;
      this.inodes.giveBack(inodes);
      this.recoverFailedCommit();
      this.counters.commitFailures++;
      this.lastCommitError = err;
      throw err;
    }
    this.items.clear();
    this.pendingDataFrees = [];
    this.periodAllocs = [];
    this.dataWritten = false;
    this.lists = null;
    this.committedSnap = snapshotAllocHeads(this.sup);
    this.lastCommitError = null;
    this.counters.commits++;
  }

  /**
   * Nothing of a failed commit is on disk (the super was not written, or its write failed before
   * any later commit could build on it): go back to the last committed allocator state, keep
   * the dirty items, and take the data blocks they use out of the allocator again.
   */
  private recoverFailedCommit(): void {
    this.cache.discardDirty();
    restoreAllocHeads(this.sup, this.committedSnap);
    this.lists = null;
    this.dataAlloc.cached = { start: 0n, len: 0n };
    try {
      const w = this.writer();
      for (const e of this.periodAllocs) this.dataAlloc.remove(w, e.start, e.len);
    } catch (err) {
      this.failed = new ScoutfsError("EIO", `the volume could not recover from a failed commit and refuses changes: ${(err as Error).message}`, "unmount and mount again");
    }
  }

  /** Empty the freed list the previous commit filled (durable now) back into meta_alloc. */
  private recycleFreed(w: { cache: MetaCache; alloc: ListAlloc }): void {
    const other = this.sup.server_meta_freed[Number((this.sup.seq + 1n) % 2n)]!;
    this.counters.metaRecycled += reclaimListInto(w, other, this.metaAllocs[0]!);
  }

  /** Top up the avail list from the meta_alloc extent trees. */
  private refillAvail(w: { cache: MetaCache; alloc: ListAlloc }): void {
    if (this.sup.server_meta_avail[0]!.first_nr >= META_AVAIL_LOW) return;
    refillAvailFrom(w, this.metaAllocs, META_AVAIL_LOW, META_AVAIL_TARGET);
    this.counters.metaRefills++;
  }

  /** Statistics for statfs: free metadata and data blocks. */
  freeBlocks(): { meta: bigint; data: bigint } {
    const meta = this.sup.meta_alloc.reduce((n, r) => n + r.total_len, 0n) + this.sup.server_meta_avail[0]!.total_nr;
    return { meta, data: this.dataAlloc.totalFree() };
  }

  close(): void {
    if (!this.items.inTransaction) this.commitNow();
    this.meta.close();
    this.dataDev.close();
  }
}

function snapshotAllocHeads(sup: Super): string {
  return JSON.stringify(
    {
      avail: sup.server_meta_avail,
      freed: sup.server_meta_freed,
      meta_alloc: sup.meta_alloc,
      data_alloc: sup.data_alloc,
      fs_root: sup.fs_root,
    },
    (_k, v) => (typeof v === "bigint" ? `${v}n` : v),
  );
}

function restoreAllocHeads(sup: Super, saved: string): void {
  const s = JSON.parse(saved, (_k, v) => (typeof v === "string" && /^\d+n$/.test(v) ? BigInt(v.slice(0, -1)) : v));
  // assign in place: other objects hold references to these heads and roots
  for (let i = 0; i < 2; i++) {
    Object.assign(sup.server_meta_avail[i]!, s.avail[i]);
    Object.assign(sup.server_meta_freed[i]!, s.freed[i]);
    Object.assign(sup.meta_alloc[i]!, s.meta_alloc[i]);
    Object.assign(sup.meta_alloc[i]!.root, s.meta_alloc[i].root);
  }
  Object.assign(sup.data_alloc, s.data_alloc);
  Object.assign(sup.data_alloc.root, s.data_alloc.root);
  Object.assign(sup.fs_root, s.fs_root);
}
