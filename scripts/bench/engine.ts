/**
 * Benchmark: the COW btree engine against bun:sqlite on the same workload, in the same run.
 *
 *   bun scripts/bench/engine.ts [--items N] [--batch N] [--scan-len N] [--cache-mib N]
 *                               [--sqlite-journal wal|delete]
 *
 * Workload (defaults): 1M items with distinct 16-byte keys (first/second of the scoutfs key from
 * a counter, inserted in shuffled order) and 64-byte values; inserts in committed batches of 10k;
 * point lookups of every key (shuffled); range scans of --scan-len items from random start keys
 * until N items are read (both engines' visitors read each item's key and value); deletes of
 * every key (shuffled) in committed batches. Each engine runs in its own child process so its
 * peak RSS (process.memoryUsage().rss sampled after every batch) is its own.
 *
 * Durability is the same on both sides: every commit is on stable storage when it returns.
 * - btree: a sparse image file with a MetaCache whose clean cache is bounded to --cache-mib
 *   (default 256 MiB: the 1M-item tree is ~180 MiB of blocks, so it fits, as sqlite's ~100 MB
 *   file fits in the OS page cache). Commit = write the dirty blocks, fsync, (root), fsync.
 * - sqlite: one WITHOUT ROWID table with a BLOB primary key in a file database in the same temp
 *   dir, the same batches in transactions, prepared statements, synchronous=FULL and by default
 *   journal_mode=WAL: sqlite's fastest mode that is still durable at every COMMIT (the WAL is
 *   fsynced per commit; checkpoints fsync the database). --sqlite-journal delete selects the
 *   rollback journal (sqlite's default; also durable with FULL, and slower).
 * "written/item" is the process's write(2) bytes (/proc/self/io wchar) during inserts divided by
 * the items inserted: the write amplification of each engine at this batch size.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Database } from "bun:sqlite";
import { Device } from "../../src/block/device.ts";
import { MetaCache } from "../../src/block/cache.ts";
import type { MetaAlloc } from "../../src/alloc/types.ts";
import { ScoutfsError } from "../../src/util/errors.ts";
import { PACKED_KEY_LEN, keyPack, makeKey, type PackedKey } from "../../src/format/key.ts";
import * as B from "../../src/btree/cow.ts";

interface Opts {
  items: number;
  batch: number;
  scanLen: number;
  cacheMiB: number;
  sqliteJournal: string;
}

interface Result {
  engine: string;
  insert: number;
  lookup: number;
  scan: number;
  delete: number;
  peakRssMiB: number;
  insertWrittenPerItem: number;
  insertWriteCallsPerCommit: number;
  extra: string;
}

/** Bytes this process has passed to write(2) so far and the write calls (Linux), or 0s. */
function ioNow(): { bytes: number; calls: number } {
  try {
    const io = fs.readFileSync("/proc/self/io", "utf8");
    return { bytes: Number(/wchar:\s*(\d+)/.exec(io)?.[1] ?? 0), calls: Number(/syscw:\s*(\d+)/.exec(io)?.[1] ?? 0) };
  } catch {
    return { bytes: 0, calls: 0 };
  }
}

function parse(argv: string[]): Opts & { engine?: string; dir?: string } {
  const o: Opts & { engine?: string; dir?: string } = { items: 1_000_000, batch: 10_000, scanLen: 1000, cacheMiB: 256, sqliteJournal: "wal" };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = argv[i + 1];
    if (a === "--items") o.items = Number(v), i++;
    else if (a === "--batch") o.batch = Number(v), i++;
    else if (a === "--scan-len") o.scanLen = Number(v), i++;
    else if (a === "--cache-mib") o.cacheMiB = Number(v), i++;
    else if (a === "--sqlite-journal") o.sqliteJournal = v!, i++;
    else if (a === "--engine") o.engine = v, i++;
    else if (a === "--dir") o.dir = v, i++;
    else throw new Error(`unknown argument ${a}`);
  }
  return o;
}

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffled(n: number, seed: number): Uint32Array {
  const a = new Uint32Array(n);
  for (let i = 0; i < n; i++) a[i] = i;
  const rnd = prng(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    const t = a[i]!;
    a[i] = a[j]!;
    a[j] = t;
  }
  return a;
}

/** Item i's key: first = i / 4096, second = i % 4096 (16 meaningful bytes). */
function firstOf(i: number): number {
  return Math.floor(i / 4096);
}
function secondOf(i: number): number {
  return i % 4096;
}

/**
 * Keys and values are made per operation for both engines (holding a million of each would
 * dominate the memory being measured). The packed key is the scoutfs key (zone 4, first, type 1,
 * second) built straight from numbers; sqlite's is the same 16 bytes of first and second.
 */
const pk: number[] = new Array<number>(PACKED_KEY_LEN).fill(0);
pk[0] = 4;
pk[9] = 1;
function packedKeyOf(i: number): PackedKey {
  const f = firstOf(i);
  const s = secondOf(i);
  for (let b = 0; b < 4; b++) {
    pk[8 - b] = (f >>> (8 * b)) & 0xff;
    pk[17 - b] = (s >>> (8 * b)) & 0xff;
  }
  return String.fromCharCode.apply(null, pk);
}
function blobKeyOf(i: number): Uint8Array {
  const k = new Uint8Array(16);
  const dv = new DataView(k.buffer);
  dv.setUint32(4, firstOf(i));
  dv.setUint32(12, secondOf(i));
  return k;
}

function value(i: number): Uint8Array {
  const v = new Uint8Array(64);
  for (let b = 0; b < 64; b++) v[b] = (i + b) & 0xff;
  return v;
}

let peakRss = 0;
function sampleRss(): void {
  const r = process.memoryUsage().rss;
  if (r > peakRss) peakRss = r;
}

/** A stack of free blknos; frees this transaction become reusable after commit. */
class BenchAlloc implements MetaAlloc {
  private avail: bigint[] = [];
  private pending: bigint[] = [];
  constructor(first: bigint, end: bigint) {
    for (let b = end - 1n; b >= first; b--) this.avail.push(b);
  }
  allocMeta(): bigint {
    const b = this.avail.pop();
    if (b === undefined) throw new ScoutfsError("ENOSPC", "bench allocator is empty");
    return b;
  }
  freeMeta(blkno: bigint): void {
    this.pending.push(blkno);
  }
  commit(): void {
    for (const b of this.pending) this.avail.push(b);
    this.pending = [];
  }
}

function rate(n: number, ms: number): number {
  return Math.round((n / ms) * 1000);
}

function runBtree(o: Opts, dir: string): Result {
  const metaPath = path.join(dir, "meta.img");
  fs.writeFileSync(metaPath, "");
  fs.truncateSync(metaPath, 16 * 1024 ** 3);
  const dev = Device.open(metaPath, { write: true });
  const cache = new MetaCache(dev, 0x5c0f5n, { maxCleanBytes: o.cacheMiB << 20 });
  const alloc = new BenchAlloc(16n, BigInt((16 * 1024 ** 3) / 65536));
  const w = { cache, alloc };
  const root = B.emptyRoot();
  const n = o.items;
  const keyOf = packedKeyOf;
  sampleRss();
  const commit = () => {
    cache.commit(() => {});
    alloc.commit();
    sampleRss();
  };

  let order = shuffled(n, 1);
  const w0 = ioNow();
  let t = performance.now();
  for (let i = 0; i < n; i++) {
    const k = order[i]!;
    B.btreeInsert(w, root, keyOf(k), 1n, 0, value(k));
    if ((i + 1) % o.batch === 0) commit();
  }
  commit();
  const insert = rate(n, performance.now() - t);
  const w1 = ioNow();
  const insertWrittenPerItem = Math.round((w1.bytes - w0.bytes) / n);
  const insertWriteCallsPerCommit = Math.round((w1.calls - w0.calls) / Math.ceil(n / o.batch));
  const blocksWritten = cache.counters.written;
  const rssAfterInsert = Math.round(peakRss / 1024 / 1024);

  order = shuffled(n, 2);
  t = performance.now();
  let found = 0;
  for (let i = 0; i < n; i++) {
    if (B.btreeLookup(cache, root, keyOf(order[i]!)) !== null) found++;
    if ((i + 1) % o.batch === 0) sampleRss();
  }
  const lookup = rate(n, performance.now() - t);
  if (found !== n) throw new Error(`btree lookups found ${found} of ${n}`);

  const rnd = prng(3);
  t = performance.now();
  let scanned = 0;
  while (scanned < n) {
    const start = Math.floor(rnd() * (n - o.scanLen));
    let c = 0;
    B.btreeScan(cache, root, keyOf(start), keyOf(start + o.scanLen - 1), (it) => {
      if (it.key.length === PACKED_KEY_LEN && it.val.length === 64) c++;
    });
    if (c !== o.scanLen) throw new Error(`btree scan read ${c} of ${o.scanLen}`);
    scanned += c;
  }
  const scan = rate(scanned, performance.now() - t);
  sampleRss();
  const rssAfterReads = Math.round(peakRss / 1024 / 1024);

  order = shuffled(n, 4);
  t = performance.now();
  for (let i = 0; i < n; i++) {
    B.btreeDelete(w, root, keyOf(order[i]!));
    if ((i + 1) % o.batch === 0) commit();
  }
  commit();
  const del = rate(n, performance.now() - t);
  if (root.height !== 0) throw new Error("btree not empty after deleting everything");
  dev.close();
  return {
    engine: "scoutfs btree",
    insert,
    lookup,
    scan,
    delete: del,
    peakRssMiB: Math.round(peakRss / 1024 / 1024),
    insertWrittenPerItem,
    insertWriteCallsPerCommit,
    extra: `clean cache ${o.cacheMiB} MiB; ${blocksWritten} blocks written by inserts, ${cache.counters.written} in all; peak RSS after inserts ${rssAfterInsert} MiB, after reads ${rssAfterReads} MiB`,
  };
}

function runSqlite(o: Opts, dir: string): Result {
  const db = new Database(path.join(dir, "bench.sqlite"), { create: true });
  const mode = (db.query(`PRAGMA journal_mode=${o.sqliteJournal === "delete" ? "DELETE" : "WAL"}`).get() as { journal_mode: string }).journal_mode;
  db.run("PRAGMA synchronous=FULL");
  const sync = (db.query("PRAGMA synchronous").get() as { synchronous: number }).synchronous;
  if (sync !== 2) throw new Error(`sqlite synchronous is ${sync}, not FULL`);
  db.run("CREATE TABLE t (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID");
  const ins = db.prepare("INSERT INTO t (k, v) VALUES (?, ?)");
  const get = db.prepare("SELECT v FROM t WHERE k = ?");
  const scanQ = db.prepare("SELECT k, v FROM t WHERE k >= ? AND k <= ? ORDER BY k");
  const del = db.prepare("DELETE FROM t WHERE k = ?");
  const n = o.items;
  const keyOf = blobKeyOf;
  sampleRss();
  const batch = (from: number, order: Uint32Array, fn: (k: number) => void) => {
    const end = Math.min(n, from + o.batch);
    db.run("BEGIN");
    for (let i = from; i < end; i++) fn(order[i]!);
    db.run("COMMIT");
    sampleRss();
  };

  let order = shuffled(n, 1);
  const w0 = ioNow();
  let t = performance.now();
  for (let i = 0; i < n; i += o.batch) batch(i, order, (k) => ins.run(keyOf(k), value(k)));
  const insert = rate(n, performance.now() - t);
  const w1 = ioNow();
  const insertWrittenPerItem = Math.round((w1.bytes - w0.bytes) / n);
  const insertWriteCallsPerCommit = Math.round((w1.calls - w0.calls) / Math.ceil(n / o.batch));

  order = shuffled(n, 2);
  t = performance.now();
  let found = 0;
  for (let i = 0; i < n; i++) {
    if (get.get(keyOf(order[i]!)) !== null) found++;
    if ((i + 1) % o.batch === 0) sampleRss();
  }
  const lookup = rate(n, performance.now() - t);
  if (found !== n) throw new Error(`sqlite lookups found ${found} of ${n}`);

  const rnd = prng(3);
  t = performance.now();
  let scanned = 0;
  while (scanned < n) {
    const start = Math.floor(rnd() * (n - o.scanLen));
    let c = 0;
    for (const row of scanQ.iterate(keyOf(start), keyOf(start + o.scanLen - 1)) as IterableIterator<{ k: Uint8Array; v: Uint8Array }>) {
      if (row.k.length === 16 && row.v.length === 64) c++;
    }
    if (c !== o.scanLen) throw new Error(`sqlite scan read ${c} of ${o.scanLen}`);
    scanned += c;
  }
  const scan = rate(scanned, performance.now() - t);
  sampleRss();

  order = shuffled(n, 4);
  t = performance.now();
  for (let i = 0; i < n; i += o.batch) batch(i, order, (k) => del.run(keyOf(k)));
  const delRate = rate(n, performance.now() - t);
  const left = (db.query("SELECT count(*) AS c FROM t").get() as { c: number }).c;
  if (left !== 0) throw new Error(`sqlite has ${left} rows after deleting everything`);
  db.close();
  return {
    engine: "bun:sqlite",
    insert,
    lookup,
    scan,
    delete: delRate,
    peakRssMiB: Math.round(peakRss / 1024 / 1024),
    insertWrittenPerItem,
    insertWriteCallsPerCommit,
    extra: `journal_mode=${mode}, synchronous=FULL`,
  };
}

function fmt(n: number): string {
  return n.toLocaleString("en-US");
}

function main(): void {
  const o = parse(process.argv.slice(2));
  for (const i of [0, 1, 4095, 4096, 999_999, 123_456_789]) {
    if (packedKeyOf(i) !== keyPack(makeKey(4, BigInt(firstOf(i)), 1, BigInt(secondOf(i))))) throw new Error(`packedKeyOf(${i}) is wrong`);
  }
  if (o.engine) {
    const r = o.engine === "btree" ? runBtree(o, o.dir!) : runSqlite(o, o.dir!);
    process.stdout.write(JSON.stringify(r) + "\n");
    return;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "scoutfs-bench-engine-"));
  try {
    const results: Result[] = [];
    for (const engine of ["btree", "sqlite"]) {
      const args = [process.execPath, import.meta.path, "--engine", engine, "--dir", dir, "--items", String(o.items), "--batch", String(o.batch), "--scan-len", String(o.scanLen), "--cache-mib", String(o.cacheMiB), "--sqlite-journal", o.sqliteJournal];
      const p = Bun.spawnSync(args, { stdout: "pipe", stderr: "inherit" });
      if (p.exitCode !== 0) throw new Error(`${engine} run failed (exit ${p.exitCode})`);
      results.push(JSON.parse(p.stdout.toString().trim().split("\n").pop()!) as Result);
    }
    const [bt, sq] = results as [Result, Result];
    console.log(`engine benchmark: ${fmt(o.items)} items, 16-byte keys (shuffled), 64-byte values, ${fmt(o.batch)} per commit, scans of ${o.scanLen}`);
    console.log(`temp dir ${dir} (${os.cpus().length} cpus), load average ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}`);
    const rows: [string, string, string, string][] = [["op (items/s)", bt.engine, sq.engine, "ratio"]];
    for (const op of ["insert", "lookup", "scan", "delete"] as const) {
      rows.push([op, fmt(bt[op]), fmt(sq[op]), (bt[op] / sq[op]).toFixed(2)]);
    }
    rows.push(["peak RSS (MiB)", fmt(bt.peakRssMiB), fmt(sq.peakRssMiB), ""]);
    rows.push(["write calls/commit", fmt(bt.insertWriteCallsPerCommit), fmt(sq.insertWriteCallsPerCommit), ""]);
    rows.push(["written/item (B)", fmt(bt.insertWrittenPerItem), fmt(sq.insertWrittenPerItem), (bt.insertWrittenPerItem / Math.max(1, sq.insertWrittenPerItem)).toFixed(2)]);
    const w = [0, 1, 2, 3].map((c) => Math.max(...rows.map((r) => r[c]!.length)));
    for (const r of rows) console.log(r.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("  "));
    console.log(`btree: ${bt.extra}`);
    console.log(`sqlite: ${sq.extra}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main();
