/**
 * Which cluster lock covers which items (scoutfs lock.c): the key ranges of the inode group,
 * seq index, orphan and rename locks, and `lockStartOf`, the start key of the lock covering an
 * item — what the forest's bloom filters are keyed on (src/item/bloom.ts). Pure key arithmetic,
 * shared by the lock cache (src/lock/) and the item layer.
 */
import * as C from "./constants.ts";
import { keyPack, type PackedKey } from "./key.ts";


const U64_MAX = C.U64_MAX;

/** The inode group lock covering every fs item of `ino` (LOCK_INODE_GROUP_NR inodes per lock). */
export function inodeLockRange(ino: bigint): { start: PackedKey; end: PackedKey } {
  const mask = BigInt(C.LOCK_INODE_GROUP_NR - 1);
  return {
    start: keyPack({ zone: C.FS_ZONE, first: ino & ~mask, type: 0, second: 0n, third: 0n, fourth: 0 }),
    end: keyPack({ zone: C.FS_ZONE, first: ino | mask, type: 0xff, second: U64_MAX, third: U64_MAX, fourth: 0xff }),
  };
}

/** The global rename lock (serializes renames that move directories). */
export function renameLockRange(): { start: PackedKey; end: PackedKey } {
  const k = keyPack({ zone: C.LOCK_ZONE, first: 0n, type: C.RENAME_TYPE, second: 0n, third: 0n, fourth: 0 });
  return { start: k, end: k };
}

/** Orphan items: one lock for the whole zone, taken write_only. */
export function orphanLockRange(): { start: PackedKey; end: PackedKey } {
  return {
    start: keyPack({ zone: C.ORPHAN_ZONE, first: 0n, type: C.ORPHAN_TYPE, second: 0n, third: 0n, fourth: 0 }),
    end: keyPack({ zone: C.ORPHAN_ZONE, first: 0n, type: C.ORPHAN_TYPE, second: U64_MAX, third: 0n, fourth: 0 }),
  };
}

/** The seq index lock covering index items with `major` (LOCK_SEQ_GROUP_MASK majors per lock). */
export function indexLockRange(type: number, major: bigint): { start: PackedKey; end: PackedKey } {
  const mask = (1n << 10n) - 1n;
  return {
    start: keyPack({ zone: C.INODE_INDEX_ZONE, first: 0n, type, second: major & ~mask, third: 0n, fourth: 0 }),
    end: keyPack({ zone: C.INODE_INDEX_ZONE, first: 0n, type, second: major | mask, third: U64_MAX, fourth: 0 }),
  };
}

/**
 * The start key of the lock that covers `key`, for the zones scoutfs locks by range: the FS zone
 * (inode groups), the seq indexes and the orphans. null for keys of other zones.
 */
export function lockStartOf(key: PackedKey): PackedKey | null {
  const zone = key.charCodeAt(0);
  if (zone === C.FS_ZONE) {
    // zone, then key.first with the group's low bits cleared, then zeroes (type, second, ...)
    const b7 = key.charCodeAt(7) & ~((C.LOCK_INODE_GROUP_NR >> 8) - 1) & 0xff;
    return key.slice(0, 7) + String.fromCharCode(b7) + "\0".repeat(19);
  }
  if (zone === C.ORPHAN_ZONE) return orphanLockRange().start;
  if (zone === C.INODE_INDEX_ZONE) {
    // zone, first (0), type, then key.second (the seq major, chars 10..17) with the group's low
    // bits cleared: its last char entirely, the one before masked; third and fourth zero
    const b16 = key.charCodeAt(16) & ~(((C.LOCK_SEQ_GROUP_MASK + 1) >> 8) - 1) & 0xff;
    return key.slice(0, 16) + String.fromCharCode(b16) + "\0".repeat(10);
  }
  return null;
}
