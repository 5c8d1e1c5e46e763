/**
 * What the machine is like right now, for the benchmarks to print next to their numbers.
 *
 * On the shared development VM (2 vCPUs, idle vCPUs halt: haltpoll with guest_halt_poll_ns=0) a
 * wake-up of a thread on another, idle vCPU costs 10 to 80 µs depending on the host, and it
 * changes within minutes. Every FUSE request is two such wake-ups (docs/fs.md, "Fourth round"),
 * so FUSE numbers move with it several-fold, and a benchmark reports it beside them.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

/**
 * The cross-process wake-up latency now: median round trip of a one-byte ping-pong through two
 * FIFOs between this process and a child (`n` round trips), in µs.
 */
export function wakeRtt(n = 5000): number {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-rtt-"));
  const a = path.join(dir, "a");
  const b = path.join(dir, "b");
  try {
    const mk = Bun.spawnSync(["mkfifo", a, b]);
    if (mk.exitCode !== 0) throw new Error(`mkfifo: ${mk.stderr.toString()}`);
    const child = Bun.spawn([process.execPath, "-e", `
      const fs = require("node:fs");
      const i = fs.openSync(${JSON.stringify(a)}, "r"), o = fs.openSync(${JSON.stringify(b)}, "w"), x = Buffer.alloc(1);
      for (let k = 0; k < ${n}; k++) { fs.readSync(i, x, 0, 1, null); fs.writeSync(o, x); }`]);
    const o = fs.openSync(a, "w");
    const i = fs.openSync(b, "r");
    const x = Buffer.alloc(1);
    const lat = new Float64Array(n);
    for (let k = 0; k < n; k++) {
      const t = performance.now();
      fs.writeSync(o, x);
      fs.readSync(i, x, 0, 1, null);
      lat[k] = (performance.now() - t) * 1000;
    }
    fs.closeSync(o);
    fs.closeSync(i);
    child.kill();
    lat.sort();
    return lat[Math.floor(n / 2)]!;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
