/**
 * Quorum plumbing for mounting volumes made by the REAL mkfs (test/fixtures/real-mkfs/), whose
 * quorum slots hold fixed addresses (127.0.0.1:42000, 127.0.0.2:42001, 10.1.2.3:65535, ...):
 *
 * - `rehomeQuorumSlots` rewrites every configured slot of the test's copy of the image to
 *   127.0.0.1 on a free port (test/helpers/ports.ts), so tests never depend on a fixed port
 *   being free or on addresses this host does not have. Only the addresses in the super block's
 *   quorum config change (and its crc and header seq); slot numbers and everything else stay as
 *   the real mkfs wrote them.
 * - `QuorumVoter` stands in a second slot of a multi-slot volume: it answers every vote request
 *   of a newer term with its vote and never stands for election itself, like a node whose
 *   election timer has not run out yet. A single `scoutfs mount` node then gathers the majority
 *   it needs (2 of 3), is the one elected and the volume's only mount — a real second node
 *   would be a second mount sharing the tiny device, and would win half the elections.
 */
import { Device } from "../../src/block/device.ts";
import { readSuper, writeSuper } from "../../src/block/super.ts";
import { presentSlots } from "../../src/quorum/blocks.ts";
import { decodeQuorumMessage, encodeQuorumMessage } from "../../src/quorum/agent.ts";
import * as C from "../../src/format/constants.ts";
import { freePorts } from "../helpers/ports.ts";
import { BUN } from "../helpers/images.ts";
import type { Subprocess } from "bun";

const LOOPBACK = 0x7f000001;

/** Point every configured quorum slot of the image at 127.0.0.1:<free port>; returns slot → port. */
export async function rehomeQuorumSlots(metaPath: string): Promise<Map<number, number>> {
  const dev = Device.open(metaPath, { write: true });
  try {
    const sup = readSuper(dev, { meta: true });
    const slots = presentSlots(sup.qconf.slots);
    const ports = await freePorts(slots.length);
    const out = new Map<number, number>();
    slots.forEach((s, i) => {
      const a = sup.qconf.slots[s.nr]!;
      a.family = C.AF_IPV4;
      a.addr = LOOPBACK;
      a.port = ports[i]!;
      out.set(s.nr, ports[i]!);
    });
    writeSuper(dev, sup);
    dev.sync();
    return out;
  } finally {
    dev.close();
  }
}

/**
 * The voter runs in its own process: `scoutfs mount` is spawned synchronously by NodeVolume, which
 * blocks the test's event loop while the node waits for its votes.
 */
export class QuorumVoter {
  votes = 0;

  private constructor(private readonly proc: Subprocess<"ignore", "pipe", "pipe">) {}

  /** Vote from `slot` (its port from rehomeQuorumSlots) for whoever asks first in each new term. */
  static async start(metaPath: string, slot: number, ports: Map<number, number>): Promise<QuorumVoter> {
    const proc = Bun.spawn([BUN, import.meta.path, metaPath, String(slot), JSON.stringify([...ports])], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    const v = new QuorumVoter(proc);
    const reader = proc.stdout.getReader();
    let buf = "";
    let ready!: () => void;
    const isReady = new Promise<void>((res) => (ready = res));
    void (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buf += new TextDecoder().decode(value);
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line === "ready") ready();
          else if (line.startsWith("vote ")) v.votes++;
        }
      }
    })();
    await Promise.race([isReady, proc.exited.then((c) => Promise.reject(new Error(`quorum voter exited with ${c}`)))]);
    return v;
  }

  close(): void {
    this.proc.kill("SIGKILL");
  }
}

/** The voter process: `bun fixture-quorum.ts META SLOT PORTS_JSON`; prints `ready`, then `vote TERM` lines. */
async function voterMain(metaPath: string, slot: number, ports: Map<number, number>): Promise<void> {
  const dev = Device.open(metaPath);
  let fsid: bigint;
  try {
    fsid = readSuper(dev, { meta: true }).hdr.fsid;
  } finally {
    dev.close();
  }
  const slotSet = new Set(ports.keys());
  let votedTerm = 0n;
  await Bun.udpSocket<"buffer">({
    hostname: "127.0.0.1",
    port: ports.get(slot)!,
    socket: {
      data(s, buf) {
        const m = decodeQuorumMessage(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), fsid, slotSet);
        if (typeof m === "string" || m.type !== C.QUORUM_MSG_REQUEST_VOTE || m.term <= votedTerm) return;
        votedTerm = m.term;
        s.send(encodeQuorumMessage(fsid, m.term, C.QUORUM_MSG_VOTE, slot), ports.get(m.from)!, "127.0.0.1");
        process.stdout.write(`vote ${m.term}\n`);
      },
      // ICMP port unreachable from a node that has stopped (reported on a later send): expected
      error() {},
    },
  });
  process.stdout.write("ready\n");
}

if (import.meta.main) {
  const [meta, slot, ports] = process.argv.slice(2);
  await voterMain(meta!, Number(slot), new Map(JSON.parse(ports!) as [number, number][]));
}
