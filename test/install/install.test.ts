// The distribution path: `bun build --compile` makes one executable that runs mkfs and print on
// its own, and install.sh installs it from a release served over HTTP on 127.0.0.1 (checking
// the sha256) or from this checkout.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { REPO, sparseFile, tempDir } from "../helpers/images.ts";
import { freePorts } from "../helpers/ports.ts";

const dir = tempDir("scoutfs-dist-");
const rel = path.join(dir, "release");
let server: ReturnType<typeof Bun.serve> | undefined;
let tamper = false;

beforeAll(() => {
  const r = Bun.spawnSync([process.execPath, path.join(REPO, "scripts", "release.ts"), rel], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`release build failed: ${r.stderr}`);
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const pathname = new URL(req.url).pathname;
      const name = path.basename(pathname);
      const file = path.join(rel, name);
      if (pathname !== `/${name}` || !fs.existsSync(file)) return new Response("not found", { status: 404 });
      if (tamper && name === "SHA256SUMS") return new Response(`${"0".repeat(64)}  scoutfs-linux-x64\n`);
      return new Response(Bun.file(file));
    },
  });
});
afterAll(() => {
  server?.stop(true);
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Run a shell command without blocking the event loop (the release server runs in this process). */
async function sh(cmd: string): Promise<{ code: number; out: string; err: string }> {
  const p = Bun.spawn(["sh", "-c", cmd], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err };
}

describe("single executable", () => {
  test("the compiled binary runs mkfs and print by itself", async () => {
    const bin = path.join(rel, `scoutfs-linux-${process.arch === "arm64" ? "arm64" : "x64"}`);
    const m = sparseFile(path.join(dir, "m.img"), 67698688);
    const d = sparseFile(path.join(dir, "d.img"), 266240);
    const mk = await sh(`cd / && env -i ${bin} mkfs -A -Q 0,127.0.0.1,42000 ${m} ${d}`);
    expect(mk.code).toBe(0);
    expect(mk.out).toContain("Created scoutfs filesystem:");
    const pr = await sh(`env -i ${bin} print -S ${m}`);
    expect(pr.code).toBe(0);
    expect(pr.out).toContain("quorum slot  0: 127.0.0.1:42000");
  });
});

describe("block devices", () => {
  test("the compiled binary sizes loop devices with BLKGETSIZE64 (bun:ffi) and makes a volume on them", async () => {
    const bin = path.join(rel, `scoutfs-linux-${process.arch === "arm64" ? "arm64" : "x64"}`);
    const m = sparseFile(path.join(dir, "lm.img"), 100 * 2 ** 20);
    const d = sparseFile(path.join(dir, "ld.img"), 10 * 2 ** 20);
    const lm = (await sh(`losetup -f --show ${m}`)).out.trim();
    const ld = (await sh(`losetup -f --show ${d}`)).out.trim();
    try {
      expect(lm).toMatch(/^\/dev\/loop\d+$/);
      expect(ld).toMatch(/^\/dev\/loop\d+$/);
      const mk = await sh(`${bin} mkfs -A -Q 0,127.0.0.1,42000 ${lm} ${ld}`);
      expect(mk.code).toBe(0);
      expect(mk.out).toContain("  64KB metadata blocks:   1600 (100.00 MB)");
      expect(mk.out).toContain("  4KB data blocks:        2560 (10.00 MB)");
      const pr = await sh(`${bin} print ${lm}`);
      expect(pr.code).toBe(0);
      expect(pr.out).toContain("free extent: blkno 64 len 2496 end 2559");
      // a second mkfs finds the volume through the block device
      const again = await sh(`${bin} mkfs -A -Q 0,127.0.0.1,42000 ${lm} ${ld}`);
      expect(again.err).toMatch(/existing ScoutFS metadata superblock/);
    } finally {
      if (lm.startsWith("/dev/loop")) await sh(`losetup -d ${lm}`);
      if (ld.startsWith("/dev/loop")) await sh(`losetup -d ${ld}`);
    }
  });

  test("bun:sqlite and bun:ffi load inside a compiled executable", async () => {
    const entry = path.join(dir, "probe.ts");
    fs.writeFileSync(entry, 'import { Database } from "bun:sqlite"; import { dlopen, FFIType } from "bun:ffi";\n' +
      'const db = new Database(":memory:"); const v = db.query("select 40 + 2 as v").get() as { v: number };\n' +
      'const libc = dlopen("libc.so.6", { getpid: { args: [], returns: FFIType.i32 } });\n' +
      'console.log(v.v, libc.symbols.getpid() === process.pid);\n');
    const out = path.join(dir, "probe");
    const b = await Bun.build({ entrypoints: [entry], compile: { outfile: out } });
    expect(b.success).toBe(true);
    expect((await sh(out)).out.trim()).toBe("42 true");
  });
});

describe("install.sh", () => {
  test("installs from a release URL with the checksum verified (curl | sh)", async () => {
    const prefix = path.join(dir, "prefix1");
    const base = `http://127.0.0.1:${server!.port}`;
    const r = await sh(`curl -fsSL ${base}/install.sh | sh -s -- --url ${base} --prefix ${prefix}`);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toContain(`installed scoutfs 0.1.0`);
    expect((await sh(`${prefix}/bin/scoutfs --version`)).out).toStartWith("scoutfs 0.1.0");
  });

  test("refuses a binary whose checksum does not match and installs nothing", async () => {
    const prefix = path.join(dir, "prefix2");
    tamper = true;
    try {
      const base = `http://127.0.0.1:${server!.port}`;
      const r = await sh(`sh ${path.join(rel, "install.sh")} --url ${base} --prefix ${prefix}`);
      expect(r.code).not.toBe(0);
      expect(r.err).toMatch(/checksum mismatch for scoutfs-linux-x64.*not installing/);
      expect(fs.existsSync(path.join(prefix, "bin", "scoutfs"))).toBe(false);
    } finally {
      tamper = false;
    }
  });

  test("fails clearly when the release is not there", async () => {
    const r = await sh(`sh ${path.join(REPO, "install.sh")} --url http://127.0.0.1:${server!.port}/nope --prefix ${path.join(dir, "p3")}`);
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/download of .*nope\/SHA256SUMS failed/);
  });

  test("builds and installs from the checkout", async () => {
    const prefix = path.join(dir, "prefix4");
    const r = await sh(`${path.join(REPO, "install.sh")} --prefix ${prefix}`);
    expect(r.code).toBe(0);
    expect((await sh(`${prefix}/bin/scoutfs --help`)).out).toContain("Supported format version: 1-2");
    expect(fs.readlinkSync(`${prefix}/sbin/mount.scoutfs`)).toBe(`${prefix}/bin/scoutfs`);
  });

  test("the compiled binary as mount.scoutfs mounts a volume the way mount(8) asks it to", async () => {
    const prefix = path.join(dir, "prefix4");
    const helper = `${prefix}/sbin/mount.scoutfs`;
    const meta = sparseFile(path.join(dir, "h.meta"), 1 << 30);
    const data = sparseFile(path.join(dir, "h.data"), 2 ** 31);
    const mnt = path.join(dir, "h.mnt");
    fs.mkdirSync(mnt);
    const port = (await freePorts(1))[0]!;
    expect((await sh(`${prefix}/bin/scoutfs mkfs -A -Q 0,127.0.0.1,${port} ${meta} ${data}`)).code).toBe(0);
    const env = `SCOUTFS_LOG_DIR=${dir} SCOUTFS_RUN_DIR=${dir}/run`;
    // -f is mount(8)'s "fake": do everything but the mount
    expect((await sh(`${env} ${helper} ${data} ${mnt} -f -o metadev_path=${meta},quorum_slot_nr=0`)).code).toBe(0);
    const bad = await sh(`${env} ${helper} ${data} ${mnt} -o quorum_slot_nr=0`);
    expect(bad.code).not.toBe(0);
    expect(bad.err.trim().split("\n")).toHaveLength(1);
    const r = await sh(`${env} ${helper} ${data} ${mnt} -s -o rw,metadev_path=${meta},quorum_slot_nr=0,quorum_heartbeat_timeout_ms=2000`);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    try {
      fs.writeFileSync(path.join(mnt, "f"), "from the compiled binary");
      expect(fs.readFileSync(path.join(mnt, "f"), "utf8")).toBe("from the compiled binary");
    } finally {
      expect((await sh(`umount ${mnt}`)).code).toBe(0);
    }
  }, 60_000);
});
