/**
 * Hashes that are part of the format: FNV-1a (scoutfs_hash32/64) used by the leaf item hash table
 * and xattr names, and the directory entry name hash (FNV-1a low half, an order-preserving
 * 32-bit fingerprint of the name in the high half).
 */

export function fnv1a32(data: Uint8Array, start = 0, end = data.length): number {
  let h = 0x811c9dc5;
  for (let i = start; i < end; i++) {
    h ^= data[i]!;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

const FNV64_PRIME = 0x100000001b3n;
const MASK64 = 0xffffffffffffffffn;

export function fnv1a64(data: Uint8Array): bigint {
  let h = 0xcbf29ce484222325n;
  for (let i = 0; i < data.length; i++) {
    h ^= BigInt(data[i]!);
    h = (h * FNV64_PRIME) & MASK64;
  }
  return h;
}

/**
 * 32 bits taken evenly across the name, read as one big-endian number, so that fingerprints sort
 * like memcmp() of the names. Short names land in the high bits.
 */
export function direntNameFingerprint(name: Uint8Array): number {
  const nameBits = name.length * 8;
  const skip = Math.max(Math.floor(nameBits / 32), 1);
  let fp = 0;
  for (let f = 31, n = nameBits - 1; f >= 0 && n >= 0; f--, n -= skip) {
    const byte = name[(nameBits - 1 - n) >> 3]!;
    if (byte & (1 << (n & 7))) fp |= 1 << f;
  }
  return fp >>> 0;
}

export function direntNameHash(name: Uint8Array): bigint {
  return BigInt(fnv1a32(name)) | (BigInt(direntNameFingerprint(name)) << 32n);
}
