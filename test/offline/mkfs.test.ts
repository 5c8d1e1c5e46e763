// mkfs: the volume it writes verifies block by block, prints like a real mkfs volume made with
// the same identity, and every refusal leaves the devices untouched.
import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { Device, readVerified } from "../../src/block/device.ts";
import { mkfs, parseQuorumSlot, validateSlots, MIN_META_BLOCKS, type MkfsOptions } from "../../src/offline/mkfs.ts";
import { VolumePrinter } from "../../src/offline/print.ts";
import { SuperBlock } from "../../src/format/super.ts";
import { readItems } from "../../src/btree/read.ts";
import { decodeInode } from "../../src/format/items.ts";
import { AllocListBlock } from "../../src/format/alloc.ts";
import * as C from "../../src/format/constants.ts";
import { fixtureText, sha256, sparseFile, tempDir } from "../helpers/images.ts";

const dir = tempDir();
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const META_SIZE = 67698688; // the smallest volume: 1033 64 KiB blocks
const DATA_SIZE = 266240; // 65 4 KiB blocks
const quiet = { out: () => {}, warn: () => {} };

function devices(name: string, meta = META_SIZE, data = DATA_SIZE) {
  return {
    metaPath: sparseFile(path.join(dir, `${name}.meta.img`), meta),
    dataPath: sparseFile(path.join(dir, `${name}.data.img`), data),
  };
}

function printOf(p: string): string {
  const dev = Device.open(p);
  let s = "";
  try {
    const pr = new VolumePrinter(dev, (x) => (s += x));
    pr.printVolume();
    expect(pr.problems).toEqual([]);
  } finally {
    dev.close();
  }
  return s;
}

describe("mkfs writes a valid volume", () => {
  test("every block verifies and the root inode is there", () => {
    const d = devices("valid");
    const r = mkfs({ ...d, slots: [parseQuorumSlot("0,127.0.0.1,42000")], allowSmallSize: true }, quiet);
    const meta = Device.open(d.metaPath);
    const data = Device.open(d.dataPath);
    try {
      const sb = readVerified(meta, C.BLOCK_SM_SHIFT, { magic: C.BLOCK_MAGIC_SUPER, fsid: r.fsid, blkno: 16n, seq: 1n });
      expect(sb.ok).toBe(true);
      const sup = SuperBlock.decode(sb.buf);
      expect(sup.flags & C.FLAG_IS_META_BDEV).toBe(1n);
      expect(sup.fmt_vers).toBe(2n);
      expect(sup.total_meta_blocks).toBe(MIN_META_BLOCKS);
      expect(sup.total_data_blocks).toBe(65n);
      expect(sup.next_ino).toBe(1024n);

      const dsb = readVerified(data, C.BLOCK_SM_SHIFT, { magic: C.BLOCK_MAGIC_SUPER, fsid: r.fsid, blkno: 16n, seq: 1n });
      expect(dsb.ok).toBe(true);
      expect(SuperBlock.decode(dsb.buf).flags).toBe(0n);

      for (let i = 0; i < C.QUORUM_BLOCKS; i++) {
        const q = readVerified(meta, C.BLOCK_SM_SHIFT, { magic: C.BLOCK_MAGIC_QUORUM, fsid: r.fsid, blkno: BigInt(17 + i), seq: 1n });
        expect(q.ok).toBe(true);
      }

      const roots = [sup.fs_root, sup.data_alloc.root, sup.meta_alloc[0]!.root, sup.meta_alloc[1]!.root];
      for (const root of roots) {
        const b = readVerified(meta, C.BLOCK_LG_SHIFT, { magic: C.BLOCK_MAGIC_BTREE, fsid: r.fsid, blkno: root.ref.blkno, seq: root.ref.seq });
        expect(b.ok).toBe(true);
        expect(readItems(b.buf).length).toBe(2);
      }
      const fsItems = readItems(meta.read(sup.fs_root.ref.blkno, C.BLOCK_LG_SHIFT));
      const ino = decodeInode(fsItems[1]!.val);
      expect(ino.mode).toBe(0o40755);
      expect(ino.nlink).toBe(2);
      expect(fsItems[1]!.val.length).toBe(168);

      const list = readVerified(meta, C.BLOCK_LG_SHIFT, { magic: C.BLOCK_MAGIC_ALLOC_LIST, fsid: r.fsid, blkno: 3n, seq: 1n });
      expect(list.ok).toBe(true);
      expect(AllocListBlock.decode(list.buf).nr).toBe(1024);

      // every metadata block is accounted for exactly once: used, listed, or in a free extent
      const freeMeta = sup.meta_alloc[0]!.total_len + sup.meta_alloc[1]!.total_len;
      expect(1n + 1n + 1024n + 3n + freeMeta).toBe(sup.total_meta_blocks - 2n); // blocks 0-1 hold super+quorum
      expect(sup.data_alloc.total_len).toBe(sup.total_data_blocks - 64n);
    } finally {
      meta.close();
      data.close();
    }
  });

  test("with the same identity and time, it prints like the real mkfs's volume", () => {
    const d = devices("det");
    mkfs(
      {
        ...d,
        slots: ["0,127.0.0.1,42000", "1,127.0.0.2,42001", "2,127.0.0.3,42002"].map(parseQuorumSlot),
        allowSmallSize: true,
        fsid: 0x0123456789abcdefn,
        uuid: Uint8Array.from(Buffer.from("00112233445566778899aabbccddeeff", "hex")),
        now: { sec: 1700000000n, nsec: 123456000 },
      },
      quiet,
    );
    // Our btree blocks hold a balanced AVL tree where the real mkfs appends a degenerate one, and
    // the real super carries uninitialized bytes in quorum slots: mask item link lines and crcs
    // of those blocks. Everything else (identity, roots, items, values, lists, quorum blocks)
    // must be equal.
    const mask = (s: string) =>
      s
        .split("\n")
        .filter((l) => !/^  \[\d+\] off /.test(l))
        .map((l) => l.replace(/^(  hdr: )crc [0-9a-f]{8}( magic 103c428b)/, "$1crc X$2").replace(/^  crc [0-9a-f]{8} /, "  crc X ").replace(/ item_root\.node \d+$/, ""))
        .join("\n");
    expect(mask(printOf(d.metaPath))).toBe(mask(fixtureText("v2-det.print.txt")));
    // quorum blocks and the alloc list are byte-identical, crc included
    const quorumLines = (s: string) => s.split("\n").filter((l) => l.includes("magic bc310868") || l.includes("magic 8a93ac83"));
    expect(quorumLines(printOf(d.metaPath))).toEqual(quorumLines(fixtureText("v2-det.print.txt")));
  });

  test("format version 1 writes v1 inodes", () => {
    const d = devices("v1");
    mkfs({ ...d, slots: [parseQuorumSlot("0,10.0.0.1,1000")], allowSmallSize: true, fmtVers: 1 }, quiet);
    const out = printOf(d.metaPath);
    expect(out).toContain("  fmt_vers 1 ");
    expect(out).toContain("vl 160");
  });

  test("-m and -d limit the devices and -z sets the zone option", () => {
    const d = devices("limits", 128 * 2 ** 20, 8 * 2 ** 30);
    const lines: string[] = [];
    mkfs(
      { ...d, slots: [parseQuorumSlot("0,127.0.0.1,42000")], allowSmallSize: true, maxMetaSize: 100n << 20n, maxDataSize: 5n << 30n, dataAllocZoneBlocks: 1048576n },
      { out: (l) => lines.push(l), warn: () => {} },
    );
    expect(lines).toContain("Limiting use of 128.00MB meta device to 100.00MB");
    expect(lines).toContain("Limiting use of 8.00GB data device to 5.00GB");
    const out = printOf(d.metaPath);
    expect(out).toContain("  total_meta_blocks 1600 total_data_blocks 1310720\n");
    expect(out).toContain("    set_bits: 0000000000000001\n    data_alloc_zone_blocks: 1048576\n");
  });

  test("the summary matches the real mkfs's text", () => {
    const d = devices("summary");
    const out: string[] = [];
    const warn: string[] = [];
    mkfs({ ...d, slots: ["0,127.0.0.1,42000", "1,127.0.0.2,42001", "2,127.0.0.3,42002"].map(parseQuorumSlot), allowSmallSize: true }, { out: (l) => out.push(l), warn: (l) => warn.push(l) });
    const real = fixtureText("v2-3slot.mkfs.txt").split("\n");
    expect(warn).toEqual(real.slice(0, 2));
    const ours = out.join("\n").split("\n");
    const strip = (ls: string[]) => ls.filter((l) => !/^  (fsid|uuid|meta device path|data device path):/.test(l));
    expect(strip(ours)).toEqual(strip(real.slice(2, -1)));
  });
});

describe("mkfs refuses bad input and writes nothing", () => {
  const base = (name: string, extra: Partial<MkfsOptions> = {}) => ({ ...devices(name), slots: [parseQuorumSlot("0,127.0.0.1,42000")], allowSmallSize: true, ...extra });
  const unchanged = (o: { metaPath: string; dataPath: string }, fn: () => void, msg: RegExp) => {
    const before = [sha256(o.metaPath), sha256(o.dataPath)];
    expect(fn).toThrow(msg);
    expect([sha256(o.metaPath), sha256(o.dataPath)]).toEqual(before);
  };

  test("devices under 64 GiB without -A", () => {
    const o = base("small", { allowSmallSize: false });
    unchanged(o, () => mkfs(o, quiet), /64.56MB too small for min 64.00GB meta device/);
  });
  test("devices too small to hold a volume even with -A", () => {
    const o = { ...base("tiny"), ...devices("tiny", META_SIZE - 65536) };
    unchanged(o, () => mkfs(o, quiet), /cannot hold a volume: at least 1033/);
    const o2 = { ...base("tinyd"), ...devices("tinyd", META_SIZE, DATA_SIZE - 4096) };
    unchanged(o2, () => mkfs(o2, quiet), /data device .* cannot hold a volume: at least 65/);
  });
  test("an existing scoutfs volume without -f, and with the devices swapped", () => {
    const o = base("exists");
    mkfs(o, quiet);
    unchanged(o, () => mkfs(o, quiet), /meta device .* existing ScoutFS metadata superblock/);
    const swapped = { ...o, metaPath: o.dataPath, dataPath: o.metaPath };
    unchanged(o, () => mkfs(swapped, quiet), /meta device .* existing ScoutFS data superblock/);
    mkfs({ ...o, force: true }, quiet); // -f overwrites
  });
  test("another filesystem's signature", () => {
    const o = base("ext4");
    const fd = fs.openSync(o.dataPath, "r+");
    fs.writeSync(fd, new Uint8Array([0x53, 0xef]), 0, 2, 1080);
    fs.closeSync(fd);
    unchanged(o, () => mkfs(o, quiet), /data device .* existing ext2\/ext3\/ext4 signature/);
  });
  test("the same file as both devices", () => {
    const o = base("same");
    const same = { ...o, dataPath: o.metaPath };
    unchanged(o, () => mkfs(same, quiet), /are the same file/);
  });
  test("missing devices", () => {
    expect(() => mkfs({ ...base("m"), metaPath: path.join(dir, "nope") }, quiet)).toThrow(/cannot open device .*nope.*ENOENT/);
  });
  test("bad zone sizes and format versions", () => {
    const o = base("zone", { dataAllocZoneBlocks: 10n });
    unchanged(o, () => mkfs(o, quiet), /data_alloc_zone_blocks to '10' failed, must be at least 1048576/);
    const v = base("vers", { fmtVers: 3 });
    unchanged(v, () => mkfs(v, quiet), /format-version 3 is outside supported range of 1-2/);
  });
});

describe("quorum slot parsing", () => {
  test("accepts NR,ADDR,PORT", () => {
    expect(parseQuorumSlot("14,192.168.1.10,5000")).toEqual({ nr: 14, addr: 0xc0a8010a, port: 5000 });
  });
  for (const [arg, why] of [
    ["0,127.0.0.1", /not NR,ADDR,PORT/],
    ["15,127.0.0.1,5000", /invalid nr '15'.*between 0 and 14/],
    ["0,127.0.0.1,0", /invalid ipv4 port '0'/],
    ["0,127.0.0.1,65536", /invalid ipv4 port '65536'/],
    ["0,host.example,5000", /invalid ipv4 address 'host.example'/],
    ["0,0.0.0.0,5000", /invalid ipv4 address '0.0.0.0'/],
    ["0,255.255.255.255,5000", /invalid ipv4 address/],
    ["0,127.0.0.1,5000,", /not NR,ADDR,PORT/],
    ["-1,127.0.0.1,5000", /not NR,ADDR,PORT/],
  ] as const) {
    test(`refuses '${arg}'`, () => expect(() => parseQuorumSlot(arg)).toThrow(why));
  }
  test("refuses duplicate numbers and addresses", () => {
    expect(() => validateSlots([parseQuorumSlot("1,127.0.0.1,1"), parseQuorumSlot("1,127.0.0.2,1")])).toThrow(/slot 1 is specified more than once/);
    expect(() => validateSlots([parseQuorumSlot("0,127.0.0.1,1"), parseQuorumSlot("3,127.0.0.1,1")])).toThrow(/nr 0 and 3 have the same address 127.0.0.1:1/);
    expect(() => validateSlots([])).toThrow(/at least one quorum slot/);
  });
});
