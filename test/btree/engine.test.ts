/**
 * Targeted btree tests: a tree of height 3 built and torn down, ENOSPC at every allocation of
 * splits/joins/COW leaving the committed tree intact, the height limit, argument errors, stale
 * roots and corrupted committed blocks (ESTALE/EIO, never a crash or a hang).
 */
import { describe, expect, test } from "bun:test";
import * as B from "../../src/btree/cow.ts";
import { btreeCheck } from "../../src/btree/check.ts";
import { btreeCodec } from "../../src/btree/node.ts";
import { MetaCache } from "../../src/block/cache.ts";
import { Device, sealBlock } from "../../src/block/device.ts";
import { ScoutfsError } from "../../src/util/errors.ts";
import { BLOCK_LG_SHIFT, BLOCK_MAGIC_BTREE, BTREE_MAX_VAL_LEN } from "../../src/format/constants.ts";
import { FSID, checkNoLeak, fillVal, makeEnv, numKey, prng } from "./helpers.ts";

function commit(env: ReturnType<typeof makeEnv>): void {
  env.cache.commit(() => {});
  env.alloc.commit();
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof ScoutfsError) return e.code;
    throw e;
  }
  return "ok";
}

describe("btree engine", () => {
  test("grows to height 3 with max-size values and shrinks back to empty", () => {
    const env = makeEnv();
    try {
      const root = B.emptyRoot();
      const rnd = prng(7);
      const N = 36000;
      // ascending runs with gaps, then fill the gaps: appends and mid-tree splits
      for (let i = 0; i < N; i += 2) {
        B.btreeInsert(env.w, root, numKey(i), BigInt(i), 0, fillVal(BTREE_MAX_VAL_LEN, i));
        if (i % 8000 === 0) commit(env);
      }
      for (let i = 1; i < N; i += 2) B.btreeInsert(env.w, root, numKey(i), BigInt(i), 0, fillVal(BTREE_MAX_VAL_LEN, i));
      commit(env);
      expect(root.height).toBe(3);
      let res = btreeCheck(env.dev, FSID, root);
      expect(res.items.length).toBe(N);
      checkNoLeak(env.alloc, res.blknos);

      // delete everything in random order with checks along the way
      const order = Array.from({ length: N }, (_, i) => i);
      for (let i = N - 1; i > 0; i--) {
        const j = Math.floor(rnd() * (i + 1));
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      let left = N;
      for (let n = 0; n < N; n++) {
        B.btreeDelete(env.w, root, numKey(order[n]!));
        left--;
        if (n % 6000 === 5999) {
          commit(env);
          res = btreeCheck(env.dev, FSID, root);
          expect(res.items.length).toBe(left);
          checkNoLeak(env.alloc, res.blknos);
        }
      }
      commit(env);
      expect(root.height).toBe(0);
      checkNoLeak(env.alloc, new Set());
    } finally {
      env.close();
    }
  }, 60_000);

  test("ENOSPC at any allocation leaves the committed tree intact, and the dirty tree usable", () => {
    const env = makeEnv();
    try {
      const root = B.emptyRoot();
      const keys: number[] = [];
      for (let i = 0; i < 3000; i++) {
        B.btreeInsert(env.w, root, numKey(i * 3), 1n, 0, fillVal(400, i));
        keys.push(i * 3);
      }
      commit(env);
      const committed = B.rootToStruct(root);
      const before = btreeCheck(env.dev, FSID, root);
      let failures = 0;
      for (let k = 0; k < 12; k++) {
        for (const op of ["insert", "delete"] as const) {
          const rnd = prng(100 + k);
          env.alloc.failAfter = k;
          let done = 0;
          let hitEnospc = false;
          const applied = new Set<number>();
          try {
            for (let n = 0; n < 4000; n++) {
              const i = Math.floor(rnd() * 9000);
              if (op === "insert" && i % 3 !== 0 && !applied.has(i)) {
                B.btreeInsert(env.w, root, numKey(i), 2n, 0, fillVal(BTREE_MAX_VAL_LEN, i));
                applied.add(i);
              } else if (op === "delete" && i % 3 === 0 && !applied.has(i)) {
                B.btreeDelete(env.w, root, numKey(i));
                applied.add(i);
              }
              done++;
            }
          } catch (e) {
            expect(e).toBeInstanceOf(ScoutfsError);
            expect((e as ScoutfsError).code).toBe("ENOSPC");
            hitEnospc = true;
            failures++;
          }
          env.alloc.failAfter = null;
          expect(hitEnospc).toBe(true);
          // the failed operation had no effect: the dirty tree holds exactly the applied ones
          const want = new Set(keys);
          for (const i of applied) op === "insert" ? want.add(i) : want.delete(i);
          expect(B.btreeCount(env.cache, root)).toBe(want.size);
          for (const i of applied) expect(B.btreeLookup(env.cache, root, numKey(i)) !== null).toBe(op === "insert");
          expect(done).toBeGreaterThanOrEqual(0);
          // abort: the committed tree, read back through a fresh device and cache, is unchanged
          env.cache.discardDirty();
          env.alloc.abort();
          const r = B.rootFromStruct(committed);
          root.ref = r.ref;
          root.height = r.height;
          const dev2 = Device.open(env.metaPath);
          try {
            const after = btreeCheck(dev2, FSID, root);
            expect(after.items.length).toBe(before.items.length);
            expect([...after.blknos].sort()).toEqual([...before.blknos].sort());
            expect(B.btreeCount(new MetaCache(dev2, FSID), root)).toBe(3000);
          } finally {
            dev2.close();
          }
          checkNoLeak(env.alloc, before.blknos);
        }
      }
      expect(failures).toBe(24);

      // continuing after ENOSPC (without aborting) and committing gives a valid tree
      env.alloc.failAfter = 1;
      let applied = 0;
      expect(
        codeOf(() => {
          for (let i = 0; i < 3000; i++) {
            B.btreeForce(env.w, root, numKey(i * 3 + 1), 3n, 0, fillVal(BTREE_MAX_VAL_LEN, i));
            applied++;
          }
        }),
      ).toBe("ENOSPC");
      env.alloc.failAfter = null;
      commit(env);
      const res = btreeCheck(env.dev, FSID, root);
      expect(res.items.length).toBe(3000 + applied);
      checkNoLeak(env.alloc, res.blknos);
    } finally {
      env.close();
    }
  }, 30_000);

  test("the height limit is ENOSPC and leaves the tree valid", () => {
    const env = makeEnv();
    const saved = B.btreeLimits.maxHeight;
    try {
      B.btreeLimits.maxHeight = 2;
      const root = B.emptyRoot();
      let n = 0;
      expect(
        codeOf(() => {
          for (; n < 200000; n++) B.btreeInsert(env.w, root, numKey(n), 1n, 0, fillVal(BTREE_MAX_VAL_LEN, n));
        }),
      ).toBe("ENOSPC");
      expect(root.height).toBe(2);
      commit(env);
      const res = btreeCheck(env.dev, FSID, root);
      expect(res.items.length).toBe(n);
      checkNoLeak(env.alloc, res.blknos);
    } finally {
      B.btreeLimits.maxHeight = saved;
      env.close();
    }
  }, 30_000);

  test("argument errors", () => {
    const env = makeEnv();
    try {
      const root = B.emptyRoot();
      const k = numKey(1);
      expect(codeOf(() => B.btreeInsert(env.w, root, k, 1n, 0, new Uint8Array(BTREE_MAX_VAL_LEN + 1)))).toBe("EINVAL");
      expect(codeOf(() => B.btreeInsert(env.w, root, "short", 1n, 0, new Uint8Array(0)))).toBe("EINVAL");
      expect(codeOf(() => B.btreeUpdate(env.w, root, k, 1n, 0, new Uint8Array(1)))).toBe("ENOENT");
      expect(codeOf(() => B.btreeDelete(env.w, root, k))).toBe("ENOENT");
      expect(root.height).toBe(0);
      B.btreeInsert(env.w, root, k, 1n, 0, new Uint8Array(BTREE_MAX_VAL_LEN));
      expect(codeOf(() => B.btreeInsert(env.w, root, k, 1n, 0, new Uint8Array(1)))).toBe("EEXIST");
      const v = new Uint8Array([1, 2, 3]);
      B.btreeUpdate(env.w, root, k, 5n, 1, v);
      v[0] = 9; // the tree keeps its own copy
      expect([...B.btreeLookup(env.cache, root, k)!.val]).toEqual([1, 2, 3]);
      expect(B.btreeLookup(env.cache, root, k)!.seq).toBe(5n);
      B.btreeDelete(env.w, root, k);
      expect(root).toEqual(B.emptyRoot());
      expect(B.btreeNext(env.cache, root, k)).toBeNull();
    } finally {
      env.close();
    }
  });

  test("a root with the wrong seq reads as ESTALE", () => {
    const env = makeEnv();
    try {
      const root = B.emptyRoot();
      for (let i = 0; i < 2000; i++) B.btreeInsert(env.w, root, numKey(i), 1n, 0, fillVal(100, i));
      commit(env);
      const cold = new MetaCache(env.dev, FSID);
      const wrong = { ref: { blkno: root.ref.blkno, seq: root.ref.seq + 1n }, height: root.height };
      expect(codeOf(() => B.btreeLookup(cold, wrong, numKey(5)))).toBe("ESTALE");
      expect(codeOf(() => B.btreeLookup(new MetaCache(env.dev, FSID), { ...root, height: root.height + 1 }, numKey(5)))).toBe("EIO");
    } finally {
      env.close();
    }
  });

  test("corrupted committed blocks give ESTALE or EIO, never a crash or a hang", () => {
    const env = makeEnv();
    try {
      const root = B.emptyRoot();
      for (let i = 0; i < 4000; i++) B.btreeInsert(env.w, root, numKey(i), BigInt(i), 0, fillVal(i % 200, i));
      commit(env);
      expect(root.height).toBe(2);
      const res = btreeCheck(env.dev, FSID, root);
      const blknos = [...res.blknos];
      const rnd = prng(99);
      const codes = new Map<string, number>();
      for (let iter = 0; iter < 400; iter++) {
        const blkno = blknos[Math.floor(rnd() * blknos.length)]!;
        const orig = env.dev.read(blkno, BLOCK_LG_SHIFT);
        const buf = orig.slice();
        const flips = 1 + Math.floor(rnd() * 8);
        for (let f = 0; f < flips; f++) {
          // mostly the structured front of the block (header fields, items), sometimes anywhere
          const at = rnd() < 0.8 ? 32 + Math.floor(rnd() * 2000) : 32 + Math.floor(rnd() * (buf.length - 32));
          buf[at] = rnd() < 0.5 ? Math.floor(rnd() * 256) : buf[at]! ^ (1 << Math.floor(rnd() * 8));
        }
        const hdr = new DataView(buf.buffer);
        const reseal = rnd() < 0.7; // a valid crc makes the decoder face the garbage
        if (reseal) sealBlock(buf, BLOCK_MAGIC_BTREE, FSID, hdr.getBigUint64(16, true), blkno);
        env.dev.write(blkno, BLOCK_LG_SHIFT, buf);
        const cache = new MetaCache(env.dev, FSID);
        for (const op of ["lookup", "next", "prev", "scan", "count"]) {
          const k = numKey(Math.floor(rnd() * 4000));
          const code = codeOf(() => {
            if (op === "lookup") B.btreeLookup(cache, root, k);
            else if (op === "next") B.btreeNext(cache, root, k);
            else if (op === "prev") B.btreePrev(cache, root, k);
            else if (op === "scan") B.btreeScan(cache, root, k, numKey(4000), () => {});
            else B.btreeCount(cache, root);
          });
          expect(["ok", "ESTALE", "EIO"]).toContain(code);
          codes.set(code, (codes.get(code) ?? 0) + 1);
        }
        // a write through the corrupted tree fails the same way, before changing anything
        const wcode = codeOf(() => B.btreeForce({ cache, alloc: env.alloc }, root, numKey(Math.floor(rnd() * 4000)), 1n, 0, new Uint8Array(8)));
        expect(["ok", "ESTALE", "EIO"]).toContain(wcode);
        cache.discardDirty();
        env.alloc.abort();
        // the checker, reading the same bytes, either passes or reports EIO (never crashes)
        const chk = codeOf(() => btreeCheck(env.dev, FSID, root));
        expect(["ok", "EIO"]).toContain(chk);
        env.dev.write(blkno, BLOCK_LG_SHIFT, orig);
      }
      expect(codes.get("ESTALE") ?? 0).toBeGreaterThan(0);
      expect(codes.get("EIO") ?? 0).toBeGreaterThan(0);
      // and the decoder alone, on random garbage with a valid header
      for (let iter = 0; iter < 300; iter++) {
        const buf = new Uint8Array(65536);
        for (let i = 32; i < 4096; i++) buf[i] = Math.floor(rnd() * 256);
        buf[40] = Math.floor(rnd() * 3);
        expect(["ok", "EIO"]).toContain(codeOf(() => btreeCodec.decode(buf, 42n)));
      }
    } finally {
      env.close();
    }
  }, 30_000);
});
