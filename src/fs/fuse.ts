/**
 * ScoutfsFuse: the scoutfs POSIX filesystem (src/fs/*) served through the FUSE library's
 * Filesystem API.
 *
 * Node ids are inode numbers: scoutfs's root is ino 1, as is FUSE's root node id, and scoutfs
 * never reuses inode numbers, so the identity mapping needs no table and no generations (inode
 * numbers must stay below 2^53, which a volume cannot exhaust). What the kernel holds is
 * tracked per inode: the lookup count (every reply carrying an Entry adds one, forget drops
 * them) and open handles. An inode that has lost its last name (nlink 0, an orphan item) is
 * deleted — all its items, its data blocks freed — when the last of those references goes.
 *
 * Every mutating operation is one store transaction (src/fs/trans.ts): it either happens whole
 * or, if anything throws, not at all. Deleting an orphan and long truncations of dying inodes
 * use several bounded transactions, made safe by the orphan item (see orphan.ts).
 *
 * Permissions are the kernel's (default_permissions, POSIX ACLs from the system.posix_acl_*
 * xattrs); what the kernel leaves to filesystems is done here: owners from the caller, setgid
 * directories, umask or default-ACL inheritance, the ACL/mode coupling on chmod and setfacl.
 * Errors thrown by the fs layer (ScoutfsError, FuseError) become FuseErrors with their errno.
 */
import { DT_BLK, DT_CHR, DT_DIR, DT_FIFO, DT_LNK, DT_REG, DT_SOCK, OPEN_INO_MAP_BITS, OPEN_INO_MAP_SHIFT, ROOT_INO } from "../format/constants.ts";
import { FuseError } from "../fuse/errno.ts";
import type {
  AttrReply,
  CreateReply,
  DirentSink,
  Entry,
  Filesystem,
  OpenReply,
  RequestContext,
  SetattrRequest,
  StatfsReply,
} from "../fuse/filesystem.ts";
import { type Attr, FATTR, FUSE_OPEN_KILL_SUIDGID, FUSE_WRITE_KILL_SUIDGID, SEEK_DATA, SEEK_HOLE } from "../fuse/types.ts";
import type { ItemStore } from "../item/types.ts";
import { ScoutfsError } from "../util/errors.ts";
import { assert } from "../util/assert.ts";
import { NET_OPEN_INO_MAP_BITS_BYTES, openInoMapGroup, openInoMapSet, openInoMapTest } from "../format/net.ts";
import { dataFallocate, dataRead, dataSeek, dataTruncate, dataWrite } from "./data.ts";
import { RENAME_EXCHANGE, dirCreate, dirLink, dirLookup, dirParentIno, dirReaddir, dirRename, dirUnlink } from "./dir.ts";
import { fsFail } from "./errors.ts";
import {
  type FsInode,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  inodeGet,
  inodeLoad,
  inodeMkfsRoot,
  inodeSave,
  isDir,
  isLnk,
  isReg,
} from "./inode.ts";
import { inodeDelete, orphanExists, orphanList, orphanScan } from "./orphan.ts";
import { type FsLockSession, type FsLocks, NO_LOCKS, NeedLocks, lockCheckedStore } from "./locks.ts";
import { symlinkRead } from "./symlink.ts";
import { type FsTime, fsNow, fsTransact } from "./trans.ts";
import { aclChmod, xattrGet, xattrKillPriv, xattrList, xattrSet } from "./xattr.ts";

const BLOCK_BYTES = 4096;
const O_ACCMODE = 3;
const O_TRUNC = 0o1000;
/** copy_file_range copies at most this much per call (the caller loops, as copy_file_range allows). */
const COPY_MAX_BYTES = 16 * 1024 * 1024;
/** omap bitmaps kept (one per inode group we delete in while holding its WRITE lock). */
const OMAP_CACHE_GROUPS_MAX = 1024;

export interface ScoutfsFuseOptions {
  /** Seconds the kernel may cache names (entry) and attributes. */
  entryTimeout?: number;
  attrTimeout?: number;
  /** statfs(2) numbers; by default a large empty volume. */
  statfs?: () => StatfsReply | Promise<StatfsReply>;
  /** Cluster locks covering every item access (src/fs/locks.ts); NO_LOCKS by default. */
  locks?: FsLocks;
  /** Delete orphaned inodes left by a previous run when the kernel sends INIT (single mount). */
  deleteOrphansOnInit?: boolean;
  /**
   * FUSE's "no open" mode (as memfs --no-open, docs/fuse.md): no open and no create method, so
   * after one ENOSYS each the kernel opens files without asking (no OPEN, no RELEASE) and creates
   * them with MKNOD; O_TRUNC then comes as a SETATTR (ATOMIC_O_TRUNC is not negotiated without
   * open), its privilege removal with it (FATTR_KILL_SUIDGID). Nothing here needs per-open state:
   * reads and writes go by inode, and an unlinked file stays while the kernel holds a lookup
   * reference to it, which it does while the file is open (FORGET comes after the last close).
   * Saves an OPEN round trip per open and a RELEASE per close. O_TMPFILE keeps its handle.
   */
  noOpen?: boolean;
}

interface Refs {
  nlookup: number;
  opens: number;
}

interface Handle {
  ino: bigint;
  flags: number;
}

/** Kernel notifications the cluster layer needs (the FUSE session's). */
export interface KernelNotifier {
  notifyInvalInode(nodeid: number, off: number, len: number): Promise<void>;
  notifyInvalEntry(parent: number, name: string): Promise<void>;
}

/** Options of one operation run (`ScoutfsFuse.run`). */
interface RunOpts {
  /** Wait for the store's admission first (a mutating operation). */
  admit?: boolean;
  /** The operation removes things (admission keeps a last reserve for it). */
  freeing?: boolean;
  /** Take the global rename lock too. */
  rename?: boolean;
  /** Called once before the operation first waits (arguments viewing the request buffer are copied). */
  beforeWait?: () => void;
}

/** Times a data-allocating operation asks for more data blocks before its ENOSPC stands. */
const DATA_RETRIES = 16;

/** How long a lock invalidation waits for the kernel to drop its caches (see kernelInvalidate). */
export const KERNEL_INVAL_WAIT_MS = 200;

const DT_TO_MODE: Record<number, number> = {
  [DT_FIFO]: 0o010000,
  [DT_CHR]: 0o020000,
  [DT_DIR]: 0o040000,
  [DT_BLK]: 0o060000,
  [DT_REG]: 0o100000,
  [DT_LNK]: 0o120000,
  [DT_SOCK]: 0o140000,
};

const bytes = (s: string): Uint8Array => Buffer.from(s, "latin1");
const latin1 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("latin1");

function toIno(nodeid: number): bigint {
  return BigInt(nodeid);
}

function toNodeid(ino: bigint): number {
  if (ino > BigInt(Number.MAX_SAFE_INTEGER)) fsFail("EOVERFLOW", `inode ${ino} beyond node id range`);
  return Number(ino);
}

/** Run `fn`, turning fs-layer errors into FuseErrors (anything else is a bug: EIO upstream). */
function fuseCall<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof ScoutfsError) throw new FuseError(e.errno, e.message);
    throw e;
  }
}

/**
 * The answers of the hot negative paths — a name that does not exist (every create looks it up
 * first), an xattr that does not exist (the kernel asks for security.capability before every
 * write) — made once: building an Error and its stack per request was a visible share of them.
 */
const ENOENT_NAME = new FuseError("ENOENT", "no such name");
const ENODATA_XATTR = new FuseError("ENODATA", "no such xattr");

/** A rejection from the store (a commit that made room failed) as the FuseError it answers. */
function toFuseError(e: unknown): unknown {
  return e instanceof ScoutfsError ? new FuseError(e.errno, e.message) : e;
}

/** Ensure the root directory exists (a fresh MemStore has none; mkfs writes it on real volumes). */
export function fsEnsureRoot(store: ItemStore, mode = 0o755, uid = 0, gid = 0): void {
  if (inodeLoad(store.reader, ROOT_INO, store.fmtVers) !== null) return;
  fsTransact(store, (tx) => inodeMkfsRoot(tx, fsNow(), S_IFDIR | mode, uid, gid));
}

export class ScoutfsFuse implements Filesystem {
  /** We remove setuid/setgid and file capabilities ourselves (xattrKillPriv): no GETXATTR per write. */
  readonly killPrivV2 = true;
  /** The store as operations see it: every item access checked against the operation's locks when clustered. */
  readonly store: ItemStore;
  readonly locks: FsLocks;
  /** The lock session of the operation running now (clustered only). */
  private cur: FsLockSession | null = null;
  private curWrite = false;
  /** Names the kernel may cache, per child inode (clustered only): dropped when a lock goes. */
  private readonly kernelNames = new Map<bigint, { parent: bigint; name: string }[]>();
  /** Set once mounted: how lock invalidations reach the kernel's caches. */
  notifier: KernelNotifier | null = null;
  private readonly refs = new Map<bigint, Refs>();
  private readonly handles = new Map<number, Handle>();
  private nextFh = 1;
  readonly entryTimeout: number;
  readonly attrTimeout: number;
  private readonly statfsFn: (() => StatfsReply | Promise<StatfsReply>) | undefined;
  private readonly deleteOrphansOnInit: boolean;
  /** Other mounts' open inode bitmaps by omap group, valid while we hold the group WRITE (lostWrite). */
  private readonly omapCache = new Map<bigint, Uint8Array>();
  /** Questions on their way, by group (omapFetch); lostWrite counts in omapEpoch. */
  private readonly omapPending = new Map<bigint, Promise<Uint8Array>>();
  private omapEpoch = 0;
  counters = { deletedInodes: 0, deletesDeferred: 0, transactions: 0, holdWaits: 0, lockRetries: 0, lockWaits: 0, kernelInvalidations: 0, dataRefills: 0 };

  constructor(
    readonly baseStore: ItemStore,
    opts: ScoutfsFuseOptions = {},
  ) {
    this.locks = opts.locks ?? NO_LOCKS;
    this.store = this.locks.clustered ? lockCheckedStore(baseStore, () => this.cur, () => this.curWrite) : baseStore;
    this.entryTimeout = opts.entryTimeout ?? 1;
    this.attrTimeout = opts.attrTimeout ?? 1;
    this.statfsFn = opts.statfs;
    this.deleteOrphansOnInit = opts.deleteOrphansOnInit ?? false;
    // hidden from the session, which looks for them when negotiating and dispatching
    if (opts.noOpen === true) for (const m of ["open", "create"] as const) Object.defineProperty(this, m, { value: undefined });
  }

  // ------------------------------------------------------------------------------------------
  // References and attributes.

  private ref(ino: bigint): Refs {
    let r = this.refs.get(ino);
    if (r === undefined) {
      r = { nlookup: 0, opens: 0 };
      this.refs.set(ino, r);
    }
    return r;
  }

  /**
   * The inodes of omap group `groupNr` our kernel holds, as an open_ino_map bitmap: another mount
   * asks (through the server) before it deletes an unlinked inode of the group.
   */
  openInoBits(groupNr: bigint): Uint8Array {
    const bits = new Uint8Array(NET_OPEN_INO_MAP_BITS_BYTES);
    const first = groupNr << BigInt(OPEN_INO_MAP_SHIFT);
    // a group is 1024 inodes: probing each is cheaper than walking every inode the kernel holds
    for (let b = 0; b < OPEN_INO_MAP_BITS; b++) if (this.inUse(first + BigInt(b))) openInoMapSet(bits, b);
    return bits;
  }

  /** Does the kernel still hold `ino` (lookups or open files)? */
  inUse(ino: bigint): boolean {
    const r = this.refs.get(ino);
    return r !== undefined && (r.nlookup > 0 || r.opens > 0);
  }

  /**
   * Delete `ino` if it has no names and the kernel has let go of it. Inside an operation's lock
   * session it runs at once; outside one (forget, release) under its own session, perhaps later.
   */
  private maybeDelete(ino: bigint): void | Promise<void> {
    if (this.inUse(ino) || ino === ROOT_INO) return;
    this.refs.delete(ino);
    this.kernelNames.delete(ino);
    if (this.baseStore.openInoMap !== undefined && this.locks.clustered) {
      // Other mounts may still use it: ask them first (deleteChecked), outside the operation's
      // session when called inside one (it takes its own, and waits for the server).
      if (this.cur !== null) {
        this.trackDeletion(Promise.resolve().then(() => this.deleteChecked(ino))).catch((e: unknown) => this.deleteFailed(ino, e));
        return;
      }
      return this.trackDeletion(this.deleteChecked(ino));
    }
    if (!this.locks.clustered || this.cur !== null) return this.deleteNow(ino);
    const r = this.locked([ino], true, () => this.deleteNow(ino));
    return r instanceof Promise ? this.trackDeletion(r) : r;
  }

  /**
   * Deletions of unlinked inodes that started (at a forget, a release, an unlink) but wait for a
   * lock or the server: fsync and unmount wait for those started before them, so that what an
   * `rm` freed is in the commit a following fsync makes (its space back in statfs) rather than
   * in a later one.
   */
  private readonly deletions = new Set<Promise<void>>();

  private trackDeletion(p: Promise<void>): Promise<void> {
    this.deletions.add(p);
    const done = (): void => void this.deletions.delete(p);
    p.then(done, done);
    return p;
  }

  /** Wait for the deletions in flight now (their failures are logged where they started). */
  private async settleDeletions(): Promise<void> {
    if (this.deletions.size > 0) await Promise.allSettled([...this.deletions]);
  }

  private deleteFailed(ino: bigint, e: unknown): void {
    // the orphan item stays: the next mount's orphan deletion, or another holder, retries
    process.stderr.write(`scoutfs: deleting inode ${ino} failed: ${(e as Error).message}\n`);
  }

  /** Would deleteNow delete `ino` (read in the current session)? */
  private deleteCandidate(ino: bigint): boolean {
    if (this.inUse(ino)) return false;
    if (!orphanExists(this.store.reader, ino)) return false;
    const i = inodeLoad(this.store.reader, ino, this.store.fmtVers);
    return i === null || i.v.nlink === 0;
  }

  /**
   * Delete an unlinked inode of a shared volume unless another mount still caches it (scoutfs
   * inode.c try_delete_inode_items): holding its group's inode lock for writing — no mount can
   * start caching an unlinked inode then — check that it is still a deletion candidate, ask the
   * server which inodes of its omap group the other mounts cache (ItemStore.openInoMap), and
   * delete only if ours is not among them. Otherwise the orphan item stays and the mount that
   * still uses it deletes it when its kernel lets go (its own forget or release comes here). A
   * failed question keeps the inode too: deleting one in use elsewhere loses data, keeping one
   * costs an orphan that the next orphan deletion finds.
   */
  private async deleteChecked(ino: bigint): Promise<void> {
    let s: FsLockSession;
    try {
      const b = this.locks.begin([ino], true, false);
      s = b instanceof Promise ? await b : b;
    } catch (e) {
      throw toFuseError(e);
    }
    let retry = false;
    try {
      if (!this.inSession(s, true, () => this.deleteCandidate(ino))) return;
      const { groupNr, bit } = openInoMapGroup(ino);
      let bits: Uint8Array;
      try {
        bits = this.omapCache.get(groupNr) ?? (await this.omapFetch(groupNr));
      } catch (e) {
        this.counters.deletesDeferred++;
        this.deleteFailed(ino, e);
        return;
      }
      if (openInoMapTest(bits, bit)) {
        this.counters.deletesDeferred++;
        return;
      }
      try {
        this.inSession(s, true, () => this.deleteNow(ino));
      } catch (e) {
        if (!(e instanceof NeedLocks)) throw e;
        retry = true;
      }
    } finally {
      s.release();
    }
    // an item outside the inode's group (never expected): its ordered lock session
    if (retry) await this.locked([ino], true, () => this.deleteNow(ino));
  }

  /**
   * Our WRITE lock on inodes [first, last] is going (the cluster layer calls this before it is
   * given up): forget the omap bitmaps of their groups. A bitmap stays exact only while we hold
   * the group's WRITE lock — no other mount can start caching an unlinked inode then (that needs
   * the lock) — so one question per group serves every deletion until the lock goes; a bit that
   * clears meanwhile only means the mount that let go deletes the inode itself.
   */
  lostWrite(first: bigint, last: bigint): void {
    this.omapEpoch++;
    if (this.omapCache.size === 0) return;
    const g0 = first >> BigInt(OPEN_INO_MAP_SHIFT);
    const g1 = last >> BigInt(OPEN_INO_MAP_SHIFT);
    for (const g of [...this.omapCache.keys()]) if (g >= g0 && g <= g1) this.omapCache.delete(g);
  }

  /**
   * The omap bitmap of `groupNr` from the server, one question at a time per group: a burst of
   * deletions in one group (a BATCH_FORGET after rm -r) waits for one answer instead of sending a
   * request each (which filled the client's request window). Kept while the WRITE lock stays.
   */
  private omapFetch(groupNr: bigint): Promise<Uint8Array> {
    let p = this.omapPending.get(groupNr);
    if (p !== undefined) return p;
    const epoch = this.omapEpoch;
    p = this.baseStore.openInoMap!(groupNr).then(
      (bits) => {
        this.omapPending.delete(groupNr);
        // (a WRITE lock lost meanwhile cannot happen while the asker holds it; checked anyway)
        if (epoch === this.omapEpoch) {
          if (this.omapCache.size >= OMAP_CACHE_GROUPS_MAX) this.omapCache.clear();
          this.omapCache.set(groupNr, bits);
        }
        return bits;
      },
      (e: unknown) => {
        this.omapPending.delete(groupNr);
        throw e;
      },
    );
    this.omapPending.set(groupNr, p);
    return p;
  }

  /** Run `fn` synchronously as the current operation of session `s` (its locks for writing when `write`). */
  private inSession<T>(s: FsLockSession, write: boolean, fn: () => T): T {
    assert(this.cur === null, "a lock session is already current");
    this.cur = s;
    this.curWrite = write;
    try {
      return fn();
    } finally {
      this.cur = null;
      this.curWrite = false;
    }
  }

  private deleteNow(ino: bigint): void {
    if (this.inUse(ino)) return;
    if (!orphanExists(this.store.reader, ino)) return;
    const i = inodeLoad(this.store.reader, ino, this.store.fmtVers);
    if (i !== null && i.v.nlink > 0) return;
    inodeDelete(this.store, ino);
    this.counters.deletedInodes++;
  }

  attrOf(i: FsInode): Attr {
    const v = i.v;
    return {
      ino: toNodeid(i.ino),
      size: Number(v.size),
      blocks: Number((v.online_blocks + v.offline_blocks) * BigInt(BLOCK_BYTES / 512)),
      atime: Number(v.atime.sec),
      atimensec: v.atime.nsec,
      mtime: Number(v.mtime.sec),
      mtimensec: v.mtime.nsec,
      ctime: Number(v.ctime.sec),
      ctimensec: v.ctime.nsec,
      mode: v.mode,
      nlink: v.nlink,
      uid: v.uid,
      gid: v.gid,
      rdev: v.rdev,
      blksize: BLOCK_BYTES,
    };
  }

  /** An Entry reply for `i` (named `name` in `parent`, when known), counting one kernel reference. */
  private entry(i: FsInode, parent?: bigint, name?: string): Entry {
    this.ref(i.ino).nlookup++;
    if (parent !== undefined && name !== undefined) this.noteName(i.ino, parent, name);
    return { nodeid: toNodeid(i.ino), generation: 0, attr: this.attrOf(i), entryTimeout: this.entryTimeout, attrTimeout: this.attrTimeout };
  }

  private load(nodeid: number): FsInode {
    return inodeGet(this.store.reader, toIno(nodeid), this.store.fmtVers);
  }

  /**
   * Run a mutating operation once the store admits a transaction (ItemStore.hold): at once
   * normally; after the commit that makes room when the dirty items could not otherwise be
   * written; ENOSPC when the metadata device is full. Arguments that view the request buffer
   * must be copied before calling this (it is reused while we wait), or in `beforeWait`.
   */
  private held<T>(fn: () => T | Promise<T>, freeing = false, beforeWait?: () => void): T | Promise<T> {
    const wait = fuseCall(() => this.store.hold?.(freeing) ?? null);
    if (wait === null) return fn();
    this.counters.holdWaits++;
    beforeWait?.();
    return wait.then(
      () => this.held(fn, freeing),
      (e: unknown) => {
        throw toFuseError(e);
      },
    );
  }

  /**
   * Run one operation: admission first when it changes things (`admit`), then its lock session
   * (src/fs/locks.ts), then `fn` synchronously inside the session.
   */
  private run<T>(inos: bigint[], write: boolean, fn: () => T, o: RunOpts = {}): T | Promise<T> {
    if (o.admit) return this.held(() => this.locked(inos, write, fn, o.rename ?? false, o.beforeWait), o.freeing ?? false, o.beforeWait);
    return this.locked(inos, write, fn, o.rename ?? false, o.beforeWait);
  }

  /**
   * Run `fn` holding the group locks of `inos` (READ, or WRITE when `write`). An item of another
   * group that cannot be taken without waiting (NeedLocks) rolls the attempt back and runs `fn`
   * again with that group added to the ordered set. Inside a session already: `fn` joins it.
   */
  private locked<T>(inos: bigint[], write: boolean, fn: () => T, rename = false, beforeWait?: () => void): T | Promise<T> {
    if (!this.locks.clustered || this.cur !== null) return fn();
    let s: FsLockSession | Promise<FsLockSession>;
    try {
      s = this.locks.begin(inos, write, rename);
    } catch (e) {
      throw toFuseError(e);
    }
    if (s instanceof Promise) {
      this.counters.lockWaits++;
      beforeWait?.();
      return s.then(
        (s) => this.runIn(s, inos, write, fn, rename),
        (e: unknown) => {
          throw toFuseError(e);
        },
      );
    }
    return this.runIn(s, inos, write, fn, rename, beforeWait);
  }

  private runIn<T>(s: FsLockSession, inos: bigint[], write: boolean, fn: () => T, rename: boolean, beforeWait?: () => void): T | Promise<T> {
    let need: NeedLocks;
    try {
      return this.inSession(s, write, fn);
    } catch (e) {
      if (!(e instanceof NeedLocks)) throw e;
      need = e;
    } finally {
      s.release();
    }
    this.counters.lockRetries++;
    return this.locked([...inos, need.ino], write || need.write, fn, rename, beforeWait);
  }

  /** Remember that the kernel may cache `name` in `parent` for `ino` (clustered only). */
  private noteName(ino: bigint, parent: bigint, name: string): void {
    if (!this.locks.clustered) return;
    let l = this.kernelNames.get(ino);
    if (l === undefined) this.kernelNames.set(ino, (l = []));
    for (const n of l) if (n.parent === parent && n.name === name) return;
    l.push({ parent, name });
  }

  /**
   * The lock covering inodes [first, last] is being given up: the kernel must stop serving its
   * cached attributes, pages and names there (FUSE inval_inode, inval_entry). Notifications are
   * written off the event loop; the kernel may have to wait for a request of ours that is itself
   * waiting for this very lock (inval_entry takes the directory's i_rwsem, inval_inode the page
   * locks a READ or WRITE in flight holds), so we wait for them at most KERNEL_INVAL_WAIT_MS and
   * then let the invalidation finish: such a request rereads under its new grant anyway.
   */
  async kernelInvalidate(first: bigint, last: bigint): Promise<void> {
    const n = this.notifier;
    if (n === null) return;
    const ps: Promise<void>[] = [];
    const quiet = (p: Promise<void>) => ps.push(p.catch(() => {}));
    if (ROOT_INO >= first && ROOT_INO <= last) quiet(n.notifyInvalInode(toNodeid(ROOT_INO), 0, 0));
    for (const [ino, r] of this.refs) {
      if (ino >= first && ino <= last && ino !== ROOT_INO && (r.nlookup > 0 || r.opens > 0)) quiet(n.notifyInvalInode(toNodeid(ino), 0, 0));
    }
    for (const [ino, names] of this.kernelNames) {
      for (let k = 0; k < names.length; ) {
        const nm = names[k]!;
        if (nm.parent >= first && nm.parent <= last) {
          quiet(n.notifyInvalEntry(toNodeid(nm.parent), nm.name));
          names.splice(k, 1);
        } else k++;
      }
      if (names.length === 0) this.kernelNames.delete(ino);
    }
    if (ps.length === 0) return;
    this.counters.kernelInvalidations += ps.length;
    await Promise.race([Promise.all(ps), Bun.sleep(KERNEL_INVAL_WAIT_MS)]);
  }

  private tx<T>(fn: (tx: import("./trans.ts").Tx, now: FsTime) => T): T {
    this.counters.transactions++;
    return fuseCall(() => fsTransact(this.store, (tx) => fn(tx, fsNow())));
  }

  private newHandle(ino: bigint, flags: number): number {
    const fh = this.nextFh++;
    this.handles.set(fh, { ino, flags });
    this.ref(ino).opens++;
    return fh;
  }

  private dropHandle(fh: number): void | Promise<void> {
    const h = this.handles.get(fh);
    if (h === undefined) throw new FuseError("EBADF");
    this.handles.delete(fh);
    const r = this.refs.get(h.ino);
    if (r !== undefined) r.opens = Math.max(0, r.opens - 1);
    return fuseCall(() => this.maybeDelete(h.ino));
  }

  // ------------------------------------------------------------------------------------------
  // Lifecycle.

  async init(): Promise<void> {
    if (!this.deleteOrphansOnInit) return;
    if (!this.locks.clustered) {
      fuseCall(() => orphanScan(this.store, (ino) => this.inUse(ino)));
      return;
    }
    // In the background: the kernel waits for INIT's answer, and a shared volume's scan may wait
    // for other mounts (locks; open_ino_map waits for a new server's recovery, up to its timeout).
    void this.scanOrphans().catch((e: unknown) => process.stderr.write(`scoutfs: orphan scan at mount failed: ${(e as Error).message}\n`));
  }

  /**
   * One orphan scan (scoutfs's, every orphan_scan_delay_ms on every mount): delete the orphaned
   * inodes nobody holds any more — left by a mount that crashed while it held them, or whose
   * deletion failed. Orphan items are outside the inode groups: they are listed from the newest
   * committed roots, then each is deleted under its group's lock, unless this kernel or (with an
   * open inode map) another mount still holds it. Returns how many were deleted.
   */
  async scanOrphans(): Promise<number> {
    const before = this.counters.deletedInodes;
    await this.baseStore.refreshRoots?.();
    const omap = this.baseStore.openInoMap !== undefined && this.locks.clustered;
    // Unlocked hints, one question per group per scan (as scoutfs's scan): an orphan another
    // mount still holds is skipped without taking its group's WRITE lock away from that mount
    // every scan. deleteChecked asks again under the lock before it deletes anything.
    const hints = new Map<bigint, Uint8Array | null>();
    for (const ino of orphanList(this.store.reader)) {
      if (this.inUse(ino)) continue;
      // one orphan that cannot be deleted (EIO on its items, a lock that fails) must not stop
      // the others, nor fail the mount's INIT: it stays for the next scan
      try {
        if (!omap) {
          await this.locked([ino], true, () => this.deleteNow(ino));
          continue;
        }
        const { groupNr, bit } = openInoMapGroup(ino);
        let hint = hints.get(groupNr);
        if (hint === undefined) {
          hint = await this.baseStore.openInoMap!(groupNr).catch(() => null);
          hints.set(groupNr, hint);
        }
        if (hint !== null && openInoMapTest(hint, bit)) {
          this.counters.deletesDeferred++;
          continue;
        }
        await this.deleteChecked(ino);
      } catch (e) {
        this.deleteFailed(ino, e);
      }
    }
    return this.counters.deletedInodes - before;
  }

  async destroy(): Promise<void> {
    await this.settleDeletions();
    await this.store.sync();
  }

  // ------------------------------------------------------------------------------------------
  // Names.

  lookup(_ctx: RequestContext, parent: number, name: string): Entry | Promise<Entry> {
    return this.run([toIno(parent)], false, () => fuseCall(() => {
      const r = this.store.reader;
      const dir = this.load(parent);
      if (!isDir(dir.v.mode)) fsFail("ENOTDIR", "lookup in a non-directory");
      let ino: bigint;
      if (name === ".") ino = dir.ino;
      else if (name === "..") ino = dirParentIno(r, dir.ino) || fsFail("ENOENT", "removed directory");
      else {
        const ent = dirLookup(r, dir.ino, bytes(name));
        if (ent === null) throw ENOENT_NAME;
        ino = ent.ino;
      }
      const i = inodeGet(r, ino, this.store.fmtVers);
      return name === "." || name === ".." ? this.entry(i) : this.entry(i, dir.ino, name);
    }));
  }

  forget(nodeid: number, nlookup: number): void {
    const ino = toIno(nodeid);
    const r = this.refs.get(ino);
    if (r === undefined) return;
    r.nlookup = Math.max(0, r.nlookup - nlookup);
    // forget has no reply: a failure is logged, the orphan item stays and a later scan retries
    try {
      const p = this.maybeDelete(ino);
      if (p instanceof Promise) p.catch((e: unknown) => this.deleteFailed(ino, e));
    } catch (e) {
      this.deleteFailed(ino, e);
    }
  }

  getattr(_ctx: RequestContext, nodeid: number): AttrReply | Promise<AttrReply> {
    return this.run([toIno(nodeid)], false, () => fuseCall(() => ({ attr: this.attrOf(this.load(nodeid)), attrTimeout: this.attrTimeout })));
  }

  setattr(_ctx: RequestContext, nodeid: number, set: SetattrRequest): AttrReply | Promise<AttrReply> {
    return this.run([toIno(nodeid)], true, () => {
      const i = this.tx((tx, now) => {
        const i = inodeGet(tx.w, toIno(nodeid), tx.fmtVers);
        const v = set.valid;
        const sizeChange = (v & FATTR.SIZE) !== 0;
        if (sizeChange) {
          if (isDir(i.v.mode)) fsFail("EISDIR", "truncate of a directory");
          if (!isReg(i.v.mode)) fsFail("EINVAL", "truncate of a special file");
          dataTruncate(tx, i, set.size, now);
        }
        if (v & FATTR.MODE) {
          i.v.mode = (i.v.mode & S_IFMT) | (set.mode & 0o7777);
          aclChmod(tx, i);
        }
        if (v & FATTR.UID) i.v.uid = set.uid >>> 0;
        if (v & FATTR.GID) i.v.gid = set.gid >>> 0;
        if (v & FATTR.ATIME_NOW) i.v.atime = { ...now };
        else if (v & FATTR.ATIME) i.v.atime = { sec: BigInt(set.atime), nsec: set.atimensec };
        if (v & FATTR.MTIME_NOW) i.v.mtime = { ...now };
        else if (v & FATTR.MTIME) i.v.mtime = { sec: BigInt(set.mtime), nsec: set.mtimensec };
        if (v & FATTR.CTIME) i.v.ctime = { sec: BigInt(set.ctime), nsec: set.ctimensec };
        else i.v.ctime = { ...now };
        if (v & (FATTR.SIZE | FATTR.UID | FATTR.GID)) xattrKillPriv(tx, i, (v & FATTR.KILL_SUIDGID) !== 0, now);
        inodeSave(tx, i, { data: sizeChange });
        return i;
      });
      return { attr: this.attrOf(i), attrTimeout: this.attrTimeout };
    }, { admit: true });
  }

  readlink(_ctx: RequestContext, nodeid: number): string | Promise<string> {
    return this.run([toIno(nodeid)], false, () => fuseCall(() => {
      const i = this.load(nodeid);
      if (!isLnk(i.v.mode)) fsFail("EINVAL", "readlink of a non-symlink");
      return latin1(symlinkRead(this.store.reader, i.ino, i.v.size));
    }));
  }

  /**
   * Make a new inode in `parent` (named, or a tmpfile) and reply with its entry. Its number is
   * allocated first and kept across lock retries, so its group lock is taken with the parent's.
   */
  private createOp<T>(ctx: RequestContext, parent: number, name: string | null, mode: number, rdev: number, umask: number, target: string | undefined, reply: (i: FsInode) => T): T | Promise<T> {
    let ino: bigint | null = null;
    const dirIno = toIno(parent);
    return this.run([dirIno], true, () => {
      if (ino === null) ino = fuseCall(() => this.store.allocIno());
      const newIno = ino;
      const i = this.tx((tx, now) =>
        dirCreate(
          tx,
          dirIno,
          name === null ? null : bytes(name),
          { mode, rdev, uid: ctx.uid, gid: ctx.gid, umask, target: target === undefined ? undefined : bytes(target), tmpfile: name === null, ino: newIno },
          now,
        ),
      );
      return reply(i);
    }, { admit: true });
  }

  symlink(ctx: RequestContext, parent: number, name: string, target: string): Entry | Promise<Entry> {
    return this.createOp(ctx, parent, name, S_IFLNK | 0o777, 0, 0, target, (i) => this.entry(i, toIno(parent), name));
  }

  mknod(ctx: RequestContext, parent: number, name: string, mode: number, rdev: number, umask: number): Entry | Promise<Entry> {
    if ((mode & S_IFMT) === 0) mode |= S_IFREG;
    if (isDir(mode) || isLnk(mode)) throw new FuseError("EINVAL");
    return this.createOp(ctx, parent, name, mode, rdev, umask, undefined, (i) => this.entry(i, toIno(parent), name));
  }

  mkdir(ctx: RequestContext, parent: number, name: string, mode: number, umask: number): Entry | Promise<Entry> {
    return this.createOp(ctx, parent, name, S_IFDIR | (mode & 0o7777), 0, umask, undefined, (i) => this.entry(i, toIno(parent), name));
  }

  unlink(_ctx: RequestContext, parent: number, name: string): void | Promise<void> {
    return this.run([toIno(parent)], true, () => {
      const i = this.tx((tx, now) => dirUnlink(tx, toIno(parent), bytes(name), false, now));
      void fuseCall(() => this.maybeDelete(i.ino));
    }, { admit: true, freeing: true });
  }

  rmdir(_ctx: RequestContext, parent: number, name: string): void | Promise<void> {
    return this.run([toIno(parent)], true, () => {
      const i = this.tx((tx, now) => dirUnlink(tx, toIno(parent), bytes(name), true, now));
      void fuseCall(() => this.maybeDelete(i.ino));
    }, { admit: true, freeing: true });
  }

  rename(_ctx: RequestContext, parent: number, name: string, newParent: number, newName: string, flags: number): void | Promise<void> {
    // renames between directories serialize on the global rename lock (ancestry checks)
    return this.run([toIno(parent), toIno(newParent)], true, () => {
      let other: bigint | undefined;
      const r = this.tx((tx, now) => {
        if (flags & RENAME_EXCHANGE) other = dirLookup(tx.w, toIno(newParent), bytes(newName))?.ino;
        return dirRename(tx, toIno(parent), bytes(name), toIno(newParent), bytes(newName), flags, now);
      });
      // The kernel moved its dentries (d_move, d_exchange) without a LOOKUP: remember the names
      // it now caches, or another node's change of them would not reach its dentries.
      if (r.moved !== null) this.noteName(r.moved.ino, toIno(newParent), newName);
      if (other !== undefined) this.noteName(other, toIno(parent), name);
      if (r.replaced !== null) void fuseCall(() => this.maybeDelete(r.replaced!.ino));
    }, { admit: true, rename: parent !== newParent });
  }

  link(_ctx: RequestContext, nodeid: number, newParent: number, newName: string): Entry | Promise<Entry> {
    return this.run([toIno(nodeid), toIno(newParent)], true, () => {
      return this.entry(this.tx((tx, now) => dirLink(tx, toIno(nodeid), toIno(newParent), bytes(newName), now)), toIno(newParent), newName);
    }, { admit: true });
  }

  // ------------------------------------------------------------------------------------------
  // Files.

  open(_ctx: RequestContext, nodeid: number, flags: number, openFlags = 0): OpenReply | Promise<OpenReply> {
    const ino = toIno(nodeid);
    const truncating = (flags & O_TRUNC) !== 0 && (flags & O_ACCMODE) !== 0;
    // only a truncating open may change anything: only it waits for admission and a write lock
    return this.run([ino], truncating, () => {
      const i = fuseCall(() => this.load(nodeid));
      if (isDir(i.v.mode)) throw new FuseError("EISDIR");
      const kill = (openFlags & FUSE_OPEN_KILL_SUIDGID) !== 0;
      // a truncation of an empty file still removes privileges (as the kernel's do_truncate)
      if (truncating && isReg(i.v.mode) && (i.v.size !== 0n || i.v.next_xattr_id !== 0n || (kill && (i.v.mode & 0o6000) !== 0))) {
        this.tx((tx, now) => {
          const t = inodeGet(tx.w, ino, tx.fmtVers);
          dataTruncate(tx, t, 0, now);
          xattrKillPriv(tx, t, kill, now);
          inodeSave(tx, t, { data: true });
        });
      }
      return { fh: this.newHandle(ino, flags), openFlags: 0 };
    }, { admit: truncating });
  }

  create(ctx: RequestContext, parent: number, name: string, mode: number, umask: number, flags: number): CreateReply | Promise<CreateReply> {
    return this.createOp(ctx, parent, name, S_IFREG | (mode & 0o7777), 0, umask, undefined, (i) => ({
      entry: this.entry(i, toIno(parent), name),
      open: { fh: this.newHandle(i.ino, flags), openFlags: 0 },
    }));
  }

  tmpfile(ctx: RequestContext, parent: number, mode: number, umask: number, flags: number): CreateReply | Promise<CreateReply> {
    return this.createOp(ctx, parent, null, S_IFREG | (mode & 0o7777), 0, umask, undefined, (i) => ({
      entry: this.entry(i),
      open: { fh: this.newHandle(i.ino, flags), openFlags: 0 },
    }));
  }

  read(_ctx: RequestContext, nodeid: number, _fh: number, offset: number, size: number): Uint8Array | Promise<Uint8Array> {
    return this.run([toIno(nodeid)], false, () => fuseCall(() => {
      const i = this.load(nodeid);
      if (isDir(i.v.mode)) fsFail("EISDIR", "read of a directory");
      return dataRead({ w: this.store.reader, store: this.store }, i, offset, size);
    }));
  }

  write(_ctx: RequestContext, nodeid: number, _fh: number, offset: number, data: Uint8Array, writeFlags = 0): number | Promise<number> {
    let buf = data;
    const copy = () => {
      if (buf === data) buf = new Uint8Array(data);
    };
    return this.withDataRetry(copy, () => this.run([toIno(nodeid)], true, () => this.tx((tx, now) => {
      const i = inodeGet(tx.w, toIno(nodeid), tx.fmtVers);
      if (isDir(i.v.mode)) fsFail("EISDIR", "write to a directory");
      xattrKillPriv(tx, i, (writeFlags & FUSE_WRITE_KILL_SUIDGID) !== 0, now);
      const n = dataWrite(tx, i, offset, buf, now);
      inodeSave(tx, i, { data: true });
      return n;
    }), {
      admit: true,
      // `data` views the request buffer, reused while we wait
      beforeWait: copy,
    }));
  }

  /**
   * Run a data-allocating operation; when it fails with ENOSPC while the store may still get
   * data blocks (ItemStore.moreData: a mount holds only its share of the free space, refilled
   * by the server at a commit), get more and run it again. `beforeWait` copies arguments that
   * view the request buffer.
   */
  private withDataRetry<T>(beforeWait: () => void, attempt: () => T | Promise<T>, tries = 0): T | Promise<T> {
    const store = this.baseStore;
    if (store.moreData === undefined) return attempt();
    const retry = (e: unknown): Promise<T> => {
      if (!(e instanceof FuseError) || e.code !== "ENOSPC" || tries >= DATA_RETRIES) throw e;
      beforeWait();
      this.counters.dataRefills++;
      return store.moreData!().then(
        (more) => {
          if (!more) throw e;
          return this.withDataRetry(beforeWait, attempt, tries + 1);
        },
        () => {
          throw e;
        },
      );
    };
    let r: T | Promise<T>;
    try {
      r = attempt();
    } catch (e) {
      return retry(e);
    }
    return r instanceof Promise ? r.catch(retry) : r;
  }

  // No flush(): FLUSH would do nothing here (POSIX locks are the kernel's own, there is no
  // writeback cache), and without the method the kernel stops sending it after the first ENOSYS:
  // one round trip less per close(2).

  release(_ctx: RequestContext, _nodeid: number, fh: number, _flags?: number, _releaseFlags?: number, _lockOwner?: bigint): void | Promise<void> {
    return this.dropHandle(fh);
  }

  async fsync(): Promise<void> {
    await this.settleDeletions();
    await this.store.sync();
  }

  fallocate(ctx: RequestContext, nodeid: number, _fh: number, offset: number, length: number, mode: number): void | Promise<void> {
    return this.withDataRetry(() => {}, () => this.run([toIno(nodeid)], true, () => {
      this.tx((tx, now) => {
        const i = inodeGet(tx.w, toIno(nodeid), tx.fmtVers);
        if (!isReg(i.v.mode)) fsFail(isDir(i.v.mode) ? "EISDIR" : "ENODEV", "fallocate of a non-file");
        // the kernel skips its own check on inodes it marked S_NOSEC (killPrivV2)
        xattrKillPriv(tx, i, ctx.uid !== 0, now);
        const changed = dataFallocate(tx, i, offset, length, mode, now);
        inodeSave(tx, i, { data: changed });
      });
    }, { admit: true }));
  }

  lseek(_ctx: RequestContext, nodeid: number, _fh: number, offset: number, whence: number): number | Promise<number> {
    if (whence !== SEEK_DATA && whence !== SEEK_HOLE) throw new FuseError("EINVAL");
    return this.run([toIno(nodeid)], false, () => fuseCall(() => dataSeek(this.store.reader, this.load(nodeid), offset, whence)));
  }

  copyFileRange(
    ctx: RequestContext,
    nodeIn: number,
    _fhIn: number,
    offIn: number,
    nodeOut: number,
    _fhOut: number,
    offOut: number,
    len: number,
    flags: number,
  ): number | Promise<number> {
    if (flags !== 0) throw new FuseError("EINVAL");
    return this.withDataRetry(() => {}, () => this.run([toIno(nodeIn), toIno(nodeOut)], true, () => this.tx((tx, now) => {
      const src = inodeGet(tx.w, toIno(nodeIn), tx.fmtVers);
      const dst = nodeOut === nodeIn ? src : inodeGet(tx.w, toIno(nodeOut), tx.fmtVers);
      if (isDir(src.v.mode) || isDir(dst.v.mode)) fsFail("EISDIR", "copy of a directory");
      if (!isReg(src.v.mode) || !isReg(dst.v.mode)) fsFail("EINVAL", "copy of a special file");
      const data = dataRead(tx, src, offIn, Math.min(len, COPY_MAX_BYTES));
      if (data.length === 0) return 0;
      // the kernel skips its own check on inodes it marked S_NOSEC (killPrivV2)
      xattrKillPriv(tx, dst, ctx.uid !== 0, now);
      const n = dataWrite(tx, dst, offOut, data, now);
      inodeSave(tx, dst, { data: true });
      return n;
    }), { admit: true }));
  }

  statfs(): StatfsReply | Promise<StatfsReply> {
    if (this.statfsFn) return this.statfsFn();
    const blocks = 2 ** 32;
    return { blocks, bfree: blocks, bavail: blocks, files: 2 ** 32, ffree: 2 ** 32, bsize: BLOCK_BYTES, namelen: 255, frsize: BLOCK_BYTES };
  }

  access(ctx: RequestContext, nodeid: number, mask: number): void | Promise<void> {
    return this.run([toIno(nodeid)], false, () => {
      const i = fuseCall(() => this.load(nodeid));
      if (ctx.uid === 0 || mask === 0) return;
      const m = i.v.mode;
      const bits = ctx.uid === i.v.uid ? (m >> 6) & 7 : ctx.gid === i.v.gid ? (m >> 3) & 7 : m & 7;
      if ((bits & mask) !== mask) throw new FuseError("EACCES");
    });
  }

  // ------------------------------------------------------------------------------------------
  // Extended attributes.

  setxattr(ctx: RequestContext, nodeid: number, name: string, value: Uint8Array, flags: number): void | Promise<void> {
    // A copy: `value` views the request buffer, which is reused (Buffer#slice would be a view too).
    const copy = new Uint8Array(value);
    return this.run([toIno(nodeid)], true, () =>
      this.tx((tx, now) => {
        const i = inodeGet(tx.w, toIno(nodeid), tx.fmtVers);
        xattrSet(tx, i, name, copy, flags, { uid: ctx.uid }, now);
        inodeSave(tx, i);
      }),
    { admit: true });
  }

  getxattr(_ctx: RequestContext, nodeid: number, name: string): Uint8Array | Promise<Uint8Array> {
    return this.run([toIno(nodeid)], false, () => fuseCall(() => {
      const v = xattrGet(this.store.reader, toIno(nodeid), name);
      if (v === null) throw ENODATA_XATTR;
      return v;
    }));
  }

  listxattr(_ctx: RequestContext, nodeid: number): string[] | Promise<string[]> {
    return this.run([toIno(nodeid)], false, () => fuseCall(() => xattrList(this.store.reader, this.load(nodeid).ino)));
  }

  removexattr(ctx: RequestContext, nodeid: number, name: string): void | Promise<void> {
    return this.run([toIno(nodeid)], true, () => {
      this.tx((tx, now) => {
        const i = inodeGet(tx.w, toIno(nodeid), tx.fmtVers);
        xattrSet(tx, i, name, null, 0, { uid: ctx.uid }, now);
        inodeSave(tx, i);
      });
    }, { admit: true, freeing: true });
  }

  // ------------------------------------------------------------------------------------------
  // Directories.

  opendir(_ctx: RequestContext, nodeid: number, flags: number): OpenReply | Promise<OpenReply> {
    return this.run([toIno(nodeid)], false, () => {
      const i = fuseCall(() => this.load(nodeid));
      if (!isDir(i.v.mode)) throw new FuseError("ENOTDIR");
      return { fh: this.newHandle(i.ino, flags), openFlags: 0 };
    });
  }

  /**
   * Offsets: "." is followed by offset 1, ".." by 2 (DIRENT_FIRST_POS); an entry at readdir pos
   * p by p + 1, so resuming at an offset resumes at the next position, as scoutfs's f_pos does.
   */
  readdir(_ctx: RequestContext, nodeid: number, _fh: number, offset: number, sink: DirentSink): void | Promise<void> {
    return this.run([toIno(nodeid)], false, () => this.readdirLocked(nodeid, offset, sink));
  }

  private readdirLocked(nodeid: number, offset: number, sink: DirentSink): void {
    fuseCall(() => {
      const r = this.store.reader;
      const dir = this.load(nodeid);
      if (!isDir(dir.v.mode)) fsFail("ENOTDIR", "readdir of a non-directory");
      // everything that may need another lock (NeedLocks restarts the operation) is read before
      // the first entry goes into the reply
      const parent = offset <= 1 ? inodeGet(r, dirParentIno(r, dir.ino) || dir.ino, this.store.fmtVers) : null;
      if (offset === 0 && !this.addDirent(sink, ".", dir, 1, false, dir.ino)) return;
      if (parent !== null && !this.addDirent(sink, "..", parent, 2, false, dir.ino)) return;
      dirReaddir(r, dir.ino, BigInt(Math.max(offset, 2)), (d) => {
        const next = Number(d.pos + 1n);
        if (!sink.plus) return sink.add(latin1(d.name), toNodeid(d.ino), DT_TO_MODE[d.type] ?? 0, next);
        let i: FsInode | null;
        try {
          i = inodeLoad(r, d.ino, this.store.fmtVers);
        } catch (e) {
          // an unreadable inode (EIO: a corrupt block), or one whose group lock this mount would
          // have to wait for, still has its name listed, without attributes (node id 0): a
          // lookup of it answers the error or takes the lock
          if (!(e instanceof NeedLocks) && (!(e instanceof ScoutfsError) || e.code !== "EIO")) throw e;
          return sink.add(latin1(d.name), toNodeid(d.ino), DT_TO_MODE[d.type] ?? 0, next);
        }
        if (i === null) return true;
        return this.addDirent(sink, latin1(d.name), i, next, true, dir.ino);
      });
    });
  }

  private addDirent(sink: DirentSink, name: string, i: FsInode, next: number, counts: boolean, parent: bigint): boolean {
    if (!sink.plus) return sink.add(name, toNodeid(i.ino), i.v.mode, next);
    const e: Entry = { nodeid: toNodeid(i.ino), generation: 0, attr: this.attrOf(i), entryTimeout: this.entryTimeout, attrTimeout: this.attrTimeout };
    const ok = sink.add(name, toNodeid(i.ino), i.v.mode, next, e);
    if (ok && counts) {
      this.ref(i.ino).nlookup++;
      this.noteName(i.ino, parent, name);
    }
    return ok;
  }

  releasedir(_ctx: RequestContext, _nodeid: number, fh: number): void | Promise<void> {
    return this.dropHandle(fh);
  }

  async fsyncdir(): Promise<void> {
    await this.settleDeletions();
    await this.store.sync();
  }
}

