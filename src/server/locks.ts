/**
 * The lock server on the wire (scoutfs server.c server_lock and lock_server.c's senders): the
 * state machine of lock_server.ts driven by net messages.
 *
 * - A client's `lock` request is answered only when the lock server grants it: the handler
 *   returns a promise that the grant resolves, so the grant is the request's response (its
 *   net id identifies it to the state machine).
 * - An invalidation is a `lock` request from the server to the client holding a grant; the
 *   client's response carries the mode it now holds.
 * - Recovery after a server start: the mounts recorded in mounted_clients may hold locks granted
 *   by the previous server. Each one is asked with `lock_recover` requests (from a key, batches of
 *   NET_LOCK_MAX_RECOVER_NR) until it answers with an empty batch; no lock is granted before every
 *   such mount has answered or been declared gone. Write seqs recovered push the server's seq
 *   counter above them.
 */
import { LockServer, type NetLock as LsNetLock } from "./lock_server.ts";
import { NetLock, decodeNetLockRecover, NET_CMD_LOCK, NET_CMD_LOCK_RECOVER } from "../format/net.ts";
import { keyInc, zeroKey, type Key } from "../format/key.ts";
import { ScoutfsError } from "../util/errors.ts";
import type { NetServer, NetIncomingRequest } from "../net/index.ts";
import { encodeKey } from "./wire.ts";

export function netLockToLs(n: NetLock): LsNetLock {
  const k = n.key;
  return { key: { zone: k.zone, first: k.first, type: k.type, second: k.second, third: k.third, fourth: k.fourth }, writeSeq: n.write_seq, oldMode: n.old_mode, newMode: n.new_mode };
}

export function lsToNetLock(l: LsNetLock): NetLock {
  return { key: { ...l.key }, write_seq: l.writeSeq, old_mode: l.oldMode, new_mode: l.newMode } as NetLock;
}

export function decodeNetLock(buf: Uint8Array, what: string): NetLock {
  if (buf.length !== NetLock.size) throw new ScoutfsError("EINVAL", `${what}: lock payload of ${buf.length} bytes, expected ${NetLock.size}`);
  return NetLock.decode(buf);
}

export interface ServerLocksOptions {
  net: NetServer;
  nextSeq: () => bigint;
  setSeqIfGreater: (seq: bigint) => void;
  log: (msg: string) => void;
}

export class ServerLocks {
  readonly ls: LockServer;
  private readonly pending = new Map<string, { resolve: (b: Uint8Array) => void; reject: (e: unknown) => void }>();
  readonly counters = { requests: 0, grants: 0, invalidations: 0, recoverBatches: 0 };

  constructor(private readonly o: ServerLocksOptions) {
    this.ls = new LockServer({
      grant: (rid, netId, nl) => {
        const p = this.pending.get(`${rid}:${netId}`);
        if (!p) return;
        this.pending.delete(`${rid}:${netId}`);
        this.counters.grants++;
        p.resolve(NetLock.encode(lsToNetLock(nl)));
      },
      invalidate: (rid, nl) => {
        this.counters.invalidations++;
        this.o.net
          .request(rid, NET_CMD_LOCK, NetLock.encode(lsToNetLock(nl)))
          .then((resp) => this.ls.response(rid, netLockToLs(decodeNetLock(resp, "lock invalidation response"))))
          .catch((err) => this.o.log(`lock invalidation of rid ${rid.toString(16)} failed: ${(err as Error).message}`));
      },
      nextSeq: () => this.o.nextSeq(),
    });
  }

  /** The `lock` request handler: resolves with the grant. */
  handleRequest(req: NetIncomingRequest): Promise<Uint8Array> {
    const nl = decodeNetLock(req.data, "lock request");
    this.counters.requests++;
    return new Promise((resolve, reject) => {
      const id = `${req.rid}:${req.id}`;
      this.pending.set(id, { resolve, reject });
      try {
        this.ls.request(req.rid, req.id, netLockToLs(nl));
      } catch (err) {
        this.pending.delete(id);
        reject(err);
      }
    });
  }

  beginRecovery(rids: bigint[]): void {
    this.ls.beginRecovery(rids);
  }

  /** Ask a recovering mount for all its locks, batch by batch. */
  async recoverClient(rid: bigint): Promise<void> {
    let from: Key = zeroKey();
    for (;;) {
      const resp = await this.o.net.request(rid, NET_CMD_LOCK_RECOVER, encodeKey(from));
      const locks = decodeNetLockRecover(resp);
      this.counters.recoverBatches++;
      for (const l of locks) this.o.setSeqIfGreater(l.write_seq);
      this.ls.recover(rid, locks.map(netLockToLs));
      if (locks.length === 0) return;
      from = keyInc(netLockToLs(locks[locks.length - 1]!).key);
    }
  }

  /** The mount is gone: forget its locks and its waiting requests. */
  removeClient(rid: bigint): void {
    for (const [id, p] of this.pending) {
      if (id.startsWith(`${rid}:`)) {
        this.pending.delete(id);
        p.reject(new ScoutfsError("ENOLINK", `client ${rid.toString(16)} left`));
      }
    }
    this.ls.removeClient(rid);
  }
}
