/**
 * Forest reads (scoutfs forest.c): the items a mount sees are the union of fs_root and every log
 * tree in logs_root — other mounts' committed trees, this mount's finalized ones, and this
 * mount's open tree (read from memory: it is newer than anything logs_root says about it).
 * For each key the version with the greatest item seq wins (ties go to the later tree, this
 * mount's own tree last); a winning deletion item hides the key.
 *
 * Staleness: roots are a snapshot (get_roots, or the super block). Blocks of trees that have
 * since been rewritten or merged may be reused, which a read detects as ESTALE (the block's seq
 * no longer matches the ref). The reader then refreshes its roots and retries, at most
 * FOREST_STALE_RETRIES times, after which the read fails with EIO. Reads are synchronous (the
 * ItemStore contract), so the refresh here reads the super block the server last wrote
 * (`refreshSync`); the async get_roots refresh happens after every commit (client-store.ts).
 *
 * Bloom filters (bloom.ts): a read of keys inside one lock's range skips the other mounts' log
 * trees whose bloom block lacks that lock's bits; fs_root and our open tree are always read, and
 * so is a tree without a bloom block. Which trees a lock's reads visit is remembered until the
 * roots or our open tree change.
 */
import { btreeLookup, btreeNext, btreePrev, type BtreeItemView, type BtreeRootRef } from "../btree/cow.ts";
import type { MetaCache } from "../block/cache.ts";
import { LogTrees } from "../format/log_trees.ts";
import * as C from "../format/constants.ts";
import { keyPack, keyUnpack, type PackedKey } from "../format/key.ts";
import { ScoutfsError } from "../util/errors.ts";
import type { ItemSource } from "./cache.ts";
import type { ItemRef } from "./types.ts";
import { keyPred, keySucc } from "./cache.ts";
import { BloomCodec, bloomTest } from "./bloom.ts";
import { lockStartOf } from "../format/lock-ranges.ts";

export const FOREST_STALE_RETRIES = 10;

export interface ForestRootsIn {
  fs_root: BtreeRootRef;
  logs_root: BtreeRootRef;
}

export interface OwnTree {
  rid: bigint;
  nr: bigint;
  root: BtreeRootRef;
}

function copyRoot(r: BtreeRootRef): BtreeRootRef {
  return { ref: { blkno: r.ref.blkno, seq: r.ref.seq }, height: r.height };
}

export class Forest implements ItemSource {
  private fsRoot: BtreeRootRef = { ref: { blkno: 0n, seq: 0n }, height: 0 };
  private logsRoot: BtreeRootRef = { ref: { blkno: 0n, seq: 0n }, height: 0 };
  /** Other trees' item roots, oldest first (logs_root key order). */
  private trees: BtreeRootRef[] = [];
  /** The bloom block refs of `trees` (blkno 0: none). */
  private treeBlooms: { blkno: bigint; seq: bigint }[] = [];
  /** allTrees() filtered by the bloom blocks, per lock start key (reset with `all`). */
  private byLock = new Map<PackedKey, BtreeRootRef[]>();
  /** `trees` was computed since setRoots, without the open tree (treesRid, treesNr). */
  private treesValid = false;
  private treesRid = 0n;
  private treesNr = 0n;
  /** allTrees() as last computed (null: to compute), and the open tree root it ended with. */
  private all: BtreeRootRef[] | null = null;
  private allOwn: BtreeRootRef | null = null;
  private allOwnBlkno = 0n;
  private allOwnSeq = 0n;
  private allOwnHeight = 0;
  readonly counters = { stale: 0, refreshes: 0, treesRead: 0, bloomSkips: 0 };

  constructor(
    private readonly cache: MetaCache,
    /** The newest committed roots, read synchronously (the super block). */
    private readonly refreshSync: () => ForestRootsIn,
    /** This mount's open tree, or null before it has one. */
    private readonly own: () => OwnTree | null,
  ) {}

  /** Use these roots from now on (after get_roots). */
  setRoots(r: ForestRootsIn): void {
    this.fsRoot = copyRoot(r.fs_root);
    this.logsRoot = copyRoot(r.logs_root);
    this.trees = [];
    this.treesValid = false;
    this.all = null;
    this.counters.refreshes++;
  }

  get roots(): ForestRootsIn {
    return { fs_root: this.fsRoot, logs_root: this.logsRoot };
  }

  /** The item roots of every log tree in logs_root except our open one (rid, nr). */
  private otherTrees(own: OwnTree | null): BtreeRootRef[] {
    const rid = own === null ? -1n : own.rid;
    const nr = own === null ? -1n : own.nr;
    if (this.treesValid && this.treesRid === rid && this.treesNr === nr) return this.trees;
    const out: BtreeRootRef[] = [];
    const blooms: { blkno: bigint; seq: bigint }[] = [];
    let key = keyPack({ zone: C.LOG_TREES_ZONE, first: 0n, type: 0, second: 0n, third: 0n, fourth: 0 });
    for (;;) {
      const it = btreeNext(this.cache, this.logsRoot, key);
      if (!it) break;
      const k = keyUnpack(it.key);
      if (k.zone !== C.LOG_TREES_ZONE) break;
      if (it.val.length !== LogTrees.size) throw new ScoutfsError("EIO", `log_trees item of ${it.val.length} bytes`);
      const lt = LogTrees.decode(it.val);
      if (!(own !== null && lt.rid === rid && lt.nr === nr) && lt.item_root.height > 0) {
        out.push(copyRoot(lt.item_root));
        blooms.push({ blkno: lt.bloom_ref.blkno, seq: lt.bloom_ref.seq });
      }
      const nk = keySucc(it.key);
      if (nk === "") break;
      key = nk;
    }
    this.counters.treesRead++;
    this.trees = out;
    this.treeBlooms = blooms;
    this.treesValid = true;
    this.treesRid = rid;
    this.treesNr = nr;
    this.all = null;
    return out;
  }

  /**
   * fs_root, the other trees, then our open tree: the array is kept between reads (every read
   * used to build it anew) and rebuilt when the roots or our open tree change.
   */
  private allTrees(): BtreeRootRef[] {
    const own = this.own();
    const other = this.otherTrees(own);
    const ownRoot = own !== null && own.root.height > 0 ? own.root : null;
    const all = this.all;
    if (all !== null && this.allOwn === ownRoot && (ownRoot === null || (this.allOwnBlkno === ownRoot.ref.blkno && this.allOwnSeq === ownRoot.ref.seq && this.allOwnHeight === ownRoot.height))) return all;
    const t = [this.fsRoot, ...other];
    if (ownRoot !== null) {
      // a copy: the open tree's root object changes in place when our commit writes it
      t.push(copyRoot(ownRoot));
      this.allOwnBlkno = ownRoot.ref.blkno;
      this.allOwnSeq = ownRoot.ref.seq;
      this.allOwnHeight = ownRoot.height;
    }
    this.allOwn = ownRoot;
    this.all = t;
    this.byLock.clear();
    return t;
  }

  /**
   * The trees a read of keys in [key, last] must visit: when both ends are in one lock's range,
   * the other mounts' trees whose bloom block lacks the lock are left out.
   */
  private treesFor(key: PackedKey, last: PackedKey): BtreeRootRef[] {
    const all = this.allTrees();
    const other = this.trees;
    if (other.length === 0) return all;
    const ls = lockStartOf(key);
    if (ls === null || (last !== key && lockStartOf(last) !== ls)) return all;
    let t = this.byLock.get(ls);
    if (t !== undefined) return t;
    t = [all[0]!];
    for (let i = 0; i < other.length; i++) {
      const b = this.treeBlooms[i]!;
      if (b.blkno !== 0n && !bloomTest(this.cache.read(b, BloomCodec), ls)) {
        this.counters.bloomSkips++;
        continue;
      }
      t.push(other[i]!);
    }
    for (let i = 1 + other.length; i < all.length; i++) t.push(all[i]!);
    if (this.byLock.size >= 4096) this.byLock.clear();
    this.byLock.set(ls, t);
    return t;
  }

  /**
   * A read failed with `err` on its attempt number `attempt`: on ESTALE refresh the roots from the
   * super block (so the caller tries again), at most FOREST_STALE_RETRIES times, then EIO; any
   * other error is rethrown. (The reads loop themselves rather than pass a closure to a retry
   * helper: every item read allocated one.)
   */
  private staleRetry(err: unknown, attempt: number): void {
    if (!(err instanceof ScoutfsError) || err.code !== "ESTALE") throw err;
    this.counters.stale++;
    if (attempt >= FOREST_STALE_RETRIES) throw new ScoutfsError("EIO", `forest read still stale after ${attempt} root refreshes: ${err.message}`);
    this.setRoots(this.refreshSync());
  }

  /** The winning version of a key among candidate items (greatest seq, later tree on ties). */
  private static better(a: BtreeItemView | null, b: BtreeItemView | null): BtreeItemView | null {
    if (!a) return b;
    if (!b) return a;
    return b.seq >= a.seq ? b : a;
  }

  lookup(key: PackedKey): Uint8Array | null {
    for (let attempt = 0; ; attempt++) {
      try {
        return this.lookupOnce(key);
      } catch (err) {
        this.staleRetry(err, attempt);
      }
    }
  }

  private lookupOnce(key: PackedKey): Uint8Array | null {
    let best: BtreeItemView | null = null;
    for (const r of this.treesFor(key, key)) best = Forest.better(best, btreeLookup(this.cache, r, key));
    return best && !(best.flags & C.ITEM_FLAG_DELETION) ? best.val : null;
  }

  /**
   * The first live item in [key, last]. Each tree's candidate (its first item at or after the
   * search position) is kept across deletions: stepping over a deletion item re-reads only the
   * trees whose candidate was that key, not every tree of the forest.
   */
  next(key: PackedKey, last: PackedKey): ItemRef | null {
    for (let attempt = 0; ; attempt++) {
      try {
        return this.nextOnce(key, last);
      } catch (err) {
        this.staleRetry(err, attempt);
      }
    }
  }

  private nextOnce(key: PackedKey, last: PackedKey): ItemRef | null {
    if (key > last) return null;
    const trees = this.treesFor(key, last);
    const n = trees.length;
    const cand: (BtreeItemView | null)[] = new Array(n);
    // bounded: a tree's first item past `last` is not even made (see btreeNext)
    for (let i = 0; i < n; i++) {
      const it = btreeNext(this.cache, trees[i]!, key, last);
      cand[i] = it !== null && it.key <= last ? it : null;
    }
    for (;;) {
      let best: BtreeItemView | null = null;
      for (let i = 0; i < n; i++) {
        const it = cand[i]!;
        if (it === null) continue;
        if (best === null || it.key < best.key) best = it;
        else if (it.key === best.key) best = Forest.better(best, it);
      }
      if (best === null) return null;
      if (!(best.flags & C.ITEM_FLAG_DELETION)) return { key: best.key, val: best.val };
      const k = best.key;
      const from = keySucc(k);
      if (from === "" || from > last) return null;
      for (let i = 0; i < n; i++) {
        if (cand[i]?.key !== k) continue;
        const it = btreeNext(this.cache, trees[i]!, from, last);
        cand[i] = it !== null && it.key <= last ? it : null;
      }
    }
  }

  /** The last live item in [first, key]; candidates kept per tree as in `next`. */
  prev(key: PackedKey, first: PackedKey): ItemRef | null {
    for (let attempt = 0; ; attempt++) {
      try {
        return this.prevOnce(key, first);
      } catch (err) {
        this.staleRetry(err, attempt);
      }
    }
  }

  private prevOnce(key: PackedKey, first: PackedKey): ItemRef | null {
    if (key < first) return null;
    const trees = this.treesFor(first, key);
    const n = trees.length;
    const cand: (BtreeItemView | null)[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const it = btreePrev(this.cache, trees[i]!, key, first);
      cand[i] = it !== null && it.key >= first ? it : null;
    }
    for (;;) {
      let best: BtreeItemView | null = null;
      for (let i = 0; i < n; i++) {
        const it = cand[i]!;
        if (it === null) continue;
        if (best === null || it.key > best.key) best = it;
        else if (it.key === best.key) best = Forest.better(best, it);
      }
      if (best === null) return null;
      if (!(best.flags & C.ITEM_FLAG_DELETION)) return { key: best.key, val: best.val };
      const k = best.key;
      const from = keyPred(k);
      if (from === "" || from < first) return null;
      for (let i = 0; i < n; i++) {
        if (cand[i]?.key !== k) continue;
        const it = btreePrev(this.cache, trees[i]!, from, first);
        cand[i] = it !== null && it.key >= first ? it : null;
      }
    }
  }
}
