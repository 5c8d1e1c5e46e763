// Client stores against a server over real TCP on real images: items written into log trees,
// committed through the server, read back through the forest by other and later mounts, merged
// into fs_root; lost uncommitted work of a dead mount; server restarts; block accounting.
import { afterAll, describe, expect, test } from "bun:test";
import { btreeItems } from "../../src/btree/cow.ts";
import { LogTrees } from "../../src/format/log_trees.ts";
import * as C from "../../src/format/constants.ts";
import type { ClientStore } from "../../src/item/client-store.ts";
import type { Server } from "../../src/server/server.ts";
import { makeVolume, removeVolume, startServer, type Vol } from "../server/helpers.ts";
import { accountMeta, key, openStore, val } from "./helpers.ts";
import { rng } from "../helpers/rng.ts";
import { Device, takeFlushStats } from "../../src/block/device.ts";

const vols: Vol[] = [];
afterAll(() => vols.forEach(removeVolume));

function allItems(s: ClientStore): Map<string, Uint8Array> {
  const m = new Map<string, Uint8Array>();
  let k = key(0);
  for (;;) {
    const it = s.reader.next(k, key(1 << 20));
    if (!it) return m;
    m.set(it.key, it.val);
    let i = it.key.length - 1;
    while (it.key.charCodeAt(i) === 0xff) i--;
    k = it.key.slice(0, i) + String.fromCharCode(it.key.charCodeAt(i) + 1) + "\0".repeat(it.key.length - i - 1);
  }
}

/** A fresh volume, its server and two mounts for `fn`; then both close and the blocks must balance. */
async function withTwoMounts(name: string, fn: (server: Server, a: ClientStore, b: ClientStore) => Promise<void>): Promise<void> {
  const v = await makeVolume(name);
  vols.push(v);
  const server = startServer(v, 1n);
  const a = await openStore(v);
  const b = await openStore(v);
  try {
    await fn(server, a, b);
  } finally {
    await a.close();
    await b.close();
    expectBalanced(server);
    server.close();
  }
}

function expectBalanced(server: Parameters<typeof accountMeta>[0]): void {
  const a = accountMeta(server);
  expect(a.dup).toEqual([]);
  expect(a.seen).toBe(a.total);
}

describe("client store", () => {
  test("items commit through the server, read back by a fresh mount, merge into fs_root", async () => {
    const v = await makeVolume("cs1");
    vols.push(v);
    let server = startServer(v, 1n);
    const a = await openStore(v);
    try {
      a.transact((w) => {
        for (let i = 0; i < 300; i++) w.create(key(i), val(i));
      });
      // committed first, so that deleting them needs deletion items
      await a.sync();
      // created and deleted before a commit: never written at all
      a.transact((w) => w.create(key(20_000), val(1)));
      a.transact((w) => w.delete(key(20_000)));
      a.transact((w) => {
        for (let i = 0; i < 300; i += 3) w.delete(key(i));
        for (let i = 1; i < 300; i += 3) w.update(key(i), val(i, 1));
      });
      // a rollback leaves nothing behind
      expect(() => a.transact((w) => {
        w.create(key(10_000), val(1));
        throw new Error("boom");
      })).toThrow("boom");
      expect(a.reader.lookup(key(10_000))).toBeNull();
      await a.sync();
      const want = new Map<string, Uint8Array>();
      for (let i = 0; i < 300; i++) if (i % 3 !== 0) want.set(key(i), val(i, i % 3 === 1 ? 1 : 0));
      expect(allItems(a)).toEqual(want);
      // deletions are deletion items in our log tree
      const lt = LogTrees.decode(btreeItems(server.t.cache, server.t.sup.logs_root)[0]!.val);
      const treeItems = btreeItems(server.t.cache, lt.item_root);
      expect(treeItems.length).toBe(300);
      expect(treeItems.filter((i) => i.flags & C.ITEM_FLAG_DELETION).length).toBe(100);
      expect(treeItems.some((i) => i.key === key(20_000))).toBe(false);
      expectBalanced(server);

      // a second mount sees a's committed items
      const b = await openStore(v);
      expect(allItems(b)).toEqual(want);
      // merge: both trees finalized, fs_root gets the items, the trees go away
      expect(server.requestMerge()).toBe(true);
      await server.merge.idle();
      if (server.merge.lastError) console.error(server.merge.lastError, server.merge.counters);
      expect(server.merge.counters.merges).toBe(1);
      const fsItems = btreeItems(server.t.cache, server.t.sup.fs_root).filter((i) => i.key >= key(0) && i.key <= key(299));
      expect(fsItems.length).toBe(200);
      expect(fsItems.every((i) => (i.flags & C.ITEM_FLAG_DELETION) === 0)).toBe(true);
      await b.refreshRoots();
      expect(allItems(b)).toEqual(want);
      expect(allItems(a)).toEqual(want);
      await b.close();
      await a.close();
      expectBalanced(server);
      server.close();

      // a fresh server and mount read everything back
      server = startServer(v, 2n);
      const c = await openStore(v);
      expect(allItems(c)).toEqual(want);
      await c.close();
      expectBalanced(server);
    } finally {
      server.close();
    }
  }, 60_000);

  test("two mounts write different keys, see each other after commit and merge, data blocks", () =>
    withTwoMounts("cs2", async (server, a, b) => {
      const free0 = server.statfs();
      for (let round = 0; round < 6; round++) {
        a.transact((w) => {
          for (let i = 0; i < 50; i++) w.put(key(round * 100 + i), val(i, round));
        });
        b.transact((w) => {
          for (let i = 50; i < 100; i++) w.put(key(round * 100 + i), val(i, round));
        });
        // data: allocate, write, free some
        const e = a.transact(() => a.data.alloc(4n));
        a.data.write(e.start, new Uint8Array(4 * 4096).fill(round + 1));
        if (round % 2 === 1) a.transact(() => a.data.free(e.start, 2n));
        await Promise.all([a.sync(), b.sync()]);
        await a.refreshRoots();
        await b.refreshRoots();
        const ia = allItems(a);
        const ib = allItems(b);
        expect(ia.size).toBe((round + 1) * 100);
        expect(ib).toEqual(ia);
        if (round === 2 || round === 5) {
          server.requestMerge();
          await server.merge.idle();
          await a.refreshRoots();
          await b.refreshRoots();
          expect(allItems(b)).toEqual(ia);
        }
      }
      expect(server.merge.counters.merges).toBe(2);
      const st = await a.client.statfs();
      // 24 blocks allocated, 6 freed and back in a mount's data_freed or the server's data_alloc
      expect(st.free_data_blocks).toBe(free0.free_data_blocks - 18n);
      const acct = accountMeta(server);
      expect(acct.dup).toEqual([]);
      expect(acct.seen).toBe(acct.total);
      expect(st.free_meta_blocks).toBe(server.statfs().free_meta_blocks);
    }), 60_000);

  test("a mount whose socket dies mid-transaction loses only uncommitted changes", async () => {
    const v = await makeVolume("cs3");
    vols.push(v);
    const server = startServer(v, 1n);
    try {
      const a = await openStore(v);
      a.transact((w) => {
        for (let i = 0; i < 40; i++) w.put(key(i), val(i));
      });
      await a.sync();
      a.transact((w) => {
        for (let i = 40; i < 80; i++) w.put(key(i), val(i));
        w.delete(key(0));
      });
      a.abandon(); // no commit, no farewell: the server times the mount out
      const deadline = Date.now() + 10_000;
      while (server.mountedRids().length > 0 && Date.now() < deadline) await Bun.sleep(50);
      expect(server.mountedRids()).toEqual([]);
      const b = await openStore(v);
      const items = allItems(b);
      expect(items.size).toBe(40);
      expect(items.get(key(0))).toEqual(val(0));
      expect(items.has(key(40))).toBe(false);
      await b.close();
      expectBalanced(server);
    } finally {
      server.close();
    }
  }, 60_000);

  test("server restart: mounts reconnect to the new server and carry on", async () => {
    const v = await makeVolume("cs4");
    vols.push(v);
    let server = startServer(v, 1n);
    const a = await openStore(v);
    try {
      a.transact((w) => w.put(key(1), val(1)));
      await a.sync();
      a.transact((w) => w.put(key(2), val(2)));
      server.close();
      // uncommitted work stays in the mount; the next commit goes to the new server
      server = startServer(v, 2n);
      a.transact((w) => w.put(key(3), val(3)));
      await a.sync();
      expect(server.locks.ls.inRecovery).toBe(false);
      const b = await openStore(v);
      expect([...allItems(b).keys()]).toEqual([key(1), key(2), key(3)]);
      await b.close();
      await a.close();
      expectBalanced(server);
    } finally {
      server.close();
    }
  }, 60_000);
});

describe("a mount whose server runs in its process", () => {
  /** Metadata device flushes of `v` since the last call. */
  const metaFlushes = (v: Vol): number => takeFlushStats()[v.metaPath]?.flushes ?? 0;

  test("leaves its commit's flush to the server's commit: one flush less per commit, nothing lost", async () => {
    const v = await makeVolume("colocated");
    vols.push(v);
    const server = startServer(v, 1n);
    const plain = await openStore(v);
    const a = await openStore(v, { colocatedServerTerm: (dev) => server.recordsOn(dev) });
    // Watch the order on the metadata image (the I/O itself is real): whenever a super block is
    // written, every block written before it by either side must have been flushed since.
    const superOff = C.SUPER_BLKNO * C.BLOCK_SM_SIZE;
    const { writeAt, sync } = Device.prototype;
    let unflushed = 0;
    let supers = 0;
    let early = 0;
    Device.prototype.writeAt = function (this: Device, buf: Uint8Array, off: number) {
      if (this.path === v.metaPath) {
        if (off !== superOff) unflushed++;
        else if (unflushed > 0) early++;
        else supers++;
      }
      writeAt.call(this, buf, off);
    };
    Device.prototype.sync = function (this: Device) {
      sync.call(this);
      if (this.path === v.metaPath) unflushed = 0;
    };
    try {
      const flushesOf = async (s: ClientStore, base: number): Promise<number> => {
        metaFlushes(v);
        for (let i = 0; i < 6; i++) {
          s.transact((w) => w.put(key(base + i), val(base + i)));
          await s.sync();
        }
        return metaFlushes(v);
      };
      const without = await flushesOf(plain, 0);
      const withServer = await flushesOf(a, 100);
      expect(a.counters.flushesLeftToServer).toBe(6);
      expect(plain.counters.flushesLeftToServer).toBe(0);
      expect(without - withServer).toBe(6);
      expect(a.counters.resendFlushes).toBe(0);
      expect(supers).toBeGreaterThanOrEqual(12);
      expect(early).toBe(0);
    } finally {
      Device.prototype.writeAt = writeAt;
      Device.prototype.sync = sync;
      await plain.close();
      await a.close();
    }
    const b = await openStore(v);
    try {
      expect(allItems(b).size).toBe(12);
      await b.close();
      expectBalanced(server);
    } finally {
      server.close();
    }
  }, 60_000);

  test("flushes itself before its commit goes to another server (the first went away unanswered)", async () => {
    const v = await makeVolume("colocated-failover");
    vols.push(v);
    let server = startServer(v, 1n);
    const first = server;
    const a = await openStore(v, { colocatedServerTerm: (dev) => first.recordsOn(dev) });
    try {
      a.transact((w) => w.put(key(1), val(1)));
      // the commit writes its blocks unflushed and sends commit_log_trees to our server, which
      // goes away before it reads the request: the request is resent to the next server, whose
      // commit would not flush what our process wrote
      const committed = a.sync();
      expect(a.counters.flushesLeftToServer).toBe(1);
      server.close();
      server = startServer(v, 2n);
      await committed;
      expect(a.counters.resendFlushes).toBe(1);
      a.transact((w) => w.put(key(2), val(2)));
      await a.sync();
      // the new server is not ours: we flush ourselves
      expect(a.counters.flushesLeftToServer).toBe(1);
      const b = await openStore(v);
      expect([...allItems(b).keys()]).toEqual([key(1), key(2)]);
      await b.close();
      await a.close();
      expectBalanced(server);
    } finally {
      server.close();
    }
  }, 60_000);
});

describe("merge of overlapping trees", () => {
  test("two mounts' versions of the same keys, more than a scan batch each: fs_root gets each key's newest", () =>
    withTwoMounts("cs-overlap", async (server, a, b) => {
      const r = rng(5);
      for (let round = 0; round < 3; round++) {
        for (const s of [a, b, a]) {
          s.transact((w) => {
            for (let n = 0; n < 700; n++) {
              const i = r(1500);
              if (r(5) === 0) {
                if (w.lookup(key(i)) !== null) w.delete(key(i));
              } else w.put(key(i), val(i, round * 10 + r(9)));
            }
          });
          await s.sync();
        }
      }
      // what the merge must leave: per key, the version with the highest seq of fs_root and every tree
      const newest = new Map<string, { seq: bigint; flags: number; val: Uint8Array }>();
      const consider = (items: ReturnType<typeof btreeItems>) => {
        for (const it of items) {
          const o = newest.get(it.key);
          if (!o || it.seq > o.seq) newest.set(it.key, it);
        }
      };
      consider(btreeItems(server.t.cache, server.t.sup.fs_root));
      for (const { val: lt } of btreeItems(server.t.cache, server.t.sup.logs_root)) consider(btreeItems(server.t.cache, LogTrees.decode(lt).item_root));
      const want = new Map<string, Uint8Array>();
      for (const [k, it] of newest) if ((it.flags & C.ITEM_FLAG_DELETION) === 0 && k >= key(0) && k <= key(1 << 20)) want.set(k, it.val);
      expect(want.size).toBeGreaterThan(600);
      expect(server.requestMerge()).toBe(true);
      await server.merge.idle();
      expect(server.merge.lastError).toBeNull();
      expect(server.merge.counters.merges).toBe(1);
      const fsItems = btreeItems(server.t.cache, server.t.sup.fs_root).filter((i) => i.key >= key(0) && i.key <= key(1 << 20));
      expect(fsItems.every((i) => (i.flags & C.ITEM_FLAG_DELETION) === 0)).toBe(true);
      expect(new Map(fsItems.map((i) => [i.key, i.val]))).toEqual(want);
      await a.refreshRoots();
      expect(allItems(a)).toEqual(want);
    }), 60_000);
});
