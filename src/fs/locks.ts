/**
 * Cluster locks as the POSIX layer sees them (scoutfs lock.c callers in inode.c, dir.c, ...).
 *
 * Every item of an inode — the inode item, its dirents, backrefs, xattrs, extents, symlink
 * parts — lives in the FS zone under key.first = ino, so one lock per group of
 * LOCK_INODE_GROUP_NR inodes (src/lock/lock.ts inodeLockRange) covers them all. A FUSE operation
 * runs in a lock session (`FsLockSession`): it starts with the locks of the inodes it knows
 * (READ for lookups and reads, WRITE for changes), and every item it touches is checked against
 * the session (`lockCheckedStore`). An item of an inode group the session does not hold is taken
 * on the spot when the mount already caches a grant for it (no waiting, so no lock-order
 * problem); otherwise the access throws `NeedLocks`, the operation's transaction rolls back
 * (nothing of it happened), the session is released, and the operation runs again with that
 * group added — every lock of the new attempt taken in key order, so two mounts can never wait
 * for each other in a cycle. Inodes discovered on the way (a looked-up child, a rename's
 * ancestors) are covered this way without each operation listing them.
 *
 * Index and orphan items (other zones) are keyed by the inode number too and are only ever
 * changed under that inode's group lock, which is what orders their versions between mounts;
 * the index locks that readers of the seq indexes (walk-inodes) need are not taken yet.
 *
 * A mount alone on its volume, or a test on a MemStore, uses `NO_LOCKS`: nothing to check.
 */
import type { PackedKey } from "../format/key.ts";
import { FS_ZONE } from "../format/constants.ts";
import type { ItemReader, ItemRef, ItemStore, ItemWriter } from "../item/types.ts";
import { ScoutfsError } from "../util/errors.ts";

/**
 * Thrown by an item access the session does not cover and could not take without waiting. Not an
 * Error (no stack to build): it is control flow, caught by the operation runner (fs/fuse.ts).
 */
export class NeedLocks {
  constructor(
    readonly ino: bigint,
    readonly write: boolean,
  ) {}
}

/** The locks one operation holds. */
export interface FsLockSession {
  /** Does the session cover `key` for reading / writing, taking a cached grant if it can? */
  cover(key: PackedKey, write: boolean): boolean;
  /** Give every lock back (they stay cached in the mount for the next operation). */
  release(): void;
}

export interface FsLocks {
  /** False for NO_LOCKS: the fs layer skips sessions and checks altogether. */
  readonly clustered: boolean;
  /**
   * Hold the group locks of `inos` (WRITE when `write`, else READ), and the global rename lock
   * when `rename`. Synchronous when every grant is cached, else a promise.
   */
  begin(inos: readonly bigint[], write: boolean, rename: boolean): FsLockSession | Promise<FsLockSession>;
}

const NOOP_SESSION: FsLockSession = { cover: () => true, release: () => {} };

export const NO_LOCKS: FsLocks = { clustered: false, begin: () => NOOP_SESSION };

/** The inode number of an FS-zone packed key (key.first, big-endian at chars 1..8). */
export function fsKeyIno(key: PackedKey): bigint {
  let hi = 0, lo = 0;
  for (let i = 1; i < 5; i++) hi = hi * 256 + key.charCodeAt(i);
  for (let i = 5; i < 9; i++) lo = lo * 256 + key.charCodeAt(i);
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/** Is this packed key in the FS zone (covered by inode group locks)? */
export function isFsKey(key: PackedKey): boolean {
  return key.charCodeAt(0) === FS_ZONE;
}

/**
 * A view of `base` whose every item access is checked against the current operation's lock
 * session (`session()`); reads and writes outside any session are a bug and fail with EIO rather
 * than read something no lock keeps coherent.
 */
export function lockCheckedStore(base: ItemStore, session: () => FsLockSession | null, opWrite: () => boolean): ItemStore {
  const check = (key: PackedKey, write: boolean): void => {
    if (key.charCodeAt(0) !== FS_ZONE) return;
    const s = session();
    if (s === null) throw new ScoutfsError("EIO", "item access outside a cluster lock session (a bug in the caller)");
    if (!s.cover(key, write)) throw new NeedLocks(fsKeyIno(key), write || opWrite());
  };
  const reader = (r: ItemReader): ItemReader => ({
    lookup(key) {
      check(key, false);
      return r.lookup(key);
    },
    next(key, last): ItemRef | null {
      check(key, false);
      const it = r.next(key, last);
      if (it !== null) check(it.key, false);
      return it;
    },
    prev(key, first): ItemRef | null {
      check(key, false);
      const it = r.prev(key, first);
      if (it !== null) check(it.key, false);
      return it;
    },
  });
  const writer = (w: ItemWriter): ItemWriter => ({
    ...reader(w),
    create(key, val) {
      check(key, true);
      w.create(key, val);
    },
    update(key, val) {
      check(key, true);
      w.update(key, val);
    },
    put(key, val) {
      check(key, true);
      w.put(key, val);
    },
    delete(key) {
      check(key, true);
      w.delete(key);
    },
  });
  const checkedReader = reader(base.reader);
  const view: ItemStore = {
    transact: (fn) => base.transact((w) => fn(writer(w))),
    get reader() {
      return checkedReader;
    },
    get data() {
      return base.data;
    },
    allocIno: () => base.allocIno(),
    transSeq: () => base.transSeq(),
    sync: () => base.sync(),
    get fmtVers() {
      return base.fmtVers;
    },
  };
  if (base.hold) view.hold = (freeing) => base.hold!(freeing);
  if (base.countInodes) view.countInodes = (delta) => base.countInodes!(delta);
  return view;
}
