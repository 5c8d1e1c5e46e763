#!/usr/bin/env bun
/**
 * `npm test`: run the whole bun:test suite, show its output as it goes, and end with one plain
 * summary line ("N passed, N failed") that CI systems recognize. Arguments are passed to
 * `bun test` (for example a path filter).
 */
export {};

const proc = Bun.spawn([process.execPath, "test", ...process.argv.slice(2)], {
  stdout: "pipe",
  stderr: "pipe",
  env: { ...process.env, NO_COLOR: "1" },
});

let tail = "";
async function pump(stream: ReadableStream<Uint8Array>, out: NodeJS.WriteStream): Promise<void> {
  const dec = new TextDecoder();
  for await (const chunk of stream) {
    out.write(chunk);
    tail = (tail + dec.decode(chunk)).slice(-4096);
  }
}
await Promise.all([pump(proc.stdout, process.stdout), pump(proc.stderr, process.stderr)]);
const code = await proc.exited;

const pass = /^\s*(\d+) pass\s*$/m.exec(tail)?.[1];
const fail = /^\s*(\d+) fail\s*$/m.exec(tail)?.[1];
if (pass !== undefined) {
  console.log(`\n${pass} passed, ${fail ?? 0} failed`);
} else {
  console.log(`\nbun test ended with exit code ${code} before reporting a summary`);
}
process.exit(code);
