/**
 * srch entry coding: each entry in a srch block is stored as the difference from the previous
 * entry's (hash, ino, id), each difference zigzag-encoded and written in as few little-endian
 * bytes as it needs, after a u16 of three 4-bit byte counts.
 */
import type { SrchEntry } from "./log_trees.ts";

const MASK64 = 0xffffffffffffffffn;

function zigzagDecode(v: bigint): bigint {
  return ((v >> 1n) ^ (-(v & 1n) & MASK64)) & MASK64;
}

function zigzagEncode(v: bigint): bigint {
  const s = BigInt.asIntN(64, v);
  return ((s << 1n) ^ (s >> 63n)) & MASK64;
}

/** Decode one entry at `off`; reads are bounded by the buffer (missing bytes read as zero). */
export function decodeSrchEntry(buf: Uint8Array, off: number, prev: SrchEntry): { entry: SrchEntry; bytes: number } {
  let lengths = (buf[off] ?? 0) | ((buf[off + 1] ?? 0) << 8);
  let tot = 2;
  const diffs: bigint[] = [];
  for (let i = 0; i < 3; i++) {
    const n = Math.min(8, lengths & 15);
    let v = 0n;
    for (let b = n - 1; b >= 0; b--) v = (v << 8n) | BigInt(buf[off + tot + b] ?? 0);
    diffs.push(zigzagDecode(v));
    tot += n;
    lengths >>= 4;
  }
  return {
    entry: {
      hash: (prev.hash + diffs[0]!) & MASK64,
      ino: (prev.ino + diffs[1]!) & MASK64,
      id: (prev.id + diffs[2]!) & MASK64,
    },
    bytes: tot,
  };
}

/** Encode `e` after `prev` at `off`; returns the bytes used (at most SRCH_ENTRY_MAX_BYTES). */
export function encodeSrchEntry(buf: Uint8Array, off: number, e: SrchEntry, prev: SrchEntry): number {
  const diffs = [(e.hash - prev.hash) & MASK64, (e.ino - prev.ino) & MASK64, (e.id - prev.id) & MASK64];
  let lengths = 0;
  let tot = 2;
  diffs.forEach((d, i) => {
    let v = zigzagEncode(d);
    let n = 0;
    while (v > 0n) {
      buf[off + tot + n] = Number(v & 0xffn);
      v >>= 8n;
      n++;
    }
    lengths |= n << (i * 4);
    tot += n;
  });
  buf[off] = lengths & 0xff;
  buf[off + 1] = lengths >> 8;
  return tot;
}
