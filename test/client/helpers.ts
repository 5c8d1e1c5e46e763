/** Client stores over the test volumes, and a whole-volume metadata block account. */
import { ClientStore, type ClientStoreOptions } from "../../src/item/client-store.ts";
import { ListAlloc } from "../../src/alloc/list.ts";
import { ExtentAlloc } from "../../src/alloc/extents.ts";
import { btreeExtentOps } from "../../src/alloc/btree-ops.ts";
import { btreeItems, btreeWalkNodes } from "../../src/btree/cow.ts";
import { LogTrees } from "../../src/format/log_trees.ts";
import * as C from "../../src/format/constants.ts";
import { keyPack, type PackedKey } from "../../src/format/key.ts";
import type { Server } from "../../src/server/server.ts";
import type { Vol } from "../server/helpers.ts";

export function openStore(v: Vol, o: { commitIntervalMs?: number; colocatedServerTerm?: ClientStoreOptions["colocatedServerTerm"] } = {}): Promise<ClientStore> {
  return ClientStore.open({
    metaPath: v.metaPath,
    dataPath: v.dataPath,
    commitIntervalMs: o.commitIntervalMs ?? 0,
    inoBatch: 64n,
    client: { net: { keepalive_timeout_ms: 4000, connect_delay_ms: 20 } },
    ...(o.colocatedServerTerm ? { colocatedServerTerm: o.colocatedServerTerm } : {}),
  });
}

export function key(n: number): PackedKey {
  return keyPack({ zone: C.FS_ZONE, first: BigInt(5000 + (n >> 4)), type: C.XATTR_TYPE, second: BigInt(n & 15), third: 0n, fourth: 0 });
}

export function val(n: number, gen = 0): Uint8Array {
  const len = (n * 7 + gen) % 200;
  const v = new Uint8Array(len + 4);
  new DataView(v.buffer).setUint32(0, n ^ (gen << 20), true);
  for (let i = 4; i < v.length; i++) v[i] = (n + i + gen) & 0xff;
  return v;
}

/**
 * Every metadata blkno of the volume, as the server's committed state sees it: referenced by a
 * btree, an alloc list (entries and list blocks), or free in meta_alloc. Each must appear once
 * and together they must be every block of the device.
 */
export function accountMeta(server: Server): { seen: number; dup: bigint[]; total: number; free: bigint } {
  const t = server.t;
  const sup = t.sup;
  const seen = new Set<bigint>();
  const dup: bigint[] = [];
  const add = (b: bigint) => (seen.has(b) ? dup.push(b) : seen.add(b));
  const walk = (r: { ref: { blkno: bigint; seq: bigint }; height: number }) => btreeWalkNodes(t.cache, r, (_n, ref) => void add(ref.blkno));
  const list = (h: Parameters<typeof ListAlloc.listBlknos>[1]) => {
    const l = ListAlloc.listBlknos(t.cache, h);
    l.blknos.forEach(add);
    l.listBlocks.forEach(add);
  };
  for (const r of [sup.fs_root, sup.logs_root, sup.mounted_clients, sup.srch_root, sup.log_merge, sup.data_alloc.root, sup.meta_alloc[0]!.root, sup.meta_alloc[1]!.root]) walk(r);
  for (const h of [...sup.server_meta_avail, ...sup.server_meta_freed]) list(h);
  for (const it of btreeItems(t.cache, sup.logs_root)) {
    const lt = LogTrees.decode(it.val);
    walk(lt.item_root);
    if (lt.bloom_ref.blkno !== 0n) add(lt.bloom_ref.blkno);
    list(lt.meta_avail);
    list(lt.meta_freed);
    walk(lt.data_avail.root);
    walk(lt.data_freed.root);
  }
  let free = 0n;
  for (const r of sup.meta_alloc) {
    for (const e of new ExtentAlloc(r, btreeExtentOps, t.metaBounds()).extents(t.cache)) for (let b = e.start; b < e.start + e.len; b++) add(b);
    free += r.total_len;
  }
  return { seen: seen.size, dup, total: Number(sup.total_meta_blocks) - C.META_DEV_START_BLKNO, free };
}
