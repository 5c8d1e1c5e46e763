// The free-extent allocator on the data_alloc root of a real volume made by our mkfs, with its
// metadata from the server's alloc list, against a model of free blocks: random frees (merging
// with neighbours), removals, largest / best-fit / streaming data allocations, and double frees,
// committed in transactions and re-read from the device after every commit: both indexes hold
// exactly the model's merged extents and total_len matches.
import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { Device } from "../../src/block/device.ts";
import { MetaCache } from "../../src/block/cache.ts";
import { readSuper, writeSuper } from "../../src/block/super.ts";
import { ListAlloc } from "../../src/alloc/list.ts";
import { ExtentAlloc, blknoKey, coalesceExtents, extentFromKey, orderKey, type Extent } from "../../src/alloc/extents.ts";
import { btreeExtentOps } from "../../src/alloc/btree-ops.ts";
import { mkfs, parseQuorumSlot } from "../../src/offline/mkfs.ts";
import * as C from "../../src/format/constants.ts";
import { keyPack } from "../../src/format/key.ts";
import { ScoutfsError } from "../../src/util/errors.ts";
import { sparseFile, tempDir } from "../helpers/images.ts";
import { rng } from "../helpers/rng.ts";

const dir = tempDir();
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));


/** Free blocks as a sorted list of merged intervals. */
class Model {
  free: Extent[] = [];
  /** Index of the first interval ending at or after `b`. */
  private find(b: bigint): number {
    let lo = 0, hi = this.free.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const e = this.free[mid]!;
      if (e.start + e.len - 1n < b) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
  add(start: bigint, len: bigint): void {
    const end = start + len;
    let i = this.find(start > 0n ? start - 1n : 0n);
    const e = this.free[i];
    if (e && e.start < end && e.start + e.len > start) throw new Error(`model double free of ${start},${len}`);
    let s = start, l = len;
    if (e && e.start + e.len === start) {
      s = e.start;
      l += e.len;
      this.free.splice(i, 1);
    }
    const n = this.free[i];
    if (n && n.start < end) throw new Error(`model double free of ${start},${len}`);
    if (n && n.start === end) {
      l += n.len;
      this.free.splice(i, 1);
    }
    this.free.splice(i, 0, { start: s, len: l });
  }
  take(start: bigint, len: bigint): void {
    const i = this.find(start);
    const e = this.free[i];
    if (!e || e.start > start || e.start + e.len < start + len) throw new Error(`model: ${start},${len} is not free`);
    const rest: Extent[] = [];
    if (e.start < start) rest.push({ start: e.start, len: start - e.start });
    if (e.start + e.len > start + len) rest.push({ start: start + len, len: e.start + e.len - start - len });
    this.free.splice(i, 1, ...rest);
  }
  total(): bigint {
    return this.free.reduce((n, e) => n + e.len, 0n);
  }
}

/** Every extent in the order index, sorted by start, for comparison with the blkno index. */
function orderIndex(cache: MetaCache, a: ExtentAlloc): Extent[] {
  const out: Extent[] = [];
  let key = keyPack({ zone: C.FREE_EXTENT_ORDER_ZONE, first: 0n, type: 0, second: 0n, third: 0n, fourth: 0 });
  for (;;) {
    const it = btreeExtentOps.next(cache, a.root.root, key);
    if (!it) break;
    const e = extentFromKey(it.key, C.FREE_EXTENT_ORDER_ZONE);
    if (!e) break;
    out.push(e);
    key = it.key.slice(0, -1) + String.fromCharCode(it.key.charCodeAt(it.key.length - 1) + 1);
  }
  return out.sort((x, y) => (x.start < y.start ? -1 : 1));
}

/** A new volume's data_alloc over its super, with a server-list writer for its btree blocks. */
function dataAllocOfNewVolume(name: string) {
  const metaPath = sparseFile(path.join(dir, `${name}.meta`), 80 << 20);
  const dataPath = sparseFile(path.join(dir, `${name}.data`), 64 << 20);
  mkfs({ metaPath, dataPath, allowSmallSize: true, slots: [parseQuorumSlot("0,127.0.0.1,42000")] }, { out: () => {}, warn: () => {} });
  const dev = Device.open(metaPath, { write: true });
  const sup = readSuper(dev, { meta: true });
  const cache = new MetaCache(dev, sup.hdr.fsid);
  const w = { cache, alloc: new ListAlloc(cache, sup.server_meta_avail[0]!, sup.server_meta_freed[0]!) };
  const bounds = { first: BigInt(C.DATA_DEV_START_BLKNO), last: sup.total_data_blocks - 1n };
  const a = new ExtentAlloc(sup.data_alloc, btreeExtentOps, bounds);
  return { dev, sup, cache, w, bounds, a };
}

describe("free extent allocator", () => {
  for (const seed of [11, 12, 13]) {
    test(`random frees and allocations match a model across commits (seed ${seed})`, () => {
      const r = rng(seed);
      const metaPath = sparseFile(path.join(dir, `ext-${seed}.meta`), 80 << 20);
      const dataPath = sparseFile(path.join(dir, `ext-${seed}.data`), 256 << 20);
      mkfs({ metaPath, dataPath, allowSmallSize: true, slots: [parseQuorumSlot("0,127.0.0.1,42000")] }, { out: () => {}, warn: () => {} });
      let dev = Device.open(metaPath, { write: true });
      let sup = readSuper(dev, { meta: true });
      let cache = new MetaCache(dev, sup.hdr.fsid);
      const bounds = { first: BigInt(C.DATA_DEV_START_BLKNO), last: sup.total_data_blocks - 1n };
      const model = new Model();
      for (const e of new ExtentAlloc(sup.data_alloc, btreeExtentOps, bounds).extents(cache)) model.add(e.start, e.len);
      expect(model.total()).toBe(sup.data_alloc.total_len);
      const owned: Extent[] = []; // allocated by "files"
      try {
        for (let t = 0; t < 25; t++) {
          const lists = new ListAlloc(cache, sup.server_meta_avail[0]!, sup.server_meta_freed[0]!);
          const w = { cache, alloc: lists };
          const a = new ExtentAlloc(sup.data_alloc, btreeExtentOps, bounds);
          if (t === 0) {
            // own the whole device in small pieces first, so the frees below fragment free space
            // into thousands of extents (multi-level trees, splits, joins as they merge again)
            for (;;) {
              const got = a.allocLargest(w, 1n + BigInt(r(8)));
              if (!got) break;
              model.take(got.start, got.len);
              owned.push(got);
            }
            expect(model.total()).toBe(0n);
          }
          for (let k = 0, n = 100 + r(400); k < n; k++) {
            // mostly small frees, so free space fragments into thousands of extents
            const op = r(20) < 13 ? 0 : 3 + r(7);
            if (op < 3 && owned.length > 0) {
              // free a small piece from anywhere in an owned extent: fragments the free space
              const i = r(owned.length);
              const o = owned[i]!;
              const off = BigInt(r(Number(o.len)));
              const len = 1n + BigInt(r(Math.min(4, Number(o.len - off))));
              a.insert(w, o.start + off, len);
              model.add(o.start + off, len);
              const rest: Extent[] = [];
              if (off > 0n) rest.push({ start: o.start, len: off });
              if (off + len < o.len) rest.push({ start: o.start + off + len, len: o.len - off - len });
              owned.splice(i, 1, ...rest);
            } else if (op < 4 && model.free.length > 0) {
              // freeing a block that is already free is refused and changes nothing
              const f = model.free[r(model.free.length)]!;
              expect(() => a.insert(w, f.start, 1n)).toThrow(ScoutfsError);
            } else if (op < 6) {
              const got = r(2) ? a.allocLargest(w, 1n + BigInt(r(r(10) === 0 ? 3000 : 6))) : a.allocBestFit(w, 1n + BigInt(r(r(10) === 0 ? 3000 : 6)));
              if (got === null) expect(model.total()).toBe(0n);
              else {
                model.take(got.start, got.len);
                owned.push(got);
              }
            } else if (op < 8) {
              // a refill (only when the stream is empty) takes a whole extent out of the tree
              const wasEmpty = a.cached.len === 0n;
              const got = a.allocData(w, 1n + BigInt(r(16)));
              if (got === null) expect(model.total() + a.cached.len).toBe(0n);
              else {
                if (wasEmpty) model.take(got.start, got.len + a.cached.len);
                owned.push(got);
              }
            } else if (model.free.length > 0) {
              const f = model.free[r(model.free.length)]!;
              const off = BigInt(r(Number(f.len)));
              const len = 1n + BigInt(r(Number(f.len - off)));
              a.remove(w, f.start + off, len);
              model.take(f.start + off, len);
              owned.push({ start: f.start + off, len });
            }
          }
          const stream = { ...a.cached };
          a.returnCached(w);
          if (stream.len > 0n) model.add(stream.start, stream.len);
          cache.commit(() => writeSuper(dev, sup));
          lists.committed();
          dev.close();
          dev = Device.open(metaPath, { write: true });
          sup = readSuper(dev, { meta: true });
          cache = new MetaCache(dev, sup.hdr.fsid);
          const again = new ExtentAlloc(sup.data_alloc, btreeExtentOps, bounds);
          const got = again.extents(cache);
          expect(got).toEqual(model.free);
          expect(orderIndex(cache, again)).toEqual(model.free);
          expect(sup.data_alloc.total_len).toBe(model.total());
          if (process.env.EXT_DEBUG) console.log(t, got.length, sup.data_alloc.root.height);
        }
      } catch (err) {
        console.error(`extent allocator model failed with seed ${seed}`);
        throw err;
      } finally {
        dev.close();
      }
    });
  }

  test("an empty allocator returns null; out-of-device extents are refused", () => {
    const { dev, sup, w, bounds, a } = dataAllocOfNewVolume("empty");
    const all = a.allocLargest(w, 1n << 40n)!;
    expect(all.len).toBe(sup.total_data_blocks - bounds.first);
    expect(a.allocLargest(w, 1n)).toBeNull();
    expect(a.allocBestFit(w, 10n)).toBeNull();
    expect(a.allocData(w, 1n)).toBeNull();
    expect(() => a.insert(w, 0n, 5n)).toThrow(/outside the device/);
    expect(() => a.insert(w, bounds.last, 2n)).toThrow(/outside the device/);
    dev.close();
  });

  test("insertAll and removeAll go by runs of adjacent extents, and a run across unmerged free extents piece by piece", () => {
    const { dev, cache, w, bounds, a } = dataAllocOfNewVolume("runs");
    a.allocLargest(w, 1n << 40n);
    const b0 = bounds.first + 100n;
    // 1000 one-block frees, shuffled: one run, one extent
    const ones: Extent[] = Array.from({ length: 1000 }, (_, k) => ({ start: b0 + BigInt((k * 7919) % 1000), len: 1n }));
    a.insertAll(w, ones);
    expect(a.extents(cache)).toEqual([{ start: b0, len: 1000n }]);
    expect(a.counters.insert).toBe(1);
    // allocations of adjacent pieces come out as one removal
    a.removeAll(w, [{ start: b0 + 10n, len: 5n }, { start: b0, len: 10n }, { start: b0 + 500n, len: 1n }]);
    expect(a.counters.remove).toBe(2);
    expect(a.extents(cache)).toEqual([{ start: b0 + 15n, len: 485n }, { start: b0 + 501n, len: 499n }]);
    // two adjacent free extents the tree never merged (written elsewhere): the run is refused whole, taken piece by piece
    const c0 = bounds.first + 5000n;
    for (const e of [{ start: c0, len: 4n }, { start: c0 + 4n, len: 4n }]) {
      btreeExtentOps.insert(w, a.root.root, blknoKey(e.start, e.len), new Uint8Array(0));
      btreeExtentOps.insert(w, a.root.root, orderKey(e.start, e.len), new Uint8Array(0));
      a.root.total_len += e.len;
    }
    a.removeAll(w, [{ start: c0, len: 4n }, { start: c0 + 4n, len: 4n }]);
    expect(a.extents(cache).filter((e) => e.start >= c0)).toEqual([]);
    expect(a.root.total_len).toBe(485n + 499n);
    // something really not free still fails
    expect(() => a.removeAll(w, [{ start: c0, len: 1n }])).toThrow(/not inside one free extent/);
    dev.close();
  });

  test("coalesceExtents: runs cover exactly the extents' blocks, in order, never adjacent to each other (random)", () => {
    const r = rng(9);
    for (let round = 0; round < 200; round++) {
      // disjoint extents: a random walk of gaps (0 = adjacent) and lengths, shuffled
      const es: Extent[] = [];
      let at = BigInt(r(100));
      for (let n = r(30); n > 0; n--) {
        at += BigInt(r(3) === 0 ? 0 : r(5));
        const len = BigInt(r(4) + 1);
        es.push({ start: at, len });
        at += len;
      }
      for (let i = es.length - 1; i > 0; i--) {
        const j = r(i + 1);
        [es[i], es[j]] = [es[j]!, es[i]!];
      }
      const runs = coalesceExtents(es);
      const blocks = (xs: Extent[]) => xs.flatMap((e) => Array.from({ length: Number(e.len) }, (_, k) => e.start + BigInt(k))).sort((x, y) => (x < y ? -1 : 1));
      expect(blocks(runs)).toEqual(blocks(es));
      for (let i = 1; i < runs.length; i++) expect(runs[i - 1]!.start + runs[i - 1]!.len < runs[i]!.start).toBe(true);
      for (const run of runs) expect(run.parts.reduce((n, p) => n + p.len, 0n)).toBe(run.len);
      expect(runs.reduce((n, run) => n + run.parts.length, 0)).toBe(es.length);
    }
  });
});
