// How the server shares a small device's metadata blocks (src/server/trans.ts MetaReserve,
// docs/cluster.md "Metadata space"), on a volume made by the REAL mkfs (v2-1slot: 1033 blocks,
// 1024 of them in server_meta_avail and 2 in meta_alloc), over real TCP:
// - the server gives what its own list holds beyond its target back to meta_alloc and fills a
//   mount from meta_alloc beyond its reserve; a second mount gets half of what is left, a mount
//   gets nothing (not an error) when nothing is left, and what a mount frees comes back to it;
// - a merge that runs out of room stops with ENOSPC at the reserve's floor instead of spinning;
//   the server keeps answering, nothing is lost, and once room comes back a merge completes.
// After every step every metadata block is referenced or free exactly once.
import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { Device } from "../../src/block/device.ts";
import { readSuper } from "../../src/block/super.ts";
import * as C from "../../src/format/constants.ts";
import { keyPack, type PackedKey } from "../../src/format/key.ts";
import type { Server } from "../../src/server/server.ts";
import type { ClientStore } from "../../src/item/client-store.ts";
import { ScoutfsError } from "../../src/util/errors.ts";
import { fixtureImage, tempDir } from "../helpers/images.ts";
import { rehomeQuorumSlots } from "../mount/fixture-quorum.ts";
import { accountMeta, openStore } from "../client/helpers.ts";
import { connectClient, startServer, TEST_FILL, type Vol } from "./helpers.ts";

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

async function fixtureVolume(name: string): Promise<Vol> {
  const dir = tempDir(`scoutfs-reserve-${name}-`);
  dirs.push(dir);
  const metaPath = fixtureImage(name, "meta", dir);
  const dataPath = fixtureImage(name, "data", dir);
  const ports = await rehomeQuorumSlots(metaPath);
  const dev = Device.open(metaPath);
  try {
    return { dir, metaPath, dataPath, port: ports.get(0)!, fsid: readSuper(dev, { meta: true }).hdr.fsid };
  } finally {
    dev.close();
  }
}

function expectBalanced(server: Server): void {
  const a = accountMeta(server);
  expect(a.dup).toEqual([]);
  expect(a.seen).toBe(a.total);
}

function key(n: number): PackedKey {
  return keyPack({ zone: C.FS_ZONE, first: BigInt(5000 + (n >> 4)), type: C.XATTR_TYPE, second: BigInt(n & 15), third: 0n, fourth: 0 });
}

function bigVal(n: number): Uint8Array {
  const v = new Uint8Array(800);
  v.fill(n & 0xff);
  new DataView(v.buffer).setUint32(0, n, true);
  return v;
}

/** Admit a transaction as the POSIX layer does (ItemStore.hold), waiting for commits; ENOSPC throws. */
async function admitted(s: ClientStore, freeing = false): Promise<void> {
  for (let p = s.hold(freeing); p !== null; p = s.hold(freeing)) await p;
}

describe("metadata reserve on a small real-mkfs volume", () => {
  test("the server trims its own list, fills mounts beyond its reserve, shares with a second mount", async () => {
    const v = await fixtureVolume("v2-1slot");
    {
      const dev = Device.open(v.metaPath);
      const sup = readSuper(dev, { meta: true });
      dev.close();
      expect(sup.server_meta_avail[0]!.total_nr).toBe(1024n);
      expect(sup.meta_alloc[0]!.total_len + sup.meta_alloc[1]!.total_len).toBe(2n);
    }
    const server = startServer(v, 1n);
    const r = server.t.reserve;
    expect(r.ownTarget).toBe(129);
    expect(r.keep).toBe(258n);
    const c1 = await connectClient(v);
    const c2 = await connectClient(v);
    try {
      // the greeting's transaction already gave the list's excess back to meta_alloc
      expect(server.t.counters.metaTrimmed).toBeGreaterThan(800);
      const own = server.t.sup.server_meta_avail[0]!.first_nr;
      expect(own).toBeLessThanOrEqual(r.ownTarget);
      expect(own).toBeGreaterThanOrEqual(r.ownLow);
      expectBalanced(server);

      // a mount alone gets everything beyond the reserve (up to its fill target)
      const spare = Number(server.t.metaAllocFree() - r.keep);
      expect(spare).toBeGreaterThan(500);
      const lt1 = await c1.getLogTrees();
      // (its transaction first recycles the server's freed list of the last commit: a few more)
      expect(Number(lt1.meta_avail.total_nr)).toBeGreaterThanOrEqual(spare);
      expect(Number(lt1.meta_avail.total_nr)).toBeLessThan(spare + 16);
      expect(server.t.metaAllocFree()).toBe(r.keep);
      expect(lt1.meta_avail.flags & C.ALLOC_FLAG_LOW).toBe(C.ALLOC_FLAG_LOW);
      // a second mount finds nothing beyond the reserve: an empty list, not an error
      // (its own transaction recycles a few freed blocks of the last commit: it gets half of them)
      const lt2 = await c2.getLogTrees();
      expect(lt2.meta_avail.total_nr).toBeLessThan(16n);
      expect(server.t.metaAllocFree()).toBeLessThan(r.keep + 16n);
      expectBalanced(server);

      // the first leaves: its blocks come back; the second now gets half (another mount is open)
      await c1.commitLogTrees(lt1);
      await c1.farewell();
      c1.close();
      const back = Number(server.t.metaAllocFree() - r.keep);
      expect(back).toBeGreaterThanOrEqual(Number(lt1.meta_avail.total_nr));
      await c2.commitLogTrees(lt2);
      const lt2b = await c2.getLogTrees();
      // alone again: everything beyond the reserve
      expect(Number(lt2b.meta_avail.total_nr)).toBeGreaterThanOrEqual(back);
      expect(server.t.metaAllocFree()).toBe(r.keep);
      expectBalanced(server);
      await c2.commitLogTrees(lt2b);
      const c3 = await connectClient(v);
      const lt3 = await c3.getLogTrees();
      expect(lt3.meta_avail.total_nr).toBeLessThan(16n);
      await c3.commitLogTrees(lt3);
      await c3.farewell();
      c3.close();
      await c2.farewell();
    } finally {
      c1.close();
      c2.close();
      server.close();
    }
  }, 30_000);

  test("a merge without room stops with ENOSPC; the server keeps serving, nothing is lost; room comes back", async () => {
    const v = await fixtureVolume("v2-1slot");
    const server = startServer(v, 1n, { fill: { ...TEST_FILL, metaTarget: 8185, metaLo: 4092 }, mergeRoundTimeoutMs: 200 });
    const a = await openStore(v);
    // an idle mount with an open tree that never commits: no merge round can reach its cut, so
    // the writer's finalized trees pile up unmerged (as behind a mount that stopped answering)
    const idle = await connectClient(v);
    const idleLt = await idle.getLogTrees();
    let written = 0;
    let aOpen = true;
    try {
      let err: unknown = null;
      for (; written < 200_000; written++) {
        try {
          await admitted(a);
        } catch (e) {
          err = e;
          break;
        }
        const n = written;
        a.transact((w) => w.put(key(n), bigVal(n)));
      }
      expect(err).toBeInstanceOf(ScoutfsError);
      expect((err as ScoutfsError).code).toBe("ENOSPC");
      expect(written).toBeGreaterThan(10_000); // ~8 MB of items in some 150 leaves
      await a.sync();
      expect(server.merge.counters.merges).toBe(0);
      expectBalanced(server);

      // the idle mount leaves: the next round reaches its cut, and the merge runs out of room
      await idle.commitLogTrees(idleLt);
      await idle.farewell();
      idle.close();
      const errors = server.merge.counters.errors;
      expect(server.requestMerge()).toBe(true);
      await server.merge.idle();
      expect(server.merge.counters.errors).toBe(errors + 1);
      expect((server.merge.lastError as ScoutfsError).code).toBe("ENOSPC");
      expect(server.merge.counters.merges).toBe(0);
      // refused before writing anything: no copies in fs_root, the server's reserve is intact
      expect(server.merge.counters.itemsMerged).toBe(0);
      expect(BigInt(server.t.sup.server_meta_avail[0]!.first_nr) + server.t.metaAllocFree()).toBeGreaterThanOrEqual(r(server).keep);
      // the server still serves: commits, reads, removals
      await a.refreshRoots();
      for (let n = 0; n < written; n += 97) expect(a.reader.lookup(key(n))).toEqual(bigVal(n));
      // four in five are removed (deletion items: a removal may use the mount's last reserve,
      // and what its commits free comes back to it)
      const kept = (n: number) => n % 5 === 0;
      for (let from = 0; from < written; from += 500) {
        await admitted(a, true);
        a.transact((w) => {
          for (let n = from; n < Math.min(written, from + 500); n++) if (!kept(n)) w.delete(key(n));
        });
      }
      await a.sync();
      expectBalanced(server);

      // now the merge fits in the server's room, and completes
      const free0 = serverRoom(server);
      expect(server.requestMerge()).toBe(true);
      await server.merge.idle();
      expect(server.merge.counters.merges).toBe(1);
      // the merged trees are freed (into the server's freed list, back in meta_alloc after the
      // next commit): room came back, beyond the reserve
      expect(serverRoom(server)).toBeGreaterThan(free0 + 100n);
      expect(serverRoom(server)).toBeGreaterThan(r(server).keep + BigInt(r(server).ownTarget) + 100n);
      expectBalanced(server);
      await a.refreshRoots();
      for (let n = 0; n < written; n += 7) expect(a.reader.lookup(key(n))).toEqual(kept(n) ? bigVal(n) : null);
      // and the mount gets it at its next commit
      await admitted(a);
      a.transact((w) => w.put(key(written), bigVal(written)));
      await a.sync();
      expect(a.lt.meta_avail.total_nr).toBeGreaterThan(100n);
      aOpen = false;
      await a.close();
      expectBalanced(server);
    } finally {
      idle.close();
      if (aOpen) a.abandon();
      server.close();
    }
  }, 60_000);
});

function r(server: Server) {
  return server.t.reserve;
}

/** Free metadata blocks the server holds: meta_alloc and its own lists. */
function serverRoom(server: Server): bigint {
  const s = server.t.sup;
  let n = server.t.metaAllocFree();
  for (const h of [...s.server_meta_avail, ...s.server_meta_freed]) n += h.total_nr;
  return n;
}
