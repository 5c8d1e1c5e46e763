// Mount lifecycle and the parts of the library the checklist does not reach: unmount from
// outside, SIGTERM, the thread-pool reader (the checklist uses the default worker reader), writeback cache, and kernel notifications
// (inval_inode, inval_entry, delete) from a filesystem served in this very process (the test
// then uses only async fs calls on the mount, which Bun runs off the event loop).
import { afterAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import type { RequestContext } from "../../src/fuse/filesystem.ts";
import { Memfs } from "../../src/fuse/memfs.ts";
import { type FuseMount, mount } from "../../src/fuse/mount.ts";
import { isMounted, type MemfsServer, sh, startMemfs } from "./helpers.ts";

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
