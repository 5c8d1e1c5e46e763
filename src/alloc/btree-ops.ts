/**
 * The extent allocator's view of the COW btree: value-less items, seq 0, no flags (free extent
 * items carry neither, as in scoutfs).
 */
import { btreeDelete, btreeInsert, btreeNext } from "../btree/cow.ts";
import type { ExtentTreeOps } from "./extents.ts";

export const btreeExtentOps: ExtentTreeOps = {
  next: (cache, root, key) => btreeNext(cache, root, key),
  insert: (w, root, key, val) => btreeInsert(w, root, key, 0n, 0, val),
  delete: (w, root, key) => btreeDelete(w, root, key),
};
