/**
 * The item cache of one mount: the items changed since the last commit, over a persistent source.
 *
 * Reads see the newest version of every item: a dirty item (created, updated or deleted since the
 * last commit) hides whatever the persistent source holds for its key; other keys come from the
 * source (the fs_root, later the forest of fs_root and log trees). `next`/`prev` merge the two
 * sorted streams, skipping keys whose newest version is a deletion.
 *
 * Changes happen in transactions (`transact`). Each records an undo log, so a transaction that
 * throws is rolled back completely: POSIX operations are all-or-nothing even when they fail half
 * way (ENOSPC, EIO, a bug). Transactions nest (an inner one joins the outer one).
 *
 * At commit, `drain()` hands the dirty items, in key order, to the writer that puts them into a
 * btree (deletions become btree deletes, or deletion items in a log tree), and the cache starts
 * empty again. Until a commit is durable the dirty items stay readable here, so nothing is lost to
 * readers while blocks are being written.
 *
 * Bounds: dirty items are counted in bytes (key + value + overhead) so the transaction layer can
 * commit before a transaction grows beyond what the metadata allocator can absorb.
 *
 * Fresh keys: a key created while neither dirty nor present in the source is "fresh": the
 * persistent state has no live version of it. Deleting a fresh key forgets the dirty entry
 * instead of recording a deletion: the commit then writes nothing for it, which is the same
 * state (absent) that a deletion item would leave. Without this, an extent that a sequence of
 * appends merges again and again (each append deletes the previous, shorter extent item) left one
 * deletion item per append in the log tree, and every later read of the file's extents had to
 * step over them in every tree of the forest.
 *
 * Source reads within a transaction: one operation reads the same items of the source again and
 * again (an inode loaded, then looked up again to save it and again to check that it exists; an
 * entry found by `next`, then checked before its deletion). While a transaction runs, the clean
 * items read from the source are kept (`srcSeen`) and answer those repeated lookups: the source
 * cannot change during a transaction (a commit never runs inside one, and the caller's locks keep
 * other mounts' changes away from the keys it touches), so the answer is the one the source
 * would give. They are dropped when the outermost transaction ends.
 */
import { ScoutfsError } from "../util/errors.ts";
import { assert } from "../util/assert.ts";
import type { PackedKey } from "../format/key.ts";
import type { ItemReader, ItemRef, ItemWriter } from "./types.ts";

/** A dirty item: its new value, or null for a deletion. */
export interface DirtyItem {
  key: PackedKey;
  val: Uint8Array | null;
}

/** Where clean items come from. */
export interface ItemSource {
  lookup(key: PackedKey): Uint8Array | null;
  next(key: PackedKey, last: PackedKey): ItemRef | null;
  prev(key: PackedKey, first: PackedKey): ItemRef | null;
}

/** Bytes a dirty item is accounted as (key, value, map and array overhead). */
const DIRTY_ITEM_OVERHEAD_BYTES = 96;
/** Source items one transaction remembers at most (a long deletion walks many once each). */
const SRC_SEEN_MAX = 256;

interface Undo {
  key: PackedKey;
  /** The dirty entry before the change; undefined when the key was not dirty. */
  prev: Uint8Array | null | undefined;
  /** Whether the key was fresh before the change (see the header). */
  prevFresh: boolean;
}

/** Keys per chunk of `SortedKeys` before it splits in two. */
const SORTED_CHUNK_MAX = 512;

/**
 * A set of keys in sorted order, held as a list of sorted chunks of at most SORTED_CHUNK_MAX keys.
 * One sorted array made every insertion and removal move half the dirty keys (a 20k-item
 * transaction spent ~1.5 µs per created item in `splice`); here they move at most a chunk's
 * worth, and a search is a binary search over the chunks' last keys, then inside one chunk.
 */
export class SortedKeys {
  /** Non-empty sorted chunks; every key of a chunk is below every key of the next. */
  private chunks: PackedKey[][] = [];
  size = 0;

  /** Index of the first chunk whose last key is >= key (chunks.length if none). */
  private chunkOf(key: PackedKey): number {
    const cs = this.chunks;
    let lo = 0, hi = cs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const c = cs[mid]!;
      if (c[c.length - 1]! < key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Insert a key that is not in the set. */
  insert(key: PackedKey): void {
    const cs = this.chunks;
    if (cs.length === 0) {
      cs.push([key]);
      this.size = 1;
      return;
    }
    let ci = this.chunkOf(key);
    if (ci === cs.length) ci--;
    const c = cs[ci]!;
    c.splice(lowerBound(c, key), 0, key);
    this.size++;
    if (c.length > SORTED_CHUNK_MAX) cs.splice(ci + 1, 0, c.splice(c.length >>> 1));
  }

  /** Remove `key`; false when it was not in the set. */
  remove(key: PackedKey): boolean {
    const ci = this.chunkOf(key);
    const c = this.chunks[ci];
    if (c === undefined) return false;
    const i = lowerBound(c, key);
    if (c[i] !== key) return false;
    c.splice(i, 1);
    if (c.length === 0) this.chunks.splice(ci, 1);
    this.size--;
    return true;
  }

  /** The first key >= `key`, or null. */
  ceil(key: PackedKey): PackedKey | null {
    const c = this.chunks[this.chunkOf(key)];
    return c === undefined ? null : c[lowerBound(c, key)]!;
  }

  /** The last key <= `key`, or null. */
  floor(key: PackedKey): PackedKey | null {
    const ci = this.chunkOf(key);
    const c = this.chunks[ci];
    if (c !== undefined) {
      const i = lowerBound(c, key);
      if (c[i] === key) return key;
      if (i > 0) return c[i - 1]!;
    }
    if (ci === 0) return null;
    const p = this.chunks[ci - 1]!;
    return p[p.length - 1]!;
  }

  /** Every key, in order. */
  all(): PackedKey[] {
    return this.chunks.length === 1 ? this.chunks[0]!.slice() : ([] as PackedKey[]).concat(...this.chunks);
  }

  /** Replace the contents with `keys` (any order, no duplicates). */
  reset(keys: Iterable<PackedKey>): void {
    const all = [...keys].sort();
    this.chunks = [];
    for (let i = 0; i < all.length; i += SORTED_CHUNK_MAX / 2) this.chunks.push(all.slice(i, i + SORTED_CHUNK_MAX / 2));
    this.size = all.length;
  }
}

/** Index of the first key >= key in a sorted array. */
function lowerBound(a: PackedKey[], key: PackedKey): number {
  let lo = 0, hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class ItemCache implements ItemWriter {
  private readonly dirty = new Map<PackedKey, Uint8Array | null>();
  /** Dirty keys whose source has no live version (created over nothing): see the header. */
  private readonly fresh = new Set<PackedKey>();
  /** Dirty keys in order, kept up to date by inserts and rollbacks (rebuilt if `sortedValid` is off). */
  private readonly sorted = new SortedKeys();
  private sortedValid = true;
  private undo: Undo[] | null = null;
  private depth = 0;
  /** Clean values read from the source in the current transaction (see the header); null outside one. */
  private srcSeen: Map<PackedKey, Uint8Array | null> | null = null;
  private readonly srcSeenMap = new Map<PackedKey, Uint8Array | null>();
  dirtyBytes = 0;
  readonly counters = { transactions: 0, rollbacks: 0, drains: 0 };

  constructor(private readonly source: ItemSource) {}

  get dirtyCount(): number {
    return this.dirty.size;
  }

  // -------------------------------------------------------------------------------------------
  // Reads

  lookup(key: PackedKey): Uint8Array | null {
    const d = this.dirty.get(key);
    if (d !== undefined) return d;
    return this.sourceLookup(key);
  }

  /** `source.lookup`, answered from the items seen in this transaction when it can. */
  private sourceLookup(key: PackedKey): Uint8Array | null {
    const seen = this.srcSeen;
    if (seen === null) return this.source.lookup(key);
    const s = seen.get(key);
    if (s !== undefined) return s;
    const v = this.source.lookup(key);
    if (seen.size < SRC_SEEN_MAX) seen.set(key, v);
    return v;
  }

  /** Remember a clean item a source walk returned (in a transaction). */
  private sourceSaw(it: ItemRef): void {
    const seen = this.srcSeen;
    if (seen !== null && seen.size < SRC_SEEN_MAX) seen.set(it.key, it.val);
  }

  private sortedKeys(): SortedKeys {
    if (!this.sortedValid) {
      this.sorted.reset(this.dirty.keys());
      this.sortedValid = true;
    }
    return this.sorted;
  }

  next(key: PackedKey, last: PackedKey): ItemRef | null {
    let from = key;
    for (;;) {
      if (from > last) return null;
      const c = this.dirty.size === 0 ? null : this.sortedKeys().ceil(from);
      const dk = c !== null && c <= last ? c : null;
      const clean = this.source.next(from, dk ?? last);
      if (clean !== null) this.sourceSaw(clean);
      // a clean item before the next dirty key is current (dirty keys mask only themselves)
      if (clean && (dk === null || clean.key < dk)) return clean;
      if (dk === null) return null;
      const v = this.dirty.get(dk)!;
      if (v !== null) return { key: dk, val: v };
      // a deletion: continue after it
      from = keySucc(dk);
      if (from === "") return null;
    }
  }

  prev(key: PackedKey, first: PackedKey): ItemRef | null {
    let from = key;
    for (;;) {
      if (from < first) return null;
      // the last dirty key <= from
      const f = this.dirty.size === 0 ? null : this.sortedKeys().floor(from);
      const dk = f !== null && f >= first ? f : null;
      const clean = this.source.prev(from, dk ?? first);
      if (clean !== null) this.sourceSaw(clean);
      if (clean && (dk === null || clean.key > dk)) return clean;
      if (dk === null) return null;
      const v = this.dirty.get(dk)!;
      if (v !== null) return { key: dk, val: v };
      from = keyPred(dk);
      if (from === "") return null;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Changes

  /**
   * Make `key`'s dirty entry `val` (undefined: not dirty at all) with freshness `fresh`, keeping
   * the sorted keys and the byte count; `cur` is its dirty entry now (the callers have looked it
   * up already). No undo record: callers record it.
   */
  private apply(key: PackedKey, cur: Uint8Array | null | undefined, val: Uint8Array | null | undefined, fresh: boolean): void {
    if (cur !== undefined && cur !== null) this.dirtyBytes -= cur.byteLength;
    if (val === undefined) {
      if (cur !== undefined) {
        this.dirty.delete(key);
        if (this.sortedValid && !this.sorted.remove(key)) this.sortedValid = false;
        this.dirtyBytes -= DIRTY_ITEM_OVERHEAD_BYTES + key.length;
      }
      this.fresh.delete(key);
      return;
    }
    if (cur === undefined) {
      // keep the order as we go: re-sorting every dirty key at the next read made each
      // operation cost O(n log n) in the dirty items (creates slowed to ~1 ms at 20k items)
      if (this.sortedValid) this.sorted.insert(key);
      this.dirtyBytes += DIRTY_ITEM_OVERHEAD_BYTES + key.length;
    }
    if (val !== null) this.dirtyBytes += val.byteLength;
    this.dirty.set(key, val);
    if (fresh) this.fresh.add(key);
    else if (cur !== undefined) this.fresh.delete(key);
  }

  /** Change `key` from `cur` (its dirty entry, `curFresh` its freshness) to `val`, with undo. */
  private set(key: PackedKey, cur: Uint8Array | null | undefined, curFresh: boolean, val: Uint8Array | null | undefined, fresh: boolean): void {
    assert(this.depth > 0, "item change outside a transaction");
    this.undo!.push({ key, prev: cur, prevFresh: curFresh });
    this.apply(key, cur, val, fresh);
  }

  // Only dirty keys can be fresh, so a key that is not dirty skips the `fresh` lookup.

  create(key: PackedKey, val: Uint8Array): void {
    const d = this.dirty.get(key);
    if (d !== undefined) {
      if (d !== null) throw new ScoutfsError("EEXIST", `item ${keyHex(key)} exists`);
      // re-created over our own deletion: the source still holds a version to overwrite
      this.set(key, d, this.fresh.has(key), new Uint8Array(val), false);
      return;
    }
    if (this.sourceLookup(key) !== null) throw new ScoutfsError("EEXIST", `item ${keyHex(key)} exists`);
    this.set(key, undefined, false, new Uint8Array(val), true);
  }

  update(key: PackedKey, val: Uint8Array): void {
    const d = this.dirty.get(key);
    if (d === null || (d === undefined && this.sourceLookup(key) === null)) throw new ScoutfsError("ENOENT", `item ${keyHex(key)} does not exist`);
    const f = d !== undefined && this.fresh.has(key);
    this.set(key, d, f, new Uint8Array(val), f);
  }

  put(key: PackedKey, val: Uint8Array): void {
    // a key not dirty yet may or may not exist in the source: not known to be fresh
    const d = this.dirty.get(key);
    const f = d !== undefined && this.fresh.has(key);
    this.set(key, d, f, new Uint8Array(val), f);
  }

  delete(key: PackedKey): void {
    const d = this.dirty.get(key);
    if (d === null || (d === undefined && this.sourceLookup(key) === null)) throw new ScoutfsError("ENOENT", `item ${keyHex(key)} does not exist`);
    // a fresh key never reached the source: forget it rather than write a deletion
    const f = d !== undefined && this.fresh.has(key);
    if (f) this.set(key, d, f, undefined, false);
    else this.set(key, d, f, null, false);
  }

  /**
   * Run `fn` as a transaction (joining an outer one). A throw rolls back every change `fn` made
   * and rethrows.
   */
  transact<T>(fn: (w: ItemWriter) => T): T {
    if (this.depth > 0) {
      // nested: roll back only our own part on failure
      const mark = this.undo!.length;
      this.depth++;
      try {
        return fn(this);
      } catch (err) {
        this.rollbackTo(mark);
        throw err;
      } finally {
        this.depth--;
      }
    }
    this.undo = [];
    this.depth = 1;
    this.srcSeen = this.srcSeenMap;
    this.counters.transactions++;
    try {
      return fn(this);
    } catch (err) {
      this.rollbackTo(0);
      this.counters.rollbacks++;
      throw err;
    } finally {
      this.depth = 0;
      this.undo = null;
      this.srcSeen = null;
      this.srcSeenMap.clear();
    }
  }

  private rollbackTo(mark: number): void {
    const u = this.undo!;
    while (u.length > mark) {
      const { key, prev, prevFresh } = u.pop()!;
      this.apply(key, this.dirty.get(key), prev, prevFresh);
    }
  }

  get inTransaction(): boolean {
    return this.depth > 0;
  }

  /** The dirty items in key order (for the commit); the cache keeps them until `clear()`. */
  dirtyItems(): DirtyItem[] {
    assert(this.depth === 0, "draining dirty items inside a transaction");
    return this.sortedKeys().all().map((key) => ({ key, val: this.dirty.get(key)! }));
  }

  /** After the commit that wrote `dirtyItems()` is durable. */
  clear(): void {
    assert(this.depth === 0, "clearing dirty items inside a transaction");
    this.dirty.clear();
    this.fresh.clear();
    this.sorted.reset([]);
    this.sortedValid = true;
    this.dirtyBytes = 0;
    this.counters.drains++;
  }

  /** A reader that sees this cache's current view. */
  get reader(): ItemReader {
    return this;
  }
}

/** The packed key right after `k` in sort order, or "" past the maximum. */
export function keySucc(k: PackedKey): PackedKey {
  let i = k.length - 1;
  while (i >= 0 && k.charCodeAt(i) === 0xff) i--;
  if (i < 0) return "";
  return k.slice(0, i) + String.fromCharCode(k.charCodeAt(i) + 1) + "\0".repeat(k.length - i - 1);
}

/** The packed key right before `k`, or "" before the minimum. */
export function keyPred(k: PackedKey): PackedKey {
  let i = k.length - 1;
  while (i >= 0 && k.charCodeAt(i) === 0) i--;
  if (i < 0) return "";
  return k.slice(0, i) + String.fromCharCode(k.charCodeAt(i) - 1) + "\xff".repeat(k.length - i - 1);
}

function keyHex(k: PackedKey): string {
  let s = "";
  for (let i = 0; i < k.length; i++) s += k.charCodeAt(i).toString(16).padStart(2, "0");
  return s;
}
