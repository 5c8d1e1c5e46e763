/**
 * Quorum blocks: one 4 KiB block per configured slot (small blknos 17..31 of the metadata
 * device), written only by the mount running in that slot. Each holds an event log — begin,
 * term, elect, fence, stop, end — recording the rid, term, write_nr and time of the latest event
 * of each kind. The events are how a mount persists the greatest term it has used (terms must
 * never go backward), how clients find the elected leader's address, and how a new leader finds
 * previous leaders that did not stop cleanly and must be fenced.
 *
 * Writes keep the header mkfs wrote (magic, fsid, seq, blkno) and recompute the crc; reads verify
 * all of them. A block that fails verification is EIO: quorum must never act on garbage.
 */
import { Device, verifyBlock } from "../block/device.ts";
import { blockCrc } from "../format/crc.ts";
import { QuorumBlock, type QuorumBlock as QBlock, type InetAddr } from "../format/quorum.ts";
import * as C from "../format/constants.ts";
import { ScoutfsError } from "../util/errors.ts";
import { view } from "../format/struct.ts";

export interface QuorumSlot {
  nr: number;
  addr: InetAddr;
}

/** Slots configured in the super block's quorum config. */
export function presentSlots(slots: readonly InetAddr[]): QuorumSlot[] {
  const out: QuorumSlot[] = [];
  slots.forEach((addr, nr) => {
    if (addr.family === C.AF_IPV4) out.push({ nr, addr });
  });
  return out;
}

/** Votes a candidate needs: a majority of configured slots, but 1 with one or two slots. */
export function votesNeeded(nrSlots: number): number {
  return nrSlots < 3 ? 1 : Math.floor(nrSlots / 2) + 1;
}

export function quorumBlkno(slot: number): bigint {
  if (!Number.isInteger(slot) || slot < 0 || slot >= C.QUORUM_BLOCKS) throw new RangeError(`quorum slot ${slot}`);
  return BigInt(C.QUORUM_BLKNO + slot);
}

export interface ReadOptions {
  /** The begin event must carry this rid (our own block, after we started). */
  rid?: bigint;
}

export function readQuorumBlock(dev: Device, fsid: bigint, slot: number, opts: ReadOptions = {}): { buf: Uint8Array; blk: QBlock } {
  const blkno = quorumBlkno(slot);
  const v = verifyBlock(dev.read(blkno, C.BLOCK_SM_SHIFT), { magic: C.BLOCK_MAGIC_QUORUM, fsid, blkno });
  if (!v.ok) throw new ScoutfsError("EIO", `invalid quorum block for slot ${slot}: ${v.message}`);
  const blk = QuorumBlock.decode(v.buf);
  if (opts.rid !== undefined && blk.events[C.QUORUM_EVENT_BEGIN]!.rid !== opts.rid) {
    throw new ScoutfsError(
      "EIO",
      `quorum block for slot ${slot} begin rid ${hex(blk.events[C.QUORUM_EVENT_BEGIN]!.rid)} is not ours (${hex(opts.rid)})`,
      "is another mount configured with the same quorum_slot_nr?",
    );
  }
  return { buf: v.buf, blk };
}

export interface Now {
  sec: bigint;
  nsec: number;
}

export function wallNow(): Now {
  const ns = BigInt(Date.now()) * 1_000_000n;
  return { sec: ns / 1_000_000_000n, nsec: Number(ns % 1_000_000_000n) };
}

/**
 * Record an event in our slot's block: bump write_nr, stamp the event, write, sync. The begin
 * event is written without the rid check (it is what establishes our rid in the block).
 */
export function updateQuorumEvent(
  dev: Device, fsid: bigint, slot: number, rid: bigint, event: number, term: bigint, now: Now = wallNow(),
): QBlock {
  const { buf, blk } = readQuorumBlock(dev, fsid, slot, event === C.QUORUM_EVENT_BEGIN ? {} : { rid });
  blk.write_nr += 1n;
  blk.events[event] = { write_nr: blk.write_nr, rid, term, ts: now };
  QuorumBlock.encode(blk, buf, 0);
  view(buf).setUint32(0, blockCrc(buf), true);
  dev.write(quorumBlkno(slot), C.BLOCK_SM_SHIFT, buf);
  dev.sync();
  return blk;
}

/** The greatest term recorded by any event in any configured slot's block (unreadable blocks skipped). */
export function readGreatestTerm(dev: Device, fsid: bigint, slots: readonly QuorumSlot[]): bigint {
  let term = 0n;
  for (const s of slots) {
    let blk: QBlock;
    try {
      blk = readQuorumBlock(dev, fsid, s.nr).blk;
    } catch {
      continue;
    }
    for (const ev of blk.events) if (ev.rid !== 0n && ev.term > term) term = ev.term;
  }
  return term;
}

export interface Leader {
  slot: number;
  term: bigint;
  rid: bigint;
  addr: InetAddr;
}

/**
 * The elected leader clients should connect to: the slot whose elect event has the greatest term
 * and has not been followed by a stop in that term. null when no server is running.
 */
export function findLeader(dev: Device, fsid: bigint, slots: readonly QuorumSlot[]): Leader | null {
  let best: Leader | null = null;
  for (const s of slots) {
    const { blk } = readQuorumBlock(dev, fsid, s.nr);
    const elect = blk.events[C.QUORUM_EVENT_ELECT]!;
    const stop = blk.events[C.QUORUM_EVENT_STOP]!;
    if (elect.term > (best?.term ?? 0n) && elect.term > stop.term) {
      best = { slot: s.nr, term: elect.term, rid: elect.rid, addr: s.addr };
    }
  }
  return best;
}

export interface FenceTarget {
  slot: number;
  rid: bigint;
  term: bigint;
  addr: InetAddr;
  reason: "elected-leader-running" | "previous-leader-not-stopped";
}

/**
 * Previous leaders a newly elected leader in `term` must fence before its server may use the
 * metadata device: leaders whose elect event was never followed by a stop, and leaders that
 * recorded a fence (server up) in an older term without stopping. Leaders already covered by a
 * later completed fencing, newer than us, or us (rid) are skipped.
 */
export function leadersToFence(dev: Device, fsid: bigint, slots: readonly QuorumSlot[], term: bigint, rid: bigint): FenceTarget[] {
  const old: FenceTarget[] = [];
  let fenced = 0n;
  for (const s of slots) {
    const { blk } = readQuorumBlock(dev, fsid, s.nr);
    const elect = blk.events[C.QUORUM_EVENT_ELECT]!;
    const fence = blk.events[C.QUORUM_EVENT_FENCE]!;
    const stop = blk.events[C.QUORUM_EVENT_STOP]!;
    if (elect.term > stop.term) old.push({ slot: s.nr, rid: elect.rid, term: elect.term, addr: s.addr, reason: "elected-leader-running" });
    if (fence.term > stop.term && fence.term < elect.term) {
      old.push({ slot: s.nr, rid: fence.rid, term: fence.term, addr: s.addr, reason: "previous-leader-not-stopped" });
    }
    if (fence.term > fenced) fenced = fence.term;
  }
  return old.filter((o) => o.term !== 0n && o.term >= fenced && o.term <= term && o.rid !== rid);
}

function hex(v: bigint): string {
  return v.toString(16).padStart(16, "0");
}
