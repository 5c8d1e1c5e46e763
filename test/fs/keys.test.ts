// Keys of filesystem items pinned against values derived by hand from format.h's key layouts.
import { expect, test } from "bun:test";
import { keyFormat, keyUnpack, packedToRaw } from "../../src/format/key.ts";
import { direntNameHash } from "../../src/format/hash.ts";
import {
  dataExtentKey,
  direntKey,
  inodeIndexKey,
  inodeKey,
  linkBackrefKey,
  orphanKey,
  readdirKey,
  symlinkKey,
  xattrKey,
} from "../../src/fs/keys.ts";
import { xattrNameHash } from "../../src/fs/xattr.ts";

const fmt = (k: string) => keyFormat(keyUnpack(k));

test("every fs item key lays its fields out as format.h says", () => {
  expect(fmt(inodeKey(5n))).toBe("16.5.4.0.0.0");
  expect(fmt(inodeIndexKey(4, 77n, 5n))).toBe("4.0.4.77.5.0"); // meta_seq: major=seq, ino
  expect(fmt(inodeIndexKey(8, 78n, 5n))).toBe("4.0.8.78.5.0"); // data_seq
  expect(fmt(orphanKey(5n))).toBe("8.0.4.5.0.0"); // sko_rid 0, sko_ino in second
  expect(fmt(xattrKey(5n, 0x8ef14919, 3n, 2))).toBe(`16.5.8.${0x8ef14919}.3.2`);
  expect(fmt(direntKey(1n, 0x61000000e40c292cn, 2n))).toBe(`16.1.12.${0x61000000e40c292cn}.2.0`);
  expect(fmt(readdirKey(1n, 2n))).toBe("16.1.16.2.0.0");
  expect(fmt(linkBackrefKey(9n, 1n, 2n))).toBe("16.9.20.1.2.0");
  expect(fmt(symlinkKey(9n, 1))).toBe("16.9.24.1.0.0");
  expect(fmt(dataExtentKey(9n, 15n, 8n))).toBe("16.9.28.15.8.0"); // last block, length
});

test("raw 32-byte encoding of an inode key", () => {
  const raw = new Uint8Array(32);
  packedToRaw(inodeKey(0x0102n), raw, 0);
  // first (le64) at 0, zone at 25, type at 26
  expect([...raw.subarray(0, 8)]).toEqual([2, 1, 0, 0, 0, 0, 0, 0]);
  expect(raw[25]).toBe(16);
  expect(raw[26]).toBe(4);
});

test("name hashes: dirent FNV-1a + fingerprint, xattr crc32c from ~0 without final inversion", () => {
  // "a": fnv1a32 = 0xe40c292c, fingerprint = the 8 bits of 0x61 in the high byte
  expect(direntNameHash(new TextEncoder().encode("a"))).toBe(0x61000000e40c292cn);
  // crc32c("123456789") is 0xe3069283 in the standard (inverted) convention
  expect(xattrNameHash(new TextEncoder().encode("123456789"))).toBe(~0xe3069283 >>> 0);
  expect(xattrNameHash(new TextEncoder().encode("user.a"))).toBe(0x8ef14919);
});

test("all of an inode's items sort together, by type", () => {
  const ks = [dataExtentKey(9n, 0n, 1n), inodeKey(9n), symlinkKey(9n, 0), xattrKey(9n, 1, 0n, 0), linkBackrefKey(9n, 1n, 2n), inodeKey(10n), inodeKey(8n)];
  const sorted = [...ks].sort();
  expect(sorted.map(fmt)).toEqual(["16.8.4.0.0.0", "16.9.4.0.0.0", "16.9.8.1.0.0", "16.9.20.1.2.0", "16.9.24.0.0.0", "16.9.28.0.1.0", "16.10.4.0.0.0"]);
});
