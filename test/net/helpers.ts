// Shared pieces of the net tests: servers and clients on 127.0.0.1 with captured logs, a TCP
// proxy that tests can cut or freeze (network faults between a client and the server), a raw
// peer that writes arbitrary bytes, and a seeded PRNG.
import type { Socket } from "bun";
import { NetClient, type NetClientOptions } from "../../src/net/client.ts";
import { NetServer, type NetServerOptions } from "../../src/net/server.ts";
import { NetCounters, type NetLogger } from "../../src/net/counters.ts";
import { FrameReader, type RecvHeader } from "../../src/net/frame.ts";
import { NetGreeting, NET_CMD_GREETING } from "../../src/format/net.ts";
import { encodeFrame } from "../../src/net/frame.ts";

export const FSID = 0x5c0a7f5d00112233n;
export const FMT_VERS = 2n;

export interface Logs {
  lines: string[];
  log: NetLogger;
}

export function captureLog(): Logs {
  const lines: string[] = [];
  return { lines, log: (level, msg) => { lines.push(`${level}: ${msg}`); if (process.env.NET_TEST_LOG) console.error(`${level}: ${msg}`); } };
}

export function startServer(o: Partial<NetServerOptions> = {}): NetServer {
  return NetServer.listen({
    fsid: FSID,
    fmt_vers: FMT_VERS,
    server_term: 1n,
    hostname: "127.0.0.1",
    port: 0,
    log: captureLog().log,
    ...o,
  });
}

export function startClient(port: () => number | undefined, o: Partial<NetClientOptions> = {}): NetClient {
  const c = new NetClient({
    fsid: FSID,
    fmt_vers: FMT_VERS,
    rid: 0x1000n + BigInt(Math.floor(Math.random() * 0xffffff)),
    resolveServer: () => {
      const p = port();
      return p === undefined ? undefined : { hostname: "127.0.0.1", port: p };
    },
    connect_delay_ms: 10,
    log: captureLog().log,
    ...o,
  });
  c.start();
  return c;
}

export async function until(cond: () => boolean, timeout_ms: number, what: string): Promise<void> {
  const start = performance.now();
  while (!cond()) {
    if (performance.now() - start > timeout_ms) throw new Error(`timed out after ${timeout_ms} ms waiting for ${what}`);
    await Bun.sleep(2);
  }
}

export function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
}

export function readU32(b: Uint8Array): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(0, true);
}

/** mulberry32: small, fast, good enough to drive tests reproducibly. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/* ------------------------------------------------------------------------------------------- */

interface Side {
  socket: Socket<ProxySlot>;
  pending: Uint8Array[];
}
interface ProxySlot {
  pair: ProxyPair | undefined;
  side: "front" | "back";
}
interface ProxyPair {
  front: Side;
  back: Side | undefined;
  /** Bytes from the front that arrived before the back connected. */
  early: Uint8Array[];
  dead: boolean;
}

function pump(side: Side, chunk: Uint8Array): void {
  if (side.pending.length > 0) {
    side.pending.push(chunk.slice());
    return;
  }
  const n = side.socket.write(chunk);
  if (n >= 0 && n < chunk.length) side.pending.push(chunk.slice(n));
}

function drainSide(side: Side): void {
  while (side.pending.length > 0) {
    const c = side.pending[0]!;
    const n = side.socket.write(c);
    if (n < 0) return;
    if (n < c.length) {
      side.pending[0] = c.slice(n);
      return;
    }
    side.pending.shift();
  }
}

/**
 * A TCP proxy in front of a server: cut() drops every proxied connection abruptly (both sides
 * see a reset), freeze() stops forwarding without closing (a silent network), and `target` can
 * be changed to send new connections to another server.
 */
export class TcpProxy {
  private readonly pairs = new Set<ProxyPair>();
  private readonly listener;
  private frozen = false;
  private readonly lostWhileFrozen = new Set<ProxyPair>();
  private held: { pair: ProxyPair; side: "front" | "back"; chunk: Uint8Array }[] = [];
  cuts = 0;

  constructor(public target: number) {
    this.listener = Bun.listen<ProxySlot>({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        binaryType: "uint8array",
        open: (socket) => this.accept(socket),
        data: (socket, chunk) => this.data(socket, chunk),
        drain: (socket) => this.drain(socket),
        close: (socket) => this.lost(socket.data.pair),
        error: (socket) => this.lost(socket.data.pair),
      },
    });
  }

  get port(): number {
    return this.listener.port;
  }

  get connections(): number {
    return this.pairs.size;
  }

  private accept(socket: Socket<ProxySlot>): void {
    const pair: ProxyPair = { front: { socket, pending: [] }, back: undefined, early: [], dead: false };
    socket.data = { pair, side: "front" };
    this.pairs.add(pair);
    Bun.connect<ProxySlot>({
      hostname: "127.0.0.1",
      port: this.target,
      data: { pair, side: "back" },
      socket: {
        binaryType: "uint8array",
        open: (back) => {
          if (pair.dead) {
            back.terminate();
            return;
          }
          pair.back = { socket: back, pending: [] };
          for (const c of pair.early) pump(pair.back, c);
          pair.early = [];
        },
        data: (s, chunk) => this.data(s, chunk),
        drain: (s) => this.drain(s),
        close: () => this.lost(pair),
        error: () => this.lost(pair),
        connectError: () => this.kill(pair),
      },
    }).catch(() => this.kill(pair));
  }

  private data(socket: Socket<ProxySlot>, chunk: Uint8Array): void {
    const pair = socket.data.pair;
    if (!pair || pair.dead) return;
    if (this.frozen) {
      // like a network dropping packets that TCP will retransmit once it heals
      this.held.push({ pair, side: socket.data.side, chunk: chunk.slice() });
      return;
    }
    this.forward(pair, socket.data.side, chunk);
  }

  private forward(pair: ProxyPair, from: "front" | "back", chunk: Uint8Array): void {
    if (pair.dead) return;
    if (from === "front") {
      if (pair.back) pump(pair.back, chunk);
      else pair.early.push(chunk.slice());
    } else {
      pump(pair.front, chunk);
    }
  }

  private drain(socket: Socket<ProxySlot>): void {
    const pair = socket.data.pair;
    if (!pair || pair.dead) return;
    drainSide(socket.data.side === "front" ? pair.front : pair.back!);
  }

  /** One side closed: a silent (frozen) network does not tell the other side until it heals. */
  private lost(pair: ProxyPair | undefined): void {
    if (!pair) return;
    if (this.frozen) this.lostWhileFrozen.add(pair);
    else this.kill(pair);
  }

  private kill(pair: ProxyPair | undefined): void {
    if (!pair || pair.dead) return;
    pair.dead = true;
    this.pairs.delete(pair);
    pair.front.socket.terminate();
    pair.back?.socket.terminate();
  }

  /** Drop every proxied connection abruptly. */
  cut(): void {
    this.cuts++;
    this.held = [];
    for (const p of [...this.pairs]) this.kill(p);
  }

  /**
   * Stop forwarding bytes without closing anything (a silent network); on resume, bytes held
   * meanwhile are delivered, as TCP would retransmit them. A cut discards them.
   */
  freeze(on: boolean): void {
    this.frozen = on;
    if (on) return;
    for (const p of this.lostWhileFrozen) this.kill(p);
    this.lostWhileFrozen.clear();
    const held = this.held;
    this.held = [];
    for (const h of held) this.forward(h.pair, h.side, h.chunk);
  }

  close(): void {
    this.cut();
    this.listener.stop(true);
  }
}

/* ------------------------------------------------------------------------------------------- */

interface RawSlot {
  peer: RawPeer | undefined;
}

/** A raw TCP peer: writes whatever bytes a test wants and parses what comes back. */
export class RawPeer {
  readonly frames: { h: RecvHeader; payload: Uint8Array }[] = [];
  closed = false;
  private readonly reader = new FrameReader((h, payload) => this.frames.push({ h: { ...h }, payload: payload.slice() }));
  problem: string | undefined;

  private constructor(private socket: Socket<RawSlot>) {}

  static async connect(port: number): Promise<RawPeer> {
    let peer: RawPeer | undefined;
    const socket = await Bun.connect<RawSlot>({
      hostname: "127.0.0.1",
      port,
      data: { peer: undefined },
      socket: {
        binaryType: "uint8array",
        data: (s, chunk) => {
          const p = s.data.peer!;
          p.problem ??= p.reader.push(chunk);
        },
        close: (s) => {
          if (s.data.peer) s.data.peer.closed = true;
        },
        error: (s) => {
          if (s.data.peer) s.data.peer.closed = true;
        },
      },
    });
    peer = new RawPeer(socket);
    socket.data.peer = peer;
    socket.setNoDelay(true);
    return peer;
  }

  write(bytes: Uint8Array): void {
    const n = this.socket.write(bytes);
    if (n !== bytes.length) throw new Error(`raw write wrote ${n} of ${bytes.length}`);
  }

  /** Write one byte at a time with a pause between them so that each is its own TCP segment. */
  async trickle(bytes: Uint8Array, pause_ms = 1): Promise<void> {
    for (let i = 0; i < bytes.length; i++) {
      this.write(bytes.subarray(i, i + 1));
      await Bun.sleep(pause_ms);
    }
  }

  close(): void {
    this.socket.terminate();
  }
}

export function greetingFrame(o: { fsid?: bigint; fmt_vers?: bigint; server_term?: bigint; rid?: bigint; flags?: bigint; id?: bigint } = {}): Uint8Array {
  const g = NetGreeting.encode({
    fsid: o.fsid ?? FSID,
    fmt_vers: o.fmt_vers ?? FMT_VERS,
    server_term: o.server_term ?? 0n,
    rid: o.rid ?? 0x77n,
    flags: o.flags ?? 0n,
  });
  return encodeFrame(1n, o.id ?? 1n, NET_CMD_GREETING, 0, 0, g);
}

export { NetCounters };
