/**
 * FsLocks (src/fs/locks.ts) over the mount's lock cache: an operation's session holds inode
 * group locks (and the rename lock) as LockCache handles.
 *
 * Ordering: `begin` takes the operation's locks in key order. Cached grants are taken
 * synchronously; at the first lock that needs the server, the rest are awaited one by one in
 * key order. A session may add a lock later (`cover`) only when the grant is cached — that never
 * waits, so it cannot take part in a wait cycle; a lock that would have to wait makes the
 * operation start over with it in its ordered set (NeedLocks).
 */
import { LOCK_READ, LOCK_WRITE, type LockCache, type LockHandle, inodeLockRange, renameLockRange } from "../lock/lock.ts";
import type { FsLockSession, FsLocks } from "./locks.ts";
import { fsKeyIno } from "./locks.ts";
import type { PackedKey } from "../format/key.ts";
import { FS_ZONE, LOCK_INODE_GROUP_NR } from "../format/constants.ts";
import { lockStartOf } from "../format/lock-ranges.ts";
import { assert } from "../util/assert.ts";

assert(LOCK_INODE_GROUP_NR >= 256 && LOCK_INODE_GROUP_NR <= 1 << 16, "inode groups are cut at key.first's last two bytes");

/** key.first's second-to-last byte, masked to the group (its last byte is all inside a group). */
const GROUP_MASK7 = ~((LOCK_INODE_GROUP_NR >> 8) - 1) & 0xff;

/** The group of an FS-zone packed key: the start key of its inode group lock. */
function groupOfKey(key: PackedKey): string {
  return lockStartOf(key)!;
}

/** Are two FS-zone packed keys in one inode group? (No allocation: the hot check of every access.) */
function sameGroup(a: PackedKey, b: PackedKey): boolean {
  for (let i = 0; i < 7; i++) if (a.charCodeAt(i) !== b.charCodeAt(i)) return false;
  return ((a.charCodeAt(7) ^ b.charCodeAt(7)) & GROUP_MASK7) === 0;
}

/** Lock ranges of recently used groups: inodeLockRange packs two keys with bigint arithmetic. */
const rangeCache = new Map<number, { start: PackedKey; end: PackedKey }>();
const RANGE_CACHE_MAX = 4096;

function groupRange(ino: bigint): { start: PackedKey; end: PackedKey } {
  // inode numbers stay below 2^53 (fs/fuse.ts node ids): a number key hashes much faster
  const g = Math.floor(Number(ino) / LOCK_INODE_GROUP_NR);
  let r = rangeCache.get(g);
  if (r === undefined) {
    if (rangeCache.size >= RANGE_CACHE_MAX) rangeCache.clear();
    r = inodeLockRange(ino);
    rangeCache.set(g, r);
  }
  return r;
}

interface Want {
  start: PackedKey;
  end: PackedKey;
  mode: number;
}

class Session implements FsLockSession {
  /**
   * Groups held, by group key: the mode held. A group's key is its lock's start key (an inode
   * group range starts at its own lockStartOf), so sessions use the range's start as it is.
   */
  readonly groups = new Map<string, number>();
  readonly handles: LockHandle[] = [];
  private released = false;
  /** The last key found covered, and the mode of its group: most accesses repeat its group. */
  private hitKey: PackedKey = "";
  private hitMode = 0;

  constructor(private readonly cache: LockCache) {}

  add(h: LockHandle, group: string | null): void {
    this.handles.push(h);
    if (group !== null) {
      const had = this.groups.get(group);
      if (had === undefined || h.mode === LOCK_WRITE) this.groups.set(group, h.mode);
    }
  }

  cover(key: PackedKey, write: boolean): boolean {
    if ((this.hitMode === LOCK_WRITE || (this.hitMode === LOCK_READ && !write)) && sameGroup(this.hitKey, key)) return true;
    // a session holds a handful of groups: comparing in place costs less than building the
    // key's group string (lockStartOf allocates) to look it up
    let m: number | undefined;
    for (const [g, gm] of this.groups) {
      if (sameGroup(g, key)) {
        m = gm;
        break;
      }
    }
    if (m === LOCK_WRITE || (m === LOCK_READ && !write)) {
      this.hitKey = key;
      this.hitMode = m;
      return true;
    }
    const g = groupOfKey(key);
    const r = groupRange(fsKeyIno(key));
    // a cached WRITE grant serves reads too; take it when we have it so a later write needs no retry
    const h = this.cache.tryLock(r.start, r.end, LOCK_WRITE) ?? (write ? null : this.cache.tryLock(r.start, r.end, LOCK_READ));
    if (h === null) return false;
    this.add(h, g);
    this.hitKey = key;
    this.hitMode = this.groups.get(g)!;
    return true;
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    for (const h of this.handles) this.cache.unlock(h);
  }
}

export class LockCacheFsLocks implements FsLocks {
  readonly clustered = true;
  readonly counters = { sessions: 0, waited: 0 };

  constructor(private readonly cache: LockCache) {}

  begin(inos: readonly bigint[], write: boolean, rename: boolean): FsLockSession | Promise<FsLockSession> {
    this.counters.sessions++;
    const mode = write ? LOCK_WRITE : LOCK_READ;
    if (inos.length === 1 && !rename) {
      // most operations name one inode: no ordering to do, and a cached grant needs nothing else
      const r = groupRange(inos[0]!);
      const s = new Session(this.cache);
      const h = this.cache.tryLock(r.start, r.end, mode);
      if (h !== null) {
        s.add(h, r.start);
        return s;
      }
      this.counters.waited++;
      return this.rest(s, [{ start: r.start, end: r.end, mode }], 0);
    }
    const wants: Want[] = [];
    const seen = new Set<string>();
    for (const ino of inos) {
      const r = groupRange(ino);
      if (seen.has(r.start)) continue;
      seen.add(r.start);
      wants.push({ start: r.start, end: r.end, mode });
    }
    if (rename) {
      const r = renameLockRange();
      wants.push({ start: r.start, end: r.end, mode: LOCK_WRITE });
    }
    wants.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
    const s = new Session(this.cache);
    let i = 0;
    try {
      for (; i < wants.length; i++) {
        const w = wants[i]!;
        const h = this.cache.tryLock(w.start, w.end, w.mode);
        if (h === null) break;
        s.add(h, w.start.charCodeAt(0) === FS_ZONE ? w.start : null);
      }
    } catch (e) {
      s.release();
      throw e;
    }
    if (i === wants.length) return s;
    this.counters.waited++;
    return this.rest(s, wants, i);
  }

  private async rest(s: Session, wants: Want[], from: number): Promise<FsLockSession> {
    try {
      for (let i = from; i < wants.length; i++) {
        const w = wants[i]!;
        const h = await this.cache.lock(w.start, w.end, w.mode);
        s.add(h, w.start.charCodeAt(0) === FS_ZONE ? w.start : null);
      }
      return s;
    } catch (e) {
      s.release();
      throw e;
    }
  }
}
