// Framing: frames split at every byte position and coalesced, over the parser alone and over
// real TCP; oversized and garbage frames from a raw socket are rejected (counted, socket closed)
// without disturbing other clients.
import { afterEach, describe, expect, test } from "bun:test";
import * as N from "../../src/format/net.ts";
import { FrameReader, encodeFrame, encodeHeartbeat, patchRecvSeq, type RecvHeader } from "../../src/net/frame.ts";
import type { NetClient } from "../../src/net/client.ts";
import type { NetServer } from "../../src/net/server.ts";
import { RawPeer, captureLog, greetingFrame, readU32, startClient, startServer, u32, until } from "./helpers.ts";

function sampleStream(): { bytes: Uint8Array; frames: { seq: bigint; cmd: number; payload: number[] }[] } {
  const frames: { seq: bigint; cmd: number; payload: number[] }[] = [];
  const parts: Uint8Array[] = [];
  const lens = [0, 1, 5, 31, 32, 33, 200, N.NET_MAX_DATA_LEN, 0, 7];
  lens.forEach((len, i) => {
    const payload = Array.from({ length: len }, (_, j) => (i * 31 + j) & 0xff);
    const f = encodeFrame(BigInt(i + 1), BigInt(i + 1), (i % 19) + 1, i % 2, 0, Uint8Array.from(payload));
    patchRecvSeq(f, BigInt(100 + i));
    parts.push(f);
    frames.push({ seq: BigInt(i + 1), cmd: (i % 19) + 1, payload });
    if (i === 4) parts.push(encodeHeartbeat());
  });
  const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    bytes.set(p, at);
    at += p.length;
  }
  return { bytes, frames };
}

function collect(): { reader: FrameReader; got: { seq: bigint; cmd: number; recv_seq: bigint; payload: number[] }[] } {
  const got: { seq: bigint; cmd: number; recv_seq: bigint; payload: number[] }[] = [];
  const reader = new FrameReader((h: RecvHeader, p) => {
    if (h.seq !== 0n) got.push({ seq: h.seq, cmd: h.cmd, recv_seq: h.recv_seq, payload: [...p] });
  });
  return { reader, got };
}

describe("FrameReader", () => {
  const { bytes, frames } = sampleStream();

  test("one chunk holding every frame", () => {
    const { reader, got } = collect();
    expect(reader.push(bytes)).toBeUndefined();
    expect(got.map((g) => ({ seq: g.seq, cmd: g.cmd, payload: g.payload }))).toEqual(frames);
    expect(got.map((g) => g.recv_seq)).toEqual(frames.map((_, i) => BigInt(100 + i)));
  });

  test("split into two chunks at every byte position", () => {
    for (let cut = 0; cut <= bytes.length; cut++) {
      const { reader, got } = collect();
      expect(reader.push(bytes.subarray(0, cut))).toBeUndefined();
      expect(reader.push(bytes.subarray(cut))).toBeUndefined();
      expect(got.length).toBe(frames.length);
      expect(got[got.length - 1]!.payload).toEqual(frames[frames.length - 1]!.payload);
    }
  });

  test("byte by byte, and in odd-sized chunks", () => {
    for (const size of [1, 3, 31, 33, 1000, 1133]) {
      const { reader, got } = collect();
      for (let at = 0; at < bytes.length; at += size) expect(reader.push(bytes.subarray(at, at + size))).toBeUndefined();
      expect(got.map((g) => ({ seq: g.seq, cmd: g.cmd, payload: g.payload }))).toEqual(frames);
    }
  });

  test("an oversized data_len is refused as soon as the header is complete", () => {
    const { reader, got } = collect();
    const h = N.NetHeader.encode({ seq: 1n, recv_seq: 0n, id: 1n, data_len: N.NET_MAX_DATA_LEN + 1, cmd: 1, flags: 0, error: 0 });
    expect(reader.push(h.subarray(0, 20))).toBeUndefined();
    expect(reader.push(h.subarray(20))).toContain("exceeds the maximum 1100");
    expect(reader.push(new Uint8Array(64))).toBeUndefined(); // stopped: ignores the rest
    expect(got.length).toBe(0);
  });

  test("invalid headers", () => {
    const bad: [Partial<N.NetHeader>, string][] = [
      [{ seq: 0n }, "non-zero"],
      [{ id: 0n }, "non-zero"],
      [{ cmd: N.NET_CMD_UNKNOWN }, "unknown cmd"],
      [{ flags: 2 }, "unknown flags"],
      [{ flags: 1, error: N.NET_ERR_UNKNOWN }, "unknown net error"],
      [{ error: N.NET_ERR_EIO }, "request carries error"],
    ];
    for (const [over, msg] of bad) {
      const { reader } = collect();
      const h = N.NetHeader.encode({ seq: 1n, recv_seq: 0n, id: 1n, data_len: 0, cmd: 1, flags: 0, error: 0, ...over });
      expect(reader.push(h)).toContain(msg);
    }
  });
});

let servers: NetServer[] = [];
let clients: NetClient[] = [];
let raws: RawPeer[] = [];
afterEach(() => {
  for (const r of raws) r.close();
  for (const c of clients) c.close();
  for (const s of servers) s.close();
  raws = [];
  clients = [];
  servers = [];
});

describe("frames over TCP", () => {
  test("greeting and requests written one byte per segment, then coalesced in one write", async () => {
    const server = startServer();
    servers.push(server);
    server.handle(N.NET_CMD_GET_LAST_SEQ, (req) => u32(readU32(req.data) + 1));
    const raw = await RawPeer.connect(server.port);
    raws.push(raw);
    await raw.trickle(greetingFrame({ rid: 0x99n, id: 1n }));
    await until(() => raw.frames.length === 1, 2000, "greeting response");
    const g = raw.frames[0]!;
    expect(g.h.cmd).toBe(N.NET_CMD_GREETING);
    expect(g.h.flags).toBe(N.NET_FLAG_RESPONSE);
    expect(N.NetGreeting.decode(g.payload)).toEqual({ fsid: 0x5c0a7f5d00112233n, fmt_vers: 2n, server_term: 1n, rid: 0x99n, flags: 0n });

    await raw.trickle(encodeFrame(2n, 2n, N.NET_CMD_GET_LAST_SEQ, 0, 0, u32(41)));
    await until(() => raw.frames.length === 2, 2000, "first response");
    expect(readU32(raw.frames[1]!.payload)).toBe(42);
    expect(raw.frames[1]!.h.id).toBe(2n);

    const many: Uint8Array[] = [];
    for (let i = 0; i < 100; i++) many.push(encodeFrame(BigInt(3 + i), BigInt(3 + i), N.NET_CMD_GET_LAST_SEQ, 0, 0, u32(i)));
    raw.write(Buffer.concat(many));
    await until(() => raw.frames.length === 102, 2000, "100 coalesced responses");
    for (let i = 0; i < 100; i++) {
      const f = raw.frames[2 + i]!;
      expect(f.h.id).toBe(BigInt(3 + i));
      expect(readU32(f.payload)).toBe(i + 1);
    }
    // a resent duplicate (seq already received) is dropped, not processed again
    raw.write(encodeFrame(5n, 5n, N.NET_CMD_GET_LAST_SEQ, 0, 0, u32(0)));
    await until(() => server.counters.recv_dropped_duplicate === 1, 2000, "duplicate drop");
    expect(raw.closed).toBe(false);
  });

  test("oversized and garbage frames close only the offending socket", async () => {
    const logs = captureLog();
    const server = startServer({ log: logs.log });
    servers.push(server);
    server.handle(N.NET_CMD_GET_LAST_SEQ, (req) => req.data);
    const good = startClient(() => server.port);
    clients.push(good);
    await good.waitGreeted(2000);
    let goodCount = 0;
    const traffic = (async () => {
      for (let i = 0; i < 50; i++) {
        expect(readU32(await good.request(N.NET_CMD_GET_LAST_SEQ, u32(i)))).toBe(i);
        goodCount++;
        await Bun.sleep(1);
      }
    })();

    const attacks: [string, (raw: RawPeer) => void][] = [
      ["oversized", (raw) => raw.write(N.NetHeader.encode({ seq: 1n, recv_seq: 0n, id: 1n, data_len: 60000, cmd: 0, flags: 0, error: 0 }))],
      ["garbage", (raw) => raw.write(Uint8Array.from({ length: 64 }, (_, i) => (i * 37 + 11) & 0xff))],
      ["request before greeting", (raw) => raw.write(encodeFrame(1n, 1n, N.NET_CMD_STATFS, 0, 0, new Uint8Array(0)))],
      ["short greeting", (raw) => raw.write(encodeFrame(1n, 1n, N.NET_CMD_GREETING, 0, 0, new Uint8Array(8)))],
      [
        "unknown cmd after greeting",
        (raw) => {
          raw.write(greetingFrame({ rid: 0x55n }));
          raw.write(N.NetHeader.encode({ seq: 2n, recv_seq: 0n, id: 2n, data_len: 0, cmd: 200, flags: 0, error: 0 }));
        },
      ],
      [
        "response to an id never sent",
        (raw) => {
          raw.write(greetingFrame({ rid: 0x56n }));
          raw.write(encodeFrame(2n, 77n, N.NET_CMD_LOCK, N.NET_FLAG_RESPONSE, 0, new Uint8Array(0)));
        },
      ],
      [
        "second greeting",
        (raw) => {
          raw.write(greetingFrame({ rid: 0x57n }));
          raw.write(greetingFrame({ rid: 0x57n, id: 2n }));
        },
      ],
    ];
    for (const [what, attack] of attacks) {
      const before = server.counters.recv_invalid_message + server.counters.greeting_errors;
      const raw = await RawPeer.connect(server.port);
      raws.push(raw);
      attack(raw);
      await until(() => raw.closed, 2000, `server to close the socket after: ${what}`);
      expect(server.counters.recv_invalid_message + server.counters.greeting_errors).toBe(before + 1);
    }
    await traffic;
    expect(goodCount).toBe(50);
    expect(good.counters.connect_attempts).toBe(1); // never disturbed
    expect(logs.lines.filter((l) => l.includes("invalid message")).length).toBeGreaterThanOrEqual(5);
  });
});
