/**
 * Sizes as the scoutfs utilities parse and print them: "40M", "10G" (powers of two) in, and
 * "64.56MB" / "1033 (64.56 MB)" out. Printing follows the C tools exactly, including their use
 * of single-precision floats, so summaries match the real mkfs byte for byte.
 */
import { ScoutfsError } from "./errors.ts";

const SHIFTS: Record<string, bigint> = { "": 0n, K: 10n, M: 20n, G: 30n, T: 40n, P: 50n };

/** Parse "N[KMGTP]" (N decimal, 0x hex or 0 octal like strtoull base 0). */
export function parseHuman(str: string): bigint {
  const m = /^\s*(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)([A-Za-z]*)$/.exec(str);
  if (!m) throw new ScoutfsError("EINVAL", `invalid size '${str}': expected a number with an optional K, M, G, T or P suffix`);
  const suffix = m[2]!;
  if (!(suffix in SHIFTS)) throw new ScoutfsError("ERANGE", `unknown size suffix '${suffix}' in '${str}' (use K, M, G, T or P)`);
  const num = m[1]!.startsWith("0x") || m[1]!.startsWith("0X") ? BigInt(m[1]!) : m[1]!.length > 1 && m[1]!.startsWith("0") ? BigInt("0o" + m[1]!.slice(1)) : BigInt(m[1]!);
  const v = num << SHIFTS[suffix]!;
  if (v > 0xffffffffffffffffn) throw new ScoutfsError("ERANGE", `size too big: '${str}'`);
  return v;
}

/** Parse a u64 the way strtoull(base 0) does, refusing trailing junk. */
export function parseU64(str: string, what: string): bigint {
  const m = /^\s*(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(str);
  if (!m) throw new ScoutfsError("EINVAL", `invalid ${what} '${str}': expected an unsigned 64-bit number`);
  const s = m[1]!;
  const v = s.startsWith("0x") || s.startsWith("0X") ? BigInt(s) : s.length > 1 && s.startsWith("0") ? BigInt("0o" + s.slice(1)) : BigInt(s);
  if (v > 0xffffffffffffffffn) throw new ScoutfsError("ERANGE", `${what} '${str}' does not fit in 64 bits`);
  return v;
}

const SUFFIXES = ["B", "KB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];

function scaled(nr: bigint, size: number): { x: number; i: number } {
  let x = Math.fround(Math.fround(Number(nr)) * Math.fround(size));
  let i = 0;
  while (x >= 1024) {
    x = Math.fround(x / 1024);
    i++;
  }
  return { x, i };
}

/** printf("%.2f") of an exact binary value: round half to even like glibc. */
export function fixed2(x: number): string {
  const neg = x < 0;
  const y = Math.abs(x) * 100;
  let n = Math.floor(y);
  const frac = y - n;
  if (frac > 0.5 || (frac === 0.5 && n % 2 === 1)) n++;
  const s = `${Math.floor(n / 100)}.${String(n % 100).padStart(2, "0")}`;
  return neg ? `-${s}` : s;
}

/** BASE_SIZE_FMT: "64.56MB". */
export function baseSize(bytes: bigint): string {
  const { x, i } = scaled(bytes, 1);
  return `${fixed2(x)}${SUFFIXES[i]}`;
}

/** SIZE_FMT: "1033 (64.56 MB)" for nr blocks of size bytes. */
export function blocksSize(nr: bigint, size: number): string {
  const { x, i } = scaled(nr, size);
  return `${nr} (${fixed2(x)} ${SUFFIXES[i]})`;
}
