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
