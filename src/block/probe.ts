/**
 * Signature probe: does a device already hold a filesystem, volume manager or partition table?
 * mkfs refuses such devices unless forced, so a typo in a device path cannot destroy data. The
 * list covers what is commonly found on Linux servers; each entry is a magic string at a fixed
 * byte offset. scoutfs itself is recognized by its super block magic at 64 KiB.
 */
import { Device } from "./device.ts";
import { BLOCK_MAGIC_SUPER, SUPER_BLKNO, BLOCK_SM_SHIFT, FLAG_IS_META_BDEV } from "../format/constants.ts";

interface Signature {
  name: string;
  offset: number;
  magic: number[];
}

const ascii = (s: string) => Array.from(s, (c) => c.charCodeAt(0));

const SIGNATURES: Signature[] = [
  { name: "xfs", offset: 0, magic: ascii("XFSB") },
  { name: "crypto_LUKS", offset: 0, magic: [...ascii("LUKS"), 0xba, 0xbe] },
  { name: "squashfs", offset: 0, magic: ascii("hsqs") },
  { name: "ext2/ext3/ext4", offset: 1080, magic: [0x53, 0xef] },
  { name: "f2fs", offset: 1024, magic: [0x10, 0x20, 0xf5, 0xf2] },
  { name: "LVM2_member", offset: 536, magic: ascii("LVM2 001") },
  { name: "gpt partition table", offset: 512, magic: ascii("EFI PART") },
  { name: "swap", offset: 4086, magic: ascii("SWAPSPACE2") },
  { name: "swap", offset: 4086, magic: ascii("SWAP-SPACE") },
  { name: "iso9660", offset: 32769, magic: ascii("CD001") },
  { name: "btrfs", offset: 65536 + 64, magic: ascii("_BHRfS_M") },
  { name: "vfat", offset: 82, magic: ascii("FAT32") },
  { name: "vfat", offset: 54, magic: ascii("FAT1") },
  { name: "dos partition table", offset: 510, magic: [0x55, 0xaa] },
];

const PROBE_BYTES = 65536 + 128;

export type ProbeResult =
  | { kind: "none" }
  | { kind: "scoutfs"; meta: boolean }
  | { kind: "other"; name: string };

export function probeDevice(dev: Device): ProbeResult {
  const len = Number(dev.sizeBytes < BigInt(PROBE_BYTES) ? dev.sizeBytes : BigInt(PROBE_BYTES));
  const head = new Uint8Array(len);
  if (len > 0) dev.readAt(head, 0);

  const superOff = SUPER_BLKNO << BLOCK_SM_SHIFT;
  if (len >= superOff + 56) {
    const dv = new DataView(head.buffer);
    if (dv.getUint32(superOff + 4, true) === BLOCK_MAGIC_SUPER) {
      const flags = dv.getBigUint64(superOff + 48, true);
      return { kind: "scoutfs", meta: (flags & FLAG_IS_META_BDEV) !== 0n };
    }
  }
  for (const sig of SIGNATURES) {
    if (sig.offset + sig.magic.length > len) continue;
    if (sig.magic.every((b, i) => head[sig.offset + i] === b)) return { kind: "other", name: sig.name };
  }
  return { kind: "none" };
}
