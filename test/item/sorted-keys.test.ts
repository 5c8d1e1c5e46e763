import { expect, test } from "bun:test";
import { SortedKeys } from "../../src/item/cache.ts";
// The item cache's chunked sorted key set against a plain sorted array: inserts, removals,
// ceil/floor at present and absent keys, across many chunk splits and chunk removals.

test("SortedKeys matches a sorted array through random inserts and removals", () => {
  let seed = 12345;
  const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) >>> 0), seed % n);
  const key = (n: number) => String.fromCharCode(16, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
  const s = new SortedKeys();
  const ref: string[] = [];
  const lb = (k: string) => {
    let i = 0;
    while (i < ref.length && ref[i]! < k) i++;
    return i;
  };
  for (let step = 0; step < 12000; step++) {
    const k = key(rnd(4000));
    const i = lb(k);
    const present = ref[i] === k;
    // grow for a while, then shrink, so chunks split and empty out
    const grow = step < 7000 ? rnd(4) !== 0 : rnd(4) === 0;
    if (grow && !present) {
      s.insert(k);
      ref.splice(i, 0, k);
    } else if (!grow) {
      expect(s.remove(k)).toBe(present);
      if (present) ref.splice(i, 1);
    }
    expect(s.size).toBe(ref.length);
    if (step % 97 === 0) expect(s.all()).toEqual(ref);
    const q = key(rnd(4100));
    const j = lb(q);
    expect(s.ceil(q)).toBe(j < ref.length ? ref[j]! : null);
    const f = ref[j] === q ? q : j > 0 ? ref[j - 1]! : null;
    expect(s.floor(q)).toBe(f);
  }
  expect(s.all()).toEqual(ref);
  s.reset(["c", "a", "b"]);
  expect(s.all()).toEqual(["a", "b", "c"]);
  expect(s.floor("bb")).toBe("b");
  expect(s.ceil("bb")).toBe("c");
  s.reset([]);
  expect(s.size).toBe(0);
  expect(s.ceil("a")).toBe(null);
  expect(s.floor("z")).toBe(null);
});
