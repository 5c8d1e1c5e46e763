// A headless node as a process (src/mount/headless.ts), driven over stdin/stdout by the cluster
// tests and scripts/bench/cluster.ts. Arguments: one JSON object of HeadlessOptions (without
// log/event); the log goes to `logPath` (appended, one line per event, shared by restarts of the
// same slot), events and answers to stdout as JSON lines.
import * as fs from "node:fs";
import { HeadlessNode, serveControl, type HeadlessOptions } from "../../src/mount/headless.ts";

const o = JSON.parse(process.argv[2] ?? "{}") as Omit<HeadlessOptions, "log" | "event"> & { logPath: string };
// JSON has no bigints: the data fill targets arrive as numbers
const fill = o.server?.fill as Record<string, number | bigint> | undefined;
if (fill) for (const k of ["dataLo", "dataTarget"]) if (fill[k] !== undefined) fill[k] = BigInt(fill[k]);
const tag = `slot ${o.slot} pid ${process.pid}`;
const log = (m: string) => fs.appendFileSync(o.logPath, `${new Date().toISOString()} ${tag}: ${m}\n`);
const write = (line: string) => process.stdout.write(`${line}\n`);
let node: HeadlessNode;
try {
  node = await HeadlessNode.start({ ...o, log, event: (ev) => write(JSON.stringify(ev)) });
} catch (err) {
  log(`could not start: ${(err as Error).message}`);
  write(JSON.stringify({ event: "start-failed", error: (err as Error).message }));
  process.exit(1);
}
write(JSON.stringify({ event: "started", rid: node.rid.toString(16).padStart(16, "0"), pid: process.pid }));
const status = await serveControl(node, write);
log(`exit ${status}`);
process.exit(status);
