/**
 * The metadata block cache of one transaction writer: verified reads of 64 KiB metadata blocks
 * through a bounded cache, dirty blocks of the current transaction, and the commit sequence.
 *
 * Blocks are cached decoded. Each block type supplies a codec (magic, decode, encode); the btree
 * keeps its nodes as sorted item arrays, for instance, and lays out the scoutfs block (item
 * array, AVL tree, values, leaf hash) only when it writes one. A block is decoded once per read
 * from the device and encoded once per commit however many times it changes in between, which is
 * the copy-on-write rule of scoutfs ("a block is written at most once per commit") turned into
 * a saving.
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
}

interface Entry {
  blkno: bigint;
  seq: bigint;
  codec: BlockCodec<unknown>;
  obj: unknown;
}

export interface CacheOptions {
  /** Clean decoded blocks kept, least recently used evicted first. */
  maxCleanBlocks?: number;
  /** Seq source for new dirty blocks (tests pass a seeded one); default random 64 bits. */
  randomSeq?: () => bigint;
}

export const CACHE_CLEAN_BLOCKS_DEFAULT = 2048;
/** Blocks coalesced into one write at commit (1 MiB). */
const WRITE_RUN_BLOCKS_MAX = 16;

function randomSeq64(): bigint {
  const a = new BigUint64Array(1);
  crypto.getRandomValues(a);
  return a[0]! === 0n ? 1n : a[0]!;
}

export class MetaCache {
  private readonly clean = new Map<bigint, Entry>();
  private readonly dirty = new Map<bigint, Entry>();
  private readonly maxClean: number;
  private readonly randomSeq: () => bigint;
  private readonly runBuf = new Uint8Array(WRITE_RUN_BLOCKS_MAX * BLOCK_LG_SIZE);
  readonly counters = {
    hit: 0,
    miss: 0,
    stale: 0,
    evicted: 0,
    dirtied: 0,
    written: 0,
    commits: 0,
  };

  constructor(
    readonly dev: MetaDev,
    readonly fsid: bigint,
    opts: CacheOptions = {},
  ) {
    this.maxClean = opts.maxCleanBlocks ?? CACHE_CLEAN_BLOCKS_DEFAULT;
    assert(this.maxClean >= 16, `cache of ${this.maxClean} blocks is too small`);
    this.randomSeq = opts.randomSeq ?? randomSeq64;
  }

  /**
   * The decoded block `ref` points to, verified. Throws ScoutfsError ESTALE when the block on
   * disk is not the one the ref names (or is corrupt), EIO when its contents do not decode.
   */
  read<T>(ref: BlockRefLike, codec: BlockCodec<T>): T {
    const d = this.dirty.get(ref.blkno);
    if (d !== undefined) {
      if (d.seq !== ref.seq || d.codec !== codec) throw this.stale(ref, codec, `dirty block has seq ${d.seq} (${d.codec.name})`);
      return d.obj as T;
    }
    const c = this.clean.get(ref.blkno);
    if (c !== undefined && c.seq === ref.seq && c.codec === codec) {
      this.counters.hit++;
      // refresh its place in the LRU order
      this.clean.delete(ref.blkno);
      this.clean.set(ref.blkno, c);
      return c.obj as T;
    }
    if (c !== undefined) this.clean.delete(ref.blkno);
    this.counters.miss++;
    const buf = this.dev.read(ref.blkno, BLOCK_LG_SHIFT);
    const v = verifyBlock(buf, { magic: codec.magic, fsid: this.fsid, blkno: ref.blkno, seq: ref.seq });
    if (!v.ok) throw this.stale(ref, codec, v.message);
    const obj = codec.decode(buf, ref.blkno);
    this.insertClean({ blkno: ref.blkno, seq: ref.seq, codec: codec as BlockCodec<unknown>, obj });
    return obj;
  }

  private stale(ref: BlockRefLike, codec: BlockCodec<unknown>, why: string): ScoutfsError {
    this.counters.stale++;
    return new ScoutfsError("ESTALE", `${codec.name} block ${ref.blkno} seq ${ref.seq} on '${this.dev.path}': ${why}`);
  }

  private insertClean(e: Entry): void {
    this.clean.set(e.blkno, e);
    while (this.clean.size > this.maxClean) {
      const oldest = this.clean.keys().next().value as bigint;
      this.clean.delete(oldest);
      this.counters.evicted++;
    }
  }

  isDirty(blkno: bigint): boolean {
    return this.dirty.has(blkno);
  }

  /** The object of a dirty block, to modify in place. */
  getDirty<T>(blkno: bigint, codec: BlockCodec<T>): T {
    const d = this.dirty.get(blkno);
    assert(d !== undefined && d.codec === codec, `block ${blkno} is not a dirty ${codec.name} block`);
    return d.obj as T;
  }

  /** The seq of a dirty block (what refs to it carry). */
  dirtySeq(blkno: bigint): bigint {
    const d = this.dirty.get(blkno);
    assert(d !== undefined, `block ${blkno} is not dirty`);
    return d.seq;
  }

  /**
   * Make `obj` the new dirty contents of `blkno` (a block just allocated in this transaction)
   * and return the random seq that refs to it must carry.
   */
  create<T>(blkno: bigint, codec: BlockCodec<T>, obj: T): bigint {
    assert(blkno > 0n, `dirty block number ${blkno}`);
    assert(!this.dirty.has(blkno), `block ${blkno} is already dirty`);
    // a stale clean copy of a reused blkno must never be served again
    this.clean.delete(blkno);
    let seq = this.randomSeq();
    if (seq === 0n) seq = 1n;
    this.dirty.set(blkno, { blkno, seq, codec: codec as BlockCodec<unknown>, obj });
    this.counters.dirtied++;
    return seq;
  }

  /** A block dirtied in this transaction was freed again: it will not be written. */
  forgetDirty(blkno: bigint): void {
    assert(this.dirty.delete(blkno), `forgetting block ${blkno} that is not dirty`);
  }

  /** Drop any clean copy of `blkno` (its contents are about to change under another writer). */
  invalidate(blkno: bigint): void {
    this.clean.delete(blkno);
  }

  get dirtyCount(): number {
    return this.dirty.size;
  }

  /** Abandon the transaction: forget every dirty block (the on-disk state is untouched). */
  discardDirty(): void {
    this.dirty.clear();
  }

  /** Encode, seal and write every dirty block in blkno order, contiguous runs together, then flush. */
  writeDirty(): number {
    const blknos = [...this.dirty.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    let i = 0;
    while (i < blknos.length) {
      let n = 1;
      while (i + n < blknos.length && n < WRITE_RUN_BLOCKS_MAX && blknos[i + n] === blknos[i]! + BigInt(n)) n++;
      // one reused run buffer: a fresh megabyte per run is garbage the GC frees too late
      const run = this.runBuf.subarray(0, n * BLOCK_LG_SIZE);
      for (let k = 0; k < n; k++) {
        const e = this.dirty.get(blknos[i + k]!)!;
        const blk = run.subarray(k * BLOCK_LG_SIZE, (k + 1) * BLOCK_LG_SIZE);
        blk.fill(0);
        e.codec.encode(e.obj, blk);
        sealBlock(blk, e.codec.magic, this.fsid, e.seq, e.blkno);
      }
      this.dev.writeAt(run, Number(blknos[i]!) * BLOCK_LG_SIZE);
      this.counters.written += n;
      i += n;
    }
    this.dev.sync();
    return blknos.length;
  }

  /**
   * Commit the transaction: dirty blocks, flush, the root that references them, flush. On an
   * error the dirty blocks stay dirty (nothing is marked clean) so the caller may retry or abort.
   */
  commit(writeRoot: () => void): void {
    this.writeDirty();
    writeRoot();
    this.dev.sync();
    // everything written is now the committed state: the dirty objects become clean cache entries
    for (const e of this.dirty.values()) this.insertClean(e);
    this.dirty.clear();
    this.counters.commits++;
  }
}

/** The size of the block header every codec leaves to the cache. */
export const BLOCK_HEADER_BYTES = BlockHeader.size;
