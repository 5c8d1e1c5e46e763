// Log tree bloom filters (src/item/bloom.ts): bit numbers as scoutfs computes them, the block
// written with every commit that adds lock ranges, and forest reads that skip other mounts'
// trees without the key's lock — while every item stays readable.
import { afterAll, describe, expect, test } from "bun:test";
import { bloomNrs, bloomSet, bloomTest, emptyBloom, BloomCodec } from "../../src/item/bloom.ts";
import { lockStartOf, inodeLockRange, indexLockRange, orphanLockRange } from "../../src/format/lock-ranges.ts";
import { inodeIndexKey, inodeKey, orphanKey, xattrKey } from "../../src/fs/keys.ts";
import { packedToRaw, keyPack, makeKey } from "../../src/format/key.ts";
import { FOREST_BLOOM_BITS } from "../../src/format/log_trees.ts";
import * as C from "../../src/format/constants.ts";
import { makeVolume, removeVolume, startServer, type Vol } from "../server/helpers.ts";
import { openStore } from "../client/helpers.ts";

const vols: Vol[] = [];
afterAll(() => vols.forEach(removeVolume));

/** fnv1a64 and calc_bloom_nrs written out independently of src/. */
function refNrs(start: string): number[] {
  const raw = new Uint8Array(32);
  packedToRaw(start, raw, 0);
  let h = 0xcbf29ce484222325n;
  for (const b of raw) h = ((h ^ BigInt(b)) * 0x100000001b3n) & 0xffffffffffffffffn;
  const out: number[] = [];
  for (let i = 0; i < 3; i++) {
    out.push(Number(h & 0xffffffffn) % FOREST_BLOOM_BITS);
    h >>= 19n;
  }
  return out;
}

describe("bloom filters", () => {
  test("bit numbers, lock starts and the block codec", () => {
    expect(FOREST_BLOOM_BITS).toBe(523968);
    for (const ino of [1n, 1023n, 1024n, 77777n]) {
      const ls = lockStartOf(xattrKey(ino, 5, 3n, 0))!;
      expect(ls).toBe(inodeLockRange(ino).start);
      expect(lockStartOf(inodeKey(ino))).toBe(ls);
      expect(bloomNrs(ls)).toEqual(refNrs(ls));
    }
    expect(lockStartOf(inodeIndexKey(C.INODE_INDEX_META_SEQ_TYPE, 5000n, 9n))).toBe(indexLockRange(C.INODE_INDEX_META_SEQ_TYPE, 5000n).start);
    expect(lockStartOf(orphanKey(42n))).toBe(orphanLockRange().start);
    expect(lockStartOf(keyPack(makeKey(C.LOG_TREES_ZONE, 1n, 0)))).toBeNull();
    const b = emptyBloom();
    const a = inodeLockRange(1n).start;
    expect(bloomTest(b, a)).toBe(false);
    expect(bloomSet(b, a)).toBe(3);
    expect(bloomSet(b, a)).toBe(0);
    expect(bloomTest(b, a)).toBe(true);
    const buf = new Uint8Array(C.BLOCK_LG_SIZE);
    BloomCodec.encode(b, buf);
    const back = BloomCodec.decode(buf, 10n);
    expect(back.totalSet).toBe(3n);
    expect(bloomTest(back, a)).toBe(true);
    // little-endian bit order within the words, as test_bit_le
    const n = bloomNrs(a)[0]!;
    expect(buf[40 + (n >>> 3)]! & (1 << (n & 7))).not.toBe(0);
  });

  test("commits write the bloom block; other mounts skip trees without the lock and still see every item", async () => {
    const v = await makeVolume("bloom", 1024, 64);
    vols.push(v);
    const server = startServer(v, 1n);
    const a = await openStore(v);
    const b = await openStore(v);
    try {
      // a writes items of inode group 0; b writes items of group 4096
      a.transact((w) => {
        for (let i = 0; i < 50; i++) w.put(xattrKey(5n, i, 1n, 0), new Uint8Array([i]));
      });
      b.transact((w) => w.put(inodeKey(4100n), new Uint8Array([7])));
      await a.sync();
      await b.sync();
      expect(a.lt.bloom_ref.blkno).not.toBe(0n);
      const seqBefore = a.lt.bloom_ref.seq;
      // the same lock again: every bit is set already, the block is not rewritten
      a.transact((w) => w.put(xattrKey(5n, 99, 1n, 0), new Uint8Array([1])));
      await a.sync();
      expect(a.lt.bloom_ref.seq).toBe(seqBefore);
      await a.refreshRoots();
      await b.refreshRoots();
      // b reading group 4096 skips a's tree; reading group 0 finds a's items
      const skips = b.forest.counters.bloomSkips;
      expect(b.reader.lookup(inodeKey(4100n))).toEqual(new Uint8Array([7]));
      expect(b.forest.counters.bloomSkips).toBeGreaterThan(skips);
      expect(b.reader.lookup(xattrKey(5n, 7, 1n, 0))).toEqual(new Uint8Array([7]));
      expect(b.reader.next(xattrKey(5n, 0, 0n, 0), xattrKey(5n, 1000, 9n, 9))?.val).toEqual(new Uint8Array([0]));
      expect(a.reader.lookup(inodeKey(4100n))).toEqual(new Uint8Array([7]));
    } finally {
      await a.close();
      await b.close();
      server.close();
    }
  }, 60_000);
});
