// Greetings: identity checks both ways (fsid, format version, flags, rid), the server's greeting
// hook, and concurrent reconnects of one rid (the newest greeting wins).
import type { Socket } from "bun";
import { afterEach, describe, expect, test } from "bun:test";
import * as N from "../../src/format/net.ts";
import { ScoutfsError } from "../../src/util/errors.ts";
import { FrameReader, encodeFrame } from "../../src/net/frame.ts";
import type { NetClient } from "../../src/net/client.ts";
import type { NetServer } from "../../src/net/server.ts";
import { FSID, RawPeer, captureLog, greetingFrame, startClient, startServer, until } from "./helpers.ts";

let servers: NetServer[] = [];
let clients: NetClient[] = [];
let raws: RawPeer[] = [];
let stops: (() => void)[] = [];
afterEach(() => {
  for (const r of raws) r.close();
  for (const c of clients) c.close();
  for (const s of servers) s.close();
  for (const s of stops) s();
  raws = [];
  clients = [];
  servers = [];
  stops = [];
});

async function greetingError(client: NetClient): Promise<ScoutfsError> {
  const err = await client.waitGreeted(2000).then(
    () => undefined,
    (e) => e,
  );
  expect(err).toBeInstanceOf(ScoutfsError);
  return err as ScoutfsError;
}

describe("greetings", () => {
  test("fsid mismatch: refused with EINVAL, no state kept, clear messages on both sides", async () => {
    const logs = captureLog();
    const server = startServer({ log: logs.log });
    servers.push(server);
    const client = startClient(() => server.port, { fsid: FSID + 1n });
    clients.push(client);
    const err = await greetingError(client);
    expect(err.code).toBe("EINVAL");
    expect(err.message).toContain("refused our greeting");
    expect(server.counters.greeting_errors).toBeGreaterThanOrEqual(1);
    expect(server.clientRids()).toEqual([]);
    expect(logs.lines.some((l) => l.includes(`did not match server fsid 0x${FSID.toString(16)}`))).toBe(true);
    // the refused client keeps retrying (as the kmod does) and never gets in
    await until(() => server.counters.greeting_errors >= 2, 2000, "a retry");
    expect(client.greeted).toBe(false);
  });

  test("format version mismatch", async () => {
    const logs = captureLog();
    const server = startServer({ log: logs.log });
    servers.push(server);
    const client = startClient(() => server.port, { fmt_vers: 1n });
    clients.push(client);
    expect((await greetingError(client)).code).toBe("EINVAL");
    expect(logs.lines.some((l) => l.includes("greeting format version 1 did not match server format version 2"))).toBe(true);
  });

  test("unknown greeting flags are refused", async () => {
    const server = startServer();
    servers.push(server);
    const raw = await RawPeer.connect(server.port);
    raws.push(raw);
    raw.write(greetingFrame({ flags: 1n << 5n }));
    await until(() => raw.closed, 2000, "close");
    expect(raw.frames.length).toBe(1);
    expect(raw.frames[0]!.h.error).toBe(N.NET_ERR_EINVAL);
    expect(raw.frames[0]!.h.data_len).toBe(0);
  });

  test("the server's greeting hook can refuse a client with an errno", async () => {
    const infos: { reconnecting: boolean; first_contact: boolean; farewell: boolean; flags: bigint }[] = [];
    let refuse = true;
    const server = startServer({
      onGreeting: (i) => {
        infos.push({ reconnecting: i.reconnecting, first_contact: i.first_contact, farewell: i.farewell, flags: i.greeting.flags });
        if (refuse) throw new ScoutfsError("ENOSPC", "no room for another mount");
      },
    });
    servers.push(server);
    const client = startClient(() => server.port, { quorum: true });
    clients.push(client);
    expect((await greetingError(client)).code).toBe("ENOSPC");
    refuse = false;
    await client.waitGreeted(2000);
    expect(infos[0]).toEqual({ reconnecting: false, first_contact: true, farewell: false, flags: N.NET_GREETING_FLAG_QUORUM });
    expect(client.lastError).toBeUndefined();
  });

  test("a server answering with the wrong identity is refused by the client", async () => {
    // a fake server that answers every greeting with another volume's fsid
    const listener = Bun.listen<{ reader: FrameReader | undefined }>({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        binaryType: "uint8array",
        open(socket) {
          socket.data = {
            reader: new FrameReader((h, payload) => {
              const g = N.NetGreeting.decode(payload);
              const body = N.NetGreeting.encode({ ...g, fsid: g.fsid ^ 0xffn, server_term: 7n });
              socket.write(encodeFrame(1n, h.id, N.NET_CMD_GREETING, N.NET_FLAG_RESPONSE, 0, body));
            }),
          };
        },
        data(socket: Socket<{ reader: FrameReader | undefined }>, chunk: Uint8Array) {
          socket.data.reader?.push(chunk);
        },
      },
    });
    stops.push(() => listener.stop(true));
    const errors: ScoutfsError[] = [];
    const client = startClient(() => listener.port, { onGreetingError: (e) => void errors.push(e) });
    clients.push(client);
    const err = await greetingError(client);
    expect(err.code).toBe("EINVAL");
    expect(err.message).toContain("did not match client fsid");
    expect(errors.length).toBeGreaterThanOrEqual(1);
    expect(client.server_term).toBe(0n);
  });

  test("concurrent sockets for one rid: the newest greeting wins", async () => {
    const server = startServer();
    servers.push(server);
    const rid = 0xabcn;
    const first = await RawPeer.connect(server.port);
    raws.push(first);
    first.write(greetingFrame({ rid, id: 5n }));
    await until(() => first.frames.length === 1, 2000, "first greeting response");
    expect(server.isConnected(rid)).toBe(true);

    // the same mount on a new socket (it thinks the old one died): takes over
    const second = await RawPeer.connect(server.port);
    raws.push(second);
    second.write(greetingFrame({ rid, id: 9n, server_term: 1n }));
    await until(() => second.frames.length === 1 && first.closed, 2000, "the old socket to be replaced");

    // a late, older attempt loses
    const late = await RawPeer.connect(server.port);
    raws.push(late);
    late.write(greetingFrame({ rid, id: 7n, server_term: 1n }));
    await until(() => late.closed, 2000, "the stale attempt to be closed");
    expect(second.closed).toBe(false);
    expect(server.clientRids()).toEqual([rid]);
  });
});
