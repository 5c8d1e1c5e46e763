// Two mounts of one volume in one process (two ClientStores, each with its lock cache wired as a
// node wires it, src/mount/mount-locks.ts, and a ScoutfsFuse without a kernel), against a server
// over real TCP on real images. Random namespace and data operations go to either mount; since
// cluster locks make the two one coherent filesystem, every answer must match one in-memory
// model. Merges run during the test, so reads cross fs_root, finalized and open log trees.
// Then both mounts work at once on their own names in shared directories, and see the union.
import { afterAll, describe, expect, test } from "bun:test";
import { ClientStore } from "../../src/item/client-store.ts";
import { ScoutfsFuse, type KernelNotifier } from "../../src/fs/fuse.ts";
import { MountLocks } from "../../src/mount/mount-locks.ts";
import { FuseError } from "../../src/fuse/errno.ts";
import { makeVolume, removeVolume, startServer, type Vol } from "../server/helpers.ts";
import { ctx, sink, sizeSet } from "./harness.ts";
import { rng } from "../helpers/rng.ts";

const vols: Vol[] = [];
afterAll(() => vols.forEach(removeVolume));

interface Mount {
  store: ClientStore;
  fs: ScoutfsFuse;
  locks: MountLocks;
  notes: string[];
}

async function mountOf(v: Vol): Promise<Mount> {
  const locks = new MountLocks(() => {});
  const store = await ClientStore.open({
    metaPath: v.metaPath,
    dataPath: v.dataPath,
    commitIntervalMs: 0,
    inoBatch: 64n,
    client: { net: { keepalive_timeout_ms: 4000, connect_delay_ms: 20 }, ...locks.clientHooks },
  });
  const fs = new ScoutfsFuse(store, { locks: locks.fsLocks, entryTimeout: 60, attrTimeout: 60 });
  locks.attach(store, fs);
  const notes: string[] = [];
  const notifier: KernelNotifier = {
    notifyInvalInode: async (nodeid) => void notes.push(`inode ${nodeid}`),
    notifyInvalEntry: async (parent, name) => void notes.push(`entry ${parent} ${name}`),
  };
  fs.notifier = notifier;
  return { store, fs, locks, notes };
}

/** The errno name an operation fails with, or its value. */
async function attempt<T>(fn: () => T | Promise<T>): Promise<{ ok: T } | { err: string }> {
  try {
    return { ok: await fn() };
  } catch (e) {
    if (e instanceof FuseError) return { err: e.code };
    throw e;
  }
}

const c = ctx();
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

async function lookupId(m: Mount, parent: number, name: string): Promise<number | string> {
  const r = await attempt(() => m.fs.lookup(c, parent, name));
  return "ok" in r ? r.ok.nodeid : r.err;
}

async function listNames(m: Mount, dir: number): Promise<string[]> {
  const s = sink(true);
  await m.fs.readdir(c, dir, 0, 0, s);
  return s.out.map((e) => e.name).filter((n) => n !== "." && n !== "..").sort();
}

describe("two mounts under cluster locks", () => {
  test("random operations on either mount match one model, across merges", async () => {
    const v = await makeVolume("cluster-model", 1024, 256);
    vols.push(v);
    const server = startServer(v, 1n, { mergeCommits: 6 });
    const ms = [await mountOf(v), await mountOf(v)];
    try {
      // directories made on mount 0: the root and two below it
      const d1 = (await ms[0]!.fs.mkdir(c, 1, "d1", 0o755, 0)).nodeid;
      const d2 = (await ms[1]!.fs.mkdir(c, 1, "d2", 0o755, 0)).nodeid;
      const dirs = [1, d1, d2];
      const names = ["a", "b", "c", "d", "e"];
      // model: dir -> name -> content
      const model = new Map<number, Map<string, string>>(dirs.map((d) => [d, new Map()]));
      model.get(1)!.set("d1", "<dir>");
      model.get(1)!.set("d2", "<dir>");
      const r = rng(20261125);
      const pick = <T>(a: T[]): T => a[r(a.length)]!;
      for (let step = 0; step < 600; step++) {
        const m = ms[r(2)]!;
        const dir = pick(dirs);
        const name = pick(names);
        const files = model.get(dir)!;
        const op = r(7);
        const where = `step ${step} op ${op} dir ${dir} name ${name}`;
        if (op === 0) {
          const res = await attempt(() => m.fs.create(c, dir, name, 0o644, 0, 2));
          if (files.has(name)) expect(res, where).toEqual({ err: "EEXIST" });
          else {
            expect("ok" in res, where).toBe(true);
            files.set(name, "");
          }
        } else if (op === 1 || op === 2) {
          const id = await lookupId(m, dir, name);
          if (!files.has(name)) {
            expect(id, where).toBe("ENOENT");
            continue;
          }
          const body = `${name}@${dir} step ${step} `.repeat(1 + r(200));
          expect(await m.fs.write(c, id as number, 0, 0, enc(body)), where).toBe(body.length);
          await m.fs.setattr(c, id as number, sizeSet(body.length));
          files.set(name, body);
        } else if (op === 3) {
          const id = await lookupId(m, dir, name);
          if (!files.has(name)) {
            expect(id, where).toBe("ENOENT");
            continue;
          }
          const want = files.get(name)!;
          const st = await m.fs.getattr(c, id as number);
          expect(st.attr.size, where).toBe(want.length);
          expect(dec(await m.fs.read(c, id as number, 0, 0, 1 << 20)), where).toBe(want);
        } else if (op === 4) {
          const res = await attempt(() => m.fs.unlink(c, dir, name));
          if (files.has(name)) {
            expect(res, where).toEqual({ ok: undefined });
            files.delete(name);
          } else expect(res, where).toEqual({ err: "ENOENT" });
        } else if (op === 5) {
          const toDir = pick(dirs);
          const toName = pick(names);
          const res = await attempt(() => m.fs.rename(c, dir, name, toDir, toName, 0));
          if (!files.has(name)) expect(res, where).toEqual({ err: "ENOENT" });
          else {
            expect(res, `${where} -> ${toDir} ${toName}`).toEqual({ ok: undefined });
            const body = files.get(name)!;
            files.delete(name);
            model.get(toDir)!.set(toName, body);
          }
        } else {
          expect(await listNames(m, dir), where).toEqual([...files.keys()].sort());
        }
        if (step % 100 === 99) {
          // both mounts see the whole tree
          for (const mm of ms) for (const d of dirs) expect(await listNames(mm, d)).toEqual([...model.get(d)!.keys()].sort());
        }
      }
      // the server merged log trees into fs_root while we worked
      expect(server.counters.commitLogTrees).toBeGreaterThan(50);
      expect(server.merge.counters.treesMerged).toBeGreaterThan(0);
      // lock transfers reached the other mount's "kernel" as invalidations
      for (const m of ms) expect(m.notes.length).toBeGreaterThan(0);
    } finally {
      for (const m of ms) await m.store.close();
      server.close();
    }
  }, 120_000);

  test("both mounts creating and writing in shared directories at once see the union", async () => {
    const v = await makeVolume("cluster-union", 1024, 256);
    vols.push(v);
    const server = startServer(v, 1n, { mergeCommits: 8 });
    const ms = [await mountOf(v), await mountOf(v)];
    try {
      const d = (await ms[0]!.fs.mkdir(c, 1, "shared", 0o755, 0)).nodeid;
      const N = 120;
      // every fifth file, unless it was unlinked, is renamed by the next step
      const renamed = (j: number) => j >= 0 && j + 1 < N && (j + 1) % 5 === 0 && j % 4 !== 0;
      const work = async (m: Mount, tag: string) => {
        for (let i = 0; i < N; i++) {
          const cr = await m.fs.create(c, d, `${tag}${i}`, 0o644, 0, 2);
          await m.fs.write(c, cr.entry.nodeid, cr.open.fh, 0, enc(`${tag} ${i}`));
          await m.fs.release(c, cr.entry.nodeid, cr.open.fh);
          if (i % 4 === 0) await m.fs.unlink(c, d, `${tag}${i}`);
          if (renamed(i - 1)) await m.fs.rename(c, d, `${tag}${i - 1}`, d, `${tag}${i - 1}r`, 0);
        }
      };
      await Promise.all([work(ms[0]!, "x"), work(ms[1]!, "y")]);
      const want: string[] = [];
      for (const tag of ["x", "y"]) {
        for (let i = 0; i < N; i++) {
          if (i % 4 === 0) continue;
          want.push(renamed(i) ? `${tag}${i}r` : `${tag}${i}`);
        }
      }
      want.sort();
      for (const m of ms) {
        expect(await listNames(m, d)).toEqual(want);
        for (const n of want) {
          const id = await lookupId(m, d, n);
          expect(typeof id).toBe("number");
          const base = n.endsWith("r") ? n.slice(0, -1) : n;
          expect(dec(await m.fs.read(c, id as number, 0, 0, 100))).toBe(`${base[0]} ${base.slice(1)}`);
        }
      }
    } finally {
      for (const m of ms) await m.store.close();
      server.close();
    }
  }, 120_000);
});

describe("deletions under cluster locks", () => {
  test("an fsync right after the kernel lets go of an unlinked file commits its deletion: its blocks are free in statfs", async () => {
    const v = await makeVolume("cluster-rm-fsync", 1024, 256);
    vols.push(v);
    const server = startServer(v, 1n);
    let m = await mountOf(v);
    try {
      const blocks = 512;
      const cr = await m.fs.create(c, 1, "big", 0o644, 0, 2);
      await m.fs.write(c, cr.entry.nodeid, cr.open.fh, 0, new Uint8Array(blocks * 4096).fill(7));
      await m.fs.release(c, cr.entry.nodeid, cr.open.fh);
      await m.store.close();
      // a new mount: nothing of the file's inode group is known yet (its open_ino_map bits)
      m = await mountOf(v);
      const ino = await lookupId(m, 1, "big");
      expect(typeof ino).toBe("number");
      const before = server.statfs().free_data_blocks;
      await m.fs.unlink(c, 1, "big");
      // the deletion asks the server which inodes other mounts hold (open_ino_map) before it
      // runs: the fsync that follows at once must wait for it, as `rm big; sync` expects
      m.fs.forget(ino as number, 1);
      await m.fs.fsync();
      expect(server.statfs().free_data_blocks - before).toBeGreaterThanOrEqual(BigInt(blocks));
    } finally {
      await m.store.close();
      server.close();
    }
  }, 60_000);
});
