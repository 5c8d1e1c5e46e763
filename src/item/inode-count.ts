/**
 * The volume's inode count, kept the scoutfs way: the super block's `inode_count` is the count
 * at the last merge, and every mount's log_trees item carries `inode_count_delta`, inodes its
 * transactions created minus those they deleted (scoutfs forest.c inc/dec_inode_count). statfs
 * adds the deltas of every log tree to the super's count (server.ts statfs); a merge folds a
 * tree's delta into the super when it frees the tree.
 *
 * A store counts per transaction and keeps the count only if the transaction commits: a rolled
 * back transaction (a lock retry, ENOSPC) created or deleted nothing. Nested transactions roll
 * back only their own part, like the item cache's.
 */
export class InodeCountDelta {
  /** Counted by the transaction in progress (outer and nested ones together). */
  private inTx = 0;
  /** Counted by committed transactions, not yet taken by a commit. */
  private pending = 0;

  /** Run transaction `fn`: an outer one (`nested` false) keeps its count if it returns. */
  run<T>(nested: boolean, fn: () => T): T {
    const mark = nested ? this.inTx : 0;
    if (!nested) this.inTx = 0;
    let r: T;
    try {
      r = fn();
    } catch (err) {
      this.inTx = mark;
      throw err;
    }
    if (!nested) {
      this.pending += this.inTx;
      this.inTx = 0;
    }
    return r;
  }

  /** The transaction in progress created (+1) or deleted (-1) an inode. */
  add(delta: number): void {
    this.inTx += delta;
  }

  /** A commit takes what committed transactions counted. */
  take(): number {
    const n = this.pending;
    this.pending = 0;
    return n;
  }

  /** The commit that took `n` failed before anything of it was durable: count it again. */
  giveBack(n: number): void {
    this.pending += n;
  }
}
