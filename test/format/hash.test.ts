import { describe, expect, test } from "bun:test";
import { crc32c, crc32cImplementation, crc32cSoft, blockCrc } from "../../src/format/crc.ts";
import { fnv1a32, fnv1a64, direntNameHash, direntNameFingerprint } from "../../src/format/hash.ts";
import { keyCompare, keyInc, keyDec, makeKey, keyCompareRaw, KeyStruct, keyFormat } from "../../src/format/key.ts";
import { freeExtentOrder } from "../../src/format/alloc.ts";
import { view } from "../../src/format/struct.ts";

const enc = new TextEncoder();

describe("crc32c as scoutfs computes it", () => {
  test("raw crc without final inversion (check value of standard crc32c is e3069283)", () => {
    expect(crc32c(0xffffffff, enc.encode("123456789"))).toBe(~0xe3069283 >>> 0);
  });
  test("slicing path equals the bytewise path for all lengths and offsets", () => {
    const data = new Uint8Array(300).map((_, i) => (i * 131 + 7) & 0xff);
    const slow = (c: number, b: Uint8Array) => {
      for (const x of b) { c ^= x; for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1; }
      return c >>> 0;
    };
    for (let s = 0; s < 9; s++) for (let e = s; e < 300; e += 37) expect(crc32c(0x1234, data, s, e)).toBe(slow(0x1234, data.subarray(s, e)));
  });
  test("large buffers (the hardware path on x86-64 with SSE4.2) equal the table version", () => {
    // where the CPU has it, the hardware path must be in use: it is what makes commits cheap
    const sse42 = process.arch === "x64" && /\bsse4_2\b/.test(require("node:fs").readFileSync("/proc/cpuinfo", "latin1"));
    if (sse42) expect(crc32cImplementation()).toBe("hardware");
    const data = new Uint8Array(65536 + 64).map((_, i) => (i * 2654435761) >>> 13);
    for (const [s, e] of [[0, 65536], [4, 65536], [1, 65537], [7, 263], [3, 4099], [0, 256]] as const) {
      for (const seed of [0, 0xffffffff, 0x9abcdef0]) expect(crc32c(seed, data, s, e)).toBe(crc32cSoft(seed, data, s, e));
    }
    expect(crc32c(0xffffffff, data.subarray(4, 65536))).toBe(crc32cSoft(0xffffffff, data, 4, 65536));
  });
  test("block crc skips the crc field", () => {
    const blk = new Uint8Array(4096);
    blk.set([1, 2, 3, 4], 0);
    expect(blockCrc(blk)).toBe(crc32c(0xffffffff, new Uint8Array(4092)));
  });
});

describe("fnv1a and dirent hashes", () => {
  test("fnv1a reference values", () => {
    expect(fnv1a32(enc.encode(""))).toBe(0x811c9dc5);
    expect(fnv1a32(enc.encode("a"))).toBe(0xe40c292c);
    expect(fnv1a64(enc.encode("a"))).toBe(0xaf63dc4c8601ec8cn);
  });
  test("fingerprints of short names sort like the names", () => {
    const names = ["a", "ab", "b", "hell", "help", "zz"];
    const fps = names.map((n) => direntNameFingerprint(enc.encode(n)));
    for (let i = 1; i < fps.length; i++) expect(fps[i]!).toBeGreaterThanOrEqual(fps[i - 1]!);
    expect(direntNameFingerprint(enc.encode("a"))).toBe(0x61000000 >>> 0);
    expect(direntNameHash(enc.encode("a")) >> 32n).toBe(0x61000000n);
    expect(direntNameHash(enc.encode("a")) & 0xffffffffn).toBe(0xe40c292cn);
  });
});

describe("keys", () => {
  test("sort by zone, first, type, second, third, fourth", () => {
    const a = makeKey(4, 100n, 4, 0n, 1n);
    const b = makeKey(16, 1n, 4);
    const c = makeKey(16, 1n, 8);
    const d = makeKey(16, 2n, 4);
    const sorted = [d, c, b, a].sort(keyCompare);
    expect(sorted).toEqual([a, b, c, d]);
    const raw = (x: ReturnType<typeof makeKey>) => view(KeyStruct.encode(x));
    expect(keyCompareRaw(raw(b), 0, raw(c), 0)).toBe(-1);
    expect(keyCompareRaw(raw(d), 0, raw(a), 0)).toBe(1);
    expect(keyCompareRaw(raw(d), 0, raw(d), 0)).toBe(0);
  });
  test("inc/dec carry across fields", () => {
    const k = makeKey(16, 1n, 4, 0n, 0xffffffffffffffffn, 0xff);
    expect(keyInc(k)).toEqual(makeKey(16, 1n, 4, 1n, 0n, 0));
    expect(keyDec(keyInc(k))).toEqual(k);
    expect(keyFormat(k)).toBe("16.1.4.0.18446744073709551615.255");
  });
  test("free extent order is floor(log8(len))", () => {
    expect([1n, 7n, 8n, 63n, 64n, 511n, 512n].map(freeExtentOrder)).toEqual([0n, 0n, 1n, 1n, 2n, 2n, 3n]);
  });
});
