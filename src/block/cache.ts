/**
 * The metadata block cache of one transaction writer: verified reads of 64 KiB metadata blocks
 * through a bounded cache, dirty blocks of the current transaction, and the commit sequence.
 *
 * Blocks are cached decoded. Each block type supplies a codec (magic, decode, encode); what
 * "decoded" means is the codec's business: a btree node is its 64 KiB block changed in place,
 * with the AVL tree and leaf hash laid out canonically only when it is written (see
 * docs/engine-btree.md), an alloc list block a typed array of blknos. A block is decoded once per read
 * from the device and encoded once per commit however many times it changes in between, which is
 * the copy-on-write rule of scoutfs ("a block is written at most once per commit") turned into
 * a saving.
 *
 * Memory: clean blocks are bounded in BYTES (`maxCleanBytes`, default 128 MiB; each entry costs
 * its codec's `footprint`), evicted second-chance LRU; dirty blocks are bounded by the
 * transaction layers (TRANS_DIRTY_BLOCKS_MAX); and the cache paces young-generation garbage
 * collections by its read rate (CACHE_GC_EVERY_READS), because the JS engine otherwise lets
 * garbage grow with the live heap, which these buffers dominate.
 *
 * Invariants:
 * - A clean cached object is immutable: writers copy it into a newly allocated dirty block
 *   (copy-on-write) and never modify the clean one. So readers of the last committed trees can
 *   share clean objects with the writer.
 * - A dirty block lives only in `dirty` until the commit writes it, never in the clean LRU; it is
 *   never evicted. Its header seq is random (as scoutfs's are), fixed when it is created, so refs
 *   to it can be set at once and stale refs to a reused blkno are detected by seq.
 * - Every read is verified against its ref (crc, magic, fsid, blkno, seq). Any mismatch is
 *   ESTALE, as in scoutfs: the reader may be following a root that another writer has since
 *   overwritten, and should re-read the root and retry; a caller that cannot retry turns it
 *   into EIO. A failed read never enters the cache.
 *
 * Commit: `commit(writeRoot)` writes every dirty block in ascending blkno order (contiguous runs
 * in one write), flushes the device, then lets the caller write the root that references them
 * (super block or log-trees item) and flushes again. A crash at any point leaves either the old
 * root (whose blocks were never overwritten: they were freed only for reuse after this commit) or
 * the new root with all its blocks on disk.
 */
import { assert } from "../util/assert.ts";
import { ScoutfsError } from "../util/errors.ts";
import { BlockHeader } from "../format/block.ts";
import { BLOCK_LG_SHIFT, BLOCK_LG_SIZE } from "../format/constants.ts";
import { verifyBlock, sealBlock } from "./device.ts";

/** What the cache needs of a device (a Device, or a test wrapper that records or fails I/O). */
export interface MetaDev {
  readonly path: string;
  read(blkno: number | bigint, shift: number): Uint8Array;
  writeAt(buf: Uint8Array, offset: number): void;
  sync(): void;
}

export interface BlockRefLike {
  blkno: bigint;
  seq: bigint;
}

/** How one type of metadata block is decoded from and encoded into its 64 KiB. */
export interface BlockCodec<T> {
  readonly name: string;
  readonly magic: number;
  /** Decode a block whose header verified. Bad contents throw ScoutfsError (EIO). */
  decode(buf: Uint8Array, blkno: bigint): T;
  /** Encode into a zeroed block buffer; the header (bytes 0..31) is filled in by the cache. */
  encode(obj: T, buf: Uint8Array): void;
  /**
   * Optional: the block was sealed (and is being written) with these bytes; the object may keep
   * a copy as its new form (the btree keeps the written block as the node's buffer). The object
   * must still hold the same contents afterwards: a failed commit encodes it again.
   */
  written?(obj: T, block: Uint8Array): void;
  /** Optional: bytes a cached object costs in memory (default: one 64 KiB block). */
  footprint?(obj: T): number;
}

interface Entry {
  blkno: bigint;
  seq: bigint;
  /** The seq's low and high 32 bits, for readWords. */
  seqLo: number;
  seqHi: number;
  codec: BlockCodec<unknown>;
  obj: unknown;
  /** Memory the entry costs (codec.footprint), counted against the clean bound. */
  size: number;
  /** Read since it was last passed over by eviction (second-chance LRU). */
  used: boolean;
}

export interface CacheOptions {
  /** Memory the clean cached blocks may use, least recently used evicted first. */
  maxCleanBytes?: number;
  /** The same bound in 64 KiB blocks (older callers); maxCleanBytes wins when both are given. */
  maxCleanBlocks?: number;
  /** Seq source for new dirty blocks (tests pass a seeded one); default random 64 bits. */
  randomSeq?: () => bigint;
  /** Ask the JS engine for a young-generation collection every this many block reads (0: never). */
  gcEveryReads?: number;
}

/** Default bound of the clean cache: 128 MiB, about 2000 btree nodes. */
export const CACHE_CLEAN_BYTES_DEFAULT = 128 << 20;
/** The smallest clean bound: a few root-to-leaf paths must fit. */
const CACHE_CLEAN_BYTES_MIN = 16 * BLOCK_LG_SIZE;
/**
 * Garbage pacing. JavaScriptCore sizes the garbage it lets pile up between collections by the
 * live heap, and counts the cache's 64 KiB block buffers in it; a cache of 170 MiB of nodes let
 * ~300 MiB of small garbage (search keys, returned items) accumulate before a collection, so
 * RSS ran at twice the cache. Every CACHE_GC_EVERY_READS block reads (about 20k lookups or
 * inserts in a 1M-item tree: a few MB of garbage) the cache asks for a young-generation
 * collection (`Bun.gc(false)`), which costs well under a millisecond when the young objects are
 * dead. On the 1M-item engine benchmark it kept RSS through 1M lookups at ~316 MiB, where it
 * had grown to ~650 MiB without.
 */
export const CACHE_GC_EVERY_READS = 1 << 16;
/**
 * The bound transaction layers keep on the dirty blocks of one commit: 2048 blocks, 128 MiB.
 * Dirty blocks can not be evicted, so this and the clean bound together bound the cache. Item
 * stores start a commit before their dirty items could need more (src/item/store.ts,
 * client-store.ts); the engine itself does not enforce it (a commit is one atomic unit).
 */
export const TRANS_DIRTY_BLOCKS_MAX = 2048;
/** Blocks coalesced into one write at commit (1 MiB). */
const WRITE_RUN_BLOCKS_MAX = 16;

function randomSeq64(): bigint {
  const a = new BigUint64Array(1);
  crypto.getRandomValues(a);
  return a[0]! === 0n ? 1n : a[0]!;
}

/** Map key of a blkno: a number (hashing numbers is cheaper than bigints, and needs no allocation). */
const BLKNO_KEY_MAX = BigInt(Number.MAX_SAFE_INTEGER);
function blknoKey(blkno: bigint): number {
  if (blkno < 0n || blkno > BLKNO_KEY_MAX) assert(false, `block number ${blkno} out of range`);
  return Number(blkno);
}

function makeEntry(blkno: bigint, seq: bigint, codec: BlockCodec<unknown>, obj: unknown): Entry {
  return {
    blkno,
    seq,
    seqLo: Number(seq & 0xffffffffn),
    seqHi: Number(seq >> 32n),
    codec,
    obj,
    size: codec.footprint?.(obj) ?? BLOCK_LG_SIZE,
    used: false,
  };
}

export class MetaCache {
  private readonly clean = new Map<number, Entry>();
  private readonly dirty = new Map<number, Entry>();
  private readonly maxCleanBytes: number;
  private cleanBytes = 0;
  private readonly randomSeq: () => bigint;
  private readonly gcEveryReads: number;
  private readsSinceGc = 0;
  private readonly runBuf = new Uint8Array(WRITE_RUN_BLOCKS_MAX * BLOCK_LG_SIZE);
  readonly counters = {
    hit: 0,
    miss: 0,
    stale: 0,
    evicted: 0,
    dirtied: 0,
    written: 0,
    commits: 0,
    gcs: 0,
  };

  constructor(
    readonly dev: MetaDev,
    readonly fsid: bigint,
    opts: CacheOptions = {},
  ) {
    this.maxCleanBytes = opts.maxCleanBytes ?? (opts.maxCleanBlocks !== undefined ? opts.maxCleanBlocks * BLOCK_LG_SIZE : CACHE_CLEAN_BYTES_DEFAULT);
    assert(this.maxCleanBytes >= CACHE_CLEAN_BYTES_MIN, `clean cache of ${this.maxCleanBytes} bytes is too small`);
    this.randomSeq = opts.randomSeq ?? randomSeq64;
    this.gcEveryReads = opts.gcEveryReads ?? CACHE_GC_EVERY_READS;
  }

  /**
   * The decoded block `ref` points to, verified. Throws ScoutfsError ESTALE when the block on
   * disk is not the one the ref names (or is corrupt), EIO when its contents do not decode.
   */
  read<T>(ref: BlockRefLike, codec: BlockCodec<T>): T {
    if (++this.readsSinceGc === this.gcEveryReads) this.gcHint();
    const key = blknoKey(ref.blkno);
    const d = this.dirty.get(key);
    if (d !== undefined) {
      if (d.seq !== ref.seq || d.codec !== codec) throw this.stale(ref, codec, `dirty block has seq ${d.seq} (${d.codec.name})`);
      return d.obj as T;
    }
    const c = this.clean.get(key);
    if (c !== undefined && c.seq === ref.seq && c.codec === codec) {
      this.counters.hit++;
      c.used = true;
      return c.obj as T;
    }
    return this.readMiss(ref, codec, c);
  }

  /**
   * `read` for a ref held as numbers, as a btree walk reads it out of a parent block: blkno (below
   * 2^53) and the seq's low and high 32 bits. A hit allocates nothing.
   */
  readWords<T>(blkno: number, seqLo: number, seqHi: number, codec: BlockCodec<T>): T {
    if (++this.readsSinceGc === this.gcEveryReads) this.gcHint();
    const d = this.dirty.get(blkno);
    if (d !== undefined) {
      if (d.seqLo !== seqLo || d.seqHi !== seqHi || d.codec !== codec) {
        throw this.stale(wordsRef(blkno, seqLo, seqHi), codec, `dirty block has seq ${d.seq} (${d.codec.name})`);
      }
      return d.obj as T;
    }
    const c = this.clean.get(blkno);
    if (c !== undefined && c.seqLo === seqLo && c.seqHi === seqHi && c.codec === codec) {
      this.counters.hit++;
      // second chance: eviction moves it to the young end instead of dropping it (cheaper
      // than reordering the map on every hit, which cost ~15% of a btree insert)
      c.used = true;
      return c.obj as T;
    }
    return this.readMiss(wordsRef(blkno, seqLo, seqHi), codec, c);
  }

  /**
   * A caller produced `n` reads' worth of short-lived garbage without reading blocks (a range
   * scan returns hundreds of items per leaf it reads): counts towards the next collection hint.
   */
  pace(n: number): void {
    this.readsSinceGc += n;
    if (this.readsSinceGc >= this.gcEveryReads && this.gcEveryReads > 0) this.gcHint();
  }

  /** See CACHE_GC_EVERY_READS. */
  private gcHint(): void {
    this.readsSinceGc = 0;
    this.counters.gcs++;
    if (typeof Bun !== "undefined") Bun.gc(false);
  }

  private readMiss<T>(ref: BlockRefLike, codec: BlockCodec<T>, c: Entry | undefined): T {
    if (c !== undefined) this.dropClean(c);
    this.counters.miss++;
    const buf = this.dev.read(ref.blkno, BLOCK_LG_SHIFT);
    const v = verifyBlock(buf, { magic: codec.magic, fsid: this.fsid, blkno: ref.blkno, seq: ref.seq });
    if (!v.ok) throw this.stale(ref, codec, v.message);
    const obj = codec.decode(buf, ref.blkno);
    this.insertClean(makeEntry(ref.blkno, ref.seq, codec as BlockCodec<unknown>, obj));
    return obj;
  }

  private stale(ref: BlockRefLike, codec: BlockCodec<unknown>, why: string): ScoutfsError {
    this.counters.stale++;
    return new ScoutfsError("ESTALE", `${codec.name} block ${ref.blkno} seq ${ref.seq} on '${this.dev.path}': ${why}`);
  }

  private insertClean(e: Entry): void {
    const key = Number(e.blkno);
    const old = this.clean.get(key);
    if (old !== undefined) this.dropClean(old);
    e.used = false;
    this.clean.set(key, e);
    this.cleanBytes += e.size;
    // oldest first; an entry read since it was last passed over goes to the young end once
    let passes = this.clean.size;
    while (this.cleanBytes > this.maxCleanBytes && this.clean.size > 1) {
      const oldest = this.clean.values().next().value as Entry;
      if (oldest.used && passes-- > 0) {
        oldest.used = false;
        this.clean.delete(Number(oldest.blkno));
        this.clean.set(Number(oldest.blkno), oldest);
        continue;
      }
      this.dropClean(oldest);
      this.counters.evicted++;
    }
  }

  private dropClean(e: Entry): void {
    this.clean.delete(Number(e.blkno));
    this.cleanBytes -= e.size;
  }

  /** Memory the clean cache holds now (codec footprints). */
  get cleanBytesUsed(): number {
    return this.cleanBytes;
  }

  isDirty(blkno: bigint): boolean {
    return this.dirty.has(blknoKey(blkno));
  }

  /** The object of a dirty block, to modify in place. */
  getDirty<T>(blkno: bigint, codec: BlockCodec<T>): T {
    const d = this.dirty.get(blknoKey(blkno));
    assert(d !== undefined && d.codec === codec, `block ${blkno} is not a dirty ${codec.name} block`);
    return d.obj as T;
  }

  /** The seq of a dirty block (what refs to it carry). */
  dirtySeq(blkno: bigint): bigint {
    const d = this.dirty.get(blknoKey(blkno));
    assert(d !== undefined, `block ${blkno} is not dirty`);
    return d.seq;
  }

  /**
   * Make `obj` the new dirty contents of `blkno` (a block just allocated in this transaction)
   * and return the random seq that refs to it must carry.
   */
  create<T>(blkno: bigint, codec: BlockCodec<T>, obj: T): bigint {
    assert(blkno > 0n, `dirty block number ${blkno}`);
    assert(!this.dirty.has(blknoKey(blkno)), `block ${blkno} is already dirty`);
    // a stale clean copy of a reused blkno must never be served again
    this.invalidate(blkno);
    let seq = this.randomSeq();
    if (seq === 0n) seq = 1n;
    this.dirty.set(Number(blkno), makeEntry(blkno, seq, codec as BlockCodec<unknown>, obj));
    this.counters.dirtied++;
    return seq;
  }

  /** A block dirtied in this transaction was freed again: it will not be written. */
  forgetDirty(blkno: bigint): void {
    assert(this.dirty.delete(blknoKey(blkno)), `forgetting block ${blkno} that is not dirty`);
  }

  /** Drop any clean copy of `blkno` (its contents are about to change under another writer). */
  invalidate(blkno: bigint): void {
    const c = this.clean.get(blknoKey(blkno));
    if (c !== undefined) this.dropClean(c);
  }

  get dirtyCount(): number {
    return this.dirty.size;
  }

  /** Memory the dirty blocks hold (what the next commit writes is dirtyCount blocks). */
  get dirtyBytes(): number {
    let n = 0;
    for (const e of this.dirty.values()) n += e.size;
    return n;
  }

  /** Abandon the transaction: forget every dirty block (the on-disk state is untouched). */
  discardDirty(): void {
    this.dirty.clear();
  }

  /**
   * Encode, seal and write every dirty block in blkno order, contiguous runs together, then flush
   * (unless `flush` is false: the caller has the device flushed before anything references them).
   */
  writeDirty(flush = true): number {
    const blknos = [...this.dirty.keys()].sort((a, b) => a - b);
    let i = 0;
    while (i < blknos.length) {
      let n = 1;
      while (i + n < blknos.length && n < WRITE_RUN_BLOCKS_MAX && blknos[i + n] === blknos[i]! + n) n++;
      // one reused run buffer: a fresh megabyte per run is garbage the GC frees too late
      const run = this.runBuf.subarray(0, n * BLOCK_LG_SIZE);
      for (let k = 0; k < n; k++) {
        const e = this.dirty.get(blknos[i + k]!)!;
        const blk = run.subarray(k * BLOCK_LG_SIZE, (k + 1) * BLOCK_LG_SIZE);
        blk.fill(0);
        e.codec.encode(e.obj, blk);
        sealBlock(blk, e.codec.magic, this.fsid, e.seq, e.blkno);
        e.codec.written?.(e.obj, blk);
      }
      this.dev.writeAt(run, blknos[i]! * BLOCK_LG_SIZE);
      this.counters.written += n;
      i += n;
    }
    if (flush) this.dev.sync();
    return blknos.length;
  }

  /**
   * Commit the transaction: dirty blocks, flush, the root that references them (if any), flush. On an
   * error the dirty blocks stay dirty (nothing is marked clean) so the caller may retry or abort.
   */
  commit(writeRoot: (() => void) | null, flush = true): void {
    assert(flush || writeRoot === null, "a root is written only after its blocks are flushed");
    this.writeDirty(flush);
    // a commit whose root lives elsewhere (a mount's log tree, recorded by the server) has no
    // root to write here: the flush in writeDirty made its blocks durable, or (flush false) the
    // server that records the root flushes the same device before it writes its own
    if (writeRoot !== null) {
      writeRoot();
      this.dev.sync();
    }
    // everything written is now the committed state: the dirty objects become clean cache entries
    for (const e of this.dirty.values()) this.insertClean(e);
    this.dirty.clear();
    this.counters.commits++;
  }
}

function wordsRef(blkno: number, seqLo: number, seqHi: number): BlockRefLike {
  return { blkno: BigInt(blkno), seq: (BigInt(seqHi) << 32n) | BigInt(seqLo) };
}

/** The size of the block header every codec leaves to the cache. */
export const BLOCK_HEADER_BYTES = BlockHeader.size;
