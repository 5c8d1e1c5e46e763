#!/usr/bin/env bun
/**
 * The main job on an embedded default: make a one-node volume on sparse image files (quorum slot
 * 0 on loopback) and print its structures. Later this ends with a mounted volume.
 *   bun scripts/demo.ts [DIR]      (default ./demo)
 */
import * as fs from "node:fs";
import * as path from "node:path";

const repo = path.join(import.meta.dir, "..");
const dir = path.resolve(process.argv[2] ?? path.join(repo, "demo"));
const meta = path.join(dir, "meta.img");
const data = path.join(dir, "data.img");
fs.mkdirSync(dir, { recursive: true });
for (const [p, size] of [[meta, 1 << 30], [data, 4 * 2 ** 30]] as const) {
  fs.writeFileSync(p, "");
  fs.truncateSync(p, size);
}
const cli = path.join(repo, "src", "cli", "main.ts");
const run = (args: string[]) => {
  console.log(`$ scoutfs ${args.join(" ")}`);
  const r = Bun.spawnSync([process.execPath, cli, ...args], { stdout: "inherit", stderr: "inherit" });
  if (r.exitCode !== 0) process.exit(r.exitCode ?? 1);
};
run(["mkfs", "-A", "-f", "-Q", "0,127.0.0.1,42000", meta, data]);
run(["print", "-S", meta]);
console.log(`\ndemo volume: ${meta} (metadata, 1 GiB sparse) and ${data} (data, 4 GiB sparse)`);
