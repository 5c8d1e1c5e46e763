/**
 * What a transaction's writers need from the metadata allocator. Implemented by the alloc list
 * allocator (list.ts): blocks come from the transaction's avail list and frees go to its freed
 * list, so a block freed in a transaction is never reused before that transaction commits.
 */
import type { MetaCache } from "../block/cache.ts";

export interface MetaAlloc {
  /** A free metadata blkno for a new dirty block; ScoutfsError ENOSPC when none is left. */
  allocMeta(): bigint;
  /** Free a metadata block; it may be reused only after the current transaction commits. */
  freeMeta(blkno: bigint): void;
}

/** The context of every btree change: the cache holding dirty blocks and the allocator. */
export interface Writer {
  cache: MetaCache;
  alloc: MetaAlloc;
}
