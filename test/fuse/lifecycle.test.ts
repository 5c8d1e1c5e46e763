// Mount lifecycle and the parts of the library the checklist does not reach: unmount from
// outside, SIGTERM, the worker and thread-pool readers (the checklist uses the default poll
// reader), the poll reader's waiting (event loop kept running, idle hand-over to its watcher
// thread), writeback cache, and kernel notifications (inval_inode, inval_entry, delete) from a
// filesystem served in this very process (the test then uses only async fs calls on the mount,
// which Bun runs off the event loop).
import { afterAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import type { Filesystem, RequestContext } from "../../src/fuse/filesystem.ts";
import type { PollReader } from "../../src/fuse/poll-reader.ts";
import { SLOTS } from "../../src/fuse/worker-reader.ts";
import { Memfs } from "../../src/fuse/memfs.ts";
import { type FuseMount, mount } from "../../src/fuse/mount.ts";
import { isMounted, type MemfsServer, serverStats, sh, startMemfs } from "./helpers.ts";
import { expectPrivilegesRemoved } from "../helpers/privs.ts";

const servers: MemfsServer[] = [];
const inproc: FuseMount[] = [];

afterAll(async () => {
  for (const m of inproc) await m.unmount().catch(() => {});
  for (const s of servers) await s.stop();
}, 30_000);

async function exitsWithin(s: MemfsServer, ms: number): Promise<number | "timeout"> {
  return Promise.race([s.proc.exited, Bun.sleep(ms).then(() => "timeout" as const)]);
}

test("an unmount from outside ends the server cleanly", async () => {
  const s = await startMemfs();
  servers.push(s);
  fs.writeFileSync(path.join(s.mnt, "f"), "x");
  expect(sh(`umount ${s.mnt}`).code).toBe(0);
  expect(await exitsWithin(s, 5000)).toBe(0);
  expect(isMounted(s.mnt)).toBe(false);
  expect(s.stderr()).toContain("counters");
});

test("SIGTERM unmounts and exits 0", async () => {
  const s = await startMemfs();
  servers.push(s);
  fs.mkdirSync(path.join(s.mnt, "d"));
  s.proc.kill("SIGTERM");
  expect(await exitsWithin(s, 5000)).toBe(0);
  expect(isMounted(s.mnt)).toBe(false);
});

test("the thread-pool (async) reader serves the same filesystem", async () => {
  const s = await startMemfs(["--reader", "async", "--readers", "2"]);
  servers.push(s);
  const f = path.join(s.mnt, "w");
  const data = Buffer.alloc(3 << 20, 9);
  fs.writeFileSync(f, data);
  expect(fs.readFileSync(f).equals(data)).toBe(true);
  for (let k = 0; k < 200; k++) fs.writeFileSync(path.join(s.mnt, `n${k}`), `${k}`);
  expect(fs.readdirSync(s.mnt).length).toBe(201);
  expect(sh(`umount ${s.mnt}`).code).toBe(0);
  expect(await exitsWithin(s, 5000)).toBe(0);
});

test("the worker reader with several threads serves the same filesystem under parallel load", async () => {
  const s = await startMemfs(["--reader", "worker", "--readers", "3"]);
  servers.push(s);
  // Eight shell processes at once: requests arrive in bursts, from several reader threads.
  const r = sh(
    `cd ${s.mnt} && for p in 1 2 3 4 5 6 7 8; do (mkdir d$p && for k in $(seq 1 50); do echo $p$k > d$p/f$k; cat d$p/f$k > /dev/null; mv d$p/f$k d$p/g$k; done) & done; wait`,
  );
  expect(r.code).toBe(0);
  for (let p = 1; p <= 8; p++) {
    const names = fs.readdirSync(path.join(s.mnt, `d${p}`));
    expect(names.length).toBe(50);
    expect(fs.readFileSync(path.join(s.mnt, `d${p}`, "g50"), "utf8")).toBe(`${p}50\n`);
  }
  expect(sh(`umount ${s.mnt}`).code).toBe(0);
  expect(await exitsWithin(s, 5000)).toBe(0);
});

test("cached pages are served by the kernel: no READ or GETATTR per read(2), even with cache timeouts of 0", async () => {
  const s = await startMemfs(["--timeout", "0"]);
  servers.push(s);
  expect((s.init.enabledFlagNames as string[]).includes("AUTO_INVAL_DATA")).toBe(false);
  const f = path.join(s.mnt, "cached");
  fs.writeFileSync(f, Buffer.alloc(1 << 20, 7));
  const fd = fs.openSync(f, "r");
  const b = Buffer.alloc(4096);
  for (let k = 0; k < 256; k++) fs.readSync(fd, b, 0, 4096, k * 4096);
  await serverStats(s);
  for (let k = 0; k < 256; k++) fs.readSync(fd, b, 0, 4096, ((k * 37) % 256) * 4096);
  const st = await serverStats(s);
  fs.closeSync(fd);
  expect(b[0]).toBe(7);
  expect(st.opcodes.READ ?? 0).toBe(0);
  expect(st.opcodes.GETATTR ?? 0).toBe(0);
  // A write through the mount is still seen by every reader (the kernel updates its own pages).
  fs.writeFileSync(f, "fresh");
  expect(fs.readFileSync(f, "utf8")).toBe("fresh");
});

for (const reader of ["poll", "worker"] as const)
test(`the ${reader} reader lends buffers to writes without ever running out: held writes never stop it from reading`, async () => {
  const mnt = fs.mkdtempSync(path.join(os.tmpdir(), "fuse-lend-"));
  // Every WRITE waits until someone looks up "unblock": a filesystem whose writes wait on a
  // later request. More writers than ring slots (worker) must not starve the reader of free slots;
  // the poll reader reads on into spare buffers.
  const memfs = new Memfs();
  const waiting: Array<() => void> = [];
  let held = 0;
  let unblocked = false;
  const lookup = (ctx: RequestContext, parent: number, name: string) => {
    if (name === "unblock") {
      unblocked = true;
      for (const w of waiting.splice(0)) w();
    }
    return memfs.lookup(ctx, parent, name);
  };
  const write = (ctx: RequestContext, nodeid: number, fh: number, offset: number, data: Uint8Array): number | Promise<number> => {
    if (unblocked) return memfs.write(ctx, nodeid, fh, offset, data);
    held++;
    return new Promise<number>((resolve) => waiting.push(() => resolve(memfs.write(ctx, nodeid, fh, offset, data))));
  };
  const filesystem = new Proxy(memfs, {
    get: (t, p, r) => (p === "lookup" ? lookup : p === "write" ? write : Reflect.get(t, p, r)),
  }) as Filesystem;
  const m = await mount(filesystem, mnt, { fsname: "lend", subtype: "memfs", log: () => {}, reader });
  inproc.push(m);
  const writers = 2 * SLOTS + 2;
  const src = path.join(os.tmpdir(), `fuse-lend-src-${process.pid}`);
  const data = Buffer.alloc(1 << 20);
  for (let k = 0; k < data.length; k++) data[k] = (k * 13 + (k >> 9)) & 0xff;
  fs.writeFileSync(src, data);
  try {
    const procs = Array.from({ length: writers }, (_, k) => Bun.spawn(["dd", `if=${src}`, `of=${path.join(mnt, `w${k}`)}`, "bs=1M", "status=none"]));
    const deadline = Date.now() + 10_000;
    while (held < writers && Date.now() < deadline) await Bun.sleep(10);
    expect(held).toBe(writers);
    const stat = Bun.spawn(["stat", path.join(mnt, "unblock")], { stdout: "ignore", stderr: "ignore" });
    await stat.exited;
    for (const p of procs) expect(await p.exited).toBe(0);
    for (let k = 0; k < writers; k++) expect((await fsp.readFile(path.join(mnt, `w${k}`))).equals(data)).toBe(true);
  } finally {
    fs.rmSync(src);
    await m.unmount();
    fs.rmdirSync(mnt);
  }
});

test("writeback cache: data written through the page cache reaches the filesystem; SIGTERM unmount does not deadlock", async () => {
  const s = await startMemfs(["--writeback"]);
  servers.push(s);
  expect((s.init.enabledFlagNames as string[]).includes("WRITEBACK_CACHE")).toBe(true);
  const f = path.join(s.mnt, "wb");
  const fd = fs.openSync(f, "w");
  for (let k = 0; k < 64; k++) fs.writeSync(fd, Buffer.alloc(4096, k));
  fs.closeSync(fd);
  const back = fs.readFileSync(f);
  expect(back.length).toBe(64 * 4096);
  expect(back[63 * 4096]).toBe(63);
  s.proc.kill("SIGTERM");
  expect(await exitsWithin(s, 10000)).toBe(0);
  expect(isMounted(s.mnt)).toBe(false);
});

test("notifications: inval_inode drops cached pages, inval_entry and delete drop cached names", async () => {
  const mnt = fs.mkdtempSync(path.join(os.tmpdir(), "fuse-notify-"));
  const memfs = new Memfs({ entryTimeout: 3600, attrTimeout: 3600 });
  const m = await mount(memfs, mnt, { fsname: "notify", subtype: "memfs", log: () => {} });
  inproc.push(m);
  const ctx: RequestContext = { unique: 0n, nodeid: 0, uid: 0, gid: 0, pid: 0, interrupted: false, onInterrupt: undefined };
  try {
    await fsp.writeFile(path.join(mnt, "a"), "one");
    expect(await fsp.readFile(path.join(mnt, "a"), "utf8")).toBe("one");
    const ino = (await fsp.stat(path.join(mnt, "a"))).ino;
    // Change the data behind the kernel's back: it keeps serving its cached pages...
    memfs.write(ctx, ino, 0, 0, Buffer.from("two"));
    expect(await fsp.readFile(path.join(mnt, "a"), "utf8")).toBe("one");
    // ...until told.
    await m.session.notifyInvalInode(ino, 0, 0);
    expect(await fsp.readFile(path.join(mnt, "a"), "utf8")).toBe("two");

    memfs.rename(ctx, 1, "a", 1, "b", 0);
    expect((await fsp.stat(path.join(mnt, "a"))).ino).toBe(ino);
    await m.session.notifyInvalEntry(1, "a");
    await expect(fsp.stat(path.join(mnt, "a"))).rejects.toThrow();
    expect((await fsp.stat(path.join(mnt, "b"))).ino).toBe(ino);

    memfs.unlink(ctx, 1, "b");
    expect((await fsp.stat(path.join(mnt, "b"))).ino).toBe(ino);
    await m.session.notifyDelete(1, ino, "b");
    await expect(fsp.stat(path.join(mnt, "b"))).rejects.toThrow();
    // Invalidating something the kernel never cached is not an error.
    await m.session.notifyInvalEntry(1, "never-seen");
  } finally {
    await m.unmount();
    fs.rmdirSync(mnt);
  }
  expect(isMounted(mnt)).toBe(false);
});

test("killPrivV2: no GETXATTR per write; the filesystem removes setuid/setgid and capabilities on write, truncate, chown, O_TRUNC", async () => {
  const s = await startMemfs(["--killpriv", "--timeout", "0"]);
  servers.push(s);
  expect((s.init.enabledFlagNames as string[]).includes("HANDLE_KILLPRIV_V2")).toBe(true);
  const d = path.join(s.mnt, "kp");
  fs.mkdirSync(d, { mode: 0o777 });
  fs.chmodSync(d, 0o777);

  // repeated writes: the kernel asks for security.capability at most once per inode
  const f = path.join(d, "plain");
  const fd = fs.openSync(f, "w");
  await serverStats(s);
  for (let k = 0; k < 64; k++) fs.writeSync(fd, Buffer.alloc(4096, k), 0, 4096, k * 4096);
  fs.closeSync(fd);
  const st = await serverStats(s);
  expect(st.opcodes.WRITE).toBe(64);
  expect(st.opcodes.GETXATTR ?? 0).toBeLessThanOrEqual(1);

  expectPrivilegesRemoved(d);
});

test("poll reader: the event loop's own work ends a wait at once; timers run while it waits; idle, its watcher thread hands requests back", async () => {
  const mnt = fs.mkdtempSync(path.join(os.tmpdir(), "fuse-poll-"));
  let m: FuseMount | undefined;
  try {
    // Waits capped at 1 s and hot for 10 s: what ends a wait early must be the loop's epoll
    // descriptor, which becomes readable for any I/O completion.
    m = await mount(new Memfs(), mnt, { fsname: "poll", subtype: "memfs", log: () => {}, pollUs: 1_000_000, hotMs: 10_000 });
    inproc.push(m);
    const r = m.reader as PollReader;
    await fsp.writeFile(path.join(mnt, "a"), "x");
    expect(r.hot).toBe(true);
    // found in its first turns, once the loop is quiet (test and runner may keep it busy a while)
    for (let k = 0; k < 100 && r.loopFd < 0; k++) await fsp.stat(path.join(mnt, "a"));
    expect(r.loopFd).toBeGreaterThanOrEqual(0);
    let t0 = performance.now();
    for (let k = 0; k < 5; k++) await fsp.readFile("/proc/self/stat"); // thread-pool completions
    await Bun.spawn(["true"]).exited; // a child's exit
    expect(performance.now() - t0).toBeLessThan(500);
    await m.unmount();

    // Default cap (500 µs): timers stay punctual while it waits; after hotMs idle it goes cold,
    // and the next request (read by the watcher's wake-up) is served all the same.
    m = await mount(new Memfs(), mnt, { fsname: "poll", subtype: "memfs", log: () => {}, hotMs: 50 });
    inproc.push(m);
    const r2 = m.reader as PollReader;
    await fsp.writeFile(path.join(mnt, "b"), "y");
    t0 = performance.now();
    for (let k = 0; k < 10; k++) await Bun.sleep(2);
    expect(performance.now() - t0).toBeLessThan(20 + 200);
    await Bun.sleep(150);
    expect(r2.hot).toBe(false);
    expect(await fsp.readFile(path.join(mnt, "b"), "utf8")).toBe("y");
    await Bun.sleep(150);
    expect(r2.hot).toBe(false);
    await fsp.writeFile(path.join(mnt, "c"), "z");
    expect((await fsp.readdir(mnt)).sort()).toEqual(["b", "c"]);
    await m.unmount();
    expect(await Promise.race([m.closed.then(() => "closed"), Bun.sleep(5000).then(() => "timeout")])).toBe("closed");
  } finally {
    await m?.unmount();
    fs.rmdirSync(mnt);
  }
});

test("kernel locks: close(2) sends no FLUSH (after the first ENOSYS) and no lock request reaches memfs, yet locks work", async () => {
  const s = await startMemfs(["--kernel-locks", "--timeout", "60"]);
  servers.push(s);
  const names = s.init.enabledFlagNames as string[];
  expect(names.includes("POSIX_LOCKS") || names.includes("FLOCK_LOCKS")).toBe(false);
  const f = path.join(s.mnt, "k");
  fs.writeFileSync(f, "");
  await serverStats(s);
  for (let k = 0; k < 50; k++) fs.closeSync(fs.openSync(f, "r"));
  const holder = Bun.spawn(["flock", f, "sleep", "1"]);
  Bun.sleepSync(300);
  expect(sh(`flock -n ${f} true`).code).not.toBe(0);
  await holder.exited;
  expect(sh(`flock -n ${f} true`).code).toBe(0);
  const st = await serverStats(s);
  expect(st.opcodes.FLUSH ?? 0).toBeLessThanOrEqual(1);
  expect((st.opcodes.SETLK ?? 0) + (st.opcodes.SETLKW ?? 0) + (st.opcodes.GETLK ?? 0)).toBe(0);
});
