// The POSIX layer's view of cluster locks (src/fs/locks.ts, src/lock/fs-locks.ts) over a lock
// cache whose server answers at once: cached grants are taken without waiting, an operation's
// locks are requested in key order, an item access outside the session's groups is refused
// (NeedLocks) unless a cached grant covers it, and the store view rolls such an attempt back.
import { describe, expect, test } from "bun:test";
import { LOCK_NULL, LOCK_READ, LOCK_WRITE, LockCache, inodeLockRange } from "../../src/lock/lock.ts";
import { LockCacheFsLocks } from "../../src/fs/cluster-locks.ts";
import { NeedLocks, fsKeyIno, lockCheckedStore, type FsLockSession } from "../../src/fs/locks.ts";
import { inodeKey, xattrKey } from "../../src/fs/keys.ts";
import { keyUnpack } from "../../src/format/key.ts";
import { MemStore } from "../helpers/memstore.ts";

function cacheWithLog() {
  const requests: string[] = [];
  const cache = new LockCache({
    request: async (start, oldMode, newMode) => {
      requests.push(`${start.first}:${oldMode}->${newMode}`);
      return { writeSeq: 7n };
    },
    writeback: async () => {},
    invalidate: () => {},
  });
  return { cache, requests, locks: new LockCacheFsLocks(cache) };
}

describe("fs lock sessions", () => {
  test("the first session waits for grants, in key order; the next one finds them cached", async () => {
    const { cache, requests, locks } = cacheWithLog();
    const first = locks.begin([5000n, 5n, 1030n], true, false);
    expect(first).toBeInstanceOf(Promise);
    const s = await first;
    expect(requests).toEqual([`0:${LOCK_NULL}->${LOCK_WRITE}`, `1024:${LOCK_NULL}->${LOCK_WRITE}`, `4096:${LOCK_NULL}->${LOCK_WRITE}`]);
    s.release();
    const again = locks.begin([5n, 4100n], false, false);
    expect(again).not.toBeInstanceOf(Promise);
    (again as FsLockSession).release();
    expect(requests.length).toBe(3);
    // users are counted and given back: nothing is held now
    for (const l of cache.held) expect(l.usersTotal).toBe(0);
  });

  test("cover takes cached grants on the spot and refuses groups that would have to wait", async () => {
    const { locks } = cacheWithLog();
    (await locks.begin([2048n], false, false)).release(); // READ cached for group 2048
    const s = locks.begin([5n], true, false) as FsLockSession | Promise<FsLockSession>;
    const sess = s instanceof Promise ? await s : s;
    expect(sess.cover(inodeKey(7n), true)).toBe(true); // same group, WRITE
    expect(sess.cover(inodeKey(2050n), false)).toBe(true); // cached READ
    expect(sess.cover(inodeKey(2050n), true)).toBe(false); // READ cached, WRITE would wait
    expect(sess.cover(inodeKey(9000n), false)).toBe(false); // nothing cached
    sess.release();
  });

  test("the checked store refuses uncovered items with NeedLocks and rolls the transaction back", async () => {
    const { locks } = cacheWithLog();
    const base = new MemStore();
    let cur: FsLockSession | null = null;
    const store = lockCheckedStore(base, () => cur, () => true);
    cur = await locks.begin([5n], true, false);
    store.transact((w) => w.put(inodeKey(5n), new Uint8Array([1])));
    let thrown: unknown = null;
    try {
      store.transact((w) => {
        w.put(xattrKey(6n, 1, 1n, 0), new Uint8Array([2]));
        w.put(inodeKey(9000n), new Uint8Array([3]));
      });
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(NeedLocks);
    expect((thrown as NeedLocks).ino).toBe(9000n);
    expect((thrown as NeedLocks).write).toBe(true);
    // the first put of the failed attempt is gone too
    expect(base.reader.lookup(xattrKey(6n, 1, 1n, 0))).toBeNull();
    expect(base.reader.lookup(inodeKey(5n))).toEqual(new Uint8Array([1]));
    cur.release();
    cur = null;
    expect(() => store.reader.lookup(inodeKey(5n))).toThrow(/outside a cluster lock/);
  });

  test("packed FS keys name their inode and group", () => {
    for (const ino of [1n, 1023n, 1024n, 123456789n, 2n ** 52n + 5n]) {
      expect(fsKeyIno(inodeKey(ino))).toBe(ino);
      expect(keyUnpack(inodeLockRange(ino).start).first).toBe(ino & ~1023n);
    }
    expect(LOCK_READ).not.toBe(LOCK_WRITE);
  });
});
