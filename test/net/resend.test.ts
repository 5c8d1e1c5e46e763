// Reliable delivery across reconnects: connections cut mid-stream (through a proxy) while
// requests are in flight or being processed, resend after the greeting, no duplicate
// processing, failover to a new server, reconnect timeouts and farewells.
import { afterEach, describe, expect, test } from "bun:test";
import * as N from "../../src/format/net.ts";
import { ScoutfsError } from "../../src/util/errors.ts";
import type { NetClient } from "../../src/net/client.ts";
import type { NetServer } from "../../src/net/server.ts";
import { TcpProxy, readU32, startClient, startServer, u32, until } from "./helpers.ts";

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

function setup(serverOpts: Parameters<typeof startServer>[0] = {}, clientOpts: Parameters<typeof startClient>[1] = {}) {
  const server = startServer(serverOpts);
  const proxy = new TcpProxy(server.port);
  const client = startClient(() => proxy.port, clientOpts);
  servers.push(server);
  proxies.push(proxy);
  clients.push(client);
  return { server, proxy, client };
}

describe("resend across reconnects", () => {
  test("a cut while responses are in flight: every request completes, each handler runs once", async () => {
    const { server, proxy, client } = setup();
    const ran = new Map<number, number>();
    server.handle(N.NET_CMD_GET_LOG_TREES, async (req) => {
      const n = readU32(req.data);
      ran.set(n, (ran.get(n) ?? 0) + 1);
      await Bun.sleep(n % 5);
      return u32(n * 2);
    });
    await client.waitGreeted(2000);
    const count = 300;
    const ps = Array.from({ length: count }, (_, n) => client.request(N.NET_CMD_GET_LOG_TREES, u32(n)));
    await until(() => ran.size > 20, 2000, "some requests to arrive");
    proxy.cut();
    const rs = await Promise.all(ps);
    rs.forEach((r, n) => expect(readU32(r)).toBe(n * 2));
    expect(ran.size).toBe(count);
    for (const [n, times] of ran) expect(times, `request ${n}`).toBe(1);
    expect(client.counters.greetings).toBe(2);
    expect(client.counters.resent_messages).toBeGreaterThan(0);
  });

  test("a handler still running when the socket dies: its response arrives on the next socket", async () => {
    const { server, proxy, client } = setup();
    let calls = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    server.handle(N.NET_CMD_COMMIT_LOG_TREES, async () => {
      calls++;
      await gate;
      return u32(1234);
    });
    await client.waitGreeted(2000);
    const p = client.request(N.NET_CMD_COMMIT_LOG_TREES, u32(1));
    await until(() => calls === 1, 2000, "the handler to start");
    proxy.cut();
    // the client resends the request on the new socket; the server drops it as a duplicate
    await until(() => client.counters.greetings === 2 && server.counters.recv_dropped_duplicate >= 1, 2000, "resend after reconnect");
    release();
    expect(readU32(await p)).toBe(1234);
    expect(calls).toBe(1);
  });

  test("a response lost with the socket is resent until acknowledged", async () => {
    const { server, proxy, client } = setup();
    let calls = 0;
    server.handle(N.NET_CMD_STATFS, () => {
      calls++;
      proxy.freeze(true); // the response is written into a network that drops it
      return u32(99);
    });
    await client.waitGreeted(2000);
    const p = client.request(N.NET_CMD_STATFS);
    await until(() => calls === 1, 2000, "the handler");
    await Bun.sleep(10);
    proxy.cut();
    proxy.freeze(false);
    expect(readU32(await p)).toBe(99);
    expect(calls).toBe(1);
  });

  test("server requests to a client survive a reconnect", async () => {
    const { server, proxy, client } = setup();
    const ran = new Map<number, number>();
    client.handle(N.NET_CMD_LOCK, async (req) => {
      const n = readU32(req.data);
      ran.set(n, (ran.get(n) ?? 0) + 1);
      await Bun.sleep(n % 3);
      return u32(n);
    });
    await client.waitGreeted(2000);
    const rid = client.rid;
    const ps = Array.from({ length: 200 }, (_, n) => server.request(rid, N.NET_CMD_LOCK, u32(n)));
    await until(() => ran.size > 10, 2000, "some lock requests");
    proxy.cut();
    expect((await Promise.all(ps)).map(readU32)).toEqual(Array.from({ length: 200 }, (_, n) => n));
    for (const times of ran.values()) expect(times).toBe(1);
  });

  test("requests made while disconnected wait for the next greeting", async () => {
    let port: number | undefined;
    const server = startServer();
    servers.push(server);
    server.handle(N.NET_CMD_GET_ROOTS, () => u32(5));
    const client = startClient(() => port);
    clients.push(client);
    const p = client.request(N.NET_CMD_GET_ROOTS);
    await Bun.sleep(30);
    expect(client.greeted).toBe(false);
    port = server.port;
    expect(readU32(await p)).toBe(5);
  });

  test("failover: kept requests go to the new server, state is reset for it", async () => {
    const a = startServer({ server_term: 1n });
    servers.push(a);
    let target = a.port;
    const greeted: { server_term: bigint; new_server: boolean }[] = [];
    const client = startClient(() => target, { onGreeted: (i) => void greeted.push(i) });
    clients.push(client);
    a.handle(N.NET_CMD_GET_LAST_SEQ, () => u32(1));
    expect(readU32(await client.request(N.NET_CMD_GET_LAST_SEQ))).toBe(1);
    // a request that server A will never answer
    let aCalls = 0;
    a.handle(N.NET_CMD_ALLOC_INODES, () => {
      aCalls++;
      return new Promise<Uint8Array>(() => {});
    });
    const p = client.request(N.NET_CMD_ALLOC_INODES, u32(3));
    await until(() => aCalls === 1, 2000, "server A to get the request");
    const b = startServer({ server_term: 2n });
    servers.push(b);
    let bCalls = 0;
    b.handle(N.NET_CMD_ALLOC_INODES, (req) => {
      bCalls++;
      return u32(readU32(req.data) + 100);
    });
    target = b.port;
    a.close();
    expect(readU32(await p)).toBe(103);
    expect(bCalls).toBe(1);
    expect(client.server_term).toBe(2n);
    expect(greeted).toEqual([
      { server_term: 1n, new_server: true },
      { server_term: 2n, new_server: true },
    ]);
    b.handle(N.NET_CMD_GET_LAST_SEQ, () => u32(2));
    expect(readU32(await client.request(N.NET_CMD_GET_LAST_SEQ))).toBe(2);
  });

  test("a client that stays away past reconnect_timeout_ms is dropped and then refused", async () => {
    const down: [bigint, string][] = [];
    let reachable = true;
    const server = startServer({ reconnect_timeout_ms: 60, onClientDown: (rid, why) => void down.push([rid, why]) });
    servers.push(server);
    const proxy = new TcpProxy(server.port);
    proxies.push(proxy);
    const client = startClient(() => (reachable ? proxy.port : undefined));
    clients.push(client);
    await client.waitGreeted(2000);
    const rid = client.rid;
    // a server request that will be pending when the client vanishes
    client.handle(N.NET_CMD_LOCK, () => new Promise<Uint8Array>(() => {}));
    const pending = server.request(rid, N.NET_CMD_LOCK, u32(1)).catch((e) => e);
    await Bun.sleep(10);
    reachable = false;
    proxy.cut();
    await until(() => down.length === 1, 2000, "the reconnect timeout");
    expect(down).toEqual([[rid, "timeout"]]);
    const err = await pending;
    expect(err).toBeInstanceOf(ScoutfsError);
    expect((err as ScoutfsError).code).toBe("ENOLINK");
    expect(server.clientRids()).toEqual([]);
    reachable = true;
    await until(() => client.lastError?.code === "ENOLINK", 2000, "the greeting to be refused");
    expect(server.counters.reconnect_timeouts).toBe(1);
  });

  test("farewell: state is dropped as soon as the socket closes", async () => {
    const down: [bigint, string][] = [];
    const { server, client } = setup({ onClientDown: (rid, why) => void down.push([rid, why]) });
    server.handle(N.NET_CMD_FAREWELL, () => undefined);
    await client.waitGreeted(2000);
    client.setFarewell(true);
    await client.request(N.NET_CMD_FAREWELL);
    client.close();
    await until(() => down.length === 1, 2000, "farewell drop");
    expect(down).toEqual([[client.rid, "farewell"]]);
    expect(server.clientRids()).toEqual([]);
  });

  test("a farewell response lost with the socket: the client may come back to get it", async () => {
    const down: [bigint, string][] = [];
    const { server, proxy, client } = setup({ onClientDown: (rid, why) => void down.push([rid, why]) });
    let calls = 0;
    server.handle(N.NET_CMD_FAREWELL, () => {
      if (++calls === 1) proxy.freeze(true);
      return undefined;
    });
    // the server has sent us messages, so our recv_seq is past what fresh server state will send
    client.handle(N.NET_CMD_LOCK, () => undefined);
    await client.waitGreeted(2000);
    for (let i = 0; i < 5; i++) await server.request(client.rid, N.NET_CMD_LOCK);
    client.setFarewell(true);
    const p = client.request(N.NET_CMD_FAREWELL);
    await until(() => calls === 1, 2000, "the farewell request");
    await Bun.sleep(5);
    proxy.cut();
    proxy.freeze(false);
    await p;
    // the server dropped the state after sending the farewell response; the client greeted with
    // the FAREWELL flag, got fresh state, and its resent farewell was processed again
    expect(down[0]).toEqual([client.rid, "farewell"]);
    expect(calls).toBe(2);
    // the client saw the greeting seq restart and reset its recv_seq: no protocol errors
    expect(server.counters.recv_invalid_message).toBe(0);
    expect(client.counters.greetings).toBe(2);
  });
});
