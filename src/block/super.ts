/**
 * Reading and writing the super block at small block 16. The metadata device's super is the root
 * of every persistent structure, so it is the last thing a commit writes (after the blocks it
 * references have been written and flushed) and the first thing a node verifies.
 */
import * as C from "../format/constants.ts";
import { SuperBlock } from "../format/super.ts";
import { blockCrc } from "../format/crc.ts";
import { ScoutfsError } from "../util/errors.ts";
import { sealBlock, hex32 } from "./device.ts";
import type { MetaDev } from "./cache.ts";

export type Super = SuperBlock;

/**
 * Read and verify a super block: crc, magic, the expected fsid (when given), a supported format
 * version, and which device it is (meta or data).
 */
export function readSuper(dev: MetaDev, want: { meta: boolean; fsid?: bigint }): Super {
  const buf = dev.read(C.SUPER_BLKNO, C.BLOCK_SM_SHIFT);
  const sup = SuperBlock.decode(buf);
  const where = `super block of '${dev.path}'`;
  if (sup.hdr.magic !== C.BLOCK_MAGIC_SUPER) throw new ScoutfsError("EINVAL", `${where} has magic ${hex32(sup.hdr.magic)}: not a scoutfs device`);
  const crc = blockCrc(buf);
  if (crc !== sup.hdr.crc) throw new ScoutfsError("EIO", `${where} crc ${hex32(sup.hdr.crc)} does not match computed ${hex32(crc)}`, "the device is damaged");
  if (sup.hdr.blkno !== BigInt(C.SUPER_BLKNO)) throw new ScoutfsError("EIO", `${where} claims block ${sup.hdr.blkno}`);
  if (want.fsid !== undefined && sup.hdr.fsid !== want.fsid) {
    throw new ScoutfsError("EINVAL", `${where} has fsid ${sup.hdr.fsid.toString(16)}, expected ${want.fsid.toString(16)}`, "are the meta and data devices from the same volume?");
  }
  if (sup.fmt_vers < BigInt(C.FORMAT_VERSION_MIN) || sup.fmt_vers > BigInt(C.FORMAT_VERSION_MAX)) {
    throw new ScoutfsError("EINVAL", `${where} has format version ${sup.fmt_vers}, supported ${C.FORMAT_VERSION_MIN}..${C.FORMAT_VERSION_MAX}`);
  }
  const isMeta = (sup.flags & C.FLAG_IS_META_BDEV) !== 0n;
  if (isMeta !== want.meta) {
    throw new ScoutfsError("EINVAL", `'${dev.path}' is a scoutfs ${isMeta ? "metadata" : "data"} device, expected a ${want.meta ? "metadata" : "data"} device`);
  }
  return sup;
}

/** Encode, seal (the header seq advances by one per write) and write the super; no flush. */
export function writeSuper(dev: MetaDev, sup: Super): void {
  sup.hdr.seq += 1n;
  const buf = SuperBlock.encode(sup, new Uint8Array(C.BLOCK_SM_SIZE));
  sealBlock(buf, C.BLOCK_MAGIC_SUPER, sup.hdr.fsid, sup.hdr.seq, BigInt(C.SUPER_BLKNO));
  dev.writeAt(buf, C.SUPER_BLKNO * C.BLOCK_SM_SIZE);
}
