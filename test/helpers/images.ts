/** Test helpers for image files: temp dirs, sparse files, fixture images made by the real mkfs. */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { createHash } from "node:crypto";

export const FIXTURES = path.join(import.meta.dir, "..", "fixtures", "real-mkfs");
export const REPO = path.join(import.meta.dir, "..", "..");
export const BUN = process.execPath;
export const CLI = path.join(REPO, "src", "cli", "main.ts");

export function tempDir(prefix = "scoutfs-test-"): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function sparseFile(p: string, size: number): string {
  fs.writeFileSync(p, "");
  fs.truncateSync(p, size);
  return p;
}

/** Gunzip a fixture image into `dir` as a sparse file (only non-zero 64 KiB chunks written). */
export function fixtureImage(name: string, which: "meta" | "data", dir: string, size?: number): string {
  const gz = fs.readFileSync(path.join(FIXTURES, `${name}.${which}.img.gz`));
  const raw = Bun.gunzipSync(gz);
  const out = path.join(dir, `${name}.${which}.img`);
  const fd = fs.openSync(out, "w");
  const CHUNK = 65536;
  const zero = Buffer.alloc(CHUNK);
  for (let off = 0; off < raw.length; off += CHUNK) {
    const c = Buffer.from(raw.buffer, raw.byteOffset + off, Math.min(CHUNK, raw.length - off));
    if (Buffer.compare(c, zero.subarray(0, c.length)) !== 0) fs.writeSync(fd, c, 0, c.length, off);
  }
  fs.ftruncateSync(fd, size ?? raw.length);
  fs.closeSync(fd);
  return out;
}

export function fixtureText(name: string): string {
  return fs.readFileSync(path.join(FIXTURES, name), "utf8");
}

export function sha256(p: string): string {
  return createHash("sha256").update(fs.readFileSync(p)).digest("hex");
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run the CLI from source as a separate process. */
export function runCli(args: string[], cwd?: string): RunResult {
  const r = Bun.spawnSync([BUN, CLI, ...args], { cwd, stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
  return { code: r.exitCode ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}
