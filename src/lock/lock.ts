/**
 * The client side of cluster locks (scoutfs lock.c): a mount's cache of lock grants.
 *
 * A lock covers a range of item keys and is named by its start key. A mount may read items in a
 * range only under a READ or WRITE lock, and change them only under WRITE or WRITE_ONLY; that is
 * how every mount's item cache (and kernel caches) stay coherent: before another mount can get an
 * incompatible mode, the server asks us to give ours up, and we first write back what we dirtied
 * and drop what we cached.
 *
 * Modes and matching: a granted mode satisfies a request if it is the same mode, or WRITE for a
 * READ request. Users count their holds per mode; a lock with no users stays cached (idle) for
 * later operations, up to `idleMax` idle locks (lock_idle_count), the least recently used given
 * back first with a NULL request.
 *
 * Acquiring (`lock`): if the granted mode matches, count a user and return at once (no network).
 * Otherwise one request per lock is sent to the server (old mode -> wanted mode); callers wait for
 * the grant and then re-check. Write grants carry the server's write_seq: items changed under the
 * lock get seqs at least that, so merges order writes from different mounts correctly.
 *
 * Invalidation (`invalidate`, a server request): first let a grant that is still in flight land
 * (the server's request names the mode it thinks we hold); then wait until no user holds a mode the new mode
 * cannot satisfy; if the lock could write, write back (commit the transaction that holds its dirty
 * items); unless this is a WRITE -> READ downgrade (where cached items stay valid), drop the cached
 * items and kernel caches of the range; then lower the mode and answer with it. New users of a
 * lock being invalidated wait until the invalidation is done, so they cannot starve it.
 *
 * Recovery (`recover`): a new server asks for every lock we hold, in key order from a key.
 *
 * Nothing here blocks the event loop: waits are promises. Bounds: at most one outstanding request
 * per lock, idle locks bounded by idleMax, waiters wait for a grant or an error (a request that
 * fails fails its waiters; a shutdown fails every waiter with ESHUTDOWN-like EIO).
 */
import { assert } from "../util/assert.ts";
import { ScoutfsError } from "../util/errors.ts";
import * as C from "../format/constants.ts";
import { keyPack, keyUnpack, type Key, type PackedKey } from "../format/key.ts";

export const LOCK_NULL = C.LOCK_NULL;
export const LOCK_READ = C.LOCK_READ;
export const LOCK_WRITE = C.LOCK_WRITE;
export const LOCK_WRITE_ONLY = C.LOCK_WRITE_ONLY;

export function lockModeName(mode: number): string {
  return ["null", "read", "write", "write_only"][mode] ?? `invalid(${mode})`;
}

export function lockCanRead(mode: number): boolean {
  return mode === LOCK_READ || mode === LOCK_WRITE;
}

export function lockCanWrite(mode: number): boolean {
  return mode === LOCK_WRITE || mode === LOCK_WRITE_ONLY;
}

/** Does a granted mode satisfy a requested one? */
export function lockModesMatch(granted: number, requested: number): boolean {
  return granted === requested || (granted === LOCK_WRITE && requested === LOCK_READ);
}

/** What the lock cache needs from the rest of the mount. */
export interface LockHooks {
  /** Ask the server for `newMode` (from `oldMode`); resolves with the grant's write_seq. */
  request(start: Key, oldMode: number, newMode: number): Promise<{ writeSeq: bigint }>;
  /** Commit every dirty item this lock covers (called before a writable mode is given up). */
  writeback(lock: ClientLock): Promise<void>;
  /** Drop cached items and kernel caches in the lock's range (giving up read access). */
  invalidate(lock: ClientLock, newMode: number): void | Promise<void>;
}

export interface LockOptions {
  /** Idle (unused) locks kept cached; beyond it the least recently used are given back. */
  idleMax?: number;
  log?: (msg: string) => void;
}

export class ClientLock {
  mode = LOCK_NULL;
  writeSeq = 0n;
  /** Users holding the lock, by mode. */
  readonly users = [0, 0, 0, 0];
  requestPending = false;
  /** lock() calls in progress on this lock (waiting for a grant or an invalidation). */
  callers = 0;
  /** An invalidation in progress: new users wait for it. */
  invalidating: Promise<void> | null = null;
  /** Waiters for the next state change (grant, unlock, invalidation done). */
  private waiters: (() => void)[] = [];
  lastUsed = 0;

  constructor(
    readonly start: PackedKey,
    readonly end: PackedKey,
  ) {
    assert(start <= end, "lock range ends before it starts");
  }

  get startKey(): Key {
    return keyUnpack(this.start);
  }

  /** Nothing refers to this lock: it may leave the cache (it holds NULL, nobody uses or waits). */
  get forgettable(): boolean {
    return this.mode === LOCK_NULL && this.usersTotal === 0 && this.callers === 0 && !this.requestPending && this.invalidating === null;
  }

  get usersTotal(): number {
    return this.users[0]! + this.users[1]! + this.users[2]! + this.users[3]!;
  }

  covers(key: PackedKey): boolean {
    return key >= this.start && key <= this.end;
  }

  wait(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

/** A held lock; give it back with `unlock(handle)`. */
export interface LockHandle {
  readonly lock: ClientLock;
  readonly mode: number;
}

export class LockCache {
  private readonly locks = new Map<PackedKey, ClientLock>();
  private readonly idleMax: number;
  private readonly log: (msg: string) => void;
  private useClock = 0;
  private shutdownErr: ScoutfsError | null = null;
  /** A request that failed, for the waiters of its lock to report. */
  private readonly failedRequests = new Map<ClientLock, unknown>();
  readonly counters = { lockFast: 0, lockRequest: 0, lockWait: 0, invalidate: 0, invalidateWriteback: 0, invalidateDrop: 0, shrink: 0, recover: 0 };

  constructor(
    private readonly hooks: LockHooks,
    opts: LockOptions = {},
  ) {
    this.idleMax = opts.idleMax ?? 10_000;
    assert(this.idleMax >= 1, "idle lock bound must be positive");
    this.log = opts.log ?? (() => {});
  }

  /** The cached lock named by `start`, created on first use with range [start, end]. */
  private get(start: PackedKey, end: PackedKey): ClientLock {
    let l = this.locks.get(start);
    if (l === undefined) {
      l = new ClientLock(start, end);
      this.locks.set(start, l);
    } else if (l.end !== end) {
      throw new ScoutfsError("EINVAL", `lock at ${start} asked with two different ranges`);
    }
    return l;
  }

  /** Hold `mode` on the lock [start, end]; waits for a grant from the server when needed. */
  async lock(start: PackedKey, end: PackedKey, mode: number): Promise<LockHandle> {
    if (mode !== LOCK_READ && mode !== LOCK_WRITE && mode !== LOCK_WRITE_ONLY) throw new ScoutfsError("EINVAL", `cannot lock with mode ${lockModeName(mode)}`);
    const l = this.get(start, end);
    // while we hold a reference the lock must stay in the map: a grant applied to an object the
    // map forgot would leave us and the server disagreeing about what we hold
    l.callers++;
    try {
      return await this.lockLoop(l, mode);
    } finally {
      l.callers--;
    }
  }

  /**
   * The synchronous fast path of `lock`: a handle when the cached grant already satisfies `mode`
   * (and no invalidation is under way), else null and nothing changes. Operations that find every
   * lock they need this way run without a turn of the event loop.
   */
  tryLock(start: PackedKey, end: PackedKey, mode: number): LockHandle | null {
    if (this.shutdownErr) throw this.shutdownErr;
    const l = this.locks.get(start);
    if (l === undefined || l.invalidating !== null || !lockModesMatch(l.mode, mode)) return null;
    if (l.end !== end) throw new ScoutfsError("EINVAL", `lock at ${start} asked with two different ranges`);
    l.users[mode]!++;
    l.lastUsed = ++this.useClock;
    this.counters.lockFast++;
    return { lock: l, mode };
  }

  private async lockLoop(l: ClientLock, mode: number): Promise<LockHandle> {
    let waited = false;
    for (;;) {
      if (this.shutdownErr) throw this.shutdownErr;
      if (l.invalidating === null && lockModesMatch(l.mode, mode)) {
        l.users[mode]!++;
        l.lastUsed = ++this.useClock;
        if (waited) this.counters.lockWait++;
        else this.counters.lockFast++;
        return { lock: l, mode };
      }
      waited = true;
      if (l.invalidating !== null) {
        await l.invalidating;
        continue;
      }
      if (!l.requestPending) {
        // Ask for what we need on top of what we have: WRITE_ONLY never upgrades to READ/WRITE
        // in place (the server would see two incompatible modes from us), so ask from NULL
        // only when we hold nothing; else from our mode.
        l.requestPending = true;
        this.counters.lockRequest++;
        const old = l.mode;
        const want = mode === LOCK_READ && old === LOCK_WRITE_ONLY ? LOCK_WRITE : mode;
        this.hooks.request(keyUnpack(l.start), old, want).then(
          (g) => {
            l.requestPending = false;
            l.mode = want;
            if (lockCanWrite(want)) l.writeSeq = g.writeSeq;
            l.wake();
          },
          (err) => {
            l.requestPending = false;
            this.log(`lock request ${lockModeName(old)}->${lockModeName(want)} failed: ${(err as Error).message}`);
            l.wake();
            // waiters see the unchanged mode and retry sending; a persistent failure surfaces
            // through the next attempt's error
            this.failedRequests.set(l, err);
          },
        );
      }
      await l.wait();
      const err = this.failedRequests.get(l);
      if (err !== undefined) {
        this.failedRequests.delete(l);
        throw err instanceof ScoutfsError ? err : new ScoutfsError("EIO", `lock request failed: ${(err as Error).message}`);
      }
    }
  }

  unlock(h: LockHandle): void {
    const l = h.lock;
    assert(l.users[h.mode]! > 0, `unlock of ${lockModeName(h.mode)} that is not held`);
    l.users[h.mode]!--;
    l.lastUsed = ++this.useClock;
    l.wake();
    if (l.usersTotal === 0) this.maybeShrink();
  }

  /** Locks held (any mode other than NULL). */
  get held(): ClientLock[] {
    return [...this.locks.values()].filter((l) => l.mode !== LOCK_NULL);
  }

  /** The write seq to give an item changed at `key`: the covering write lock's, or 0 if none. */
  writeSeqFor(key: PackedKey): bigint {
    for (const l of this.locks.values()) if (lockCanWrite(l.mode) && l.covers(key)) return l.writeSeq;
    return 0n;
  }

  /** Is `key` covered by a lock held in a mode that can read it / write it? */
  covered(key: PackedKey, write: boolean): boolean {
    for (const l of this.locks.values()) if ((write ? lockCanWrite(l.mode) : lockCanRead(l.mode)) && l.covers(key)) return true;
    return false;
  }

  /**
   * The server asks us to drop the lock named `start` to `newMode`. Resolves with the mode we now
   * hold once users are out of the way, dirty items are written back and caches are dropped.
   */
  async invalidate(start: Key, newMode: number, serverOldMode?: number): Promise<number> {
    const p = keyPack(start);
    const l = this.locks.get(p);
    this.counters.invalidate++;
    if (l === undefined) return LOCK_NULL;
    // The server only invalidates a mode it granted. If it believes we hold a mode we don't have
    // yet, its grant is in flight (sent before this request on the same connection, applied a
    // moment later): wait for it, or we would answer for a mode we are about to take. Waiting
    // whenever a request is pending would deadlock an upgrade the server holds back behind this
    // very invalidation; comparing modes tells the two apart.
    while (serverOldMode !== undefined && l.mode !== serverOldMode && l.requestPending) await l.wait();
    if (l.mode === LOCK_NULL) return LOCK_NULL;
    // serialize with another invalidation of the same lock
    while (l.invalidating !== null) await l.invalidating;
    if (lockModesMatch(newMode, l.mode) || l.mode === newMode) return l.mode;
    let done!: () => void;
    l.invalidating = new Promise<void>((r) => (done = r));
    try {
      // users of modes the new mode doesn't satisfy must finish first
      while (this.usersBlocking(l, newMode)) await l.wait();
      const prev = l.mode;
      if (lockCanWrite(prev)) {
        this.counters.invalidateWriteback++;
        await this.hooks.writeback(l);
      }
      if (!(prev === LOCK_WRITE && newMode === LOCK_READ)) {
        this.counters.invalidateDrop++;
        await this.hooks.invalidate(l, newMode);
      }
      l.mode = newMode;
      if (!lockCanWrite(newMode)) l.writeSeq = 0n;
      return newMode;
    } finally {
      l.invalidating = null;
      done();
      l.wake();
      if (l.forgettable) this.locks.delete(p);
    }
  }

  private usersBlocking(l: ClientLock, newMode: number): boolean {
    for (let m = 1; m < 4; m++) if (l.users[m]! > 0 && !lockModesMatch(newMode, m)) return true;
    return false;
  }

  /** The locks we hold at or after `from`, in key order (for a new server's recovery). */
  recover(from: Key, max: number): { start: Key; mode: number; writeSeq: bigint }[] {
    this.counters.recover++;
    const f = keyPack(from);
    return [...this.locks.values()]
      .filter((l) => l.mode !== LOCK_NULL && l.start >= f)
      .sort((a, b) => (a.start < b.start ? -1 : 1))
      .slice(0, max)
      .map((l) => ({ start: keyUnpack(l.start), mode: l.mode, writeSeq: l.writeSeq }));
  }

  /** Give back the least recently used idle locks beyond the idle bound. */
  private maybeShrink(): void {
    // idle locks are a subset of the cached ones: nothing to give back while those fit
    if (this.locks.size <= this.idleMax) return;
    const idle = [...this.locks.values()].filter((l) => l.usersTotal === 0 && l.mode !== LOCK_NULL && !l.requestPending && l.invalidating === null);
    if (idle.length <= this.idleMax) return;
    idle.sort((a, b) => a.lastUsed - b.lastUsed);
    for (const l of idle.slice(0, idle.length - this.idleMax)) {
      this.counters.shrink++;
      void this.giveBack(l);
    }
  }

  /**
   * Give an idle lock back: a NULL request, sent like any other (one per lock). The server
   * answers it by invalidating our own grant first, so writeback and cache dropping happen in
   * `invalidate` in the usual order; then it grants NULL.
   */
  private async giveBack(l: ClientLock): Promise<void> {
    if (l.requestPending || l.usersTotal > 0 || l.invalidating !== null || l.mode === LOCK_NULL) return;
    l.requestPending = true;
    const old = l.mode;
    try {
      await this.hooks.request(keyUnpack(l.start), old, LOCK_NULL);
      l.mode = LOCK_NULL;
      l.writeSeq = 0n;
    } catch (err) {
      this.log(`giving back an idle lock failed: ${(err as Error).message}`);
    } finally {
      l.requestPending = false;
      l.wake();
      if (l.forgettable) this.locks.delete(l.start);
    }
  }

  /** Fail every waiter and refuse new locks (unmount, or a fenced mount). */
  shutdown(why: string): void {
    this.shutdownErr = new ScoutfsError("EIO", `locks are shut down: ${why}`);
    for (const l of this.locks.values()) l.wake();
  }
}

// Lock ranges scoutfs uses (lock.c) live with the key formats: src/format/lock-ranges.ts.
export { inodeLockRange, renameLockRange, orphanLockRange, indexLockRange } from "../format/lock-ranges.ts";
