/**
 * Moving metadata blocks between the two kinds of allocator: the extent trees (meta_alloc) and the
 * alloc lists transactions allocate from. The server does this for its own transactions and for
 * mounts' lists; the standalone store does it for itself. The discipline is the same everywhere:
 * a list's blocks go back to extents only once the commit that freed them is durable.
 */
import type { ExtentAlloc } from "./extents.ts";
import { ListAlloc, emptyListHead, type ListHead } from "./list.ts";
import type { MetaCache } from "../block/cache.ts";

export interface ListWriter {
  cache: MetaCache;
  alloc: ListAlloc;
}

/**
 * Give every blkno of a list whose frees are durable back to `target` (contiguous runs as one
 * extent), free the list's own blocks through the writer's allocator, and empty the head.
 * Returns how many blknos went back.
 */
export function reclaimListInto(w: ListWriter, head: ListHead, target: ExtentAlloc): number {
  if (head.ref.blkno === 0n) return 0;
  const { blknos, listBlocks } = ListAlloc.listBlknos(w.cache, head);
  blknos.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  let i = 0;
  while (i < blknos.length) {
    let n = 1;
    while (i + n < blknos.length && blknos[i + n] === blknos[i]! + BigInt(n)) n++;
    target.insert(w, blknos[i]!, BigInt(n));
    i += n;
  }
  Object.assign(head, emptyListHead());
  for (const b of listBlocks) w.alloc.freeMeta(b);
  return blknos.length;
}

/**
 * Top up the writer's avail list to `target` blknos when it holds fewer than `lo`, taking the
 * front of the largest extents of the largest allocator first.
 */
export function refillAvailFrom(w: ListWriter, sources: readonly ExtentAlloc[], lo: number, target: number): void {
  if (w.alloc.avail.first_nr >= lo) return;
  let want = BigInt(target - w.alloc.avail.first_nr);
  const bySize = [...sources].sort((a, b) => (a.root.total_len > b.root.total_len ? -1 : a.root.total_len < b.root.total_len ? 1 : 0));
  for (const src of bySize) {
    while (want > 0n) {
      const e = src.allocLargest(w, want);
      if (!e) break;
      w.alloc.addAvail(e.start, e.len);
      want -= e.len;
    }
  }
}
