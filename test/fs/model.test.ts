// Randomized file data operations through the fs layer (no kernel) against an in-memory model,
// checking contents and extent invariants after every step. Seeds are printed on failure.
import { expect, test } from "bun:test";
import { SEF_UNWRITTEN } from "../../src/format/constants.ts";
import { extAll } from "../../src/fs/data.ts";
import { inodeGet } from "../../src/fs/inode.ts";
import { ctx, setup, sizeSet } from "./harness.ts";
import { rng } from "../helpers/rng.ts";


const SPAN = 96 * 1024;

function run(seed: number, steps: number): void {
  const r = rng(seed);
  const { store, fs } = setup({ dataBlocks: 4096n });
  const c = ctx();
  const f = fs.create(c, 1, "f", 0o644, 0, 2);
  const id = f.entry.nodeid;
  const ino = BigInt(id);
  let model = new Uint8Array(0);
  const log: string[] = [];
  const resize = (n: number) => {
    const m = new Uint8Array(n);
    m.set(model.subarray(0, Math.min(n, model.length)));
    model = m;
  };
  try {
    for (let step = 0; step < steps; step++) {
      const op = r(10);
      const off = r(SPAN);
      const len = 1 + r(r(4) === 0 ? 20000 : 3000);
      if (op <= 3) {
        const data = new Uint8Array(len).map(() => 1 + r(255));
        log.push(`write ${off} ${len}`);
        fs.write(c, id, f.open.fh, off, data);
        if (off + len > model.length) resize(off + len);
        model.set(data, off);
      } else if (op === 4) {
        const size = r(SPAN + 8192);
        log.push(`truncate ${size}`);
        fs.setattr(c, id, sizeSet(size));
        resize(size);
      } else if (op === 5) {
        log.push(`punch ${off} ${len}`);
        fs.fallocate(c, id, f.open.fh, off, len, 3);
        model.fill(0, off, Math.min(off + len, model.length));
      } else if (op === 6) {
        const keep = r(2) === 1;
        log.push(`zero ${off} ${len} keep=${keep}`);
        fs.fallocate(c, id, f.open.fh, off, len, 0x10 | (keep ? 1 : 0));
        if (!keep && off + len > model.length) resize(off + len);
        model.fill(0, off, Math.min(off + len, model.length));
      } else if (op === 7) {
        const keep = r(2) === 1;
        log.push(`falloc ${off} ${len} keep=${keep}`);
        fs.fallocate(c, id, f.open.fh, off, len, keep ? 1 : 0);
        if (!keep && off + len > model.length) resize(off + len);
      } else if (op === 8) {
        const to = r(SPAN);
        log.push(`copy ${off} ${len} -> ${to}`);
        const n = fs.copyFileRange(c, id, 0, off, id, 0, to, len, 0);
        const src = model.slice(off, Math.min(off + len, model.length));
        expect(n).toBe(src.length);
        if (src.length > 0) {
          if (to + src.length > model.length) resize(to + src.length);
          model.set(src, to);
        }
      } else {
        log.push("commit");
        store.commit();
      }
      check();
    }
  } catch (e) {
    console.error(`seed ${seed} failed after:\n${log.slice(-12).join("\n")}`);
    throw e;
  }

  function check(): void {
    const v = inodeGet(store.reader, ino, store.fmtVers).v;
    expect(Number(v.size)).toBe(model.length);
    const got = fs.read(c, id, f.open.fh, 0, model.length + 10);
    expect(got.length).toBe(model.length);
    if (!Buffer.from(got).equals(Buffer.from(model))) {
      let k = 0;
      while (got[k] === model[k]) k++;
      throw new Error(`contents differ first at byte ${k}: got ${got[k]} want ${model[k]}`);
    }
    // Extents: sorted, disjoint, merged, counted, and their blocks disjoint and not free.
    const exts = extAll(store.reader, ino);
    let online = 0n;
    const phys: Array<[bigint, bigint]> = [];
    for (let k = 0; k < exts.length; k++) {
      const e = exts[k]!;
      const p = exts[k - 1];
      if (p !== undefined) {
        expect(p.start + p.len <= e.start).toBe(true);
        const mergeable = p.start + p.len === e.start && p.flags === e.flags && p.map + p.len === e.map;
        expect(mergeable).toBe(false);
      }
      if (e.map !== 0n && !(e.flags & SEF_UNWRITTEN)) online += e.len;
      if (e.map !== 0n) phys.push([e.map, e.len]);
    }
    expect(v.online_blocks).toBe(online);
    phys.sort((a, b) => (a[0] < b[0] ? -1 : 1));
    let used = 0n;
    for (let k = 0; k < phys.length; k++) {
      used += phys[k]![1];
      if (k > 0) expect(phys[k - 1]![0] + phys[k - 1]![1] <= phys[k]![0]).toBe(true);
    }
    expect(store.freeBlocks() + used).toBe(4096n);
  }
}

for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
  test(`random data operations against a model, seed ${seed}`, () => run(seed, 300));
}
