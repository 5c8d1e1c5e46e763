/**
 * The contract between the POSIX layer (src/fs/) and the items beneath it.
 *
 * The fs layer sees one sorted key space of items (packed keys, values up to BTREE_MAX_VAL_LEN
 * bytes). It reads and changes items inside transactions; a transaction groups the item changes
 * of one operation so that they commit atomically (all or none after a crash). Commits happen on
 * fsync/syncfs (`sync`), periodically, or when the transaction grows large; a change is durable
 * only after a commit that follows it.
 *
 * Cluster locks are taken by the caller around these calls (src/lock/); the store itself assumes
 * the caller holds a lock that covers every key it touches. Implementations: the item cache over
 * the forest of btrees (src/item/), which writes into this mount's log tree.
 *
 * Errors are ScoutfsError: ENOENT/EEXIST for the item operations as documented, ENOSPC when the
 * metadata or data allocators are exhausted (nothing of the operation is applied), EIO when a
 * block cannot be read or verified.
 */
import type { PackedKey } from "../format/key.ts";

export interface ItemRef {
  key: PackedKey;
  val: Uint8Array;
}

export interface ItemReader {
  /** The value of exactly `key`, or null. The returned bytes must not be modified. */
  lookup(key: PackedKey): Uint8Array | null;
  /** The first item with key in [key, last], or null. */
  next(key: PackedKey, last: PackedKey): ItemRef | null;
  /** The last item with key in [first, key], or null. */
  prev(key: PackedKey, first: PackedKey): ItemRef | null;
}

export interface ItemWriter extends ItemReader {
  /** Create an item; EEXIST if it exists. */
  create(key: PackedKey, val: Uint8Array): void;
  /** Replace an existing item's value; ENOENT if absent. */
  update(key: PackedKey, val: Uint8Array): void;
  /** Create or replace. */
  put(key: PackedKey, val: Uint8Array): void;
  /** Delete an item; ENOENT if absent. */
  delete(key: PackedKey): void;
}

/** Data blocks on the data device (4 KiB blocks) and their allocation. */
export interface DataStore {
  /** Allocate up to `count` contiguous data blocks (fewer is allowed); ENOSPC when none left. */
  alloc(count: bigint): { start: bigint; len: bigint };
  /** Free data blocks; they are reused only after the current transaction commits. */
  free(start: bigint, len: bigint): void;
  read(blkno: bigint, count: number, out: Uint8Array): void;
  write(blkno: bigint, data: Uint8Array): void;
}

export interface ItemStore {
  /**
   * Run `fn` as (part of) a transaction: every change it makes commits atomically with the
   * others. If `fn` throws, its changes are rolled back (nothing of it ever reaches the device).
   */
  transact<T>(fn: (w: ItemWriter) => T): T;
  /** Reads outside a transaction see the latest changes, committed or not. */
  readonly reader: ItemReader;
  readonly data: DataStore;
  /** A new inode number (allocated in ranges from the server). */
  allocIno(): bigint;
  /** The transaction seq that changes made now will carry (for meta_seq/data_seq indexes). */
  transSeq(): bigint;
  /**
   * Optional admission check before a transaction (scoutfs hold_trans): null when one may start
   * now, a promise to wait for (a commit making room) before asking again; throws ENOSPC when the
   * metadata device has no room for even one more. `freeing`: the operation removes things
   * (unlink, rmdir, removexattr) and may use a last reserve. Stores without a limit omit it.
   */
  hold?(freeing?: boolean): Promise<void> | null;
  /**
   * Optional: data allocation failed with ENOSPC; get more data blocks if the volume has any
   * (a mount's store holds only its share, refilled by the server at a commit). Resolves true
   * when there are more to try with now, false when the data device is full.
   */
  moreData?(): Promise<boolean>;
  /**
   * Optional (stores shared by several mounts): which inodes of omap group `groupNr` (ino >>
   * OPEN_INO_MAP_SHIFT) other mounts still cache, as a bitmap (format/net.ts openInoMapTest).
   * An unlinked inode set there must not be deleted: another mount still uses it. Ask holding
   * the group's inode lock for writing.
   */
  openInoMap?(groupNr: bigint): Promise<Uint8Array>;
  /**
   * Optional (stores shared by several mounts): read the newest committed roots, so that items
   * outside any lock this mount holds (the orphan zone) show what other mounts committed since.
   */
  refreshRoots?(): Promise<void>;
  /**
   * Optional: the current transaction created (+1) or deleted (-1) an inode. The store keeps the
   * volume's inode count (super inode_count plus the log trees' inode_count_delta, see
   * inode-count.ts), counting it only if the transaction commits.
   */
  countInodes?(delta: number): void;
  /** Commit everything changed so far and wait until it is durable. */
  sync(): Promise<void>;
  /** Format version of the volume (inode value size, v2 features). */
  readonly fmtVers: number;
}
