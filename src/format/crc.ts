/**
 * crc32c (Castagnoli, reflected polynomial 0x82f63b78) the way scoutfs computes block crcs: the
 * running value starts at ~0 and is NOT inverted at the end (it is the raw result of the CPU's
 * crc32 instruction). Standard crc32c(x) is therefore ~scoutfs_crc32c(~0, x).
 *
 * Slicing-by-8 tables keep a 64 KiB block at a few hundred microseconds in JS.
 */

const POLY = 0x82f63b78;
const TABLES: Uint32Array[] = (() => {
  const t: Uint32Array[] = [];
  for (let k = 0; k < 8; k++) t.push(new Uint32Array(256));
  const t0 = t[0]!;
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let j = 0; j < 8; j++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t0[i] = c >>> 0;
  }
  for (let i = 0; i < 256; i++) {
    let c = t0[i]!;
    for (let k = 1; k < 8; k++) {
      c = (t0[c & 0xff]! ^ (c >>> 8)) >>> 0;
      t[k]![i] = c;
    }
  }
  return t;
})();
const [T0, T1, T2, T3, T4, T5, T6, T7] = TABLES as [
  Uint32Array, Uint32Array, Uint32Array, Uint32Array,
  Uint32Array, Uint32Array, Uint32Array, Uint32Array,
];

/** Continue a crc32c over bytes[start, end) from `crc`, without pre- or post-inversion. */
export function crc32c(crc: number, bytes: Uint8Array, start = 0, end = bytes.length): number {
  let c = crc >>> 0;
  let i = start;
  const fast = end - ((end - start) & 7);
  while (i < fast) {
    const lo = (c ^ (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24))) >>> 0;
    c =
      T7[lo & 0xff]! ^
      T6[(lo >>> 8) & 0xff]! ^
      T5[(lo >>> 16) & 0xff]! ^
      T4[lo >>> 24]! ^
      T3[bytes[i + 4]!]! ^
      T2[bytes[i + 5]!]! ^
      T1[bytes[i + 6]!]! ^
      T0[bytes[i + 7]!]!;
    i += 8;
  }
  while (i < end) c = T0[(c ^ bytes[i++]!) & 0xff]! ^ (c >>> 8);
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
