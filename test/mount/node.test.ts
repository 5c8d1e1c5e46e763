// `scoutfs mount` end to end, as a user runs it: mkfs on sparse image files, mount in the
// background (quorum slot on loopback, the server role in the elected node, the mount a client of
// it), use the filesystem with ordinary file calls, umount(8), mount again and find everything;
// SIGKILL the node after fsync and find every fsync'd byte on the next mount (the previous
// leader is fenced); a second mount of the same volume and bad input are refused with one line.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { BUN, CLI, sparseFile, tempDir } from "../helpers/images.ts";
import { freePorts } from "../helpers/ports.ts";

const dir = tempDir("scoutfs-mount-test-");
const runDir = path.join(dir, "run");
const env = { ...process.env, SCOUTFS_LOG_DIR: dir, SCOUTFS_RUN_DIR: runDir };
afterAll(() => {
  for (const m of mounted) Bun.spawnSync(["umount", "-l", m]);
  fs.rmSync(dir, { recursive: true, force: true });
});
const mounted = new Set<string>();

function cli(args: string[]): { code: number; out: string; err: string } {
  const r = Bun.spawnSync([BUN, CLI, ...args], { env, stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode ?? 1, out: r.stdout.toString(), err: r.stderr.toString() };
}

function isMounted(mnt: string): boolean {
  return fs.readFileSync("/proc/mounts", "utf8").split("\n").some((l) => l.split(" ")[1] === mnt);
}

async function waitUnmounted(mnt: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (isMounted(mnt)) {
    if (Date.now() > end) throw new Error(`${mnt} still mounted after ${ms} ms`);
    await Bun.sleep(50);
  }
}

let meta = "";
let data = "";
let port = 0;
const mnt = path.join(dir, "mnt");

function mountArgs(slot = 0, extra = ""): string[] {
  // a short heartbeat timeout: a new leader waits this long for a crashed one before standing
  return ["mount", "-o", `metadev_path=${meta},quorum_slot_nr=${slot},quorum_heartbeat_timeout_ms=2000${extra}`, data, mnt];
}

/** The pid of the node serving `mnt`, from the local mount registry. */
function nodePid(): number {
  const pids: number[] = [];
  for (const fsidDir of fs.readdirSync(runDir)) for (const f of fs.readdirSync(path.join(runDir, fsidDir))) pids.push(Number(fs.readFileSync(path.join(runDir, fsidDir, f), "utf8").trim()));
  const alive = pids.filter((p) => {
    try {
      process.kill(p, 0);
      return true;
    } catch {
      return false;
    }
  });
  expect(alive.length).toBe(1);
  return alive[0]!;
}

beforeAll(async () => {
  port = (await freePorts(1))[0]!;
  meta = sparseFile(path.join(dir, "meta.img"), 1 << 30);
  data = sparseFile(path.join(dir, "data.img"), 4 * 2 ** 30);
  fs.mkdirSync(mnt);
  const r = cli(["mkfs", "-A", "-Q", `0,127.0.0.1,${port}`, meta, data]);
  expect(r.code).toBe(0);
});

describe("scoutfs mount", () => {
  test("mounts in the background, serves files, unmounts with umount(8), and remounts with everything there", async () => {
    const r = cli(mountArgs());
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    mounted.add(mnt);
    expect(isMounted(mnt)).toBe(true);
    const line = fs.readFileSync("/proc/mounts", "utf8").split("\n").find((l) => l.split(" ")[1] === mnt)!;
    expect(line.split(" ")[0]).toBe(data);
    expect(line.split(" ")[2]).toBe("fuse.scoutfs");

    fs.writeFileSync(path.join(mnt, "hello"), "hello, world\n");
    fs.mkdirSync(path.join(mnt, "a/b/c"), { recursive: true });
    const big = Buffer.alloc(3 << 20);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 12)) & 0xff;
    fs.writeFileSync(path.join(mnt, "a/b/c/big"), big);
    fs.symlinkSync("../hello", path.join(mnt, "a/link"));
    fs.linkSync(path.join(mnt, "hello"), path.join(mnt, "a/hard"));
    fs.renameSync(path.join(mnt, "a/b"), path.join(mnt, "a/bb"));
    fs.chmodSync(path.join(mnt, "hello"), 0o600);
    const st = fs.statfsSync(mnt);
    expect(st.bsize).toBe(4096);
    expect(st.blocks).toBeGreaterThan(1000);
    // the 3 MiB just written count as used at once, not only after the next commit
    expect(st.blocks - st.bfree).toBeGreaterThanOrEqual(768);

    expect(Bun.spawnSync(["umount", mnt]).exitCode).toBe(0);
    await waitUnmounted(mnt);

    // mounting again right away: the old node may still be finishing its shutdown
    const again = cli(mountArgs());
    expect(again.err).toBe("");
    expect(again.code).toBe(0);
    expect(fs.readFileSync(path.join(mnt, "hello"), "utf8")).toBe("hello, world\n");
    expect(fs.statSync(path.join(mnt, "hello")).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.join(mnt, "hello")).nlink).toBe(2);
    expect(fs.readFileSync(path.join(mnt, "a/hard"), "utf8")).toBe("hello, world\n");
    expect(fs.readlinkSync(path.join(mnt, "a/link"))).toBe("../hello");
    expect(Buffer.compare(fs.readFileSync(path.join(mnt, "a/bb/c/big")), big)).toBe(0);
    expect(fs.existsSync(path.join(mnt, "a/b"))).toBe(false);
    expect(fs.readdirSync(path.join(mnt, "a")).sort()).toEqual(["bb", "hard", "link"]);
    expect(Bun.spawnSync(["umount", mnt]).exitCode).toBe(0);
    await waitUnmounted(mnt);
  }, 60_000);

  test("after SIGKILL of the node, every fsync'd byte and name is there on the next mount", async () => {
    expect(cli(mountArgs()).code).toBe(0);
    const f = path.join(mnt, "durable");
    const payload = Buffer.alloc(1 << 20, 0x5c);
    const fd = fs.openSync(f, "w");
    fs.writeSync(fd, payload);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.mkdirSync(path.join(mnt, "dir-synced"));
    const dfd = fs.openSync(mnt, "r");
    fs.fsyncSync(dfd);
    fs.closeSync(dfd);

    process.kill(nodePid(), "SIGKILL");
    // the dead FUSE connection leaves the mount point behind until it is unmounted
    await Bun.sleep(200);
    Bun.spawnSync(["umount", "-l", mnt]);
    await waitUnmounted(mnt);

    const r = cli(mountArgs());
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(Buffer.compare(fs.readFileSync(f), payload)).toBe(0);
    expect(fs.statSync(path.join(mnt, "dir-synced")).isDirectory()).toBe(true);
    expect(fs.readFileSync(path.join(mnt, "hello"), "utf8")).toBe("hello, world\n");
    const log = fs.readdirSync(dir).filter((n) => n.endsWith(".log")).map((n) => fs.readFileSync(path.join(dir, n), "utf8")).join("");
    expect(log).toMatch(/fenc/);
  }, 60_000);

  test("a second mount of a mounted volume is refused in one line, and the first keeps working", async () => {
    expect(isMounted(mnt)).toBe(true);
    const other = path.join(dir, "mnt2");
    fs.mkdirSync(other, { recursive: true });
    const r = cli(["mount", "-o", `metadev_path=${meta},quorum_slot_nr=0`, data, other]);
    expect(r.code).not.toBe(0);
    expect(r.err.trim().split("\n").length).toBe(1);
    expect(r.err).toMatch(/quorum|busy|served/i);
    expect(isMounted(other)).toBe(false);
    fs.writeFileSync(path.join(mnt, "still-works"), "yes");
    expect(fs.readFileSync(path.join(mnt, "still-works"), "utf8")).toBe("yes");
    expect(Bun.spawnSync(["umount", mnt]).exitCode).toBe(0);
    await waitUnmounted(mnt);
    mounted.delete(mnt);
  }, 60_000);

  test("bad input is refused in one line and mounts nothing", () => {
    const cases: [string[], RegExp][] = [
      [["mount", "-o", `quorum_slot_nr=0`, data, mnt], /metadev_path/],
      [["mount", "-o", `metadev_path=${meta},quorum_slot_nr=0,bogus`, data, mnt], /Unknown or malformed option/],
      [["mount", "-o", `metadev_path=${meta},quorum_slot_nr=7`, data, mnt], /unused slot/],
      [["mount", "-o", `metadev_path=${data},quorum_slot_nr=0`, meta, mnt], /data device|metadata device/],
      [["mount", "-o", `metadev_path=${meta},quorum_slot_nr=0`, data, path.join(dir, "nope")], /not a directory/],
      [["mount", "-o", `metadev_path=${meta}`, data, mnt], /quorum_slot_nr/],
      [["mount", "-o", `metadev_path=${path.join(dir, "missing")},quorum_slot_nr=0`, data, mnt], /missing/],
    ];
    for (const [args, re] of cases) {
      const r = cli(args);
      expect(r.code).not.toBe(0);
      expect(r.err).toMatch(re);
      expect(r.err.trim().split("\n").length).toBe(1);
      expect(isMounted(mnt)).toBe(false);
    }
  }, 60_000);
});
