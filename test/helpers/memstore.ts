/**
 * MemStore: a simple in-memory ItemStore for testing the filesystem layer without the btree
 * engine. Items live in a sorted, chunked key list plus a Map; data blocks in a Map. Every
 * transact() keeps an undo log (items, data blocks, allocator changes) and rolls back if its
 * function throws. Freed data blocks become allocatable again only at sync() (the "commit"),
 * which also advances the transaction seq. Counters let tests check the contract was honoured.
 */
import type { PackedKey } from "../../src/format/key.ts";
import type { DataStore, ItemReader, ItemRef, ItemStore, ItemWriter } from "../../src/item/types.ts";
import { ScoutfsError } from "../../src/util/errors.ts";

const CHUNK_MAX = 512;
const BLOCK = 4096;

/** Sorted strings in chunks of at most CHUNK_MAX: O(sqrt n)-ish inserts without a tree. */
class SortedKeys {
  chunks: string[][] = [];

  private findChunk(k: string): number {
    let lo = 0;
    let hi = this.chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const c = this.chunks[mid]!;
      if (c[c.length - 1]! < k) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private static lowerBound(a: string[], k: string): number {
    let lo = 0;
    let hi = a.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (a[mid]! < k) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  insert(k: string): void {
    if (this.chunks.length === 0) {
      this.chunks.push([k]);
      return;
    }
    const ci = this.findChunk(k);
    const c = this.chunks[ci]!;
    c.splice(SortedKeys.lowerBound(c, k), 0, k);
    if (c.length > CHUNK_MAX) this.chunks.splice(ci + 1, 0, c.splice(c.length >> 1));
  }

  remove(k: string): void {
    const ci = this.findChunk(k);
    const c = this.chunks[ci]!;
    const i = SortedKeys.lowerBound(c, k);
    if (c[i] !== k) throw new Error("removing a missing key");
    c.splice(i, 1);
    if (c.length === 0) this.chunks.splice(ci, 1);
  }

  /** The first key >= k. */
  ceil(k: string): string | undefined {
    if (this.chunks.length === 0) return undefined;
    const ci = this.findChunk(k);
    const c = this.chunks[ci]!;
    const i = SortedKeys.lowerBound(c, k);
    if (i < c.length) return c[i];
    return this.chunks[ci + 1]?.[0];
  }

  /** The last key <= k. */
  floor(k: string): string | undefined {
    if (this.chunks.length === 0) return undefined;
    const ci = this.findChunk(k);
    const c = this.chunks[ci]!;
    const i = SortedKeys.lowerBound(c, k);
    if (i < c.length && c[i] === k) return k;
    if (i > 0) return c[i - 1];
    const p = this.chunks[ci - 1];
    return p?.[p.length - 1];
  }
}

interface Undo {
  items: Map<string, Uint8Array | undefined>;
  blocks: Map<bigint, Uint8Array | undefined>;
  allocs: Array<[bigint, bigint]>;
  frees: number;
}

export interface MemStoreOptions {
  /** Data blocks available (after the first 64, which are reserved like the real data device). */
  dataBlocks?: bigint;
  fmtVers?: number;
  firstIno?: bigint;
}

export class MemStore implements ItemStore {
  readonly items = new Map<string, Uint8Array>();
  private readonly keys = new SortedKeys();
  readonly blocks = new Map<bigint, Uint8Array>();
  /** Free data extents [start, len], sorted by start. */
  free: Array<[bigint, bigint]> = [];
  /** Freed in transactions since the last sync: reusable after it. */
  pendingFree: Array<[bigint, bigint]> = [];
  readonly fmtVers: number;
  readonly totalDataBlocks: bigint;
  private seq = 1n;
  private nextIno: bigint;
  private undo: Undo | null = null;
  counters = { transactions: 0, rollbacks: 0, syncs: 0 };

  constructor(opts: MemStoreOptions = {}) {
    this.fmtVers = opts.fmtVers ?? 2;
    this.totalDataBlocks = opts.dataBlocks ?? 1n << 20n;
    this.free = [[64n, this.totalDataBlocks]];
    this.nextIno = opts.firstIno ?? 2n;
  }

  // ------------------------------------------------------------------------------------------
  // Reads.

  private lookup(key: PackedKey): Uint8Array | null {
    return this.items.get(key) ?? null;
  }

  private next(key: PackedKey, last: PackedKey): ItemRef | null {
    const k = this.keys.ceil(key);
    if (k === undefined || k > last) return null;
    return { key: k, val: this.items.get(k)! };
  }

  private prev(key: PackedKey, first: PackedKey): ItemRef | null {
    const k = this.keys.floor(key);
    if (k === undefined || k < first) return null;
    return { key: k, val: this.items.get(k)! };
  }

  readonly reader: ItemReader = {
    lookup: (k) => this.lookup(k),
    next: (k, l) => this.next(k, l),
    prev: (k, f) => this.prev(k, f),
  };

  // ------------------------------------------------------------------------------------------
  // Writes (only inside transact).

  private remember(key: string): void {
    const u = this.undo;
    if (u === null) throw new Error("item change outside a transaction");
    if (!u.items.has(key)) u.items.set(key, this.items.get(key));
  }

  private set(key: string, val: Uint8Array): void {
    if (key.length !== 27) throw new Error(`bad packed key length ${key.length}`);
    if (val.length > 896) throw new ScoutfsError("EINVAL", `value of ${val.length} bytes`);
    this.remember(key);
    if (!this.items.has(key)) this.keys.insert(key);
    this.items.set(key, new Uint8Array(val)); // a copy (Buffer#slice would be a view)
  }

  private readonly writer: ItemWriter = {
    lookup: (k) => this.lookup(k),
    next: (k, l) => this.next(k, l),
    prev: (k, f) => this.prev(k, f),
    create: (k, v) => {
      if (this.items.has(k)) throw new ScoutfsError("EEXIST", "item exists");
      this.set(k, v);
    },
    update: (k, v) => {
      if (!this.items.has(k)) throw new ScoutfsError("ENOENT", "no item to update");
      this.set(k, v);
    },
    put: (k, v) => this.set(k, v),
    delete: (k) => {
      if (!this.items.has(k)) throw new ScoutfsError("ENOENT", "no item to delete");
      this.remember(k);
      this.items.delete(k);
      this.keys.remove(k);
    },
  };

  transact<T>(fn: (w: ItemWriter) => T): T {
    if (this.undo !== null) return fn(this.writer); // nested: part of the outer transaction
    const undo: Undo = { items: new Map(), blocks: new Map(), allocs: [], frees: this.pendingFree.length };
    this.undo = undo;
    this.counters.transactions++;
    try {
      const r = fn(this.writer);
      this.undo = null;
      return r;
    } catch (e) {
      this.rollback(undo);
      this.undo = null;
      throw e;
    }
  }

  private rollback(u: Undo): void {
    this.counters.rollbacks++;
    for (const [k, v] of u.items) {
      const had = this.items.has(k);
      if (v === undefined) {
        if (had) {
          this.items.delete(k);
          this.keys.remove(k);
        }
      } else {
        if (!had) this.keys.insert(k);
        this.items.set(k, v);
      }
    }
    for (const [b, v] of u.blocks) {
      if (v === undefined) this.blocks.delete(b);
      else this.blocks.set(b, v);
    }
    this.pendingFree.length = u.frees;
    for (const [s, l] of u.allocs) this.returnFree(s, l);
  }

  // ------------------------------------------------------------------------------------------
  // Data.

  private returnFree(start: bigint, len: bigint): void {
    this.free.push([start, len]);
    this.free.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const merged: Array<[bigint, bigint]> = [];
    for (const [s, l] of this.free) {
      const p = merged[merged.length - 1];
      if (p !== undefined && p[0] + p[1] === s) p[1] += l;
      else {
        if (p !== undefined && p[0] + p[1] > s) throw new Error(`double free of data block ${s}`);
        merged.push([s, l]);
      }
    }
    this.free = merged;
  }

  readonly data: DataStore = {
    alloc: (count) => {
      if (this.undo === null) throw new Error("data alloc outside a transaction");
      if (count <= 0n) throw new Error(`alloc of ${count}`);
      const f = this.free[0];
      if (f === undefined) throw new ScoutfsError("ENOSPC", "data device full");
      const len = f[1] < count ? f[1] : count;
      const start = f[0];
      f[0] += len;
      f[1] -= len;
      if (f[1] === 0n) this.free.shift();
      this.undo.allocs.push([start, len]);
      return { start, len };
    },
    free: (start, len) => {
      if (this.undo === null) throw new Error("data free outside a transaction");
      if (start < 64n || start + len > 64n + this.totalDataBlocks) throw new Error(`free of ${start}+${len} outside the device`);
      this.pendingFree.push([start, len]);
    },
    read: (blkno, count, out) => {
      if (out.length < count * BLOCK) throw new Error("short read buffer");
      for (let i = 0; i < count; i++) {
        const b = this.blocks.get(blkno + BigInt(i));
        const dst = out.subarray(i * BLOCK, (i + 1) * BLOCK);
        if (b === undefined) dst.fill(0);
        else dst.set(b);
      }
    },
    write: (blkno, data) => {
      if (data.length % BLOCK !== 0) throw new Error(`write of ${data.length} bytes`);
      const u = this.undo;
      for (let i = 0; i < data.length / BLOCK; i++) {
        const b = blkno + BigInt(i);
        if (u !== null && !u.blocks.has(b)) u.blocks.set(b, this.blocks.get(b));
        this.blocks.set(b, new Uint8Array(data.subarray(i * BLOCK, (i + 1) * BLOCK)));
      }
    },
  };

  allocIno(): bigint {
    return this.nextIno++;
  }

  transSeq(): bigint {
    return this.seq;
  }

  sync(): Promise<void> {
    this.commit();
    return Promise.resolve();
  }

  /** The synchronous part of sync(): frees become reusable, the seq moves on. */
  commit(): void {
    this.counters.syncs++;
    const pend = this.pendingFree;
    this.pendingFree = [];
    for (const [s, l] of pend) this.returnFree(s, l);
    this.seq++;
  }

  /** Free data blocks (including pending frees). */
  freeBlocks(): bigint {
    let n = 0n;
    for (const [, l] of this.free) n += l;
    for (const [, l] of this.pendingFree) n += l;
    return n;
  }

  /** Every item key in order (tests). */
  allKeys(): string[] {
    return this.keys.chunks.flat();
  }
}
