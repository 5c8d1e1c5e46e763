/**
 * Test helpers for real FUSE mounts: a memfs served by a child process (so the test process can
 * make synchronous calls on the mount without deadlocking against its own server), and a few
 * system calls Node does not expose (renameat2, linkat, lseek SEEK_DATA/HOLE, xattrs,
 * copy_file_range, ioctl) through bun:ffi.
 */
import { dlopen, FFIType, ptr, read as ffiRead } from "bun:ffi";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const ROOT = path.join(import.meta.dir, "..", "..");

export interface MemfsServer {
  mnt: string;
  proc: ReturnType<typeof Bun.spawn>;
  init: Record<string, unknown>;
  stderr: () => string;
  stop: () => Promise<void>;
}

/** Mount a memfs served by a child process in a fresh temp dir. */
export async function startMemfs(extra: string[] = []): Promise<MemfsServer> {
  const mnt = fs.mkdtempSync(path.join(os.tmpdir(), "fuse-test-"));
  fs.chmodSync(mnt, 0o755);
  const proc = Bun.spawn([process.execPath, path.join(ROOT, "src/fuse/memfs-main.ts"), mnt, ...extra], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, MEMFS_COUNTERS: "1" },
  });
  let err = "";
  void (async () => {
    const dec = new TextDecoder();
    for await (const c of proc.stderr as ReadableStream<Uint8Array>) err += dec.decode(c);
  })();
  const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
  let out = "";
  const deadline = Date.now() + 10_000;
  while (!out.includes("\n")) {
    const r = await Promise.race([reader.read(), Bun.sleep(Math.max(1, deadline - Date.now())).then(() => undefined)]);
    if (r === undefined || r.done) {
      proc.kill();
      fs.rmdirSync(mnt);
      throw new Error(`memfs did not start: ${out} ${err}`);
    }
    out += new TextDecoder().decode(r.value);
  }
  reader.releaseLock();
  const line = out.split("\n")[0]!;
  if (!line.startsWith("ready ")) throw new Error(`memfs said: ${line} ${err}`);
  const server: MemfsServer = {
    mnt,
    proc,
    init: JSON.parse(line.slice(6)) as Record<string, unknown>,
    stderr: () => err,
    stop: async () => {
      if (isMounted(mnt)) {
        const dev = fs.statSync(mnt).dev;
        const r = Bun.spawnSync(["umount", mnt]);
        if (r.exitCode !== 0) {
          // Busy (a test left a process in there): detach, and abort the connection so the
          // server sees the end now rather than when the last user goes.
          Bun.spawnSync(["umount", "-l", mnt]);
          try {
            fs.writeFileSync(`/sys/fs/fuse/connections/${dev & 0xff}/abort`, "1");
          } catch {
            // no fusectl mounted; the server ends when the mount is finally released
          }
        }
      }
      const done = await Promise.race([proc.exited, Bun.sleep(5000).then(() => "timeout")]);
      if (done === "timeout") proc.kill("SIGKILL");
      try {
        fs.rmdirSync(mnt);
      } catch {
        // left for the OS tmp cleaner if still busy
      }
    },
  };
  return server;
}

/** Requests per opcode (and counters) since the previous call: memfs-main answers SIGUSR2. */
export async function serverStats(s: MemfsServer): Promise<{ opcodes: Record<string, number>; counters: Record<string, number>; loopFd?: number }> {
  const reader = (s.proc.stdout as ReadableStream<Uint8Array>).getReader();
  try {
    s.proc.kill("SIGUSR2");
    let out = "";
    const deadline = Date.now() + 5000;
    while (!out.includes("\n")) {
      const r = await Promise.race([reader.read(), Bun.sleep(Math.max(1, deadline - Date.now())).then(() => undefined)]);
      if (r === undefined || r.done) throw new Error(`no stats from memfs: ${out} ${s.stderr()}`);
      out += new TextDecoder().decode(r.value);
    }
    const line = out.split("\n")[0]!;
    if (!line.startsWith("stats ")) throw new Error(`memfs said: ${line}`);
    return JSON.parse(line.slice(6)) as { opcodes: Record<string, number>; counters: Record<string, number>; loopFd?: number };
  } finally {
    reader.releaseLock();
  }
}

/** The error code (EACCES, ENOENT, ...) `fn` throws, or undefined when it does not throw. */
export function errnoOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    return (e as { code?: string }).code;
  }
}

export function isMounted(mnt: string): boolean {
  return fs.readFileSync("/proc/mounts", "utf8").split("\n").some((l) => l.split(" ")[1] === mnt);
}

/** Run a shell command as another user (default nobody). */
export function sh(cmd: string, user: "root" | "nobody" | { uid: number; gid: number } = "root"): { code: number; out: string; err: string } {
  const argv =
    user === "root"
      ? ["sh", "-c", cmd]
      : user === "nobody"
        ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", cmd]
        : ["setpriv", `--reuid=${user.uid}`, `--regid=${user.gid}`, "--clear-groups", "sh", "-c", cmd];
  const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode ?? -1, out: r.stdout.toString(), err: r.stderr.toString() };
}

// ---------------------------------------------------------------------------------------------
// System calls through libc.

const libc = dlopen("libc.so.6", {
  renameat2: { args: [FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
  linkat: { args: [FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
  lseek: { args: [FFIType.i32, FFIType.i64, FFIType.i32], returns: FFIType.i64 },
  setxattr: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i32 },
  getxattr: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.u64], returns: FFIType.i64 },
  listxattr: { args: [FFIType.ptr, FFIType.ptr, FFIType.u64], returns: FFIType.i64 },
  removexattr: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  copy_file_range: { args: [FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.u32], returns: FFIType.i64 },
  ioctl: { args: [FFIType.i32, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
  __errno_location: { args: [], returns: FFIType.ptr },
});
const S = libc.symbols;

function cs(s: string): Buffer {
  return Buffer.from(`${s}\0`);
}

function errno(): number {
  return ffiRead.i32(S.__errno_location()!, 0);
}

/** Result of a raw call: the value, or the negative errno. */
function check(r: number | bigint): number {
  const n = Number(r);
  return n < 0 ? -errno() : n;
}

export const AT_FDCWD = -100;
export const AT_SYMLINK_FOLLOW = 0x400;
export const O_TMPFILE = 0o20200000;

export const sys = {
  renameat2: (from: string, to: string, flags: number) => check(S.renameat2(AT_FDCWD, cs(from), AT_FDCWD, cs(to), flags)),
  linkFd: (fd: number, to: string) => check(S.linkat(AT_FDCWD, cs(`/proc/self/fd/${fd}`), AT_FDCWD, cs(to), AT_SYMLINK_FOLLOW)),
  lseek: (fd: number, off: number, whence: number) => check(S.lseek(fd, off, whence)),
  setxattr: (p: string, name: string, value: Uint8Array, flags = 0) => check(S.setxattr(cs(p), cs(name), value.byteLength ? ptr(value) : null, value.byteLength, flags)),
  getxattr: (p: string, name: string): Buffer | number => {
    const buf = Buffer.alloc(65536);
    const n = check(S.getxattr(cs(p), cs(name), ptr(buf), buf.byteLength));
    return n < 0 ? n : buf.subarray(0, n);
  },
  getxattrSize: (p: string, name: string, size: number): number => {
    const buf = Buffer.alloc(Math.max(size, 1));
    return check(S.getxattr(cs(p), cs(name), size ? ptr(buf) : null, size));
  },
  listxattr: (p: string): string[] | number => {
    const buf = Buffer.alloc(65536);
    const n = check(S.listxattr(cs(p), ptr(buf), buf.byteLength));
    if (n < 0) return n;
    return buf.subarray(0, n).toString("latin1").split("\0").filter((s) => s.length > 0);
  },
  removexattr: (p: string, name: string) => check(S.removexattr(cs(p), cs(name))),
  copyFileRange: (fdIn: number, offIn: number, fdOut: number, offOut: number, len: number) => {
    const a = new BigInt64Array([BigInt(offIn)]);
    const b = new BigInt64Array([BigInt(offOut)]);
    return check(S.copy_file_range(fdIn, ptr(a), fdOut, ptr(b), len, 0));
  },
  ioctl: (fd: number, cmd: number, arg: Uint8Array) => check(S.ioctl(fd, cmd, ptr(arg))),
};

export const E = { EPERM: 1, ENOENT: 2, EINTR: 4, EACCES: 13, EEXIST: 17, EXDEV: 18, ENOTDIR: 20, EISDIR: 21, EINVAL: 22, ENOTEMPTY: 39, ENODATA: 61, ERANGE: 34, ENXIO: 6 };
