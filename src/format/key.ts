/**
 * The scoutfs item key: 32 bytes stored as first, second, third (u64), fourth (u8), zone, type
 * (u8), 5 bytes of padding. Keys sort by zone, first, type, second, third, fourth — not in struct
 * order — and print in that order as "zone.first.type.second.third.fourth".
 */
import { struct, u8, u64, pad } from "./struct.ts";
import { U64_MAX } from "./constants.ts";

export const KeyStruct = struct("key", 32, {
  first: [0, u64],
  second: [8, u64],
  third: [16, u64],
  fourth: [24, u8],
  zone: [25, u8],
  type: [26, u8],
  _pad: [27, pad(5)],
} as const);

export interface Key {
  first: bigint;
  second: bigint;
  third: bigint;
  fourth: number;
  zone: number;
  type: number;
}

export const KEY_SIZE = KeyStruct.size;

export function makeKey(zone: number, first: bigint, type: number, second = 0n, third = 0n, fourth = 0): Key {
  return { zone, first, type, second, third, fourth };
}

export function zeroKey(): Key {
  return makeKey(0, 0n, 0, 0n, 0n, 0);
}

export function onesKey(): Key {
  return makeKey(0xff, U64_MAX, 0xff, U64_MAX, U64_MAX, 0xff);
}

export function keyCompare(a: Key, b: Key): number {
  if (a.zone !== b.zone) return a.zone < b.zone ? -1 : 1;
  if (a.first !== b.first) return a.first < b.first ? -1 : 1;
  if (a.type !== b.type) return a.type < b.type ? -1 : 1;
  if (a.second !== b.second) return a.second < b.second ? -1 : 1;
  if (a.third !== b.third) return a.third < b.third ? -1 : 1;
  if (a.fourth !== b.fourth) return a.fourth < b.fourth ? -1 : 1;
  return 0;
}

/** Compare raw 32-byte encoded keys in sort order without decoding them. */
export function keyCompareRaw(a: DataView, aOff: number, b: DataView, bOff: number): number {
  let x = a.getUint8(aOff + 25), y = b.getUint8(bOff + 25);
  if (x !== y) return x < y ? -1 : 1;
  let p = a.getBigUint64(aOff, true), q = b.getBigUint64(bOff, true);
  if (p !== q) return p < q ? -1 : 1;
  x = a.getUint8(aOff + 26); y = b.getUint8(bOff + 26);
  if (x !== y) return x < y ? -1 : 1;
  p = a.getBigUint64(aOff + 8, true); q = b.getBigUint64(bOff + 8, true);
  if (p !== q) return p < q ? -1 : 1;
  p = a.getBigUint64(aOff + 16, true); q = b.getBigUint64(bOff + 16, true);
  if (p !== q) return p < q ? -1 : 1;
  x = a.getUint8(aOff + 24); y = b.getUint8(bOff + 24);
  return x === y ? 0 : x < y ? -1 : 1;
}

/** The "%u.%llu.%u.%llu.%llu.%u" form the scoutfs utilities print. */
export function keyFormat(k: Key): string {
  return `${k.zone}.${k.first}.${k.type}.${k.second}.${k.third}.${k.fourth}`;
}

/** The next key in sort order (carries from the least significant field). */
export function keyInc(k: Key): Key {
  const r = { ...k };
  r.fourth = (r.fourth + 1) & 0xff;
  if (r.fourth !== 0) return r;
  r.third = (r.third + 1n) & U64_MAX;
  if (r.third !== 0n) return r;
  r.second = (r.second + 1n) & U64_MAX;
  if (r.second !== 0n) return r;
  r.type = (r.type + 1) & 0xff;
  if (r.type !== 0) return r;
  r.first = (r.first + 1n) & U64_MAX;
  if (r.first !== 0n) return r;
  r.zone = (r.zone + 1) & 0xff;
  return r;
}

export function keyDec(k: Key): Key {
  const r = { ...k };
  r.fourth = (r.fourth - 1) & 0xff;
  if (r.fourth !== 0xff) return r;
  r.third = (r.third - 1n) & U64_MAX;
  if (r.third !== U64_MAX) return r;
  r.second = (r.second - 1n) & U64_MAX;
  if (r.second !== U64_MAX) return r;
  r.type = (r.type - 1) & 0xff;
  if (r.type !== 0xff) return r;
  r.first = (r.first - 1n) & U64_MAX;
  if (r.first !== U64_MAX) return r;
  r.zone = (r.zone - 1) & 0xff;
  return r;
}

// ---------------------------------------------------------------------------------------------
// Packed keys: what the engines (btree, item cache) use in memory.
//
// A packed key is the key's sort fields as 27 big-endian bytes held in a JavaScript string, one
// byte per UTF-16 code unit (0..255): zone(1) first(8) type(1) second(8) third(8) fourth(1).
// Strings compare code unit by code unit, so `a < b` on packed keys is exactly scoutfs key order,
// and they are Map keys as they are. This keeps bigint arithmetic and object allocation out of
// every comparison on the hot paths; keys are packed once where they enter from disk or the
// caller, and unpacked only to print or encode.

export type PackedKey = string;
export const PACKED_KEY_LEN = 27;

/** Offsets of the u64 fields in the 32-byte on-disk key, and the packed position of each. */
const RAW_FIRST = 0, RAW_SECOND = 8, RAW_THIRD = 16, RAW_FOURTH = 24, RAW_ZONE = 25, RAW_TYPE = 26;
const PK_ZONE = 0, PK_FIRST = 1, PK_TYPE = 9, PK_SECOND = 10, PK_THIRD = 18, PK_FOURTH = 26;

const packScratch: number[] = new Array<number>(PACKED_KEY_LEN).fill(0);

const TWO32 = 4294967296;
const SAFE_BIG = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * `v` mod 2^64 as 8 big-endian bytes. Every fs key is packed at least once per item access, so
 * this is hot: values that fit a double exactly (inode numbers, positions, seqs, blocks) take one
 * bigint-to-number conversion and number arithmetic; only larger ones (name hashes, U64_MAX
 * bounds, negatives) pay for the bigint masking and shifting, which allocate.
 */
function putBe64(out: number[], at: number, v: bigint): void {
  let lo: number, hi: number;
  if (v >= 0n && v <= SAFE_BIG) {
    const n = Number(v);
    lo = n >>> 0;
    hi = (n - lo) / TWO32;
  } else {
    lo = Number(v & 0xffffffffn);
    hi = Number((v >> 32n) & 0xffffffffn);
  }
  out[at + 7] = lo & 0xff;
  out[at + 6] = (lo >>> 8) & 0xff;
  out[at + 5] = (lo >>> 16) & 0xff;
  out[at + 4] = lo >>> 24;
  out[at + 3] = hi & 0xff;
  out[at + 2] = (hi >>> 8) & 0xff;
  out[at + 1] = (hi >>> 16) & 0xff;
  out[at] = hi >>> 24;
}

/**
 * The 27 chars of a packed key as one string. An explicit 27-argument call: with
 * `fromCharCode.apply(null, array)` the engine spreads the array on every call (a fifth of
 * keyPack's time once putBe64 avoids bigints).
 */
function charsOf(o: number[]): PackedKey {
  return String.fromCharCode(
    o[0]!, o[1]!, o[2]!, o[3]!, o[4]!, o[5]!, o[6]!, o[7]!, o[8]!, o[9]!, o[10]!, o[11]!, o[12]!, o[13]!,
    o[14]!, o[15]!, o[16]!, o[17]!, o[18]!, o[19]!, o[20]!, o[21]!, o[22]!, o[23]!, o[24]!, o[25]!, o[26]!,
  );
}

function getBe64(p: PackedKey, at: number): bigint {
  let hi = 0, lo = 0;
  for (let i = 0; i < 4; i++) hi = hi * 256 + p.charCodeAt(at + i);
  for (let i = 4; i < 8; i++) lo = lo * 256 + p.charCodeAt(at + i);
  // below 2^53 the value is an exact double: one conversion instead of three bigint operations
  return hi < 0x200000 ? BigInt(hi * TWO32 + lo) : (BigInt(hi) << 32n) | BigInt(lo);
}

export function keyPack(k: Key): PackedKey {
  const o = packScratch;
  o[PK_ZONE] = k.zone & 0xff;
  putBe64(o, PK_FIRST, k.first);
  o[PK_TYPE] = k.type & 0xff;
  putBe64(o, PK_SECOND, k.second);
  putBe64(o, PK_THIRD, k.third);
  o[PK_FOURTH] = k.fourth & 0xff;
  return charsOf(o);
}

export function keyUnpack(p: PackedKey): Key {
  if (p.length !== PACKED_KEY_LEN) throw new RangeError(`packed key of ${p.length} chars`);
  return {
    zone: p.charCodeAt(PK_ZONE),
    first: getBe64(p, PK_FIRST),
    type: p.charCodeAt(PK_TYPE),
    second: getBe64(p, PK_SECOND),
    third: getBe64(p, PK_THIRD),
    fourth: p.charCodeAt(PK_FOURTH),
  };
}

/** Pack the 32-byte on-disk key at `off` (little-endian u64s) without decoding it. */
export function packedFromRaw(buf: Uint8Array, off: number): PackedKey {
  const o = packScratch;
  o[PK_ZONE] = buf[off + RAW_ZONE]!;
  for (let i = 0; i < 8; i++) {
    o[PK_FIRST + i] = buf[off + RAW_FIRST + 7 - i]!;
    o[PK_SECOND + i] = buf[off + RAW_SECOND + 7 - i]!;
    o[PK_THIRD + i] = buf[off + RAW_THIRD + 7 - i]!;
  }
  o[PK_TYPE] = buf[off + RAW_TYPE]!;
  o[PK_FOURTH] = buf[off + RAW_FOURTH]!;
  return charsOf(o);
}

/** Write a packed key as the 32-byte on-disk key at `off` (padding zeroed). */
export function packedToRaw(p: PackedKey, buf: Uint8Array, off: number): void {
  if (p.length !== PACKED_KEY_LEN) throw new RangeError(`packed key of ${p.length} chars`);
  for (let i = 0; i < 8; i++) {
    buf[off + RAW_FIRST + 7 - i] = p.charCodeAt(PK_FIRST + i);
    buf[off + RAW_SECOND + 7 - i] = p.charCodeAt(PK_SECOND + i);
    buf[off + RAW_THIRD + 7 - i] = p.charCodeAt(PK_THIRD + i);
  }
  buf[off + RAW_FOURTH] = p.charCodeAt(PK_FOURTH);
  buf[off + RAW_ZONE] = p.charCodeAt(PK_ZONE);
  buf[off + RAW_TYPE] = p.charCodeAt(PK_TYPE);
  buf.fill(0, off + 27, off + 32);
}

/** The smallest and largest packed keys. */
export const PACKED_KEY_MIN: PackedKey = "\0".repeat(PACKED_KEY_LEN);
export const PACKED_KEY_MAX: PackedKey = "\xff".repeat(PACKED_KEY_LEN);

/** The "%u.%llu.%u.%llu.%llu.%u" form of a packed key. */
export function packedFormat(p: PackedKey): string {
  return keyFormat(keyUnpack(p));
}
