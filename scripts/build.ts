#!/usr/bin/env bun
/**
 * Build the single self-contained executable: `bun build --compile` of the CLI entry point into
 * dist/scoutfs (or the path given as the first argument). bun:sqlite and bun:ffi are part of the
 * Bun runtime embedded in the executable, so the result needs nothing else installed.
 */
import * as path from "node:path";

const repo = path.join(import.meta.dir, "..");
const outfile = path.resolve(process.argv[2] ?? path.join(repo, "dist", "scoutfs"));

const result = await Bun.build({
  entrypoints: [path.join(repo, "src", "cli", "main.ts")],
  compile: { outfile },
  minify: { syntax: true, whitespace: true },
});
if (!result.success) {
  for (const log of result.logs) console.error(log);
  process.exit(1);
}
console.log(`built ${outfile}`);
