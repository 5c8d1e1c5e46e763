/**
 * Symlink targets. The target and a terminating NUL are stored in SYMLINK items of the inode,
 * split into parts of at most MAX_VAL_SIZE (896) bytes at nr 0, 1, ...; the inode's size is the
 * stored length (target + 1). Targets are at most SYMLINK_MAX_SIZE (4096) bytes with the NUL.
 */
import { MAX_VAL_SIZE, SYMLINK_MAX_SIZE } from "../format/constants.ts";
import type { ItemReader } from "../item/types.ts";
import { fsFail } from "./errors.ts";
import { symlinkKey } from "./keys.ts";
import type { Tx } from "./trans.ts";

function partCount(size: number): number {
  return Math.ceil(size / MAX_VAL_SIZE);
}

export function symlinkCreate(tx: Tx, ino: bigint, target: Uint8Array): void {
  const size = target.length + 1;
  if (size > SYMLINK_MAX_SIZE) fsFail("ENAMETOOLONG", `symlink target of ${target.length} bytes`);
  const stored = new Uint8Array(size);
  stored.set(target);
  for (let nr = 0; nr < partCount(size); nr++) {
    tx.w.create(symlinkKey(ino, nr), stored.slice(nr * MAX_VAL_SIZE, Math.min(size, (nr + 1) * MAX_VAL_SIZE)));
  }
}

/** The target (without its NUL) of a symlink whose inode size is `size`. */
export function symlinkRead(r: ItemReader, ino: bigint, size: bigint): Uint8Array {
  const n = Number(size);
  if (n < 1 || n > SYMLINK_MAX_SIZE) fsFail("EIO", `symlink ${ino} has size ${size}`);
  const out = new Uint8Array(n);
  for (let nr = 0; nr < partCount(n); nr++) {
    const want = Math.min(MAX_VAL_SIZE, n - nr * MAX_VAL_SIZE);
    const v = r.lookup(symlinkKey(ino, nr));
    if (v === null || v.length !== want) fsFail("EIO", `symlink ${ino} part ${nr} missing or short`);
    out.set(v, nr * MAX_VAL_SIZE);
  }
  if (out[n - 1] !== 0) fsFail("EIO", `symlink ${ino} target is not NUL-terminated`);
  return out.subarray(0, n - 1);
}

/** Delete the parts of a symlink of inode size `size` (missing parts are fine: partial deletes). */
export function symlinkDrop(tx: Tx, ino: bigint, size: bigint): void {
  const n = Number(size);
  for (let nr = 0; nr < partCount(Math.max(n, 1)); nr++) {
    const k = symlinkKey(ino, nr);
    if (tx.w.lookup(k) !== null) tx.w.delete(k);
  }
}
