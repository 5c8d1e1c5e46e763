/**
 * Shared pieces of the btree tests: a real sparse image with a MetaCache on it, a small metadata
 * allocator with the MetaAlloc contract (frees reusable only after commit, rollback on abort),
 * a seeded PRNG, key and value makers, and the leak check.
 */
import * as path from "node:path";
import * as fs from "node:fs";
import { Device } from "../../src/block/device.ts";
import { MetaCache } from "../../src/block/cache.ts";
import type { MetaAlloc, Writer } from "../../src/alloc/types.ts";
import { ScoutfsError } from "../../src/util/errors.ts";
import { keyPack, makeKey, type PackedKey } from "../../src/format/key.ts";
import { tempDir, sparseFile } from "../helpers/images.ts";

export const FSID = 0x1234_5678_9abc_def0n;

/** Hands out blknos from a free set; frees this transaction become free after commit(). */
export class TestAlloc implements MetaAlloc {
  private avail: bigint[] = [];
  private pendingFree: bigint[] = [];
  private takenThisTrans: bigint[] = [];
  /** Fault trigger: allocations left before ENOSPC (null = unlimited). */
  failAfter: number | null = null;
  allocs = 0;

  constructor(readonly first: bigint, readonly end: bigint) {
    // hand out low blknos first
    for (let b = end - 1n; b >= first; b--) this.avail.push(b);
  }

  allocMeta(): bigint {
    if (this.failAfter !== null) {
      if (this.failAfter <= 0) throw new ScoutfsError("ENOSPC", "test allocator: fault trigger");
      this.failAfter--;
    }
    const b = this.avail.pop();
    if (b === undefined) throw new ScoutfsError("ENOSPC", "test allocator: no free metadata blocks");
    this.takenThisTrans.push(b);
    this.allocs++;
    return b;
  }

  freeMeta(blkno: bigint): void {
    if (blkno < this.first || blkno >= this.end) throw new Error(`freeing ${blkno} outside the allocator`);
    this.pendingFree.push(blkno);
  }

  /** The transaction committed: its frees become allocatable. */
  commit(): void {
    for (const b of this.pendingFree) this.avail.push(b);
    this.pendingFree = [];
    this.takenThisTrans = [];
  }

  /** The transaction was abandoned: its allocations return, its frees never happened. */
  abort(): void {
    for (const b of this.takenThisTrans) this.avail.push(b);
    this.pendingFree = [];
    this.takenThisTrans = [];
  }

  freeSet(): Set<bigint> {
    return new Set(this.avail);
  }
}

export interface Env {
  dir: string;
  metaPath: string;
  dev: Device;
  cache: MetaCache;
  alloc: TestAlloc;
  w: Writer;
  close(): void;
}

export const IMAGE_BYTES = 1 << 30; // 16384 blocks, sparse
export const FIRST_BLKNO = 16n;

export function makeEnv(opts: { maxCleanBlocks?: number; seed?: number } = {}): Env {
  const dir = tempDir("scoutfs-btree-");
  const metaPath = sparseFile(path.join(dir, "meta.img"), IMAGE_BYTES);
  const dev = Device.open(metaPath, { write: true });
  const rng = opts.seed !== undefined ? prng(opts.seed ^ 0x5eed) : null;
  const cache = new MetaCache(dev, FSID, {
    maxCleanBlocks: opts.maxCleanBlocks ?? 256,
    randomSeq: rng ? () => (BigInt(Math.floor(rng() * 2 ** 32)) << 32n) | BigInt(Math.floor(rng() * 2 ** 32)) | 1n : undefined,
  });
  const alloc = new TestAlloc(FIRST_BLKNO, BigInt(IMAGE_BYTES >> 16));
  return {
    dir,
    metaPath,
    dev,
    cache,
    alloc,
    w: { cache, alloc },
    close() {
      dev.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** mulberry32: small, seedable, good enough for test schedules. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A packed fs-zone-like key from a number (spread over first/second/third). */
export function numKey(n: number): PackedKey {
  return keyPack(makeKey(4, BigInt(Math.floor(n / 1000)), 1, BigInt(n % 1000), 0n, 0));
}

export function fillVal(len: number, tag: number): Uint8Array {
  const v = new Uint8Array(len);
  for (let i = 0; i < len; i++) v[i] = (tag * 31 + i * 7) & 0xff;
  return v;
}

/** Allocated blocks are exactly the referenced ones plus the free ones. */
export function checkNoLeak(alloc: TestAlloc, referenced: Set<bigint>): void {
  const free = alloc.freeSet();
  for (const b of referenced) if (free.has(b)) throw new Error(`block ${b} is referenced and free`);
  const total = Number(alloc.end - alloc.first);
  if (referenced.size + free.size !== total) {
    throw new Error(`leak: ${total} blocks, ${referenced.size} referenced + ${free.size} free`);
  }
}
