/**
 * A node: one process per mount (ARCHITECTURE.md §1). `runNode` brings it up and keeps it running
 * until it is unmounted:
 *
 *   1. parse and range-check the scoutfs(5) options; check both devices are one volume;
 *   2. register this mount (rid -> pid) for local fencing, start the quorum agent on its slot;
 *   3. when elected: fence previous leaders that did not stop cleanly, then open the volume for
 *      writing (the server's role: it is the only writer of the super block);
 *   4. mount FUSE and serve the POSIX layer (src/fs/) over the item store;
 *   5. commit every COMMIT_INTERVAL_MS when anything is dirty (and on fsync, through the store);
 *   6. on unmount (umount(8), SIGTERM/SIGINT): final commit, resign from quorum (stop and end
 *      events), unregister, exit 0.
 *
 * There is no special single-node mode: the elected leader starts the server role in this
 * process, and the mount itself is a client of that server over TCP on the slot's address (its
 * items go into its own log tree, committed through the server, merged into fs_root by it).
 * A node that is not elected while another node serves the volume joins as a client of that
 * server (a follower); if the leader goes away, its quorum agent may be elected and start the
 * server here, and the mount's connection follows the quorum blocks to it. Every mount, leader
 * or follower, serves FUSE under cluster locks (mount-locks.ts): the kernel caches only what
 * this node holds a lock for, and drops it when the lock is given up. Losing leadership while
 * mounted (a partition, a newer term) stops all writes at once: the node unmounts and exits
 * non-zero, as a fenced mount would.
 */
import * as fs from "node:fs";
import { Device } from "../block/device.ts";
import { readSuper } from "../block/super.ts";
import { ClientStore } from "../item/client-store.ts";
import { Server } from "../server/server.ts";
import { ScoutfsFuse } from "../fs/fuse.ts";
import { mount as fuseMount, type FuseMount } from "../fuse/mount.ts";
import { startQuorum, validateQuorumSlot, type QuorumService } from "../quorum/service.ts";
import { findLeader, presentSlots } from "../quorum/blocks.ts";
import type { ServerState } from "../quorum/agent.ts";
import { Fencer, MountRegistry, DEFAULT_REGISTRY_DIR } from "../server/fence.ts";
import * as C from "../format/constants.ts";
import { ScoutfsError } from "../util/errors.ts";
import { parseMountOptions, type MountOptions } from "./options.ts";
import { fenceMount, fencePreviousLeaders } from "./fencing.ts";
import { randomRid } from "../client/client.ts";
import { hex16 } from "../util/hex.ts";
import { MountLocks } from "./mount-locks.ts";

/** Commit dirty items at least this often (scoutfs commits every few seconds). */
export const COMMIT_INTERVAL_MS = 2000;
/** How long a busy quorum port is retried (a node that was just unmounted is releasing it). */
const QUORUM_BIND_RETRY_MS = 5000;
/**
 * Kernel cache lifetime of names and attributes. Changes made through this kernel are
 * invalidated by it; changes made by other mounts reach it through the cluster locks (FUSE
 * inval_inode/inval_entry when this node gives a lock up), so a long lifetime stays coherent.
 * 60 s rather than 1 s saves the LOOKUP of names met earlier (docs/fs.md).
 */
export const CACHE_TIMEOUT_S = 60;
/** How long the unmount waits for the final commit and farewell before giving up on the server. */
export const UNMOUNT_FAREWELL_MS = 15_000;
/** Kernel read-ahead (KiB): sequential reads reach us as 1 MiB READs instead of 128 KiB ones. */
export const READ_AHEAD_KB = 1024;
/** At unmount, how long an orphan scan in progress may take to finish before we go on. */
const ORPHAN_SCAN_STOP_WAIT_MS = 5000;

export interface NodeArgs {
  dataPath: string;
  mountpoint: string;
  /** The -o string. */
  options: string;
  log?: (msg: string) => void;
  /** Called once the volume is mounted and served. */
  onReady?: (info: { rid: bigint; term: bigint; fsid: bigint }) => void;
  /** Registry of local mounts for fencing (tests use a private directory). */
  registryDir?: string;
}


/**
 * Run a node until it is unmounted. Resolves with the exit status (0 after a clean unmount);
 * rejects with a ScoutfsError when it cannot come up (nothing is mounted then).
 */
export async function runNode(a: NodeArgs): Promise<number> {
  const log = a.log ?? ((m: string) => process.stderr.write(`scoutfs: ${m}\n`));
  const opts: MountOptions = parseMountOptions(a.options);
  if (!fs.existsSync(a.mountpoint) || !fs.statSync(a.mountpoint).isDirectory()) {
    throw new ScoutfsError("ENOTDIR", `mount point '${a.mountpoint}' is not a directory`);
  }
  // identify the volume before touching anything: both supers, same fsid
  const qdev = Device.open(opts.metadevPath, { write: true });
  let sup: ReturnType<typeof readSuper>;
  try {
    sup = readSuper(qdev, { meta: true });
    const ddev = Device.open(a.dataPath);
    try {
      if (ddev.sameAs(qdev)) throw new ScoutfsError("EINVAL", "the metadata and data devices are the same file");
      readSuper(ddev, { meta: false, fsid: sup.hdr.fsid });
    } finally {
      ddev.close();
    }
  } catch (err) {
    qdev.close();
    throw err;
  }
  const fsid = sup.hdr.fsid;
  if (opts.quorumSlotNr < 0) {
    qdev.close();
    throw new ScoutfsError(
      "EINVAL",
      "this mount has no quorum_slot_nr: it would have to join a running server as a client, which this version cannot do yet",
      `give quorum_slot_nr=N for one of the volume's slots (${presentSlots(sup.qconf.slots).map((s) => s.nr).join(",")})`,
    );
  }
  const slots = validateQuorumSlot(sup.qconf.slots, opts.quorumSlotNr);

  const rid = randomRid();
  const registry = new MountRegistry(a.registryDir ?? DEFAULT_REGISTRY_DIR, fsid);
  registry.register(rid);
  const fencer = Fencer.fromEnv(registry, log);

  let server: Server | null = null;
  let fuse: FuseMount | null = null;
  let serverState: ServerState = "down";
  let quorum: QuorumService | null = null;
  let electedTerm = 0n;
  let lostLeadership: (() => void) | null = null;
  const lost = new Promise<void>((resolve) => (lostLeadership = resolve));
  let elected!: (term: bigint) => void;
  let failedStart!: (err: unknown) => void;
  const electedP = new Promise<bigint>((resolve, reject) => {
    elected = resolve;
    failedStart = reject;
  });

  const startServer = async (term: bigint): Promise<void> => {
    // fence leaders of earlier terms that never recorded a clean stop
    const fencedRids = await fencePreviousLeaders({ qdev, fsid, slots, term, rid, fencer, registry, log });
    server = Server.start({
      metaPath: opts.metadevPath,
      term,
      slot: opts.quorumSlotNr,
      fencedRids,
      log: (m) => log(`server: ${m}`),
      fence: (frid, ipv4) => fenceMount(fencer, registry, { rid: frid, ipv4, reason: "mount stopped responding" }, log),
    });
  };

  // A node that was just unmounted may still hold its quorum port for a moment while it
  // resigns: retry a busy port briefly before calling the slot taken.
  const bindUntil = performance.now() + QUORUM_BIND_RETRY_MS;
  for (;;) {
    try {
      quorum = await startQuorumOnce();
      break;
    } catch (err) {
      if (err instanceof ScoutfsError && err.code === "EBUSY" && performance.now() < bindUntil) {
        await Bun.sleep(100);
        continue;
      }
      qdev.close();
      registry.unregister(rid);
      throw err;
    }
  }

  async function startQuorumOnce(): Promise<QuorumService> {
    return await startQuorum({
      dev: qdev,
      fsid,
      slots: sup.qconf.slots,
      slot: opts.quorumSlotNr,
      rid,
      heartbeatTimeoutMs: opts.quorumHeartbeatTimeoutMs,
      server: {
        start: (term) => {
          serverState = "starting";
          startServer(term).then(
            () => {
              serverState = "up";
              electedTerm = term;
              quorum?.agent.poke();
              // a follower taking over after the leader went away
              if (fuse !== null) log(`now the leader in term ${term}: serving the volume`);
              elected(term);
            },
            (err) => {
              log(`server for term ${term} could not start: ${(err as Error).message}`);
              serverState = "down";
              quorum?.agent.poke();
              failedStart(err);
            },
          );
        },
        stop: () => {
          if (serverState === "down") return;
          serverState = "stopping";
          if (fuse === null) {
            try {
              server?.close();
            } catch (err) {
              log(`stopping the server failed: ${(err as Error).message}`);
            }
            server = null;
            serverState = "down";
            quorum?.agent.poke();
          } else lostLeadership?.();
        },
        state: () => serverState,
      },
      log: (ev) => {
        if (ev.what === "elected" || ev.what === "resigned" || ev.what === "demoted" || ev.what === "error") log(`quorum: ${JSON.stringify(ev, (_k, v) => (typeof v === "bigint" ? String(v) : v))}`);
      },
    });
  }

  const shutdownQuorum = async (): Promise<void> => {
    await quorum!.shutdown(async () => {
      for (let i = 0; i < 500 && serverState !== "down"; i++) await Bun.sleep(10);
    });
    qdev.close();
    registry.unregister(rid);
  };

  // wait to be elected, or for another node to be: heartbeat timeout plus a few election rounds
  const waitMs = opts.quorumHeartbeatTimeoutMs + 4 * (C.QUORUM_ELECT_MIN_MS + C.QUORUM_ELECT_VAR_MS) + 1000;
  let waiting = true;
  const otherLeader = async (): Promise<null> => {
    const until = performance.now() + waitMs;
    while (waiting && performance.now() < until) {
      const leader = findLeader(qdev, fsid, slots);
      if (leader && leader.rid !== rid) return null;
      await Bun.sleep(100);
    }
    if (!waiting) return null;
    const need = slots.length < 3 ? 1 : Math.floor(slots.length / 2) + 1;
    throw new ScoutfsError("EIO", `no quorum after ${waitMs} ms: ${need} of ${slots.length} quorum slots must be mounted to elect a leader`, "mount more of the volume's quorum slots");
  };
  try {
    await Promise.race([electedP, otherLeader()]);
  } catch (err) {
    await shutdownQuorum();
    throw err;
  } finally {
    waiting = false;
  }

  const stopServer = (): void => {
    try {
      (server as Server | null)?.close();
    } catch (err) {
      log(`stopping the server failed: ${(err as Error).message}`);
    }
    server = null;
    serverState = "down";
  };
  const locks = new MountLocks(log);
  let s: ClientStore;
  try {
    s = await ClientStore.open({
      metaPath: opts.metadevPath,
      dataPath: a.dataPath,
      commitIntervalMs: COMMIT_INTERVAL_MS,
      client: { rid, quorum: true, ...locks.clientHooks },
      // this node's own server, while it runs, flushes our commits' blocks with its own
      colocatedServerTerm: (dev) => (server as Server | null)?.recordsOn(dev) ?? null,
    });
  } catch (err) {
    stopServer();
    await shutdownQuorum();
    throw err;
  }
  const leaderHere = (server as Server | null) !== null;
  const fsImpl = new ScoutfsFuse(s, {
    entryTimeout: CACHE_TIMEOUT_S,
    attrTimeout: CACHE_TIMEOUT_S,
    locks: locks.fsLocks,
    // every mount deletes orphans at mount and every orphan_scan_delay_ms (scanOrphans below):
    // each deletion first asks the other mounts whether they still hold the inode (open_ino_map)
    deleteOrphansOnInit: true,
    // no OPEN/RELEASE round trips (ScoutfsFuseOptions.noOpen)
    noOpen: true,
    statfs: async () => {
      const srv = server as Server | null;
      if (srv !== null) return statfsOf(srv.statfs(), s.uncommittedDataBlocks);
      return statfsOf(await s.client.statfs(), s.uncommittedDataBlocks);
    },
  });
  locks.attach(s, fsImpl);
  try {
    fuse = await fuseMount(fsImpl, a.mountpoint, {
      fsname: a.dataPath,
      subtype: "scoutfs",
      allowOther: true,
      defaultPermissions: true,
      readOnly: opts.generic.includes("ro"),
      dev: opts.generic.includes("dev"),
      suid: opts.generic.includes("suid"),
      readAheadKb: READ_AHEAD_KB,
      log,
    });
  } catch (err) {
    locks.shutdown("mount failed");
    await s.close().catch(() => {});
    stopServer();
    await shutdownQuorum();
    throw err;
  }
  fsImpl.notifier = fuse.session;
  log(`mounted ${a.dataPath} (metadata ${opts.metadevPath}) at ${a.mountpoint}: fsid ${hex16(fsid)} rid ${hex16(rid)} ${leaderHere ? `leader in term ${electedTerm}` : "follower"}`);
  a.onReady?.({ rid, term: electedTerm, fsid });

  // The orphan scan: every orphan_scan_delay_ms, ±20% so that mounts do not scan in step (scoutfs(5)).
  let orphanTimer: ReturnType<typeof setTimeout> | null = null;
  let orphanScan: Promise<void> | null = null;
  let orphanStopped = false;
  const scheduleOrphanScan = () => {
    if (orphanStopped) return;
    const delay = opts.orphanScanDelayMs * (0.8 + 0.4 * Math.random());
    orphanTimer = setTimeout(() => {
      orphanTimer = null;
      orphanScan = fsImpl
        .scanOrphans()
        .then((n) => {
          if (n > 0) log(`orphan scan deleted ${n} inode${n === 1 ? "" : "s"}`);
        })
        .catch((err: unknown) => log(`orphan scan failed (next one in ~${opts.orphanScanDelayMs} ms): ${(err as Error).message}`))
        .finally(() => {
          orphanScan = null;
          scheduleOrphanScan();
        });
    }, delay);
  };
  scheduleOrphanScan();
  const stopOrphanScans = async () => {
    orphanStopped = true;
    if (orphanTimer !== null) clearTimeout(orphanTimer);
    // bounded: a scan waiting for a server that is gone must not hold up the unmount
    if (orphanScan !== null) await Promise.race([orphanScan, Bun.sleep(ORPHAN_SCAN_STOP_WAIT_MS)]);
  };

  let signalled: NodeJS.Signals | null = null;
  const onSignal = (sig: NodeJS.Signals) => {
    signalled = sig;
    fuse!.unmount().catch((err) => log(`unmount on ${sig} failed: ${(err as Error).message}`));
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);

  let status = 0;
  await Promise.race([
    fuse.closed,
    lost.then(async () => {
      status = 1;
      log("lost quorum leadership: stopping all writes and unmounting");
      await fuse!.unmount().catch(() => {});
    }),
  ]);
  process.off("SIGTERM", onSignal);
  process.off("SIGINT", onSignal);
  await stopOrphanScans();
  try {
    if (status === 0) {
      // bounded: with no server left to answer (the last quorum members unmounted first) the
      // node still has to exit; what was not committed is lost, and we say so
      const r = await Promise.race([s.close().then(() => "done" as const), Bun.sleep(UNMOUNT_FAREWELL_MS).then(() => "timeout" as const)]);
      if (r === "timeout") {
        log(`final commit and farewell got no answer from a server within ${UNMOUNT_FAREWELL_MS} ms: changes since the last commit are lost (unmount quorum members after the other mounts)`);
        s.abandon();
        status = 1;
      }
    } else s.abandon();
  } catch (err) {
    log(`final commit failed: ${(err as Error).message}`);
    status = 1;
  }
  locks.shutdown("unmounted");
  stopServer();
  await shutdownQuorum();
  log(`unmounted ${a.mountpoint}${signalled ? ` on ${signalled}` : ""}`);
  return status;
}

/** statfs(2) numbers from the server's allocators: 4 KiB data blocks; inodes from free metadata. */
export function statfsOf(st: ReturnType<Server["statfs"]>, uncommittedDataBlocks = 0n) {
  const blocks = Number(st.total_data_blocks - BigInt(C.DATA_DEV_START_BLKNO));
  // our own allocations since our last commit are not in the server's numbers yet
  const free = st.free_data_blocks - uncommittedDataBlocks;
  const bfree = Number(free > 0n ? free : 0n);
  // scoutfs reports free inodes as what free metadata blocks could hold
  const inodesPerBlock = 64;
  const ffree = Number(st.free_meta_blocks) * inodesPerBlock;
  return { blocks, bfree, bavail: bfree, files: ffree + Number(st.inode_count), ffree, bsize: C.BLOCK_SM_SIZE, namelen: 255, frsize: C.BLOCK_SM_SIZE };
}
