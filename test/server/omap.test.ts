// open_ino_map through a real server and real clients over TCP: the asking mount gets the OR of
// every other mount's bitmap for the group (never its own), a mount that left for good counts as
// caching nothing, and anything malformed fails the request (the asking mount then keeps the inode).
import { afterAll, describe, expect, test } from "bun:test";
import {
  NET_CMD_OPEN_INO_MAP,
  NET_OPEN_INO_MAP_BITS_BYTES,
  openInoMapSet,
  openInoMapTest,
} from "../../src/format/net.ts";
import type { Client } from "../../src/client/client.ts";
import { connectClient, makeVolume, removeVolume, startServer, type Vol } from "./helpers.ts";

const vols: Vol[] = [];
afterAll(() => vols.forEach(removeVolume));

function bitsWith(...set: number[]): Uint8Array {
  const b = new Uint8Array(NET_OPEN_INO_MAP_BITS_BYTES);
  for (const i of set) openInoMapSet(b, i);
  return b;
}

function setBits(b: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < NET_OPEN_INO_MAP_BITS_BYTES * 8; i++) if (openInoMapTest(b, i)) out.push(i);
  return out;
}

describe("open_ino_map", () => {
  test("the asking mount gets the other mounts' bits ORed, for the group it asked, never its own", async () => {
    const v = await makeVolume("omap-or");
    vols.push(v);
    const server = startServer(v, 1n);
    const asked: bigint[] = [];
    const clients: Client[] = [];
    try {
      const a = await connectClient(v, { onOpenInoMap: () => bitsWith(9) });
      const b = await connectClient(v, { onOpenInoMap: (g) => (asked.push(g), g === 3n ? bitsWith(5, 64) : bitsWith()) });
      const c = await connectClient(v, { onOpenInoMap: (g) => (asked.push(g), g === 3n ? bitsWith(64, 1023) : bitsWith(1)) });
      clients.push(a, b, c);
      expect(setBits(await a.openInoMap(3n))).toEqual([5, 64, 1023]);
      expect(asked).toEqual([3n, 3n]);
      expect(setBits(await a.openInoMap(4n))).toEqual([1]);
      // b asking sees a's and c's bits, not its own
      expect(setBits(await b.openInoMap(3n))).toEqual([9, 64, 1023]);
      // a mount without the hook answers that it caches nothing
      const d = await connectClient(v);
      clients.push(d);
      expect(setBits(await d.openInoMap(4n))).toEqual([1, 9]);
      expect(server.omap.counters.requests).toBe(4);
    } finally {
      for (const c of clients) c.close();
      server.close();
    }
  }, 30_000);

  test("a mount that left without a farewell counts as caching nothing once the server drops it", async () => {
    const v = await makeVolume("omap-gone");
    vols.push(v);
    const server = startServer(v, 1n, { net: { reconnect_timeout_ms: 500, keepalive_timeout_ms: 4000 } });
    const clients: Client[] = [];
    try {
      const a = await connectClient(v);
      const gone = await connectClient(v, { onOpenInoMap: () => bitsWith(7) });
      clients.push(a);
      expect(setBits(await a.openInoMap(0n))).toEqual([7]);
      gone.close();
      // the request waits for it to come back, until its state is dropped: then it is left out
      const t0 = performance.now();
      expect(setBits(await a.openInoMap(0n))).toEqual([]);
      expect(performance.now() - t0).toBeLessThan(10_000);
      expect(server.omap.counters.gone).toBeGreaterThanOrEqual(1);
    } finally {
      for (const c of clients) c.close();
      server.close();
    }
  }, 30_000);

  test("malformed requests and answers fail the request instead of answering with fewer bits", async () => {
    const v = await makeVolume("omap-bad");
    vols.push(v);
    const server = startServer(v, 1n);
    const clients: Client[] = [];
    try {
      const a = await connectClient(v);
      clients.push(a);
      // a request of the wrong size
      await expect(a.net.request(NET_CMD_OPEN_INO_MAP, new Uint8Array(8))).rejects.toThrow(/EINVAL|16/);
      // another mount answering with a bitmap of the wrong size: its answer is an error, so is ours
      const bad = await connectClient(v, { onOpenInoMap: () => new Uint8Array(3) });
      clients.push(bad);
      await expect(a.openInoMap(1n)).rejects.toThrow();
    } finally {
      for (const c of clients) c.close();
      server.close();
    }
  }, 30_000);
});
