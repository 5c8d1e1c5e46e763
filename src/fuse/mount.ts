/**
 * Mounting and unmounting a FUSE filesystem without libfuse or fusermount.
 *
 * mount: open /dev/fuse, then mount(2) through bun:ffi with the data string the kernel's fuse
 * module parses: `fd=N,rootmode=O,user_id=U,group_id=G[,allow_other][,default_permissions]
 * [,max_read=N][,blksize=N]`. The source argument is the fsname shown in /proc/mounts and the type
 * is "fuse" or "fuse.<subtype>". We must be root (CAP_SYS_ADMIN). The kernel sends INIT as soon
 * as mount(2) returns; `mount()` resolves once INIT is answered, so the caller sees the
 * negotiated parameters.
 *
 * unmount: umount2(target, 0), and umount2(MNT_DETACH) when the mount is busy. The umount2 call
 * runs on a short-lived worker thread, never on the event loop: tearing down the superblock may
 * send requests that need answers from this process (writeback of dirty pages, attribute flushes),
 * and a synchronous call here would deadlock against ourselves.
 *
 * External unmount (`umount MNT`, `fusermount -u`, a connection abort): the pending device reads
 * fail with ENODEV, the reader stops, `closed` resolves, the Filesystem's destroy runs once and
 * the device fd is closed. SIGINT/SIGTERM, when `handleSignals` is set, unmount and then exit
 * with 128+signal unless `onSignal` says otherwise.
 */
import { dlopen, FFIType, read as ffiRead } from "bun:ffi";
import * as fs from "node:fs";
import { Errno, FuseError, assert, errnoName } from "./errno.ts";
import type { Filesystem, InitInfo } from "./filesystem.ts";
import { AsyncReader, type RequestReader } from "./reader.ts";
import { PollReader } from "./poll-reader.ts";
import { Session, type SessionOptions } from "./session.ts";
import { WorkerReader } from "./worker-reader.ts";

export const MS_RDONLY = 1;
export const MS_NOSUID = 2;
export const MS_NODEV = 4;
export const MS_NOEXEC = 8;
export const MS_NOATIME = 1024;
export const MNT_FORCE = 1;
export const MNT_DETACH = 2;
const O_CLOEXEC = 0o2000000;

export interface MountOptions extends SessionOptions {
  /** Source shown in /proc/mounts (default "memfs"-style name given by the caller or "fuse"). */
  fsname?: string;
  /** Type becomes "fuse.<subtype>". */
  subtype?: string;
  allowOther?: boolean;
  /** Let the kernel check permissions from the mode bits (and ACLs); default true. */
  defaultPermissions?: boolean;
  readOnly?: boolean;
  /** Extra mount(2) flags (MS_*); MS_NOSUID|MS_NODEV are always added unless `dev`/`suid`. */
  flags?: number;
  dev?: boolean;
  suid?: boolean;
  /**
   * "poll" (default): the main thread reads /dev/fuse itself (non-blocking, waiting in ppoll on
   * the device and on the event loop's epoll descriptor while requests flow, and through a watcher
   * thread when idle): two wake-ups per request, as for libfuse. See poll-reader.ts.
   * "worker": threads blocking in read(2) hand requests over through shared memory (a third
   * wake-up per request, from the reader thread to the main thread).
   * "async": concurrent fs.read calls on Bun's I/O thread pool; each pending read holds a pool
   * thread, so other async fs calls of the process can starve (the pool has as many threads as
   * CPUs unless UV_THREADPOOL_SIZE says otherwise). See docs/fuse.md.
   */
  reader?: "poll" | "async" | "worker";
  /**
   * Concurrent reads (async; default 2) or reading threads (worker; default 1: one thread reading
   * into a ring keeps up with any load, and a second one only adds wake-ups, see docs/fuse.md).
   */
  readers?: number;
  /**
   * poll reader: the longest wait in ppoll(2) while requests flow, in µs (default 500), which
   * bounds how late a timer can run meanwhile; and how long to keep polling after the last
   * request, in ms (default 20), before handing the wait to a watcher thread.
   */
  pollUs?: number;
  hotMs?: number;
  /**
   * Kernel read-ahead for this mount in KiB. INIT can only lower the kernel's default (128 KiB
   * here); a larger window is set afterwards through /sys/class/bdi/<dev>/read_ahead_kb. Large
   * sequential reads then reach the filesystem as 1 MiB requests instead of 128 KiB ones.
   */
  readAheadKb?: number;
  /** Unmount on SIGINT/SIGTERM. */
  handleSignals?: boolean;
  /** Called after a signal-triggered unmount; default exits with 128+signo. */
  onSignal?: (signal: NodeJS.Signals) => void;
}

type Libc = {
  symbols: {
    mount: (source: Buffer, target: Buffer, type: Buffer, flags: number, data: Buffer) => number;
    umount2: (target: Buffer, flags: number) => number;
    __errno_location: () => number | null;
  };
};

let libcHandle: Libc | undefined;
function libc(): Libc {
  libcHandle ??= dlopen("libc.so.6", {
    mount: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
    umount2: { args: [FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
    __errno_location: { args: [], returns: FFIType.ptr },
  }) as unknown as Libc;
  return libcHandle;
}

function cString(s: string): Buffer {
  return Buffer.from(`${s}\0`, "utf8");
}

function lastErrno(): number {
  const p = libc().symbols.__errno_location();
  assert(p !== null, "__errno_location returned NULL");
  return ffiRead.i32(p, 0);
}

/** mount(2) of a FUSE filesystem on `fd`. Throws FuseError with the kernel's errno. */
export function mountSyscall(fd: number, target: string, opts: MountOptions): void {
  const st = fs.statSync(target);
  const rootmode = (st.mode & 0o170000).toString(8);
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  const data = [`fd=${fd}`, `rootmode=${rootmode}`, `user_id=${uid}`, `group_id=${gid}`];
  if (opts.allowOther ?? true) data.push("allow_other");
  if (opts.defaultPermissions ?? true) data.push("default_permissions");
  let flags = opts.flags ?? 0;
  if (!opts.dev) flags |= MS_NODEV;
  if (!opts.suid) flags |= MS_NOSUID;
  if (opts.readOnly) flags |= MS_RDONLY;
  const type = opts.subtype ? `fuse.${opts.subtype}` : "fuse";
  const source = opts.fsname ?? opts.subtype ?? "fuse";
  const r = libc().symbols.mount(cString(source), cString(target), cString(type), flags, cString(data.join(",")));
  if (r !== 0) {
    const errno = lastErrno();
    throw new FuseError(errno, `mount ${type} on ${target}: ${errnoName(errno)}`);
  }
}

/** umount2(2) on a worker thread (see the header for why). Resolves with 0 or the errno. */
export function umountAsync(target: string, flags: number): Promise<number> {
  const code = `
    import { dlopen, FFIType, read } from "bun:ffi";
    self.onmessage = (ev) => {
      const libc = dlopen("libc.so.6", {
        umount2: { args: [FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
        __errno_location: { args: [], returns: FFIType.ptr },
      });
      const r = libc.symbols.umount2(Buffer.from(ev.data.target + "\\0"), ev.data.flags);
      const errno = r === 0 ? 0 : read.i32(libc.symbols.__errno_location(), 0);
      libc.close();
      postMessage(errno);
    };`;
  const url = URL.createObjectURL(new Blob([code], { type: "application/typescript" }));
  return new Promise<number>((resolve, reject) => {
    const w = new Worker(url);
    w.onmessage = (ev: MessageEvent<number>) => {
      w.terminate();
      URL.revokeObjectURL(url);
      resolve(ev.data);
    };
    w.onerror = (ev) => {
      w.terminate();
      URL.revokeObjectURL(url);
      reject(new FuseError("EIO", `umount worker failed: ${ev.message}`));
    };
    w.postMessage({ target, flags });
  });
}

/** Unmount `target`: a normal umount, lazily detached if busy. Not mounted is not an error. */
export async function unmountPath(target: string): Promise<void> {
  let errno = await umountAsync(target, 0);
  if (errno === Errno.EBUSY) errno = await umountAsync(target, MNT_DETACH);
  if (errno !== 0 && errno !== Errno.EINVAL && errno !== Errno.ENOENT) throw new FuseError(errno, `umount ${target}: ${errnoName(errno)}`);
}

/**
 * The device number of the mount at `mountpoint`, from /proc/self/mountinfo: never stat(2) our
 * own mount point from the serving thread, the kernel would wait for us to answer GETATTR.
 */
export function mountDevice(mountpoint: string): string | undefined {
  for (const line of fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const f = line.split(" ");
    if (f[4] === mountpoint.replace(/ /g, "\\040")) return f[2];
  }
  return undefined;
}

function setReadAhead(mountpoint: string, kb: number, log: (m: string) => void): void {
  assert(Number.isInteger(kb) && kb >= 0 && kb <= 65536, `read-ahead ${kb} KiB outside [0, 64 MiB]`);
  const dev = mountDevice(mountpoint);
  try {
    if (dev === undefined) throw new Error("not in /proc/self/mountinfo");
    fs.writeFileSync(`/sys/class/bdi/${dev}/read_ahead_kb`, String(kb));
  } catch (err) {
    log(`could not set read-ahead of ${mountpoint} to ${kb} KiB: ${String(err)}`);
  }
}

export class FuseMount {
  /** Resolves when the connection has ended and the device fd is closed. */
  readonly closed: Promise<void>;
  private unmounting: Promise<void> | undefined;
  private signalHandlers: Array<[NodeJS.Signals, () => void]> = [];

  constructor(
    readonly mountpoint: string,
    readonly fd: number,
    readonly session: Session,
    readonly reader: RequestReader,
    readonly init: InitInfo,
  ) {
    this.closed = reader.closed.then(async () => {
      this.removeSignalHandlers();
      try {
        await session.runDestroy();
      } catch (err) {
        session.opts.log(`destroy failed: ${String(err)}`);
      }
      try {
        fs.closeSync(fd);
      } catch {
        // already closed
      }
    });
  }

  /** Unmount and wait for the connection to end. Safe to call more than once. */
  unmount(): Promise<void> {
    this.unmounting ??= (async () => {
      await unmountPath(this.mountpoint);
      await this.closed;
    })();
    return this.unmounting;
  }

  installSignalHandlers(onSignal?: (signal: NodeJS.Signals) => void): void {
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      const h = (): void => {
        this.unmount().then(
          () => (onSignal ? onSignal(sig) : process.exit(128 + (sig === "SIGINT" ? 2 : 15))),
          (err) => {
            this.session.opts.log(`unmount on ${sig} failed: ${String(err)}`);
            process.exit(1);
          },
        );
      };
      process.on(sig, h);
      this.signalHandlers.push([sig, h]);
    }
  }

  private removeSignalHandlers(): void {
    for (const [sig, h] of this.signalHandlers) process.off(sig, h);
    this.signalHandlers = [];
  }
}

/** Mount `filesystem` at `mountpoint` and start serving it. Resolves after INIT. */
export async function mount(filesystem: Filesystem, mountpoint: string, opts: MountOptions = {}): Promise<FuseMount> {
  const kind = opts.reader ?? "poll";
  // The poll reader reads without blocking; the others block in read(2) off the event loop.
  const fd = fs.openSync("/dev/fuse", fs.constants.O_RDWR | O_CLOEXEC | (kind === "poll" ? fs.constants.O_NONBLOCK : 0));
  let session: Session;
  let reader: RequestReader;
  try {
    // Everything that can refuse its options does so before the mount exists.
    session = new Session(fd, filesystem, opts);
    reader =
      kind === "async"
        ? new AsyncReader(session, fd, opts.readers ?? 2)
        : kind === "worker"
          ? new WorkerReader(session, fd, opts.readers ?? 1)
          : new PollReader(session, fd, { pollUs: opts.pollUs, hotMs: opts.hotMs });
    mountSyscall(fd, mountpoint, opts);
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
  reader.start();
  let init: InitInfo;
  try {
    init = await Promise.race([
      session.ready,
      reader.closed.then(() => {
        throw new FuseError("ENODEV", `${mountpoint} went away before INIT`);
      }),
    ]);
  } catch (err) {
    await unmountPath(mountpoint).catch(() => {});
    throw err;
  }
  if (opts.readAheadKb !== undefined) setReadAhead(mountpoint, opts.readAheadKb, session.opts.log);
  const m = new FuseMount(mountpoint, fd, session, reader, init);
  if (opts.handleSignals) m.installSignalHandlers(opts.onSignal);
  return m;
}
