// The inode value codec of src/fs/inode.ts against the table-driven struct codec of the format
// (src/format/items.ts): same fields decoded, same bytes encoded, both format versions.
import { expect, test } from "bun:test";
import { Inode, INODE_FMT_V1_BYTES, decodeInode } from "../../src/format/items.ts";
import { inodeDecode, inodeEncode } from "../../src/fs/inode.ts";
import { rng } from "../helpers/rng.ts";

function randomInode(r: (n: number) => number) {
  const u32 = () => ((r(2 ** 16) << 16) | r(2 ** 16)) >>> 0;
  const u64 = () => (BigInt(u32()) << 32n) | BigInt(u32());
  const t = () => ({ sec: u64(), nsec: u32() % 1_000_000_000 });
  return {
    size: u64(), meta_seq: u64(), data_seq: u64(), data_version: u64(), online_blocks: u64(), offline_blocks: u64(),
    next_readdir_pos: u64(), next_xattr_id: u64(), version: u64(), nlink: u32(), uid: u32(), gid: u32(), mode: u32(),
    rdev: u32(), flags: u32(), atime: t(), ctime: t(), mtime: t(), crtime: t(), proj: u64(),
  };
}

test("inode values: encode and decode match the struct codec, v2 and v1", () => {
  const r = rng(7);
  for (let k = 0; k < 200; k++) {
    const v = randomInode(r);
    const want = Inode.encode(v);
    const got2 = inodeEncode(v, 2);
    expect(Buffer.from(got2).equals(Buffer.from(want))).toBe(true);
    expect(inodeDecode(1n, got2, 2)).toEqual(decodeInode(want));
    const got1 = inodeEncode(v, 1);
    expect(got1.length).toBe(INODE_FMT_V1_BYTES);
    expect(Buffer.from(got1).equals(Buffer.from(want.subarray(0, INODE_FMT_V1_BYTES)))).toBe(true);
    expect(inodeDecode(1n, got1, 1)).toEqual({ ...decodeInode(want.subarray(0, INODE_FMT_V1_BYTES)), proj: 0n });
    // a decoded value with garbage in its padding still encodes zeros there
    const dirty = new Uint8Array(want);
    dirty[Inode.off.atime + 12] = 0xee;
    expect(Buffer.from(inodeEncode(inodeDecode(1n, dirty, 2), 2)).equals(Buffer.from(want))).toBe(true);
  }
  // a wrong size is EIO
  expect(() => inodeDecode(1n, new Uint8Array(100), 2)).toThrow();
  expect(() => inodeDecode(1n, new Uint8Array(Inode.size), 1)).toThrow();
});
