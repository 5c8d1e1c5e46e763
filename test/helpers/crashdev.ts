/**
 * Devices for crash and fault tests. Both sit on top of a real image file; nothing about our
 * storage is simulated except what a power cut or a failing disk would do to it.
 *
 * RecordingDev passes every write through to the real file and records it, with a marker at every
 * flush. `imageAt(epoch, subset)` then rebuilds what the disk could hold after a crash: the base
 * image, all writes of epochs before `epoch` (flushed, so certainly durable), and any chosen subset
 * of the writes of `epoch` itself (unflushed writes may land in any order, or not at all), each
 * possibly torn (only a prefix of its bytes written). The rebuilt image is an OverlayDev: the base
 * file plus the chosen writes, read exactly like a device.
 *
 * FaultyDev fails chosen operations: the Nth write with EIO, or a short write (half written, then
 * EIO), or the Nth flush.
 */
import * as fs from "node:fs";
import { ScoutfsError } from "../../src/util/errors.ts";
import type { MetaDev } from "../../src/block/cache.ts";
import { blockOffset } from "../../src/block/device.ts";

export interface Write {
  offset: number;
  bytes: Uint8Array;
}

export class RecordingDev implements MetaDev {
  /** writes[e] are the writes issued after flush e-1 and before flush e. */
  readonly epochs: Write[][] = [[]];

  constructor(readonly inner: MetaDev & { close?: () => void }) {}

  get path(): string {
    return this.inner.path;
  }

  read(blkno: number | bigint, shift: number): Uint8Array {
    return this.inner.read(blkno, shift);
  }

  writeAt(buf: Uint8Array, offset: number): void {
    this.inner.writeAt(buf, offset);
    this.epochs[this.epochs.length - 1]!.push({ offset, bytes: buf.slice() });
  }

  sync(): void {
    this.inner.sync();
    this.epochs.push([]);
  }

  /** Number of flushes so far. */
  get flushes(): number {
    return this.epochs.length - 1;
  }
}

/** A read-only device: a base image file overlaid with writes (later writes win). */
export class OverlayDev implements MetaDev {
  private readonly fd: number;
  constructor(
    readonly path: string,
    private readonly writes: Write[],
  ) {
    this.fd = fs.openSync(path, "r");
  }

  read(blkno: number | bigint, shift: number): Uint8Array {
    const size = 1 << shift;
    const off = blockOffset(blkno, shift);
    const buf = new Uint8Array(size);
    fs.readSync(this.fd, buf, 0, size, off);
    for (const w of this.writes) {
      const a = Math.max(off, w.offset);
      const b = Math.min(off + size, w.offset + w.bytes.length);
      if (a < b) buf.set(w.bytes.subarray(a - w.offset, b - w.offset), a - off);
    }
    return buf;
  }

  writeAt(): void {
    throw new ScoutfsError("EROFS", "overlay devices are read-only");
  }

  sync(): void {}

  close(): void {
    fs.closeSync(this.fd);
  }
}

/**
 * The writes a crash could leave: everything up to and including epoch `epoch - 1`, plus the
 * writes of `epoch` whose indexes are in `subset`, the one at index `torn` (if any) cut to
 * `tornBytes`.
 */
export function crashWrites(rec: RecordingDev, epoch: number, subset: readonly number[], torn?: { index: number; bytes: number }): Write[] {
  const out: Write[] = [];
  for (let e = 0; e < epoch && e < rec.epochs.length; e++) out.push(...rec.epochs[e]!);
  const last = rec.epochs[epoch] ?? [];
  for (const i of subset) {
    const w = last[i]!;
    if (torn && torn.index === i) out.push({ offset: w.offset, bytes: w.bytes.subarray(0, torn.bytes) });
    else out.push(w);
  }
  return out;
}

export interface FaultPlan {
  /** Fail the write with this 0-based index (counting every writeAt) with EIO. */
  failWrite?: number;
  /** Make that write short: write the first half, then fail with EIO. */
  shortWrite?: boolean;
  /** Fail the flush with this 0-based index. */
  failSync?: number;
}

export class FaultyDev implements MetaDev {
  writes = 0;
  syncs = 0;
  constructor(
    readonly inner: MetaDev,
    public plan: FaultPlan,
  ) {}

  get path(): string {
    return this.inner.path;
  }

  read(blkno: number | bigint, shift: number): Uint8Array {
    return this.inner.read(blkno, shift);
  }

  writeAt(buf: Uint8Array, offset: number): void {
    const n = this.writes++;
    if (n === this.plan.failWrite) {
      if (this.plan.shortWrite) this.inner.writeAt(buf.subarray(0, buf.length >> 1), offset);
      throw new ScoutfsError("EIO", `injected ${this.plan.shortWrite ? "short write" : "write error"} at offset ${offset}`);
    }
    this.inner.writeAt(buf, offset);
  }

  sync(): void {
    const n = this.syncs++;
    if (n === this.plan.failSync) throw new ScoutfsError("EIO", "injected flush error");
    this.inner.sync();
  }
}
