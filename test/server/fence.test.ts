import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { Fencer, MountRegistry } from "../../src/server/fence.ts";
import { tempDir } from "../helpers/images.ts";

const dir = tempDir();
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("fencing", () => {
  test("the local agent kills a registered mount's process and forgets it", async () => {
    const reg = new MountRegistry(path.join(dir, "run1"), 0xabcn);
    const victim = Bun.spawn(["sleep", "600"]);
    reg.register(0x77n, victim.pid);
    const f = new Fencer({ registry: reg });
    await f.fence({ rid: 0x77n, ipv4: "127.0.0.1", reason: "client vanished" });
    expect(await victim.exited).not.toBe(0);
    expect(victim.signalCode).toBe("SIGKILL");
    expect(reg.lookup(0x77n)).toBeNull();
  });

  test("a registered mount whose process is already gone is fenced", async () => {
    const reg = new MountRegistry(path.join(dir, "run2"), 0xabcn);
    const p = Bun.spawn(["true"]);
    await p.exited;
    reg.register(0x78n, p.pid);
    await new Fencer({ registry: reg }).fence({ rid: 0x78n, ipv4: "127.0.0.1", reason: "leader" });
  });

  test("an unknown mount cannot be fenced locally", async () => {
    const reg = new MountRegistry(path.join(dir, "run3"), 0xabcn);
    await expect(new Fencer({ registry: reg }).fence({ rid: 0x79n, ipv4: "10.0.0.9", reason: "x" })).rejects.toThrow(/not registered on this host/);
  });

  test("a run command gets the scoutfs-fenced environment; its status decides", async () => {
    const reg = new MountRegistry(path.join(dir, "run4"), 0xabcn);
    const out = path.join(dir, "fenced.txt");
    const script = path.join(dir, "agent.sh");
    fs.writeFileSync(script, `#!/bin/sh\necho "$SCOUTFS_FENCED_REQ_RID $SCOUTFS_FENCED_REQ_IP $1" >> ${out}\n[ "$SCOUTFS_FENCED_REQ_IP" = "10.0.0.1" ]\n`, { mode: 0o755 });
    const f = new Fencer({ registry: reg, runCommand: script, runArgs: ["--go"] });
    await f.fence({ rid: 0xabn, ipv4: "10.0.0.1", reason: "x" });
    expect(fs.readFileSync(out, "utf8")).toBe("00000000000000ab 10.0.0.1 --go\n");
    await expect(f.fence({ rid: 0xacn, ipv4: "10.0.0.2", reason: "x" })).rejects.toThrow(/failed for rid 00000000000000ac with status 1/);
    await expect(new Fencer({ registry: reg, runCommand: path.join(dir, "missing") }).fence({ rid: 1n, ipv4: "1.1.1.1", reason: "x" })).rejects.toThrow(/could not be started|failed/);
  });
});
