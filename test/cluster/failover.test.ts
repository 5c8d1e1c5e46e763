// Failover with real node processes: garbage datagrams on every quorum port and garbage bytes on
// the server's TCP port leave the cluster as it was; SIGKILL of the leader elects a new one
// within the heartbeat timeout plus an election or two, the new leader fences the old one, the
// surviving clients reconnect and keep committing, every item committed before the kill is
// readable afterwards, and the killed slot comes back as a follower that sees everything.
import { expect, test } from "bun:test";
import { encodeQuorumMessage } from "../../src/quorum/agent.ts";
import * as C from "../../src/format/constants.ts";
import {
  ELECTION_MS,
  HB_MS,
  accountVolume,
  checkOneLeaderPerTerm,
  makeClusterVolume,
  clusterScope,
  spawnNode,
  stopAll,
  waitLeader,
  type ClusterVolume,
  type NodeProc,
} from "./harness.ts";
import * as fs from "node:fs";

const { vols, procs } = clusterScope();

function junk(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) b[i] = (s = (s * 1103515245 + 12345) >>> 0) >>> 24;
  return b;
}

async function garbageUdp(v: ClusterVolume): Promise<number> {
  const sock = await Bun.udpSocket({});
  let sent = 0;
  const msgs = [
    new Uint8Array(0),
    new Uint8Array(3),
    junk(32, 1),
    junk(9000, 2),
    encodeQuorumMessage(v.fsid ^ 1n, 99n, C.QUORUM_MSG_HEARTBEAT, 0), // another volume
    encodeQuorumMessage(v.fsid, 99n, C.QUORUM_MSG_INVALID, 0), // bad type
    encodeQuorumMessage(v.fsid, 99n, C.QUORUM_MSG_HEARTBEAT, 9), // unconfigured slot
  ];
  const bad = encodeQuorumMessage(v.fsid, 1000n, C.QUORUM_MSG_REQUEST_VOTE, 1);
  bad[bad.length - 1]! ^= 0xff; // a would-be vote request for a huge term, crc broken
  msgs.push(bad);
  for (const port of v.ports) for (const m of msgs) if (sock.send(m, port, "127.0.0.1")) sent++;
  sock.close();
  return sent;
}

async function garbageTcp(port: number): Promise<void> {
  const payloads = [junk(64, 3), junk(5000, 4), new Uint8Array(32).fill(0xff), new Uint8Array(0)];
  for (const p of payloads) {
    const closed = new Promise<void>((resolve) => {
      void Bun.connect({
        hostname: "127.0.0.1",
        port,
        socket: {
          open(s) {
            if (p.length) s.write(p);
            else s.end();
          },
          data() {},
          close: () => resolve(),
          error: () => resolve(),
        },
      }).catch(() => resolve());
    });
    // the server closes a socket that breaks the protocol; the empty one we close ourselves
    await Promise.race([closed, Bun.sleep(3000)]);
  }
}

test("garbage input is ignored; SIGKILL of the leader fails over and clients carry on", async () => {
  const v = await makeClusterVolume("failover", 3);
  vols.push(v);
  const nodes = [0, 1, 2].map((s) => spawnNode(v, s));
  procs.push(...nodes);
  const first = await waitLeader(nodes, 10_000);
  for (const n of nodes) await n.waitEvent((e) => e.event === "store-ready", 10_000);
  await Promise.all(nodes.map(async (n) => {
    await n.cmd(`put ${n.slot} 0 300 1`);
    await n.cmd("sync");
  }));

  // garbage on every quorum port and on the server's port: nothing changes
  const sent = await garbageUdp(v);
  expect(sent).toBeGreaterThan(0);
  await garbageTcp(v.ports[first.leader.slot]!);
  await Bun.sleep(300);
  const after = await waitLeader(nodes, 2000);
  expect(after.leader).toBe(first.leader);
  expect(after.term).toBe(first.term);
  const view = await first.leader.cmd("server");
  expect(view.netInvalid as number).toBeGreaterThan(0);
  expect((view.mounted as string[]).length).toBe(3);
  for (const n of nodes) {
    await n.cmd(`put ${n.slot} 300 10 1`);
    await n.cmd("sync");
  }
  const logs = nodes.map((n) => fs.readFileSync(v.logPath(n.slot), "utf8")).join("");
  expect(logs).toMatch(/ignored a datagram/);

  // SIGKILL the leader in the middle of the survivors' uncommitted work
  const survivors = nodes.filter((n) => n !== first.leader);
  for (const n of survivors) await n.cmd(`put ${n.slot} 1000 50 2`);
  const marks = survivors.map((n) => n.events.length);
  const t0 = performance.now();
  first.leader.kill("SIGKILL");
  await first.leader.exited;
  const elected = await Promise.any(survivors.map((n, i) => n.waitEvent((e) => e.event === "elected", HB_MS + 10 * ELECTION_MS + 3000, marks[i]).then((e) => ({ n, e }))));
  const up = await elected.n.waitEvent((e) => e.event === "server-up", 5000, marks[survivors.indexOf(elected.n)]);
  const electedMs = (elected.e.at as number) - t0;
  const serverMs = (up.at as number) - t0;
  console.log(`failover: elected after ${electedMs.toFixed(0)} ms, server accepting after ${serverMs.toFixed(0)} ms (heartbeat timeout ${HB_MS} ms, election ${ELECTION_MS} ms)`);
  // the heartbeat timeout, then an election; a split vote between the two survivors costs one more
  expect(electedMs).toBeLessThan(HB_MS + 2 * ELECTION_MS + 1000);
  const second = await waitLeader(survivors, 5000, first.term);
  expect(second.leader).toBe(elected.n);

  // the survivors' clients reconnect to the new server and their open transactions commit
  const t1 = performance.now();
  await Promise.all(survivors.map((n) => n.cmd("sync", 20_000)));
  console.log(`failover: survivors' commits done ${(performance.now() - t1).toFixed(0)} ms after the new server came up`);
  for (const n of survivors) {
    await n.cmd(`put ${n.slot} 2000 20 3`);
    await n.cmd("sync");
  }
  for (const n of survivors) {
    // the dead leader's committed items, and everything the survivors committed
    expect(await n.cmd(`scan ${first.leader.slot}`)).toMatchObject({ count: 310, bad: 0 });
    for (const m of survivors) expect(await n.cmd(`scan ${m.slot}`)).toMatchObject({ count: 380, bad: 0 });
  }
  const log2 = fs.readFileSync(v.logPath(second.leader.slot), "utf8");
  expect(log2).toContain(`fenced mount rid ${first.leader.rid}`);
  const view2 = await second.leader.cmd("server");
  expect((view2.mounted as string[]).sort()).toEqual(survivors.map((n) => n.rid).sort());

  // the killed slot comes back as a follower of the new leader and sees everything
  const back = spawnNode(v, first.leader.slot);
  procs.push(back);
  await back.waitEvent((e) => e.event === "store-ready", 10_000);
  for (const m of survivors) expect(await back.cmd(`scan ${m.slot}`)).toMatchObject({ count: 380, bad: 0 });
  expect(await back.cmd(`scan ${first.leader.slot}`)).toMatchObject({ count: 310, bad: 0 });
  const third = await waitLeader([...survivors, back], 2000);
  expect(third.leader).toBe(second.leader);
  expect(third.term).toBe(second.term);

  expect(await stopAll([...survivors, back])).toEqual([0, 0, 0]);
  checkOneLeaderPerTerm(v, 3);
  const acct = accountVolume(v);
  expect(acct.dup).toEqual([]);
  expect(acct.seen).toBe(acct.total);
  expect(acct.mounted).toBe(0);
}, 60_000);
