#!/usr/bin/env bun
/**
 * The main job on an embedded default: a one-node volume on sparse image files (quorum slot 0 on
 * 127.0.0.1), mounted and in use:
 *   bun scripts/demo.ts [DIR]      (default ./demo; the volume is mounted at DIR/mnt)
 *
 * It makes the volume (keeping an existing one), mounts it in the background with `scoutfs
 * mount` (the node elects itself, starts the server and serves the mount as its client), writes
 * and reads a few files, shows df, and leaves the volume mounted. `umount DIR/mnt` stops it.
 */
import * as fs from "node:fs";
import * as path from "node:path";

const repo = path.join(import.meta.dir, "..");
const dir = path.resolve(process.argv[2] ?? path.join(repo, "demo"));
const meta = path.join(dir, "meta.img");
const data = path.join(dir, "data.img");
const mnt = path.join(dir, "mnt");
const cli = path.join(repo, "src", "cli", "main.ts");
const env = { ...process.env, SCOUTFS_LOG_DIR: process.env.SCOUTFS_LOG_DIR ?? dir };

const run = (args: string[]) => {
  console.log(`$ scoutfs ${args.join(" ")}`);
  const r = Bun.spawnSync([process.execPath, cli, ...args], { stdout: "inherit", stderr: "inherit", env });
  if (r.exitCode !== 0) process.exit(r.exitCode ?? 1);
};
const sh = (cmd: string[]) => {
  console.log(`$ ${cmd.join(" ")}`);
  const r = Bun.spawnSync(cmd, { stdout: "inherit", stderr: "inherit" });
  if (r.exitCode !== 0) process.exit(r.exitCode ?? 1);
};
const mounted = () => fs.readFileSync("/proc/mounts", "utf8").split("\n").some((l) => l.split(" ")[1] === mnt);

fs.mkdirSync(mnt, { recursive: true });
if (mounted()) {
  console.log(`${mnt} is already mounted`);
} else {
  if (!fs.existsSync(meta) || !fs.existsSync(data)) {
    for (const [p, size] of [[meta, 1 << 30], [data, 4 * 2 ** 30]] as const) {
      fs.writeFileSync(p, "");
      fs.truncateSync(p, size);
    }
    run(["mkfs", "-A", "-Q", "0,127.0.0.1,42000", meta, data]);
  }
  run(["mount", "-o", `metadev_path=${meta},quorum_slot_nr=0`, data, mnt]);
}

const hello = path.join(mnt, "hello.txt");
fs.writeFileSync(hello, `written by the scoutfs demo at ${new Date().toISOString()}\n`);
fs.mkdirSync(path.join(mnt, "archive", "2026"), { recursive: true });
fs.writeFileSync(path.join(mnt, "archive", "2026", "data.bin"), Buffer.alloc(4 << 20, 0x42));
sh(["cat", hello]);
sh(["ls", "-lR", mnt]);
sh(["df", "-h", mnt]);
console.log(`\nscoutfs volume mounted at ${mnt} (metadata ${meta}, data ${data}; sparse image files)`);
console.log(`unmount with: umount ${mnt}    logs: ${path.join(env.SCOUTFS_LOG_DIR, "mount" + mnt.replace(/\//g, "_") + ".log")}`);
