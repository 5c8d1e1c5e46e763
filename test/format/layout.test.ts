// Pins every on-disk struct's size and key offsets to the values of scoutfs format version 2
// (checked against offsetof() of the real format.h once, recorded here as plain numbers).
import { describe, expect, test } from "bun:test";
import { SuperBlock, VolumeOptions } from "../../src/format/super.ts";
import { LogTrees, SrchCompact, SrchBlock, SrchFile, BloomBlock, MountedClientVal, LogMergeRequest, LogMergeComplete, LogMergeStatus, LogMergeFreeing, FOREST_BLOOM_BITS, SRCH_PARENT_REFS } from "../../src/format/log_trees.ts";
import { QuorumBlock, QuorumConfig, QuorumMessage, InetAddr, InetAddr6 } from "../../src/format/quorum.ts";
import { Inode, INODE_FMT_V1_BYTES, Dirent, XattrHeader, DataExtentVal, QuotaRuleVal, XattrTotlVal } from "../../src/format/items.ts";
import { BtreeBlock, BtreeItem, BtreeRoot, AvlNode, BTREE_LEAF_ITEM_HASH_NR } from "../../src/format/btree.ts";
import { AllocListBlock, AllocListHead, AllocRoot, ALLOC_LIST_MAX_BLOCKS } from "../../src/format/alloc.ts";
import { BlockHeader, BlockRef, Timespec } from "../../src/format/block.ts";
import { KeyStruct } from "../../src/format/key.ts";
import * as C from "../../src/format/constants.ts";

describe("struct sizes match format version 2", () => {
  const sizes: [string, number, number][] = [
    ["super_block", SuperBlock.size, 1488],
    ["volume_options", VolumeOptions.size, 520],
    ["log_trees", LogTrees.size, 472],
    ["srch_compact", SrchCompact.size, 584],
    ["srch_block", SrchBlock.size, 112],
    ["srch_file", SrchFile.size, 88],
    ["bloom_block", BloomBlock.size, 40],
    ["quorum_block", QuorumBlock.size, 280],
    ["quorum_config", QuorumConfig.size, 488],
    ["quorum_message", QuorumMessage.size, 32],
    ["inet_addr", InetAddr.size, 32],
    ["inet_addr6", InetAddr6.size, 32],
    ["log_merge_request", LogMergeRequest.size, 208],
    ["log_merge_complete", LogMergeComplete.size, 208],
    ["log_merge_status", LogMergeStatus.size, 56],
    ["log_merge_freeing", LogMergeFreeing.size, 64],
    ["inode", Inode.size, 168],
    ["btree_block", BtreeBlock.size, 48],
    ["btree_item", BtreeItem.size, 56],
    ["btree_root", BtreeRoot.size, 24],
    ["avl_node", AvlNode.size, 8],
    ["alloc_list_block", AllocListBlock.size, 56],
    ["alloc_list_head", AllocListHead.size, 32],
    ["alloc_root", AllocRoot.size, 40],
    ["mounted_client_btree_val", MountedClientVal.size, 40],
    ["quota_rule_val", QuotaRuleVal.size, 48],
    ["xattr_totl_val", XattrTotlVal.size, 16],
    ["dirent", Dirent.size, 32],
    ["xattr", XattrHeader.size, 8],
    ["data_extent_val", DataExtentVal.size, 16],
    ["block_header", BlockHeader.size, 32],
    ["block_ref", BlockRef.size, 16],
    ["timespec", Timespec.size, 16],
    ["key", KeyStruct.size, 32],
  ];
  for (const [name, got, want] of sizes) test(name, () => expect(got).toBe(want));

  test("derived limits", () => {
    expect(BTREE_LEAF_ITEM_HASH_NR).toBe(1512);
    expect(ALLOC_LIST_MAX_BLOCKS).toBe(8185);
    expect(FOREST_BLOOM_BITS).toBe(523968);
    expect(SRCH_PARENT_REFS).toBe(4094);
    expect(INODE_FMT_V1_BYTES).toBe(160);
    expect(C.META_DEV_START_BLKNO).toBe(2);
    expect(C.DATA_DEV_START_BLKNO).toBe(64);
    expect(C.QUORUM_BLKNO).toBe(17);
    expect(C.QUORUM_BLOCKS).toBe(15);
  });

  test("super block offsets", () => {
    expect(SuperBlock.off).toMatchObject({
      id: 32, fmt_vers: 40, flags: 48, uuid: 56, seq: 72, next_ino: 80, inode_count: 88,
      total_meta_blocks: 96, total_data_blocks: 104, qconf: 112, meta_alloc: 600, data_alloc: 680,
      server_meta_avail: 720, server_meta_freed: 784, fs_root: 848, logs_root: 872, log_merge: 896,
      mounted_clients: 920, srch_root: 944, volopt: 968,
    });
  });

  test("log_trees offsets", () => {
    expect(LogTrees.off).toMatchObject({ srch_file: 184, data_alloc_zones: 280, inode_count_delta: 408, flags: 464 });
    expect(SrchCompact.off).toMatchObject({ out: 80, in: 168 });
  });
});

describe("byte vectors", () => {
  test("block header encodes little-endian at named offsets", () => {
    const b = BlockHeader.encode({ crc: 0x11223344, magic: C.BLOCK_MAGIC_BTREE, fsid: 0x0102030405060708n, seq: 9n, blkno: 0xa0n });
    expect(Buffer.from(b).toString("hex")).toBe(
      "44332211" + "6df997e5" + "0807060504030201" + "0900000000000000" + "a000000000000000",
    );
    expect(BlockHeader.decode(b)).toEqual({ crc: 0x11223344, magic: C.BLOCK_MAGIC_BTREE, fsid: 0x0102030405060708n, seq: 9n, blkno: 0xa0n });
  });

  test("key stores first, second, third, fourth, zone, type then zero padding", () => {
    const b = KeyStruct.encode({ first: 1n, second: 2n, third: 3n, fourth: 4, zone: 16, type: 28 });
    expect(Buffer.from(b).toString("hex")).toBe(
      "0100000000000000" + "0200000000000000" + "0300000000000000" + "04" + "10" + "1c" + "0000000000",
    );
  });

  test("btree item: avl node, key, seq, val_off, val_len, flags", () => {
    const b = BtreeItem.encode({
      node: { parent: 0x30, left: 0x68, right: 0, height: 2 },
      key: { first: 1n, second: 0n, third: 0n, fourth: 0, zone: 16, type: 4 },
      seq: 7n, val_off: 0xf000, val_len: 168, flags: 1,
    });
    expect(b.length).toBe(56);
    expect(Buffer.from(b.subarray(0, 8)).toString("hex")).toBe("3000" + "6800" + "0000" + "02" + "00");
    expect(Buffer.from(b.subarray(40, 56)).toString("hex")).toBe("0700000000000000" + "00f0" + "a800" + "01" + "000000");
  });

  test("inet addr stores the ipv4 address as a host-order u32", () => {
    const b = InetAddr.encode({ family: C.AF_IPV4, port: 42000, addr: 0x7f000001 });
    expect(Buffer.from(b.subarray(0, 8)).toString("hex")).toBe("0100" + "10a4" + "0100007f");
  });

  test("decodeChecked refuses a short buffer with EINVAL", () => {
    expect(() => SuperBlock.decodeChecked(new Uint8Array(100), 0, "meta super")).toThrow(/needs 1488 bytes/);
  });

  test("encode zeroes padding and round-trips every field", () => {
    const s = SuperBlock.zero();
    s.fmt_vers = 2n;
    s.qconf.slots[3] = { family: 1, port: 5, addr: 0x0a000001 };
    s.volopt.data_alloc_zone_blocks = 1234n;
    const buf = new Uint8Array(4096).fill(0xee);
    SuperBlock.encode(s, buf, 0);
    expect(SuperBlock.decode(buf)).toEqual(s);
    expect(buf[SuperBlock.off.qconf + 8 + 3 * 32 + 8]).toBe(0); // v6 padding of the slot
  });
});
