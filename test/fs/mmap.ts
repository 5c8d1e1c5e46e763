/**
 * mmap(2)/msync(2)/munmap(2) through bun:ffi for the mount tests: map a file range MAP_SHARED,
 * read or write it through the mapping (page faults become FUSE READs; dirty pages reach the
 * filesystem as WRITEs on msync), unmap. The file must be served by another process: a fault on
 * a mount served by the faulting process itself would deadlock.
 */
import { dlopen, FFIType, read as ffiRead, toArrayBuffer } from "bun:ffi";

const libc = dlopen("libc.so.6", {
  mmap: { args: [FFIType.ptr, FFIType.u64, FFIType.i32, FFIType.i32, FFIType.i32, FFIType.i64], returns: FFIType.ptr },
  msync: { args: [FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i32 },
  munmap: { args: [FFIType.ptr, FFIType.u64], returns: FFIType.i32 },
  __errno_location: { args: [], returns: FFIType.ptr },
});

const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;
const MS_SYNC = 4;
export const PAGE_BYTES = 4096;
const MAP_FAILED = 0xffffffffffffffff;

function errno(): number {
  return ffiRead.i32(libc.symbols.__errno_location()!, 0);
}

/**
 * Map [off, off + len) of `fd` (off page-aligned), run `fn` on the mapped bytes, msync(MS_SYNC)
 * if it wrote, and unmap (also on a throw). The view must not escape `fn`.
 */
export function withMapping<T>(fd: number, off: number, len: number, write: boolean, fn: (view: Uint8Array) => T): T {
  if (off % PAGE_BYTES !== 0 || len <= 0) throw new Error(`bad mapping ${off}+${len}`);
  const prot = write ? PROT_READ | PROT_WRITE : PROT_READ;
  const p = libc.symbols.mmap(null, len, prot, MAP_SHARED, fd, off);
  if (p === null || Number(p) === MAP_FAILED || Number(p) === -1) throw new Error(`mmap failed: errno ${errno()}`);
  try {
    const view = new Uint8Array(toArrayBuffer(p, 0, len));
    const r = fn(view);
    if (write && libc.symbols.msync(p, len, MS_SYNC) !== 0) throw new Error(`msync failed: errno ${errno()}`);
    return r;
  } finally {
    libc.symbols.munmap(p, len);
  }
}
