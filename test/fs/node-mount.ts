/**
 * A real `scoutfs mount` node for tests: the CLI in background mode (quorum slot 0 on a free
 * loopback port, the server role in the elected node, the mount a ClientStore client of it over
 * TCP), exactly the path a user takes. Logs and the mount registry live in the test's own temp
 * dir (SCOUTFS_LOG_DIR / SCOUTFS_RUN_DIR), and a short quorum heartbeat timeout lets a remount
 * after SIGKILL elect itself quickly.
 *
 * `NodeVolume.mkfs()` makes a volume with our mkfs on sparse image files; `NodeVolume.of()`
 * takes existing images (e.g. a fixture made by the real mkfs, whose quorum slot 0 is
 * 127.0.0.1:42000 — such a volume is mounted with that address, see `fixturePort`).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { BUN, CLI, sparseFile } from "../helpers/images.ts";
import { freePorts } from "../helpers/ports.ts";

export function isMounted(mnt: string): boolean {
  return fs.readFileSync("/proc/mounts", "utf8").split("\n").some((l) => l.split(" ")[1] === mnt);
}

export async function waitUnmounted(mnt: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (isMounted(mnt)) {
    if (Date.now() > end) throw new Error(`${mnt} still mounted after ${ms} ms`);
    await Bun.sleep(25);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export interface CliResult {
  code: number;
  out: string;
  err: string;
}

export class NodeVolume {
  readonly runDir: string;
  readonly logDir: string;
  readonly mnt: string;
  readonly env: Record<string, string | undefined>;

  private constructor(
    readonly dir: string,
    readonly meta: string,
    readonly data: string,
    readonly extraOpts = "",
  ) {
    this.runDir = path.join(dir, "run");
    this.logDir = path.join(dir, "log");
    this.mnt = path.join(dir, "mnt");
    // other users must reach the mount point (the permission tests run as nobody)
    fs.chmodSync(dir, 0o755);
    fs.mkdirSync(this.mnt, { recursive: true });
    fs.mkdirSync(this.logDir, { recursive: true });
    this.env = { ...process.env, SCOUTFS_LOG_DIR: this.logDir, SCOUTFS_RUN_DIR: this.runDir };
  }

  /** A fresh volume made by our mkfs in `dir` (meta/data sizes in bytes). */
  static async mkfs(dir: string, o: { metaBytes?: number; dataBytes?: number; extraOpts?: string; mkfsArgs?: string[] } = {}): Promise<NodeVolume> {
    const port = (await freePorts(1))[0]!;
    const meta = sparseFile(path.join(dir, "meta.img"), o.metaBytes ?? 1 << 30);
    const data = sparseFile(path.join(dir, "data.img"), o.dataBytes ?? 4 * 2 ** 30);
    const v = new NodeVolume(dir, meta, data, o.extraOpts);
    const r = v.cli(["mkfs", "-A", "-f", ...(o.mkfsArgs ?? []), "-Q", `0,127.0.0.1,${port}`, meta, data]);
    if (r.code !== 0) throw new Error(`mkfs failed: ${r.err}`);
    return v;
  }

  /** Existing images (quorum slot 0's address is whatever their mkfs wrote). */
  static of(dir: string, meta: string, data: string, extraOpts = ""): NodeVolume {
    return new NodeVolume(dir, meta, data, extraOpts);
  }

  cli(args: string[]): CliResult {
    const r = Bun.spawnSync([BUN, CLI, ...args], { env: this.env, stdout: "pipe", stderr: "pipe" });
    return { code: r.exitCode ?? 1, out: r.stdout.toString(), err: r.stderr.toString() };
  }

  /** `scoutfs mount` in the background; resolves once mounted. */
  mount(): void {
    const r = this.cli(["mount", "-o", `metadev_path=${this.meta},quorum_slot_nr=0,quorum_heartbeat_timeout_ms=2000${this.extraOpts}`, this.data, this.mnt]);
    if (r.code !== 0 || !isMounted(this.mnt)) throw new Error(`scoutfs mount failed (${r.code}): ${r.err}\n${this.log().slice(-3000)}`);
    // others reach it (the permission tests run as nobody); a full device may refuse changes
    if ((fs.statSync(this.mnt).mode & 0o755) !== 0o755) fs.chmodSync(this.mnt, 0o755);
  }

  /** The pids of live nodes registered for this volume (normally one). */
  nodePids(): number[] {
    const pids: number[] = [];
    if (!fs.existsSync(this.runDir)) return pids;
    for (const fsidDir of fs.readdirSync(this.runDir)) {
      for (const f of fs.readdirSync(path.join(this.runDir, fsidDir))) {
        const pid = Number(fs.readFileSync(path.join(this.runDir, fsidDir, f), "utf8").trim());
        if (pid > 0 && alive(pid)) pids.push(pid);
      }
    }
    return pids;
  }

  /** umount(8), then wait for the node to exit (it commits and resigns first). */
  async unmount(): Promise<void> {
    const pids = this.nodePids();
    if (isMounted(this.mnt)) {
      const r = Bun.spawnSync(["umount", this.mnt], { stderr: "pipe" });
      if (r.exitCode !== 0) throw new Error(`umount failed: ${r.stderr.toString()}`);
    }
    await waitUnmounted(this.mnt);
    const end = Date.now() + 15_000;
    while (pids.some(alive)) {
      if (Date.now() > end) throw new Error(`node ${pids.join(",")} still running 15 s after umount`);
      await Bun.sleep(25);
    }
  }

  /** SIGKILL the node and drop the dead mount point. */
  async kill(): Promise<void> {
    const pids = this.nodePids();
    for (const p of pids) process.kill(p, "SIGKILL");
    const end = Date.now() + 5000;
    while (pids.some(alive) && Date.now() < end) await Bun.sleep(20);
    Bun.spawnSync(["umount", "-l", this.mnt]);
    await waitUnmounted(this.mnt);
  }

  /** Best effort for afterAll: unmount, or kill and detach. */
  async cleanup(): Promise<void> {
    try {
      await this.unmount();
    } catch {
      await this.kill().catch(() => {});
    }
  }

  log(): string {
    if (!fs.existsSync(this.logDir)) return "";
    return fs
      .readdirSync(this.logDir)
      .map((n) => fs.readFileSync(path.join(this.logDir, n), "utf8"))
      .join("");
  }
}
