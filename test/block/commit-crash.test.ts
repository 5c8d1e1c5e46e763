// Crash consistency and I/O faults of the commit sequence (cache.commit + writeSuper) with the
// alloc list allocator and fs_root btree items (inserts, overwrites, deletes that split leaves) as
// the workload: every write and flush is recorded, then for every flush
// boundary (and random subsets and torn writes of the unflushed writes after it) the image a crash
// could leave is rebuilt and must open to exactly the state of the last commit whose super block
// made it to disk — never to a stale or corrupt block.
import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { Device } from "../../src/block/device.ts";
import { MetaCache } from "../../src/block/cache.ts";
import { readSuper, writeSuper } from "../../src/block/super.ts";
import { ListAlloc } from "../../src/alloc/list.ts";
import { mkfs, parseQuorumSlot } from "../../src/offline/mkfs.ts";
import { ScoutfsError } from "../../src/util/errors.ts";
import { btreeDelete, btreeForce, btreeItems } from "../../src/btree/cow.ts";
import { keyPack } from "../../src/format/key.ts";
import * as C from "../../src/format/constants.ts";
import { sparseFile, tempDir } from "../helpers/images.ts";
import { FaultyDev, OverlayDev, RecordingDev, crashWrites } from "../helpers/crashdev.ts";
import { rng } from "../helpers/rng.ts";

const dir = tempDir();
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function volume(name: string): string {
  const metaPath = sparseFile(path.join(dir, `${name}.meta`), 80 << 20);
  const dataPath = sparseFile(path.join(dir, `${name}.data`), 64 << 20);
  mkfs({ metaPath, dataPath, allowSmallSize: true, slots: [parseQuorumSlot("0,127.0.0.1,42000")] }, { out: () => {}, warn: () => {} });
  return metaPath;
}


/** What a committed volume holds, as this workload sees it. */
interface State {
  avail: bigint[];
  freed: bigint[];
  /** fs_root items as key -> value hex. */
  items: Record<string, string>;
}

function stateOf(cache: MetaCache, sup: ReturnType<typeof readSuper>): State {
  const items: Record<string, string> = {};
  for (const it of btreeItems(cache, sup.fs_root)) items[Buffer.from(it.key, "latin1").toString("hex")] = Buffer.from(it.val).toString("hex");
  return {
    avail: ListAlloc.listBlknos(cache, sup.server_meta_avail[0]!).blknos,
    freed: ListAlloc.listBlknos(cache, sup.server_meta_freed[0]!).blknos,
    items,
  };
}

describe("commit crash consistency", () => {
  test("every crash point opens to the last committed state", () => {
    const seed = 7;
    const r = rng(seed);
    const metaPath = volume("crash");
    const base = path.join(dir, "crash.base");
    fs.copyFileSync(metaPath, base);
    const dev = Device.open(metaPath, { write: true });
    const rec = new RecordingDev(dev);
    const sup = readSuper(rec, { meta: true });
    const cache = new MetaCache(rec, sup.hdr.fsid);
    // states by the super's header seq, which identifies each commit
    const states = new Map<bigint, State>([[sup.hdr.seq, stateOf(cache, sup)]]);
    const live: bigint[] = [];
    for (let t = 0; t < 12; t++) {
      const a = new ListAlloc(cache, sup.server_meta_avail[0]!, sup.server_meta_freed[0]!);
      for (let k = 0, n = 5 + r(40); k < n; k++) {
        if (live.length > 0 && r(3) === 0) a.freeMeta(live.splice(r(live.length), 1)[0]!);
        else live.push(a.allocMeta());
      }
      // btree items in fs_root through the same transaction: inserts, overwrites, deletes, enough
      // to split leaves (so several btree blocks are written per commit, and can tear)
      const w = { cache, alloc: a };
      for (let k = 0, n = 200 + r(800); k < n; k++) {
        const key = keyPack({ zone: C.FS_ZONE, first: BigInt(5000 + r(3000)), type: C.XATTR_TYPE, second: 0n, third: 0n, fourth: 0 });
        if (r(4) === 0) {
          try {
            btreeDelete(w, sup.fs_root, key);
          } catch (err) {
            if (!(err instanceof ScoutfsError && err.code === "ENOENT")) throw err;
          }
        } else btreeForce(w, sup.fs_root, key, BigInt(t + 1), 0, new Uint8Array(40 + r(200)).fill(r(256)));
      }
      cache.commit(() => writeSuper(rec, sup));
      a.committed();
      states.set(sup.hdr.seq, stateOf(cache, sup));
    }
    dev.close();
    // the tree spans several blocks, so the unflushed writes a crash may tear include btree blocks
    expect(sup.fs_root.height).toBeGreaterThan(1);
    expect(Object.keys(states.get(sup.hdr.seq)!.items).length).toBeGreaterThan(1000);

    let images = 0;
    for (let epoch = 0; epoch <= rec.flushes; epoch++) {
      const pending = rec.epochs[epoch] ?? [];
      const choices: { subset: number[]; torn?: { index: number; bytes: number } }[] = [
        { subset: [] },
        { subset: pending.map((_, i) => i) },
      ];
      for (let k = 0; k < 6 && pending.length > 0; k++) {
        const subset = pending.map((_, i) => i).filter(() => r(2) === 0);
        // Metadata block writes may tear at any 512-byte sector. The 4 KiB super block write is
        // taken as atomic, as scoutfs takes it: the format has a single super, so a device that
        // tears an aligned 4 KiB write cannot hold any scoutfs volume safely.
        const tearable = subset.filter((i) => pending[i]!.bytes.length > 4096);
        const torn = tearable.length > 0 ? { index: tearable[r(tearable.length)]!, bytes: 512 * (1 + r(127)) } : undefined;
        choices.push(torn ? { subset, torn } : { subset });
      }
      for (const c of choices) {
        const ov = new OverlayDev(base, crashWrites(rec, epoch, c.subset, c.torn));
        try {
          const s = readSuper(ov, { meta: true });
          const want = states.get(s.hdr.seq);
          expect(want, `crash at epoch ${epoch} left super seq ${s.hdr.seq}, which no commit wrote`).toBeDefined();
          const got = stateOf(new MetaCache(ov, s.hdr.fsid), s);
          expect(got).toEqual(want!);
          images++;
        } catch (err) {
          console.error(`crash image at epoch ${epoch} subset ${c.subset.join(",")} torn ${JSON.stringify(c.torn)} (seed ${seed})`);
          throw err;
        } finally {
          ov.close();
        }
      }
    }
    expect(images).toBeGreaterThan(100);
  });

  for (const plan of [{ failWrite: 1 }, { failWrite: 1, shortWrite: true }, { failSync: 0 }, { failSync: 1 }]) {
    test(`an I/O error during commit (${JSON.stringify(plan)}) surfaces as EIO and the volume still opens to a committed state`, () => {
      const metaPath = volume(`fault-${JSON.stringify(plan).replace(/\W/g, "")}`);
      const dev = Device.open(metaPath, { write: true });
      const before = readSuper(dev, { meta: true });
      const beforeState = stateOf(new MetaCache(dev, before.hdr.fsid), before);
      const faulty = new FaultyDev(dev, plan);
      const sup = readSuper(faulty, { meta: true });
      const cache = new MetaCache(faulty, sup.hdr.fsid);
      const a = new ListAlloc(cache, sup.server_meta_avail[0]!, sup.server_meta_freed[0]!);
      // enough frees and allocations to make both list blocks dirty, far apart on the device
      const got = [a.allocMeta(), a.allocMeta(), a.allocMeta()];
      a.freeMeta(got[1]!);
      let err: unknown;
      try {
        cache.commit(() => writeSuper(faulty, sup));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ScoutfsError);
      expect((err as ScoutfsError).code).toBe("EIO");
      dev.close();
      // the device now holds either the old commit or (a failed final flush) the new one
      const again = Device.open(metaPath);
      const s = readSuper(again, { meta: true });
      const st = stateOf(new MetaCache(again, s.hdr.fsid), s);
      if (s.hdr.seq === before.hdr.seq) expect(st).toEqual(beforeState);
      else expect(st.freed).toContain(got[1]!);
      again.close();
    });
  }
});
