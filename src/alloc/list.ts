/**
 * Metadata allocation from alloc lists (scoutfs alloc.c, "alloc lists").
 *
 * Changing the free-extent btrees needs metadata blocks itself, so a transaction never allocates
 * metadata from them directly. Before a transaction the server prepares two persistent singly
 * linked lists of single blknos: `avail`, blocks the transaction may use, and `freed`, where it
 * records blocks it frees. After the commit the server merges the freed list back into extents.
 * A block freed in a transaction therefore can never be reused by that transaction: it is only
 * in `freed`, and `avail` was filled before the transaction started.
 *
 * Only the first block of each list changes during a transaction. On the first allocation or
 * free, both first blocks are made dirty (copy-on-write) using the first two blknos of `avail`
 * itself, and their old blknos are recorded in `freed` — no recursion into the allocator. If the
 * freed list's first block is more than 3/4 full, a new empty first block is linked in front.
 * The new dirty block takes over the decoded object of the committed one, whose clean cache
 * entry is dropped: a list belongs to one allocator, nothing else reads its old version in this
 * cache, and a transaction that is abandoned reads it again from the device, where it is intact
 * (its blkno is only in `freed`). Copying the 64 KiB entry array instead cost ~60 µs a commit.
 *
 * List block layout: blknos[start .. start+nr) are live. Allocation takes from the front
 * (the dirty avail block is sorted first, so a transaction's blocks tend to be contiguous); frees
 * append at the end, or prepend once the end is reached.
 *
 * The avail list must hold at least 2 blknos in its first block for the copy-on-write step and
 * then one per allocation; `low()` tells the transaction to commit while enough remain, so that
 * a commit never runs out half-way. Running out anyway is ENOSPC, before any block is written.
 */
import { assert } from "../util/assert.ts";
import { ScoutfsError } from "../util/errors.ts";
import { ALLOC_LIST_BLKNOS_OFF, ALLOC_LIST_MAX_BLOCKS, AllocListBlock, type AllocListHead } from "../format/alloc.ts";
import { BLOCK_MAGIC_ALLOC_LIST } from "../format/constants.ts";
import { LITTLE_ENDIAN, view } from "../format/struct.ts";
import type { BlockCodec, MetaCache } from "../block/cache.ts";
import type { MetaAlloc } from "./types.ts";

/** A decoded alloc list block. */
export interface ListBlock {
  next: { blkno: bigint; seq: bigint };
  start: number;
  nr: number;
  blknos: BigUint64Array;
  /** The live entries are known to be in ascending order (an avail block sorted once stays so). */
  sorted?: boolean;
}

export const listBlockCodec: BlockCodec<ListBlock> = {
  name: "alloc list",
  magic: BLOCK_MAGIC_ALLOC_LIST,
  decode(buf: Uint8Array, blkno: bigint): ListBlock {
    const h = AllocListBlock.decode(buf);
    if (h.nr > ALLOC_LIST_MAX_BLOCKS || h.start > ALLOC_LIST_MAX_BLOCKS - h.nr) {
      throw new ScoutfsError("EIO", `alloc list block ${blkno} has start ${h.start} nr ${h.nr} beyond its ${ALLOC_LIST_MAX_BLOCKS} entries`);
    }
    const blknos = new BigUint64Array(ALLOC_LIST_MAX_BLOCKS);
    const from = ALLOC_LIST_BLKNOS_OFF + h.start * 8;
    if (LITTLE_ENDIAN) {
      // the array's bytes are the on-disk __le64s: one copy instead of a BigInt per entry
      new Uint8Array(blknos.buffer).set(buf.subarray(from, from + h.nr * 8), h.start * 8);
    } else {
      const dv = view(buf);
      for (let i = 0; i < h.nr; i++) blknos[h.start + i] = dv.getBigUint64(from + i * 8, true);
    }
    return { next: { blkno: h.next.blkno, seq: h.next.seq }, start: h.start, nr: h.nr, blknos };
  },
  encode(b: ListBlock, buf: Uint8Array): void {
    const dv = view(buf);
    dv.setBigUint64(AllocListBlock.off.next, b.next.blkno, true);
    dv.setBigUint64(AllocListBlock.off.next + 8, b.next.seq, true);
    dv.setUint32(AllocListBlock.off.start, b.start, true);
    dv.setUint32(AllocListBlock.off.nr, b.nr, true);
    const to = ALLOC_LIST_BLKNOS_OFF + b.start * 8;
    if (LITTLE_ENDIAN) {
      buf.set(new Uint8Array(b.blknos.buffer, b.blknos.byteOffset + b.start * 8, b.nr * 8), to);
    } else {
      for (let i = 0; i < b.nr; i++) dv.setBigUint64(to + i * 8, b.blknos[b.start + i]!, true);
    }
  },
};

export function emptyListBlock(): ListBlock {
  return { next: { blkno: 0n, seq: 0n }, start: 0, nr: 0, blknos: new BigUint64Array(ALLOC_LIST_MAX_BLOCKS) };
}

/** A freed list whose first block has less room than this gets a new empty first block. */
const EMPTY_FREED_THRESH = Math.floor(ALLOC_LIST_MAX_BLOCKS / 4);

/** Mutable list head, the shape of AllocListHead (what log_trees items and the super hold). */
export type ListHead = AllocListHead;

export function emptyListHead(): ListHead {
  return { ref: { blkno: 0n, seq: 0n }, total_nr: 0n, first_nr: 0, flags: 0 };
}

export class ListAlloc implements MetaAlloc {
  private prepared = false;
  readonly counters = { alloc: 0, free: 0, prepare: 0 };

  /**
   * `avail` and `freed` are modified in place: after the commit they are what must be stored
   * (in the log_trees item or the super block).
   */
  constructor(
    private readonly cache: MetaCache,
    readonly avail: ListHead,
    readonly freed: ListHead,
    private readonly validBlkno: (blkno: bigint) => boolean = () => true,
  ) {}

  private readList(head: ListHead, what: string): ListBlock {
    try {
      return this.cache.read(head.ref, listBlockCodec);
    } catch (err) {
      // we own our lists: a stale block here is persistent corruption, not a race
      if (err instanceof ScoutfsError && err.code === "ESTALE") throw new ScoutfsError("EIO", `${what} alloc list: ${err.message}`);
      throw err;
    }
  }

  /** The committed first block of `head`, taken out of the cache to become the dirty copy (see the header). */
  private takeList(head: ListHead, what: string): ListBlock {
    const b = this.readList(head, what);
    this.cache.invalidate(head.ref.blkno);
    return b;
  }

  /** Make both first list blocks dirty for this transaction (see the header). */
  private prepare(): void {
    if (this.prepared) return;
    const { avail, freed, cache } = this;
    if (avail.ref.blkno === 0n) throw new ScoutfsError("ENOSPC", "no metadata avail list for this transaction");
    const avIsDirty = cache.isDirty(avail.ref.blkno);
    const frNewEmpty = freed.ref.blkno === 0n || ALLOC_LIST_MAX_BLOCKS - freed.first_nr < EMPTY_FREED_THRESH;
    const frIsDirty = !frNewEmpty && cache.isDirty(freed.ref.blkno);
    const need = (avIsDirty ? 0 : 1) + (frIsDirty ? 0 : 1);
    if (avail.first_nr < need) {
      throw new ScoutfsError("ENOSPC", `metadata avail list has ${avail.first_nr} blocks in its first block, ${need} are needed to start a transaction`);
    }
    const avBlk = avIsDirty ? cache.getDirty(avail.ref.blkno, listBlockCodec) : this.takeList(avail, "avail");
    assert(avBlk.nr === avail.first_nr, `avail head first_nr ${avail.first_nr} != block nr ${avBlk.nr}`);
    // the blknos for the copies leave avail; the rest is sorted for contiguous allocations
    const taken: bigint[] = [];
    for (let k = 0; k < need; k++) {
      taken.push(avBlk.blknos[avBlk.start]!);
      avBlk.start++;
      avBlk.nr--;
      avail.total_nr--;
      avail.first_nr--;
    }
    if (avBlk.nr === 0) avBlk.start = 0;
    if (avBlk.sorted !== true) {
      avBlk.blknos.subarray(avBlk.start, avBlk.start + avBlk.nr).sort();
      avBlk.sorted = true;
    }

    let frBlk: ListBlock;
    let frOld = 0n;
    if (frNewEmpty) {
      frBlk = emptyListBlock();
      frBlk.next = { ...freed.ref };
      freed.first_nr = 0;
    } else if (frIsDirty) {
      frBlk = cache.getDirty(freed.ref.blkno, listBlockCodec);
    } else {
      frBlk = this.takeList(freed, "freed");
      frOld = freed.ref.blkno;
    }
    // The old blknos go to `freed`: the committed state references them until the commit, and
    // their contents are intact on the device (takeList dropped their clean cache entries).
    let avOld = 0n;
    if (!avIsDirty) {
      avOld = avail.ref.blkno;
      const b = taken.shift()!;
      avail.ref = { blkno: b, seq: cache.create(b, listBlockCodec, avBlk) };
    }
    if (!frIsDirty) {
      const b = taken.shift()!;
      freed.ref = { blkno: b, seq: cache.create(b, listBlockCodec, frBlk) };
    }
    if (avOld !== 0n) this.addFreed(frBlk, avOld);
    if (frOld !== 0n) this.addFreed(frBlk, frOld);
    this.prepared = true;
    this.counters.prepare++;
  }

  private addFreed(fr: ListBlock, blkno: bigint): void {
    assert(fr.nr < ALLOC_LIST_MAX_BLOCKS, "freed list block is full");
    fr.sorted = false;
    if (fr.start + fr.nr < ALLOC_LIST_MAX_BLOCKS) fr.blknos[fr.start + fr.nr] = blkno;
    else fr.blknos[--fr.start] = blkno;
    fr.nr++;
    this.freed.total_nr++;
    this.freed.first_nr++;
  }

  allocMeta(): bigint {
    this.prepare();
    const av = this.cache.getDirty(this.avail.ref.blkno, listBlockCodec);
    if (av.nr === 0) {
      throw new ScoutfsError("ENOSPC", "metadata avail list is empty: the transaction should have committed before running out");
    }
    const blkno = av.blknos[av.start]!;
    av.start++;
    av.nr--;
    if (av.nr === 0) av.start = 0;
    this.avail.total_nr--;
    this.avail.first_nr--;
    this.counters.alloc++;
    return blkno;
  }

  freeMeta(blkno: bigint): void {
    if (!this.validBlkno(blkno)) throw new ScoutfsError("EINVAL", `freeing invalid metadata blkno ${blkno}`);
    this.prepare();
    const fr = this.cache.getDirty(this.freed.ref.blkno, listBlockCodec);
    if (fr.nr >= ALLOC_LIST_MAX_BLOCKS) {
      throw new ScoutfsError("ENOSPC", "metadata freed list block is full: the transaction should have committed first");
    }
    this.addFreed(fr, blkno);
    this.counters.free++;
  }

  /**
   * Add the blknos of extent [start, start+len) to the avail list's first block (the server
   * filling a list from its extent allocators). Returns how many fit; the rest is the caller's.
   */
  addAvail(start: bigint, len: bigint): number {
    this.prepare();
    const av = this.cache.getDirty(this.avail.ref.blkno, listBlockCodec);
    const room = ALLOC_LIST_MAX_BLOCKS - av.nr;
    const n = Number(len < BigInt(room) ? len : BigInt(room));
    if (av.start + av.nr + n > ALLOC_LIST_MAX_BLOCKS) {
      av.blknos.copyWithin(0, av.start, av.start + av.nr);
      av.start = 0;
    }
    if (av.sorted === true && n > 0 && av.nr > 0 && av.blknos[av.start + av.nr - 1]! >= start) av.sorted = false;
    for (let i = 0; i < n; i++) av.blknos[av.start + av.nr + i] = start + BigInt(i);
    av.nr += n;
    this.avail.total_nr += BigInt(n);
    this.avail.first_nr += n;
    return n;
  }

  /** Blocks still available to this transaction and room left to record frees. */
  remaining(): { availNr: number; freedSpace: number } {
    const freedSpace = this.prepared ? ALLOC_LIST_MAX_BLOCKS - this.freed.first_nr : ALLOC_LIST_MAX_BLOCKS;
    return { availNr: Math.max(0, this.avail.first_nr - (this.prepared ? 0 : 2)), freedSpace };
  }

  /** True when the transaction should commit before making another change of `worstBlocks`. */
  low(worstBlocks: number): boolean {
    const r = this.remaining();
    return r.availNr < worstBlocks || r.freedSpace < worstBlocks;
  }

  /** After the commit: the next change dirties the list blocks again. */
  committed(): void {
    this.prepared = false;
  }

  /** Every blkno in a list (walking its blocks), for checks and the server's merging. */
  static listBlknos(cache: MetaCache, head: ListHead): { blknos: bigint[]; listBlocks: bigint[] } {
    const blknos: bigint[] = [];
    const listBlocks: bigint[] = [];
    let ref = head.ref;
    for (let hops = 0; ref.blkno !== 0n; hops++) {
      if (hops > 1_000_000) throw new ScoutfsError("EIO", "alloc list loops");
      const b = cache.read(ref, listBlockCodec);
      listBlocks.push(ref.blkno);
      for (let i = b.start; i < b.start + b.nr; i++) blknos.push(b.blknos[i]!);
      ref = b.next;
    }
    return { blknos, listBlocks };
  }
}
