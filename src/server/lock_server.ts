/**
 * The lock server: the server role's arbiter of cluster locks. Clients ask for a mode on a lock
 * (identified by the key that starts its range) and the server grants it once every other
 * client's incompatible grant has been invalidated. A lock's state on the server is three lists:
 *   granted      modes clients hold,
 *   requested    client requests waiting, processed strictly in arrival order,
 *   invalidated  grants we asked a client to give up (or downgrade) and await its answer.
 * While any invalidation is outstanding no request on that lock is processed, so a grant is
 * never sent while an incompatible mode may still be in use somewhere.
 *
 * Compatibility (the only three ways two client entries can coexist):
 *   - the same shareable mode on both (read/read, write_only/write_only);
 *   - a client's own read held while it asks for write (write includes read: upgrade in place);
 *   - null on either side between different clients (null is no lock at all), but a null request
 *     conflicts with the asking client's own grant, which is how a client gives a lock up.
 * Invalidation asks a writer to drop to read when the request is a read (its cache stays valid
 * for reading once written back), and to null otherwise.
 *
 * Every grant of write or write_only carries a fresh write_seq from the server (item seqs).
 *
 * Recovery: a new server does not know what previous server granted. Until every client that was
 * mounted has sent its held locks (lock_recover), no request is processed; then all waiting
 * locks are kicked. A client that leaves (farewell) or is fenced loses all its entries.
 *
 * This module holds only state and decisions; sending is done through `LockServerIO` so it can be
 * model-tested without a network.
 */
import { keyCompare, keyFormat, type Key } from "../format/key.ts";
import * as C from "../format/constants.ts";
import { ScoutfsError } from "../util/errors.ts";

export interface NetLock {
  key: Key;
  writeSeq: bigint;
  oldMode: number;
  newMode: number;
}

export interface LockServerIO {
  /** Grant response to a client's request `netId`. */
  grant(rid: bigint, netId: bigint, nl: NetLock): void;
  /** Invalidation request to a client holding a grant. */
  invalidate(rid: bigint, nl: NetLock): void;
  /** Next item seq for a write grant. */
  nextSeq(): bigint;
}

interface Entry {
  rid: bigint;
  netId: bigint;
  mode: number;
}

interface ServerLock {
  key: Key;
  granted: Entry[];
  requested: Entry[];
  invalidated: Entry[];
}

export const LOCK_MODE_NAMES = ["null", "read", "write", "write_only"] as const;

function compatible(granted: Entry, req: Entry): boolean {
  if (granted.mode === req.mode && (granted.mode === C.LOCK_READ || granted.mode === C.LOCK_WRITE_ONLY)) return true;
  if (granted.rid === req.rid && granted.mode === C.LOCK_READ && req.mode === C.LOCK_WRITE) return true;
  if (granted.rid !== req.rid && (granted.mode === C.LOCK_NULL || req.mode === C.LOCK_NULL)) return true;
  return false;
}

function invalidationMode(granted: number, requested: number): number {
  return granted === C.LOCK_WRITE && requested === C.LOCK_READ ? C.LOCK_READ : C.LOCK_NULL;
}

function keyId(k: Key): string {
  return keyFormat(k);
}

export class LockServer {
  private locks = new Map<string, ServerLock>();
  /** Clients whose locks we are still waiting to hear about after a failover. */
  private recovering = new Set<bigint>();
  readonly stats = { requests: 0, grants: 0, invalidations: 0, responses: 0, recovered: 0 };

  constructor(private readonly io: LockServerIO) {}

  /** Enter recovery for the clients the previous server had mounted. */
  beginRecovery(rids: Iterable<bigint>): void {
    for (const r of rids) this.recovering.add(r);
  }

  get inRecovery(): boolean {
    return this.recovering.size > 0;
  }

  private lock(key: Key, create: boolean): ServerLock | undefined {
    const id = keyId(key);
    let l = this.locks.get(id);
    if (!l && create) {
      l = { key: { ...key }, granted: [], requested: [], invalidated: [] };
      this.locks.set(id, l);
    }
    return l;
  }

  private validate(nl: NetLock, what: string): void {
    if (nl.oldMode >= C.LOCK_INVALID || nl.newMode >= C.LOCK_INVALID) {
      throw new ScoutfsError("EINVAL", `${what} for lock ${keyFormat(nl.key)} has invalid mode ${nl.oldMode} -> ${nl.newMode}`);
    }
  }

  /** A client's request for `nl.newMode`. */
  request(rid: bigint, netId: bigint, nl: NetLock): void {
    this.validate(nl, "lock request");
    const l = this.lock(nl.key, true)!;
    if (l.requested.some((e) => e.rid === rid)) {
      throw new ScoutfsError("EINVAL", `client ${rid.toString(16)} sent a second request for lock ${keyFormat(nl.key)} before the first was granted`);
    }
    this.stats.requests++;
    l.requested.push({ rid, netId, mode: nl.newMode });
    this.process(l);
  }

  /** A client's answer to our invalidation: it now holds `nl.newMode`. */
  response(rid: bigint, nl: NetLock): void {
    this.validate(nl, "lock invalidation response");
    const l = this.lock(nl.key, false);
    const i = l ? l.invalidated.findIndex((e) => e.rid === rid) : -1;
    if (!l || i < 0) throw new ScoutfsError("EINVAL", `client ${rid.toString(16)} answered an invalidation of lock ${keyFormat(nl.key)} that was not sent`);
    this.stats.responses++;
    const [e] = l.invalidated.splice(i, 1);
    if (nl.newMode !== C.LOCK_NULL) {
      e!.mode = nl.newMode;
      l.granted.push(e!);
    }
    this.process(l);
  }

  /** Locks a client reports holding during recovery; an empty batch means it is done. */
  recover(rid: bigint, locks: readonly NetLock[]): void {
    if (!this.recovering.has(rid)) throw new ScoutfsError("EINVAL", `client ${rid.toString(16)} sent lock recovery while not recovering`);
    if (locks.length === 0) {
      this.recovering.delete(rid);
      if (this.recovering.size === 0) this.finishRecovery();
      return;
    }
    for (const nl of locks) {
      this.validate(nl, "lock recovery");
      if (nl.newMode === C.LOCK_NULL) continue;
      const l = this.lock(nl.key, true)!;
      const existing = l.granted.find((e) => e.rid === rid);
      if (existing) existing.mode = nl.newMode;
      else l.granted.push({ rid, netId: 0n, mode: nl.newMode });
      this.stats.recovered++;
    }
  }

  /** A client is gone for good (farewell, or fenced): forget it and let others progress. */
  removeClient(rid: bigint): void {
    this.recovering.delete(rid);
    for (const l of [...this.locks.values()]) {
      l.granted = l.granted.filter((e) => e.rid !== rid);
      l.requested = l.requested.filter((e) => e.rid !== rid);
      l.invalidated = l.invalidated.filter((e) => e.rid !== rid);
      this.process(l);
    }
    if (this.recovering.size === 0) this.finishRecovery();
  }

  private finishRecovery(): void {
    const sorted = [...this.locks.values()].sort((a, b) => keyCompare(a.key, b.key));
    for (const l of sorted) if (l.requested.length) this.process(l);
  }

  private process(l: ServerLock): void {
    if (l.invalidated.length === 0 && this.recovering.size === 0) {
      while (l.requested.length > 0) {
        const req = l.requested[0]!;
        for (const gr of [...l.granted]) {
          if (compatible(gr, req)) continue;
          const nl = { key: l.key, writeSeq: 0n, oldMode: gr.mode, newMode: invalidationMode(gr.mode, req.mode) };
          l.granted.splice(l.granted.indexOf(gr), 1);
          l.invalidated.push(gr);
          this.stats.invalidations++;
          this.io.invalidate(gr.rid, nl);
        }
        if (l.invalidated.length > 0) break;

        l.requested.shift();
        const nl: NetLock = { key: l.key, writeSeq: 0n, oldMode: C.LOCK_NULL, newMode: req.mode };
        const gi = l.granted.findIndex((e) => e.rid === req.rid);
        if (gi >= 0) {
          nl.oldMode = l.granted[gi]!.mode;
          l.granted.splice(gi, 1);
        }
        if (req.mode === C.LOCK_WRITE || req.mode === C.LOCK_WRITE_ONLY) nl.writeSeq = this.io.nextSeq();
        this.stats.grants++;
        if (req.mode !== C.LOCK_NULL) l.granted.push(req);
        this.io.grant(req.rid, req.netId, nl);
      }
    }
    if (l.granted.length === 0 && l.requested.length === 0 && l.invalidated.length === 0) this.locks.delete(keyId(l.key));
  }

  /** Debug/introspection: each lock's lists (modes by rid). */
  snapshot(): { key: string; granted: [bigint, number][]; requested: [bigint, number][]; invalidated: [bigint, number][] }[] {
    return [...this.locks.values()].map((l) => ({
      key: keyFormat(l.key),
      granted: l.granted.map((e) => [e.rid, e.mode] as [bigint, number]),
      requested: l.requested.map((e) => [e.rid, e.mode] as [bigint, number]),
      invalidated: l.invalidated.map((e) => [e.rid, e.mode] as [bigint, number]),
    }));
  }
}

export { compatible as lockModesCompatible };
