/**
 * The bloom filter block of a log tree (scoutfs forest.c): a 64 KiB block of bits that says
 * which locks' ranges the tree may hold items in. A mount sets the bits of the start key of the
 * lock covering every item it writes into its open log tree (FOREST_BLOOM_NRS bit numbers from
 * fnv1a64 of the 32-byte key, FOREST_BLOOM_FUNC_BITS bits apart); a reader looking for a key
 * skips every log tree whose bloom lacks one of the bits for that key's lock. The block lives
 * as long as the tree: later commits copy it on write and add bits; a finalized tree keeps it
 * until the merge frees both.
 *
 * Trees written without a bloom block (bloom_ref 0: volumes from before this, or trees holding
 * only keys no lock range covers) are always read: skipping them would hide their items. (The
 * kernel skips them, so kernel mounts need the block on every tree that holds lockable items,
 * which is what we write.)
 */
import type { BlockCodec } from "../block/cache.ts";
import * as C from "../format/constants.ts";
import { packedToRaw, type PackedKey } from "../format/key.ts";
import { fnv1a64 } from "../format/hash.ts";
import { BLOOM_BITS_OFF, FOREST_BLOOM_BITS } from "../format/log_trees.ts";
import { ScoutfsError } from "../util/errors.ts";

export interface Bloom {
  /** Bits set (the block's total_set). */
  totalSet: bigint;
  /** The bit array, little-endian bit order within the u64 words (test_bit_le). */
  bits: Uint8Array;
}

const BITS_BYTES = FOREST_BLOOM_BITS / 8;

export const BloomCodec: BlockCodec<Bloom> = {
  name: "bloom",
  magic: C.BLOCK_MAGIC_BLOOM,
  decode(buf: Uint8Array, blkno: bigint): Bloom {
    const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const totalSet = v.getBigUint64(32, true);
    if (totalSet > BigInt(FOREST_BLOOM_BITS)) throw new ScoutfsError("EIO", `bloom block ${blkno} claims ${totalSet} bits set of ${FOREST_BLOOM_BITS}`);
    return { totalSet, bits: buf.slice(BLOOM_BITS_OFF, BLOOM_BITS_OFF + BITS_BYTES) };
  },
  encode(b: Bloom, buf: Uint8Array): void {
    new DataView(buf.buffer, buf.byteOffset, buf.byteLength).setBigUint64(32, b.totalSet, true);
    buf.set(b.bits, BLOOM_BITS_OFF);
  },
};

export function emptyBloom(): Bloom {
  return { totalSet: 0n, bits: new Uint8Array(BITS_BYTES) };
}

const raw = new Uint8Array(32);
const nrsCache = new Map<PackedKey, number[]>();
const NRS_CACHE_MAX = 8192;

/** The bit numbers of a lock start key (calc_bloom_nrs). */
export function bloomNrs(lockStart: PackedKey): number[] {
  let nrs = nrsCache.get(lockStart);
  if (nrs !== undefined) return nrs;
  packedToRaw(lockStart, raw, 0);
  let h = fnv1a64(raw);
  nrs = [];
  for (let i = 0; i < C.FOREST_BLOOM_NRS; i++) {
    nrs.push(Number(h & 0xffffffffn) % FOREST_BLOOM_BITS);
    h >>= BigInt(C.FOREST_BLOOM_FUNC_BITS);
  }
  if (nrsCache.size >= NRS_CACHE_MAX) nrsCache.clear();
  nrsCache.set(lockStart, nrs);
  return nrs;
}

/** May the tree with this bloom hold items of the lock starting at `lockStart`? */
export function bloomTest(b: Bloom, lockStart: PackedKey): boolean {
  for (const n of bloomNrs(lockStart)) if ((b.bits[n >>> 3]! & (1 << (n & 7))) === 0) return false;
  return true;
}

/** Set the bits of `lockStart`; returns how many were newly set (total_set grows by it). */
export function bloomSet(b: Bloom, lockStart: PackedKey): number {
  let n = 0;
  for (const nr of bloomNrs(lockStart)) {
    const m = 1 << (nr & 7);
    if ((b.bits[nr >>> 3]! & m) === 0) {
      b.bits[nr >>> 3] = b.bits[nr >>> 3]! | m;
      n++;
    }
  }
  b.totalSet += BigInt(n);
  return n;
}
