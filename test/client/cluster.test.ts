// Mounts in other processes and long runs: a SIGKILLed mount loses only its uncommitted
// transaction; many commits with automatic merges keep every metadata block accounted for.
import { afterAll, expect, test } from "bun:test";
import * as path from "node:path";
import { makeVolume, removeVolume, startServer, type Vol } from "../server/helpers.ts";
import { accountMeta, key, openStore, val } from "./helpers.ts";
import { BUN } from "../helpers/images.ts";
import { rng } from "../helpers/rng.ts";

const vols: Vol[] = [];
afterAll(() => vols.forEach(removeVolume));


test("a SIGKILLed mount process loses only its uncommitted transaction", async () => {
  const v = await makeVolume("kill");
  vols.push(v);
  const server = startServer(v, 1n);
  try {
    const free0 = server.statfs().free_data_blocks;
    const child = Bun.spawn([BUN, path.join(import.meta.dir, "child-writer.ts"), v.metaPath, v.dataPath, "30"], { stdout: "pipe", stderr: "inherit" });
    const reader = child.stdout.getReader();
    let out = "";
    while (!out.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      out += new TextDecoder().decode(value);
    }
    expect(out).toStartWith("ready ");
    child.kill("SIGKILL");
    await child.exited;
    const deadline = Date.now() + 10_000;
    while (server.mountedRids().length > 0 && Date.now() < deadline) await Bun.sleep(50);
    expect(server.mountedRids()).toEqual([]);
    const b = await openStore(v);
    let n = 0;
    for (let k = key(0); ; ) {
      const it = b.reader.next(k, key(1000));
      if (!it) break;
      expect(it.val).toEqual(val(n));
      n++;
      k = key(n);
    }
    expect(n).toBe(30);
    await b.close();
    // the committed 8 data blocks stay allocated, the uncommitted 8 came back
    expect(server.statfs().free_data_blocks).toBe(free0 - 8n);
    const a = accountMeta(server);
    expect(a.dup).toEqual([]);
    expect(a.seen).toBe(a.total);
  } finally {
    server.close();
  }
}, 30_000);

test("many commits from three mounts with automatic merges: model and block accounting", async () => {
  const seed = Number(process.env.CLUSTER_SEED ?? 7);
  const r = rng(seed);
  const v = await makeVolume("many");
  vols.push(v);
  const server = startServer(v, 1n, { mergeCommits: 9 });
  const stores = [await openStore(v), await openStore(v), await openStore(v)];
  const model = new Map<string, Uint8Array>();
  try {
    for (let round = 0; round < 25; round++) {
      // each mount owns keys n % 3 === its index (no locks here: mounts never share a key)
      stores.forEach((s, m) => {
        s.transact((w) => {
          for (let k = 0, ops = 1 + r(40); k < ops; k++) {
            const n = r(400) * 3 + m;
            if (r(4) === 0 && model.has(key(n))) {
              w.delete(key(n));
              model.delete(key(n));
            } else {
              const x = val(n, round);
              w.put(key(n), x);
              model.set(key(n), x);
            }
          }
        });
      });
      await Promise.all(stores.map((s) => s.sync()));
      if (round % 5 === 4) {
        await server.merge.idle();
        const s = stores[r(3)]!;
        await s.refreshRoots();
        const seen = new Map<string, Uint8Array>();
        for (let k = key(0); ; ) {
          const it = s.reader.next(k, key(1 << 20));
          if (!it) break;
          seen.set(it.key, it.val);
          const c = it.key.charCodeAt(26);
          k = c < 255 ? it.key.slice(0, 26) + String.fromCharCode(c + 1) : key(1 << 20);
        }
        expect(seen).toEqual(model);
        const a = accountMeta(server);
        expect(a.dup).toEqual([]);
        expect(a.seen).toBe(a.total);
      }
    }
    expect(server.merge.counters.merges).toBeGreaterThanOrEqual(3);
  } catch (err) {
    console.error(`cluster model failed with CLUSTER_SEED=${seed}`);
    throw err;
  } finally {
    for (const s of stores) await s.close();
    await server.merge.idle();
    const a = accountMeta(server);
    expect(a.dup).toEqual([]);
    expect(a.seen).toBe(a.total);
    server.close();
  }
}, 60_000);
