// A POSIX checklist on a real FUSE mount of memfs, served by a child process. Each test works in
// its own directory under the mount. Non-root checks run shell commands through setpriv.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { E, O_TMPFILE, type MemfsServer, errnoOf, serverStats, sh, startMemfs, sys } from "./helpers.ts";

let srv: MemfsServer;
let n = 0;
/** A fresh directory for one test, world-writable so non-root steps can work in it. */
function dir(): string {
  const d = path.join(srv.mnt, `t${n++}`);
  fs.mkdirSync(d);
  fs.chmodSync(d, 0o777);
  return d;
}

/**
 * The checklist runs twice: memfs as mounted by default, and in the configuration the benchmark
 * measures (scripts/bench/fuse.ts, docs/fuse.md): kernel caching for 60 s, privileges removed by
 * memfs (HANDLE_KILLPRIV_V2), locks left to the kernel (no lock requests, no FLUSH), no open
 * (files opened without OPEN/RELEASE, created with MKNOD, O_TRUNC as SETATTR).
 */
const CONFIGS: Array<{ name: string; args: string[] }> = [
  { name: "default", args: [] },
  { name: "benchmarked", args: ["--timeout", "60", "--killpriv", "--kernel-locks", "--no-open"] },
];

for (const cfg of CONFIGS) {
  describe(cfg.name, () => {
    beforeAll(async () => {
      srv = await startMemfs(cfg.args);
    });

    afterAll(async () => {
      await srv?.stop();
    }, 30_000);

    describe("mount", () => {
      test("INIT negotiated the features we ask for", () => {
        const names = srv.init.enabledFlagNames as string[];
        for (const f of ["ASYNC_READ", "EXPORT_SUPPORT", "BIG_WRITES", "PARALLEL_DIROPS", "DO_READDIRPLUS", "READDIRPLUS_AUTO", "POSIX_ACL", "MAX_PAGES"])
          expect(names).toContain(f);
        // O_TRUNC in OPEN, or (--no-open: no OPEN is sent) as a SETATTR
        expect(names.includes("ATOMIC_O_TRUNC")).toBe(!cfg.args.includes("--no-open"));
        // memfs's own locks, or (--kernel-locks) the kernel's: then no lock requests reach us
        for (const f of ["POSIX_LOCKS", "FLOCK_LOCKS"]) expect(names.includes(f)).toBe(!cfg.args.includes("--kernel-locks"));
        expect(names.includes("HANDLE_KILLPRIV_V2")).toBe(cfg.args.includes("--killpriv"));
        expect(srv.init.maxWrite).toBe(1 << 20);
        expect(srv.init.major).toBe(7);
      });

      test("shows in /proc/mounts with our options", () => {
        const line = fs.readFileSync("/proc/mounts", "utf8").split("\n").find((l) => l.split(" ")[1] === srv.mnt)!;
        expect(line).toContain("fuse.memfs");
        expect(line).toContain("default_permissions");
        expect(line).toContain("allow_other");
      });

      test("the poll reader found the event loop's epoll descriptor (it looks in its first turns)", async () => {
        fs.statSync(srv.mnt);
        expect((await serverStats(srv)).loopFd).toBeGreaterThanOrEqual(0);
      });

      test("statfs", () => {
        const st = fs.statfsSync(srv.mnt);
        expect(st.bsize).toBe(4096);
        expect(st.blocks).toBeGreaterThan(0);
      });
    });

    describe("files", () => {
      test("create, write, read, append, truncate", () => {
        const d = dir();
        const f = path.join(d, "a");
        fs.writeFileSync(f, "hello");
        fs.appendFileSync(f, " world");
        expect(fs.readFileSync(f, "utf8")).toBe("hello world");
        fs.truncateSync(f, 5);
        expect(fs.readFileSync(f, "utf8")).toBe("hello");
        fs.truncateSync(f, 8);
        expect([...fs.readFileSync(f)]).toEqual([104, 101, 108, 108, 111, 0, 0, 0]);
        fs.writeFileSync(f, "x"); // O_TRUNC through open (ATOMIC_O_TRUNC)
        expect(fs.readFileSync(f, "utf8")).toBe("x");
        expect(fs.statSync(f).size).toBe(1);
      });

      test("O_EXCL, ENOENT, EISDIR, ENOTDIR", () => {
        const d = dir();
        const f = path.join(d, "a");
        fs.writeFileSync(f, "");
        expect(errnoOf(() => fs.openSync(f, "wx"))).toBe("EEXIST");
        expect(errnoOf(() => fs.readFileSync(path.join(d, "nope")))).toBe("ENOENT");
        expect(errnoOf(() => fs.writeFileSync(d, "x"))).toBe("EISDIR");
        expect(errnoOf(() => fs.mkdirSync(path.join(f, "sub")))).toBe("ENOTDIR");
        expect(errnoOf(() => fs.writeFileSync(path.join(d, "x".repeat(256)), ""))).toBe("ENAMETOOLONG");
        fs.writeFileSync(path.join(d, "y".repeat(255)), "ok");
      });

      test("1 MiB writes and reads round-trip; pread/pwrite at odd offsets", () => {
        const d = dir();
        const f = path.join(d, "big");
        const data = Buffer.alloc(5 * 1024 * 1024 + 123);
        for (let k = 0; k < data.length; k++) data[k] = (k * 7 + (k >> 11)) & 0xff;
        fs.writeFileSync(f, data);
        expect(fs.readFileSync(f).equals(data)).toBe(true);
        const fd = fs.openSync(f, "r+");
        fs.writeSync(fd, Buffer.from("ABC"), 0, 3, 1048575);
        const b = Buffer.alloc(5);
        fs.readSync(fd, b, 0, 5, 1048574);
        expect(b.toString("latin1")).toBe(String.fromCharCode(data[1048574]!) + "ABC" + String.fromCharCode(data[1048578]!));
        fs.closeSync(fd);
      });

      test("large sparse file: holes read as zeros, SEEK_DATA/SEEK_HOLE", () => {
        const d = dir();
        const f = path.join(d, "sparse");
        const TiB = 2 ** 40;
        const fd = fs.openSync(f, "w+");
        fs.ftruncateSync(fd, TiB);
        fs.writeSync(fd, Buffer.from("end"), 0, 3, TiB - 3);
        fs.writeSync(fd, Buffer.from("mid"), 0, 3, 2 ** 33);
        const st = fs.fstatSync(fd);
        expect(st.size).toBe(TiB);
        expect(st.blocks * 512).toBeLessThan(16 * 2 ** 20);
        const b = Buffer.alloc(8);
        fs.readSync(fd, b, 0, 8, 2 ** 39);
        expect([...b]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
        fs.readSync(fd, b, 0, 3, TiB - 3);
        expect(b.subarray(0, 3).toString()).toBe("end");
        const SEEK_DATA = 3;
        const SEEK_HOLE = 4;
        expect(sys.lseek(fd, 0, SEEK_HOLE)).toBe(0);
        const data1 = sys.lseek(fd, 0, SEEK_DATA);
        expect(data1).toBeLessThanOrEqual(2 ** 33);
        expect(data1).toBeGreaterThan(2 ** 33 - 2 ** 21);
        expect(sys.lseek(fd, data1, SEEK_HOLE)).toBeGreaterThan(2 ** 33);
        expect(sys.lseek(fd, TiB + 1, SEEK_DATA)).toBe(-E.ENXIO);
        fs.closeSync(fd);
      });

      test("fallocate: allocate, punch hole, zero range", () => {
        const d = dir();
        const f = path.join(d, "fa");
        expect(sh(`fallocate -l 4M ${f}`).code).toBe(0);
        expect(fs.statSync(f).size).toBe(4 * 2 ** 20);
        fs.writeFileSync(f, Buffer.alloc(3 * 2 ** 20, 0x61));
        expect(sh(`fallocate -p -o 1M -l 1M ${f}`).code).toBe(0);
        const b = fs.readFileSync(f);
        expect(b.length).toBe(3 * 2 ** 20);
        expect(b[2 ** 20 - 1]).toBe(0x61);
        expect(b[2 ** 20]).toBe(0);
        expect(b[2 * 2 ** 20 - 1]).toBe(0);
        expect(b[2 * 2 ** 20]).toBe(0x61);
        expect(sh(`fallocate -z -o 10 -l 10 ${f}`).code).toBe(0);
        const c = fs.readFileSync(f);
        expect(c[9]).toBe(0x61);
        expect(c[10]).toBe(0);
        expect(c[20]).toBe(0x61);
      });

      test("copy_file_range", () => {
        const d = dir();
        const a = path.join(d, "a");
        const b = path.join(d, "b");
        fs.writeFileSync(a, "0123456789");
        fs.writeFileSync(b, "abcdefghij");
        const fa = fs.openSync(a, "r");
        const fb = fs.openSync(b, "r+");
        expect(sys.copyFileRange(fa, 2, fb, 5, 4)).toBe(4);
        fs.closeSync(fa);
        fs.closeSync(fb);
        expect(fs.readFileSync(b, "utf8")).toBe("abcde2345j");
      });

      test("O_TMPFILE, then linked into the namespace", () => {
        const d = dir();
        const fd = fs.openSync(d, O_TMPFILE | fs.constants.O_RDWR, 0o600);
        fs.writeSync(fd, "tmp data");
        expect(fs.readdirSync(d)).toEqual([]);
        expect(fs.fstatSync(fd).nlink).toBe(0);
        expect(sys.linkFd(fd, path.join(d, "named"))).toBe(0);
        fs.closeSync(fd);
        expect(fs.readFileSync(path.join(d, "named"), "utf8")).toBe("tmp data");
        expect(fs.statSync(path.join(d, "named")).nlink).toBe(1);
      });

      test("unlinked open file stays readable", () => {
        const d = dir();
        const f = path.join(d, "u");
        fs.writeFileSync(f, "still here");
        const fd = fs.openSync(f, "r");
        fs.unlinkSync(f);
        expect(fs.existsSync(f)).toBe(false);
        const b = Buffer.alloc(10);
        fs.readSync(fd, b, 0, 10, 0);
        expect(b.toString()).toBe("still here");
        fs.closeSync(fd);
      });

      test("timestamps: utimes with nanoseconds, mtime moves on write", () => {
        const d = dir();
        const f = path.join(d, "t");
        fs.writeFileSync(f, "a");
        fs.utimesSync(f, 1_000_000_000.5, 1_234_567_890.25);
        let st = fs.statSync(f, { bigint: true });
        expect(st.mtimeNs).toBe(1_234_567_890_250_000_000n);
        expect(st.atimeNs).toBe(1_000_000_000_500_000_000n);
        fs.appendFileSync(f, "b");
        st = fs.statSync(f, { bigint: true });
        expect(st.mtimeNs).toBeGreaterThan(1_234_567_890_250_000_000n);
      });

      test("mknod fifo, symlink, readlink", () => {
        const d = dir();
        expect(sh(`mkfifo ${d}/fifo`).code).toBe(0);
        expect(fs.statSync(path.join(d, "fifo")).isFIFO()).toBe(true);
        fs.symlinkSync("../some/where", path.join(d, "ln"));
        expect(fs.readlinkSync(path.join(d, "ln"))).toBe("../some/where");
        expect(fs.lstatSync(path.join(d, "ln")).isSymbolicLink()).toBe(true);
        fs.writeFileSync(path.join(d, "target"), "via link");
        fs.symlinkSync("target", path.join(d, "ln2"));
        expect(fs.readFileSync(path.join(d, "ln2"), "utf8")).toBe("via link");
      });

      test("ioctl: inode flags through the kernel's fileattr path, chattr/lsattr, GETVERSION", () => {
        const d = dir();
        const f = path.join(d, "io");
        fs.writeFileSync(f, "");
        const fd = fs.openSync(f, "r");
        const arg = new Uint8Array(8);
        new DataView(arg.buffer).setUint32(0, 0x40, true); // FS_NODUMP_FL
        expect(sys.ioctl(fd, 0x40086602, arg)).toBe(0);
        const out = new Uint8Array(8);
        expect(sys.ioctl(fd, 0x80086601, out)).toBe(0);
        expect(new DataView(out.buffer).getUint32(0, true)).toBe(0x40);
        expect(sys.ioctl(fd, 0x80087601, out)).toBe(0); // FS_IOC_GETVERSION goes to the filesystem as is
        expect(sys.ioctl(fd, 0x80087a01, out)).toBe(-25); // an unknown command: ENOTTY
        fs.closeSync(fd);
        expect(sh(`lsattr ${f}`).out).toContain("d");
        expect(sh(`chattr -d ${f} && lsattr ${f}`).out.split(" ")[0]).not.toContain("d");
      });
    });

    describe("directories and names", () => {
      test("mkdir, rmdir, nlink counts, ENOTEMPTY", () => {
        const d = dir();
        fs.mkdirSync(path.join(d, "a"));
        fs.mkdirSync(path.join(d, "b"));
        expect(fs.statSync(d).nlink).toBe(4);
        fs.writeFileSync(path.join(d, "a", "f"), "");
        expect(errnoOf(() => fs.rmdirSync(path.join(d, "a")))).toBe("ENOTEMPTY");
        fs.unlinkSync(path.join(d, "a", "f"));
        fs.rmdirSync(path.join(d, "a"));
        expect(fs.statSync(d).nlink).toBe(3);
        expect(errnoOf(() => fs.rmdirSync(path.join(d, "nope")))).toBe("ENOENT");
      });

      test("hard links share the inode and count links", () => {
        const d = dir();
        const a = path.join(d, "a");
        fs.writeFileSync(a, "shared");
        fs.linkSync(a, path.join(d, "b"));
        fs.linkSync(a, path.join(d, "c"));
        expect(fs.statSync(a).nlink).toBe(3);
        expect(fs.statSync(path.join(d, "b")).ino).toBe(fs.statSync(a).ino);
        fs.unlinkSync(a);
        expect(fs.statSync(path.join(d, "c")).nlink).toBe(2);
        expect(fs.readFileSync(path.join(d, "b"), "utf8")).toBe("shared");
        fs.mkdirSync(path.join(d, "dir"));
        expect(errnoOf(() => fs.linkSync(path.join(d, "dir"), path.join(d, "dir2")))).toBe("EPERM");
      });

      test("rename: replace, across dirs, dir over empty dir, errors", () => {
        const d = dir();
        fs.writeFileSync(path.join(d, "a"), "A");
        fs.writeFileSync(path.join(d, "b"), "B");
        fs.renameSync(path.join(d, "a"), path.join(d, "b"));
        expect(fs.readFileSync(path.join(d, "b"), "utf8")).toBe("A");
        expect(fs.existsSync(path.join(d, "a"))).toBe(false);
        fs.mkdirSync(path.join(d, "x"));
        fs.mkdirSync(path.join(d, "y"));
        fs.renameSync(path.join(d, "b"), path.join(d, "x", "b"));
        expect(fs.readFileSync(path.join(d, "x", "b"), "utf8")).toBe("A");
        fs.mkdirSync(path.join(d, "empty"));
        fs.renameSync(path.join(d, "y"), path.join(d, "empty"));
        expect(fs.existsSync(path.join(d, "y"))).toBe(false);
        expect(errnoOf(() => fs.renameSync(path.join(d, "empty"), path.join(d, "x")))).toBe("ENOTEMPTY");
        fs.writeFileSync(path.join(d, "f"), "");
        expect(errnoOf(() => fs.renameSync(path.join(d, "f"), path.join(d, "empty")))).toBe("EISDIR");
        expect(errnoOf(() => fs.renameSync(path.join(d, "empty"), path.join(d, "f")))).toBe("ENOTDIR");
        expect(errnoOf(() => fs.renameSync(path.join(d, "x"), path.join(d, "x", "inside")))).toBe("EINVAL");
        // hard links to one inode: rename is a no-op and both names stay
        fs.linkSync(path.join(d, "f"), path.join(d, "g"));
        fs.renameSync(path.join(d, "f"), path.join(d, "g"));
        expect(fs.existsSync(path.join(d, "f"))).toBe(true);
        expect(fs.statSync(d).nlink).toBe(4);
      });

      test("rename2: RENAME_NOREPLACE and RENAME_EXCHANGE", () => {
        const d = dir();
        const a = path.join(d, "a");
        const b = path.join(d, "b");
        fs.writeFileSync(a, "A");
        fs.writeFileSync(b, "B");
        expect(sys.renameat2(a, b, 1)).toBe(-E.EEXIST);
        expect(sys.renameat2(a, b, 2)).toBe(0);
        expect(fs.readFileSync(a, "utf8")).toBe("B");
        expect(fs.readFileSync(b, "utf8")).toBe("A");
        expect(sys.renameat2(a, path.join(d, "c"), 2)).toBe(-E.ENOENT);
        expect(sys.renameat2(a, path.join(d, "c"), 1)).toBe(0);
        fs.mkdirSync(path.join(d, "sub"));
        expect(sys.renameat2(path.join(d, "sub"), b, 2)).toBe(0);
        expect(fs.statSync(path.join(d, "sub")).isFile()).toBe(true);
        expect(fs.statSync(b).isDirectory()).toBe(true);
      });

      test("readdir returns every entry with types", () => {
        const d = dir();
        for (let k = 0; k < 300; k++) fs.writeFileSync(path.join(d, `f${k}`), "");
        fs.mkdirSync(path.join(d, "sub"));
        fs.symlinkSync("x", path.join(d, "ln"));
        const ents = fs.readdirSync(d, { withFileTypes: true });
        expect(ents.length).toBe(302);
        expect(ents.find((e) => e.name === "sub")!.isDirectory()).toBe(true);
        expect(ents.find((e) => e.name === "ln")!.isSymbolicLink()).toBe(true);
        expect(ents.find((e) => e.name === "f299")!.isFile()).toBe(true);
        expect(sh(`ls -a ${d} | wc -l`).out.trim()).toBe("304");
      });

      test("readdir of 100k entries with concurrent creates and unlinks", () => {
        const d = dir();
        const N = 100_000;
        for (let k = 0; k < N; k++) fs.closeSync(fs.openSync(path.join(d, `e${k}`), "w"));
        const dh = fs.opendirSync(d, { bufferSize: 64 });
        const seen = new Map<string, number>();
        const take = (count: number): void => {
          for (let k = 0; k < count; k++) {
            const e = dh.readSync();
            if (e === null) return;
            seen.set(e.name, (seen.get(e.name) ?? 0) + 1);
          }
        };
        take(10_000);
        const removed = new Set<string>();
        const added = new Set<string>();
        for (let k = 0; k < 5000; k++) {
          const victim = `e${(k * 7919) % N}`;
          if (!removed.has(victim)) {
            fs.unlinkSync(path.join(d, victim));
            removed.add(victim);
          }
          const fresh = `new${k}`;
          fs.closeSync(fs.openSync(path.join(d, fresh), "w"));
          added.add(fresh);
        }
        take(Number.MAX_SAFE_INTEGER);
        dh.closeSync();
        const dups = [...seen].filter(([, c]) => c > 1);
        expect(dups).toEqual([]);
        let missing = 0;
        for (let k = 0; k < N; k++) {
          const nm = `e${k}`;
          if (!removed.has(nm) && !seen.has(nm)) missing++;
        }
        expect(missing).toBe(0);
        for (const nm of seen.keys()) expect(nm.startsWith("e") || added.has(nm)).toBe(true);
        expect(fs.readdirSync(d).length).toBe(N - removed.size + added.size);
      }, 120_000);
    });

    describe("permissions (default_permissions)", () => {
      test("mode bits are enforced for other users", () => {
        const d = dir();
        const f = path.join(d, "secret");
        fs.writeFileSync(f, "root only");
        fs.chmodSync(f, 0o600);
        expect(sh(`cat ${f}`, "nobody").code).not.toBe(0);
        fs.chmodSync(f, 0o644);
        expect(sh(`cat ${f}`, "nobody").out).toBe("root only");
        expect(sh(`echo x >> ${f}`, "nobody").code).not.toBe(0);
        const sub = path.join(d, "closed");
        fs.mkdirSync(sub, 0o700);
        expect(sh(`ls ${sub}`, "nobody").code).not.toBe(0);
        expect(sh(`touch ${sub}/x`, "nobody").code).not.toBe(0);
      });

      test("files created by a user belong to that user; chown is refused to non-root", () => {
        const d = dir();
        expect(sh(`touch ${d}/mine && chmod 640 ${d}/mine`, "nobody").code).toBe(0);
        const st = fs.statSync(path.join(d, "mine"));
        expect(st.uid).toBe(65534);
        expect(st.gid).toBe(65534);
        expect(st.mode & 0o777).toBe(0o640);
        expect(sh(`chown 0 ${d}/mine`, "nobody").code).not.toBe(0);
        fs.chownSync(path.join(d, "mine"), 1000, 1000);
        expect(fs.statSync(path.join(d, "mine")).uid).toBe(1000);
      });

      test("sticky directory: only the owner may delete or rename", () => {
        const d = dir();
        fs.chmodSync(d, 0o1777);
        expect(sh(`touch ${d}/byuser`, { uid: 1000, gid: 1000 }).code).toBe(0);
        expect(sh(`rm -f ${d}/byuser`, "nobody").code).not.toBe(0);
        expect(sh(`mv ${d}/byuser ${d}/moved`, "nobody").code).not.toBe(0);
        expect(fs.existsSync(path.join(d, "byuser"))).toBe(true);
        expect(sh(`rm -f ${d}/byuser`, { uid: 1000, gid: 1000 }).code).toBe(0);
        expect(fs.existsSync(path.join(d, "byuser"))).toBe(false);
      });

      test("setgid directory passes its group and the bit on", () => {
        const d = dir();
        fs.chownSync(d, 0, 4242);
        fs.chmodSync(d, 0o2777);
        expect(sh(`mkdir ${d}/sub && touch ${d}/f`, "nobody").code).toBe(0);
        expect(fs.statSync(path.join(d, "f")).gid).toBe(4242);
        const sub = fs.statSync(path.join(d, "sub"));
        expect(sub.gid).toBe(4242);
        expect(sub.mode & 0o2000).toBe(0o2000);
      });

      test("writing a setuid file as another user clears setuid", () => {
        const d = dir();
        const f = path.join(d, "suid");
        fs.writeFileSync(f, "");
        fs.chmodSync(f, 0o4777);
        expect(sh(`echo x >> ${f}`, "nobody").code).toBe(0);
        expect(fs.statSync(f).mode & 0o4000).toBe(0);
      });
    });

    describe("extended attributes", () => {
      test("set, get, list, remove, flags, size probes", () => {
        const d = dir();
        const f = path.join(d, "x");
        fs.writeFileSync(f, "");
        expect(sys.setxattr(f, "user.one", Buffer.from("1"))).toBe(0);
        expect(sys.setxattr(f, "user.two", Buffer.from("twotwo"))).toBe(0);
        expect(sys.setxattr(f, "user.empty", new Uint8Array(0))).toBe(0);
        expect((sys.getxattr(f, "user.two") as Buffer).toString()).toBe("twotwo");
        expect((sys.getxattr(f, "user.empty") as Buffer).length).toBe(0);
        expect(sys.getxattrSize(f, "user.two", 0)).toBe(6);
        expect(sys.getxattrSize(f, "user.two", 3)).toBe(-E.ERANGE);
        expect((sys.listxattr(f) as string[]).sort()).toEqual(["user.empty", "user.one", "user.two"]);
        expect(sys.setxattr(f, "user.one", Buffer.from("x"), 1)).toBe(-E.EEXIST);
        expect(sys.setxattr(f, "user.three", Buffer.from("x"), 2)).toBe(-E.ENODATA);
        expect(sys.removexattr(f, "user.one")).toBe(0);
        expect(sys.getxattr(f, "user.one")).toBe(-E.ENODATA);
        expect(sys.removexattr(f, "user.one")).toBe(-E.ENODATA);
        const big = Buffer.alloc(60_000, 7);
        expect(sys.setxattr(f, "user.big", big)).toBe(0);
        expect((sys.getxattr(f, "user.big") as Buffer).equals(big)).toBe(true);
      });

      test("user xattrs follow file permissions", () => {
        const d = dir();
        const f = path.join(d, "x");
        fs.writeFileSync(f, "");
        fs.chmodSync(f, 0o600);
        expect(sys.setxattr(f, "user.k", Buffer.from("v"))).toBe(0);
        // nobody cannot read it: run a tiny bun script as nobody
        const r = Bun.spawnSync(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, "-e", `
          const { dlopen, FFIType, ptr } = require("bun:ffi");
          const l = dlopen("libc.so.6", { getxattr: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.u64], returns: FFIType.i64 } });
          const b = Buffer.alloc(16);
          console.log(String(l.symbols.getxattr(Buffer.from(${JSON.stringify(f)} + "\\0"), Buffer.from("user.k\\0"), ptr(b), 16)));
        `], { stdout: "pipe", stderr: "pipe" });
        expect(r.stdout.toString().trim()).toBe("-1");
      });
    });

    describe("locks", () => {
      test("flock excludes another holder; flock -w times out (through INTERRUPT when memfs keeps the locks)", async () => {
        const d = dir();
        const f = path.join(d, "lk");
        fs.writeFileSync(f, "");
        const holder = Bun.spawn(["flock", f, "sleep", "1.5"]);
        Bun.sleepSync(300);
        const t0 = Date.now();
        const r = sh(`flock -w 0.5 ${f} true`);
        const dt = Date.now() - t0;
        expect(r.code).not.toBe(0);
        expect(dt).toBeLessThan(2500);
        expect(sh(`flock -n ${f} true`).code).not.toBe(0);
        await holder.exited;
        expect(sh(`flock -n ${f} true`).code).toBe(0);
      });

      test("POSIX byte-range locks: conflict, release on close", async () => {
        const d = dir();
        const f = path.join(d, "rl");
        fs.writeFileSync(f, "0123456789");
        // perl's fcntl F_SETLK with a struct flock: lock bytes 0..4 for writing and hold 2 s
        const script = (start: number, len: number, hold: number) =>
          `perl -e 'use Fcntl; open(my $h, "+<", "${f}") or die; my $l = pack("s s x4 q q i x4", F_WRLCK, 0, ${start}, ${len}, 0); if (fcntl($h, F_SETLK, $l)) { print "locked\\n"; $|=1; sleep ${hold}; } else { print "busy\\n"; }'`;
        const holder = Bun.spawn(["sh", "-c", script(0, 5, 1)], { stdout: "pipe" });
        Bun.sleepSync(400);
        expect(sh(script(2, 2, 0)).out.trim()).toBe("busy");
        expect(sh(script(5, 5, 0)).out.trim()).toBe("locked");
        await holder.exited;
        expect(sh(script(0, 10, 0)).out.trim()).toBe("locked");
      });
    });
  });
}
