/**
 * One error class for the whole project: it carries a Linux errno name and number so that every
 * layer can hand it upward unchanged, the FUSE layer can reply with it, and the CLI can print a
 * one-line message and exit non-zero. Messages say what failed and where; `hint` says what to do.
 */

export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  ENXIO: 6,
  EBADF: 9,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  EFBIG: 27,
  ENOSPC: 28,
  EROFS: 30,
  ERANGE: 34,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ENODATA: 61,
  ENOLINK: 67,
  EPROTO: 71,
  EOVERFLOW: 75,
  EBADMSG: 74,
  EUCLEAN: 117,
  ESTALE: 116,
} as const;

export type ErrnoName = keyof typeof ERRNO;

export class ScoutfsError extends Error {
  readonly code: ErrnoName;
  readonly errno: number;
  readonly hint: string | undefined;

  constructor(code: ErrnoName, message: string, hint?: string) {
    super(message);
    this.name = "ScoutfsError";
    this.code = code;
    this.errno = ERRNO[code];
    this.hint = hint;
  }
}

export function fail(code: ErrnoName, message: string, hint?: string): never {
  throw new ScoutfsError(code, message, hint);
}

/** Map a Node/Bun system error (err.code = "ENOENT", ...) to our error, keeping its meaning. */
export function fromSystemError(err: unknown, what: string): ScoutfsError {
  if (err instanceof ScoutfsError) return err;
  const e = err as { code?: string; message?: string };
  const code = e?.code && e.code in ERRNO ? (e.code as ErrnoName) : "EIO";
  const detail = e?.code ?? e?.message ?? String(err);
  return new ScoutfsError(code, `${what}: ${detail}`);
}

/**
 * A command that has already told the user what went wrong (on stderr) and only needs to exit
 * with `code`; the CLI prints nothing more for it.
 */
export class QuietExit extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
    this.name = "QuietExit";
  }
}
