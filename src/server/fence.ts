/**
 * Fencing: making sure a mount that stopped responding can no longer write to the devices before
 * the server gives its resources (log trees, allocators, locks, quorum slot) to anyone else.
 * Requests are created by a newly elected leader for previous leaders that did not stop cleanly,
 * and by the server for clients that vanished. The server cannot make progress until each
 * request is fenced; a request that fails or times out shuts the server down so another leader
 * can try (exactly the scoutfs contract).
 *
 * Agents, chosen per node:
 *   - a run command, with the scoutfs-fenced(8) interface: SCOUTFS_FENCED_RUN (executable),
 *     SCOUTFS_FENCED_RUN_ARGS (extra arguments), and for each request the environment variables
 *     SCOUTFS_FENCED_REQ_RID (16 hex digits) and SCOUTFS_FENCED_REQ_IP (dotted quad); exit 0
 *     means fenced;
 *   - without one, the built-in local agent for mounts on this host: every node registers
 *     itself in a runtime directory (<dir>/<fsid>/<rid> holding its pid); fencing a registered
 *     mount kills that process with SIGKILL and waits for it to be gone; a registration whose
 *     process is already gone is fenced by definition. A mount on another host cannot be fenced
 *     locally, so without a run command such a request fails.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { ScoutfsError } from "../util/errors.ts";
import { hex16 } from "../util/hex.ts";

export const DEFAULT_REGISTRY_DIR = process.env.SCOUTFS_RUN_DIR ?? "/run/scoutfs";
export const FENCE_TIMEOUT_MS = 15_000;

export interface FenceRequest {
  rid: bigint;
  /** Dotted-quad address of the mount's last connection or quorum slot. */
  ipv4: string;
  reason: string;
}


/** This host's record of the mounts running on it, so a local leader can fence them. */
export class MountRegistry {
  constructor(private readonly dir: string, private readonly fsid: bigint) {}

  private file(rid: bigint): string {
    return path.join(this.dir, hex16(this.fsid), hex16(rid));
  }

  register(rid: bigint, pid = process.pid): void {
    fs.mkdirSync(path.dirname(this.file(rid)), { recursive: true, mode: 0o700 });
    fs.writeFileSync(this.file(rid), `${pid}\n`, { mode: 0o600 });
  }

  unregister(rid: bigint): void {
    fs.rmSync(this.file(rid), { force: true });
  }

  lookup(rid: bigint): number | null {
    try {
      const pid = Number(fs.readFileSync(this.file(rid), "utf8").trim());
      return Number.isInteger(pid) && pid > 0 ? pid : null;
    } catch {
      return null;
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as { code?: string }).code === "EPERM";
  }
  // a zombie (killed, not yet reaped by its parent) can no longer write: count it as gone
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

export interface FencerOptions {
  registry: MountRegistry;
  runCommand?: string;
  runArgs?: string[];
  timeoutMs?: number;
  log?: (msg: string) => void;
}

export class Fencer {
  readonly fenced: FenceRequest[] = [];

  constructor(private readonly o: FencerOptions) {}

  static fromEnv(registry: MountRegistry, log?: (m: string) => void): Fencer {
    const run = process.env.SCOUTFS_FENCED_RUN;
    const args = process.env.SCOUTFS_FENCED_RUN_ARGS?.split(/\s+/).filter(Boolean) ?? [];
    return new Fencer({ registry, ...(run ? { runCommand: run, runArgs: args } : {}), ...(log ? { log } : {}) });
  }

  async fence(req: FenceRequest): Promise<void> {
    const timeoutMs = this.o.timeoutMs ?? FENCE_TIMEOUT_MS;
    this.o.log?.(`fencing mount rid ${hex16(req.rid)} at ${req.ipv4} (${req.reason})`);
    if (this.o.runCommand) await this.runCommand(req, timeoutMs);
    else await this.fenceLocal(req, timeoutMs);
    this.fenced.push(req);
    this.o.log?.(`fenced mount rid ${hex16(req.rid)}`);
  }

  private async runCommand(req: FenceRequest, timeoutMs: number): Promise<void> {
    const cmd = this.o.runCommand!;
    let proc;
    try {
      proc = Bun.spawn([cmd, ...(this.o.runArgs ?? [])], {
        env: { ...process.env, SCOUTFS_FENCED_REQ_RID: hex16(req.rid), SCOUTFS_FENCED_REQ_IP: req.ipv4 },
        stdout: "ignore",
        stderr: "pipe",
      });
    } catch (err) {
      throw new ScoutfsError("EIO", `fence command '${cmd}' could not be started: ${(err as Error).message}`);
    }
    const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
    const [code, err] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
    clearTimeout(timer);
    if (code !== 0) {
      throw new ScoutfsError("EIO", `fence command '${cmd}' failed for rid ${hex16(req.rid)} with status ${code}${err.trim() ? `: ${err.trim().split("\n").at(-1)}` : ""}`);
    }
  }

  private async fenceLocal(req: FenceRequest, timeoutMs: number): Promise<void> {
    const pid = this.o.registry.lookup(req.rid);
    if (pid === null) {
      throw new ScoutfsError(
        "EIO",
        `cannot fence mount rid ${hex16(req.rid)} at ${req.ipv4}: it is not registered on this host`,
        "configure SCOUTFS_FENCED_RUN with a fence agent for mounts on other hosts",
      );
    }
    if (pid !== process.pid && alive(pid)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    const end = performance.now() + timeoutMs;
    while (pid !== process.pid && alive(pid)) {
      if (performance.now() > end) throw new ScoutfsError("EIO", `mount rid ${hex16(req.rid)} (pid ${pid}) survived SIGKILL for ${timeoutMs} ms`);
      await Bun.sleep(10);
    }
    if (pid === process.pid) throw new ScoutfsError("EINVAL", `refusing to fence our own mount rid ${hex16(req.rid)}`);
    this.o.registry.unregister(req.rid);
  }
}
