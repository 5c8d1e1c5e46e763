import { expect, test } from "bun:test";
import * as B from "../../src/btree/cow.ts";
import { fillVal, makeEnv, numKey, prng } from "./helpers.ts";
// btreeNext/btreePrev with a bound (what forest reads pass): exactly the unbounded answer when it
// lies within the bound, else null. Several leaves and two levels, bounds inside, between and
// beyond the items, and interleaved so the reused walk paths of both see every height.

test("bounded btreeNext/btreePrev agree with the unbounded reads", () => {
  const env = makeEnv();
  try {
    const rnd = prng(42);
    const big = B.emptyRoot();
    const small = B.emptyRoot();
    for (let i = 0; i < 6000; i++) {
      const n = Math.floor(rnd() * 200000);
      const k = numKey(n);
      if (B.btreeLookup(env.cache, big, k) === null) B.btreeInsert(env.w, big, k, 1n, 0, fillVal(40 + (n % 200), n));
    }
    for (let i = 0; i < 5; i++) B.btreeInsert(env.w, small, numKey(i * 40000 + 7), 1n, 0, fillVal(8, i));
    expect(big.height).toBeGreaterThan(1);
    for (let i = 0; i < 20000; i++) {
      const root = i % 3 === 0 ? small : big;
      const a = numKey(Math.floor(rnd() * 210000));
      const b = numKey(Math.floor(rnd() * 210000));
      const n = B.btreeNext(env.cache, root, a);
      const nb = B.btreeNext(env.cache, root, a, b);
      expect(nb?.key ?? null).toBe(n !== null && n.key <= b ? n.key : null);
      if (nb !== null) expect(nb.val).toEqual(n!.val);
      const p = B.btreePrev(env.cache, root, a);
      const pb = B.btreePrev(env.cache, root, a, b);
      expect(pb?.key ?? null).toBe(p !== null && p.key >= b ? p.key : null);
      if (pb !== null) expect(pb.val).toEqual(p!.val);
    }
  } finally {
    env.close();
  }
});
