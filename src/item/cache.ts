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

interface Undo {
  key: PackedKey;
  /** The dirty entry before the change; undefined when the key was not dirty. */
  prev: Uint8Array | null | undefined;
  /** Whether the key was fresh before the change (see the header). */
  prevFresh: boolean;
}

export class ItemCache implements ItemWriter {
  private readonly dirty = new Map<PackedKey, Uint8Array | null>();
  /** Dirty keys whose source has no live version (created over nothing): see the header. */
  private readonly fresh = new Set<PackedKey>();
  /** Dirty keys in order, kept up to date by inserts and rollbacks (rebuilt if `sortedValid` is off). */
  private sorted: PackedKey[] = [];
  private sortedValid = true;
  private undo: Undo[] | null = null;
  private depth = 0;
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
    return this.source.lookup(key);
  }

  private sortedKeys(): PackedKey[] {
    if (!this.sortedValid) {
      this.sorted = [...this.dirty.keys()].sort();
      this.sortedValid = true;
    }
    return this.sorted;
  }

  /** Index of the first dirty key >= key. */
  private lowerBound(key: PackedKey): number {
    const s = this.sortedKeys();
    let lo = 0, hi = s.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (s[mid]! < key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  next(key: PackedKey, last: PackedKey): ItemRef | null {
    let from = key;
    for (;;) {
      if (from > last) return null;
      const s = this.sortedKeys();
      const i = this.lowerBound(from);
      const dk = i < s.length && s[i]! <= last ? s[i]! : null;
      const clean = this.source.next(from, dk ?? last);
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
      const s = this.sortedKeys();
      const i = this.lowerBound(from);
      // the last dirty key <= from
      const j = i < s.length && s[i] === from ? i : i - 1;
      const dk = j >= 0 && s[j]! >= first ? s[j]! : null;
      const clean = this.source.prev(from, dk ?? first);
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
   * the sorted keys and the byte count. No undo record: callers record it.
   */
  private apply(key: PackedKey, val: Uint8Array | null | undefined, fresh: boolean): void {
    const cur = this.dirty.get(key);
    if (cur !== undefined && cur !== null) this.dirtyBytes -= cur.byteLength;
    if (val === undefined) {
      if (cur !== undefined) {
        this.dirty.delete(key);
        if (this.sortedValid) {
          const i = this.lowerBound(key);
          if (this.sorted[i] === key) this.sorted.splice(i, 1);
          else this.sortedValid = false;
        }
        this.dirtyBytes -= DIRTY_ITEM_OVERHEAD_BYTES + key.length;
      }
      this.fresh.delete(key);
      return;
    }
    if (cur === undefined) {
      // keep the order as we go: re-sorting every dirty key at the next read made each
      // operation cost O(n log n) in the dirty items (creates slowed to ~1 ms at 20k items)
      if (this.sortedValid) this.sorted.splice(this.lowerBound(key), 0, key);
      this.dirtyBytes += DIRTY_ITEM_OVERHEAD_BYTES + key.length;
    }
    if (val !== null) this.dirtyBytes += val.byteLength;
    this.dirty.set(key, val);
    if (fresh) this.fresh.add(key);
    else this.fresh.delete(key);
  }

  private set(key: PackedKey, val: Uint8Array | null | undefined, fresh: boolean): void {
    assert(this.depth > 0, "item change outside a transaction");
    this.undo!.push({ key, prev: this.dirty.get(key), prevFresh: this.fresh.has(key) });
    this.apply(key, val, fresh);
  }

  create(key: PackedKey, val: Uint8Array): void {
    const d = this.dirty.get(key);
    if (d !== undefined) {
      if (d !== null) throw new ScoutfsError("EEXIST", `item ${keyHex(key)} exists`);
      // re-created over our own deletion: the source still holds a version to overwrite
      this.set(key, new Uint8Array(val), false);
      return;
    }
    if (this.source.lookup(key) !== null) throw new ScoutfsError("EEXIST", `item ${keyHex(key)} exists`);
    this.set(key, new Uint8Array(val), true);
  }

  update(key: PackedKey, val: Uint8Array): void {
    if (this.lookup(key) === null) throw new ScoutfsError("ENOENT", `item ${keyHex(key)} does not exist`);
    this.set(key, new Uint8Array(val), this.fresh.has(key));
  }

  put(key: PackedKey, val: Uint8Array): void {
    // a key not dirty yet may or may not exist in the source: not known to be fresh
    this.set(key, new Uint8Array(val), this.fresh.has(key));
  }

  delete(key: PackedKey): void {
    if (this.lookup(key) === null) throw new ScoutfsError("ENOENT", `item ${keyHex(key)} does not exist`);
    // a fresh key never reached the source: forget it rather than write a deletion
    if (this.fresh.has(key)) this.set(key, undefined, false);
    else this.set(key, null, false);
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
    }
  }

  private rollbackTo(mark: number): void {
    const u = this.undo!;
    while (u.length > mark) {
      const { key, prev, prevFresh } = u.pop()!;
      this.apply(key, prev, prevFresh);
    }
  }

  get inTransaction(): boolean {
    return this.depth > 0;
  }

  /** The dirty items in key order (for the commit); the cache keeps them until `clear()`. */
  dirtyItems(): DirtyItem[] {
    assert(this.depth === 0, "draining dirty items inside a transaction");
    return this.sortedKeys().map((key) => ({ key, val: this.dirty.get(key)! }));
  }

  /** After the commit that wrote `dirtyItems()` is durable. */
  clear(): void {
    assert(this.depth === 0, "clearing dirty items inside a transaction");
    this.dirty.clear();
    this.fresh.clear();
    this.sorted = [];
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
