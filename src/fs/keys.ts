/**
 * Keys of every filesystem item, laid out exactly as scoutfs's format.h maps each item's logical
 * fields onto the fixed key fields (first, second, third, fourth) — and returned packed, so that
 * string `<` is scoutfs key order (see src/format/key.ts).
 *
 * | item            | zone             | first   | type              | second          | third    | fourth |
 * | --------------- | ---------------- | ------- | ----------------- | --------------- | -------- | ------ |
 * | inode index     | INODE_INDEX (4)  | 0       | META_SEQ/DATA_SEQ | seq (major)     | ino      | 0      |
 * | orphan          | ORPHAN (8)       | 0 (rid) | ORPHAN            | ino             | 0        | 0      |
 * | inode           | FS (16)          | ino     | INODE             | 0               | 0        | 0      |
 * | xattr part      | FS               | ino     | XATTR             | name hash (u32) | xattr id | part   |
 * | dirent          | FS               | dir ino | DIRENT            | name hash       | pos      | 0      |
 * | readdir         | FS               | dir ino | READDIR           | pos             | 0        | 0      |
 * | link backref    | FS               | ino     | LINK_BACKREF      | dir ino         | pos      | 0      |
 * | symlink part    | FS               | ino     | SYMLINK           | nr              | 0        | 0      |
 * | data extent     | FS               | ino     | DATA_EXTENT       | last block      | length   | 0      |
 *
 * Everything an inode owns in the FS zone sorts together under `first = ino`, by type: a whole
 * inode's items are one key range, which is what cluster locks cover and what deletion walks.
 * The orphan item leaves `first` (sko_rid) zero, as scoutfs does.
 */
import {
  DATA_EXTENT_TYPE,
  DIRENT_TYPE,
  FS_ZONE,
  INODE_INDEX_ZONE,
  INODE_TYPE,
  LINK_BACKREF_TYPE,
  ORPHAN_TYPE,
  ORPHAN_ZONE,
  READDIR_TYPE,
  SYMLINK_TYPE,
  U64_MAX,
  XATTR_TYPE,
} from "../format/constants.ts";
import { type PackedKey, keyPack, keyUnpack, makeKey } from "../format/key.ts";

export function inodeKey(ino: bigint): PackedKey {
  return keyPack(makeKey(FS_ZONE, ino, INODE_TYPE));
}

/** type: INODE_INDEX_META_SEQ_TYPE or INODE_INDEX_DATA_SEQ_TYPE; major: the seq. */
export function inodeIndexKey(type: number, major: bigint, ino: bigint): PackedKey {
  return keyPack(makeKey(INODE_INDEX_ZONE, 0n, type, major, ino));
}

export function orphanKey(ino: bigint): PackedKey {
  return keyPack(makeKey(ORPHAN_ZONE, 0n, ORPHAN_TYPE, ino));
}

/** All orphan items. */
export const ORPHAN_FIRST: PackedKey = keyPack(makeKey(ORPHAN_ZONE, 0n, ORPHAN_TYPE, 0n));
export const ORPHAN_LAST: PackedKey = keyPack(makeKey(ORPHAN_ZONE, 0n, ORPHAN_TYPE, U64_MAX, U64_MAX, 0xff));

export function orphanKeyIno(k: PackedKey): bigint {
  return keyUnpack(k).second;
}

export function xattrKey(ino: bigint, nameHash: number, id: bigint, part: number): PackedKey {
  return keyPack(makeKey(FS_ZONE, ino, XATTR_TYPE, BigInt(nameHash >>> 0), id, part));
}

export function xattrLastKey(ino: bigint): PackedKey {
  return keyPack(makeKey(FS_ZONE, ino, XATTR_TYPE, 0xffffffffn, U64_MAX, 0xff));
}

export function direntKey(dirIno: bigint, hash: bigint, pos: bigint): PackedKey {
  return keyPack(makeKey(FS_ZONE, dirIno, DIRENT_TYPE, hash, pos));
}

export function readdirKey(dirIno: bigint, pos: bigint): PackedKey {
  return keyPack(makeKey(FS_ZONE, dirIno, READDIR_TYPE, pos));
}

export function linkBackrefKey(ino: bigint, dirIno: bigint, pos: bigint): PackedKey {
  return keyPack(makeKey(FS_ZONE, ino, LINK_BACKREF_TYPE, dirIno, pos));
}

export function symlinkKey(ino: bigint, nr: number): PackedKey {
  return keyPack(makeKey(FS_ZONE, ino, SYMLINK_TYPE, BigInt(nr)));
}

/** A data extent of `len` blocks ending at logical block `last` (inclusive). */
export function dataExtentKey(ino: bigint, last: bigint, len: bigint): PackedKey {
  return keyPack(makeKey(FS_ZONE, ino, DATA_EXTENT_TYPE, last, len));
}

export function dataExtentLastKey(ino: bigint): PackedKey {
  return keyPack(makeKey(FS_ZONE, ino, DATA_EXTENT_TYPE, U64_MAX, U64_MAX, 0xff));
}

/** The first and last keys of one type of an inode's FS-zone items. */
export function inoTypeFirst(ino: bigint, type: number): PackedKey {
  return keyPack(makeKey(FS_ZONE, ino, type, 0n, 0n, 0));
}

export function inoTypeLast(ino: bigint, type: number): PackedKey {
  return keyPack(makeKey(FS_ZONE, ino, type, U64_MAX, U64_MAX, 0xff));
}

// ---------------------------------------------------------------------------------------------
// Field access on packed keys without unpacking them: every u64 is 8 big-endian chars.

const PK_SECOND = 10;
const PK_THIRD = 18;
const PK_FOURTH = 26;

function be64(p: PackedKey, at: number): bigint {
  let hi = 0;
  let lo = 0;
  for (let i = 0; i < 4; i++) hi = hi * 256 + p.charCodeAt(at + i);
  for (let i = 4; i < 8; i++) lo = lo * 256 + p.charCodeAt(at + i);
  return (BigInt(hi) << 32n) | BigInt(lo);
}

export function keySecond(p: PackedKey): bigint {
  return be64(p, PK_SECOND);
}

export function keyThird(p: PackedKey): bigint {
  return be64(p, PK_THIRD);
}

export function keyFourth(p: PackedKey): number {
  return p.charCodeAt(PK_FOURTH);
}
