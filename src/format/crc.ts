/**
 * crc32c (Castagnoli, reflected polynomial 0x82f63b78) the way scoutfs computes block crcs: the
 * running value starts at ~0 and is NOT inverted at the end (it is the raw result of the CPU's
 * crc32 instruction). Standard crc32c(x) is therefore ~scoutfs_crc32c(~0, x).
 *
 * On x86-64 with SSE4.2, buffers of HW_MIN_BYTES or more go to the CPU's crc32 instruction
 * through a tiny C function compiled at first use by Bun's built-in C compiler (bun:ffi `cc`,
 * TinyCC): 64 KiB of random bytes take ~8 µs instead of ~146 µs in JavaScript, which made crc
 * the largest single cost of a metadata commit (every 64 KiB block is sealed with it). TinyCC's
 * assembler lacks the crc32 mnemonic, so the instruction is spelled as bytes. The compiled code
 * is checked against the table version on test vectors before use; anything unusual (another
 * CPU, no compiler, a mismatch, SCOUTFS_CRC=soft) keeps the table version;
 * SCOUTFS_CRC_DEBUG=1 prints why the hardware path could not be used.
 *
 * Table version: slicing-by-16 over aligned 32-bit words (16 tables of 256 entries, 16 KiB):
 * ~32 µs per 64 KiB of zeros, ~146 µs of random bytes on the 2-core bench machine (table
 * lookups at random indexes). Word reads assume a little-endian host, checked once at load; a
 * big-endian host uses the bytewise loop.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { LITTLE_ENDIAN } from "./struct.ts";

const POLY = 0x82f63b78;
/** Table k (k = 0..15) at [k*256, k*256+256): the crc of a byte followed by k zero bytes. */
const T = (() => {
  const t = new Uint32Array(16 * 256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let j = 0; j < 8; j++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[i] = c >>> 0;
  }
  for (let i = 0; i < 256; i++) {
    let c = t[i]!;
    for (let k = 1; k < 16; k++) {
      c = (t[c & 0xff]! ^ (c >>> 8)) >>> 0;
      t[k * 256 + i] = c;
    }
  }
  return t;
})();

/** Continue a crc32c over bytes[start, end) from `crc`, without pre- or post-inversion. */
export function crc32c(crc: number, bytes: Uint8Array, start = 0, end = bytes.length): number {
  if (end - start >= HW_MIN_BYTES) {
    if (hw === undefined) hw = loadHardwareCrc();
    if (hw !== null) return hw(crc | 0, start === 0 && end === bytes.length ? bytes : bytes.subarray(start, end), end - start) >>> 0;
  }
  return crc32cSoft(crc, bytes, start, end);
}

/** The table-driven crc32c (any host); `crc32c` uses it below HW_MIN_BYTES or without SSE4.2. */
export function crc32cSoft(crc: number, bytes: Uint8Array, start = 0, end = bytes.length): number {
  let c = crc >>> 0;
  let i = start;
  if (LITTLE_ENDIAN && end - start >= 64) {
    while (((bytes.byteOffset + i) & 3) !== 0) c = T[(c ^ bytes[i++]!) & 0xff]! ^ (c >>> 8);
    const blocks = (end - i) >>> 4;
    c = crc32cWords(c, new Int32Array(bytes.buffer, bytes.byteOffset + i, blocks * 4));
    i += blocks * 16;
  }
  return crc32cBytes(c, bytes, i, end);
}

/**
 * The 16-byte steps over whole words, read as Int32Array: a Uint32Array element above 2^31 is a
 * double to the JIT, and a process whose first blocks held only small words (zero-filled values)
 * compiled this loop for int32 loads and then ran it ~10x slower for good once real data came.
 */
function crc32cWords(crc: number, w: Int32Array): number {
  let c = crc;
  const n = w.length;
  for (let k = 0; k < n; k += 4) {
    const a0 = w[k]! ^ c;
    const a1 = w[k + 1]!;
    const a2 = w[k + 2]!;
    const a3 = w[k + 3]!;
    c =
      T[3840 + (a0 & 0xff)]! ^ T[3584 + ((a0 >>> 8) & 0xff)]! ^ T[3328 + ((a0 >>> 16) & 0xff)]! ^ T[3072 + (a0 >>> 24)]! ^
      T[2816 + (a1 & 0xff)]! ^ T[2560 + ((a1 >>> 8) & 0xff)]! ^ T[2304 + ((a1 >>> 16) & 0xff)]! ^ T[2048 + (a1 >>> 24)]! ^
      T[1792 + (a2 & 0xff)]! ^ T[1536 + ((a2 >>> 8) & 0xff)]! ^ T[1280 + ((a2 >>> 16) & 0xff)]! ^ T[1024 + (a2 >>> 24)]! ^
      T[768 + (a3 & 0xff)]! ^ T[512 + ((a3 >>> 8) & 0xff)]! ^ T[256 + ((a3 >>> 16) & 0xff)]! ^ T[a3 >>> 24]!;
  }
  return c >>> 0;
}

function crc32cBytes(crc: number, bytes: Uint8Array, start: number, end: number): number {
  let c = crc;
  for (let i = start; i < end; i++) c = T[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return c >>> 0;
}

/** The crc stored in a block header: over the whole block after the 4-byte crc field. */
export function blockCrc(block: Uint8Array): number {
  return crc32c(0xffffffff, block, 4, block.length);
}

/** scoutfs's 64-bit hash built from two crc32c halves (crc32c_64 in the utilities). */
export function crc32c64(crc: number, bytes: Uint8Array): bigint {
  const half = (bytes.length + 1) >> 1;
  const hi = crc32c(crc, bytes, 0, half);
  const lo = crc32c(~crc >>> 0, bytes, bytes.length - half, bytes.length);
  return (BigInt(hi) << 32n) | BigInt(lo);
}

// ---------------------------------------------------------------------------------------------
// Hardware crc32c.

/** Below this many bytes the FFI call costs more than the table loop saves. */
const HW_MIN_BYTES = 256;

type HwCrc = (crc: number, bytes: Uint8Array, len: number) => number;
/** undefined: not tried yet; null: not available. */
let hw: HwCrc | null | undefined;

const HW_SOURCE = `
unsigned int scoutfs_crc32c_hw(unsigned int crc, const unsigned char *p, unsigned long long len) {
  unsigned long long c = crc;
  unsigned long long v;
  unsigned int c32, b;
  while (len >= 8) {
    v = *(const unsigned long long *)p;
    /* crc32q %rcx, %rax */
    __asm__ __volatile__("movq %1, %%rax\\n\\tmovq %2, %%rcx\\n\\t.byte 0xf2, 0x48, 0x0f, 0x38, 0xf1, 0xc1\\n\\tmovq %%rax, %0"
                         : "=m"(c) : "m"(c), "m"(v) : "rax", "rcx");
    p += 8;
    len -= 8;
  }
  c32 = (unsigned int)c;
  while (len) {
    b = *p;
    /* crc32b %cl, %eax */
    __asm__ __volatile__("movl %1, %%eax\\n\\tmovl %2, %%ecx\\n\\t.byte 0xf2, 0x0f, 0x38, 0xf0, 0xc1\\n\\tmovl %%eax, %0"
                         : "=m"(c32) : "m"(c32), "m"(b) : "rax", "rcx");
    p++;
    len--;
  }
  return c32;
}
`;

function cpuHasSse42(): boolean {
  try {
    return /^flags\s*:.*\bsse4_2\b/m.test(fs.readFileSync("/proc/cpuinfo", "latin1"));
  } catch {
    return false;
  }
}

/** Compile and verify the hardware crc, or null (silently: the table version is always right). */
function loadHardwareCrc(): HwCrc | null {
  if (process.env.SCOUTFS_CRC === "soft" || process.arch !== "x64" || !LITTLE_ENDIAN || !cpuHasSse42()) return null;
  let dir: string | null = null;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { cc } = require("bun:ffi") as typeof import("bun:ffi");
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "scoutfs-crc-"));
    const src = path.join(dir, "crc32c.c");
    fs.writeFileSync(src, HW_SOURCE);
    const lib = cc({ source: src, symbols: { scoutfs_crc32c_hw: { args: ["u32", "ptr", "u64"], returns: "u32" } } });
    const f = lib.symbols.scoutfs_crc32c_hw as unknown as (crc: number, p: Uint8Array, len: number) => number;
    // check against the table version: lengths around the 8-byte steps, odd offsets, both seeds
    const v = new Uint8Array(4096 + 3);
    for (let i = 0; i < v.length; i++) v[i] = (i * 167 + 13) & 0xff;
    for (const [off, len] of [[0, 4096], [3, 4096], [1, 257], [0, 8], [5, 15]] as const) {
      const b = v.subarray(off, off + len);
      for (const seed of [0, 0xffffffff, 0x12345678]) {
        if (f(seed | 0, b, len) >>> 0 !== crc32cSoft(seed, b)) return null;
      }
    }
    return f;
  } catch (e) {
    if (process.env.SCOUTFS_CRC_DEBUG) console.error(e);
    return null;
  } finally {
    if (dir !== null) fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Which implementation large buffers use ("hardware" or "table"), for tests and diagnostics. */
export function crc32cImplementation(): "hardware" | "table" {
  if (hw === undefined) hw = loadHardwareCrc();
  return hw === null ? "table" : "hardware";
}
