/**
 * The node runtime's side of fencing (src/server/fence.ts has the agents): what a newly elected
 * leader fences before its server may touch the metadata device, and the rule for mounts on this
 * host that have no registration. Shared by the FUSE node (node.ts) and the headless node
 * (headless.ts) so both fence exactly alike.
 */
import * as os from "node:os";
import type { Device } from "../block/device.ts";
import { leadersToFence, type QuorumSlot } from "../quorum/blocks.ts";
import type { Fencer, MountRegistry } from "../server/fence.ts";
import { ipv4ToString } from "../format/quorum.ts";
import { hex16 } from "../util/hex.ts";


/** Is this IPv4 address one of this host's (so a mount bound to it ran here)? */
export function isLocalAddress(ipv4: string): boolean {
  if (ipv4.startsWith("127.")) return true;
  for (const list of Object.values(os.networkInterfaces())) for (const a of list ?? []) if (a.family === "IPv4" && a.address === ipv4) return true;
  return false;
}

/**
 * Fence one mount. A mount on this host without a registration is not running (registrations
 * live as long as their process), so it counts as fenced; any other failure is thrown and keeps
 * the mount's resources where they are.
 */
export async function fenceMount(fencer: Fencer, registry: MountRegistry, req: { rid: bigint; ipv4: string; reason: string }, log: (m: string) => void): Promise<void> {
  try {
    await fencer.fence(req);
  } catch (err) {
    if (registry.lookup(req.rid) === null && isLocalAddress(req.ipv4)) {
      log(`mount rid ${hex16(req.rid)} at ${req.ipv4} is not running on this host: fenced`);
      return;
    }
    throw err;
  }
}

/** Fence every earlier leader that never recorded a clean stop; their rids, for the server. */
export async function fencePreviousLeaders(
  o: { qdev: Device; fsid: bigint; slots: readonly QuorumSlot[]; term: bigint; rid: bigint; fencer: Fencer; registry: MountRegistry; log: (m: string) => void },
  onFenced?: (rid: bigint, reason: string) => void,
): Promise<bigint[]> {
  const fenced: bigint[] = [];
  for (const t of leadersToFence(o.qdev, o.fsid, o.slots, o.term, o.rid)) {
    await fenceMount(o.fencer, o.registry, { rid: t.rid, ipv4: ipv4ToString(t.addr.addr), reason: t.reason }, o.log);
    fenced.push(t.rid);
    onFenced?.(t.rid, t.reason);
  }
  return fenced;
}
