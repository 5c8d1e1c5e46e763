#!/usr/bin/env bun
/**
 * FUSE frontend benchmark: memfs served by our library (in a child process) against tmpfs, a
 * kernel filesystem with no userspace round trip, measured in the same run on the same machine.
 *
 *   bun scripts/bench/fuse.ts [--files N] [--seq-mib N] [--configs async:1,async:2,worker:1,worker:2]
 *
 * Metadata: create (open O_CREAT + close), stat, rename and unlink of N files in one directory,
 * reported as µs per operation. memfs runs with cache timeouts of 0, so every operation reaches
 * userspace and the difference to tmpfs is the cost of the frontend plus memfs (which is tiny).
 * Data: 1 MiB sequential overwrites of a file written once before (so memfs's own page faults
 * are not counted) then reads (page cache dropped between, read-ahead 1 MiB) in MB/s, and 4 KiB random
 * reads of a cached 64 MiB file in IOPS (page cache speed: the frontend is not involved once the
 * pages are cached, which is the point of letting the kernel cache).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const ROOT = path.join(import.meta.dir, "..", "..");
const args = process.argv.slice(2);
function opt(name: string, dflt: string): string {
  const k = args.indexOf(name);
  return k >= 0 && args[k + 1] !== undefined ? args[k + 1]! : dflt;
}
const FILES = Number(opt("--files", "20000"));
const SEQ_MIB = Number(opt("--seq-mib", "512"));
const CONFIGS = opt("--configs", "async:1,async:2,worker:1,worker:2").split(",");
const READ_AHEAD_KB = opt("--read-ahead-kb", "1024");
const RAND_FILE_MIB = 64;
const RAND_READS = 100_000;

interface Row {
  name: string;
  create: number;
  stat: number;
  rename: number;
  unlink: number;
  writeMBs: number;
  readMBs: number;
  randIops: number;
}

function usPerOp(fn: (k: number) => void, n: number): number {
  const t0 = performance.now();
  for (let k = 0; k < n; k++) fn(k);
  return ((performance.now() - t0) * 1000) / n;
}

function dropCaches(): void {
  try {
    fs.writeFileSync("/proc/sys/vm/drop_caches", "1");
  } catch {
    // not root: reads may come from the page cache
  }
}

function measure(name: string, dir: string): Row {
  const d = path.join(dir, "meta");
  fs.mkdirSync(d);
  const names = Array.from({ length: FILES }, (_, k) => path.join(d, `file-${k}`));
  const renamed = names.map((n) => `${n}.r`);
  const create = usPerOp((k) => fs.closeSync(fs.openSync(names[k]!, "w")), FILES);
  const stat = usPerOp((k) => fs.statSync(names[k]!), FILES);
  const rename = usPerOp((k) => fs.renameSync(names[k]!, renamed[k]!), FILES);
  const unlink = usPerOp((k) => fs.unlinkSync(renamed[k]!), FILES);
  fs.rmdirSync(d);

  const MiB = 1 << 20;
  const block = Buffer.alloc(MiB, 0x5a);
  const seq = path.join(dir, "seq");
  let fd = fs.openSync(seq, "w");
  // First fill the file once (memory the filesystem must fault in: not the frontend's cost),
  // then time overwrites of it.
  for (let k = 0; k < SEQ_MIB; k++) fs.writeSync(fd, block, 0, MiB, k * MiB);
  fs.fsyncSync(fd);
  let t0 = performance.now();
  for (let k = 0; k < SEQ_MIB; k++) fs.writeSync(fd, block, 0, MiB, k * MiB);
  fs.fsyncSync(fd);
  const writeMBs = (SEQ_MIB * MiB) / 1e6 / ((performance.now() - t0) / 1000);
  fs.closeSync(fd);
  dropCaches();
  fd = fs.openSync(seq, "r");
  t0 = performance.now();
  for (let k = 0; k < SEQ_MIB; k++) fs.readSync(fd, block, 0, MiB, k * MiB);
  const readMBs = (SEQ_MIB * MiB) / 1e6 / ((performance.now() - t0) / 1000);
  fs.closeSync(fd);
  fs.unlinkSync(seq);

  const rnd = path.join(dir, "rand");
  fs.writeFileSync(rnd, Buffer.alloc(RAND_FILE_MIB * MiB, 1));
  fd = fs.openSync(rnd, "r");
  const small = Buffer.alloc(4096);
  for (let k = 0; k < RAND_FILE_MIB * 256; k++) fs.readSync(fd, small, 0, 4096, k * 4096); // warm the cache
  let seed = 12345;
  t0 = performance.now();
  for (let k = 0; k < RAND_READS; k++) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    fs.readSync(fd, small, 0, 4096, (seed % (RAND_FILE_MIB * 256)) * 4096);
  }
  const randIops = RAND_READS / ((performance.now() - t0) / 1000);
  fs.closeSync(fd);
  fs.unlinkSync(rnd);
  return { name, create, stat, rename, unlink, writeMBs, readMBs, randIops };
}

async function withMemfs(reader: string, readers: string): Promise<Row> {
  const mnt = fs.mkdtempSync(path.join(os.tmpdir(), "fuse-bench-"));
  const proc = Bun.spawn([process.execPath, path.join(ROOT, "src/fuse/memfs-main.ts"), mnt, "--timeout", "0", "--reader", reader, "--readers", readers, "--read-ahead-kb", READ_AHEAD_KB], {
    stdout: "pipe",
    stderr: "inherit",
    env: { ...process.env, MEMFS_COUNTERS: "" },
  });
  const rd = (proc.stdout as ReadableStream<Uint8Array>).getReader();
  const first = await rd.read();
  if (first.done || !new TextDecoder().decode(first.value).startsWith("ready")) throw new Error("memfs did not start");
  try {
    return measure(`memfs ${reader}×${readers}`, mnt);
  } finally {
    Bun.spawnSync(["umount", mnt]);
    await proc.exited;
    fs.rmdirSync(mnt);
  }
}

function withTmpfs(): Row {
  const mnt = fs.mkdtempSync(path.join(os.tmpdir(), "tmpfs-bench-"));
  const r = Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=4g", "benchtmpfs", mnt]);
  if (r.exitCode !== 0) throw new Error(`mount tmpfs: ${r.stderr.toString()}`);
  try {
    return measure("tmpfs (kernel floor)", mnt);
  } finally {
    Bun.spawnSync(["umount", mnt]);
    fs.rmdirSync(mnt);
  }
}

const rows: Row[] = [withTmpfs()];
for (const c of CONFIGS) {
  const [reader, n] = c.split(":");
  rows.push(await withMemfs(reader!, n ?? "2"));
}

const floor = rows[0]!;
const f1 = (x: number) => x.toFixed(1);
const f0 = (x: number) => Math.round(x).toLocaleString("en-US");
console.log(`\nFUSE frontend benchmark: ${FILES} files, ${SEQ_MIB} MiB sequential, ${RAND_READS} random 4 KiB reads; ${os.cpus().length} CPUs, ${os.release()}, bun ${Bun.version}`);
const header = ["", "create µs", "stat µs", "rename µs", "unlink µs", "added µs/op", "seq write MB/s", "seq read MB/s", "4K rand read IOPS"];
const table = rows.map((r) => {
  const added = (r.create - floor.create + r.stat - floor.stat + r.rename - floor.rename + r.unlink - floor.unlink) / 4;
  return [r.name, f1(r.create), f1(r.stat), f1(r.rename), f1(r.unlink), r === floor ? "-" : f1(added), f0(r.writeMBs), f0(r.readMBs), f0(r.randIops)];
});
const widths = header.map((h, k) => Math.max(h.length, ...table.map((t) => t[k]!.length)));
const line = (cells: string[]) => cells.map((c, k) => (k === 0 ? c.padEnd(widths[k]!) : c.padStart(widths[k]!))).join("  ");
console.log(line(header));
for (const t of table) console.log(line(t));
