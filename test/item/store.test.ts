// The item cache and the standalone store on real volumes made by our mkfs, against a model (a
// sorted map): random transactions of create/update/put/delete (some throwing half way, which
// must roll back completely), lookups and next/prev across dirty and committed items, commits,
// reopening from the device, data block allocation and frees, and every metadata block accounted
// for after many commits (no leak: referenced + free = the device's metadata blocks).
import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { StandaloneStore } from "../../src/item/store.ts";
import { keySucc } from "../../src/item/cache.ts";
import { ListAlloc } from "../../src/alloc/list.ts";
import { ExtentAlloc } from "../../src/alloc/extents.ts";
import { btreeExtentOps } from "../../src/alloc/btree-ops.ts";
import { btreeWalkNodes } from "../../src/btree/cow.ts";
import { mkfs, parseQuorumSlot } from "../../src/offline/mkfs.ts";
import { keyPack, PACKED_KEY_MAX, PACKED_KEY_MIN, type PackedKey } from "../../src/format/key.ts";
import * as C from "../../src/format/constants.ts";
import { ScoutfsError } from "../../src/util/errors.ts";
import { sparseFile, tempDir } from "../helpers/images.ts";
import { rng } from "../helpers/rng.ts";

const dir = tempDir();
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));


function volume(name: string, metaMiB = 96, dataMiB = 64) {
  const metaPath = sparseFile(path.join(dir, `${name}.meta`), metaMiB << 20);
  const dataPath = sparseFile(path.join(dir, `${name}.data`), dataMiB << 20);
  mkfs({ metaPath, dataPath, allowSmallSize: true, slots: [parseQuorumSlot("0,127.0.0.1,42000")] }, { out: () => {}, warn: () => {} });
  return { metaPath, dataPath };
}

function key(n: number): PackedKey {
  return keyPack({ zone: C.FS_ZONE, first: BigInt(1000 + (n >> 4)), type: C.XATTR_TYPE, second: BigInt(n & 15), third: 0n, fourth: 0 });
}

function val(r: (n: number) => number): Uint8Array {
  const v = new Uint8Array(r(10) === 0 ? r(C.BTREE_MAX_VAL_LEN + 1) : r(64));
  for (let i = 0; i < v.length; i++) v[i] = r(256);
  return v;
}

class Boom extends Error {}

/** Sorted view of the model for next/prev. */
function modelNext(m: Map<PackedKey, Uint8Array>, k: PackedKey, last: PackedKey): PackedKey | null {
  let best: PackedKey | null = null;
  for (const x of m.keys()) if (x >= k && x <= last && (best === null || x < best)) best = x;
  return best;
}
function modelPrev(m: Map<PackedKey, Uint8Array>, k: PackedKey, first: PackedKey): PackedKey | null {
  let best: PackedKey | null = null;
  for (const x of m.keys()) if (x <= k && x >= first && (best === null || x > best)) best = x;
  return best;
}

/** Every metadata blkno the volume references or holds free; each exactly once. */
function accountMeta(s: StandaloneStore): { seen: Set<bigint>; dup: bigint[] } {
  const seen = new Set<bigint>();
  const dup: bigint[] = [];
  const add = (b: bigint) => (seen.has(b) ? dup.push(b) : seen.add(b));
  const sup = s.sup;
  const roots = [sup.fs_root, sup.data_alloc.root, sup.meta_alloc[0]!.root, sup.meta_alloc[1]!.root];
  for (const r of roots) btreeWalkNodes(s.cache, r, (_node, ref) => void add(ref.blkno));
  for (const h of [...sup.server_meta_avail, ...sup.server_meta_freed]) {
    const l = ListAlloc.listBlknos(s.cache, h);
    l.blknos.forEach(add);
    l.listBlocks.forEach(add);
  }
  const bounds = { first: BigInt(C.META_DEV_START_BLKNO), last: sup.total_meta_blocks - 1n };
  for (const r of sup.meta_alloc) for (const e of new ExtentAlloc(r, btreeExtentOps, bounds).extents(s.cache)) for (let b = e.start; b < e.start + e.len; b++) add(b);
  return { seen, dup };
}

describe("item cache and standalone store", () => {
  for (const seed of [21, 22, 23]) {
    test(`random transactions match a model across commits and reopen (seed ${seed})`, () => {
      const r = rng(seed);
      const v = volume(`model-${seed}`);
      let s = StandaloneStore.open(v);
      const model = new Map<PackedKey, Uint8Array>();
      const metaBlocks = s.sup.total_meta_blocks - BigInt(C.META_DEV_START_BLKNO);
      try {
        for (let round = 0; round < 60; round++) {
          for (let t = 0, n = 1 + r(30); t < n; t++) {
            const fail = r(8) === 0;
            const shadow = new Map(model);
            try {
              s.transact((w) => {
                for (let k = 0, m = 1 + r(20); k < m; k++) {
                  const kk = key(r(3000));
                  const op = r(4);
                  if (op === 0) {
                    if (shadow.has(kk)) expect(() => w.create(kk, val(r))).toThrow(ScoutfsError);
                    else {
                      const x = val(r);
                      w.create(kk, x);
                      shadow.set(kk, x);
                    }
                  } else if (op === 1) {
                    const x = val(r);
                    w.put(kk, x);
                    shadow.set(kk, x);
                  } else if (op === 2) {
                    if (shadow.has(kk)) {
                      w.delete(kk);
                      shadow.delete(kk);
                    } else expect(() => w.delete(kk)).toThrow(ScoutfsError);
                  } else if (shadow.has(kk)) {
                    const x = val(r);
                    w.update(kk, x);
                    shadow.set(kk, x);
                  } else expect(() => w.update(kk, val(r))).toThrow(ScoutfsError);
                }
                if (fail) throw new Boom("half way");
              });
              for (const k of [...model.keys()]) if (!shadow.has(k)) model.delete(k);
              for (const [k, x] of shadow) model.set(k, x);
            } catch (err) {
              if (!(err instanceof Boom)) throw err;
            }
          }
          // reads: lookups and neighbours, through dirty and committed items
          for (let q = 0; q < 40; q++) {
            const kk = key(r(3000));
            const got = s.reader.lookup(kk);
            const want = model.get(kk) ?? null;
            expect(got === null ? null : Buffer.from(got).toString("hex")).toBe(want === null ? null : Buffer.from(want).toString("hex"));
            const last = key(r(3000));
            expect(s.reader.next(kk, last)?.key ?? null).toBe(modelNext(model, kk, last));
            const first = key(r(3000));
            expect(s.reader.prev(kk, first)?.key ?? null).toBe(modelPrev(model, kk, first));
          }
          if (r(3) === 0) s.commitNow();
          if (r(8) === 0) {
            s.close();
            s = StandaloneStore.open(v);
            // every committed item came back
            let n = 0;
            for (let it = s.reader.next(key(0), key(2999)); it; it = s.reader.next(keySucc(it.key), key(2999))) {
              expect(model.has(it.key)).toBe(true);
              expect(Buffer.from(it.val).toString("hex")).toBe(Buffer.from(model.get(it.key)!).toString("hex"));
              n++;
            }
            expect(n).toBe(model.size);
            // mkfs's root inode is still there, untouched
            expect(s.reader.next(PACKED_KEY_MIN, PACKED_KEY_MAX)).not.toBeNull();
            const acct = accountMeta(s);
            expect(acct.dup).toEqual([]);
            expect(BigInt(acct.seen.size)).toBe(metaBlocks);
          }
        }
      } catch (err) {
        console.error(`item store model failed with seed ${seed}`);
        throw err;
      } finally {
        s.close();
      }
    }, 60000);
  }

  test("data blocks: allocation, rollback gives them back, frees return at commit", () => {
    const v = volume("data");
    const s = StandaloneStore.open(v);
    const free0 = s.freeBlocks().data;
    const e = s.transact(() => s.data.alloc(10n));
    expect(e.len).toBe(10n);
    const buf = new Uint8Array(4096 * 10).fill(0xab);
    s.data.write(e.start, buf);
    expect(() =>
      s.transact(() => {
        s.data.alloc(5n);
        throw new Boom("rollback");
      }),
    ).toThrow(Boom);
    s.commitNow();
    expect(s.freeBlocks().data).toBe(free0 - 10n);
    const back = new Uint8Array(4096 * 10);
    s.data.read(e.start, 10, back);
    expect(back).toEqual(buf);
    s.transact(() => s.data.free(e.start, e.len));
    // not reusable before the commit
    expect(s.freeBlocks().data).toBe(free0 - 10n);
    s.commitNow();
    expect(s.freeBlocks().data).toBe(free0);
    s.close();
  });

  test("a commit that runs out of metadata space fails whole, keeps the items, and the device keeps the last commit", () => {
    const v = volume("enospc", 66, 8);
    const s = StandaloneStore.open(v);
    // fill metadata until a commit fails
    let failed: unknown = null;
    let n = 0;
    for (let round = 0; round < 400 && !failed; round++) {
      s.transact((w) => {
        for (let k = 0; k < 500; k++, n++) w.put(key(n), new Uint8Array(800).fill(n & 0xff));
      });
      try {
        s.commitNow();
      } catch (err) {
        failed = err;
      }
    }
    expect(failed).toBeInstanceOf(ScoutfsError);
    expect((failed as ScoutfsError).code).toBe("ENOSPC");
    // the items are still readable in memory
    expect(s.reader.lookup(key(n - 1))![0]).toBe((n - 1) & 0xff);
    s.meta.close();
    s.dataDev.close();
    // the device holds the last successful commit, consistent
    const again = StandaloneStore.open(v);
    const acct = accountMeta(again);
    expect(acct.dup).toEqual([]);
    again.close();
  });
});
