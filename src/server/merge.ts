/**
 * Log merging, done by the server in its own process (scoutfs hands merge ranges to clients
 * with get/commit_log_merge; that protocol is not implemented yet — docs/cluster.md).
 *
 * Why finalization is coordinated (server.c explains it at finalize_and_start_log_merge): merging
 * a tree into fs_root is only correct if no tree left outside the merge can hold an OLDER version
 * of a key than the merged ones — otherwise a merged deletion would let that older version
 * reappear. Item seqs of a key only grow (a later lock holder gets greater seqs), and every item a
 * tree created after some instant holds has a seq above every seq issued before it. So a merge
 * starts at a *cut*: an instant at which the newest tree of every mount is finalized (or unopened:
 * never had a transaction, so it holds nothing). The merge's inputs are then every finalized tree,
 * and every tree opened later is newer than all of them.
 *
 * A round: `requestMerge()` (enough commits since the last merge, a timer, or a test) starts a
 * round and asks every mount with an open tree to commit (sync_log_trees). Each mount's next
 * get_log_trees finalizes its tree, creates its next tree unopened, and waits (bounded by
 * `roundTimeoutMs`) for the cut; the last mount to arrive makes it. If the round times out, the
 * waiters proceed (their new trees are then open and must be finalized by a later round).
 *
 * The merge itself: walk the union of the input trees in key order; for each key take the
 * version with the greatest seq (ties: the later tree); if fs_root holds a newer seq, keep it;
 * a deletion item removes the key from fs_root, others are forced into fs_root with their seq.
 * fs_root changes are committed in bounded server transactions (a reader sees a consistent forest
 * at every commit: the input trees still exist and carry the same or newer versions). When every
 * key is merged, each input tree's blocks are freed and its item deleted.
 */
import { btreeDelete, btreeForce, btreeLookup, btreeScan, type BtreeRootRef } from "../btree/cow.ts";
import type { BtreeItemView } from "../btree/node.ts";
import type { MetaCache } from "../block/cache.ts";
import { PACKED_KEY_MAX, PACKED_KEY_MIN, type PackedKey } from "../format/key.ts";
import * as C from "../format/constants.ts";
import { assert } from "../util/assert.ts";
import { ScoutfsError } from "../util/errors.ts";
import type { LogTrees } from "../format/log_trees.ts";
import { ltIsFinalized, ltIsUnopened, type ServerLogTrees } from "./log_trees.ts";
import type { ServerTrans } from "./trans.ts";

/**
 * Let the process's other work run between two merge transactions: FUSE requests, mounts' RPCs,
 * timers. (A microtask — `await Promise.resolve()` — let none of them in: a merge of 100k+
 * items held every request of the node for 400-650 ms. Now a request waits for one
 * transaction at most, ~20 ms.)
 */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Items merged per server transaction at most. */
export const MERGE_ITEMS_PER_TRANS = 4000;
/** Tree blocks freed per server transaction at most (the freed list's first block must hold them). */
export const MERGE_FREE_BLOCKS_PER_TRANS = 4000;
/** Leaf space of an item beyond its value, at most (56-byte header, 27-byte key, slack). */
const MERGE_ITEM_OVERHEAD_BYTES = 128;

export interface MergeOptions {
  /** A round waits this long for every mount to finalize before giving up. */
  roundTimeoutMs: number;
  /** Ask every mount to commit (sync_log_trees); failures are ignored (they reconnect or are fenced). */
  syncMount: (rid: bigint) => void;
  log: (msg: string) => void;
}

function keySuccessor(k: PackedKey): PackedKey | null {
  let i = k.length - 1;
  while (i >= 0 && k.charCodeAt(i) === 0xff) i--;
  if (i < 0) return null;
  return k.slice(0, i) + String.fromCharCode(k.charCodeAt(i) + 1) + "\0".repeat(k.length - i - 1);
}

/** Items an input tree is read ahead by (one descent per batch instead of one per item). */
const MERGE_SCAN_BATCH = 256;

/**
 * One input tree's items in key order, read MERGE_SCAN_BATCH at a time. The tree must not change
 * while the cursor is used; the items are copies, so the cache may drop its blocks meanwhile.
 */
class TreeCursor {
  private batch: BtreeItemView[] = [];
  private i = 0;
  /** Where the next batch starts; null once a batch reached the end of the tree. */
  private from: PackedKey | null = PACKED_KEY_MIN;

  constructor(private readonly root: BtreeRootRef) {}

  /** The first item not yet skipped, or null at the end. */
  peek(cache: MetaCache): BtreeItemView | null {
    if (this.i < this.batch.length) return this.batch[this.i]!;
    if (this.from === null) return null;
    const b: BtreeItemView[] = [];
    btreeScan(cache, this.root, this.from, PACKED_KEY_MAX, (it) => {
      b.push(it);
      return b.length < MERGE_SCAN_BATCH;
    });
    this.batch = b;
    this.i = 0;
    this.from = b.length < MERGE_SCAN_BATCH ? null : keySuccessor(b[b.length - 1]!.key);
    return b[0] ?? null;
  }

  /** Step past `key` if it is the current item's (the merge took that key's newest version). */
  skip(key: PackedKey): void {
    if (this.i < this.batch.length && this.batch[this.i]!.key === key) this.i++;
  }
}

/**
 * The next key of the merged inputs: the smallest key of any cursor, in the version with the
 * highest seq (the later input on a tie); every cursor steps past that key. Null at the end.
 */
function mergeNext(cursors: TreeCursor[], cache: MetaCache): BtreeItemView | null {
  let best: BtreeItemView | null = null;
  for (const c of cursors) {
    const it = c.peek(cache);
    if (it !== null && (best === null || it.key < best.key || (it.key === best.key && it.seq >= best.seq))) best = it;
  }
  if (best !== null) for (const c of cursors) c.skip(best.key);
  return best;
}

interface Round {
  deadline: ReturnType<typeof setTimeout>;
  waiters: (() => void)[];
}

export class ServerMerge {
  private round: Round | null = null;
  private running: Promise<void> | null = null;
  private idleWaiters: (() => void)[] = [];
  readonly counters = { rounds: 0, roundTimeouts: 0, merges: 0, itemsMerged: 0, treesMerged: 0, blocksFreed: 0, errors: 0 };
  lastError: unknown = null;

  constructor(
    private readonly t: ServerTrans,
    private readonly lts: ServerLogTrees,
    private readonly o: MergeOptions,
  ) {}

  get inRound(): boolean {
    return this.round !== null;
  }

  get busy(): boolean {
    return this.round !== null || this.running !== null;
  }

  /** Start a round unless one is under way or a merge is running; true when one started. */
  requestMerge(): boolean {
    if (this.busy) return false;
    const open = this.lts.lastPerRid().filter((lt) => !ltIsFinalized(lt) && !ltIsUnopened(lt));
    const finalized = this.lts.all().some(ltIsFinalized);
    if (open.length === 0 && !finalized) return false;
    this.counters.rounds++;
    const round: Round = {
      waiters: [],
      deadline: setTimeout(() => {
        if (this.round !== round) return;
        this.counters.roundTimeouts++;
        this.o.log(`log merge round timed out waiting for mounts to finalize`);
        this.endRound();
      }, this.o.roundTimeoutMs),
    };
    this.round = round;
    for (const lt of open) this.o.syncMount(lt.rid);
    this.checkCut();
    return true;
  }

  /** Resolves when no round and no merge is under way. */
  idle(): Promise<void> {
    if (!this.busy) return Promise.resolve();
    return new Promise((res) => this.idleWaiters.push(res));
  }

  /** A get_log_trees that finalized its tree waits here for the cut (or the round's end). */
  waitForCut(): Promise<void> {
    if (!this.round) return Promise.resolve();
    const r = this.round;
    return new Promise((res) => r.waiters.push(res));
  }

  private endRound(): void {
    const r = this.round;
    if (!r) return;
    clearTimeout(r.deadline);
    this.round = null;
    for (const w of r.waiters) w();
    this.maybeIdle();
  }

  private maybeIdle(): void {
    if (this.busy) return;
    const ws = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of ws) w();
  }

  /** Called whenever a tree was finalized or deleted: is every mount's newest tree closed? */
  checkCut(): void {
    if (!this.round) return;
    const last = this.lts.lastPerRid();
    if (last.some((lt) => !ltIsFinalized(lt) && !ltIsUnopened(lt))) return;
    const inputs = this.lts.all().filter(ltIsFinalized);
    if (inputs.length === 0) {
      this.endRound();
      return;
    }
    // running is set before the round ends so that idle() never sees a gap between them
    this.running = Promise.resolve()
      .then(() => this.merge(inputs))
      .catch((err) => {
        this.counters.errors++;
        this.lastError = err;
        this.o.log(`log merge failed: ${err instanceof Error ? err.message : String(err)}`);
      })
      .finally(() => {
        this.running = null;
        this.maybeIdle();
      });
    this.endRound();
  }

  /**
   * Blocks merging `roots` can add to fs_root for good (an upper bound): a leaf per half leaf of
   * the items it adds — versions of keys fs_root does not hold yet — and their parents.
   * Replacements and deletions need only copy-on-write room, which each merge transaction's
   * commit gives back to the next one. Reads only.
   */
  private growthBlocks(roots: LogTrees["item_root"][]): number {
    let bytes = 0;
    const cursors = roots.map((r) => new TreeCursor(r));
    for (;;) {
      const best = mergeNext(cursors, this.t.cache);
      if (best === null) break;
      if ((best.flags & C.ITEM_FLAG_DELETION) === 0 && !btreeLookup(this.t.cache, this.t.sup.fs_root, best.key)) bytes += best.val.length + MERGE_ITEM_OVERHEAD_BYTES;
    }
    const leaves = Math.ceil(bytes / (C.BLOCK_LG_SIZE / 2));
    return leaves + Math.ceil(leaves / 8) + this.t.sup.fs_root.height + 1;
  }

  /**
   * Refuse (ENOSPC) a merge that could not finish in the server's room above its floor: started
   * anyway it would stop half-way with the reserve spent on copies in fs_root, while the merged
   * trees — whose blocks only a finished merge frees — still hold theirs, and no later merge
   * could start. The trees stay for a later round (after removals, or when mounts give room back).
   */
  private checkRoom(inputs: LogTrees[]): void {
    const r = this.t.reserve;
    const sup = this.t.sup;
    const room = BigInt(sup.server_meta_avail[0]!.first_nr) + this.t.metaAllocFree() - r.floor - BigInt(2 * r.transReserve);
    // more room than all the blocks in use (a roomy device): nothing to count
    let free = this.t.metaAllocFree();
    for (const h of [...sup.server_meta_avail, ...sup.server_meta_freed]) free += h.total_nr;
    for (const lt of this.lts.all()) free += lt.meta_avail.total_nr + lt.meta_freed.total_nr;
    if (room >= sup.total_meta_blocks - free) return;
    let worst = 0;
    for (const lt of inputs) worst += this.lts.treeBlocks(lt);
    if (BigInt(worst) <= room) return;
    const need = this.growthBlocks(inputs.map((lt) => lt.item_root));
    if (BigInt(need) <= room) return;
    throw new ScoutfsError("ENOSPC", `merging ${inputs.length} log trees needs up to ${need} metadata blocks, the server has ${room} to spare`);
  }

  /** Fold `inputs` into fs_root, then free them. Yields between transactions. */
  private async merge(inputs: LogTrees[]): Promise<void> {
    this.checkRoom(inputs);
    const t0 = performance.now();
    const items0 = this.counters.itemsMerged;
    let transactions = 0;
    let longestMs = 0;
    // the inputs are finalized: nothing changes them until they are freed below
    const cursors = inputs.map((lt) => new TreeCursor(lt.item_root));
    let done = false;
    while (!done) {
      const ts = performance.now();
      transactions++;
      done = this.t.transact("merge items", (w) => {
        // no room to merge even one item: give up (ENOSPC) rather than retry empty transactions
        if (this.t.low(w)) throw new ScoutfsError("ENOSPC", "no metadata room left for merging into fs_root");
        for (let n = 0; n < MERGE_ITEMS_PER_TRANS && !this.t.low(w); n++) {
          const best = mergeNext(cursors, w.cache);
          if (best === null) return true;
          const cur = btreeLookup(w.cache, this.t.sup.fs_root, best.key);
          if (!cur || cur.seq <= best.seq) {
            if (best.flags & C.ITEM_FLAG_DELETION) {
              if (cur) btreeDelete(w, this.t.sup.fs_root, best.key);
            } else {
              // (the value is the scan's own copy)
              btreeForce(w, this.t.sup.fs_root, best.key, best.seq, 0, best.val);
            }
          }
          this.counters.itemsMerged++;
        }
        return false;
      });
      longestMs = Math.max(longestMs, performance.now() - ts);
      await yieldToEventLoop();
    }
    let pending = [...inputs];
    while (pending.length > 0) {
      const ts = performance.now();
      transactions++;
      pending = this.t.transact("merge free", (w) => {
        let budget = MERGE_FREE_BLOCKS_PER_TRANS;
        const rest: LogTrees[] = [];
        for (const lt of pending) {
          const cur = this.lts.lookup(lt.rid, lt.nr);
          assert(cur !== null && ltIsFinalized(cur), `merge input ${lt.rid.toString(16)}.${lt.nr} vanished`);
          const n = this.lts.treeBlocks(cur);
          if (n > budget && budget < MERGE_FREE_BLOCKS_PER_TRANS) {
            rest.push(lt);
            continue;
          }
          this.counters.blocksFreed += this.lts.freeTree(w, cur);
          budget -= n;
          this.counters.treesMerged++;
        }
        return rest;
      });
      longestMs = Math.max(longestMs, performance.now() - ts);
      await yieldToEventLoop();
    }
    this.counters.merges++;
    this.o.log(`merged ${this.counters.itemsMerged - items0} items of ${inputs.length} log trees into fs_root in ${(performance.now() - t0).toFixed(1)} ms (${transactions} transactions, the longest ${longestMs.toFixed(1)} ms)`);
  }
}
