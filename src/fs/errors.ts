/**
 * Errors of the filesystem layer. Operations fail with an errno the way the kernel's scoutfs
 * would: ScoutfsError (src/util/errors.ts) for the errnos the project's table knows, and the FUSE
 * library's FuseError for the few POSIX-only ones that table lacks (EXDEV, EMLINK, EOPNOTSUPP,
 * E2BIG, ELOOP). Both carry `errno` and `code`, so any caller (FUSE replies, the management API)
 * reads them the same way.
 */
import { type ErrnoName as FuseErrnoName, FuseError } from "../fuse/errno.ts";
import { ERRNO, type ErrnoName, ScoutfsError } from "../util/errors.ts";

export type FsErrno = ErrnoName | FuseErrnoName;

export function fsFail(code: FsErrno, message: string): never {
  if (code in ERRNO) throw new ScoutfsError(code as ErrnoName, message);
  throw new FuseError(code as FuseErrnoName, message);
}

/** The errno an error stands for, or 0 when it carries none (a bug). */
export function fsErrno(err: unknown): number {
  if (err instanceof ScoutfsError || err instanceof FuseError) return err.errno;
  return 0;
}
