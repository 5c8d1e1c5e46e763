/**
 * The server's half of each mount's log tree (scoutfs server.c get/commit_log_trees, finalize,
 * reclaim): the log_trees items in super.logs_root, one per (rid, nr).
 *
 * A mount writes its items into the btree of its newest log_trees item (its "open" tree) with
 * the allocators that item carries: a meta_avail list of blocks it may use, a meta_freed list of
 * blocks its commits freed, data_avail extents it may allocate, data_freed extents it freed.
 * The server fills and empties those allocators only here, in get_log_trees, between the mount's
 * transactions — never while the mount is using them:
 *   - meta_freed and data_freed were freed by commits that are already durable (commit_log_trees
 *     is committed before it is answered), so they go straight back to meta_alloc / data_alloc;
 *   - meta_avail is refilled from meta_alloc to `metaTarget` when it is under `metaLo` — but only
 *     from what meta_alloc holds beyond the server's reserve (half of that at most while other
 *     mounts are open), and at least what the mount's last commit freed (trans.ts fillList) — and
 *     data_avail from data_alloc towards a share of what is free; the LOW flags say the server is
 *     into its reserve (meta) or has no data blocks left.
 *
 * Transaction seqs: get_log_trees gives the tree a new get_trans_seq (the mount's transaction is
 * open); commit_log_trees stores the mount's item with commit_trans_seq = get_trans_seq (closed).
 * A get_log_trees for an open tree is a resend after failover and returns the item unchanged.
 *
 * Finalizing (for merging, merge.ts): the open tree gets the FINALIZED flag and a finalize_seq and
 * is never written again; its item root stays for readers until the merge has folded it into
 * fs_root. Unlike scoutfs, which empties the finalized tree's allocators into the server's, the
 * allocators move to the mount's next tree (nr + 1), created *unopened* (get_trans_seq 0): a
 * mount may keep allocating data blocks in memory while its commit is in flight (see
 * src/item/client-store.ts), and those blocks must stay in its own data_avail. A departed mount's
 * tree (farewell, fenced) is finalized and all of its allocators go back to the server.
 */
import { btreeDelete, btreeForce, btreeLookup, btreeNext, btreePrev, btreeWalkNodes } from "../btree/cow.ts";
import { LogTrees } from "../format/log_trees.ts";
import { ListAlloc, emptyListHead } from "../alloc/list.ts";
import * as C from "../format/constants.ts";
import { PACKED_KEY_MIN } from "../format/key.ts";
import { ScoutfsError } from "../util/errors.ts";
import { cloneLogTrees, logTreesKey, logTreesKeyFields } from "./wire.ts";
import type { ServerTrans, ServerWriter } from "./trans.ts";

export interface LogTreesFill {
  metaLo: number;
  metaTarget: number;
  dataLo: bigint;
  dataTarget: bigint;
}

/** One largest write (1 MiB): a mount holding less is topped up; it gets at least twice this. */
const DATA_SHARE_MIN_BLOCKS = 256n;

export function emptyAllocRoot(): LogTrees["data_avail"] {
  return { total_len: 0n, flags: 0, _pad: 0, root: { ref: { blkno: 0n, seq: 0n }, height: 0 } } as LogTrees["data_avail"];
}

export function newLogTrees(rid: bigint, nr: bigint): LogTrees {
  const z = new Uint8Array(LogTrees.size);
  const lt = LogTrees.decode(z);
  lt.rid = rid;
  lt.nr = nr;
  return lt;
}

export function ltIsFinalized(lt: LogTrees): boolean {
  return (lt.flags & C.LOG_TREES_FINALIZED) !== 0n;
}

/** A transaction is open in the tree: the mount may be writing into it. */
export function ltIsOpen(lt: LogTrees): boolean {
  return lt.get_trans_seq > lt.commit_trans_seq;
}

/** Created and never given a transaction: holds no items and cannot hold old item seqs. */
export function ltIsUnopened(lt: LogTrees): boolean {
  return !ltIsFinalized(lt) && lt.get_trans_seq === 0n && lt.item_root.height === 0;
}

export class ServerLogTrees {
  readonly counters = { gets: 0, commits: 0, finalized: 0, reclaimed: 0 };

  constructor(
    private readonly t: ServerTrans,
    private readonly fill: LogTreesFill,
  ) {}

  /** The newest log_trees item of `rid` (in the current super), or null. */
  findLast(rid: bigint): LogTrees | null {
    const it = btreePrev(this.t.cache, this.t.sup.logs_root, logTreesKey(rid, C.U64_MAX));
    if (!it) return null;
    const f = logTreesKeyFields(it.key);
    if (!f || f.rid !== rid) return null;
    return this.decode(it.val, f.rid, f.nr);
  }

  lookup(rid: bigint, nr: bigint): LogTrees | null {
    const it = btreeLookup(this.t.cache, this.t.sup.logs_root, logTreesKey(rid, nr));
    return it ? this.decode(it.val, rid, nr) : null;
  }

  private decode(val: Uint8Array, rid: bigint, nr: bigint): LogTrees {
    if (val.length !== LogTrees.size) throw new ScoutfsError("EIO", `log_trees item ${rid.toString(16)}.${nr} has ${val.length} bytes`);
    const lt = LogTrees.decode(val);
    if (lt.rid !== rid || lt.nr !== nr) throw new ScoutfsError("EIO", `log_trees item ${rid.toString(16)}.${nr} holds rid ${lt.rid.toString(16)} nr ${lt.nr}`);
    return lt;
  }

  /** Every log_trees item in key order (rid, then nr). */
  all(): LogTrees[] {
    const out: LogTrees[] = [];
    let key = logTreesKey(0n, 0n);
    for (;;) {
      const it = btreeNext(this.t.cache, this.t.sup.logs_root, key < PACKED_KEY_MIN ? PACKED_KEY_MIN : key);
      if (!it) break;
      const f = logTreesKeyFields(it.key);
      if (!f) break;
      out.push(this.decode(it.val, f.rid, f.nr));
      if (f.nr === C.U64_MAX) key = logTreesKey(f.rid + 1n, 0n);
      else key = logTreesKey(f.rid, f.nr + 1n);
    }
    return out;
  }

  /** The newest tree of every rid that has one. */
  lastPerRid(): LogTrees[] {
    const by = new Map<bigint, LogTrees>();
    for (const lt of this.all()) by.set(lt.rid, lt);
    return [...by.values()];
  }

  put(w: ServerWriter, lt: LogTrees): void {
    btreeForce(w, this.t.sup.logs_root, logTreesKey(lt.rid, lt.nr), 0n, 0, LogTrees.encode(lt));
  }

  delete(w: ServerWriter, lt: LogTrees): void {
    btreeDelete(w, this.t.sup.logs_root, logTreesKey(lt.rid, lt.nr));
  }

  /** Reclaim durable frees and refill the avail allocators of a mount's tree (in place). */
  refill(w: ServerWriter, lt: LogTrees): void {
    const t = this.t;
    // everything the mount's last commit freed comes back to it, the freed list's own blocks too
    const freedListBlocks = lt.meta_freed.ref.blkno === 0n ? 0 : ListAlloc.listBlknos(t.cache, lt.meta_freed).listBlocks.length;
    const returned = t.reclaimList(w, lt.meta_freed) + freedListBlocks;
    t.drainExtents(w, t.dataExtents(t.sup.data_alloc), t.dataExtents(lt.data_freed));
    const shared = this.lastPerRid().some((o) => o.rid !== lt.rid && !ltIsFinalized(o));
    t.fillList(w, lt.meta_avail, this.fill.metaLo, this.fill.metaTarget, shared, returned);
    // LOW: the server is into its reserve (scoutfs sets it when meta_alloc is within its reserved
    // blocks); the mount may only use what its list holds now
    if (t.metaAllocFree() <= t.reserve.keep + BigInt(this.fill.metaTarget)) lt.meta_avail.flags |= C.ALLOC_FLAG_LOW;
    else lt.meta_avail.flags &= ~C.ALLOC_FLAG_LOW;
    // scoutfs fills every mount to 4 GiB of data blocks; on a volume not much bigger than that the
    // first mount would hold all the free space and the others get ENOSPC from their first
    // write. So a mount is given at most a quarter of what is free (it asks again, after its
    // next commit, once it is under half of that) — but at least two of its largest writes, and
    // it is always topped up when it holds less than one (1 MiB): near the end of the device a
    // write must not fail while the server still has the blocks for it (ClientStore.hold asks).
    const free = t.sup.data_alloc.total_len;
    let share = free / 4n;
    if (share < 2n * DATA_SHARE_MIN_BLOCKS) share = 2n * DATA_SHARE_MIN_BLOCKS;
    const dataTarget = share < this.fill.dataTarget ? share : this.fill.dataTarget;
    let dataLo = this.fill.dataLo < dataTarget / 2n ? this.fill.dataLo : dataTarget / 2n;
    if (dataLo < DATA_SHARE_MIN_BLOCKS) dataLo = DATA_SHARE_MIN_BLOCKS < dataTarget ? DATA_SHARE_MIN_BLOCKS : dataTarget;
    t.fillExtents(w, t.dataExtents(lt.data_avail), t.dataExtents(t.sup.data_alloc), dataLo, dataTarget);
    // LOW: the server has no more data blocks to give; the mount stops asking (ClientStore.hold)
    if (t.sup.data_alloc.total_len === 0n && lt.data_avail.total_len < this.fill.dataLo) lt.data_avail.flags |= C.ALLOC_FLAG_LOW;
    else lt.data_avail.flags &= ~C.ALLOC_FLAG_LOW;
  }

  /** Return every allocator of a tree to the server (the mount is gone). */
  reclaimAll(w: ServerWriter, lt: LogTrees): void {
    const t = this.t;
    t.reclaimList(w, lt.meta_avail);
    t.reclaimList(w, lt.meta_freed);
    const dataAlloc = t.dataExtents(t.sup.data_alloc);
    t.drainExtents(w, dataAlloc, t.dataExtents(lt.data_avail));
    t.drainExtents(w, dataAlloc, t.dataExtents(lt.data_freed));
    this.counters.reclaimed++;
  }

  /**
   * Finalize a mount's tree. With `successor` the allocators move to a new unopened tree nr+1
   * (returned); without, they go back to the server (departed mount) and null is returned. A tree
   * without items is deleted instead of finalized: there is nothing to merge.
   */
  finalize(w: ServerWriter, lt: LogTrees, successor: boolean): LogTrees | null {
    let next: LogTrees | null = null;
    if (successor) {
      next = newLogTrees(lt.rid, lt.nr + 1n);
      next.meta_avail = lt.meta_avail;
      next.meta_freed = lt.meta_freed;
      next.data_avail = lt.data_avail;
      next.data_freed = lt.data_freed;
      next.data_alloc_zone_blocks = lt.data_alloc_zone_blocks;
      next.data_alloc_zones = lt.data_alloc_zones;
      lt = cloneLogTrees(lt);
      lt.meta_avail = emptyListHead();
      lt.meta_freed = emptyListHead();
      lt.data_avail = emptyAllocRoot();
      lt.data_freed = emptyAllocRoot();
    } else {
      lt = cloneLogTrees(lt);
      this.reclaimAll(w, lt);
    }
    if (lt.item_root.height === 0 && lt.bloom_ref.blkno === 0n) {
      // (nothing to merge; a tree without items has created or deleted no inode, but its count goes where a merge would put it)
      this.t.sup.inode_count = BigInt.asUintN(64, this.t.sup.inode_count + lt.inode_count_delta);
      this.delete(w, lt);
    } else {
      lt.flags |= C.LOG_TREES_FINALIZED;
      lt.finalize_seq = this.t.nextSeq();
      this.put(w, lt);
      this.counters.finalized++;
    }
    if (next) this.put(w, next);
    return next;
  }

  /** Free every block of a merged tree and delete its item (merge.ts, after fs_root has it all). */
  freeTree(w: ServerWriter, lt: LogTrees): number {
    const blknos: bigint[] = [];
    btreeWalkNodes(this.t.cache, lt.item_root, (_n, ref) => void blknos.push(ref.blkno));
    if (lt.bloom_ref.blkno !== 0n) blknos.push(lt.bloom_ref.blkno);
    for (const b of blknos) w.alloc.freeMeta(b);
    this.t.sup.inode_count = BigInt.asUintN(64, this.t.sup.inode_count + lt.inode_count_delta);
    this.delete(w, lt);
    return blknos.length;
  }

  /** Blocks a tree's item btree and bloom occupy (to size a freeing transaction). */
  treeBlocks(lt: LogTrees): number {
    let n = lt.bloom_ref.blkno !== 0n ? 1 : 0;
    btreeWalkNodes(this.t.cache, lt.item_root, () => void n++);
    return n;
  }
}
