// The lock server on the wire: grants as responses, invalidations sent to holders, write seqs
// from the server's seq counter, recovery of held locks by a restarted server.
import { afterAll, expect, test } from "bun:test";
import * as C from "../../src/format/constants.ts";
import { keyCompare, makeKey } from "../../src/format/key.ts";
import type { NetLock } from "../../src/format/net.ts";
import { connectClient, makeVolume, removeVolume, startServer, type Vol } from "./helpers.ts";

const vols: Vol[] = [];
afterAll(() => vols.forEach(removeVolume));

const K = makeKey(C.FS_ZONE, 1000n, 0);
const nl = (oldMode: number, newMode: number): NetLock => ({ key: K, write_seq: 0n, old_mode: oldMode, new_mode: newMode }) as NetLock;

test("grants, invalidation of a holder, write seqs, recovery after restart", async () => {
  const v = await makeVolume("locks");
  vols.push(v);
  let server = startServer(v, 1n);
  const held = new Map<string, number>();
  const invalidations: NetLock[] = [];
  const a = await connectClient(v, {
    onLockInvalidate: (req) => {
      invalidations.push(req);
      held.set("a", req.new_mode);
      return { ...req, old_mode: req.old_mode, new_mode: req.new_mode } as NetLock;
    },
    onLockRecover: (from) => (held.get("a") && keyCompare(K, from) >= 0 ? [{ key: K, write_seq: 77n, old_mode: held.get("a")!, new_mode: held.get("a")! } as NetLock] : []),
  });
  const b = await connectClient(v);
  try {
    const ga = await a.lock(nl(C.LOCK_NULL, C.LOCK_WRITE));
    held.set("a", C.LOCK_WRITE);
    expect(ga.new_mode).toBe(C.LOCK_WRITE);
    expect(ga.write_seq).toBeGreaterThan(0n);
    // b's read needs a to drop to read first
    const gb = await b.lock(nl(C.LOCK_NULL, C.LOCK_READ));
    expect(gb.new_mode).toBe(C.LOCK_READ);
    expect(invalidations.length).toBe(1);
    expect(invalidations[0]!.new_mode).toBe(C.LOCK_READ);
    expect(held.get("a")).toBe(C.LOCK_READ);
    // b's write needs a to drop to null; its write seq is newer than a's
    const gw = await b.lock(nl(C.LOCK_READ, C.LOCK_WRITE));
    expect(gw.write_seq).toBeGreaterThan(ga.write_seq);
    expect(invalidations.at(-1)!.new_mode).toBe(C.LOCK_NULL);
    // b leaves: its locks go; a can write again
    await b.farewell();
    b.close();
    const ga2 = await a.lock(nl(C.LOCK_NULL, C.LOCK_WRITE));
    held.set("a", C.LOCK_WRITE);
    expect(ga2.write_seq).toBeGreaterThan(gw.write_seq);

    // a new server recovers a's lock from a before granting anything, and seqs stay above it
    server.close();
    server = startServer(v, 2n);
    const deadline = Date.now() + 5000;
    while (server.locks.ls.inRecovery && Date.now() < deadline) await Bun.sleep(20);
    expect(server.locks.ls.inRecovery).toBe(false);
    expect(server.locks.ls.snapshot()).toEqual([{ key: `${C.FS_ZONE}.1000.0.0.0.0`, granted: [[a.rid, C.LOCK_WRITE]], requested: [], invalidated: [] }]);
    expect(server.t.currentSeq()).toBeGreaterThanOrEqual(77n);
  } finally {
    a.close();
    b.close();
    server.close();
  }
}, 30_000);
