import { expect, test } from "bun:test";
import { keyPack, keyUnpack, packedFromRaw, packedToRaw, keyCompare, KeyStruct, makeKey } from "../../src/format/key.ts";
// Packed keys: round trips through Key and the 32-byte on-disk form, and string order equals key order.
test("packed keys round-trip and sort exactly like keyCompare", () => {
  let s = 1;
  const r = () => { s = (s * 1103515245 + 12345) >>> 0; return s; };
  const rb = () => (BigInt(r()) << 32n | BigInt(r())) & (r() % 3 === 0 ? 0xffn : 0xffffffffffffffffn);
  const ks = [] as ReturnType<typeof makeKey>[];
  for (let i = 0; i < 2000; i++) ks.push(makeKey(r() % 3, rb(), r() % 3, rb(), rb(), r() % 256));
  for (const k of ks) {
    const p = keyPack(k);
    expect(keyUnpack(p)).toEqual(k);
    const raw = new Uint8Array(40);
    packedToRaw(p, raw, 4);
    expect(KeyStruct.decode(raw.subarray(4, 36))).toMatchObject(k);
    expect(packedFromRaw(raw, 4)).toBe(p);
  }
  for (let i = 0; i + 1 < ks.length; i++) {
    const a = ks[i]!, b = ks[i + 1]!;
    const pa = keyPack(a), pb = keyPack(b);
    expect(Math.sign(keyCompare(a, b))).toBe(pa < pb ? -1 : pa > pb ? 1 : 0);
  }
});
