import { expect, test } from "bun:test";
import { keyPack, keyUnpack, makeKey } from "../../src/format/key.ts";
// keyPack packs u64s below 2^53 through doubles and the rest through bigint masking: both paths,
// and the boundary between them, must give the reference bytes (v mod 2^64, big-endian).

function refPack(zone: number, first: bigint, type: number, second: bigint, third: bigint, fourth: number): string {
  const be = (v: bigint) => {
    const m = BigInt.asUintN(64, v);
    let s = "";
    for (let i = 7; i >= 0; i--) s += String.fromCharCode(Number((m >> BigInt(i * 8)) & 0xffn));
    return s;
  };
  return String.fromCharCode(zone & 0xff) + be(first) + String.fromCharCode(type & 0xff) + be(second) + be(third) + String.fromCharCode(fourth & 0xff);
}

test("keyPack and keyUnpack at the 2^32 and 2^53 boundaries, U64_MAX and negatives", () => {
  const vals = [0n, 1n, 255n, 256n, 0xffffffffn, 0x100000000n, 0x1234567890n, (1n << 53n) - 2n, (1n << 53n) - 1n, 1n << 53n, (1n << 53n) + 1n, (1n << 63n) - 1n, 1n << 63n, 0xffffffffffffffffn, -1n, -2n, -(1n << 53n)];
  for (const a of vals) {
    for (const b of vals) {
      const k = makeKey(16, a, 3, b, a ^ b, 7);
      const p = keyPack(k);
      expect(p).toBe(refPack(16, a, 3, b, a ^ b, 7));
      const u = keyUnpack(p);
      expect(u.first).toBe(BigInt.asUintN(64, a));
      expect(u.second).toBe(BigInt.asUintN(64, b));
      expect(u.third).toBe(BigInt.asUintN(64, a ^ b));
    }
  }
});
