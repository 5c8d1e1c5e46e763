/**
 * `scoutfs print`: dump every metadata structure of a volume in exactly the text format of the
 * real scoutfs print utility, so scripts and eyes that know one read the other, and so tests can
 * diff the two byte for byte.
 *
 * Order (as the real tool): super, quorum blocks, mounted_clients, log_merge, server alloc lists,
 * meta/data alloc btrees, srch_root, logs_root, srch files, each log tree's allocators, srch file
 * and items, then fs_root. -S skips the structures that grow with the volume (alloc btrees, srch
 * files, fs_root). Btrees print breadth first: each level from the root down.
 *
 * Like the real tool, blocks are read without rejecting them (a bad crc is shown as
 * "(!= computed)" in the header). Unlike it, a structurally corrupt block (bad AVL links, values
 * outside the block, reference cycles, reads past the device) is reported on stderr and skipped:
 * print never crashes or loops on a damaged volume, and exits non-zero if it saw damage.
 */
import { Device } from "../block/device.ts";
import { blockCrc } from "../format/crc.ts";
import { BlockHeader, BlockRef } from "../format/block.ts";
import { SuperBlock, uuidToString, type SuperBlock as Super } from "../format/super.ts";
import { QuorumBlock, ipv4ToString, type InetAddr } from "../format/quorum.ts";
import { AllocListBlock, ALLOC_LIST_BLKNOS_OFF, ALLOC_LIST_MAX_BLOCKS, type AllocListHead, type AllocRoot } from "../format/alloc.ts";
import type { BtreeRoot } from "../format/btree.ts";
import { BTREE_LEAF_ITEM_HASH_NR, BTREE_LEAF_ITEM_HASH_OFF } from "../format/btree.ts";
import { keyFormat, type Key } from "../format/key.ts";
import { Dirent, DIRENT_NAME_OFF, Inode, XattrHeader, XATTR_NAME_OFF, DataExtentVal, XattrTotlVal, QuotaRuleVal } from "../format/items.ts";
import {
  LogTrees, MountedClientVal, SrchFile, SrchCompact, SrchBlock, SRCH_PARENT_REFS, SRCH_BLOCK_SAFE_BYTES, SRCH_BLOCK_ENTRIES_OFF,
  LogMergeStatus, LogMergeRange, LogMergeRequest, LogMergeComplete, LogMergeFreeing,
  type SrchFile as SrchFileT, type SrchEntry,
} from "../format/log_trees.ts";
import { view } from "../format/struct.ts";
import { decodeSrchEntry } from "../format/srch.ts";
import * as C from "../format/constants.ts";
import { readItems } from "../btree/read.ts";
import { ScoutfsError } from "../util/errors.ts";

export interface PrintOptions {
  skipLikelyHuge?: boolean;
}

type Out = (s: string) => void;

/** printf("%llx") and friends. */
const hex = (v: bigint | number, width = 0) => v.toString(16).padStart(width, "0");
const x32 = (v: number) => hex(v >>> 0, 8);

const refF = (r: { blkno: bigint; seq: bigint }) => `blkno ${r.blkno} seq ${r.seq}`;
const btRootF = (r: BtreeRoot) => `${refF(r.ref)} height ${r.height}`;
const alHeadF = (h: AllocListHead) => `${refF(h.ref)} total_nr ${h.total_nr} first_nr ${h.first_nr} flags 0x${hex(h.flags)}`;
const alcRootF = (a: AllocRoot) => `${btRootF(a.root)} total_len ${a.total_len} flags 0x${hex(a.flags)}`;
const btrF = (r: BtreeRoot) => `blkno ${r.ref.blkno} seq ${hex(r.ref.seq, 16)} height ${r.height}`;
const sreF = (e: SrchEntry) => `${hex(e.hash, 16)}.${e.ino}.${e.id}`;
const srfF = (f: SrchFileT) =>
  `f ${sreF(f.first)} l ${sreF(f.last)} blks ${f.blocks} ents ${f.entries} hei ${f.height} blkno ${f.ref.blkno} seq ${hex(f.ref.seq, 16)}`;
const s64 = (v: bigint) => BigInt.asIntN(64, v).toString();
const ts = (sec: bigint, nsec: number) => `${sec}.${String(nsec).padStart(8, "0")}`;

/** isprint() in the C locale, anything else becomes '.'; at most NAME_LEN bytes. */
function printable(bytes: Uint8Array): string {
  let s = "";
  const n = Math.min(bytes.length, C.NAME_LEN);
  for (let i = 0; i < n; i++) {
    const c = bytes[i]!;
    s += c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : ".";
  }
  return s;
}

type ItemFunc = (key: Key, seq: bigint, flags: number, val: Uint8Array | null) => void;

export class VolumePrinter {
  private errors: string[] = [];
  private visited = new Set<bigint>();

  constructor(
    private readonly dev: Device,
    private readonly out: Out,
    private readonly opts: PrintOptions = {},
  ) {}

  /** Problems seen while printing (corrupt or unreadable blocks); empty for a healthy volume. */
  get problems(): readonly string[] {
    return this.errors;
  }

  private problem(msg: string): void {
    this.errors.push(msg);
  }

  private readLg(blkno: bigint): Uint8Array | null {
    try {
      return this.dev.read(blkno, C.BLOCK_LG_SHIFT);
    } catch (err) {
      this.problem(`read of metadata block ${blkno} failed: ${(err as Error).message}`);
      return null;
    }
  }

  private blockHeader(buf: Uint8Array): void {
    const hdr = BlockHeader.decode(buf);
    const crc = blockCrc(buf);
    const valid = crc !== hdr.crc ? `(!= ${x32(crc)}) ` : "";
    this.out(`  hdr: crc ${x32(hdr.crc)} ${valid}magic ${x32(hdr.magic)} fsid ${hex(hdr.fsid)} blkno ${hdr.blkno} seq ${hdr.seq}\n`);
  }

  printVolume(): void {
    const sb = this.dev.read(C.SUPER_BLKNO, C.BLOCK_SM_SHIFT);
    const sup = SuperBlock.decode(sb);
    if (sup.hdr.magic !== C.BLOCK_MAGIC_SUPER) {
      throw new ScoutfsError("EINVAL", `'${this.dev.path}' holds no scoutfs super block (magic ${x32(sup.hdr.magic)} at block ${C.SUPER_BLKNO})`);
    }
    this.printSuper(sb, sup);
    const crc = blockCrc(sb);
    if (crc !== sup.hdr.crc) this.problem(`super block crc ${x32(sup.hdr.crc)} does not match computed ${x32(crc)}`);
    if (!(sup.flags & C.FLAG_IS_META_BDEV)) {
      throw new ScoutfsError("EINVAL", `'${this.dev.path}' is a scoutfs data device; print reads the metadata device`);
    }
    this.printQuorumBlocks();
    this.printBtree("mounted_clients", sup.mounted_clients, this.mountedClient);
    this.printBtree("log_merge", sup.log_merge, this.logMergeItem);
    sup.server_meta_avail.forEach((h, i) => this.printAllocList(`server_meta_avail[${i}]`, h.ref));
    sup.server_meta_freed.forEach((h, i) => this.printAllocList(`server_meta_freed[${i}]`, h.ref));
    if (!this.opts.skipLikelyHuge) {
      sup.meta_alloc.forEach((a, i) => this.printBtree(`meta_alloc[${i}]`, a.root, this.allocItem));
      this.printBtree("data_alloc", sup.data_alloc.root, this.allocItem);
    }
    this.printBtree("srch_root", sup.srch_root, this.srchRootItem);
    this.printBtree("logs_root", sup.logs_root, this.logTreesItem);
    if (!this.opts.skipLikelyHuge) this.forEachLeafItem(sup.srch_root.ref, this.srchRootFiles);
    this.forEachLeafItem(sup.logs_root.ref, this.logTreesRoots);
    if (!this.opts.skipLikelyHuge) this.printBtree("fs_root", sup.fs_root, this.fsItem);
  }

  private printSuper(buf: Uint8Array, s: Super): void {
    const o = this.out;
    o(`super blkno ${C.SUPER_BLKNO}\n`);
    this.blockHeader(buf.subarray(0, C.BLOCK_SM_SIZE));
    o(`  fmt_vers ${s.fmt_vers} uuid ${uuidToString(s.uuid)}\n`);
    o(`  flags: 0x${hex(s.flags, 16)}\n`);
    o(
      `  next_ino ${s.next_ino} inode_count ${s.inode_count} seq ${s.seq}\n` +
        `  total_meta_blocks ${s.total_meta_blocks} total_data_blocks ${s.total_data_blocks}\n` +
        `  meta_alloc[0]: ${alcRootF(s.meta_alloc[0]!)}\n` +
        `  meta_alloc[1]: ${alcRootF(s.meta_alloc[1]!)}\n` +
        `  data_alloc: ${alcRootF(s.data_alloc)}\n` +
        `  server_meta_avail[0]: ${alHeadF(s.server_meta_avail[0]!)}\n` +
        `  server_meta_avail[1]: ${alHeadF(s.server_meta_avail[1]!)}\n` +
        `  server_meta_freed[0]: ${alHeadF(s.server_meta_freed[0]!)}\n` +
        `  server_meta_freed[1]: ${alHeadF(s.server_meta_freed[1]!)}\n` +
        `  fs_root: ${btrF(s.fs_root)}\n` +
        `  logs_root: ${btrF(s.logs_root)}\n` +
        `  log_merge: ${btrF(s.log_merge)}\n` +
        `  mounted_clients: ${btrF(s.mounted_clients)}\n` +
        `  srch_root: ${btrF(s.srch_root)}\n`,
    );
    o(`  volume options:\n    set_bits: ${hex(s.volopt.set_bits, 16)}\n`);
    if (s.volopt.set_bits & C.VOLOPT_DATA_ALLOC_ZONE_BLOCKS_BIT) {
      o(`    data_alloc_zone_blocks: ${s.volopt.data_alloc_zone_blocks}\n`);
    }
    o(`  quorum config version ${s.qconf.version}\n`);
    s.qconf.slots.forEach((sl, i) => {
      if (sl.family !== C.AF_IPV4) return;
      o(`    quorum slot ${String(i).padStart(2)}: ${addrPort(sl)}\n`);
    });
  }

  private printQuorumBlocks(): void {
    for (let i = 0; i < C.QUORUM_BLOCKS; i++) {
      const blkno = C.QUORUM_BLKNO + i;
      let buf: Uint8Array;
      try {
        buf = this.dev.read(blkno, C.BLOCK_SM_SHIFT);
      } catch (err) {
        this.problem(`read of quorum block ${blkno} failed: ${(err as Error).message}`);
        return;
      }
      const q = QuorumBlock.decode(buf);
      this.out(`quorum blkno ${blkno} (slot ${i})\n`);
      this.blockHeader(buf);
      this.out(`  write_nr ${q.write_nr}\n`);
      q.events.forEach((ev, e) => {
        this.out(
          `  ${C.QUORUM_EVENT_NAMES[e]!.padStart(12)}: rid ${hex(ev.rid, 16)} term ${ev.term} write_nr ${ev.write_nr} ts ${ts(ev.ts.sec, ev.ts.nsec)}\n`,
        );
      });
    }
  }

  /** Breadth first: one pass over the tree per level, from the root's level down to leaves. */
  private printBtree(which: string, root: BtreeRoot, func: ItemFunc): void {
    if (root.height > C.BTREE_MAX_HEIGHT) {
      this.problem(`${which} root has height ${root.height}, over the maximum ${C.BTREE_MAX_HEIGHT}`);
      return;
    }
    for (let level = root.height - 1; level >= 0; level--) {
      this.visited.clear();
      this.printBtreeBlock(which, root.ref, func, level);
    }
  }

  private printBtreeBlock(which: string, ref: { blkno: bigint; seq: bigint }, func: ItemFunc, level: number): void {
    if (this.visited.has(ref.blkno)) {
      this.problem(`${which} btree references block ${ref.blkno} more than once`);
      return;
    }
    this.visited.add(ref.blkno);
    const buf = this.readLg(ref.blkno);
    if (!buf) return;
    let items;
    try {
      items = readItems(buf, ref.blkno);
    } catch (err) {
      this.problem(`${which}: ${(err as Error).message}`);
      return;
    }
    const dv = view(buf);
    const hdr = BlockHeader.decode(buf);
    const btLevel = buf[40]!;
    if (btLevel === level) {
      this.out(
        `${which} btree blkno ${ref.blkno}\n` +
          `  crc ${x32(hdr.crc)} fsid ${hex(hdr.fsid)} seq ${hdr.seq} blkno ${hdr.blkno} \n` +
          `  total_item_bytes ${dv.getUint16(36, true)} mid_free_len ${dv.getUint16(38, true)}\n` +
          `  level ${btLevel} nr_items ${dv.getUint16(34, true)} item_root.node ${dv.getUint16(32, true)}\n`,
      );
      if (btLevel === 0) this.leafItemHash(dv);
    }
    for (const it of items) {
      if (level < btLevel) {
        if (it.valLen < BlockRef.size) {
          this.problem(`${which} btree block ${ref.blkno} has a parent item with a ${it.valLen} byte value`);
          continue;
        }
        const child = BlockRef.decode(it.val);
        if (child.blkno !== 0n) this.printBtreeBlock(which, child, func, level);
        continue;
      }
      this.out(
        `  [${it.index}] off ${it.off} par ${it.parent} l ${it.left} r ${it.right} h ${it.height} vo ${it.valOff} vl ${it.valLen}\n`,
      );
      if (level > 0) {
        func(it.key, 0n, 0, null);
        const child = it.valLen >= BlockRef.size ? BlockRef.decode(it.val) : { blkno: 0n, seq: 0n };
        this.out(`    ref blkno ${child.blkno} seq ${child.seq}\n`);
      } else {
        func(it.key, it.seq, it.flags, it.val);
      }
    }
  }

  private leafItemHash(dv: DataView): void {
    let s = "  item hash: ";
    let col = 13;
    let nr = 0;
    for (let i = 0; i < BTREE_LEAF_ITEM_HASH_NR; i++) {
      const off = dv.getUint16(BTREE_LEAF_ITEM_HASH_OFF + i * 2, true);
      if (off === 0) continue;
      nr++;
      const ent = `${i},${off} `;
      col += ent.length;
      if (col >= 78) {
        s += "\n   ";
        col = 3;
      }
      s += ent;
    }
    if (col !== 3) s += "\n";
    const pct = Math.floor((nr * 100) / BTREE_LEAF_ITEM_HASH_NR);
    s += `    (${nr} / ${BTREE_LEAF_ITEM_HASH_NR} populated, ${pct}% load)\n`;
    this.out(s);
  }

  private printAllocList(label: string, first: { blkno: bigint; seq: bigint }): void {
    const seen = new Set<bigint>();
    let ref = first;
    while (ref.blkno !== 0n) {
      if (seen.has(ref.blkno)) {
        this.problem(`${label} alloc list loops back to block ${ref.blkno}`);
        return;
      }
      seen.add(ref.blkno);
      const buf = this.readLg(ref.blkno);
      if (!buf) return;
      const lb = AllocListBlock.decode(buf);
      this.out(`${label} alloc_list_block blkno ${ref.blkno}\n`);
      this.blockHeader(buf);
      this.out(`  next ${refF(lb.next)} start ${lb.start} nr ${lb.nr}\n`);
      const st = lb.start;
      const nr = lb.nr;
      if (st >= ALLOC_LIST_MAX_BLOCKS || nr > ALLOC_LIST_MAX_BLOCKS || st + nr > ALLOC_LIST_MAX_BLOCKS) {
        this.out("  (invalid start and nr fields)\n");
      } else if (nr > 0) {
        const dv = view(buf);
        const at = (i: number) => dv.getBigUint64(ALLOC_LIST_BLKNOS_OFF + (st + i) * 8, true);
        let line = "  exts: ";
        let wid = line.length;
        let start = 0n;
        let len = 0n;
        for (let i = 0; i < nr; i++) {
          if (len === 0n) start = at(i);
          len++;
          if (i === nr - 1 || start + len !== at(i + 1)) {
            if (wid >= 72) {
              line += "\n        ";
              wid = 9;
            }
            const ent = `${start},${len} `;
            line += ent;
            wid += ent.length;
            len = 0n;
          }
        }
        this.out(line + "\n");
      }
      ref = lb.next;
    }
  }

  private printSrchBlock(ref: { blkno: bigint; seq: bigint }, level: number, depth = 0): void {
    if (ref.blkno === 0n) return;
    if (depth > C.BTREE_MAX_HEIGHT) {
      this.problem(`srch file deeper than ${C.BTREE_MAX_HEIGHT} at block ${ref.blkno}`);
      return;
    }
    const buf = this.readLg(ref.blkno);
    if (!buf) return;
    const dv = view(buf);
    this.out(`srch ${level ? "parent " : ""}block blkno ${ref.blkno}\n`);
    this.blockHeader(buf);
    if (level > 0) {
      const refs: { i: number; blkno: bigint; seq: bigint }[] = [];
      for (let i = 0; i < SRCH_PARENT_REFS; i++) {
        const blkno = dv.getBigUint64(32 + i * 16, true);
        if (blkno === 0n) continue;
        const seq = dv.getBigUint64(32 + i * 16 + 8, true);
        refs.push({ i, blkno, seq });
        this.out(`  [${i}]: blkno ${blkno} seq ${seq}\n`);
      }
      for (const r of refs) this.printSrchBlock(r, level - 1, depth + 1);
      return;
    }
    const sb = SrchBlock.decode(buf);
    this.out(
      `  first ${sreF(sb.first)} last ${sreF(sb.last)} tail ${sreF(sb.tail)}\n` +
        `  entry_nr ${sb.entry_nr} entry_bytes ${sb.entry_bytes}\n`,
    );
    let prev: SrchEntry = { hash: 0n, ino: 0n, id: 0n };
    let pos = 0;
    for (let i = 0; i < sb.entry_nr; i++) {
      if (pos > SRCH_BLOCK_SAFE_BYTES) {
        this.problem(`srch block ${ref.blkno} entries run past the safe end of the block`);
        break;
      }
      const { entry, bytes } = decodeSrchEntry(buf, SRCH_BLOCK_ENTRIES_OFF + pos, prev);
      pos += bytes;
      prev = entry;
      this.out(`  [${i}]: (${bytes}) ${sreF(entry)}\n`);
    }
  }

  /** Every leaf item of a tree in key order (used to reach log trees' and srch files' blocks). */
  private forEachLeafItem(ref: { blkno: bigint; seq: bigint }, func: ItemFunc, depth = 0): void {
    if (ref.blkno === 0n) return;
    if (depth > C.BTREE_MAX_HEIGHT) {
      this.problem(`btree deeper than ${C.BTREE_MAX_HEIGHT} at block ${ref.blkno}`);
      return;
    }
    const buf = this.readLg(ref.blkno);
    if (!buf) return;
    let items;
    try {
      items = readItems(buf, ref.blkno);
    } catch (err) {
      this.problem((err as Error).message);
      return;
    }
    const level = buf[40]!;
    for (const it of items) {
      if (level > 0) {
        if (it.valLen >= BlockRef.size) this.forEachLeafItem(BlockRef.decode(it.val), func, depth + 1);
      } else {
        func(it.key, it.seq, it.flags, it.val);
      }
    }
  }

  private logTreesRoots: ItemFunc = (_key, _seq, _flags, val) => {
    if (!val || val.length < LogTrees.size) return;
    const lt = LogTrees.decode(val);
    this.printAllocList("lt_meta_avail", lt.meta_avail.ref);
    this.printAllocList("lt_meta_freed", lt.meta_freed.ref);
    this.printBtree("data_avail", lt.data_avail.root, this.allocItem);
    this.printBtree("data_freed", lt.data_freed.root, this.allocItem);
    this.printSrchBlock(lt.srch_file.ref, lt.srch_file.height - 1);
    this.printBtree("", lt.item_root, this.fsItem);
  };

  private srchRootFiles: ItemFunc = (key, _seq, _flags, val) => {
    if (!val) return;
    if (key.type === C.SRCH_PENDING_TYPE || key.type === C.SRCH_BUSY_TYPE) {
      if (val.length < SrchCompact.size) return;
      const sc = SrchCompact.decode(val);
      for (let i = 0; i < Math.min(sc.nr, C.SRCH_COMPACT_NR); i++) {
        const sfl = sc.in[i]!.sfl;
        this.printSrchBlock(sfl.ref, sfl.height - 1);
      }
    } else {
      if (val.length < SrchFile.size) return;
      const sfl = SrchFile.decode(val);
      this.printSrchBlock(sfl.ref, sfl.height - 1);
    }
  };

  private fsItem: ItemFunc = (key, seq, flags, val) => {
    this.out(`    ${keyFormat(key)} ${seq} ${flags & C.ITEM_FLAG_DELETION ? "d" : "-"}\n`);
    if (val === null || flags & C.ITEM_FLAG_DELETION) return;
    const printer = findPrinter(key.zone, key.type);
    if (printer) this.out(printer(key, val));
    else this.out(`      (unknown zone ${key.zone} type ${key.type})\n`);
  };

  private allocItem: ItemFunc = (key) => {
    if (key.zone === C.FREE_EXTENT_BLKNO_ZONE) {
      this.out(`    free extent: blkno ${key.first - key.second + 1n} len ${key.second} end ${key.first}\n`);
    } else {
      this.out(`    free extent: blkno ${key.second - key.third + 1n} len ${key.third} order ${s64(C.U64_MAX - key.first)}\n`);
    }
  };

  private logTreesItem: ItemFunc = (key, _seq, _flags, val) => {
    this.out(`    rid ${key.first} nr ${key.second}\n`);
    if (!val) return;
    if (val.length < LogTrees.size) {
      this.out(`      (short log_trees value: val_len ${val.length})\n`);
      return;
    }
    const lt = LogTrees.decode(val);
    let zones = "";
    lt.data_alloc_zones.forEach((w, i) => {
      for (let bit = 0; bit < 64; bit++) if ((w >> BigInt(bit)) & 1n) zones += `${i * 64 + bit} `;
    });
    this.out(
      `      meta_avail: ${alHeadF(lt.meta_avail)}\n` +
        `      meta_freed: ${alHeadF(lt.meta_freed)}\n` +
        `      item_root: height ${lt.item_root.height} blkno ${lt.item_root.ref.blkno} seq ${lt.item_root.ref.seq}\n` +
        `      bloom_ref: blkno ${lt.bloom_ref.blkno} seq ${lt.bloom_ref.seq}\n` +
        `      data_avail: ${alcRootF(lt.data_avail)}\n` +
        `      data_freed: ${alcRootF(lt.data_freed)}\n` +
        `      srch_file: ${srfF(lt.srch_file)}\n` +
        `      inode_count_delta: ${lt.inode_count_delta}\n` +
        `      get_trans_seq: ${s64(lt.get_trans_seq)}\n` +
        `      commit_trans_seq: ${s64(lt.commit_trans_seq)}\n` +
        `      max_item_seq: ${lt.max_item_seq}\n` +
        `      finalize_seq: ${lt.finalize_seq}\n` +
        `      rid: ${hex(lt.rid, 16)}\n` +
        `      nr: ${lt.nr}\n` +
        `      flags: ${hex(lt.flags)}\n` +
        `      data_alloc_zone_blocks: ${lt.data_alloc_zone_blocks}\n` +
        `      data_alloc_zones: ${zones}\n`,
    );
  };

  private srchRootItem: ItemFunc = (key, _seq, _flags, val) => {
    this.out(`    ${keyFormat(key)}\n`);
    if (!val) return;
    if (key.type === C.SRCH_PENDING_TYPE || key.type === C.SRCH_BUSY_TYPE) {
      if (val.length < SrchCompact.size) {
        this.out(`      (short srch compact value: val_len ${val.length})\n`);
        return;
      }
      const sc = SrchCompact.decode(val);
      this.out(`      compact ${key.type === C.SRCH_PENDING_TYPE ? "pending" : "busy"}: nr ${sc.nr} flags 0x${hex(sc.flags)}\n`);
      for (let i = 0; i < Math.min(sc.nr, C.SRCH_COMPACT_NR); i++) {
        const inp = sc.in[i]!;
        this.out(`        [${i}] blk ${inp.blk} pos ${inp.pos} sfl ${srfF(inp.sfl)}\n`);
      }
    } else {
      if (val.length < SrchFile.size) {
        this.out(`      (short srch file value: val_len ${val.length})\n`);
        return;
      }
      this.out(`      ${srfF(SrchFile.decode(val))}\n`);
    }
  };

  private mountedClient: ItemFunc = (key, _seq, _flags, val) => {
    if (!val) {
      this.out(`    rid ${hex(key.first, 16)}\n`);
      return;
    }
    if (val.length < MountedClientVal.size) {
      this.out(`    rid ${hex(key.first, 16)} (short mounted client value: val_len ${val.length})\n`);
      return;
    }
    const mc = MountedClientVal.decode(val);
    this.out(`    rid ${hex(key.first, 16)} ipv4_addr ${ipv4ToString(mc.addr.addr)} flags 0x${hex(mc.flags)}\n`);
  };

  private logMergeItem: ItemFunc = (key, _seq, _flags, val) => {
    if (!val) return;
    const short = (n: number) => {
      if (val.length >= n) return false;
      this.out(`    (short log merge value: zone ${key.zone} val_len ${val.length})\n`);
      return true;
    };
    switch (key.zone) {
      case C.LOG_MERGE_STATUS_ZONE: {
        if (short(LogMergeStatus.size)) return;
        const s = LogMergeStatus.decode(val);
        this.out(`    status: next_range_key ${keyFormat(s.next_range_key)} nr_req ${s.nr_requests} nr_comp ${s.nr_complete} seq ${s.seq}\n`);
        return;
      }
      case C.LOG_MERGE_RANGE_ZONE: {
        if (short(LogMergeRange.size)) return;
        const r = LogMergeRange.decode(val);
        this.out(`    range: start ${keyFormat(r.start)} end ${keyFormat(r.end)}\n`);
        return;
      }
      case C.LOG_MERGE_REQUEST_ZONE: {
        if (short(LogMergeRequest.size)) return;
        const r = LogMergeRequest.decode(val);
        this.out(
          `    request: logs_root ${btRootF(r.logs_root)} logs_root ${btRootF(r.root)} start ${keyFormat(r.start)} end ${keyFormat(r.end)} input_seq ${r.input_seq} rid ${hex(r.rid, 16)} seq ${r.seq} flags 0x${hex(r.flags)}\n`,
        );
        return;
      }
      case C.LOG_MERGE_COMPLETE_ZONE: {
        if (short(LogMergeComplete.size)) return;
        const c = LogMergeComplete.decode(val);
        this.out(
          `    complete: root ${btRootF(c.root)} start ${keyFormat(c.start)} end ${keyFormat(c.end)} remain ${keyFormat(c.remain)} rid ${hex(c.rid, 16)} seq ${c.seq} flags ${hex(c.flags)}\n`,
        );
        return;
      }
      case C.LOG_MERGE_FREEING_ZONE: {
        if (short(LogMergeFreeing.size)) return;
        const f = LogMergeFreeing.decode(val);
        this.out(`    freeing: root ${btRootF(f.root)} key ${keyFormat(f.key)} seq ${f.seq}\n`);
        return;
      }
      default:
        this.out(`    (unknown log merge key zone ${key.zone})\n`);
    }
  };
}

function addrPort(a: InetAddr): string {
  return `${ipv4ToString(a.addr)}:${a.port}`;
}

/** Decode a value that may be shorter than its struct (a damaged item): missing bytes read as zero. */
function padTo(val: Uint8Array, size: number): Uint8Array {
  if (val.length >= size) return val;
  const b = new Uint8Array(size);
  b.set(val);
  return b;
}

type Printer = (key: Key, val: Uint8Array) => string;

function findPrinter(zone: number, type: number): Printer | null {
  if (zone === C.INODE_INDEX_ZONE && type >= C.INODE_INDEX_META_SEQ_TYPE && type <= C.INODE_INDEX_DATA_SEQ_TYPE) return printInodeIndex;
  if (zone === C.ORPHAN_ZONE) return type === C.ORPHAN_TYPE ? printOrphan : null;
  if (zone === C.QUOTA_ZONE) return printQuota;
  if (zone === C.XATTR_TOTL_ZONE) return printTotl;
  if (zone === C.XATTR_INDX_ZONE) return printIndx;
  if (zone === C.FS_ZONE) {
    switch (type) {
      case C.INODE_TYPE: return printInode;
      case C.XATTR_TYPE: return printXattr;
      case C.DIRENT_TYPE:
      case C.READDIR_TYPE:
      case C.LINK_BACKREF_TYPE: return printDirent;
      case C.SYMLINK_TYPE: return printSymlink;
      case C.DATA_EXTENT_TYPE: return printExtent;
    }
  }
  return null;
}

const printInodeIndex: Printer = (k) => `      index: major ${k.second} ino ${k.third}\n`;
const printOrphan: Printer = (k) => `    orphan: ino ${k.second}\n`;

const printQuota: Printer = (k, v) => {
  const r = QuotaRuleVal.decode(padTo(v, QuotaRuleVal.size));
  const nm = (i: number) => `${r.name_val[i]},${r.name_source[i]},${hex(r.name_flags[i]!)}`;
  return `    quota rule: hash 0x${hex(k.second, 16)} coll_nr ${k.third}\n      [${r.prio} ${nm(0)} ${nm(1)} ${nm(2)} ${r.op} ${r.limit} ${hex(r.rule_flags)}]\n`;
};

const printTotl: Printer = (k, v) => {
  const t = XattrTotlVal.decode(padTo(v, XattrTotlVal.size));
  return `    xattr totl: ${k.first}.${k.second}.${k.third} = ${t.total}, ${t.count}\n`;
};

/** The real tool prints this line without a newline; kept for byte-identical output. */
const printIndx: Printer = (k) => {
  const major = k.first >> 56n;
  const minor = ((k.first << 8n) & C.U64_MAX) | (k.second >> 56n);
  const ino = ((k.second << 8n) & C.U64_MAX) | (k.third >> 56n);
  const xid = ((k.third << 8n) & C.U64_MAX) | BigInt(k.fourth);
  return `    xattr indx: major ${major} minor ${minor} ino ${ino} xid ${xid}`;
};

const printInode: Printer = (k, v) => {
  const n = Inode.decode(padTo(v, Inode.size));
  return (
    `    inode: ino ${k.first} size ${n.size} version ${n.version} proj ${n.proj} nlink ${n.nlink}\n` +
    `      uid ${n.uid} gid ${n.gid} mode 0${n.mode.toString(8)} rdev 0x${hex(n.rdev)} flags 0x${hex(n.flags)}\n` +
    `      next_readdir_pos ${n.next_readdir_pos} meta_seq ${n.meta_seq} data_seq ${n.data_seq} data_version ${n.data_version}\n` +
    `      atime ${ts(n.atime.sec, n.atime.nsec)} ctime ${ts(n.ctime.sec, n.ctime.nsec)}\n` +
    `      mtime ${ts(n.mtime.sec, n.mtime.nsec)}\n`
  );
};

const printXattr: Printer = (k, v) => {
  let s = `    xattr: ino ${k.first} name_hash ${hex(Number(k.second & 0xffffffffn), 8)} id ${k.third} part ${k.fourth}\n`;
  if (k.fourth === 0) {
    const h = XattrHeader.decode(padTo(v, XattrHeader.size));
    const name = v.subarray(XATTR_NAME_OFF, Math.min(v.length, XATTR_NAME_OFF + h.name_len));
    s += `      name_len ${h.name_len} val_len ${h.val_len} name ${printable(name)}\n`;
  }
  return s;
};

const printDirent: Printer = (k, v) => {
  const d = Dirent.decode(padTo(v, Dirent.size));
  const name = v.length > DIRENT_NAME_OFF ? v.subarray(DIRENT_NAME_OFF) : new Uint8Array(0);
  return `    dirent: dir ${k.first} hash ${hex(d.hash, 16)} pos ${d.pos} type ${d.type} ino ${d.ino}\n      name ${printable(name)}\n`;
};

const printSymlink: Printer = (k, v) => {
  let len = v.length;
  if (len > 0 && v[len - 1] === 0) len--;
  return `    symlink: ino ${k.first} nr ${k.second}\n      target ${printable(v.subarray(0, len))}\n`;
};

const printExtent: Printer = (k, v) => {
  const d = DataExtentVal.decode(padTo(v, DataExtentVal.size));
  return `    extent: ino ${k.first} iblock ${k.second - k.third + 1n} len ${k.third} blkno ${d.blkno} flags ${hex(d.flags)}\n`;
};
