#!/usr/bin/env bun
/**
 * Serve a memfs at a mount point until unmounted: `bun src/fuse/memfs-main.ts MNT [options]`.
 * Prints one line "ready <json init info>" on stdout once mounted. Unmounts on SIGINT/SIGTERM
 * and exits 0 when the filesystem is unmounted from outside.
 *
 * Options: --reader poll|worker|async, --readers N, --poll-us US, --hot-ms MS, --writeback,
 * --debug, --timeout SECONDS (entry and attribute cache timeouts), --fsname NAME,
 * --read-ahead-kb KB, --profile (time requests), --killpriv (remove privileges on
 * write/truncate/chown here: FUSE_HANDLE_KILLPRIV_V2), --kernel-locks (leave POSIX and flock locks
 * to the kernel: no lock requests, no FLUSH; see MemfsOptions.kernelLocks), --no-open (no OPEN,
 * CREATE, RELEASE for files; see MemfsOptions.noOpen).
 *
 * SIGUSR2 prints one line "stats <json>" on stdout: the session counters, requests per opcode and
 * (with --profile) the time profile since the previous SIGUSR2, which it then resets, and the poll
 * reader's event-loop descriptor. The benchmark uses it to count requests per operation.
 */
import { Memfs } from "./memfs.ts";
import { mount, type MountOptions } from "./mount.ts";
import { opcodeName } from "./opcodes.ts";
import { PollReader } from "./poll-reader.ts";
import { initFlagNames } from "./types.ts";

function usage(msg: string): never {
  process.stderr.write(`memfs: ${msg}\nusage: memfs-main.ts MOUNTPOINT [--reader poll|worker|async] [--readers N] [--poll-us US] [--hot-ms MS] [--writeback] [--debug] [--timeout S] [--fsname NAME] [--read-ahead-kb KB] [--profile] [--killpriv] [--kernel-locks] [--no-open]\n`);
  process.exit(2);
}

const args = process.argv.slice(2);
let mountpoint: string | undefined;
const opts: MountOptions = { subtype: "memfs", fsname: "memfs", handleSignals: true, onSignal: () => process.exit(0) };
let timeout = 1;
let killPrivV2 = false;
let kernelLocks = false;
let noOpen = false;
for (let k = 0; k < args.length; k++) {
  const a = args[k]!;
  const val = (): string => args[++k] ?? usage(`${a} needs a value`);
  if (a === "--reader") {
    const r = val();
    if (r !== "async" && r !== "worker" && r !== "poll") usage(`unknown reader ${r}`);
    opts.reader = r;
  } else if (a === "--readers") opts.readers = Number(val());
  else if (a === "--writeback") opts.writebackCache = true;
  else if (a === "--debug") opts.debug = true;
  else if (a === "--timeout") timeout = Number(val());
  else if (a === "--fsname") opts.fsname = val();
  else if (a === "--read-ahead-kb") opts.readAheadKb = Number(val());
  else if (a === "--profile") opts.profile = true;
  else if (a === "--killpriv") killPrivV2 = true;
  else if (a === "--kernel-locks") kernelLocks = true;
  else if (a === "--no-open") noOpen = true;
  else if (a === "--poll-us") opts.pollUs = Number(val());
  else if (a === "--hot-ms") opts.hotMs = Number(val());
  else if (a.startsWith("-")) usage(`unknown option ${a}`);
  else if (mountpoint === undefined) mountpoint = a;
  else usage("one mount point only");
}
if (mountpoint === undefined) usage("missing mount point");

const fs = new Memfs({ entryTimeout: timeout, attrTimeout: timeout, killPrivV2, kernelLocks, noOpen });
const m = await mount(fs, mountpoint, opts);
const info = { ...m.init, kernelFlagNames: initFlagNames(m.init.kernelFlags), enabledFlagNames: initFlagNames(m.init.enabledFlags) };
process.stdout.write(`ready ${JSON.stringify(info)}\n`);
process.on("SIGUSR2", () => {
  const s = m.session;
  const opcodes: Record<string, number> = {};
  s.opcodeCounts.forEach((n, op) => {
    if (n > 0) opcodes[opcodeName(op)] = n;
  });
  s.opcodeCounts.fill(0);
  const profile = s.profile === undefined ? undefined : { ...s.profile, opMs: [...s.profile.opMs], opReplies: [...s.profile.opReplies] };
  if (s.profile !== undefined) {
    const p = s.profile;
    p.handoffMs = p.handoffs = p.dispatchMs = p.dispatches = p.replyMs = p.replies = p.wakeups = 0;
    p.opMs.fill(0);
    p.opReplies.fill(0);
  }
  // the poll reader's event-loop descriptor (-1: not found, waits end every pollUs only)
  const loopFd = m.reader instanceof PollReader ? m.reader.loopFd : undefined;
  process.stdout.write(`stats ${JSON.stringify({ counters: s.counters, opcodes, profile, loopFd })}\n`);
});
await m.closed;
if (process.env.MEMFS_COUNTERS) process.stderr.write(`counters ${JSON.stringify(m.session.counters)}\n`);
process.exit(0);
