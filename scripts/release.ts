#!/usr/bin/env bun
/**
 * Make a release directory: the compiled binary named for its platform, SHA256SUMS, and
 * install.sh. Serve the directory over HTTP(S) and point `install.sh --url` at it.
 *   bun scripts/release.ts [OUTDIR]      (default dist/release)
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { createHash } from "node:crypto";

const repo = path.join(import.meta.dir, "..");
const out = path.resolve(process.argv[2] ?? path.join(repo, "dist", "release"));
const arch = process.arch === "arm64" ? "arm64" : "x64";
const name = `scoutfs-linux-${arch}`;

fs.mkdirSync(out, { recursive: true });
const build = Bun.spawnSync([process.execPath, path.join(repo, "scripts", "build.ts"), path.join(out, name)], { stdout: "inherit", stderr: "inherit" });
if (build.exitCode !== 0) process.exit(build.exitCode ?? 1);
const sum = createHash("sha256").update(fs.readFileSync(path.join(out, name))).digest("hex");
fs.writeFileSync(path.join(out, "SHA256SUMS"), `${sum}  ${name}\n`);
fs.copyFileSync(path.join(repo, "install.sh"), path.join(out, "install.sh"));
console.log(`release in ${out}: ${name} ${sum}`);
