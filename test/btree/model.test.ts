/**
 * Model-based test of the COW btree: random operation sequences against a sorted reference, on a
 * real sparse image. Every few hundred operations the transaction commits (dirty blocks written,
 * frees released); after each commit check.ts walks the committed tree from the device bytes,
 * its items must equal the model's and allocated = referenced + free. Some transactions are
 * aborted instead (discardDirty + allocator rollback) and the model rolls back with them; some
 * commits drop the cache so later reads decode from disk. Failures print the seed.
 */
import { describe, expect, test } from "bun:test";
import * as B from "../../src/btree/cow.ts";
import { btreeCheck } from "../../src/btree/check.ts";
import { MetaCache } from "../../src/block/cache.ts";
import { ScoutfsError } from "../../src/util/errors.ts";
import { BTREE_MAX_VAL_LEN, ITEM_FLAG_DELETION } from "../../src/format/constants.ts";
import { PACKED_KEY_MAX, PACKED_KEY_MIN, packedFormat, type PackedKey } from "../../src/format/key.ts";
import { FSID, checkNoLeak, fillVal, makeEnv, numKey, prng, type Env } from "./helpers.ts";

interface MItem {
  seq: bigint;
  flags: number;
  val: Uint8Array;
}

/** Sorted keys + map: the reference the tree is compared with. */
class Model {
  keys: PackedKey[] = [];
  map = new Map<PackedKey, MItem>();
  lb(key: PackedKey): number {
    let lo = 0, hi = this.keys.length;
    while (lo < hi) {
      const m = (lo + hi) >>> 1;
      if (this.keys[m]! < key) lo = m + 1;
      else hi = m;
    }
    return lo;
  }
  set(key: PackedKey, it: MItem): void {
    if (!this.map.has(key)) this.keys.splice(this.lb(key), 0, key);
    this.map.set(key, it);
  }
  del(key: PackedKey): void {
    this.map.delete(key);
    this.keys.splice(this.lb(key), 1);
  }
  clone(): Model {
    const m = new Model();
    m.keys = this.keys.slice();
    m.map = new Map(this.map);
    return m;
  }
}

function sameItem(got: B.BtreeItemView | null, key: PackedKey | null, m: Model, ctx: string): void {
  if (key === null) {
    if (got !== null) throw new Error(`${ctx}: expected nothing, got ${packedFormat(got.key)}`);
    return;
  }
  if (got === null) throw new Error(`${ctx}: expected ${packedFormat(key)}, got nothing`);
  if (got.key !== key) throw new Error(`${ctx}: expected ${packedFormat(key)}, got ${packedFormat(got.key)}`);
  const want = m.map.get(key)!;
  if (got.seq !== want.seq || got.flags !== want.flags || Buffer.compare(got.val, want.val) !== 0) {
    throw new Error(`${ctx}: item ${packedFormat(key)} differs`);
  }
}

function expectErr(fn: () => void, code: string, ctx: string): void {
  try {
    fn();
  } catch (e) {
    if (e instanceof ScoutfsError && e.code === code) return;
    throw e;
  }
  throw new Error(`${ctx}: expected ${code}`);
}

interface RunStats {
  ops: number;
  commits: number;
  maxHeight: number;
}

/** One seeded run: `ops` operations on a key space of `space` keys. */
function runSeed(seed: number, ops: number, space: number, stats: RunStats): void {
  const rnd = prng(seed);
  const ri = (n: number) => Math.floor(rnd() * n);
  let env: Env = makeEnv({ seed, maxCleanBlocks: 16 + ri(200) });
  let model = new Model();
  let committed = model.clone();
  const root = B.emptyRoot();
  let committedRoot = B.rootToStruct(root);
  let seq = 1n;
  let growing = true;
  let untilPhase = 500 + ri(3000);
  let untilCommit = 50 + ri(400);
  // long runs: a direction and a cursor, for bursts of sequential inserts or deletes
  let run: { kind: "ins" | "del"; next: number; step: number; left: number } | null = null;

  const valLen = (): number => {
    const r = rnd();
    if (r < 0.1) return 0;
    if (r < 0.25) return BTREE_MAX_VAL_LEN;
    if (r < 0.7) return 1 + ri(100);
    return ri(BTREE_MAX_VAL_LEN + 1);
  };
  const commit = () => {
    env.cache.commit(() => {});
    env.alloc.commit();
    committed = model.clone();
    committedRoot = B.rootToStruct(root);
    stats.commits++;
    const res = btreeCheck(env.dev, FSID, root);
    if (res.items.length !== model.keys.length) throw new Error(`check: ${res.items.length} items, model ${model.keys.length}`);
    for (let i = 0; i < res.items.length; i++) {
      const it = res.items[i]!;
      if (it.key !== model.keys[i]) throw new Error(`check: item ${i} is ${packedFormat(it.key)}, model ${packedFormat(model.keys[i]!)}`);
      const want = model.map.get(it.key)!;
      if (it.seq !== want.seq || it.flags !== want.flags || Buffer.compare(it.val, want.val) !== 0) throw new Error(`check: item ${i} contents differ`);
    }
    checkNoLeak(env.alloc, res.blknos);
    stats.maxHeight = Math.max(stats.maxHeight, root.height);
    // sometimes start over with a cold cache so reads decode what was written
    if (rnd() < 0.2) {
      env.cache = new MetaCache(env.dev, FSID, { maxCleanBlocks: 16 + ri(200) });
      env.w.cache = env.cache;
    }
  };
  const abort = () => {
    env.cache.discardDirty();
    env.alloc.abort();
    model = committed.clone();
    const r = B.rootFromStruct(committedRoot);
    root.ref = r.ref;
    root.height = r.height;
  };

  try {
    for (let op = 0; op < ops; op++) {
      stats.ops++;
      if (--untilCommit <= 0) {
        if (rnd() < 0.1) abort();
        else commit();
        untilCommit = 50 + ri(400);
      }
      if (run === null && rnd() < 0.004) {
        run = { kind: rnd() < 0.5 ? "ins" : "del", next: ri(space), step: rnd() < 0.5 ? 1 : -1, left: 200 + ri(2000) };
      }
      if (run !== null) {
        const k = numKey(((run.next % space) + space) % space);
        run.next += run.step;
        if (--run.left <= 0) run = null;
        if (run?.kind === "del" || (run === null && rnd() < 0.5)) {
          if (model.map.has(k)) {
            B.btreeDelete(env.w, root, k);
            model.del(k);
          }
        } else if (!model.map.has(k)) {
          const v = fillVal(valLen(), op);
          B.btreeInsert(env.w, root, k, seq, 0, v);
          model.set(k, { seq: seq++, flags: 0, val: v });
        }
        continue;
      }
      // alternate insert-heavy and delete-heavy phases so trees grow, split, shrink and join
      if (--untilPhase <= 0) {
        growing = !growing;
        untilPhase = 500 + ri(3000);
      }
      const key = numKey(ri(space));
      let r = rnd();
      if (r < 0.5) r = growing ? r * 0.6 : 0.3 + r * 0.4; // inserts [0,.3) or deletes [.3,.5)
      if (r < 0.3) {
        const v = fillVal(valLen(), op);
        const flags = rnd() < 0.2 ? ITEM_FLAG_DELETION : 0;
        if (model.map.has(key)) expectErr(() => B.btreeInsert(env.w, root, key, seq, flags, v), "EEXIST", "insert");
        else {
          B.btreeInsert(env.w, root, key, seq, flags, v);
          model.set(key, { seq: seq++, flags, val: v });
        }
      } else if (r < 0.5) {
        if (model.map.has(key)) {
          B.btreeDelete(env.w, root, key);
          model.del(key);
        } else expectErr(() => B.btreeDelete(env.w, root, key), "ENOENT", "delete");
      } else if (r < 0.58) {
        const v = fillVal(valLen(), op);
        if (model.map.has(key)) {
          B.btreeUpdate(env.w, root, key, seq, 0, v);
          model.set(key, { seq: seq++, flags: 0, val: v });
        } else expectErr(() => B.btreeUpdate(env.w, root, key, seq, 0, v), "ENOENT", "update");
      } else if (r < 0.66) {
        const v = fillVal(valLen(), op);
        B.btreeForce(env.w, root, key, seq, 1, v);
        model.set(key, { seq: seq++, flags: 1, val: v });
      } else if (r < 0.67) {
        expectErr(() => B.btreeForce(env.w, root, key, seq, 0, new Uint8Array(BTREE_MAX_VAL_LEN + 1)), "EINVAL", "big value");
      } else if (r < 0.77) {
        sameItem(B.btreeLookup(env.cache, root, key), model.map.has(key) ? key : null, model, "lookup");
      } else if (r < 0.85) {
        const i = model.lb(key);
        sameItem(B.btreeNext(env.cache, root, key), i < model.keys.length ? model.keys[i]! : null, model, "next");
      } else if (r < 0.93) {
        let i = model.lb(key);
        if (!(i < model.keys.length && model.keys[i] === key)) i--;
        sameItem(B.btreePrev(env.cache, root, key), i >= 0 ? model.keys[i]! : null, model, "prev");
      } else {
        const end = numKey(ri(space));
        const [a, b] = key <= end ? [key, end] : [end, key];
        const got: PackedKey[] = [];
        if (rnd() < 0.5) {
          for (const it of B.btreeRange(env.cache, root, a, b)) got.push(it.key);
        } else {
          B.btreeScan(env.cache, root, a, b, (it) => {
            got.push(it.key);
          });
        }
        const want = model.keys.slice(model.lb(a), model.lb(b) + (model.map.has(b) ? 1 : 0));
        if (got.length !== want.length || got.some((k, i) => k !== want[i])) {
          throw new Error(`range: got ${got.length} keys, want ${want.length}`);
        }
      }
    }
    // whole-tree reads at the ends of the key space
    sameItem(B.btreeNext(env.cache, root, PACKED_KEY_MIN), model.keys[0] ?? null, model, "first");
    sameItem(B.btreePrev(env.cache, root, PACKED_KEY_MAX), model.keys[model.keys.length - 1] ?? null, model, "last");
    expect(B.btreeCount(env.cache, root)).toBe(model.keys.length);
    commit();
  } catch (e) {
    console.error(`btree model test failed: seed ${seed} (space ${space}, ops ${ops})`);
    throw e;
  } finally {
    env.close();
  }
}

describe("btree model", () => {
  test("random operation sequences match a sorted reference across commits", () => {
    const stats: RunStats = { ops: 0, commits: 0, maxHeight: 0 };
    const base = Number(process.env.BTREE_SEED ?? 1);
    const seeds = Number(process.env.BTREE_SEEDS ?? 40);
    for (let s = 0; s < seeds; s++) {
      const seed = base + s;
      const space = [300, 2000, 8000, 30000][s % 4]!;
      runSeed(seed, 8000, space, stats);
    }
    console.log(`btree model: ${stats.ops} ops, ${stats.commits} commits, max height ${stats.maxHeight}`, B.btreeCounters);
    expect(stats.ops).toBeGreaterThanOrEqual(100_000);
  }, 120_000);
});
