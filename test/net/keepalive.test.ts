// Keepalive: a silent network (frozen proxy) is detected by both ends within
// keepalive_timeout_ms and the client reconnects; an idle healthy connection stays up on
// heartbeats; a socket that never greets is closed.
import { afterEach, describe, expect, test } from "bun:test";
import * as N from "../../src/format/net.ts";
import type { NetClient } from "../../src/net/client.ts";
import type { NetServer } from "../../src/net/server.ts";
import { RawPeer, TcpProxy, readU32, startClient, startServer, u32, until } from "./helpers.ts";

let servers: NetServer[] = [];
let clients: NetClient[] = [];
let proxies: TcpProxy[] = [];
let raws: RawPeer[] = [];
afterEach(() => {
  for (const r of raws) r.close();
  for (const c of clients) c.close();
  for (const p of proxies) p.close();
  for (const s of servers) s.close();
  raws = [];
  clients = [];
  servers = [];
  proxies = [];
});

const KEEPALIVE_MS = 120;

describe("keepalive", () => {
  test("a silent network closes both ends; the client reconnects and resends", async () => {
    const server = startServer({ keepalive_timeout_ms: KEEPALIVE_MS });
    servers.push(server);
    const proxy = new TcpProxy(server.port);
    proxies.push(proxy);
    const client = startClient(() => proxy.port, { keepalive_timeout_ms: KEEPALIVE_MS });
    clients.push(client);
    let calls = 0;
    server.handle(N.NET_CMD_GET_ROOTS, (req) => {
      calls++;
      return u32(readU32(req.data) + 1);
    });
    expect(readU32(await client.request(N.NET_CMD_GET_ROOTS, u32(1)))).toBe(2);

    proxy.freeze(true);
    const frozenAt = performance.now();
    const p = client.request(N.NET_CMD_GET_ROOTS, u32(10)); // swallowed by the frozen network
    await until(() => client.counters.keepalive_timeouts >= 1 && server.counters.keepalive_timeouts >= 1, 3000, "both ends to time out");
    const waited_ms = performance.now() - frozenAt;
    expect(waited_ms).toBeGreaterThanOrEqual(KEEPALIVE_MS * 0.9);
    expect(waited_ms).toBeLessThan(KEEPALIVE_MS * 4);
    proxy.freeze(false);
    expect(readU32(await p)).toBe(11);
    expect(calls).toBe(2);
    expect(client.counters.greetings).toBeGreaterThanOrEqual(2);
  });

  test("an idle healthy connection stays up on heartbeats", async () => {
    // longer than the other tests' timeout: a stall of the shared event loop (GC, another test's
    // leftovers) must not look like a dead peer here, where the point is that nothing times out
    const keepaliveMs = 400;
    const server = startServer({ keepalive_timeout_ms: keepaliveMs });
    servers.push(server);
    const client = startClient(() => server.port, { keepalive_timeout_ms: keepaliveMs });
    clients.push(client);
    server.handle(N.NET_CMD_GET_ROOTS, () => u32(3));
    expect(readU32(await client.request(N.NET_CMD_GET_ROOTS))).toBe(3);
    await Bun.sleep(keepaliveMs * 5);
    expect(client.counters.keepalive_timeouts).toBe(0);
    expect(server.counters.keepalive_timeouts).toBe(0);
    expect(client.counters.heartbeats_sent).toBeGreaterThan(2);
    expect(server.counters.heartbeats_recv).toBeGreaterThan(2);
    expect(client.counters.greetings).toBe(1);
    expect(readU32(await client.request(N.NET_CMD_GET_ROOTS))).toBe(3);
  });

  test("heartbeats acknowledge kept responses of an idle peer", async () => {
    const server = startServer({ keepalive_timeout_ms: KEEPALIVE_MS });
    servers.push(server);
    const client = startClient(() => server.port, { keepalive_timeout_ms: KEEPALIVE_MS });
    clients.push(client);
    server.handle(N.NET_CMD_GET_ROOTS, () => u32(3));
    await Promise.all(Array.from({ length: 20 }, () => client.request(N.NET_CMD_GET_ROOTS)));
    const conn = server["conns"].get(client.rid)!;
    // without further requests, only the client's heartbeats can tell the server it has them
    await until(() => conn.keptResponses === 0, 2000, "kept responses to be acknowledged");
  });

  test("a socket that never greets is closed after the keepalive timeout, heartbeats or not", async () => {
    const server = startServer({ keepalive_timeout_ms: KEEPALIVE_MS });
    servers.push(server);
    const raw = await RawPeer.connect(server.port);
    raws.push(raw);
    await until(() => raw.closed, 3000, "the silent socket to be closed");
    expect(server.counters.greeting_timeouts).toBe(1);
    // the server's own heartbeats arrived before it gave up
    expect(raw.frames.every((f) => f.h.seq === 0n && f.h.data_len === 0)).toBe(true);
  });
});
