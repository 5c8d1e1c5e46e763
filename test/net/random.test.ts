// Seeded chaos: several clients and the server exchange many requests in both directions while
// connections are cut, frozen and dropped at random moments. Every request must complete with
// its own answer, and every handler must run exactly once per request. The seed is printed on
// failure; replay with NET_SEED=<seed> bun test test/net/random.test.ts.
import { afterEach, expect, test } from "bun:test";
import * as N from "../../src/format/net.ts";
import type { NetClient } from "../../src/net/client.ts";
import type { NetServer } from "../../src/net/server.ts";
import { TcpProxy, prng, startClient, startServer } from "./helpers.ts";

let servers: NetServer[] = [];
let clients: NetClient[] = [];
let proxies: TcpProxy[] = [];
afterEach(() => {
  for (const c of clients) c.close();
  for (const p of proxies) p.close();
  for (const s of servers) s.close();
  clients = [];
  servers = [];
  proxies = [];
});

const CLIENTS = 3;
/** Requests are issued in batches of this many, with a short random pause between batches... */
const BATCH = 20;
/** ...until at least this many faults have been injected and this many requests issued. */
const MIN_FAULTS = 40;
const MIN_REQUESTS = 200;
/** Requests in flight per client and direction (below the default max_pending_requests). */
const MAX_IN_FLIGHT = 300;

function pack(a: number, b: number): Uint8Array {
  const buf = new Uint8Array(8);
  const dv = new DataView(buf.buffer);
  dv.setUint32(0, a, true);
  dv.setUint32(4, b, true);
  return buf;
}

function unpack(buf: Uint8Array): [number, number] {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return [dv.getUint32(0, true), dv.getUint32(4, true)];
}

async function run(seed: number): Promise<void> {
  const rng = prng(seed);
  const server = startServer({ reconnect_timeout_ms: 10_000 });
  servers.push(server);
  const proxy = new TcpProxy(server.port);
  proxies.push(proxy);

  const serverRuns = new Map<string, number>();
  server.handle(N.NET_CMD_GET_LOG_TREES, async (req) => {
    const [c, n] = unpack(req.data);
    const key = `${c}:${n}`;
    serverRuns.set(key, (serverRuns.get(key) ?? 0) + 1);
    if ((n * 2654435761 + seed) % 4 === 0) await Bun.sleep((n + seed) % 7);
    return pack(c, n * 7 + c);
  });

  const clientRuns = new Map<string, number>();
  const cs: NetClient[] = [];
  for (let c = 0; c < CLIENTS; c++) {
    const client = startClient(() => proxy.port, { rid: 0x100n + BigInt(c) });
    clients.push(client);
    cs.push(client);
    client.handle(N.NET_CMD_LOCK, async (req) => {
      const [cc, n] = unpack(req.data);
      const key = `${cc}:${n}`;
      clientRuns.set(key, (clientRuns.get(key) ?? 0) + 1);
      if ((n + seed) % 3 === 0) await Bun.sleep((n * 13 + seed) % 5);
      return pack(cc, n + 1);
    });
  }
  await Promise.all(cs.map((c) => c.waitGreeted(5000)));

  let done = false;
  let faults = 0;
  const chaos = (async () => {
    while (!done) {
      await Bun.sleep(2 + Math.floor(rng() * 25));
      if (done) break;
      const r = rng();
      faults++;
      if (r < 0.55) {
        proxy.cut();
      } else if (r < 0.7) {
        proxy.freeze(true);
        await Bun.sleep(1 + Math.floor(rng() * 10));
        if (rng() < 0.5) proxy.cut();
        proxy.freeze(false);
      } else if (r < 0.85) {
        cs[Math.floor(rng() * CLIENTS)]!.dropConnection();
      } else {
        server.dropClientSocket(0x100n + BigInt(Math.floor(rng() * CLIENTS)));
      }
    }
  })();

  // Keep requests flowing in both directions until enough faults have hit them.
  const issued = { up: 0, down: 0 };
  const inflight = { up: new Array<number>(CLIENTS).fill(0), down: new Array<number>(CLIENTS).fill(0) };
  const work: Promise<void>[] = [];
  for (let c = 0; c < CLIENTS; c++) {
    const client = cs[c]!;
    work.push(
      (async () => {
        const ps: Promise<void>[] = [];
        for (let n = 0; faults < MIN_FAULTS || n < MIN_REQUESTS; n++) {
          while (inflight.up[c]! >= MAX_IN_FLIGHT) await Bun.sleep(1);
          issued.up++;
          inflight.up[c]!++;
          ps.push(
            client.request(N.NET_CMD_GET_LOG_TREES, pack(c, n)).then((resp) => {
              inflight.up[c]!--;
              expect(unpack(resp)).toEqual([c, n * 7 + c]);
            }),
          );
          if (n % BATCH === BATCH - 1) await Bun.sleep(Math.floor(rng() * 4));
        }
        await Promise.all(ps);
      })(),
    );
    work.push(
      (async () => {
        const ps: Promise<void>[] = [];
        for (let n = 0; faults < MIN_FAULTS || n < MIN_REQUESTS; n++) {
          while (inflight.down[c]! >= MAX_IN_FLIGHT) await Bun.sleep(1);
          issued.down++;
          inflight.down[c]!++;
          ps.push(
            server.request(client.rid, N.NET_CMD_LOCK, pack(c, n)).then((resp) => {
              inflight.down[c]!--;
              expect(unpack(resp)).toEqual([c, n + 1]);
            }),
          );
          if (n % BATCH === BATCH - 1) await Bun.sleep(Math.floor(rng() * 4));
        }
        await Promise.all(ps);
      })(),
    );
  }
  await Promise.all(work);
  done = true;
  await chaos;

  expect(serverRuns.size).toBe(issued.up);
  for (const [key, times] of serverRuns) expect(times, `server handler for ${key}`).toBe(1);
  expect(clientRuns.size).toBe(issued.down);
  for (const [key, times] of clientRuns) expect(times, `client handler for ${key}`).toBe(1);
  const resent = cs.reduce((n, c) => n + c.counters.resent_messages, server.counters.resent_messages);
  expect(resent).toBeGreaterThan(0);
  if (process.env.NET_TEST_LOG) {
    console.error(`seed ${seed}: ${faults} faults, ${issued.up} up / ${issued.down} down requests, ${resent} resent, greetings ${cs.map((c) => c.counters.greetings).join(",")}`);
  }
  expect(faults).toBeGreaterThan(0);
  expect(server.counters.recv_invalid_message).toBe(0);
  for (const c of cs) expect(c.counters.recv_invalid_message).toBe(0);
}

const seeds = process.env.NET_SEED
  ? [Number(process.env.NET_SEED)]
  : [Math.floor(Math.random() * 2 ** 31), Math.floor(Math.random() * 2 ** 31)];

for (const seed of seeds) {
  test(`random cuts with many requests in flight complete exactly once (seed ${seed})`, async () => {
    try {
      await run(seed);
    } catch (err) {
      console.error(`net random test failed: replay with NET_SEED=${seed} bun test test/net/random.test.ts`);
      throw err;
    }
  }, 20_000);
}
