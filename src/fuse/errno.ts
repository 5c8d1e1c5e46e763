/**
 * Errors of the FUSE library. A filesystem fails an operation by throwing a FuseError (or any error
 * carrying a numeric `errno` or a Node-style `code` such as "ENOENT"); the session turns it into the
 * negative errno of the reply. Anything else thrown is a bug in the filesystem: it is logged and
 * answered with EIO, never allowed to take the process down.
 *
 * This library imports nothing from the rest of the project (it is a leaf), so it carries its own
 * table of the Linux errno numbers it needs.
 */

export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  ENOTTY: 25,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EROFS: 30,
  EMLINK: 31,
  ERANGE: 34,
  EDEADLK: 35,
  ENAMETOOLONG: 36,
  ENOLCK: 37,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ELOOP: 40,
  ENODATA: 61,
  EPROTO: 71,
  EOVERFLOW: 75,
  EOPNOTSUPP: 95,
  ESTALE: 116,
} as const;

export type ErrnoName = keyof typeof Errno;

const NAME_OF = new Map<number, string>(Object.entries(Errno).map(([k, v]) => [v, k]));

export function errnoName(errno: number): string {
  return NAME_OF.get(errno) ?? `errno ${errno}`;
}

/** An operation failed with a Linux errno; `message` says what and where, for logs. */
export class FuseError extends Error {
  readonly errno: number;
  readonly code: string;

  constructor(code: ErrnoName | number, message?: string) {
    const errno = typeof code === "number" ? code : Errno[code];
    const name = errnoName(errno);
    super(message ?? name);
    this.name = "FuseError";
    this.errno = errno;
    this.code = name;
  }
}

/** Throw a FuseError: `fail("ENOENT")`. */
export function fail(code: ErrnoName | number, message?: string): never {
  throw new FuseError(code, message);
}

/**
 * The errno an error stands for, or 0 when it carries none (a bug: the caller answers EIO and
 * logs it). Accepts our FuseError, any error with a numeric positive `errno`, and Node/Bun system
 * errors (`code: "ENOENT"`, whose `errno` is negative).
 */
export function errnoOf(err: unknown): number {
  if (err instanceof FuseError) return err.errno;
  if (err !== null && typeof err === "object") {
    const e = err as { errno?: unknown; code?: unknown };
    if (typeof e.code === "string" && e.code in Errno) return Errno[e.code as ErrnoName];
    if (typeof e.errno === "number" && e.errno > 0 && e.errno < 4096) return e.errno;
  }
  return 0;
}

/** Invariant check: a failure is a bug in this library, reported loudly. */
export class FuseAssertionError extends Error {
  constructor(message: string) {
    super(`fuse assertion failed: ${message}`);
    this.name = "FuseAssertionError";
  }
}

export function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new FuseAssertionError(message);
}
