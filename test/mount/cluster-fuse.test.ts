// Two `scoutfs mount` nodes of one volume on one host, each with its own FUSE mount point (the
// elected leader, and a follower that is a client of its server): what one node's programs
// change, the other node's programs see at once, through the cluster locks — including what the
// other kernel had cached (pages, attributes, names), which the lock invalidations drop.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { BUN, CLI, sparseFile, tempDir } from "../helpers/images.ts";
import { freePorts } from "../helpers/ports.ts";
import { isMounted, waitUnmounted } from "../fs/node-mount.ts";

const dir = tempDir("scoutfs-cluster-fuse-");
const env = { ...process.env, SCOUTFS_LOG_DIR: path.join(dir, "log"), SCOUTFS_RUN_DIR: path.join(dir, "run") };
const meta = path.join(dir, "meta.img");
const data = path.join(dir, "data.img");
const mnts = [path.join(dir, "a"), path.join(dir, "b"), path.join(dir, "c")];
const [A, B] = mnts as [string, string];

function logs(): string {
  const d = env.SCOUTFS_LOG_DIR;
  if (!fs.existsSync(d)) return "";
  return fs.readdirSync(d).map((n) => fs.readFileSync(path.join(d, n), "utf8")).join("").slice(-4000);
}

async function mountSlot(slot: number): Promise<void> {
  // orphan scans every ~500 ms (default 10 s): the failover test waits for one
  const o = `metadev_path=${meta},quorum_slot_nr=${slot},quorum_heartbeat_timeout_ms=2000,orphan_scan_delay_ms=500`;
  const p = Bun.spawn([BUN, CLI, "mount", "-o", o, data, mnts[slot]!], { env, stdout: "pipe", stderr: "pipe" });
  const code = await p.exited;
  const err = await new Response(p.stderr).text();
  if (code !== 0 || !isMounted(mnts[slot]!)) throw new Error(`mount of slot ${slot} failed (${code}): ${err}\n${logs()}`);
}

/** Which mount points run the server role (from their node logs). */
function leaders(): string[] {
  const d = env.SCOUTFS_LOG_DIR;
  return mnts.filter((m) => {
    const f = fs.readdirSync(d).find((n) => n.endsWith(`${m.replaceAll("/", "_")}.log`));
    const l = f ? fs.readFileSync(path.join(d, f), "utf8") : "";
    return l.lastIndexOf("leader in term") > l.lastIndexOf("follower");
  });
}

/** Followers first: a follower needs a server (a quorum) for its final commit. */
async function unmountAll(): Promise<void> {
  const lead = leaders();
  for (const m of [...mnts.filter((m) => !lead.includes(m)), ...lead]) {
    if (isMounted(m)) {
      const r = Bun.spawnSync(["umount", m], { stderr: "pipe" });
      if (r.exitCode !== 0) throw new Error(`umount ${m}: ${r.stderr.toString()}`);
    }
  }
  for (const m of mnts) await waitUnmounted(m);
}

beforeAll(async () => {
  const ports = await freePorts(3);
  sparseFile(meta, 1 << 30);
  sparseFile(data, 4 * 2 ** 30);
  for (const m of mnts) fs.mkdirSync(m, { recursive: true });
  const q = ports.flatMap((p, i) => ["-Q", `${i},127.0.0.1,${p}`]);
  const r = Bun.spawnSync([BUN, CLI, "mkfs", "-A", "-f", ...q, meta, data], { env, stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`mkfs failed: ${r.stderr.toString()}`);
  // two of three slots elect a leader: both mounts come up together
  await Promise.all([mountSlot(0), mountSlot(1)]);
}, 60_000);
// (slot 2 is mounted by the failover test at the end)

afterAll(async () => {
  await unmountAll().catch((e) => {
    console.error(`cleanup: ${e}`);
    for (const m of mnts) Bun.spawnSync(["umount", "-l", m]);
  });
  fs.rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe("two FUSE mounts of one volume", () => {
  test("both are mounted, one leader and one follower", () => {
    expect(isMounted(A)).toBe(true);
    expect(isMounted(B)).toBe(true);
    const l = logs();
    expect(l).toMatch(/leader in term/);
    expect(l).toMatch(/follower/);
  });

  test("a file written on one node is read on the other, and rewrites replace what the other kernel cached", () => {
    fs.writeFileSync(path.join(A, "f"), "written on a\n");
    expect(fs.readFileSync(path.join(B, "f"), "utf8")).toBe("written on a\n");
    // B's kernel now caches the pages and attributes; A changes the file
    fs.appendFileSync(path.join(A, "f"), "appended on a\n");
    expect(fs.readFileSync(path.join(B, "f"), "utf8")).toBe("written on a\nappended on a\n");
    expect(fs.statSync(path.join(B, "f")).size).toBe(27);
    // and the other way round, overwriting in place
    const fd = fs.openSync(path.join(B, "f"), "r+");
    fs.writeSync(fd, "WRITTEN", 0);
    fs.closeSync(fd);
    expect(fs.readFileSync(path.join(A, "f"), "utf8")).toBe("WRITTEN on a\nappended on a\n");
    for (let i = 0; i < 20; i++) {
      const m = i % 2 === 0 ? A : B;
      const o = i % 2 === 0 ? B : A;
      fs.writeFileSync(path.join(m, "f"), `round ${i}`);
      expect(fs.readFileSync(path.join(o, "f"), "utf8")).toBe(`round ${i}`);
    }
  });

  test("names made, renamed and removed on one node are seen by the other at once", () => {
    fs.mkdirSync(path.join(A, "d"));
    fs.writeFileSync(path.join(A, "d", "x"), "x");
    // B looks the names up (its kernel caches them)
    expect(fs.readdirSync(path.join(B, "d"))).toEqual(["x"]);
    expect(fs.statSync(path.join(B, "d", "x")).size).toBe(1);
    fs.renameSync(path.join(A, "d", "x"), path.join(A, "d", "y"));
    expect(fs.existsSync(path.join(B, "d", "x"))).toBe(false);
    expect(fs.readFileSync(path.join(B, "d", "y"), "utf8")).toBe("x");
    fs.unlinkSync(path.join(B, "d", "y"));
    expect(fs.existsSync(path.join(A, "d", "y"))).toBe(false);
    expect(fs.readdirSync(path.join(A, "d"))).toEqual([]);
    fs.rmdirSync(path.join(A, "d"));
    expect(fs.existsSync(path.join(B, "d"))).toBe(false);
    // attributes: chmod and a hard link on one node show on the other
    fs.writeFileSync(path.join(B, "m"), "m");
    expect(fs.statSync(path.join(A, "m")).mode & 0o777).toBe(0o644);
    fs.chmodSync(path.join(B, "m"), 0o600);
    fs.linkSync(path.join(B, "m"), path.join(B, "m2"));
    const st = fs.statSync(path.join(A, "m"));
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.nlink).toBe(2);
    // moving a directory between directories (the rename lock) on the other node
    fs.mkdirSync(path.join(A, "p1/c"), { recursive: true });
    fs.mkdirSync(path.join(A, "p2"));
    fs.renameSync(path.join(B, "p1/c"), path.join(B, "p2/c"));
    expect(fs.readdirSync(path.join(A, "p1"))).toEqual([]);
    expect(fs.readdirSync(path.join(A, "p2"))).toEqual(["c"]);
    // and a move below itself is refused there too
    expect(() => fs.renameSync(path.join(A, "p2"), path.join(A, "p2/c/p2"))).toThrow(/EINVAL|invalid/i);
  });

  test("a file unlinked on one node while open on the other stays whole there; closed, its space comes back", async () => {
    const sync = (m: string) => {
      const fd = fs.openSync(m, "r");
      fs.fsyncSync(fd);
      fs.closeSync(fd);
    };
    const dropCaches = () => fs.writeFileSync("/proc/sys/vm/drop_caches", "3");
    const MIB = 1 << 20;
    const body = Buffer.alloc(MIB);
    for (let i = 0; i < MIB; i += 4) body.writeUInt32LE(i * 2654435761 >>> 0, i);
    fs.writeFileSync(path.join(A, "kept-open"), body);
    sync(A);
    const fd = fs.openSync(path.join(B, "kept-open"), "r");
    let before = 0;
    try {
      const head = Buffer.alloc(4096);
      expect(fs.readSync(fd, head, 0, 4096, 0)).toBe(4096);
      expect(head.equals(body.subarray(0, 4096))).toBe(true);
      sync(B);
      sync(A);
      before = fs.statfsSync(A).bfree;
      fs.unlinkSync(path.join(A, "kept-open"));
      // A's kernel lets go of the inode (FORGET): A would delete it now, but B still has it open
      dropCaches();
      await Bun.sleep(300);
      sync(A);
      expect(fs.existsSync(path.join(B, "kept-open"))).toBe(false);
      // B reads every byte through its own node (the unlink's lock invalidation dropped B's pages)
      const back = Buffer.alloc(MIB);
      let n = 0;
      while (n < MIB) {
        const got = fs.readSync(fd, back, n, MIB - n, n);
        if (got === 0) break;
        n += got;
      }
      expect(n).toBe(MIB);
      expect(back.equals(body)).toBe(true);
      expect(fs.fstatSync(fd).nlink).toBe(0);
      // its blocks are still allocated
      expect(fs.statfsSync(A).bfree).toBeLessThan(before + 256);
    } finally {
      fs.closeSync(fd);
    }
    // B's kernel lets go too: B deletes it (A no longer holds it) and the 256 blocks come back
    let freed = false;
    for (let i = 0; i < 50 && !freed; i++) {
      dropCaches();
      await Bun.sleep(100);
      sync(B);
      sync(A);
      freed = fs.statfsSync(A).bfree >= before + 256;
    }
    expect(freed).toBe(true);
  }, 60_000);

  test("both nodes creating, writing and removing in one directory at once lose nothing", async () => {
    fs.mkdirSync(path.join(A, "shared"));
    const N = 150;
    const work = async (m: string, tag: string) => {
      for (let i = 0; i < N; i++) {
        await fs.promises.writeFile(path.join(m, "shared", `${tag}-${i}`), `${tag} ${i}`);
        if (i % 3 === 0) await fs.promises.unlink(path.join(m, "shared", `${tag}-${i}`));
      }
    };
    await Promise.all([work(A, "a"), work(B, "b")]);
    const want: string[] = [];
    for (const tag of ["a", "b"]) for (let i = 0; i < N; i++) if (i % 3 !== 0) want.push(`${tag}-${i}`);
    want.sort();
    for (const m of [A, B]) {
      expect(fs.readdirSync(path.join(m, "shared")).sort()).toEqual(want);
      for (const n of want) {
        const [tag, i] = n.split("-");
        expect(fs.readFileSync(path.join(m, "shared", n), "utf8")).toBe(`${tag} ${i}`);
      }
    }
  }, 60_000);

  test("after both unmount, one node alone mounts everything back", async () => {
    await unmountAll();
    await Promise.all([mountSlot(0), mountSlot(1)]);
    expect(fs.readFileSync(path.join(B, "f"), "utf8")).toBe("round 19");
    expect(fs.readdirSync(path.join(A, "shared")).length).toBe(200);
    expect(fs.statSync(path.join(B, "m")).nlink).toBe(2);
    expect(fs.readdirSync(path.join(A, "p2/c"))).toEqual([]);
  }, 60_000);

  test("SIGKILL of the leader: a follower takes over and the surviving mounts keep working", async () => {
    await mountSlot(2);
    const C = mnts[2]!;
    const [lead] = leaders();
    expect(lead).toBeDefined();
    const survivors = mnts.filter((m) => m !== lead);
    // made durable on the leader's mount, then the leader dies
    const fd = fs.openSync(path.join(lead!, "before-kill"), "w");
    fs.writeSync(fd, "fsync'd on the old leader");
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    // a file the leader's kernel holds open, unlinked on a survivor: its deletion waits for the
    // leader to let go, which it never does — the survivors' orphan scan deletes it once the
    // new server has fenced the dead leader
    const held = Buffer.alloc(1 << 20, 0x6b);
    fs.writeFileSync(path.join(survivors[0]!, "held-by-leader"), held);
    const heldFd = fs.openSync(path.join(lead!, "held-by-leader"), "r");
    expect(fs.readSync(heldFd, Buffer.alloc(16), 0, 16, 0)).toBe(16);
    fs.unlinkSync(path.join(survivors[0]!, "held-by-leader"));
    for (const m of survivors) {
      const d = fs.openSync(m, "r");
      fs.fsyncSync(d);
      fs.closeSync(d);
    }
    const freeBefore = fs.statfsSync(survivors[0]!).bfree;
    const pid = Number(Bun.spawnSync(["pgrep", "-f", `quorum_slot_nr=${mnts.indexOf(lead!)},.* ${lead}$`]).stdout.toString().trim().split("\n")[0]);
    expect(pid).toBeGreaterThan(0);
    process.kill(pid, "SIGKILL");
    Bun.spawnSync(["umount", "-l", lead!]);
    // the survivors' requests wait through the election (heartbeat timeout 2 s) and go on
    for (const m of survivors) expect(fs.readFileSync(path.join(m, "before-kill"), "utf8")).toBe("fsync'd on the old leader");
    fs.writeFileSync(path.join(survivors[0]!, "after-kill"), "written after failover");
    expect(fs.readFileSync(path.join(survivors[1]!, "after-kill"), "utf8")).toBe("written after failover");
    fs.appendFileSync(path.join(survivors[1]!, "after-kill"), ", and appended");
    expect(fs.readFileSync(path.join(survivors[0]!, "after-kill"), "utf8")).toBe("written after failover, and appended");
    expect(leaders().some((m) => survivors.includes(m))).toBe(true);
    expect(isMounted(C)).toBe(true);
    try {
      fs.closeSync(heldFd);
    } catch {
      // the dead node's FUSE connection is gone
    }
    let freed = false;
    for (let i = 0; i < 100 && !freed; i++) {
      await Bun.sleep(200);
      for (const m of survivors) {
        const d = fs.openSync(m, "r");
        fs.fsyncSync(d);
        fs.closeSync(d);
      }
      // its 256 blocks, less the one "after-kill" took meanwhile
      freed = fs.statfsSync(survivors[0]!).bfree >= freeBefore + 256 - 1;
    }
    expect(freed).toBe(true);
    expect(logs()).toMatch(/orphan scan deleted 1 inode/);
  }, 60_000);
});
