/**
 * Server transactions (scoutfs server.c "commit" and the server half of alloc.c): every change
 * the server makes to the volume — mounted client items, next_ino, log_trees items, the
 * allocators it hands to mounts, fs_root during merges — happens in a transaction that ends
 * with a commit of the metadata block cache and the super block. A request is answered only
 * after the commit that holds its change is durable.
 *
 * Allocator discipline (the same as the standalone item store, src/item/store.ts):
 * - metadata blocks for the server's own btree changes come from server_meta_avail[0] (a list,
 *   src/alloc/list.ts), refilled from the meta_alloc extent trees at the start of a transaction
 *   when it holds fewer than `reserve.ownLow` blknos, up to `reserve.ownTarget`; more than that
 *   (mkfs puts 1024 blocks there, most of a small volume's free space) goes back to meta_alloc,
 *   as does anything in server_meta_avail[1] (which only the kernel's server uses);
 * - blocks the server frees go to server_meta_freed[freedIdx]; the index flips at each commit,
 *   and each transaction first empties the OTHER freed list — filled by the previous commit,
 *   durable now — back into meta_alloc. A block is reusable only after the commit that freed it
 *   is on disk. At open both freed lists hold only durable frees, so either may be emptied.
 * - blocks freed by mounts (their log tree's meta_freed list, data_freed root) were freed by a
 *   commit_log_trees that is already durable, so they go straight back into meta_alloc /
 *   data_alloc (`reclaimList`, `drainExtents`).
 *
 * Metadata reserve (`MetaReserve`, scaled to the device — the real server's reserve of
 * scoutfs_server_reserved_meta_blocks() is sized for large devices and exceeds a small one): mounts
 * are filled only from meta_alloc beyond `reserve.keep` blocks (`fillList`), so the server always
 * has room for its own transactions — answering get_log_trees, commit_log_trees, farewells — and
 * for merges; bulk work (merges) stops once the server's room falls to `reserve.floor` (`low`).
 * See docs/cluster.md, "Metadata space".
 *
 * Failure: a transaction that throws (ENOSPC, EIO, a bug) is abandoned whole: the dirty blocks
 * are discarded and the super is restored from the snapshot taken when it began. Nothing of it
 * reaches the device and the server can carry on.
 *
 * Seqs: `nextSeq()` is scoutfs_server_next_seq(): one monotone counter for transaction seqs of
 * mounts, lock write seqs and finalize seqs, stored in super.seq at each commit (and restored
 * from it at open), so seqs never go backward across server restarts.
 *
 * Transactions are synchronous (device I/O is synchronous), so two requests never interleave
 * inside one; handlers that wait on the network do so between transactions.
 */
import { MetaCache } from "../block/cache.ts";
import { readSuper, writeSuper, type Super } from "../block/super.ts";
import type { Device } from "../block/device.ts";
import { ListAlloc, emptyListBlock, listBlockCodec, type ListHead } from "../alloc/list.ts";
import { ExtentAlloc, type AllocRootMut } from "../alloc/extents.ts";
import { btreeExtentOps } from "../alloc/btree-ops.ts";
import type { Writer } from "../alloc/types.ts";
import { SuperBlock } from "../format/super.ts";
import { ALLOC_LIST_MAX_BLOCKS } from "../format/alloc.ts";
import * as C from "../format/constants.ts";
import { assert } from "../util/assert.ts";
import { reclaimListInto, refillAvailFrom } from "../alloc/recycle.ts";

export interface ServerWriter extends Writer {
  alloc: ListAlloc;
}

export interface ServerTransOptions {
  /** Refill server_meta_avail[0] when it holds fewer blknos than this... */
  metaAvailLow?: number;
  /** ...up to this many (must fit in one list block). Default: scaled to the device (`metaReserveFor`). */
  metaAvailTarget?: number;
  cacheBlocks?: number;
}

/** The server's own avail list on large devices (its largest fill). */
export const SERVER_META_AVAIL_LOW = 2048;
export const SERVER_META_AVAIL_TARGET = 6144;
/** The smallest own list target (devices under 1024 blocks, 64 MiB). */
export const SERVER_META_AVAIL_TARGET_MIN = 128;
/** A merge transaction commits early (`low()`) when fewer list entries than this remain (at most). */
export const SERVER_TRANS_RESERVE_BLOCKS = 256;

/**
 * How the server shares a device's free metadata blocks with its mounts, all in 64 KiB blocks.
 * The server keeps about three eighths of a small device (its own list and `keep`), and at most
 * 3 × 6144 blocks (1.1 GiB) of a large one; mounts get the rest.
 */
export interface MetaReserve {
  /** The server's own avail list is refilled when it holds fewer than this... */
  ownLow: number;
  /** ...up to this; blocks beyond it go back to meta_alloc. */
  ownTarget: number;
  /**
   * meta_alloc blocks never given to mounts: the server's refills of its own list (ownTarget)
   * and as much again for merges, which need new fs_root blocks before they free the merged trees.
   */
  keep: bigint;
  /** A merge transaction commits when fewer than this remain in its list... */
  transReserve: number;
  /**
   * ...and merging stops (ENOSPC) when the server's room (its list and meta_alloc) falls under
   * this: what request transactions need, which only borrow blocks (their frees come back at the
   * next commit).
   */
  floor: bigint;
}

/** The reserve of a device of `totalMetaBlocks` 64 KiB blocks (the server's defaults). */
export function metaReserveFor(totalMetaBlocks: bigint, opts: Pick<ServerTransOptions, "metaAvailLow" | "metaAvailTarget"> = {}): MetaReserve {
  const eighth = Number(totalMetaBlocks / 8n);
  const ownTarget = opts.metaAvailTarget ?? Math.min(SERVER_META_AVAIL_TARGET, Math.max(SERVER_META_AVAIL_TARGET_MIN, eighth));
  const ownLow = opts.metaAvailLow ?? Math.min(SERVER_META_AVAIL_LOW, Math.floor(ownTarget / 3));
  const transReserve = Math.min(SERVER_TRANS_RESERVE_BLOCKS, Math.max(32, Math.floor(ownTarget / 8)));
  return { ownLow, ownTarget, keep: BigInt(2 * ownTarget), transReserve, floor: BigInt(2 * transReserve) };
}

function cmpBig(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function cloneSuper(s: Super): Super {
  return SuperBlock.decode(SuperBlock.encode(s));
}

export class ServerTrans {
  /** The super being changed by the current transaction (the committed one between them). */
  sup: Super;
  /** The super as of the last commit: what get_roots/statfs report. */
  stable: Super;
  readonly cache: MetaCache;
  private lists: ListAlloc | null = null;
  private freedIdx = 0;
  private seq: bigint;
  private inTrans = false;
  readonly reserve: MetaReserve;
  readonly counters = { commits: 0, failures: 0, metaRecycled: 0, metaRefills: 0, metaTrimmed: 0, mountFillsShort: 0, mountFillsRefused: 0 };

  constructor(readonly dev: Device, opts: ServerTransOptions = {}) {
    this.sup = readSuper(dev, { meta: true });
    this.stable = cloneSuper(this.sup);
    this.cache = new MetaCache(dev, this.sup.hdr.fsid, opts.cacheBlocks ? { maxCleanBlocks: opts.cacheBlocks } : {});
    this.seq = this.sup.seq;
    this.reserve = metaReserveFor(this.sup.total_meta_blocks, opts);
    const r = this.reserve;
    assert(r.ownTarget <= ALLOC_LIST_MAX_BLOCKS && r.ownLow < r.ownTarget, "server avail fill bounds");
  }

  get fsid(): bigint {
    return this.sup.hdr.fsid;
  }

  /** The last seq handed out (scoutfs_server_seq). */
  currentSeq(): bigint {
    return this.seq;
  }

  nextSeq(): bigint {
    this.seq += 1n;
    return this.seq;
  }

  /** Lock recovery: seqs must stay above every write seq clients already hold. */
  setSeqIfGreater(seq: bigint): void {
    if (seq > this.seq) this.seq = seq;
  }

  metaBounds(): { first: bigint; last: bigint } {
    const lastDev = this.dev.sizeBytes / BigInt(C.BLOCK_LG_SIZE) - 1n;
    const last = this.sup.total_meta_blocks - 1n < lastDev ? this.sup.total_meta_blocks - 1n : lastDev;
    return { first: BigInt(C.META_DEV_START_BLKNO), last };
  }

  dataBounds(): { first: bigint; last: bigint } {
    return { first: BigInt(C.DATA_DEV_START_BLKNO), last: this.sup.total_data_blocks - 1n };
  }

  metaExtents(root: AllocRootMut): ExtentAlloc {
    return new ExtentAlloc(root, btreeExtentOps, this.metaBounds());
  }

  dataExtents(root: AllocRootMut): ExtentAlloc {
    return new ExtentAlloc(root, btreeExtentOps, this.dataBounds());
  }

  private writer(): ServerWriter {
    this.lists ??= new ListAlloc(this.cache, this.sup.server_meta_avail[0]!, this.sup.server_meta_freed[this.freedIdx]!);
    return { cache: this.cache, alloc: this.lists };
  }

  /**
   * Run `fn` as one server transaction and commit it. `fn` must not await. A throw abandons
   * everything it changed (blocks and super) and is rethrown.
   */
  transact<T>(what: string, fn: (w: ServerWriter) => T): T {
    assert(!this.inTrans, `server transaction '${what}' inside another`);
    this.inTrans = true;
    const saved = SuperBlock.encode(this.sup);
    const savedSeq = this.seq;
    try {
      const w = this.writer();
      this.server_recycle_freed(w);
      this.server_balance_avail(w);
      const r = fn(w);
      this.server_commit();
      return r;
    } catch (err) {
      this.cache.discardDirty();
      this.sup = SuperBlock.decode(saved);
      // seqs handed out stay used (they may have been sent); only allocator state rolls back
      void savedSeq;
      this.lists = null;
      this.counters.failures++;
      throw err;
    } finally {
      this.inTrans = false;
    }
  }

  /**
   * True when the running transaction should commit before changing about `blocks` more — or,
   * for bulk work (merges), stop: the server's room (what its list still holds and meta_alloc) is
   * down to `reserve.floor`, which request transactions need. A transaction that is low before
   * doing anything cannot make progress and must give up with ENOSPC rather than retry.
   */
  low(w: ServerWriter, blocks = this.reserve.transReserve): boolean {
    if (w.alloc.low(blocks)) return true;
    return BigInt(w.alloc.remaining().availNr) + this.metaAllocFree() < this.reserve.floor + BigInt(blocks);
  }

  /** Free blocks in the meta_alloc trees (of the transaction's super). */
  metaAllocFree(): bigint {
    return this.sup.meta_alloc.reduce((n, r) => n + r.total_len, 0n);
  }

  private server_commit(): void {
    this.sup.seq = this.seq;
    this.cache.commit(() => writeSuper(this.dev, this.sup));
    this.freedIdx ^= 1;
    this.lists = null;
    this.stable = cloneSuper(this.sup);
    this.counters.commits++;
  }

  /** Empty the freed list of the previous (durable) commit back into meta_alloc. */
  private server_recycle_freed(w: ServerWriter): void {
    const other = this.sup.server_meta_freed[this.freedIdx ^ 1]!;
    if (other.ref.blkno === 0n) return;
    this.counters.metaRecycled += this.reclaimList(w, other);
  }

  /**
   * Keep server_meta_avail[0] between `reserve.ownLow` and `reserve.ownTarget`: top it up from the
   * meta_alloc trees, or give what is beyond the target back to meta_alloc[0] (a volume made by
   * mkfs starts with 1024 blocks there, most of a small device's free space, which mounts could
   * never be given otherwise). A non-empty server_meta_avail[1] (only the kernel's server
   * alternates between the two) is returned to meta_alloc[0] whole. Every block moved here is
   * free in the committed super and stays unwritten until this transaction commits.
   */
  private server_balance_avail(w: ServerWriter): void {
    const r = this.reserve;
    const other = this.sup.server_meta_avail[1]!;
    if (other.ref.blkno !== 0n) this.counters.metaTrimmed += this.reclaimList(w, other);
    const own = this.sup.server_meta_avail[0]!;
    if (own.first_nr > r.ownTarget) {
      const excess = own.first_nr - r.ownTarget;
      const blknos: bigint[] = [];
      for (let i = 0; i < excess && w.alloc.remaining().availNr > r.ownTarget; i++) blknos.push(w.alloc.allocMeta());
      blknos.sort((a, b) => cmpBig(a, b));
      const to = this.metaExtents(this.sup.meta_alloc[0]!);
      for (let i = 0; i < blknos.length; ) {
        let n = 1;
        while (i + n < blknos.length && blknos[i + n] === blknos[i]! + BigInt(n)) n++;
        to.insert(w, blknos[i]!, BigInt(n));
        i += n;
      }
      this.counters.metaTrimmed += blknos.length;
      return;
    }
    if (own.first_nr >= r.ownLow) return;
    refillAvailFrom(w, this.sup.meta_alloc.map((m) => this.metaExtents(m)), r.ownLow, r.ownTarget);
    this.counters.metaRefills++;
  }

  private metaSourcesLargestFirst(): ExtentAlloc[] {
    return this.sup.meta_alloc.map((r) => this.metaExtents(r)).sort((a, b) => cmpBig(b.root.total_len, a.root.total_len));
  }

  /**
   * Give every blkno of a list whose frees are durable back to meta_alloc[0] (contiguous runs as
   * one extent), free the list's own blocks, and empty the head. Returns the blknos returned.
   */
  reclaimList(w: ServerWriter, head: ListHead): number {
    return reclaimListInto(w, head, this.metaExtents(this.sup.meta_alloc[0]!));
  }


  /**
   * Fill a mount's avail list (its first block) towards `target` blknos when it holds fewer than
   * `lo`, from meta_alloc beyond `reserve.keep`. With other mounts (`shared`), at most half of
   * what is beyond it, so that on a small device one mount does not take everything from the
   * others: each gets half of what is left at its next commit. Whatever the reserve, a mount
   * gets back as many blocks as its last commit freed (`returned`, reclaimed from its meta_freed
   * just before): copy-on-write churn and removals never drain it, only growth is limited.
   * The first list block is rewritten in a block of the server's (the old one is freed) so the
   * mount's committed list stays intact until this commit is durable. Returns the blknos added;
   * when nothing is left to give the list stays as it is (even empty): the mount then refuses
   * changes that need room with ENOSPC (ClientStore.hold) and the server keeps its reserve.
   */
  fillList(w: ServerWriter, head: ListHead, lo: number, target: number, shared = false, returned = 0): number {
    assert(target <= ALLOC_LIST_MAX_BLOCKS && lo <= target, `list fill ${lo}..${target}`);
    if (head.ref.blkno !== 0n && head.first_nr >= lo) return 0;
    const spare = this.metaAllocFree() - this.reserve.keep;
    // nothing beyond the reserve: the device is full for this mount (Server.mergeForRoom)
    if (spare <= 0n) this.counters.mountFillsRefused++;
    let share = shared ? spare - spare / 2n : spare;
    if (share < BigInt(returned)) share = BigInt(returned);
    let want = BigInt(target - head.first_nr);
    if (want > share) want = share;
    if (want <= 0n) {
      this.counters.mountFillsShort++;
      return 0;
    }
    const blk = emptyListBlock();
    if (head.ref.blkno !== 0n) {
      const old = this.cache.read(head.ref, listBlockCodec);
      for (let i = 0; i < old.nr; i++) blk.blknos[i] = old.blknos[old.start + i]!;
      blk.nr = old.nr;
      blk.next = { ...old.next };
      w.alloc.freeMeta(head.ref.blkno);
    }
    let added = 0n;
    for (const src of this.metaSourcesLargestFirst()) {
      while (want > 0n) {
        const e = src.allocLargest(w, want);
        if (!e) break;
        for (let b = 0n; b < e.len; b++) blk.blknos[blk.nr++] = e.start + b;
        want -= e.len;
        added += e.len;
      }
    }
    if (want > 0n) this.counters.mountFillsShort++;
    const blkno = w.alloc.allocMeta();
    head.ref = { blkno, seq: this.cache.create(blkno, listBlockCodec, blk) };
    head.first_nr = blk.nr;
    head.total_nr += added;
    return Number(added);
  }

  /**
   * Move free extents from `from` into `to` until `to` holds `target` blocks (when it holds fewer
   * than `lo`). Returns the blocks moved.
   */
  fillExtents(w: ServerWriter, to: ExtentAlloc, from: ExtentAlloc, lo: bigint, target: bigint): bigint {
    if (to.root.total_len >= lo) return 0n;
    let moved = 0n;
    while (to.root.total_len < target) {
      const e = from.allocLargest(w, target - to.root.total_len);
      if (!e) break;
      to.insert(w, e.start, e.len);
      moved += e.len;
    }
    return moved;
  }

  /** Move every extent of `from` into `to` (durable frees, or a departed mount's avail). */
  drainExtents(w: ServerWriter, to: ExtentAlloc, from: ExtentAlloc): bigint {
    let moved = 0n;
    for (;;) {
      const e = from.nextExtent(w.cache, 0n);
      if (!e) break;
      from.remove(w, e.start, e.len);
      to.insert(w, e.start, e.len);
      moved += e.len;
    }
    return moved;
  }
}
