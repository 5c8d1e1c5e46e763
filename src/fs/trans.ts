/**
 * The context every filesystem change runs in: one ItemStore transaction (`w`), the transaction
 * seq that inode meta_seq/data_seq take when an inode changes in it, and the volume's format
 * version. A Tx is made inside `store.transact()` and never outlives it, so every item change
 * of one operation commits atomically or not at all (a throw rolls the whole operation back).
 */
import type { ItemStore, ItemWriter } from "../item/types.ts";

export interface Tx {
  readonly w: ItemWriter;
  readonly store: ItemStore;
  /** store.transSeq() when the transaction began. */
  readonly seq: bigint;
  readonly fmtVers: number;
}

/** Run `fn` as one transaction of `store`. */
export function fsTransact<T>(store: ItemStore, fn: (tx: Tx) => T): T {
  return store.transact((w) => fn({ w, store, seq: store.transSeq(), fmtVers: store.fmtVers }));
}

export interface FsTime {
  sec: bigint;
  nsec: number;
}

let lastNs = 0n;

/** Wall-clock now with nanoseconds; strictly increasing within this process. */
export function fsNow(): FsTime {
  let ns = BigInt(Date.now()) * 1_000_000n + (process.hrtime.bigint() % 1_000_000n);
  if (ns <= lastNs) ns = lastNs + 1n;
  lastNs = ns;
  return { sec: ns / 1_000_000_000n, nsec: Number(ns % 1_000_000_000n) };
}
