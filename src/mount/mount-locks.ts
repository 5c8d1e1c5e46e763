/**
 * A mount's cluster locks (ARCHITECTURE.md "Cluster coherence through FUSE"): the lock cache
 * (src/lock/lock.ts) wired to the server connection, the item store and the kernel's caches.
 *
 *   grant      a lock request goes to the server; a write grant's write_seq raises the seq of
 *              the items this mount writes from now on (merges order versions by it); a grant
 *              that lets us read refreshes the forest roots (get_roots) before anyone reads under
 *              it — the previous holder committed its changes before giving the lock up, so the
 *              new roots hold them;
 *   writeback  before a writable mode is given up, commit everything dirty (our log tree then
 *              holds every change the lock covered, and the server has recorded it);
 *   invalidate before read access is given up, the kernel drops what it caches for the lock's
 *              inodes: attributes and pages (inval_inode) and the names in its directories
 *              (inval_entry). The item cache holds no clean items, and blocks are verified by
 *              their seq, so nothing else is cached;
 *   recover    a new server asks for every lock we hold.
 *
 * The FS layer takes the locks through `fsLocks` (src/fs/locks.ts, src/fs/cluster-locks.ts).
 */
import type { Key } from "../format/key.ts";
import { NetLock, NET_LOCK_MAX_RECOVER_NR, NET_OPEN_INO_MAP_BITS_BYTES } from "../format/net.ts";
import * as C from "../format/constants.ts";
import type { ClientStore } from "../item/client-store.ts";
import type { ScoutfsFuse } from "../fs/fuse.ts";
import { type ClientLock, LockCache, lockCanRead, lockCanWrite } from "../lock/lock.ts";
import { LockCacheFsLocks } from "../fs/cluster-locks.ts";
import { fsKeyIno } from "../fs/locks.ts";
import { ScoutfsError } from "../util/errors.ts";

export class MountLocks {
  readonly cache: LockCache;
  readonly fsLocks: LockCacheFsLocks;
  private store: ClientStore | null = null;
  private fs: ScoutfsFuse | null = null;

  constructor(log: (msg: string) => void) {
    this.cache = new LockCache(
      {
        request: (start, oldMode, newMode) => this.request(start, oldMode, newMode),
        writeback: (l) => this.writeback(l),
        invalidate: (l, newMode) => this.invalidate(l, newMode),
      },
      { log: (m) => log(`locks: ${m}`) },
    );
    this.fsLocks = new LockCacheFsLocks(this.cache);
  }

  /** The client callbacks (pass to ClientStore.open's client options). */
  get clientHooks() {
    return {
      onLockInvalidate: async (nl: NetLock): Promise<NetLock> => {
        const mode = await this.cache.invalidate(nl.key, nl.new_mode, nl.old_mode);
        return { ...nl, new_mode: mode } as NetLock;
      },
      onLockRecover: (from: Key): NetLock[] =>
        this.cache
          .recover(from, NET_LOCK_MAX_RECOVER_NR)
          .map((l) => ({ key: l.start, write_seq: l.writeSeq, old_mode: l.mode, new_mode: l.mode }) as NetLock),
      // before the filesystem is attached the kernel holds no inode of ours
      onOpenInoMap: (groupNr: bigint): Uint8Array => this.fs?.openInoBits(groupNr) ?? new Uint8Array(NET_OPEN_INO_MAP_BITS_BYTES),
    };
  }

  /** The store and filesystem the locks serve (before the first operation). */
  attach(store: ClientStore, fs: ScoutfsFuse): void {
    this.store = store;
    this.fs = fs;
  }

  /** Unmount: fail whoever still waits for a lock. */
  shutdown(why: string): void {
    this.cache.shutdown(why);
  }

  private async request(start: Key, oldMode: number, newMode: number): Promise<{ writeSeq: bigint }> {
    const store = this.store;
    if (store === null) throw new ScoutfsError("EIO", "lock request before the mount's store is open");
    const g = await store.client.lock({ key: start, write_seq: 0n, old_mode: oldMode, new_mode: newMode } as NetLock);
    if (lockCanWrite(newMode)) store.noteWriteSeq(g.write_seq);
    // Always, even on an upgrade from READ: the server may have invalidated our READ while this
    // request was on its way (it then grants from NULL, after another mount wrote).
    if (lockCanRead(newMode)) await store.refreshRoots();
    return { writeSeq: g.write_seq };
  }

  private async writeback(l: ClientLock): Promise<void> {
    // every loss of WRITE comes through here (downgrades to READ too, which skip invalidate)
    if (this.fs !== null && l.start.charCodeAt(0) === C.FS_ZONE) this.fs.lostWrite(fsKeyIno(l.start), fsKeyIno(l.end));
    await this.store?.commit(false);
  }

  private async invalidate(l: ClientLock, _newMode: number): Promise<void> {
    if (this.fs === null || l.start.charCodeAt(0) !== C.FS_ZONE) return;
    await this.fs.kernelInvalidate(fsKeyIno(l.start), fsKeyIno(l.end));
  }
}
