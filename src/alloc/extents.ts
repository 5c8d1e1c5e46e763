/**
 * Free extents in an alloc root btree (scoutfs alloc.c, "the core allocator").
 *
 * Each free extent is stored twice, as value-less items in the same btree:
 * - by blkno, zone FREE_EXTENT_BLKNO_ZONE, key first = last block, second = length. Found with
 *   next(start) because the key holds the END: the first item at or after a block is the extent
 *   that contains it or the next one. Used to merge neighbours when freeing.
 * - by order, zone FREE_EXTENT_ORDER_ZONE, key first = U64_MAX - floor(log8(len)), second = last
 *   block, third = length. The first item of the zone is an extent of the largest order, so
 *   "allocate from the front of the largest extent" is one next() from the zone's start; that
 *   discourages fragmentation by leaving small freed extents time to merge before reuse.
 * The root's total_len counts the free blocks. Both items of an extent change together; a
 * failure between them (ENOSPC for metadata blocks, which the transaction's list allocator
 * reports before anything is written) leaves the tree as dirty state that the caller abandons
 * with the transaction.
 *
 * Metadata for these btree changes comes from the transaction's alloc lists (list.ts), never from
 * an extent tree, so there is no recursion.
 *
 * Data allocation (allocData): large requests are served straight from the tree, best fit by
 * order: the smallest order that has an extent at least as long as the request, else the front of
 * the largest extent (a shorter extent: the caller loops). Small requests stream from a cached
 * extent of DATA_ALLOC_LG_THRESH_BLOCKS taken from the tree, so files written a block at a time
 * still land contiguously and cost no btree change per block; `returnCached` puts the unused
 * rest back before a commit.
 */
import { ScoutfsError } from "../util/errors.ts";
import { assert } from "../util/assert.ts";
import * as C from "../format/constants.ts";
import { freeExtentOrder } from "../format/alloc.ts";
import { keyPack, keyUnpack, type PackedKey } from "../format/key.ts";
import type { MetaCache } from "../block/cache.ts";
import type { Writer } from "./types.ts";

export interface Extent {
  start: bigint;
  len: bigint;
}

/** The mutable shape of an alloc root (the AllocRoot struct decoded). */
export interface AllocRootMut {
  total_len: bigint;
  flags: number;
  _pad?: number;
  root: { ref: { blkno: bigint; seq: bigint }; height: number };
}

/** The btree operations the extent allocator needs (src/btree/ provides them). */
export interface ExtentTreeOps {
  /** The first item with key >= `key`, or null. */
  next(cache: MetaCache, root: AllocRootMut["root"], key: PackedKey): { key: PackedKey; val: Uint8Array } | null;
  insert(w: Writer, root: AllocRootMut["root"], key: PackedKey, val: Uint8Array): void;
  delete(w: Writer, root: AllocRootMut["root"], key: PackedKey): void;
}

/** Small data allocations stream from cached extents of this many 4 KiB blocks (8 MiB). */
export const DATA_ALLOC_LG_THRESH_BLOCKS = (8n * 1024n * 1024n) >> BigInt(C.BLOCK_SM_SHIFT);
/** How many same-order extents best fit looks at before settling for the largest. */
const BEST_FIT_SCAN_MAX = 32;
const MAX_ORDER = freeExtentOrder(C.U64_MAX);
const EMPTY = new Uint8Array(0);

/** Extents sorted by start, adjacent ones joined into runs (each keeps its parts). */
export function coalesceExtents(es: readonly Extent[]): { start: bigint; len: bigint; parts: Extent[] }[] {
  const sorted = [...es].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const runs: { start: bigint; len: bigint; parts: Extent[] }[] = [];
  for (const e of sorted) {
    const last = runs[runs.length - 1];
    if (last !== undefined && last.start + last.len === e.start) {
      last.len += e.len;
      last.parts.push(e);
    } else runs.push({ start: e.start, len: e.len, parts: [e] });
  }
  return runs;
}

export function blknoKey(start: bigint, len: bigint): PackedKey {
  return keyPack({ zone: C.FREE_EXTENT_BLKNO_ZONE, first: start + len - 1n, type: 0, second: len, third: 0n, fourth: 0 });
}

export function orderKey(start: bigint, len: bigint): PackedKey {
  return keyPack({ zone: C.FREE_EXTENT_ORDER_ZONE, first: C.U64_MAX - freeExtentOrder(len), type: 0, second: start + len - 1n, third: len, fourth: 0 });
}

/** The first possible order-zone key of extents of order `order`. */
function orderStartKey(order: bigint): PackedKey {
  return keyPack({ zone: C.FREE_EXTENT_ORDER_ZONE, first: C.U64_MAX - order, type: 0, second: 0n, third: 0n, fourth: 0 });
}

/** Decode an extent from either index's key; null when the key is in another zone. */
export function extentFromKey(p: PackedKey, zone: number): Extent | null {
  const k = keyUnpack(p);
  if (k.zone !== zone) return null;
  const end = zone === C.FREE_EXTENT_BLKNO_ZONE ? k.first : k.second;
  const len = zone === C.FREE_EXTENT_BLKNO_ZONE ? k.second : k.third;
  if (len === 0n || len > end + 1n) throw new ScoutfsError("EIO", `free extent item ${zone}.${k.first}.${k.second}.${k.third} has an impossible length`);
  return { start: end - len + 1n, len };
}

export class ExtentAlloc {
  /** Small-allocation stream (data allocators only); not in the tree while cached. */
  cached: Extent = { start: 0n, len: 0n };
  readonly counters = { insert: 0, remove: 0, merge: 0, alloc: 0 };

  constructor(
    readonly root: AllocRootMut,
    private readonly ops: ExtentTreeOps,
    /** Blocks outside [first, last] are refused as corruption or caller bugs. */
    private readonly bounds: { first: bigint; last: bigint },
  ) {}

  private checkBounds(start: bigint, len: bigint, what: string): void {
    if (len <= 0n || start < this.bounds.first || start + len - 1n > this.bounds.last) {
      throw new ScoutfsError("EINVAL", `${what} extent ${start},${len} is outside the device's blocks ${this.bounds.first}..${this.bounds.last}`);
    }
  }

  private put(w: Writer, e: Extent): void {
    this.ops.insert(w, this.root.root, blknoKey(e.start, e.len), EMPTY);
    this.ops.insert(w, this.root.root, orderKey(e.start, e.len), EMPTY);
    this.root.total_len += e.len;
  }

  private take(w: Writer, e: Extent): void {
    this.ops.delete(w, this.root.root, blknoKey(e.start, e.len));
    this.ops.delete(w, this.root.root, orderKey(e.start, e.len));
    this.root.total_len -= e.len;
  }

  /** The free extent containing `blkno` or the first one after it. */
  nextExtent(cache: MetaCache, blkno: bigint): Extent | null {
    const it = this.ops.next(cache, this.root.root, keyPack({ zone: C.FREE_EXTENT_BLKNO_ZONE, first: blkno, type: 0, second: 0n, third: 0n, fourth: 0 }));
    return it ? extentFromKey(it.key, C.FREE_EXTENT_BLKNO_ZONE) : null;
  }

  /** Free an extent, merging it with free neighbours. Overlapping a free extent is EINVAL. */
  insert(w: Writer, start: bigint, len: bigint): void {
    this.checkBounds(start, len, "freed");
    let s = start;
    let l = len;
    const end = start + len - 1n;
    const around = s > 0n ? this.nextExtent(w.cache, s - 1n) : this.nextExtent(w.cache, s);
    if (around) {
      const aEnd = around.start + around.len - 1n;
      if (around.start <= end && aEnd >= start) {
        throw new ScoutfsError("EINVAL", `freeing extent ${start},${len} that overlaps free extent ${around.start},${around.len}`);
      }
      if (aEnd + 1n === start) {
        this.take(w, around);
        s = around.start;
        l += around.len;
        this.counters.merge++;
      }
    }
    const after = this.nextExtent(w.cache, end + 1n);
    if (after) {
      if (after.start <= end) throw new ScoutfsError("EINVAL", `freeing extent ${start},${len} that overlaps free extent ${after.start},${after.len}`);
      if (after.start === end + 1n) {
        this.take(w, after);
        l += after.len;
        this.counters.merge++;
      }
    }
    this.put(w, { start: s, len: l });
    this.counters.insert++;
  }

  /**
   * Free many extents (a commit's frees): adjacent ones as one run, one tree change per run
   * instead of one per extent (1000 one-block files were 1000).
   */
  insertAll(w: Writer, es: readonly Extent[]): void {
    for (const run of coalesceExtents(es)) this.insert(w, run.start, run.len);
  }

  /**
   * Remove many extents (a commit's allocations) as runs of adjacent ones. A run across two free
   * extents (a tree whose neighbours were never merged) is removed piece by piece.
   */
  removeAll(w: Writer, es: readonly Extent[]): void {
    for (const run of coalesceExtents(es)) {
      try {
        this.remove(w, run.start, run.len);
      } catch (err) {
        // (remove refuses before it changes anything)
        if (run.parts.length === 1 || !(err instanceof ScoutfsError) || err.code !== "EINVAL") throw err;
        for (const e of run.parts) this.remove(w, e.start, e.len);
      }
    }
  }

  /** Remove [start, start+len) which must lie inside one free extent. */
  remove(w: Writer, start: bigint, len: bigint): void {
    this.checkBounds(start, len, "removed");
    const found = this.nextExtent(w.cache, start);
    if (!found || found.start > start || found.start + found.len < start + len) {
      throw new ScoutfsError("EINVAL", `removing extent ${start},${len} that is not inside one free extent`);
    }
    const fEnd = found.start + found.len;
    if (found.start < start) this.put(w, { start: found.start, len: start - found.start });
    if (fEnd > start + len) this.put(w, { start: start + len, len: fEnd - (start + len) });
    this.take(w, found);
    this.counters.remove++;
  }

  /** The front of an extent: `count` blocks or fewer when the extent is shorter. */
  private takeFront(w: Writer, e: Extent, count: bigint): Extent {
    const n = e.len < count ? e.len : count;
    // the remainder goes in before the old items go out: the tree never empties in between
    // (which would free its root block and allocate a new one for every allocation)
    if (e.len > n) this.put(w, { start: e.start + n, len: e.len - n });
    this.take(w, e);
    this.counters.alloc++;
    return { start: e.start, len: n };
  }

  /** The front of the largest free extent, at most `count` blocks; null when empty. */
  allocLargest(w: Writer, count: bigint): Extent | null {
    assert(count > 0n, `allocating ${count} blocks`);
    const it = this.ops.next(w.cache, this.root.root, orderStartKey(MAX_ORDER));
    const e = it ? extentFromKey(it.key, C.FREE_EXTENT_ORDER_ZONE) : null;
    return e ? this.takeFront(w, e, count) : null;
  }

  /**
   * Best fit by order: the first extent of the smallest order that holds `count` blocks whole;
   * else the front of the largest extent (shorter than asked). null when empty.
   */
  allocBestFit(w: Writer, count: bigint): Extent | null {
    assert(count > 0n, `allocating ${count} blocks`);
    for (let order = freeExtentOrder(count); order <= MAX_ORDER; order++) {
      let key = orderStartKey(order);
      for (let scanned = 0; scanned < BEST_FIT_SCAN_MAX; scanned++) {
        const it = this.ops.next(w.cache, this.root.root, key);
        if (!it) return this.allocLargest(w, count);
        const e = extentFromKey(it.key, C.FREE_EXTENT_ORDER_ZONE);
        if (!e || freeExtentOrder(e.len) !== order) break;
        if (e.len >= count) return this.takeFront(w, e, count);
        // just past this item: same order, the next greater end, any length
        key = keyPack({ zone: C.FREE_EXTENT_ORDER_ZONE, first: C.U64_MAX - order, type: 0, second: e.start + e.len, third: 0n, fourth: 0 });
      }
    }
    return this.allocLargest(w, count);
  }

  /**
   * Allocate data blocks: up to `count` (possibly fewer). Small requests stream from the cached
   * extent. null when the tree and the cache are empty (the caller asks the server for more, or
   * reports ENOSPC).
   */
  allocData(w: Writer, count: bigint): Extent | null {
    assert(count > 0n, `allocating ${count} blocks`);
    if (count >= DATA_ALLOC_LG_THRESH_BLOCKS) return this.allocBestFit(w, count);
    if (this.cached.len === 0n) {
      const e = this.allocLargest(w, DATA_ALLOC_LG_THRESH_BLOCKS);
      if (!e) return null;
      this.cached = e;
    }
    const n = this.cached.len < count ? this.cached.len : count;
    const got = { start: this.cached.start, len: n };
    this.cached = { start: this.cached.start + n, len: this.cached.len - n };
    return got;
  }

  /** Put the unused rest of the cached extent back into the tree (before a commit). */
  returnCached(w: Writer): void {
    if (this.cached.len > 0n) {
      const c = this.cached;
      this.cached = { start: 0n, len: 0n };
      this.insert(w, c.start, c.len);
    }
  }

  /** Free blocks including the cached stream. */
  totalFree(): bigint {
    return this.root.total_len + this.cached.len;
  }

  /** Every free extent in blkno order (checks and tests). */
  extents(cache: MetaCache, limit = Number.MAX_SAFE_INTEGER): Extent[] {
    const out: Extent[] = [];
    let from = 0n;
    while (out.length < limit) {
      const e = this.nextExtent(cache, from);
      if (!e) break;
      out.push(e);
      from = e.start + e.len;
    }
    return out;
  }
}
