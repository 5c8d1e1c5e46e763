// The scoutfs filesystem on real FUSE mounts: the POSIX checklist and the randomized file checker
// of test/fs/posix-suite.ts, run twice:
//  - on the standalone store, served by a child process (test/fs/serve.ts) on a fresh mkfs'd
//    volume (SCOUTFS_TEST_STORE=mem serves the in-memory store instead);
//  - on a real `scoutfs mount` node (the CLI in background mode: quorum, the server role, the
//    mount a ClientStore client of it over TCP), the path users take.
// Each ends with an unmount and a remount that finds everything again.
import { expect } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { tempDir } from "../helpers/images.ts";
import { isMounted } from "../fuse/helpers.ts";
import { NodeVolume } from "./node-mount.ts";
import { posixSuite } from "./posix-suite.ts";

const ROOT = path.join(import.meta.dir, "..", "..");

interface Server {
  mnt: string;
  proc: ReturnType<typeof Bun.spawn>;
  info: Record<string, unknown>;
  stderr: () => string;
  stop: () => Promise<void>;
}

async function serve(images: string): Promise<Server> {
  const mnt = fs.mkdtempSync(path.join(os.tmpdir(), "scoutfs-mnt-"));
  fs.chmodSync(mnt, 0o755);
  // SCOUTFS_TEST_STORE=mem serves the in-memory store instead of the real one.
  const store = process.env.SCOUTFS_TEST_STORE === "mem" ? ["--store", "mem"] : [];
  const proc = Bun.spawn([process.execPath, path.join(ROOT, "test/fs/serve.ts"), mnt, "--images", images, ...store], { stdout: "pipe", stderr: "pipe" });
  let err = "";
  void (async () => {
    const d = new TextDecoder();
    for await (const c of proc.stderr as ReadableStream<Uint8Array>) err += d.decode(c);
  })();
  const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
  let out = "";
  const deadline = Date.now() + 20_000;
  while (!out.includes("\n")) {
    const r = await Promise.race([reader.read(), Bun.sleep(Math.max(1, deadline - Date.now())).then(() => undefined)]);
    if (r === undefined || r.done) {
      proc.kill();
      throw new Error(`serve did not start: ${out} ${err}`);
    }
    out += new TextDecoder().decode(r.value);
  }
  reader.releaseLock();
  const line = out.split("\n")[0]!;
  if (!line.startsWith("ready ")) throw new Error(`serve said: ${line} ${err}`);
  return {
    mnt,
    proc,
    info: JSON.parse(line.slice(6)) as Record<string, unknown>,
    stderr: () => err,
    stop: async () => {
      if (isMounted(mnt)) {
        if (Bun.spawnSync(["umount", mnt]).exitCode !== 0) Bun.spawnSync(["umount", "-l", mnt]);
      }
      const done = await Promise.race([proc.exited, Bun.sleep(10_000).then(() => "timeout")]);
      if (done === "timeout") proc.kill("SIGKILL");
      try {
        fs.rmdirSync(mnt);
      } catch {
        // busy: left for the tmp cleaner
      }
    },
  };
}

/** When the real utility is installed (never required), it reads the unmounted volume. */
function printsWithRealPrint(meta: string | null): void {
  if (meta === null || Bun.which("scoutfs-real") === null) return;
  const p = Bun.spawnSync(["scoutfs-real", "print", meta], { stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== null && p.stderr.length === 0) expect(p.stdout.toString()).toContain("name keep");
}

// --- the standalone store (serve.ts)
let images = "";
let srv: Server | null = null;
posixSuite("standalone store (serve.ts)", {
  kind: "standalone",
  start: async () => {
    images = fs.mkdtempSync(path.join(os.tmpdir(), "scoutfs-img-"));
    srv = await serve(images);
    return srv.mnt;
  },
  remount: async () => {
    await srv!.stop();
    printsWithRealPrint(srv!.info.store === "real" ? path.join(images, "meta.img") : null);
    srv = await serve(images);
    return srv.mnt;
  },
  stop: async () => {
    await srv?.stop();
    fs.rmSync(images, { recursive: true, force: true });
  },
  persistent: () => srv?.info.store === "real",
  checkMounted: () => {
    expect(["real", "mem"]).toContain(srv!.info.store as string);
    if (process.env.SCOUTFS_TEST_STORE !== "mem") expect(srv!.info.store).toBe("real");
    expect(srv!.info.enabledFlagNames as string[]).toContain("POSIX_ACL");
  },
});

// --- a real scoutfs mount node (ClientStore + Server)
let nodeDir = "";
let vol: NodeVolume | null = null;
posixSuite("scoutfs mount node (ClientStore + Server)", {
  kind: "node",
  start: async () => {
    nodeDir = tempDir("scoutfs-node-posix-");
    vol = await NodeVolume.mkfs(nodeDir);
    vol.mount();
    return vol.mnt;
  },
  remount: async () => {
    await vol!.unmount();
    printsWithRealPrint(vol!.meta);
    vol!.mount();
    return vol!.mnt;
  },
  stop: async () => {
    await vol?.cleanup();
    fs.rmSync(nodeDir, { recursive: true, force: true });
  },
  persistent: () => true,
  checkMounted: (mnt) => {
    const line = fs.readFileSync("/proc/mounts", "utf8").split("\n").find((l) => l.split(" ")[1] === mnt)!;
    expect(line.split(" ")[2]).toBe("fuse.scoutfs");
    expect(vol!.nodePids().length).toBe(1);
  },
});
