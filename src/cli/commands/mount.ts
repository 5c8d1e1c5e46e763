/**
 * `scoutfs mount -o metadev_path=META[,quorum_slot_nr=N,...] DATADEV MNT`: start a node.
 *
 * By default the command returns once the volume is mounted and the node keeps running in the
 * background (like mount(8) with a kernel filesystem): it starts itself again with --foreground
 * in a new session, waits for its "ready" line (or its error, printed here with its exit status),
 * and exits. --foreground keeps the node in this process (systemd units use it); its log goes to
 * stderr. A background node logs to SCOUTFS_LOG_DIR (default /var/log/scoutfs).
 *
 * As `mount.scoutfs` (the helper mount(8) runs for `mount -t scoutfs`), arguments arrive as
 * `DATADEV MNT [-sfnv] [-o OPTS] [-t TYPE]`; see mountHelperArgs.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { spawn } from "node:child_process";
import { defineCommand, type ArgsDef } from "citty";
import { ScoutfsError, QuietExit } from "../../util/errors.ts";
import { parseStrict } from "../args.ts";
import { runNode } from "../../mount/node.ts";

const args = {
  options: { type: "string", alias: "o", valueHint: "OPTS", description: "Mount options (scoutfs(5)), comma separated; repeatable. metadev_path= is required" },
  foreground: { type: "boolean", description: "Stay in the foreground (for systemd); log to stderr" },
  "DATA-DEVICE": { type: "positional", required: false, description: "Data device or image file" },
  "MOUNT-POINT": { type: "positional", required: false, description: "Directory to mount on" },
} satisfies ArgsDef;

/** Seconds a background mount may take to report ready. */
const READY_TIMEOUT_MS = 120_000;
const READY_LINE = "scoutfs-mount-ready";

/** The command line that runs this program again (compiled binary, or bun + script). */
function selfCommand(): string[] {
  return Bun.main.startsWith("/$bunfs/") ? [process.execPath] : [process.execPath, Bun.main];
}

export const mountCommand = defineCommand({
  meta: { name: "mount", description: "Mount a ScoutFS filesystem (starts a node)" },
  args,
  async run({ rawArgs }) {
    const p = parseStrict(rawArgs, args, ["options"]);
    if (p.positionals.length > 2) throw new ScoutfsError("EINVAL", "more than two arguments given");
    const [dataPath, mnt] = p.positionals;
    if (!dataPath) throw new ScoutfsError("EINVAL", "no data device argument given");
    if (!mnt) throw new ScoutfsError("EINVAL", "no mount point argument given");
    const options = ((p.values.options as string[] | undefined) ?? []).join(",");
    const mountpoint = path.resolve(mnt);
    if (p.values.foreground || process.env.SCOUTFS_MOUNT_CHILD) {
      const child = !!process.env.SCOUTFS_MOUNT_CHILD;
      const logFile = process.env.SCOUTFS_MOUNT_LOG;
      const log = logFile
        ? (m: string) => fs.appendFileSync(logFile, `${new Date().toISOString()} ${m}\n`)
        : (m: string) => process.stderr.write(`scoutfs: ${m}\n`);
      const status = await runNode({
        dataPath: path.resolve(dataPath),
        mountpoint,
        options,
        log,
        onReady: () => {
          if (child) process.stdout.write(`${READY_LINE}\n`);
        },
      });
      throw new QuietExit(status);
    }
    await background(rawArgs, mountpoint);
  },
});

/** Start the node in a new session and wait for it to report that it is mounted. */
async function background(rawArgs: string[], mountpoint: string): Promise<void> {
  const dir = process.env.SCOUTFS_LOG_DIR ?? "/var/log/scoutfs";
  fs.mkdirSync(dir, { recursive: true });
  const logFile = path.join(dir, `mount${mountpoint.replace(/\//g, "_")}.log`);
  const [cmd, ...pre] = selfCommand();
  const child = spawn(cmd!, [...pre, "mount", ...rawArgs], {
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, SCOUTFS_MOUNT_CHILD: "1", SCOUTFS_MOUNT_LOG: logFile },
  });
  let out = "";
  let err = "";
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  const result = await new Promise<{ ready: boolean; code: number | null }>((resolve) => {
    const timer = setTimeout(() => resolve({ ready: false, code: null }), READY_TIMEOUT_MS);
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes(READY_LINE)) {
        clearTimeout(timer);
        resolve({ ready: true, code: null });
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ ready: false, code });
    });
  });
  if (result.ready) {
    // the node runs on alone: let go of its pipes
    child.stdout!.destroy();
    child.stderr!.destroy();
    child.unref();
    return;
  }
  if (result.code === null) {
    child.kill("SIGTERM");
    throw new ScoutfsError("EIO", `the node did not report ready within ${READY_TIMEOUT_MS / 1000} s`, `see ${logFile}`);
  }
  // the child printed its own one-line error
  process.stderr.write(err);
  throw new QuietExit(result.code || 1);
}

/**
 * Translate mount.scoutfs arguments (`DATADEV MNT [-sfnv] [-o OPTS] [-t TYPE]`, as mount(8)
 * passes them) into `scoutfs mount` arguments; null for a fake mount (-f: do nothing).
 */
export function mountHelperArgs(argv: string[]): string[] | null {
  const pos: string[] = [];
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "-o") {
      const v = argv[++i];
      if (v === undefined) throw new ScoutfsError("EINVAL", "-o needs an option string");
      out.push("-o", v);
    } else if (a === "-t") {
      i++; // the type: scoutfs
    } else if (/^-[snvfN]+$/.test(a)) {
      if (a.includes("f")) return null;
    } else if (a.startsWith("-")) {
      throw new ScoutfsError("EINVAL", `unknown mount helper option ${a}`);
    } else pos.push(a);
  }
  return [...out, ...pos];
}
