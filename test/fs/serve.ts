#!/usr/bin/env bun
/**
 * Serve the scoutfs filesystem (src/fs/fuse.ts) at a mount point until unmounted, for the mount
 * tests: `bun test/fs/serve.ts MNT [--store mem|real] [--images DIR] [--timeout S]`.
 *
 * --store real (default when src/item/store.ts exists): a fresh volume made by our mkfs on sparse
 * image files in DIR (reused if they exist: remount), opened with the standalone ItemStore over the btree engine. --store mem:
 * the in-memory test store. Prints "ready <json>" once mounted; exits 0 when unmounted.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { ScoutfsFuse, fsEnsureRoot } from "../../src/fs/fuse.ts";
import { mount } from "../../src/fuse/mount.ts";
import { initFlagNames } from "../../src/fuse/types.ts";
import type { ItemStore } from "../../src/item/types.ts";
import { MemStore } from "../helpers/memstore.ts";

const args = process.argv.slice(2);
let mnt: string | undefined;
let storeKind = "auto";
let images = "";
let timeout = 1;
for (let k = 0; k < args.length; k++) {
  const a = args[k]!;
  if (a === "--store") storeKind = args[++k]!;
  else if (a === "--images") images = args[++k]!;
  else if (a === "--timeout") timeout = Number(args[++k]);
  else mnt = a;
}
if (mnt === undefined) throw new Error("usage: serve.ts MNT [--store mem|real] [--images DIR]");

const BLOCK = 4096;
let store: ItemStore;
let statfs: () => { blocks: number; bfree: number; bavail: number; files: number; ffree: number; bsize: number; namelen: number; frsize: number };
let kind = storeKind;
let realMod: typeof import("../../src/item/store.ts") | null = null;
if (storeKind !== "mem") {
  try {
    realMod = await import("../../src/item/store.ts");
  } catch {
    realMod = null;
  }
}
if (realMod !== null && typeof realMod.StandaloneStore?.open === "function") {
  kind = "real";
  const { mkfs, parseQuorumSlot } = await import("../../src/offline/mkfs.ts");
  const dir = images || fs.mkdtempSync("/tmp/scoutfs-fs-");
  const metaPath = path.join(dir, "meta.img");
  const dataPath = path.join(dir, "data.img");
  if (!fs.existsSync(metaPath)) {
    for (const [p, mib] of [[metaPath, 256], [dataPath, 1024]] as const) {
      fs.writeFileSync(p, "");
      fs.truncateSync(p, mib << 20);
    }
    mkfs({ metaPath, dataPath, allowSmallSize: true, slots: [parseQuorumSlot("0,127.0.0.1,42000")] }, { out: () => {}, warn: () => {} });
  }
  const s = realMod.StandaloneStore.open({ metaPath, dataPath });
  store = s;
  const total = Number(s.sup.total_data_blocks);
  statfs = () => {
    const free = Number(s.freeBlocks().data);
    return { blocks: total, bfree: free, bavail: free, files: 2 ** 32, ffree: 2 ** 32, bsize: BLOCK, namelen: 255, frsize: BLOCK };
  };
  setInterval(() => void s.sync().catch(() => {}), 2000).unref();
} else {
  kind = "mem";
  const s = new MemStore({ dataBlocks: 1n << 18n });
  fsEnsureRoot(s);
  store = s;
  statfs = () => {
    const total = Number(s.totalDataBlocks);
    const free = Number(s.freeBlocks());
    return { blocks: total, bfree: free, bavail: free, files: 2 ** 32, ffree: 2 ** 32, bsize: BLOCK, namelen: 255, frsize: BLOCK };
  };
  setInterval(() => s.commit(), 1000).unref();
}

const sfs = new ScoutfsFuse(store, { entryTimeout: timeout, attrTimeout: timeout, statfs, deleteOrphansOnInit: true });
const m = await mount(sfs, mnt, { subtype: "scoutfs", fsname: "scoutfs", handleSignals: true, onSignal: () => process.exit(0) });
process.stdout.write(`ready ${JSON.stringify({ ...m.init, store: kind, enabledFlagNames: initFlagNames(m.init.enabledFlags) })}\n`);
await m.closed;
await store.sync();
process.stderr.write(`counters ${JSON.stringify(sfs.counters)}\n`);
process.exit(0);
