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
import type { Client, ClientOptions } from "../../src/client/client.ts";
import type { Server, ServerOptions } from "../../src/server/server.ts";
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

/**
 * A fresh volume, its server and the clients `fn` connects with `connect` (each closed, and the
 * server, whatever happens).
 */
async function withServer(
  name: string,
  o: Partial<ServerOptions>,
  fn: (server: Server, connect: (co?: Partial<ClientOptions>) => Promise<Client>) => Promise<void>,
): Promise<void> {
  const v = await makeVolume(name);
  vols.push(v);
  const server = startServer(v, 1n, o);
  const clients: Client[] = [];
  const connect = async (co: Partial<ClientOptions> = {}) => {
    const c = await connectClient(v, co);
    clients.push(c);
    return c;
  };
  try {
    await fn(server, connect);
  } finally {
    for (const c of clients) c.close();
    server.close();
  }
}

describe("open_ino_map", () => {
  test("the asking mount gets the other mounts' bits ORed, for the group it asked, never its own", () =>
    withServer("omap-or", {}, async (server, connect) => {
      const asked: bigint[] = [];
      const a = await connect({ onOpenInoMap: () => bitsWith(9) });
      const b = await connect({ onOpenInoMap: (g) => (asked.push(g), g === 3n ? bitsWith(5, 64) : bitsWith()) });
      await connect({ onOpenInoMap: (g) => (asked.push(g), g === 3n ? bitsWith(64, 1023) : bitsWith(1)) });
      expect(setBits(await a.openInoMap(3n))).toEqual([5, 64, 1023]);
      expect(asked).toEqual([3n, 3n]);
      expect(setBits(await a.openInoMap(4n))).toEqual([1]);
      // b asking sees a's and c's bits, not its own
      expect(setBits(await b.openInoMap(3n))).toEqual([9, 64, 1023]);
      // a mount without the hook answers that it caches nothing
      const d = await connect();
      expect(setBits(await d.openInoMap(4n))).toEqual([1, 9]);
      expect(server.omap.counters.requests).toBe(4);
    }), 30_000);

  test("a mount that left without a farewell counts as caching nothing once the server drops it", () =>
    withServer("omap-gone", { net: { reconnect_timeout_ms: 500, keepalive_timeout_ms: 4000 } }, async (server, connect) => {
      const a = await connect();
      const gone = await connect({ onOpenInoMap: () => bitsWith(7) });
      expect(setBits(await a.openInoMap(0n))).toEqual([7]);
      gone.close();
      // the request waits for it to come back, until its state is dropped: then it is left out
      const t0 = performance.now();
      expect(setBits(await a.openInoMap(0n))).toEqual([]);
      expect(performance.now() - t0).toBeLessThan(10_000);
      expect(server.omap.counters.gone).toBeGreaterThanOrEqual(1);
    }), 30_000);

  test("malformed requests and answers fail the request instead of answering with fewer bits", () =>
    withServer("omap-bad", {}, async (_server, connect) => {
      const a = await connect();
      // a request of the wrong size
      await expect(a.net.request(NET_CMD_OPEN_INO_MAP, new Uint8Array(8))).rejects.toThrow(/EINVAL|16/);
      // another mount answering with a bitmap of the wrong size: its answer is an error, so is ours
      await connect({ onOpenInoMap: () => new Uint8Array(3) });
      await expect(a.openInoMap(1n)).rejects.toThrow();
    }), 30_000);
});
