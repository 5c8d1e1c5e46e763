/**
 * Btree nodes as the engine holds them in the block cache: the 64 KiB block itself, changed in
 * place (as scoutfs's btree.c changes its blocks), not a decoded array of item objects.
 *
 * Why: a decoded item is three or four JavaScript objects (item, key string, value array,
 * bigint); a 1M-item tree cost ~1 GiB that way and every comparison chased pointers. Here a node
 * costs its 64 KiB plus a small object, copy-on-write is one 64 KiB copy, and searches compare
 * keys in the block's bytes.
 *
 * The working layout (what `buf` holds between decode/commit and the next encode):
 * - the item headers (56 bytes each) sit in KEY ORDER at BTREE_ITEMS_OFF + i*56, so item i is
 *   found by index and a binary search runs over the array. Their AVL link fields are stale and
 *   ignored until the block is encoded;
 * - values live in [valLow, valEnd) (valEnd = the leaf hash table, or the block end for parents),
 *   allocated downward from valLow; a deleted or resized value leaves a hole that compaction
 *   (`nodeCompact`, only when the gap between headers and values is too small) reclaims;
 * - the block header, the btree header fields and the leaf hash table are stale until encoded.
 * Encoding (`btreeCodec.encode`, once per block per commit) lays the block out exactly as before:
 * headers in key order, values packed downward from valEnd in item order, a balanced AVL, the
 * leaf hash table. So every block we write is byte-identical to what the old item-array engine
 * (and mkfs's build.ts) wrote. After the commit the node takes the written image back as its
 * buffer (`written`), so clean nodes are canonical blocks.
 *
 * Byte accounting is that of the real block: every item costs its 56-byte header plus its value
 * rounded up to 8 (`bytes` is the block's total_item_bytes), and a node holds at most
 * `nodeCapacity(level)` bytes. Because a written block is always compacted, the engine splits
 * exactly when a compacted real block could not take the item.
 *
 * The codec decodes through read.ts (the AVL walk that trusts nothing) and checks everything a
 * walker relies on: key order, value bounds and sizes, parent refs, byte accounting. Anything
 * wrong is EIO. A block whose items are already in array order with canonically packed values
 * (everything we write) is used as read, without copying; any other valid layout (a kernel block)
 * is re-laid out canonically into a new buffer.
 *
 * Keys: callers hold packed keys (27-char strings, see format/key.ts). Comparisons against the
 * block convert the search key once into `KeyWords` (nine 32-bit words in key order) and compare
 * them with the raw little-endian key fields, with no allocation.
 */
import { assert } from "../util/assert.ts";
import { view } from "../format/struct.ts";
import { packedFromRaw, PACKED_KEY_LEN, type PackedKey } from "../format/key.ts";
import { BtreeBlock, BtreeItem, BTREE_ITEMS_OFF, BTREE_LEAF_ITEM_HASH_OFF } from "../format/btree.ts";
import { BLOCK_LG_SIZE, BLOCK_MAGIC_BTREE, BTREE_MAX_VAL_LEN } from "../format/constants.ts";
import type { BlockCodec, MetaCache } from "../block/cache.ts";
import { ScoutfsError } from "../util/errors.ts";
import { emptyBlockFree, itemBytes, linkAndHash } from "./build.ts";
import { blockInfo, corrupt, itemOffsetsInOrder } from "./read.ts";

/** A block ref as the engine passes it around (the on-disk scoutfs_block_ref). */
export interface ChildRef {
  readonly blkno: bigint;
  readonly seq: bigint;
}

/** An item as reads return it: its own copies of key and value. */
export interface BtreeItemView {
  readonly key: PackedKey;
  readonly seq: bigint;
  readonly flags: number;
  readonly val: Uint8Array;
}

export interface BtreeNode {
  readonly level: number;
  /** The block (working layout, see the header). */
  buf: Uint8Array;
  dv: DataView;
  /** Items in the node. */
  nr: number;
  /** Sum of the items' block bytes: the block's total_item_bytes. */
  bytes: number;
  /** Lowest byte used by values; values (and holes) fill [valLow, valEnd). */
  valLow: number;
}

export const BLOCK_REF_BYTES = 16;
/** Bytes of one parent item (header + 16-byte ref). */
export const PARENT_ITEM_BYTES = itemBytes(BLOCK_REF_BYTES);
const LEAF_CAPACITY = emptyBlockFree(0);
const PARENT_CAPACITY = emptyBlockFree(1);
/** What a cached node costs in memory: its block plus the node and DataView objects. */
export const NODE_FOOTPRINT_BYTES = BLOCK_LG_SIZE + 256;

const ITEM = BtreeItem.size;
const ITEMS_OFF = BTREE_ITEMS_OFF;
const OFF_KEY = BtreeItem.off.key;
const OFF_SEQ = BtreeItem.off.seq;
const OFF_VAL_OFF = BtreeItem.off.val_off;
const OFF_VAL_LEN = BtreeItem.off.val_len;
const OFF_FLAGS = BtreeItem.off.flags;

/** Item bytes a node of this level can hold. */
export function nodeCapacity(level: number): number {
  return level === 0 ? LEAF_CAPACITY : PARENT_CAPACITY;
}

/** Where a node's value area ends. */
export function valEndOf(level: number): number {
  return level === 0 ? BTREE_LEAF_ITEM_HASH_OFF : BLOCK_LG_SIZE;
}

function valBytes(len: number): number {
  return (len + 7) & ~7;
}

/**
 * Block buffers of nodes that left the tree (the clean version a copy-on-write replaced, a dirty
 * block freed by a merge), reused by the next copy or new node. Steady-state copy-on-write then
 * allocates no 64 KiB buffers at all, instead of leaving one per written block to the GC, which
 * frees them late (peak RSS doubled). Bounded: beyond POOL_MAX buffers go to the GC.
 */
const pool: Uint8Array[] = [];
const POOL_MAX = 256;
const DEAD = new Uint8Array(0);
export const nodePoolCounters = { reused: 0, recycled: 0, allocated: 0, released: 0 };

function takeBuffer(): Uint8Array {
  const b = pool.pop();
  if (b !== undefined) {
    nodePoolCounters.reused++;
    return b;
  }
  nodePoolCounters.allocated++;
  return new Uint8Array(BLOCK_LG_SIZE);
}

/**
 * The node is out of every tree and out of the cache: give its buffer to the pool. The object is
 * left empty and marked dead, so a holder that broke the rules (an iterator kept across a change
 * of its tree) sees a dead node (`nodeIsDead`), never another node's bytes through it.
 */
export function nodeRecycle(n: BtreeNode): void {
  if (n.buf === DEAD) return;
  if (pool.length < POOL_MAX) {
    pool.push(n.buf);
    nodePoolCounters.recycled++;
  } else if (n.buf.byteOffset === 0 && n.buf.buffer instanceof ArrayBuffer && n.buf.buffer.byteLength === BLOCK_LG_SIZE) {
    // nothing else views the buffer (values are handed out as copies): release it now rather
    // than when an old-generation collection finds it (ES2024 transfer detaches and frees it)
    (n.buf.buffer as ArrayBuffer & { transfer?(len: number): ArrayBuffer }).transfer?.(0);
    nodePoolCounters.released++;
  }
  n.buf = DEAD;
  n.dv = view(DEAD);
  n.nr = 0;
  n.bytes = 0;
}

export function nodeIsDead(n: BtreeNode): boolean {
  return n.buf === DEAD;
}

/** An empty node (its buffer may hold old bytes: the working layout never reads unwritten ones). */
export function nodeNew(level: number): BtreeNode {
  const buf = takeBuffer();
  return { level, buf, dv: view(buf), nr: 0, bytes: 0, valLow: valEndOf(level) };
}

/** A copy for copy-on-write: one 64 KiB copy. */
export function nodeClone(n: BtreeNode): BtreeNode {
  assert(!nodeIsDead(n), "copy of a dead btree node");
  const buf = takeBuffer();
  buf.set(n.buf);
  return { level: n.level, buf, dv: view(buf), nr: n.nr, bytes: n.bytes, valLow: n.valLow };
}

// ---------------------------------------------------------------------------------------------
// Keys

/**
 * A packed key as nine int32 words in key order: zone, first hi/lo, type, second hi/lo, third
 * hi/lo, fourth. The 32-bit halves are stored with the sign bit flipped (`u ^ 0x80000000`), so a
 * signed comparison gives unsigned order and every value the JIT sees is an int32 (uint32 reads
 * above 2^31 are doubles to it: code compiled on small keys slows down badly on large ones).
 */
export type KeyWords = Int32Array;

const FLIP = 0x80000000 | 0;

function be32(p: PackedKey, at: number): number {
  return ((p.charCodeAt(at) << 24) | (p.charCodeAt(at + 1) << 16) | (p.charCodeAt(at + 2) << 8) | p.charCodeAt(at + 3)) ^ FLIP;
}

export function keyWords(p: PackedKey): KeyWords {
  return keyWordsInto(p, new Int32Array(9));
}

/** keyWords into a caller's array (no allocation). */
export function keyWordsInto(p: PackedKey, w: KeyWords): KeyWords {
  assert(p.length === PACKED_KEY_LEN, `packed key of ${p.length} chars`);
  w[0] = p.charCodeAt(0);
  w[1] = be32(p, 1);
  w[2] = be32(p, 5);
  w[3] = p.charCodeAt(9);
  w[4] = be32(p, 10);
  w[5] = be32(p, 14);
  w[6] = be32(p, 18);
  w[7] = be32(p, 22);
  w[8] = p.charCodeAt(26);
  return w;
}

/** Sign of (raw key at byte `off` of the block) - (key `w`). */
function cmpRawWords(buf: Uint8Array, dv: DataView, off: number, w: KeyWords): number {
  let a = buf[off + 25]!;
  let b = w[0]!;
  if (a !== b) return a - b;
  a = dv.getInt32(off + 4, true) ^ FLIP;
  b = w[1]!;
  if (a !== b) return a < b ? -1 : 1;
  a = dv.getInt32(off, true) ^ FLIP;
  b = w[2]!;
  if (a !== b) return a < b ? -1 : 1;
  a = buf[off + 26]!;
  b = w[3]!;
  if (a !== b) return a - b;
  a = dv.getInt32(off + 12, true) ^ FLIP;
  b = w[4]!;
  if (a !== b) return a < b ? -1 : 1;
  a = dv.getInt32(off + 8, true) ^ FLIP;
  b = w[5]!;
  if (a !== b) return a < b ? -1 : 1;
  a = dv.getInt32(off + 20, true) ^ FLIP;
  b = w[6]!;
  if (a !== b) return a < b ? -1 : 1;
  a = dv.getInt32(off + 16, true) ^ FLIP;
  b = w[7]!;
  if (a !== b) return a < b ? -1 : 1;
  return buf[off + 24]! - w[8]!;
}

/** Word offsets of the raw key's 32-bit halves in key order (first hi/lo, then second, third). */
const RAW_WORDS_FIRST = [4, 0];
const RAW_WORDS_REST = [12, 8, 20, 16];

/** Sign of (raw key at aOff of a) - (raw key at bOff of b), in key order. */
function cmpRawRaw(a: DataView, aOff: number, b: DataView, bOff: number): number {
  let x = a.getUint8(aOff + 25);
  let y = b.getUint8(bOff + 25);
  if (x !== y) return x - y;
  for (const f of RAW_WORDS_FIRST) {
    x = a.getInt32(aOff + f, true) ^ FLIP;
    y = b.getInt32(bOff + f, true) ^ FLIP;
    if (x !== y) return x < y ? -1 : 1;
  }
  x = a.getUint8(aOff + 26);
  y = b.getUint8(bOff + 26);
  if (x !== y) return x - y;
  for (const f of RAW_WORDS_REST) {
    x = a.getInt32(aOff + f, true) ^ FLIP;
    y = b.getInt32(bOff + f, true) ^ FLIP;
    if (x !== y) return x < y ? -1 : 1;
  }
  return a.getUint8(aOff + 24) - b.getUint8(bOff + 24);
}

function hdr(i: number): number {
  return ITEMS_OFF + i * ITEM;
}

/** Sign of (key of item i) - w. */
export function nodeCmp(n: BtreeNode, i: number, w: KeyWords): number {
  return cmpRawWords(n.buf, n.dv, hdr(i) + OFF_KEY, w);
}

/** Index of the first item with key >= w (n.nr if none). */
export function nodeLowerBound(n: BtreeNode, w: KeyWords): number {
  const buf = n.buf;
  const dv = n.dv;
  let lo = 0;
  let hi = n.nr;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (cmpRawWords(buf, dv, ITEMS_OFF + mid * ITEM + OFF_KEY, w) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export function nodeKeyAt(n: BtreeNode, i: number): PackedKey {
  return packedFromRaw(n.buf, hdr(i) + OFF_KEY);
}

/** True when item ai of a and item bi of b have the same key. */
export function nodeKeysEqual(a: BtreeNode, ai: number, b: BtreeNode, bi: number): boolean {
  return cmpRawRaw(a.dv, hdr(ai) + OFF_KEY, b.dv, hdr(bi) + OFF_KEY) === 0;
}

/** Give item di of dst the key of item si of src. */
export function nodeCopyKey(dst: BtreeNode, di: number, src: BtreeNode, si: number): void {
  const s = hdr(si) + OFF_KEY;
  dst.buf.set(src.buf.subarray(s, s + PACKED_KEY_LEN), hdr(di) + OFF_KEY);
}

/** Write a packed key's 27 meaningful bytes as the on-disk key at `off` (encode zeroes the padding). */
function writeRawKey(p: PackedKey, buf: Uint8Array, off: number): void {
  assert(p.length === PACKED_KEY_LEN, `packed key of ${p.length} chars`);
  for (let i = 0; i < 8; i++) {
    buf[off + 7 - i] = p.charCodeAt(1 + i);
    buf[off + 15 - i] = p.charCodeAt(10 + i);
    buf[off + 23 - i] = p.charCodeAt(18 + i);
  }
  buf[off + 24] = p.charCodeAt(26);
  buf[off + 25] = p.charCodeAt(0);
  buf[off + 26] = p.charCodeAt(9);
}

export function nodeSetKey(n: BtreeNode, i: number, key: PackedKey): void {
  writeRawKey(key, n.buf, hdr(i) + OFF_KEY);
}

// ---------------------------------------------------------------------------------------------
// Items

export function nodeValLen(n: BtreeNode, i: number): number {
  return n.dv.getUint16(hdr(i) + OFF_VAL_LEN, true);
}

export function nodeItemBytes(n: BtreeNode, i: number): number {
  return ITEM + valBytes(nodeValLen(n, i));
}

/** Item i as a fresh object (copies of key and value); `key` is used when the caller knows it. */
export function nodeItem(n: BtreeNode, i: number, key?: PackedKey): BtreeItemView {
  const h = hdr(i);
  const dv = n.dv;
  const off = dv.getUint16(h + OFF_VAL_OFF, true);
  const len = dv.getUint16(h + OFF_VAL_LEN, true);
  return {
    key: key ?? packedFromRaw(n.buf, h + OFF_KEY),
    seq: dv.getBigUint64(h + OFF_SEQ, true),
    flags: n.buf[h + OFF_FLAGS]!,
    val: n.buf.slice(off, off + len),
  };
}

/** The child ref of parent item i. */
export function nodeChildRef(n: BtreeNode, i: number): ChildRef {
  const off = n.dv.getUint16(hdr(i) + OFF_VAL_OFF, true);
  return { blkno: n.dv.getBigUint64(off, true), seq: n.dv.getBigUint64(off + 8, true) };
}

/**
 * Read the child of parent item i through the cache without allocating on a hit (the ref is
 * passed as numbers). The caller checks the level.
 */
export function nodeReadChild(cache: MetaCache, n: BtreeNode, i: number): BtreeNode {
  const dv = n.dv;
  const off = dv.getUint16(hdr(i) + OFF_VAL_OFF, true);
  const hi = dv.getUint32(off + 4, true);
  if (hi >= 0x200000) throw new ScoutfsError("EIO", `btree: child block ${dv.getBigUint64(off, true)} is beyond any device`);
  const blkno = hi * 4294967296 + dv.getUint32(off, true);
  return cache.readWords(blkno, dv.getUint32(off + 8, true), dv.getUint32(off + 12, true), btreeCodec);
}

export function nodeSetChild(n: BtreeNode, i: number, blkno: bigint, seq: bigint): void {
  const off = n.dv.getUint16(hdr(i) + OFF_VAL_OFF, true);
  n.dv.setBigUint64(off, blkno, true);
  n.dv.setBigUint64(off + 8, seq, true);
}

const refScratch = new Uint8Array(BLOCK_REF_BYTES);
const refScratchDv = view(refScratch);

/** Insert a parent item (seq 0, flags 0, as scoutfs writes them) for child (blkno, seq). */
export function nodeInsertParent(n: BtreeNode, i: number, key: PackedKey, blkno: bigint, seq: bigint): void {
  refScratchDv.setBigUint64(0, blkno, true);
  refScratchDv.setBigUint64(8, seq, true);
  nodeInsert(n, i, key, 0n, 0, refScratch);
}

/** Make room for `need` bytes between the headers (after `extraHeaders` more) and the values. */
function ensureGap(n: BtreeNode, need: number): void {
  if (n.valLow - hdr(n.nr) >= need) return;
  nodeCompact(n);
  assert(n.valLow - hdr(n.nr) >= need, `level ${n.level} node of ${n.bytes} bytes has no room for ${need}`);
}

/** Put `len` bytes of value at the bottom of the value area; returns its offset (0 when empty). */
function allocVal(n: BtreeNode, val: Uint8Array, from: number, len: number): number {
  if (len === 0) return 0;
  n.valLow -= valBytes(len);
  const off = n.valLow;
  const buf = n.buf;
  if (len <= 64) {
    for (let b = 0; b < len; b++) buf[off + b] = val[from + b]!;
  } else {
    buf.set(val.subarray(from, from + len), off);
  }
  return off;
}

function writeHeader(n: BtreeNode, i: number, seq: bigint, flags: number, valOff: number, len: number): void {
  const h = hdr(i);
  n.dv.setBigUint64(h + OFF_SEQ, seq, true);
  n.dv.setUint16(h + OFF_VAL_OFF, valOff, true);
  n.dv.setUint16(h + OFF_VAL_LEN, len, true);
  n.buf[h + OFF_FLAGS] = flags;
}

/** Insert an item at index i (the caller keeps key order and checked that it fits). */
export function nodeInsert(n: BtreeNode, i: number, key: PackedKey, seq: bigint, flags: number, val: Uint8Array): void {
  const len = val.length;
  const need = ITEM + valBytes(len);
  assert(n.bytes + need <= nodeCapacity(n.level), "node insert overflows the block");
  ensureGap(n, need);
  const h = hdr(i);
  if (i < n.nr) n.buf.copyWithin(h + ITEM, h, hdr(n.nr));
  n.nr++;
  writeRawKey(key, n.buf, h + OFF_KEY);
  writeHeader(n, i, seq, flags, allocVal(n, val, 0, len), len);
  n.bytes += need;
}

/** Replace item i's seq, flags and value (the caller checked that it fits). */
export function nodeReplace(n: BtreeNode, i: number, seq: bigint, flags: number, val: Uint8Array): void {
  const h = hdr(i);
  const oldLen = n.dv.getUint16(h + OFF_VAL_LEN, true);
  const len = val.length;
  const vb = valBytes(len);
  const oldVb = valBytes(oldLen);
  assert(n.bytes - oldVb + vb <= nodeCapacity(n.level), "node replace overflows the block");
  if (vb === oldVb && len > 0) {
    // same room: overwrite in place (a value's padding bytes stay zero: encode copies len bytes)
    const off = n.dv.getUint16(h + OFF_VAL_OFF, true);
    n.buf.set(val, off);
    writeHeader(n, i, seq, flags, off, len);
    return;
  }
  // the old value becomes a hole
  n.dv.setUint16(h + OFF_VAL_LEN, 0, true);
  n.bytes -= oldVb;
  ensureGap(n, vb);
  writeHeader(n, i, seq, flags, allocVal(n, val, 0, len), len);
  n.bytes += vb;
}

/** Remove items [from, to). */
export function nodeRemove(n: BtreeNode, from: number, to: number): void {
  if (to <= from) return;
  let gone = 0;
  for (let i = from; i < to; i++) gone += nodeItemBytes(n, i);
  n.buf.copyWithin(hdr(from), hdr(to), hdr(n.nr));
  n.nr -= to - from;
  n.bytes -= gone;
  if (n.nr === 0) n.valLow = valEndOf(n.level);
}

/**
 * Move items [from, to) of src to the front (or the back) of dst, keeping both in key order
 * (the caller guarantees the ranges are adjacent in key order and that dst can hold them).
 */
export function nodeMoveItems(dst: BtreeNode, atFront: boolean, src: BtreeNode, from: number, to: number): void {
  const k = to - from;
  if (k <= 0) return;
  let bytes = 0;
  for (let i = from; i < to; i++) bytes += nodeItemBytes(src, i);
  assert(dst.bytes + bytes <= nodeCapacity(dst.level), "node move overflows the block");
  ensureGap(dst, bytes);
  const at = atFront ? 0 : dst.nr;
  if (atFront && dst.nr > 0) dst.buf.copyWithin(hdr(k), hdr(0), hdr(dst.nr));
  dst.buf.set(src.buf.subarray(hdr(from), hdr(to)), hdr(at));
  dst.nr += k;
  for (let j = 0; j < k; j++) {
    const h = hdr(at + j);
    const len = dst.dv.getUint16(h + OFF_VAL_LEN, true);
    const srcOff = dst.dv.getUint16(h + OFF_VAL_OFF, true);
    dst.dv.setUint16(h + OFF_VAL_OFF, allocVal(dst, src.buf, srcOff, len), true);
  }
  dst.bytes += bytes;
  nodeRemove(src, from, to);
}

const compactScratch = new Uint8Array(BLOCK_LG_SIZE);

/** Squeeze out the holes: values packed downward from valEnd in item order (the written layout). */
export function nodeCompact(n: BtreeNode): void {
  const end = valEndOf(n.level);
  const buf = n.buf;
  const dv = n.dv;
  let low = end;
  for (let i = 0; i < n.nr; i++) {
    const h = hdr(i);
    const len = dv.getUint16(h + OFF_VAL_LEN, true);
    if (len === 0) {
      dv.setUint16(h + OFF_VAL_OFF, 0, true);
      continue;
    }
    const off = dv.getUint16(h + OFF_VAL_OFF, true);
    low -= valBytes(len);
    compactScratch.set(buf.subarray(off, off + len), low);
    compactScratch.fill(0, low + len, low + valBytes(len));
    dv.setUint16(h + OFF_VAL_OFF, low, true);
  }
  buf.set(compactScratch.subarray(low, end), low);
  n.valLow = low;
  assert(end - low === n.bytes - n.nr * ITEM, "compacted values disagree with the byte count");
}

// ---------------------------------------------------------------------------------------------
// The codec

function decodeNode(buf: Uint8Array, blkno: bigint): BtreeNode {
  const info = blockInfo(buf, blkno);
  const offs = itemOffsetsInOrder(buf, info, blkno);
  const dv = view(buf);
  const level = info.level;
  const valEnd = valEndOf(level);
  const nr = offs.length;
  const itemsEnd = ITEMS_OFF + nr * ITEM;
  let bytes = 0;
  // canonical: headers in array order, values packed downward from valEnd in item order
  let canonical = true;
  let expect = valEnd;
  for (let i = 0; i < nr; i++) {
    const off = offs[i]!;
    if (off !== hdr(i)) canonical = false;
    if (i > 0 && cmpRawRaw(dv, offs[i - 1]! + OFF_KEY, dv, off + OFF_KEY) >= 0) {
      throw corrupt(blkno, `item ${i} key is not greater than the previous key`);
    }
    const valOff = dv.getUint16(off + OFF_VAL_OFF, true);
    const valLen = dv.getUint16(off + OFF_VAL_LEN, true);
    if (valLen > 0 && (valOff < itemsEnd || valOff + valLen > valEnd)) {
      throw corrupt(blkno, `item value ${valOff}+${valLen} outside the value area`);
    }
    if (level === 0) {
      if (valLen > BTREE_MAX_VAL_LEN) throw corrupt(blkno, `item value of ${valLen} bytes`);
    } else {
      if (valLen !== BLOCK_REF_BYTES) throw corrupt(blkno, `parent item value of ${valLen} bytes`);
      if (dv.getBigUint64(valOff, true) === 0n) throw corrupt(blkno, `parent item ${i} references block 0`);
    }
    if (valLen > 0) {
      expect -= valBytes(valLen);
      if (valOff !== expect) canonical = false;
    } else if (valOff !== 0) {
      canonical = false;
    }
    bytes += itemBytes(valLen);
  }
  if (bytes !== info.totalItemBytes) throw corrupt(blkno, `total_item_bytes ${info.totalItemBytes} but the items use ${bytes}`);
  const cap = nodeCapacity(level);
  if (bytes + info.midFreeLen > cap) throw corrupt(blkno, `items ${bytes} + mid_free_len ${info.midFreeLen} exceed ${cap} bytes`);
  if (canonical) return { level, buf, dv, nr, bytes, valLow: expect };
  // Another writer's layout: headers in key order into a new block, then values compacted
  // (they may overlap or sit anywhere in the value area; each is copied out once).
  const n = nodeNew(level);
  for (let i = 0; i < nr; i++) n.buf.set(buf.subarray(offs[i]!, offs[i]! + ITEM), hdr(i));
  n.nr = nr;
  n.bytes = bytes;
  let low = valEnd;
  for (let i = 0; i < nr; i++) {
    const h = hdr(i);
    const len = n.dv.getUint16(h + OFF_VAL_LEN, true);
    const off = n.dv.getUint16(h + OFF_VAL_OFF, true);
    if (len === 0) {
      n.dv.setUint16(h + OFF_VAL_OFF, 0, true);
      continue;
    }
    low -= valBytes(len);
    n.buf.set(buf.subarray(off, off + len), low);
    n.dv.setUint16(h + OFF_VAL_OFF, low, true);
  }
  n.valLow = low;
  return n;
}

/**
 * Lay the node out into `out` (a zeroed block) as build.ts would: headers in key order, values
 * packed downward from valEnd in item order, balanced AVL, leaf hash table, header fields.
 */
function encodeNode(n: BtreeNode, out: Uint8Array): void {
  const nr = n.nr;
  const src = n.buf;
  const sdv = n.dv;
  const odv = view(out);
  // values start 8-aligned in both layouts: copy them as 32-bit words where the blocks are aligned
  const words = (src.byteOffset & 3) === 0 && (out.byteOffset & 3) === 0;
  // (Int32Array: always int32 to the JIT, see KeyWords)
  const s32 = words ? new Int32Array(src.buffer, src.byteOffset, BLOCK_LG_SIZE >> 2) : null;
  const o32 = words ? new Int32Array(out.buffer, out.byteOffset, BLOCK_LG_SIZE >> 2) : null;
  out.set(src.subarray(ITEMS_OFF, hdr(nr)), ITEMS_OFF);
  let low = valEndOf(n.level);
  let total = 0;
  for (let i = 0; i < nr; i++) {
    const h = hdr(i);
    const len = sdv.getUint16(h + OFF_VAL_LEN, true);
    let valOff = 0;
    if (len > 0) {
      const off = sdv.getUint16(h + OFF_VAL_OFF, true);
      low -= valBytes(len);
      valOff = low;
      if (len > 128) {
        out.set(src.subarray(off, off + len), low);
      } else {
        let b = 0;
        if (s32 !== null && o32 !== null) {
          const so = off >> 2;
          const oo = low >> 2;
          const nw = len >> 2;
          for (let k = 0; k < nw; k++) o32[oo + k] = s32[so + k]!;
          b = nw << 2;
        }
        for (; b < len; b++) out[low + b] = src[off + b]!;
      }
    }
    odv.setUint16(h + OFF_VAL_OFF, valOff, true);
    // the avl height pad byte, key padding and item padding are always zero on disk
    out[h + 7] = 0;
    out[h + OFF_KEY + 27] = 0;
    out[h + OFF_KEY + 28] = 0;
    out[h + OFF_KEY + 29] = 0;
    out[h + OFF_KEY + 30] = 0;
    out[h + OFF_KEY + 31] = 0;
    out[h + OFF_FLAGS + 1] = 0;
    out[h + OFF_FLAGS + 2] = 0;
    out[h + OFF_FLAGS + 3] = 0;
    total += ITEM + valBytes(len);
  }
  assert(total === n.bytes, `btree node accounting says ${n.bytes} bytes, its items use ${total}`);
  linkAndHash(out, n.level, nr, total);
}

/** The block was written: keep its canonical image (the same items) as the node's buffer. */
function writtenNode(n: BtreeNode, block: Uint8Array): void {
  n.buf.set(block);
  n.valLow = valEndOf(n.level) - (n.bytes - n.nr * ITEM);
}

export const btreeCodec: BlockCodec<BtreeNode> = {
  name: "btree",
  magic: BLOCK_MAGIC_BTREE,
  decode: decodeNode,
  encode: encodeNode,
  written: writtenNode,
  footprint: () => NODE_FOOTPRINT_BYTES,
};

/** For tests: the header size the codec leaves to the cache. */
export const BTREE_BLOCK_HEADER_BYTES = BtreeBlock.size;
