// ItemCache: dirty items over a source, rollback, and fresh keys (created over nothing and
// deleted again before a commit leave nothing to write).
import { describe, expect, test } from "bun:test";
import { ItemCache, type ItemSource } from "../../src/item/cache.ts";
import { keyPack, type PackedKey } from "../../src/format/key.ts";
import type { ItemRef } from "../../src/item/types.ts";

function k(n: number): PackedKey {
  return keyPack({ zone: 1, first: BigInt(n), type: 1, second: 0n, third: 0n, fourth: 0 });
}

/** A sorted map as the persistent source. */
function source(init: Record<number, number>): ItemSource & { m: Map<PackedKey, Uint8Array> } {
  const m = new Map<PackedKey, Uint8Array>();
  for (const [n, v] of Object.entries(init)) m.set(k(Number(n)), Uint8Array.of(v));
  const sorted = () => [...m.keys()].sort();
  return {
    m,
    lookup: (key) => m.get(key) ?? null,
    next: (key, last): ItemRef | null => {
      const f = sorted().find((x) => x >= key && x <= last);
      return f === undefined ? null : { key: f, val: m.get(f)! };
    },
    prev: (key, first): ItemRef | null => {
      const f = sorted().reverse().find((x) => x <= key && x >= first);
      return f === undefined ? null : { key: f, val: m.get(f)! };
    },
  };
}

const dirty = (c: ItemCache) => c.dirtyItems().map((d) => [d.key, d.val === null ? null : d.val[0]]);

describe("ItemCache fresh keys", () => {
  test("a key created over nothing and deleted again leaves nothing dirty", () => {
    const c = new ItemCache(source({}));
    c.transact((w) => w.create(k(1), Uint8Array.of(1)));
    c.transact((w) => w.update(k(1), Uint8Array.of(2)));
    c.transact((w) => w.delete(k(1)));
    expect(c.dirtyCount).toBe(0);
    expect(c.dirtyBytes).toBe(0);
    expect(c.lookup(k(1))).toBeNull();
    // and it can be created again, still fresh
    c.transact((w) => w.create(k(1), Uint8Array.of(3)));
    c.transact((w) => w.delete(k(1)));
    expect(c.dirtyItems()).toEqual([]);
  });

  test("deleting a key the source holds records a deletion, also after re-creating it", () => {
    const c = new ItemCache(source({ 2: 9 }));
    c.transact((w) => w.delete(k(2)));
    expect(dirty(c)).toEqual([[k(2), null]]);
    c.transact((w) => w.create(k(2), Uint8Array.of(5)));
    c.transact((w) => w.delete(k(2)));
    expect(dirty(c)).toEqual([[k(2), null]]);
    expect(c.lookup(k(2))).toBeNull();
    expect(c.next(k(0), k(9))).toBeNull();
  });

  test("put on a key not dirty is not known to be fresh", () => {
    const c = new ItemCache(source({}));
    c.transact((w) => w.put(k(3), Uint8Array.of(1)));
    c.transact((w) => w.delete(k(3)));
    expect(dirty(c)).toEqual([[k(3), null]]);
  });

  test("rolling back the deletion of a fresh key brings it back, fresh", () => {
    const c = new ItemCache(source({ 5: 5 }));
    c.transact((w) => w.create(k(4), Uint8Array.of(4)));
    expect(() =>
      c.transact((w) => {
        w.delete(k(4));
        w.delete(k(5));
        throw new Error("fail");
      }),
    ).toThrow("fail");
    expect(dirty(c)).toEqual([[k(4), 4]]);
    expect(c.lookup(k(5))![0]).toBe(5);
    expect(c.next(k(0), k(9))!.key).toBe(k(4));
    c.transact((w) => w.delete(k(4)));
    expect(c.dirtyItems()).toEqual([]);
  });

  test("rolling back a create over nothing forgets the key; nested rollback keeps the outer part", () => {
    const c = new ItemCache(source({}));
    c.transact((w) => {
      w.create(k(6), Uint8Array.of(6));
      expect(() =>
        c.transact((w2) => {
          w2.delete(k(6));
          w2.create(k(7), Uint8Array.of(7));
          throw new Error("inner");
        }),
      ).toThrow("inner");
    });
    expect(dirty(c)).toEqual([[k(6), 6]]);
    expect(() => c.transact((w) => (w.create(k(8), Uint8Array.of(8)), w.delete(k(6)), w.create(k(6), Uint8Array.of(1)), (() => { throw new Error("x"); })()))).toThrow("x");
    expect(dirty(c)).toEqual([[k(6), 6]]);
    expect(c.dirtyBytes).toBeGreaterThan(0);
    c.transact((w) => w.delete(k(6)));
    expect(c.dirtyCount).toBe(0);
    expect(c.dirtyBytes).toBe(0);
  });

  test("next and prev skip forgotten and deleted keys", () => {
    const c = new ItemCache(source({ 1: 1, 3: 3 }));
    c.transact((w) => {
      w.create(k(2), Uint8Array.of(2));
      w.delete(k(2));
      w.delete(k(1));
    });
    expect(c.next(k(0), k(9))!.key).toBe(k(3));
    expect(c.prev(k(9), k(0))!.key).toBe(k(3));
    expect(c.prev(k(2), k(0))).toBeNull();
  });
});
