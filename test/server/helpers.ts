/** Volumes, servers and clients for the server/client tests: real images, real TCP on 127.0.0.1. */
import * as fs from "node:fs";
import * as path from "node:path";
import { mkfs } from "../../src/offline/mkfs.ts";
import { Device } from "../../src/block/device.ts";
import { readSuper } from "../../src/block/super.ts";
import { updateQuorumEvent } from "../../src/quorum/blocks.ts";
import * as C from "../../src/format/constants.ts";
import { Server, type ServerOptions } from "../../src/server/server.ts";
import { Client, type ClientOptions } from "../../src/client/client.ts";
import { sparseFile, tempDir } from "../helpers/images.ts";
import { freePorts } from "../helpers/ports.ts";

export interface Vol {
  dir: string;
  metaPath: string;
  dataPath: string;
  port: number;
  fsid: bigint;
}

export async function makeVolume(name: string, metaMiB = 2048, dataMiB = 256): Promise<Vol> {
  const dir = tempDir(`scoutfs-${name}-`);
  const [port] = await freePorts(1);
  const metaPath = sparseFile(path.join(dir, "meta.img"), metaMiB * 1024 * 1024);
  const dataPath = sparseFile(path.join(dir, "data.img"), dataMiB * 1024 * 1024);
  const r = mkfs({ metaPath, dataPath, allowSmallSize: true, slots: [{ nr: 0, addr: 0x7f000001, port: port! }] }, { out: () => {}, warn: () => {} });
  return { dir, metaPath, dataPath, port: port!, fsid: r.fsid };
}

export function removeVolume(v: Vol): void {
  fs.rmSync(v.dir, { recursive: true, force: true });
}

/** Record slot 0 as elected leader in `term` (what the quorum agent does), so clients find it. */
export function electSlot0(v: Vol, term: bigint, rid = 0x1234n): void {
  const dev = Device.open(v.metaPath, { write: true });
  try {
    const sup = readSuper(dev, { meta: true });
    updateQuorumEvent(dev, sup.hdr.fsid, 0, rid, C.QUORUM_EVENT_BEGIN, term);
    updateQuorumEvent(dev, sup.hdr.fsid, 0, rid, C.QUORUM_EVENT_ELECT, term);
  } finally {
    dev.close();
  }
}

/** Small fill targets so tests exercise refills and two mounts share small devices. */
export const TEST_FILL = { metaLo: 256, metaTarget: 1024, dataLo: 2048n, dataTarget: 8192n };

export function startServer(v: Vol, term: bigint, o: Partial<ServerOptions> = {}): Server {
  electSlot0(v, term);
  return Server.start({
    metaPath: v.metaPath,
    term,
    slot: 0,
    fill: TEST_FILL,
    mergeIntervalMs: 0,
    mergeCommits: 1_000_000,
    mergeRoundTimeoutMs: 3000,
    lockRecoveryTimeoutMs: 3000,
    net: { reconnect_timeout_ms: 2000, keepalive_timeout_ms: 4000 },
    ...o,
  });
}

export function connectClient(v: Vol, o: Partial<ClientOptions> = {}): Promise<Client> {
  return Client.connect({ metaPath: v.metaPath, net: { keepalive_timeout_ms: 4000, connect_delay_ms: 20 }, ...o }, 10_000);
}
