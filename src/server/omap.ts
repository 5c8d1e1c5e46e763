/**
 * The open inode map on the server (scoutfs omap.c, server side): a mount about to delete an
 * unlinked inode asks which inodes of its group other mounts still cache. The server asks every
 * other mount it has connection state for (connected, or between sockets: the request waits for
 * it to come back), ORs their answers and answers the asking mount.
 *
 * - Mounts that are gone for good (their state dropped: they were declared departed and fenced)
 *   answer nothing and count as caching nothing: a fenced mount's kernel holds no inodes.
 * - Right after a server starts, mounts of the previous server may not have reconnected yet: a
 *   request waits until recovery is over (every one of them came back or was declared departed),
 *   else a mount still reconnecting would be missed and an inode it has open deleted under it.
 * - Any other failure to ask a mount fails the request: the asking mount then keeps the inode (an
 *   orphan deleted later) rather than risk deleting one in use.
 *
 * The asking mount holds the group's inode lock for writing while it asks, so no mount can start
 * caching an unlinked inode of the group meanwhile (that needs a name, and names need the lock).
 */
import {
  NET_CMD_OPEN_INO_MAP,
  NET_OPEN_INO_MAP_BITS_BYTES,
  NetOpenInoMap,
  NetOpenInoMapArgs,
} from "../format/net.ts";
import { ScoutfsError } from "../util/errors.ts";
import type { NetIncomingRequest, NetServer } from "../net/index.ts";

export interface ServerOmapOptions {
  net: NetServer;
  /** Resolves once lock recovery is over (at once when there was none). */
  recovered: () => Promise<void>;
}

export class ServerOmap {
  private nextReqId = 0n;
  readonly counters = { requests: 0, asked: 0, gone: 0 };

  constructor(private readonly o: ServerOmapOptions) {}

  async handleRequest(r: NetIncomingRequest): Promise<Uint8Array> {
    if (r.data.length !== NetOpenInoMapArgs.size) {
      throw new ScoutfsError("EINVAL", `open_ino_map request of ${r.data.length} bytes, not ${NetOpenInoMapArgs.size}`);
    }
    const { group_nr } = NetOpenInoMapArgs.decode(r.data);
    this.counters.requests++;
    await this.o.recovered();
    const args = { group_nr, req_id: ++this.nextReqId };
    const ask = NetOpenInoMapArgs.encode(args);
    const bits = new Uint8Array(NET_OPEN_INO_MAP_BITS_BYTES);
    const others = this.o.net.clientRids().filter((rid) => rid !== r.rid);
    await Promise.all(
      others.map(async (rid) => {
        this.counters.asked++;
        let resp: Uint8Array;
        try {
          resp = await this.o.net.request(rid, NET_CMD_OPEN_INO_MAP, ask);
        } catch (err) {
          // ENOLINK: its state was dropped (departed, fenced); ENXIO: it left meanwhile
          const code = err instanceof ScoutfsError ? err.code : "";
          if (code === "ENOLINK" || code === "ENXIO") {
            this.counters.gone++;
            return;
          }
          throw err;
        }
        if (resp.length !== NetOpenInoMap.size) {
          throw new ScoutfsError("EIO", `open_ino_map answer of ${resp.length} bytes from rid ${rid.toString(16)}, not ${NetOpenInoMap.size}`);
        }
        const m = NetOpenInoMap.decode(resp);
        if (m.args.group_nr !== group_nr || m.args.req_id !== args.req_id) {
          throw new ScoutfsError("EIO", `open_ino_map answer from rid ${rid.toString(16)} is for group ${m.args.group_nr} request ${m.args.req_id}, not ${group_nr} ${args.req_id}`);
        }
        for (let i = 0; i < bits.length; i++) bits[i]! |= m.bits[i]!;
      }),
    );
    return NetOpenInoMap.encode({ args: { group_nr, req_id: 0n }, bits });
  }
}
