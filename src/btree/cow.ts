/**
 * The copy-on-write btree engine (scoutfs btree.c, rebuilt for decoded nodes).
 *
 * Shape (as in scoutfs):
 * - Items live in leaves (level 0). A parent holds one item per child whose key is the greatest
 *   key in the child's subtree and whose value is the child's block ref. The right spine's parent
 *   items have the maximal key (PACKED_KEY_MAX), so appending beyond every key never rewrites a
 *   parent. Keys here are *exact*: a non-right-spine parent key always equals the greatest key
 *   below it (deleting a subtree's greatest item updates the keys above it), which check.ts
 *   verifies.
 * - All leaves are at the same depth; root.height counts levels (0 = empty tree, blkno 0).
 * - A full node splits to the left: its lower half (by bytes) moves to a new block inserted
 *   before it in the parent, so the existing block keeps its key. A full root grows the tree.
 * - A non-root node that falls under the low watermark (1/4 of a block) after a delete refills
 *   from a sibling (its left one if it has one): if the sibling holds at most 2 watermarks of
 *   items it is merged whole and freed, otherwise a watermark's worth of items moves over. A root
 *   parent left with one child is freed and the child becomes the root; a root leaf left empty
 *   is freed and the tree becomes empty.
 *
 * Differences from btree.c, all invisible on disk: splits and joins happen bottom-up after
 * descending (we hold the whole path as decoded nodes) instead of preemptively on the way down
 * with a restart; values never fragment (nodes are encoded compacted), so there is no
 * compaction step and a node splits exactly when a compacted block could not take the item.
 *
 * Copy-on-write: every write first descends from the root making each node on its path dirty.
 * A node that is not yet dirty in this transaction gets a new blkno from the allocator, a copy of
 * the clean node is registered with cache.create() (which picks its random seq), the old blkno is
 * freed (reusable only after the commit), and the parent item (or the root) is pointed at it. A
 * dirty node is changed in place. Clean nodes are never modified.
 *
 * Failure: a write allocates everything it needs (COW of the path and of a join sibling, new
 * blocks for splits, a new root) *before* it changes any item, and each COW step is complete
 * before the next allocation. So when the allocator throws ENOSPC (or a read throws ESTALE/EIO)
 * the operation has had no effect: the dirty tree is still a valid tree holding exactly the
 * results of the previous successful operations (some of its blocks may have been copied
 * needlessly). The committed tree is never touched. Callers normally abort the transaction with
 * cache.discardDirty() and their allocator's rollback; continuing is also safe.
 *
 * Reads need only a MetaCache and follow the root they are given. A block that is stale or bad
 * is ESTALE from the cache (the caller re-reads its root and retries); a block that verifies but
 * is inconsistent (wrong level, empty parent, keys beyond its parent's key) is EIO. A walk never
 * takes more steps than the tree has levels.
 *
 * Nodes are blocks changed in place (node.ts): items are addressed by index, keys compared in
 * the block's bytes. Items returned by reads are fresh objects with their own key and value.
 */
import { assert } from "../util/assert.ts";
import { ScoutfsError } from "../util/errors.ts";
import type { MetaCache } from "../block/cache.ts";
import type { Writer } from "../alloc/types.ts";
import { PACKED_KEY_LEN, PACKED_KEY_MAX, type PackedKey } from "../format/key.ts";
import type { BtreeRoot } from "../format/btree.ts";
import { BTREE_MAX_HEIGHT, BTREE_MAX_VAL_LEN, BLOCK_LG_SIZE } from "../format/constants.ts";
import { BtreeBlock } from "../format/btree.ts";
import { itemBytes } from "./build.ts";
import {
  btreeCodec,
  keyWords,
  keyWordsInto,
  nodeChildRef,
  nodeClone,
  nodeCmp,
  nodeCopyKey,
  nodeInsert,
  nodeInsertParent,
  nodeReadChild,
  nodeIsDead,
  nodeRecycle,
  nodeItem,
  nodeItemBytes,
  nodeKeyAt,
  nodeKeysEqual,
  nodeLowerBound,
  nodeMoveItems,
  nodeNew,
  nodeRemove,
  nodeReplace,
  nodeSetChild,
  nodeCapacity,
  PARENT_ITEM_BYTES,
  type BtreeItemView,
  type BtreeNode,
  type ChildRef,
  type KeyWords,
} from "./node.ts";

export type { BtreeNode, BtreeItemView } from "./node.ts";

/** The mutable in-memory root, mirroring scoutfs_btree_root. */
export interface BtreeRootRef {
  ref: { blkno: bigint; seq: bigint };
  height: number;
}

/** Nodes under this many item bytes are refilled from a sibling (a quarter block). */
export const JOIN_LOW_WATERMARK = Math.floor((BLOCK_LG_SIZE - BtreeBlock.size) / 4);

/** Events worth counting; tests and benchmarks read them. */
export const btreeCounters = {
  cow: 0,
  split: 0,
  join: 0,
  merge: 0,
  grow: 0,
  shrink: 0,
  freeDirty: 0,
};

/**
 * Test trigger: the height a tree may grow to. Real trees never get near BTREE_MAX_HEIGHT, so
 * tests lower this to exercise the limit.
 */
export const btreeLimits = { maxHeight: BTREE_MAX_HEIGHT };

export function emptyRoot(): BtreeRootRef {
  return { ref: { blkno: 0n, seq: 0n }, height: 0 };
}

export function rootFromStruct(r: BtreeRoot): BtreeRootRef {
  return { ref: { blkno: r.ref.blkno, seq: r.ref.seq }, height: r.height };
}

export function rootToStruct(r: BtreeRootRef): BtreeRoot {
  return { ref: { blkno: r.ref.blkno, seq: r.ref.seq }, height: r.height };
}

const MAX_WORDS = keyWords(PACKED_KEY_MAX);
/**
 * Key words for lookup/next/prev, which call nothing that could start another btree operation
 * before they are done with them (writes call the allocator, which may; scans call visitors).
 */
const readWords = keyWords(PACKED_KEY_MAX);

// ---------------------------------------------------------------------------------------------
// Reading

function eio(msg: string): ScoutfsError {
  return new ScoutfsError("EIO", `btree: ${msg}`);
}

function checkRoot(root: BtreeRootRef): void {
  if (root.height > BTREE_MAX_HEIGHT) throw eio(`root height ${root.height} exceeds ${BTREE_MAX_HEIGHT}`);
  if ((root.height === 0) !== (root.ref.blkno === 0n)) throw eio(`root height ${root.height} with blkno ${root.ref.blkno}`);
}

/** Read the node a ref names and check that it sits at the level the walk expects. */
function btree_read_node(cache: MetaCache, ref: ChildRef, level: number): BtreeNode {
  const node = cache.read(ref, btreeCodec);
  if (node.level !== level) throw eio(`block ${ref.blkno} has level ${node.level}, expected ${level}`);
  if (level > 0 && node.nr === 0) throw eio(`parent block ${ref.blkno} has no items`);
  return node;
}

/** Read the child of parent item i and check that it sits one level below. */
function btree_read_child(cache: MetaCache, parent: BtreeNode, i: number): BtreeNode {
  const node = nodeReadChild(cache, parent, i);
  const level = parent.level - 1;
  if (node.level !== level) throw eio(`block ${nodeChildRef(parent, i).blkno} has level ${node.level}, expected ${level}`);
  if (level > 0 && node.nr === 0) throw eio(`parent block ${nodeChildRef(parent, i).blkno} has no items`);
  return node;
}

/** Index of the child whose subtree holds `key`; EIO when the parent's keys end before it. */
function childIndex(node: BtreeNode, w: KeyWords): number {
  const i = nodeLowerBound(node, w);
  if (i === node.nr) throw eio(`key beyond the last parent key at level ${node.level}`);
  return i;
}

function checkKey(key: PackedKey): void {
  if (typeof key !== "string" || key.length !== PACKED_KEY_LEN) throw new ScoutfsError("EINVAL", `btree key must be a ${PACKED_KEY_LEN}-char packed key`);
}

/** The item with exactly `key`, or null. */
export function btreeLookup(cache: MetaCache, root: BtreeRootRef, key: PackedKey): BtreeItemView | null {
  checkRoot(root);
  if (root.height === 0) return null;
  const w = keyWordsInto(key, readWords);
  let node = btree_read_node(cache, root.ref, root.height - 1);
  while (node.level > 0) node = btree_read_child(cache, node, childIndex(node, w));
  const i = nodeLowerBound(node, w);
  return i < node.nr && nodeCmp(node, i, w) === 0 ? nodeItem(node, i, key) : null;
}

/**
 * A read path from the root to a leaf: nodes[l] is the node at level l, idx[l] the position of
 * the item followed (for the leaf, the lower bound of the search key).
 */
interface Path {
  nodes: BtreeNode[];
  idx: number[];
}

function btree_read_path(cache: MetaCache, root: BtreeRootRef, w: KeyWords): Path {
  return btree_read_path_into(cache, root, w, { nodes: new Array(root.height), idx: new Array(root.height) });
}

/**
 * Paths btreeNext and btreePrev walk in, one per height, reused: those two allocate nothing but
 * the item they return (they call nothing that could start another walk before they are done,
 * as with `readWords`). Scans and ranges hold their paths across callers' code: their own.
 */
const scratchPaths: Path[] = [];

function scratchPath(height: number): Path {
  let p = scratchPaths[height];
  if (p === undefined) scratchPaths[height] = p = { nodes: new Array(height), idx: new Array(height) };
  return p;
}

function btree_read_path_into(cache: MetaCache, root: BtreeRootRef, w: KeyWords, p: Path): Path {
  const { nodes, idx } = p;
  let node = btree_read_node(cache, root.ref, root.height - 1);
  for (let level = root.height - 1; level > 0; level--) {
    nodes[level] = node;
    const i = childIndex(node, w);
    idx[level] = i;
    node = btree_read_child(cache, node, i);
  }
  nodes[0] = node;
  idx[0] = nodeLowerBound(node, w);
  return p;
}

/**
 * A walk that let its caller run (a scan's visitor, a range's consumer) checks that the nodes it
 * holds were not copied-on-write or freed meanwhile: their buffers may already hold other blocks.
 */
function btree_path_stale(p: Path): void {
  for (const n of p.nodes) if (nodeIsDead(n)) throw new ScoutfsError("ESTALE", "btree changed while it was being scanned");
}

/**
 * Move the path to the first item of the next leaf; false at the end of the tree. Skips empty
 * leaves (only a tree written elsewhere has them).
 */
function btree_path_next_leaf(cache: MetaCache, p: Path): boolean {
  const height = p.nodes.length;
  let level = 1;
  while (level < height && p.idx[level]! + 1 >= p.nodes[level]!.nr) level++;
  if (level >= height) return false;
  p.idx[level]!++;
  for (; level > 0; level--) {
    const child = btree_read_child(cache, p.nodes[level]!, p.idx[level]!);
    p.nodes[level - 1] = child;
    p.idx[level - 1] = 0;
  }
  return p.nodes[0]!.nr > 0 || btree_path_next_leaf(cache, p);
}

/** Move the path to the last item of the previous leaf; false at the start of the tree. */
function btree_path_prev_leaf(cache: MetaCache, p: Path): boolean {
  const height = p.nodes.length;
  let level = 1;
  while (level < height && p.idx[level] === 0) level++;
  if (level >= height) return false;
  p.idx[level]!--;
  for (; level > 0; level--) {
    const child = btree_read_child(cache, p.nodes[level]!, p.idx[level]!);
    p.nodes[level - 1] = child;
    p.idx[level - 1] = child.nr - 1;
  }
  return p.nodes[0]!.nr > 0 || btree_path_prev_leaf(cache, p);
}

/** Key words of the bound of a btreeNext/btreePrev (no allocation, as `readWords`). */
const boundWords = keyWords(PACKED_KEY_MAX);

/**
 * Is item i of `leaf` beyond `bound` (after it when `after`, else before it)? Compared in the
 * block, so an item a bounded read does not want costs no key string and no value copy: reads of
 * an empty range (a name, an xattr, an extent that is not there) are most of them.
 */
function beyond(leaf: BtreeNode, i: number, bound: PackedKey | undefined, after: boolean): boolean {
  if (bound === undefined || bound.length !== PACKED_KEY_LEN) return false;
  const c = nodeCmp(leaf, i, keyWordsInto(bound, boundWords));
  return after ? c > 0 : c < 0;
}

/** The first item with key >= `key`, or null; null too when it is after `last` (if given). */
export function btreeNext(cache: MetaCache, root: BtreeRootRef, key: PackedKey, last?: PackedKey): BtreeItemView | null {
  checkRoot(root);
  if (root.height === 0) return null;
  const p = btree_read_path_into(cache, root, keyWordsInto(key, readWords), scratchPath(root.height));
  let i = p.idx[0]!;
  if (i >= p.nodes[0]!.nr) {
    if (!btree_path_next_leaf(cache, p)) return null;
    i = 0;
  }
  const leaf = p.nodes[0]!;
  return beyond(leaf, i, last, true) ? null : nodeItem(leaf, i);
}

/** The last item with key <= `key`, or null; null too when it is before `first` (if given). */
export function btreePrev(cache: MetaCache, root: BtreeRootRef, key: PackedKey, first?: PackedKey): BtreeItemView | null {
  checkRoot(root);
  if (root.height === 0) return null;
  const w = keyWordsInto(key, readWords);
  const p = btree_read_path_into(cache, root, w, scratchPath(root.height));
  const leaf = p.nodes[0]!;
  const i = p.idx[0]!;
  if (i < leaf.nr && nodeCmp(leaf, i, w) === 0) return beyond(leaf, i, first, false) ? null : nodeItem(leaf, i, key);
  if (i > 0) return beyond(leaf, i - 1, first, false) ? null : nodeItem(leaf, i - 1);
  if (!btree_path_prev_leaf(cache, p)) return null;
  const prevLeaf = p.nodes[0]!;
  return beyond(prevLeaf, prevLeaf.nr - 1, first, false) ? null : nodeItem(prevLeaf, prevLeaf.nr - 1);
}

/**
 * Call `visit` for each item with start <= key <= end in key order, leaf by leaf (one descent,
 * then sideways moves through the held path). `visit` returns false to stop early. Returns the
 * number of items visited. The tree must not be changed by `visit`.
 */
export function btreeScan(
  cache: MetaCache,
  root: BtreeRootRef,
  start: PackedKey,
  end: PackedKey,
  visit: (item: BtreeItemView) => boolean | void,
): number {
  checkRoot(root);
  if (root.height === 0 || end < start) return 0;
  const endW = keyWords(end);
  const p = btree_read_path(cache, root, keyWords(start));
  let n = 0;
  let i = p.idx[0]!;
  for (;;) {
    const leaf = p.nodes[0]!;
    const from = i;
    try {
      for (; i < leaf.nr; i++) {
        if (nodeCmp(leaf, i, endW) > 0) return n;
        n++;
        if (visit(nodeItem(leaf, i)) === false) return n;
        btree_path_stale(p);
      }
    } finally {
      // each returned item is garbage soon: let the cache pace collections by it too
      cache.pace(i - from);
    }
    // the leaf's bound: nothing beyond it can be <= end if the bound already reaches end
    if (p.nodes.length > 1 && nodeCmp(p.nodes[1]!, p.idx[1]!, endW) >= 0) return n;
    if (!btree_path_next_leaf(cache, p)) return n;
    i = 0;
  }
}

/** Items with start <= key <= end in key order; the tree must not change while iterating. */
export function* btreeRange(cache: MetaCache, root: BtreeRootRef, start: PackedKey, end: PackedKey): Generator<BtreeItemView> {
  checkRoot(root);
  if (root.height === 0 || end < start) return;
  const endW = keyWords(end);
  const p = btree_read_path(cache, root, keyWords(start));
  let i = p.idx[0]!;
  for (;;) {
    const leaf = p.nodes[0]!;
    for (; i < leaf.nr; i++) {
      if (nodeCmp(leaf, i, endW) > 0) return;
      cache.pace(1);
      yield nodeItem(leaf, i);
      // the caller ran between items: the tree must not have changed under the held path
      btree_path_stale(p);
    }
    if (p.nodes.length > 1 && nodeCmp(p.nodes[1]!, p.idx[1]!, endW) >= 0) return;
    if (!btree_path_next_leaf(cache, p)) return;
    i = 0;
  }
}

/** Number of items in the tree (reads every leaf). */
export function btreeCount(cache: MetaCache, root: BtreeRootRef): number {
  let n = 0;
  btreeWalkNodes(cache, root, (node) => {
    if (node.level === 0) n += node.nr;
  });
  return n;
}

/** Every item in key order (for tests and tools). */
export function btreeItems(cache: MetaCache, root: BtreeRootRef): BtreeItemView[] {
  const out: BtreeItemView[] = [];
  btreeWalkNodes(cache, root, (node) => {
    if (node.level === 0) for (let i = 0; i < node.nr; i++) out.push(nodeItem(node, i));
  });
  return out;
}

/** Visit every node depth first, children in key order, with the ref that reached it. */
export function btreeWalkNodes(
  cache: MetaCache,
  root: BtreeRootRef,
  visit: (node: BtreeNode, ref: { blkno: bigint; seq: bigint }) => void,
): void {
  checkRoot(root);
  if (root.height === 0) return;
  const walk = (ref: ChildRef, level: number): void => {
    const node = btree_read_node(cache, ref, level);
    visit(node, ref);
    if (level > 0) for (let i = 0; i < node.nr; i++) walk(nodeChildRef(node, i), level - 1);
  };
  walk(root.ref, root.height - 1);
}

// ---------------------------------------------------------------------------------------------
// Copy-on-write

/**
 * Make the node `ref` names dirty and return it: in place if it already is dirty in this
 * transaction, otherwise as a copy in a newly allocated block, which item i of `parent` (or, with
 * no parent, `root`) then points at. Allocation comes first, so a failure leaves nothing half done.
 */
function btree_dirty_ref(w: Writer, ref: ChildRef, level: number, root: BtreeRootRef | null, parent: BtreeNode | null, i: number): BtreeNode {
  const cache = w.cache;
  if (cache.isDirty(ref.blkno)) return btree_read_node(cache, ref, level);
  const clean = btree_read_node(cache, ref, level);
  const blkno = w.alloc.allocMeta();
  const copy = nodeClone(clean);
  const seq = cache.create(blkno, btreeCodec, copy);
  if (parent !== null) nodeSetChild(parent, i, blkno, seq);
  else root!.ref = { blkno, seq };
  w.alloc.freeMeta(ref.blkno);
  // The old version is dead once this transaction commits; dropping it now keeps the cache
  // from holding two versions of every block the transaction touches. A reader of the
  // committed tree that still wants it reads it back from the device (it is not reused yet).
  cache.invalidate(ref.blkno);
  nodeRecycle(clean);
  btreeCounters.cow++;
  return copy;
}

function btree_dirty_root(w: Writer, root: BtreeRootRef): BtreeNode {
  return btree_dirty_ref(w, root.ref, root.height - 1, root, null, 0);
}

/** Make the child of parent item i dirty (the parent must be dirty). */
function btree_dirty_child(w: Writer, parent: BtreeNode, i: number): BtreeNode {
  return btree_dirty_ref(w, nodeChildRef(parent, i), parent.level - 1, null, parent, i);
}

/** A path of dirty nodes from the root down to the leaf that holds (or would hold) `key`. */
function btree_dirty_path(w: Writer, root: BtreeRootRef, kw: KeyWords): Path {
  const h = root.height;
  const nodes: BtreeNode[] = new Array(h);
  const idx: number[] = new Array(h);
  let node = btree_dirty_root(w, root);
  for (let level = h - 1; ; level--) {
    nodes[level] = node;
    if (level === 0) {
      idx[0] = nodeLowerBound(node, kw);
      return { nodes, idx };
    }
    const i = childIndex(node, kw);
    idx[level] = i;
    node = btree_dirty_child(w, node, i);
  }
}

/** Allocate `n` blknos up front; on failure the ones already taken are freed again. */
function btree_alloc_n(w: Writer, n: number): bigint[] {
  const out: bigint[] = [];
  try {
    while (out.length < n) out.push(w.alloc.allocMeta());
  } catch (err) {
    for (const b of out) w.alloc.freeMeta(b);
    throw err;
  }
  return out;
}

/** A dirty block is no longer part of the tree: it will not be written, and its blkno is freed. */
function btree_free_dirty(w: Writer, blkno: bigint): void {
  const node = w.cache.getDirty(blkno, btreeCodec);
  w.cache.forgetDirty(blkno);
  nodeRecycle(node);
  w.alloc.freeMeta(blkno);
  btreeCounters.freeDirty++;
}

function checkVal(val: Uint8Array): void {
  if (val.length > BTREE_MAX_VAL_LEN) {
    throw new ScoutfsError("EINVAL", `btree value of ${val.length} bytes exceeds the ${BTREE_MAX_VAL_LEN} byte maximum`);
  }
}

const enum Mode {
  Insert,
  Update,
  Force,
}

export function btreeInsert(w: Writer, root: BtreeRootRef, key: PackedKey, seq: bigint, flags: number, val: Uint8Array): void {
  btree_write(w, root, key, seq, flags, val, Mode.Insert);
}

export function btreeUpdate(w: Writer, root: BtreeRootRef, key: PackedKey, seq: bigint, flags: number, val: Uint8Array): void {
  btree_write(w, root, key, seq, flags, val, Mode.Update);
}

/** Insert or replace. */
export function btreeForce(w: Writer, root: BtreeRootRef, key: PackedKey, seq: bigint, flags: number, val: Uint8Array): void {
  btree_write(w, root, key, seq, flags, val, Mode.Force);
}

/** An item waiting to go into a node: a leaf item, or a parent item (value = encoded ref). */
interface Pending {
  key: PackedKey;
  seq: bigint;
  flags: number;
  val: Uint8Array | null;
  child: ChildRef | null;
}

function insertPending(node: BtreeNode, pos: number, it: Pending): void {
  if (it.child !== null) nodeInsertParent(node, pos, it.key, it.child.blkno, it.child.seq);
  else nodeInsert(node, pos, it.key, it.seq, it.flags, it.val!);
}

function btree_write(w: Writer, root: BtreeRootRef, key: PackedKey, seq: bigint, flags: number, val: Uint8Array, mode: Mode): void {
  checkKey(key);
  checkVal(val);
  checkRoot(root);
  flags &= 0xff;

  if (root.height === 0) {
    if (mode === Mode.Update) throw new ScoutfsError("ENOENT", "btree update of a missing item");
    const blkno = w.alloc.allocMeta();
    const leaf = nodeNew(0);
    nodeInsert(leaf, 0, key, seq, flags, val);
    root.ref = { blkno, seq: w.cache.create(blkno, btreeCodec, leaf) };
    root.height = 1;
    btreeCounters.grow++;
    return;
  }

  const kw = keyWords(key);
  const p = btree_dirty_path(w, root, kw);
  const leaf = p.nodes[0]!;
  const i = p.idx[0]!;
  const found = i < leaf.nr && nodeCmp(leaf, i, kw) === 0;
  if (found && mode === Mode.Insert) throw new ScoutfsError("EEXIST", "btree insert of an existing item");
  if (!found && mode === Mode.Update) throw new ScoutfsError("ENOENT", "btree update of a missing item");

  const oldBytes = found ? nodeItemBytes(leaf, i) : 0;
  const newBytes = itemBytes(val.length);
  if (leaf.bytes - oldBytes + newBytes <= nodeCapacity(0)) {
    if (found) nodeReplace(leaf, i, seq, flags, val);
    else nodeInsert(leaf, i, key, seq, flags, val);
    return;
  }
  btree_split_insert(w, root, p, found, { key, seq, flags, val, child: null });
}

/** Number of items from the front of `node` whose bytes first reach `want`, and their bytes. */
function countFront(node: BtreeNode, want: number): { n: number; bytes: number } {
  let n = 0;
  let bytes = 0;
  while (bytes < want && n < node.nr) bytes += nodeItemBytes(node, n++);
  return { n, bytes };
}

/** Number of items from the back of `node` whose bytes first reach `want`, and their bytes. */
function countBack(node: BtreeNode, want: number): { n: number; bytes: number } {
  let n = 0;
  let bytes = 0;
  while (bytes < want && n < node.nr) bytes += nodeItemBytes(node, node.nr - 1 - n++);
  return { n, bytes };
}

/**
 * Split the leaf (and as many full parents above it as needed, and the root) to make room for
 * `item`. Every block is allocated before anything changes.
 */
function btree_split_insert(w: Writer, root: BtreeRootRef, p: Path, found: boolean, item: Pending): void {
  const h = root.height;
  // levels 0..splits-1 split; each split adds one item to the level above
  let splits = 1;
  while (splits < h && p.nodes[splits]!.bytes + PARENT_ITEM_BYTES > nodeCapacity(splits)) splits++;
  const grow = splits === h;
  if (grow && h + 1 > btreeLimits.maxHeight) {
    throw new ScoutfsError("ENOSPC", `btree would grow beyond the maximum height of ${btreeLimits.maxHeight}`);
  }
  const blknos = btree_alloc_n(w, splits + (grow ? 1 : 0));

  const leaf = p.nodes[0]!;
  const i = p.idx[0]!;
  if (found) nodeRemove(leaf, i, i + 1);

  // Insert the pending item at position `pos` of level `level`, splitting first if it must.
  let pending: Pending = item;
  let pos = i;
  for (let level = 0; level < splits; level++) {
    const right = p.nodes[level]!;
    const moved = countFront(right, right.bytes >> 1);
    assert(moved.n > 0 && moved.n < right.nr, `split of a node with ${right.nr} items`);
    const left = nodeNew(level);
    nodeMoveItems(left, false, right, 0, moved.n);
    if (pos < left.nr) insertPending(left, pos, pending);
    else insertPending(right, pos - left.nr, pending);
    assert(left.bytes <= nodeCapacity(level) && right.bytes <= nodeCapacity(level), "split halves overflow");
    const blkno = blknos[level]!;
    const seq = w.cache.create(blkno, btreeCodec, left);
    btreeCounters.split++;
    // the new left block goes right before the (unchanged) right block in the level above
    pending = { key: nodeKeyAt(left, left.nr - 1), seq: 0n, flags: 0, val: null, child: { blkno, seq } };
    pos = level + 1 < h ? p.idx[level + 1]! : 0;
  }

  if (grow) {
    const blkno = blknos[splits]!;
    const newRoot = nodeNew(h);
    insertPending(newRoot, 0, pending);
    nodeInsertParent(newRoot, 1, PACKED_KEY_MAX, root.ref.blkno, root.ref.seq);
    root.ref = { blkno, seq: w.cache.create(blkno, btreeCodec, newRoot) };
    root.height = h + 1;
    btreeCounters.grow++;
  } else {
    const parent = p.nodes[splits]!;
    assert(parent.bytes + PARENT_ITEM_BYTES <= nodeCapacity(splits), "parent overflow after split");
    insertPending(parent, pos, pending);
  }
}

/** Delete the item with `key`; ENOENT if there is none. */
export function btreeDelete(w: Writer, root: BtreeRootRef, key: PackedKey): void {
  checkKey(key);
  checkRoot(root);
  if (root.height === 0) throw new ScoutfsError("ENOENT", "btree delete of a missing item");
  const kw = keyWords(key);
  const p = btree_dirty_path(w, root, kw);
  const h = root.height;
  const leaf = p.nodes[0]!;
  const i = p.idx[0]!;
  if (!(i < leaf.nr && nodeCmp(leaf, i, kw) === 0)) throw new ScoutfsError("ENOENT", "btree delete of a missing item");
  const gone = nodeItemBytes(leaf, i);

  // Plan the joins bottom-up and make each sibling dirty before changing anything: level l joins
  // if its node would fall under the watermark; a whole merge removes an item from level l+1.
  const joins: { level: number; sib: BtreeNode; sibIdx: number; whole: boolean }[] = [];
  let removed = gone;
  for (let level = 0; level + 1 < h; level++) {
    const node = p.nodes[level]!;
    if (node.bytes - removed >= JOIN_LOW_WATERMARK) break;
    const parent = p.nodes[level + 1]!;
    if (parent.nr < 2) break;
    const at = p.idx[level + 1]!;
    const sibIdx = at > 0 ? at - 1 : at + 1;
    const sib = btree_dirty_child(w, parent, sibIdx);
    const whole = sib.bytes <= 2 * JOIN_LOW_WATERMARK;
    joins.push({ level, sib, sibIdx, whole });
    if (!whole) break;
    removed = PARENT_ITEM_BYTES;
  }

  // Nothing can fail from here on.
  nodeRemove(leaf, i, i + 1);
  if (h === 1) {
    if (leaf.nr === 0) {
      btree_free_dirty(w, root.ref.blkno);
      root.ref = { blkno: 0n, seq: 0n };
      root.height = 0;
      btreeCounters.shrink++;
    }
    return;
  }
  // Deleting a subtree's greatest key lowers the keys above it (exact parent keys).
  if (i === leaf.nr && leaf.nr > 0) btree_fix_keys(p, 0);

  for (const j of joins) btree_join(w, p, j.level, j.sib, j.sibIdx, j.whole);
  btree_shrink(w, root);
}

/**
 * The last item of nodes[level] changed: set its key in the parent, and so on upward while it is
 * the parent's last item. Right spine keys (PACKED_KEY_MAX) stay.
 */
function btree_fix_keys(p: Path, level: number): void {
  for (let l = level; l + 1 < p.nodes.length; l++) {
    const node = p.nodes[l]!;
    const parent = p.nodes[l + 1]!;
    const at = p.idx[l + 1]!;
    if (nodeCmp(parent, at, MAX_WORDS) === 0 || node.nr === 0) return;
    if (nodeKeysEqual(parent, at, node, node.nr - 1)) return;
    nodeCopyKey(parent, at, node, node.nr - 1);
    if (at !== parent.nr - 1) return;
  }
}

/**
 * Refill nodes[level] (under the watermark) from its sibling: merge the sibling whole and free
 * it, or move a watermark's worth of the sibling's items next to ours.
 */
function btree_join(w: Writer, p: Path, level: number, sib: BtreeNode, sibIdx: number, whole: boolean): void {
  const node = p.nodes[level]!;
  const parent = p.nodes[level + 1]!;
  const at = p.idx[level + 1]!;
  assert(Math.abs(sibIdx - at) === 1, "join sibling is not adjacent");
  btreeCounters.join++;
  if (whole) {
    btreeCounters.merge++;
    const sibBlkno = nodeChildRef(parent, sibIdx).blkno;
    if (sibIdx < at) {
      nodeMoveItems(node, true, sib, 0, sib.nr);
    } else {
      nodeMoveItems(node, false, sib, 0, sib.nr);
      // our subtree now ends where the sibling's did
      nodeCopyKey(parent, at, parent, sibIdx);
    }
    assert(node.bytes <= nodeCapacity(level), "join merge overflow");
    nodeRemove(parent, sibIdx, sibIdx + 1);
    btree_free_dirty(w, sibBlkno);
    if (sibIdx < at) p.idx[level + 1] = at - 1;
  } else if (sibIdx < at) {
    const m = countBack(sib, JOIN_LOW_WATERMARK);
    nodeMoveItems(node, true, sib, sib.nr - m.n, sib.nr);
    nodeCopyKey(parent, sibIdx, sib, sib.nr - 1);
  } else {
    const m = countFront(sib, JOIN_LOW_WATERMARK);
    nodeMoveItems(node, false, sib, 0, m.n);
  }
  assert(node.bytes <= nodeCapacity(level) && (whole || sib.nr > 0), "join overflowed or emptied the sibling");
  // our greatest key may have changed (items came from the right, or we were empty)
  btree_fix_keys(p, level);
}

/** A root parent with a single child is replaced by the child; an empty root leaf empties the tree. */
function btree_shrink(w: Writer, root: BtreeRootRef): void {
  for (;;) {
    const node = w.cache.getDirty(root.ref.blkno, btreeCodec);
    if (root.height > 1 && node.nr === 1) {
      const child = nodeChildRef(node, 0);
      btree_free_dirty(w, root.ref.blkno);
      root.ref = { blkno: child.blkno, seq: child.seq };
      root.height--;
      btreeCounters.shrink++;
      continue;
    }
    if (root.height === 1 && node.nr === 0) {
      btree_free_dirty(w, root.ref.blkno);
      root.ref = { blkno: 0n, seq: 0n };
      root.height = 0;
      btreeCounters.shrink++;
    }
    return;
  }
}
