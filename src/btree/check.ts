/**
 * An invariant checker for committed btrees, independent of the engine: it reads the device's
 * bytes (never the decoded nodes of the cache) and checks everything the format and the engine
 * promise, so a bug in the engine's codec cannot hide itself.
 *
 * Per block: header verifies against the parent's ref (crc, magic, fsid, blkno, seq); the level is
 * the one expected (so all leaves are at the same depth); no block is referenced twice; the AVL
 * tree reaches every item exactly once with consistent parent links, correct heights and balance
 * (|left - right| <= 1), keys strictly increasing in order; values lie between the item array and
 * the value area's end without overlapping; total_item_bytes is the sum of the items' bytes and
 * mid_free_len fits the gap; leaves' hash table holds every item where linear probing from its
 * bucket finds it, and nothing else. Across blocks: each child's keys lie in (previous parent key,
 * parent key]; a parent key equals the greatest key of its child's subtree, except on the right
 * spine, where it is PACKED_KEY_MAX; parents are never empty and (strict) no non-root block is.
 *
 * `strict` (the default) also demands what our engine guarantees beyond the format: exact parent
 * keys, compacted blocks (mid_free_len = capacity - total_item_bytes) and no empty non-root
 * leaves. Trees written by the kernel pass the non-strict check.
 *
 * Problems are thrown as ScoutfsError EIO naming the block and the broken rule.
 */
import { ScoutfsError } from "../util/errors.ts";
import { view } from "../format/struct.ts";
import { PACKED_KEY_MAX, packedFromRaw, type PackedKey } from "../format/key.ts";
import {
  AVL_ROOT_OFF,
  BTREE_ITEMS_OFF,
  BTREE_LEAF_ITEM_HASH_NR,
  BTREE_LEAF_ITEM_HASH_OFF,
  BtreeBlock,
  BtreeItem,
} from "../format/btree.ts";
import { BLOCK_LG_SHIFT, BLOCK_LG_SIZE, BLOCK_MAGIC_BTREE, BTREE_MAX_HEIGHT, BTREE_MAX_VAL_LEN } from "../format/constants.ts";
import { verifyBlock } from "../block/device.ts";
import type { MetaDev } from "../block/cache.ts";
import { emptyBlockFree, itemBytes, leafHashIndex } from "./build.ts";

export interface CheckedItem {
  key: PackedKey;
  seq: bigint;
  flags: number;
  val: Uint8Array;
}

export interface CheckResult {
  /** Every block of the tree. */
  blknos: Set<bigint>;
  /** Leaf items in key order. */
  items: CheckedItem[];
  /** Blocks per level (index = level). */
  blocksPerLevel: number[];
}

export interface CheckOptions {
  strict?: boolean;
}

interface RootLike {
  ref: { blkno: bigint; seq: bigint };
  height: number;
}

export function btreeCheck(dev: Pick<MetaDev, "read">, fsid: bigint, root: RootLike, opts: CheckOptions = {}): CheckResult {
  const strict = opts.strict ?? true;
  const res: CheckResult = { blknos: new Set(), items: [], blocksPerLevel: [] };
  const bad = (blkno: bigint, why: string) => new ScoutfsError("EIO", `btree check: block ${blkno}: ${why}`);
  if (root.height === 0) {
    if (root.ref.blkno !== 0n) throw new ScoutfsError("EIO", `btree check: empty root references block ${root.ref.blkno}`);
    return res;
  }
  if (root.height > BTREE_MAX_HEIGHT) throw new ScoutfsError("EIO", `btree check: root height ${root.height}`);
  for (let l = 0; l < root.height; l++) res.blocksPerLevel.push(0);

  /**
   * Check the subtree at `ref`, whose keys must lie in (lo, hi]; returns its greatest key
   * (null if it is an empty leaf).
   */
  const walk = (ref: { blkno: bigint; seq: bigint }, level: number, lo: PackedKey | null, hi: PackedKey, isRoot: boolean, rightSpine: boolean): PackedKey | null => {
    const blkno = ref.blkno;
    if (res.blknos.has(blkno)) throw bad(blkno, "referenced twice");
    res.blknos.add(blkno);
    res.blocksPerLevel[level]!++;
    const v = verifyBlock(dev.read(blkno, BLOCK_LG_SHIFT), { magic: BLOCK_MAGIC_BTREE, fsid, blkno, seq: ref.seq });
    if (!v.ok) throw bad(blkno, v.message);
    const buf = v.buf;
    const items = checkBlock(buf, blkno, level, strict, bad);
    if (items.length === 0 && (level > 0 || (strict && !isRoot))) throw bad(blkno, `empty level ${level} block`);
    for (const it of items) {
      if (lo !== null && !(it.key > lo)) throw bad(blkno, "key not greater than the previous parent key");
      if (it.key > hi) throw bad(blkno, "key greater than its parent key");
    }
    if (level === 0) {
      for (const it of items) res.items.push({ key: it.key, seq: it.seq, flags: it.flags, val: buf.slice(it.valOff, it.valOff + it.valLen) });
      return items.length > 0 ? items[items.length - 1]!.key : null;
    }
    let prev = lo;
    let greatest: PackedKey | null = null;
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!;
      const dv = view(buf);
      const child = { blkno: dv.getBigUint64(it.valOff, true), seq: dv.getBigUint64(it.valOff + 8, true) };
      const spine = rightSpine && i === items.length - 1;
      const childMax = walk(child, level - 1, prev, it.key, false, spine);
      if (spine) {
        if (it.key !== PACKED_KEY_MAX) throw bad(blkno, "right spine parent key is not the maximal key");
      } else if (strict && childMax !== it.key) {
        throw bad(blkno, `parent key ${i} is not the greatest key of its child ${child.blkno}`);
      }
      if (childMax !== null) greatest = childMax;
      prev = it.key;
    }
    return rightSpine ? greatest : items[items.length - 1]!.key;
  };
  walk(root.ref, root.height - 1, null, PACKED_KEY_MAX, true, true);
  return res;
}

interface RawItem {
  off: number;
  key: PackedKey;
  seq: bigint;
  flags: number;
  valOff: number;
  valLen: number;
}

/** Check one block's internal structure; returns its items in key order. */
function checkBlock(
  buf: Uint8Array,
  blkno: bigint,
  level: number,
  strict: boolean,
  bad: (blkno: bigint, why: string) => ScoutfsError,
): RawItem[] {
  if (buf.length !== BLOCK_LG_SIZE) throw bad(blkno, `size ${buf.length}`);
  const dv = view(buf);
  const gotLevel = dv.getUint8(BtreeBlock.off.level);
  if (gotLevel !== level) throw bad(blkno, `level ${gotLevel}, expected ${level}`);
  const nr = dv.getUint16(BtreeBlock.off.nr_items, true);
  const total = dv.getUint16(BtreeBlock.off.total_item_bytes, true);
  const midFree = dv.getUint16(BtreeBlock.off.mid_free_len, true);
  const rootLink = dv.getUint16(BtreeBlock.off.item_root, true);
  const cap = emptyBlockFree(level);
  const itemsEnd = BTREE_ITEMS_OFF + nr * BtreeItem.size;
  const valEnd = level === 0 ? BTREE_LEAF_ITEM_HASH_OFF : BLOCK_LG_SIZE;
  if (itemsEnd > valEnd) throw bad(blkno, `nr_items ${nr} overruns the block`);

  // AVL: every node reached once, links on item boundaries, parents consistent, heights right
  const seen = new Uint8Array(nr);
  const order: number[] = [];
  const linkToOff = (link: number): number => {
    const off = link + AVL_ROOT_OFF;
    const rel = off - BTREE_ITEMS_OFF;
    if (rel < 0 || rel % BtreeItem.size !== 0 || rel / BtreeItem.size >= nr) throw bad(blkno, `avl link ${link} is not an item`);
    const i = rel / BtreeItem.size;
    if (seen[i]) throw bad(blkno, `avl node ${link} reached twice`);
    seen[i] = 1;
    return off;
  };
  const avl = (link: number, parentLink: number, depth: number): number => {
    if (link === 0) return 0;
    if (depth > 32) throw bad(blkno, "avl tree deeper than 32");
    const off = linkToOff(link);
    if (dv.getUint16(off, true) !== parentLink) throw bad(blkno, `avl node ${link} parent link ${dv.getUint16(off, true)}, expected ${parentLink}`);
    const hl = avl(dv.getUint16(off + 2, true), link, depth + 1);
    order.push(off);
    const hr = avl(dv.getUint16(off + 4, true), link, depth + 1);
    const h = dv.getUint8(off + 6);
    if (h !== 1 + Math.max(hl, hr)) throw bad(blkno, `avl node ${link} height ${h}, children ${hl}/${hr}`);
    if (Math.abs(hl - hr) > 1) throw bad(blkno, `avl node ${link} unbalanced ${hl}/${hr}`);
    return h;
  };
  if (rootLink === 0) {
    if (nr !== 0) throw bad(blkno, `no avl root with ${nr} items`);
  } else {
    avl(rootLink, 0, 0);
  }
  if (order.length !== nr) throw bad(blkno, `avl tree reaches ${order.length} of ${nr} items`);

  const items: RawItem[] = [];
  let bytes = 0;
  const spans: [number, number][] = [];
  for (const off of order) {
    const key = packedFromRaw(buf, off + BtreeItem.off.key);
    if (items.length > 0 && !(items[items.length - 1]!.key < key)) throw bad(blkno, "avl order keys not increasing");
    const valOff = dv.getUint16(off + BtreeItem.off.val_off, true);
    const valLen = dv.getUint16(off + BtreeItem.off.val_len, true);
    if (level === 0 && valLen > BTREE_MAX_VAL_LEN) throw bad(blkno, `value of ${valLen} bytes`);
    if (level > 0 && valLen !== 16) throw bad(blkno, `parent value of ${valLen} bytes`);
    if (valLen > 0) {
      if (valOff < itemsEnd || valOff + valLen > valEnd) throw bad(blkno, `value ${valOff}+${valLen} outside ${itemsEnd}..${valEnd}`);
      spans.push([valOff, valOff + itemBytes(valLen) - BtreeItem.size]);
    }
    for (let p = 53; p < 56; p++) if (buf[off + p] !== 0) throw bad(blkno, "item padding not zero");
    bytes += itemBytes(valLen);
    items.push({ off, key, seq: dv.getBigUint64(off + BtreeItem.off.seq, true), flags: buf[off + BtreeItem.off.flags]!, valOff, valLen });
  }
  spans.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < spans.length; i++) if (spans[i]![0] < spans[i - 1]![1]) throw bad(blkno, "values overlap");
  if (bytes !== total) throw bad(blkno, `total_item_bytes ${total}, items use ${bytes}`);
  const lowestVal = spans.length > 0 ? spans[0]![0] : valEnd;
  if (itemsEnd + midFree > lowestVal) throw bad(blkno, `mid_free_len ${midFree} runs into the values`);
  if (strict && midFree !== cap - total) throw bad(blkno, `mid_free_len ${midFree}, expected ${cap - total}`);

  if (level === 0) {
    let used = 0;
    for (let b = 0; b < BTREE_LEAF_ITEM_HASH_NR; b++) {
      const off = dv.getUint16(BTREE_LEAF_ITEM_HASH_OFF + b * 2, true);
      if (off === 0) continue;
      used++;
      const rel = off - BTREE_ITEMS_OFF;
      if (rel < 0 || rel % BtreeItem.size !== 0 || rel / BtreeItem.size >= nr) throw bad(blkno, `hash bucket ${b} holds ${off}, not an item`);
    }
    if (used !== nr) throw bad(blkno, `hash table holds ${used} entries for ${nr} items`);
    for (const it of items) {
      let b = leafHashIndex(buf, it.off + BtreeItem.off.key);
      let found = false;
      for (let n = 0; n < BTREE_LEAF_ITEM_HASH_NR; n++) {
        const off = dv.getUint16(BTREE_LEAF_ITEM_HASH_OFF + b * 2, true);
        if (off === 0) break;
        if (off === it.off) {
          found = true;
          break;
        }
        b = b + 1 === BTREE_LEAF_ITEM_HASH_NR ? 0 : b + 1;
      }
      if (!found) throw bad(blkno, `item at ${it.off} not found in the hash table`);
    }
  }
  return items;
}
