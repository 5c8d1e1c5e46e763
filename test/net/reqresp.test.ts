// Requests and responses in both directions over real TCP on 127.0.0.1: payloads, errno
// translation, unknown commands, limits, and many concurrent requests answered out of order.
import { afterEach, describe, expect, test } from "bun:test";
import * as N from "../../src/format/net.ts";
import { ScoutfsError } from "../../src/util/errors.ts";
import type { NetClient } from "../../src/net/client.ts";
import type { NetServer } from "../../src/net/server.ts";
import { captureLog, readU32, startClient, startServer, u32, until } from "./helpers.ts";

let servers: NetServer[] = [];
let clients: NetClient[] = [];
afterEach(() => {
  for (const c of clients) c.close();
  for (const s of servers) s.close();
  clients = [];
  servers = [];
});

function pair(): { server: NetServer; client: NetClient } {
  const server = startServer();
  const client = startClient(() => server.port);
  servers.push(server);
  clients.push(client);
  return { server, client };
}

async function rejection(p: Promise<unknown>): Promise<ScoutfsError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(ScoutfsError);
    return err as ScoutfsError;
  }
  throw new Error("expected a rejection");
}

describe("request/response", () => {
  test("client to server with payloads", async () => {
    const { server, client } = pair();
    server.handle(N.NET_CMD_ALLOC_INODES, (req) => {
      expect(req.rid).toBe(client.rid);
      const n = readU32(req.data);
      return N.NetInodeAlloc.encode({ ino: 1000n + BigInt(n), nr: BigInt(n) });
    });
    server.handle(N.NET_CMD_GET_LAST_SEQ, () => undefined);
    const resp = N.NetInodeAlloc.decode(await client.request(N.NET_CMD_ALLOC_INODES, u32(64)));
    expect(resp).toEqual({ ino: 1064n, nr: 64n });
    expect((await client.request(N.NET_CMD_GET_LAST_SEQ)).length).toBe(0);
    expect(server.clientRids()).toEqual([client.rid]);
    expect(server.isConnected(client.rid)).toBe(true);
  });

  test("server to client (lock grants, invalidations)", async () => {
    const { server, client } = pair();
    const seen: number[] = [];
    client.handle(N.NET_CMD_LOCK, (req) => {
      const l = N.NetLock.decode(req.data);
      seen.push(l.new_mode);
      return N.NetLock.encode({ ...l, old_mode: l.new_mode, new_mode: 0 });
    });
    await client.waitGreeted(2000);
    const rid = server.clientRids()[0]!;
    const lock = { key: { first: 1n, second: 2n, third: 3n, fourth: 4, zone: 5, type: 6 }, write_seq: 9n, old_mode: 0, new_mode: 2 };
    const resp = N.NetLock.decode(await server.request(rid, N.NET_CMD_LOCK, N.NetLock.encode(lock)));
    expect(resp).toEqual({ ...lock, old_mode: 2, new_mode: 0 });
    expect(seen).toEqual([2]);
    expect((await rejection(server.request(0xdeadn, N.NET_CMD_LOCK))).code).toBe("ENXIO");
  });

  test("errnos cross the wire through the net errno table", async () => {
    const logs = captureLog();
    const server = startServer({ log: logs.log });
    servers.push(server);
    const client = startClient(() => server.port);
    clients.push(client);
    server.handle(N.NET_CMD_STATFS, () => {
      throw new ScoutfsError("ENOSPC", "full");
    });
    server.handle(N.NET_CMD_GET_VOLOPT, async () => {
      await Bun.sleep(1);
      throw new ScoutfsError("ENOENT", "no such option");
    });
    server.handle(N.NET_CMD_SET_VOLOPT, () => {
      throw new ScoutfsError("EEXIST", "not in the wire table");
    });
    server.handle(N.NET_CMD_CLEAR_VOLOPT, () => {
      throw new Error("a bug in a handler");
    });
    server.handle(N.NET_CMD_RESIZE_DEVICES, () => new Uint8Array(N.NET_MAX_DATA_LEN + 1));
    expect((await rejection(client.request(N.NET_CMD_STATFS))).code).toBe("ENOSPC");
    expect((await rejection(client.request(N.NET_CMD_GET_VOLOPT))).code).toBe("ENOENT");
    expect((await rejection(client.request(N.NET_CMD_SET_VOLOPT))).code).toBe("EINVAL");
    expect((await rejection(client.request(N.NET_CMD_CLEAR_VOLOPT))).code).toBe("EIO");
    expect((await rejection(client.request(N.NET_CMD_RESIZE_DEVICES))).code).toBe("EINVAL");
    expect(server.counters.untranslated_errno).toBe(1);
    expect(server.counters.handler_errors).toBe(1);
    expect(logs.lines.some((l) => l.includes("a bug in a handler"))).toBe(true);
    // the connection survived all of it
    server.handle(N.NET_CMD_STATFS, () => new Uint8Array(56));
    expect((await client.request(N.NET_CMD_STATFS)).length).toBe(56);
  });

  test("a command without a handler is answered with EINVAL, not a crash", async () => {
    const { server, client } = pair();
    expect((await rejection(client.request(N.NET_CMD_SRCH_GET_COMPACT))).code).toBe("EINVAL");
    expect(server.counters.unknown_request).toBe(1);
    await client.waitGreeted(1000);
    const rid = server.clientRids()[0]!;
    expect((await rejection(server.request(rid, N.NET_CMD_OPEN_INO_MAP))).code).toBe("EINVAL");
    expect(client.counters.unknown_request).toBe(1);
    server.handle(N.NET_CMD_SRCH_GET_COMPACT, () => u32(7));
    expect(readU32(await client.request(N.NET_CMD_SRCH_GET_COMPACT))).toBe(7);
  });

  test("local limits: payload size, command range, pending bound", async () => {
    const server = startServer();
    servers.push(server);
    const client = startClient(() => server.port, { max_pending_requests: 4 });
    clients.push(client);
    server.handle(N.NET_CMD_STATFS, (req) => req.data);
    expect((await client.request(N.NET_CMD_STATFS, new Uint8Array(N.NET_MAX_DATA_LEN).fill(7))).length).toBe(N.NET_MAX_DATA_LEN);
    expect((await rejection(client.request(N.NET_CMD_STATFS, new Uint8Array(N.NET_MAX_DATA_LEN + 1)))).code).toBe("EINVAL");
    expect((await rejection(client.request(N.NET_CMD_GREETING))).code).toBe("EINVAL");
    expect((await rejection(client.request(N.NET_CMD_UNKNOWN))).code).toBe("EINVAL");
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    server.handle(N.NET_CMD_GET_ROOTS, async () => {
      await gate;
    });
    const held = [0, 1, 2, 3].map(() => client.request(N.NET_CMD_GET_ROOTS));
    expect((await rejection(client.request(N.NET_CMD_GET_ROOTS))).code).toBe("EBUSY");
    release();
    await Promise.all(held);
    expect(client.pendingRequests).toBe(0);
  });

  test("a request timeout cancels it; a late response is dropped and counted", async () => {
    const { server, client } = pair();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    server.handle(N.NET_CMD_GET_ROOTS, async () => {
      await gate;
      return u32(1);
    });
    const err = await rejection(client.request(N.NET_CMD_GET_ROOTS, undefined, { timeout_ms: 30 }));
    expect(err.code).toBe("EIO");
    expect(err.message).toContain("timed out after 30 ms");
    release();
    await until(() => client.counters.dropped_response === 1, 2000, "the late response");
    server.handle(N.NET_CMD_GET_ROOTS, () => u32(2));
    expect(readU32(await client.request(N.NET_CMD_GET_ROOTS))).toBe(2);
  });

  test("many concurrent requests both ways, answered out of order", async () => {
    const { server, client } = pair();
    const ran = new Map<number, number>();
    server.handle(N.NET_CMD_GET_LOG_TREES, async (req) => {
      const n = readU32(req.data);
      ran.set(n, (ran.get(n) ?? 0) + 1);
      await Bun.sleep((n * 7919) % 13); // finish in a scrambled order
      return u32(n * 3);
    });
    client.handle(N.NET_CMD_SYNC_LOG_TREES, async (req) => {
      const n = readU32(req.data);
      await Bun.sleep((n * 104729) % 11);
      return u32(n + 1);
    });
    await client.waitGreeted(2000);
    const rid = server.clientRids()[0]!;
    const count = 500;
    const up = Array.from({ length: count }, (_, n) => client.request(N.NET_CMD_GET_LOG_TREES, u32(n)));
    const down = Array.from({ length: count }, (_, n) => server.request(rid, N.NET_CMD_SYNC_LOG_TREES, u32(n)));
    const order: number[] = [];
    up.forEach((p, n) => void p.then(() => order.push(n)));
    const ups = await Promise.all(up);
    const downs = await Promise.all(down);
    ups.forEach((r, n) => expect(readU32(r)).toBe(n * 3));
    downs.forEach((r, n) => expect(readU32(r)).toBe(n + 1));
    expect(ran.size).toBe(count);
    for (const v of ran.values()) expect(v).toBe(1);
    // they really completed out of order
    expect(order.some((n, i) => n !== i)).toBe(true);
  });
});
