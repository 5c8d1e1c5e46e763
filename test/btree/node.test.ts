/**
 * The in-place node layout (src/btree/node.ts) on its own: blocks laid out by another writer
 * decode and re-encode canonically; changes in place (with holes and compaction) encode to
 * exactly what build.ts lays out for the same items; the clean cache is bounded by bytes; a
 * range iterator held across a change of its tree fails with ESTALE instead of reading reused
 * buffers.
 */
import { describe, expect, test } from "bun:test";
import { btreeCodec, keyWords, nodeInsert, nodeItem, nodeKeyAt, nodeLowerBound, nodeNew, nodeRemove, nodeReplace, type BtreeNode } from "../../src/btree/node.ts";
import { buildBtreeBlock, type BuildItem } from "../../src/btree/build.ts";
import { readItems } from "../../src/btree/read.ts";
import { BtreeItem } from "../../src/format/btree.ts";
import { BLOCK_LG_SIZE } from "../../src/format/constants.ts";
import { keyPack, makeKey } from "../../src/format/key.ts";
import { view } from "../../src/format/struct.ts";
import { MetaCache } from "../../src/block/cache.ts";
import * as B from "../../src/btree/cow.ts";
import { FSID, makeEnv, prng } from "./helpers.ts";

function rng(seed: number): { int(n: number): number } {
  const r = prng(seed);
  return { int: (n: number) => Math.floor(r() * n) };
}

function items(n: number, seed: number): BuildItem[] {
  const r = rng(seed);
  const out: BuildItem[] = [];
  for (let i = 0; i < n; i++) {
    const val = new Uint8Array(r.int(120));
    for (let b = 0; b < val.length; b++) val[b] = r.int(256);
    out.push({ key: makeKey(4, BigInt(1000 + i * 3), 1, BigInt(r.int(5))), seq: BigInt(r.int(1000)), flags: r.int(2), val });
  }
  return out;
}

/** Encode a node the way the cache does (zeroed block, header left to the sealer). */
function encode(n: BtreeNode): Uint8Array {
  const out = new Uint8Array(BLOCK_LG_SIZE);
  btreeCodec.encode(n, out);
  return out;
}

/** Move every value of a canonical block somewhere else in its value area (another writer's layout). */
function scatterValues(block: Uint8Array, nr: number): Uint8Array {
  const b = block.slice();
  const dv = view(b);
  // reverse the value order: item 0's value ends up lowest instead of highest
  const vals: { off: number; len: number; bytes: Uint8Array }[] = [];
  for (let i = 0; i < nr; i++) {
    const h = 48 + i * BtreeItem.size;
    const off = dv.getUint16(h + BtreeItem.off.val_off, true);
    const len = dv.getUint16(h + BtreeItem.off.val_len, true);
    vals.push({ off, len, bytes: b.slice(off, off + len) });
  }
  let low = Math.min(...vals.filter((v) => v.len > 0).map((v) => v.off));
  for (let i = 0; i < nr; i++) {
    const v = vals[i]!;
    const h = 48 + i * BtreeItem.size;
    if (v.len === 0) continue;
    b.set(v.bytes, low);
    dv.setUint16(h + BtreeItem.off.val_off, low, true);
    low += (v.len + 7) & ~7;
  }
  return b;
}

describe("btree nodes in place", () => {
  test("a block in another layout decodes to the same items and re-encodes canonically", () => {
    for (const seed of [1, 2, 3]) {
      const its = items(300, seed);
      const canonical = buildBtreeBlock(0, its);
      const other = scatterValues(canonical, its.length);
      expect(other).not.toEqual(canonical);
      const node = btreeCodec.decode(other, 7n);
      const want = readItems(canonical);
      expect(node.nr).toBe(want.length);
      for (let i = 0; i < node.nr; i++) {
        const it = nodeItem(node, i);
        expect(it.seq).toBe(want[i]!.seq);
        expect(it.flags).toBe(want[i]!.flags);
        expect(it.val).toEqual(want[i]!.val);
      }
      expect(encode(node).subarray(32)).toEqual(canonical.subarray(32));
      // a canonical block is used as read, without a copy
      expect(btreeCodec.decode(canonical, 7n).buf).toBe(canonical);
    }
  });

  test("changes in place with holes and compaction encode like build.ts", () => {
    const r = rng(42);
    const model = new Map<string, BuildItem>();
    let node = btreeCodec.decode(buildBtreeBlock(0, []), 1n);
    for (let step = 0; step < 4000; step++) {
      const k = makeKey(4, BigInt(r.int(400)), 1);
      const pk = keyPack(k);
      const sorted = [...model.keys()].sort();
      const i = sorted.findIndex((x) => x >= pk);
      const at = i < 0 ? sorted.length : i;
      const val = new Uint8Array(r.int(3) === 0 ? r.int(400) : r.int(40)).fill(step & 255);
      const bytes = [...model.values()].reduce((a, it) => a + 56 + ((it.val!.length + 7) & ~7), 0);
      if (model.has(pk)) {
        if (r.int(2) === 0) {
          nodeRemove(node, at, at + 1);
          model.delete(pk);
        } else if (bytes - ((model.get(pk)!.val!.length + 7) & ~7) + ((val.length + 7) & ~7) <= 62464) {
          nodeReplace(node, at, BigInt(step), 0, val);
          model.set(pk, { key: k, seq: BigInt(step), flags: 0, val });
        }
      } else if (bytes + 56 + ((val.length + 7) & ~7) <= 62464) {
        nodeInsert(node, at, pk, BigInt(step), 0, val);
        model.set(pk, { key: k, seq: BigInt(step), flags: 0, val });
      }
      if (step % 500 === 499) {
        const want = buildBtreeBlock(0, [...model.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map((e) => e[1]));
        expect(encode(node).subarray(32)).toEqual(want.subarray(32));
        // and what was written decodes to the same node again
        node = btreeCodec.decode(want, 1n);
      }
    }
  });

  test("keys compare in the block bytes exactly as packed keys compare, over every byte value", () => {
    const r = rng(7);
    const node = nodeNew(0);
    const keys: string[] = [];
    const randKey = () => {
      // few distinct values per byte so that keys share prefixes of every length
      const c = [0, 1, 0x7f, 0x80, 0xfe, 0xff];
      let k = "";
      for (let b = 0; b < 27; b++) k += String.fromCharCode(c[r.int(c.length)]!);
      return k;
    };
    for (let n = 0; n < 900; n++) {
      const k = randKey();
      const at = nodeLowerBound(node, keyWords(k));
      const want = keys.findIndex((x) => x >= k);
      expect(at).toBe(want < 0 ? keys.length : want);
      if (keys[at] === k) continue;
      nodeInsert(node, at, k, 0n, 0, new Uint8Array(0));
      keys.splice(at, 0, k);
    }
    for (let i = 0; i < keys.length; i++) expect(nodeKeyAt(node, i)).toBe(keys[i]!);
    // and the decoder's own order check agrees
    const out = encode(node);
    expect(btreeCodec.decode(out, 1n).nr).toBe(keys.length);
  });

  test("the clean cache is bounded by bytes", () => {
    const env = makeEnv({ maxCleanBlocks: 32 });
    try {
      const root = B.emptyRoot();
      const val = new Uint8Array(800);
      for (let i = 0; i < 3000; i++) B.btreeInsert(env.w, root, keyPack(makeKey(4, BigInt(i), 1)), 1n, 0, val);
      env.cache.commit(() => {});
      env.alloc.commit();
      const cache = new MetaCache(env.dev, FSID, { maxCleanBytes: 24 * BLOCK_LG_SIZE });
      expect(B.btreeCount(cache, root)).toBe(3000);
      expect(cache.cleanBytesUsed).toBeLessThanOrEqual(24 * BLOCK_LG_SIZE);
      expect(cache.counters.evicted).toBeGreaterThan(0);
    } finally {
      env.close();
    }
  });

  test("a range iterator held across a change of its tree is ESTALE", () => {
    const env = makeEnv();
    try {
      const root = B.emptyRoot();
      const val = new Uint8Array(500);
      for (let i = 0; i < 1000; i++) B.btreeInsert(env.w, root, keyPack(makeKey(4, BigInt(i), 1)), 1n, 0, val);
      env.cache.commit(() => {});
      env.alloc.commit();
      const it = B.btreeRange(env.cache, root, keyPack(makeKey(4, 0n, 1)), keyPack(makeKey(4, 999n, 1)));
      expect(it.next().done).toBe(false);
      // copy-on-write of the leaf the iterator holds recycles its buffer
      B.btreeUpdate(env.w, root, keyPack(makeKey(4, 1n, 1)), 2n, 0, val);
      expect(() => it.next()).toThrow(/ESTALE|changed/);
    } finally {
      env.close();
    }
  });
});
