// The server role over real TCP: greeting records the mount, alloc_inodes, get/commit_log_trees
// with allocator fills, get_roots, get_last_seq, statfs, farewell; restart on the same volume.
import { afterAll, describe, expect, test } from "bun:test";
import { btreeItems } from "../../src/btree/cow.ts";
import { MountedClientVal, LogTrees } from "../../src/format/log_trees.ts";
import { NET_CMD_ALLOC_INODES } from "../../src/format/net.ts";
import { keyUnpack } from "../../src/format/key.ts";
import { ipv4ToString } from "../../src/format/quorum.ts";
import { connectClient, makeVolume, removeVolume, startServer, TEST_FILL, type Vol } from "./helpers.ts";

const vols: Vol[] = [];
afterAll(() => vols.forEach(removeVolume));

describe("server requests", () => {
  test("greeting, alloc_inodes, log trees, roots, statfs, farewell, restart", async () => {
    const v = await makeVolume("srv");
    vols.push(v);
    let server = startServer(v, 1n);
    const c = await connectClient(v);
    try {
      // greeting committed a mounted_clients item with our address
      const mc = btreeItems(server.t.cache, server.t.sup.mounted_clients);
      expect(mc.length).toBe(1);
      expect(keyUnpack(mc[0]!.key).first).toBe(c.rid);
      const mcv = MountedClientVal.decode(mc[0]!.val);
      expect(ipv4ToString(mcv.addr.addr)).toBe("127.0.0.1");
      expect(mcv.flags).toBe(0);

      const next0 = server.t.sup.next_ino;
      const a = await c.allocInodes(100n);
      expect(a).toEqual({ ino: next0, nr: 100n });
      const b = await c.allocInodes(7n);
      expect(b.ino).toBe(next0 + 100n);

      const before = await c.statfs();
      const lt = await c.getLogTrees();
      expect(lt.rid).toBe(c.rid);
      expect(lt.nr).toBe(1n);
      expect(lt.get_trans_seq).toBeGreaterThan(lt.commit_trans_seq);
      expect(Number(lt.meta_avail.total_nr)).toBe(TEST_FILL.metaTarget);
      expect(lt.data_avail.total_len).toBe(TEST_FILL.dataTarget);
      // moving blocks to the mount does not change what is free
      const after = await c.statfs();
      expect(after.free_data_blocks).toBe(before.free_data_blocks);
      expect(after.total_meta_blocks).toBe(server.t.sup.total_meta_blocks);

      // the seq of an open transaction is not stable yet
      expect(await c.getLastSeq()).toBeLessThan(lt.get_trans_seq);
      // a resent get (transaction open) returns the same item
      const again = await c.getLogTrees();
      expect(again.get_trans_seq).toBe(lt.get_trans_seq);
      const commitsBefore = server.t.counters.commits;
      await c.commitLogTrees(lt);
      // the commit also opened the mount's next transaction: its get_log_trees needs no commit
      const lt2 = await c.getLogTrees();
      expect(server.t.counters.commits).toBe(commitsBefore + 1);
      expect(lt2.nr).toBe(1n);
      expect(lt2.get_trans_seq).toBeGreaterThan(lt.get_trans_seq);
      // everything before the open transaction is stable, the committed one included
      expect(await c.getLastSeq()).toBe(lt2.get_trans_seq - 1n);
      expect(await c.getLastSeq()).toBeGreaterThanOrEqual(lt.get_trans_seq);
      await c.commitLogTrees(lt2);

      const roots = await c.getRoots();
      expect(roots.logs_root.ref.blkno).toBe(server.t.stable.logs_root.ref.blkno);

      // a new server on the same volume sees everything that was committed
      const rid = c.rid;
      c.close();
      server.close();
      server = startServer(v, 2n);
      expect(server.t.sup.next_ino).toBe(next0 + 107n);
      const items = btreeItems(server.t.cache, server.t.sup.logs_root);
      expect(items.length).toBe(1);
      const stored = LogTrees.decode(items[0]!.val);
      expect(stored.commit_trans_seq).toBe(lt2.get_trans_seq);
      expect(server.mountedRids()).toEqual([rid]);
    } finally {
      c.close();
      server.close();
    }
  }, 30_000);

  test("farewell removes the mount and returns its allocators", async () => {
    const v = await makeVolume("fw");
    vols.push(v);
    const server = startServer(v, 1n);
    try {
      const free0 = server.statfs();
      const c = await connectClient(v);
      const lt = await c.getLogTrees();
      await c.commitLogTrees(lt);
      await c.farewell();
      c.close();
      expect(server.mountedRids()).toEqual([]);
      // the empty tree is gone and its allocators are back
      expect(btreeItems(server.t.cache, server.t.sup.logs_root).length).toBe(0);
      const free1 = server.statfs();
      expect(free1.free_data_blocks).toBe(free0.free_data_blocks);
      expect(server.t.stable.data_alloc.total_len).toBe(free0.free_data_blocks);
    } finally {
      server.close();
    }
  }, 30_000);

  test("bad payloads are EINVAL", async () => {
    const v = await makeVolume("inval");
    vols.push(v);
    const server = startServer(v, 1n);
    const c = await connectClient(v);
    try {
      await expect(c.net.request(NET_CMD_ALLOC_INODES, new Uint8Array(3))).rejects.toMatchObject({ code: "EINVAL" });
    } finally {
      c.close();
      server.close();
    }
  }, 30_000);
});
