// The alloc list metadata allocator on a real volume made by our mkfs: random allocations and
// frees over many committed transactions against a simple model, checking after every commit
// (re-read from the device) that no blkno is lost or duplicated, that a block freed in a
// transaction is never handed out in it, and that running out is a clean ENOSPC that leaves the
// committed lists untouched.
import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { Device } from "../../src/block/device.ts";
import { MetaCache } from "../../src/block/cache.ts";
import { readSuper, writeSuper } from "../../src/block/super.ts";
import { ListAlloc, listBlockCodec, type ListHead } from "../../src/alloc/list.ts";
import { ALLOC_LIST_BLKNOS_OFF, ALLOC_LIST_MAX_BLOCKS, AllocListBlock } from "../../src/format/alloc.ts";
import { mkfs, parseQuorumSlot } from "../../src/offline/mkfs.ts";
import { ScoutfsError } from "../../src/util/errors.ts";
import { sparseFile, tempDir } from "../helpers/images.ts";
import { rng } from "../helpers/rng.ts";

const dir = tempDir();
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function volume(name: string) {
  const metaPath = sparseFile(path.join(dir, `${name}.meta`), 128 << 20);
  const dataPath = sparseFile(path.join(dir, `${name}.data`), 64 << 20);
  mkfs({ metaPath, dataPath, allowSmallSize: true, slots: [parseQuorumSlot("0,127.0.0.1,42000")] }, { out: () => {}, warn: () => {} });
  return metaPath;
}


function open(metaPath: string) {
  const dev = Device.open(metaPath, { write: true });
  const sup = readSuper(dev, { meta: true });
  const cache = new MetaCache(dev, sup.hdr.fsid);
  return { dev, sup, cache };
}

function cloneHead(h: ListHead): ListHead {
  return { ref: { ...h.ref }, total_nr: h.total_nr, first_nr: h.first_nr, flags: h.flags };
}

describe("alloc lists", () => {
  for (const seed of [1, 2, 3, 4, 5]) {
    test(`random alloc/free over committed transactions conserve every blkno (seed ${seed})`, () => {
      const r = rng(seed);
      const metaPath = volume(`model-${seed}`);
      let { dev, sup, cache } = open(metaPath);
      const initial = ListAlloc.listBlknos(cache, sup.server_meta_avail[0]!);
      // every blkno the lists own: the avail entries plus the list block itself
      const universe = new Set([...initial.blknos, ...initial.listBlocks]);
      expect(universe.size).toBe(initial.blknos.length + initial.listBlocks.length);
      const live = new Set<bigint>(); // allocated and not freed: owned by "the filesystem"
      try {
        for (let t = 0; t < 40; t++) {
          const a = new ListAlloc(cache, sup.server_meta_avail[0]!, sup.server_meta_freed[0]!);
          const freedThisTrans = new Set<bigint>();
          const ops = 1 + r(60);
          for (let k = 0; k < ops; k++) {
            if (live.size > 0 && r(3) === 0) {
              const arr = [...live];
              const b = arr[r(arr.length)]!;
              a.freeMeta(b);
              live.delete(b);
              freedThisTrans.add(b);
            } else {
              if (a.low(4)) break;
              const b = a.allocMeta();
              expect(universe.has(b)).toBe(true);
              expect(live.has(b)).toBe(false);
              expect(freedThisTrans.has(b)).toBe(false);
              live.add(b);
            }
          }
          cache.commit(() => writeSuper(dev, sup));
          a.committed();
          // re-read everything from the device: conservation of blknos
          dev.close();
          ({ dev, sup, cache } = open(metaPath));
          const av = ListAlloc.listBlknos(cache, sup.server_meta_avail[0]!);
          const fr = ListAlloc.listBlknos(cache, sup.server_meta_freed[0]!);
          expect(BigInt(av.blknos.length)).toBe(sup.server_meta_avail[0]!.total_nr);
          expect(BigInt(fr.blknos.length)).toBe(sup.server_meta_freed[0]!.total_nr);
          const all = [...av.blknos, ...av.listBlocks, ...fr.blknos, ...fr.listBlocks, ...live];
          const seen = new Set<bigint>();
          for (const b of all) {
            expect(seen.has(b)).toBe(false);
            seen.add(b);
          }
          expect(seen.size).toBe(universe.size);
          for (const b of seen) expect(universe.has(b)).toBe(true);
        }
      } catch (err) {
        console.error(`alloc list model failed with seed ${seed}`);
        throw err;
      } finally {
        dev.close();
      }
    });
  }

  test("one cache over committed and abandoned transactions: its view of the lists is always the device's", () => {
    // A transaction takes the committed first blocks' decoded objects over as its dirty copies;
    // one that is abandoned must find the committed blocks again (read back from the device).
    const r = rng(7);
    const metaPath = volume("abandon");
    const { dev, sup, cache } = open(metaPath);
    const blknosOf = (c: MetaCache, h: ListHead) => ListAlloc.listBlknos(c, h).blknos.join(",");
    try {
      for (let t = 0; t < 60; t++) {
        const saved = [cloneHead(sup.server_meta_avail[0]!), cloneHead(sup.server_meta_freed[0]!)];
        const a = new ListAlloc(cache, sup.server_meta_avail[0]!, sup.server_meta_freed[0]!);
        const got: bigint[] = [];
        for (let k = 1 + r(20); k > 0 && !a.low(4); k--) got.push(a.allocMeta());
        for (const b of got) if (r(2) === 0) a.freeMeta(b);
        if (r(3) === 0) {
          cache.discardDirty();
          sup.server_meta_avail[0] = saved[0]!;
          sup.server_meta_freed[0] = saved[1]!;
        } else {
          cache.commit(() => writeSuper(dev, sup));
          a.committed();
        }
        const fresh = open(metaPath);
        try {
          expect(fresh.sup.server_meta_avail[0]).toEqual(sup.server_meta_avail[0]!);
          expect(blknosOf(cache, sup.server_meta_avail[0]!)).toBe(blknosOf(fresh.cache, fresh.sup.server_meta_avail[0]!));
          expect(blknosOf(cache, sup.server_meta_freed[0]!)).toBe(blknosOf(fresh.cache, fresh.sup.server_meta_freed[0]!));
        } finally {
          fresh.dev.close();
        }
      }
    } finally {
      dev.close();
    }
  });

  test("running out is ENOSPC before anything is written; the committed lists are untouched", () => {
    const metaPath = volume("enospc");
    const { dev, sup, cache } = open(metaPath);
    const before = fs.readFileSync(metaPath);
    const avail0 = cloneHead(sup.server_meta_avail[0]!);
    const a = new ListAlloc(cache, sup.server_meta_avail[0]!, sup.server_meta_freed[0]!);
    let n = 0;
    let err: unknown;
    try {
      for (;;) {
        a.allocMeta();
        n++;
      }
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ScoutfsError);
    expect((err as ScoutfsError).code).toBe("ENOSPC");
    expect(BigInt(n)).toBe(avail0.total_nr - 2n); // two went to the list blocks' own copies
    cache.discardDirty();
    expect(Buffer.compare(fs.readFileSync(metaPath), before)).toBe(0);
    dev.close();
    const again = open(metaPath);
    expect(again.sup.server_meta_avail[0]).toEqual(avail0);
    again.dev.close();
  });

  test("a corrupted list block is EIO, not a crash", () => {
    const metaPath = volume("corrupt");
    const { dev, sup, cache } = open(metaPath);
    const blkno = sup.server_meta_avail[0]!.ref.blkno;
    const fd = fs.openSync(metaPath, "r+");
    fs.writeSync(fd, Buffer.from([0xde, 0xad]), 0, 2, Number(blkno) * 65536 + 100);
    fs.closeSync(fd);
    const a = new ListAlloc(cache, sup.server_meta_avail[0]!, sup.server_meta_freed[0]!);
    expect(() => a.allocMeta()).toThrow(/avail alloc list/);
    try {
      a.allocMeta();
    } catch (e) {
      expect((e as ScoutfsError).code).toBe("EIO");
    }
    dev.close();
  });
});

describe("alloc list block codec", () => {
  test("blknos[start .. start+nr) are little-endian __le64s at their format offsets, both ways", () => {
    const r = rng(7);
    for (const [start, nr] of [[0, 0], [0, 1], [5, 17], [ALLOC_LIST_MAX_BLOCKS - 3, 3], [0, ALLOC_LIST_MAX_BLOCKS]] as const) {
      const blknos = new BigUint64Array(ALLOC_LIST_MAX_BLOCKS);
      for (let i = start; i < start + nr; i++) blknos[i] = (BigInt(r(1 << 30)) << 32n) | BigInt(r(1 << 30)) | (1n << 63n);
      const buf = new Uint8Array(ALLOC_LIST_BLKNOS_OFF + ALLOC_LIST_MAX_BLOCKS * 8).fill(0xee);
      listBlockCodec.encode({ next: { blkno: 9n, seq: 10n }, start, nr, blknos }, buf);
      const dv = new DataView(buf.buffer);
      expect(dv.getBigUint64(AllocListBlock.off.next, true)).toBe(9n);
      expect(dv.getUint32(AllocListBlock.off.start, true)).toBe(start);
      expect(dv.getUint32(AllocListBlock.off.nr, true)).toBe(nr);
      for (let i = start; i < start + nr; i++) expect(dv.getBigUint64(ALLOC_LIST_BLKNOS_OFF + i * 8, true)).toBe(blknos[i]!);
      // entries outside [start, start+nr) are not written
      if (start > 0) expect(buf[ALLOC_LIST_BLKNOS_OFF + start * 8 - 1]).toBe(0xee);
      const back = listBlockCodec.decode(buf, 1n);
      expect(back.start).toBe(start);
      expect(back.nr).toBe(nr);
      expect(back.next).toEqual({ blkno: 9n, seq: 10n });
      expect([...back.blknos.subarray(start, start + nr)]).toEqual([...blknos.subarray(start, start + nr)]);
    }
  });
});
