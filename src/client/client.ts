/**
 * The client role (scoutfs client.c): every mount, the server's own node included, talks to the
 * server through this. It finds the server in the quorum blocks (the slot whose elect event has
 * the greatest unstopped term), connects with NetClient — which greets, resends across
 * reconnects and notices a new server after failover — and offers one typed async call per
 * request, plus handlers for the requests the server sends to mounts:
 *   lock          an invalidation: give up (or downgrade) a lock, answer with the mode now held;
 *   lock_recover  a new server asks for the locks this mount holds, from a key;
 *   sync_log_trees  commit soon (the server is finalizing log trees for a merge);
 *   open_ino_map  which inodes of a group this mount still caches (another mount wants to delete
 *                 one of them: see onOpenInoMap).
 *
 * Requests wait across reconnects and failovers (NetClient resends them; the server processes
 * each once), so callers see only the final answer or an error from the server.
 */
import { randomBytes } from "node:crypto";
import { Device } from "../block/device.ts";
import { readSuper } from "../block/super.ts";
import { findLeader, presentSlots } from "../quorum/blocks.ts";
import { ipv4ToString } from "../format/quorum.ts";
import { NetClient, type NetAddress, type NetCommonOptions } from "../net/index.ts";
import {
  NET_CMD_ALLOC_INODES,
  NET_CMD_COMMIT_LOG_TREES,
  NET_CMD_FAREWELL,
  NET_CMD_GET_LAST_SEQ,
  NET_CMD_GET_LOG_TREES,
  NET_CMD_GET_ROOTS,
  NET_CMD_LOCK,
  NET_CMD_LOCK_RECOVER,
  NET_CMD_OPEN_INO_MAP,
  NET_CMD_STATFS,
  NET_CMD_SYNC_LOG_TREES,
  NET_LOCK_MAX_RECOVER_NR,
  NetInodeAlloc,
  NetLock,
  NET_OPEN_INO_MAP_BITS_BYTES,
  NetOpenInoMap,
  NetOpenInoMapArgs,
  NetRoots,
  NetStatfs,
  encodeNetLockRecover,
} from "../format/net.ts";
import { LogTrees } from "../format/log_trees.ts";
import type { Key } from "../format/key.ts";
import { ScoutfsError } from "../util/errors.ts";
import { decodeKey, decodeLe64, decodeLogTrees, encodeLe64, expectEmpty } from "../server/wire.ts";
import { decodeNetLock } from "../server/locks.ts";

export interface ClientOptions {
  /** The metadata device: identity (fsid, format) and the quorum blocks to find the server. */
  metaPath: string;
  rid?: bigint;
  /** This mount has a quorum slot. */
  quorum?: boolean;
  /** Override how the server is found (tests); default: the quorum blocks. */
  resolveServer?: () => NetAddress | undefined;
  net?: NetCommonOptions & { connect_timeout_ms?: number; connect_delay_ms?: number };
  /** An invalidation: return the mode now held (after writing back what the old mode covered). */
  onLockInvalidate?: (nl: NetLock) => NetLock | Promise<NetLock>;
  /** The locks held at or after `from`, in key order (at most NET_LOCK_MAX_RECOVER_NR are sent). */
  onLockRecover?: (from: Key) => NetLock[];
  /** The server wants this mount's open transaction committed. */
  onSyncLogTrees?: () => void;
  /**
   * The inodes of omap group `groupNr` this mount still caches (its kernel holds them), as a
   * NET_OPEN_INO_MAP_BITS_BYTES bitmap (format/net.ts openInoMapSet). Without it: none.
   */
  onOpenInoMap?: (groupNr: bigint) => Uint8Array;
  onGreeted?: (info: { server_term: bigint; new_server: boolean }) => void;
  /** See NetClientOptions.beforeAttach. */
  beforeAttach?: (info: { server_term: bigint }) => void;
}

export function randomRid(): bigint {
  const b = randomBytes(8);
  const v = b.readBigUInt64LE(0);
  return v === 0n ? 1n : v;
}

export class Client {
  readonly net: NetClient;
  readonly rid: bigint;
  readonly fsid: bigint;
  readonly fmtVers: bigint;
  readonly counters = { requests: 0, invalidations: 0, recovers: 0, syncs: 0, omapAnswers: 0 };

  private constructor(private readonly o: ClientOptions, fsid: bigint, fmtVers: bigint) {
    this.rid = o.rid ?? randomRid();
    this.fsid = fsid;
    this.fmtVers = fmtVers;
    this.net = new NetClient({
      ...o.net,
      fsid,
      fmt_vers: fmtVers,
      rid: this.rid,
      quorum: o.quorum ?? false,
      resolveServer: o.resolveServer ?? (() => this.client_find_server()),
      onGreeted: o.onGreeted,
      beforeAttach: o.beforeAttach,
    });
    this.net.handle(NET_CMD_LOCK, async (req) => {
      this.counters.invalidations++;
      const nl = decodeNetLock(req.data, "lock invalidation");
      if (!o.onLockInvalidate) return NetLock.encode({ ...nl, old_mode: nl.old_mode, new_mode: nl.new_mode });
      return NetLock.encode(await o.onLockInvalidate(nl));
    });
    this.net.handle(NET_CMD_LOCK_RECOVER, (req) => {
      this.counters.recovers++;
      const from = decodeKey(req.data, "lock_recover");
      const locks = o.onLockRecover ? o.onLockRecover(from) : [];
      return encodeNetLockRecover(locks.slice(0, NET_LOCK_MAX_RECOVER_NR));
    });
    this.net.handle(NET_CMD_SYNC_LOG_TREES, (req) => {
      expectEmpty(req.data, "sync_log_trees");
      this.counters.syncs++;
      o.onSyncLogTrees?.();
    });
    this.net.handle(NET_CMD_OPEN_INO_MAP, (req) => {
      if (req.data.length !== NetOpenInoMapArgs.size) {
        throw new ScoutfsError("EINVAL", `open_ino_map request of ${req.data.length} bytes, not ${NetOpenInoMapArgs.size}`);
      }
      const args = NetOpenInoMapArgs.decode(req.data);
      this.counters.omapAnswers++;
      const bits = o.onOpenInoMap?.(args.group_nr) ?? new Uint8Array(NET_OPEN_INO_MAP_BITS_BYTES);
      if (bits.length !== NET_OPEN_INO_MAP_BITS_BYTES) throw new ScoutfsError("EIO", `open inode bitmap of ${bits.length} bytes`);
      return NetOpenInoMap.encode({ args, bits });
    });
  }

  /** The term of the server our requests go to now: null while no socket is greeted. */
  get serverTerm(): bigint | null {
    return this.net.greeted ? this.net.server_term : null;
  }

  /** Read the volume's identity, start connecting, and wait for the first greeting. */
  static async connect(o: ClientOptions, timeout_ms = 30_000): Promise<Client> {
    const dev = Device.open(o.metaPath);
    let sup;
    try {
      sup = readSuper(dev, { meta: true });
    } finally {
      dev.close();
    }
    const c = new Client(o, sup.hdr.fsid, sup.fmt_vers);
    c.net.start();
    try {
      await c.net.waitGreeted(timeout_ms);
    } catch (err) {
      c.close();
      throw err;
    }
    return c;
  }

  /** The elected leader's address from the quorum blocks; undefined while there is none. */
  private client_find_server(): NetAddress | undefined {
    const dev = Device.open(this.o.metaPath);
    try {
      const sup = readSuper(dev, { meta: true, fsid: this.fsid });
      const leader = findLeader(dev, this.fsid, presentSlots(sup.qconf.slots));
      return leader ? { hostname: ipv4ToString(leader.addr.addr), port: leader.addr.port } : undefined;
    } catch {
      return undefined;
    } finally {
      dev.close();
    }
  }

  private req(cmd: number, data?: Uint8Array): Promise<Uint8Array> {
    this.counters.requests++;
    return this.net.request(cmd, data);
  }

  async allocInodes(count: bigint): Promise<{ ino: bigint; nr: bigint }> {
    const r = await this.req(NET_CMD_ALLOC_INODES, encodeLe64(count));
    if (r.length !== NetInodeAlloc.size) throw new ScoutfsError("EIO", `alloc_inodes response of ${r.length} bytes`);
    const { ino, nr } = NetInodeAlloc.decode(r);
    return { ino, nr };
  }

  async getLogTrees(): Promise<LogTrees> {
    const lt = decodeLogTrees(await this.req(NET_CMD_GET_LOG_TREES), "get_log_trees response");
    if (lt.rid !== this.rid) throw new ScoutfsError("EIO", `get_log_trees answered with rid ${lt.rid.toString(16)}`);
    return lt;
  }

  async commitLogTrees(lt: LogTrees): Promise<void> {
    await this.req(NET_CMD_COMMIT_LOG_TREES, LogTrees.encode(lt));
  }

  async getRoots(): Promise<NetRoots> {
    const r = await this.req(NET_CMD_GET_ROOTS);
    if (r.length !== NetRoots.size) throw new ScoutfsError("EIO", `get_roots response of ${r.length} bytes`);
    return NetRoots.decode(r);
  }

  async getLastSeq(): Promise<bigint> {
    return decodeLe64(await this.req(NET_CMD_GET_LAST_SEQ), "get_last_seq response");
  }

  async statfs(): Promise<NetStatfs> {
    const r = await this.req(NET_CMD_STATFS);
    if (r.length !== NetStatfs.size) throw new ScoutfsError("EIO", `statfs response of ${r.length} bytes`);
    return NetStatfs.decode(r);
  }

  /**
   * Which inodes of omap group `groupNr` other mounts still cache: the bitmap the server gathered
   * from every other mount (NET_OPEN_INO_MAP_BITS_BYTES bytes). Ask holding the group's inode
   * lock for writing, so that no mount can start caching an unlinked inode of it meanwhile.
   */
  async openInoMap(groupNr: bigint): Promise<Uint8Array> {
    const r = await this.req(NET_CMD_OPEN_INO_MAP, NetOpenInoMapArgs.encode({ group_nr: groupNr, req_id: 0n }));
    if (r.length !== NetOpenInoMap.size) throw new ScoutfsError("EIO", `open_ino_map response of ${r.length} bytes, not ${NetOpenInoMap.size}`);
    const m = NetOpenInoMap.decode(r);
    if (m.args.group_nr !== groupNr) throw new ScoutfsError("EIO", `open_ino_map response for group ${m.args.group_nr}, asked for ${groupNr}`);
    return m.bits;
  }

  /** Ask for a lock mode; resolves with the grant (its write_seq for write modes). */
  async lock(nl: NetLock): Promise<NetLock> {
    return decodeNetLock(await this.req(NET_CMD_LOCK, NetLock.encode(nl)), "lock grant");
  }

  /** Leave the cluster: the server finalizes our tree and forgets us. Then close(). */
  async farewell(): Promise<void> {
    this.net.setFarewell(true);
    await this.req(NET_CMD_FAREWELL);
  }

  close(): void {
    this.net.close();
  }
}
