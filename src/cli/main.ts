#!/usr/bin/env bun
/**
 * The `scoutfs` command: one binary, subcommands named and grouped as in scoutfs(8). Each command
 * is a citty command (its declaration renders `scoutfs CMD --help`); this file dispatches, prints
 * the top-level usage, and turns every error into one line on stderr and a non-zero exit. Only
 * commands that work are registered.
 */
import { renderUsage, runCommand, type CommandDef } from "citty";
import { FORMAT_VERSION_MAX, FORMAT_VERSION_MIN } from "../format/constants.ts";
import { QuietExit, ScoutfsError } from "../util/errors.ts";
import { mkfsCommand } from "./commands/mkfs.ts";
import { printCommand } from "./commands/print.ts";
import { mountCommand, mountHelperArgs } from "./commands/mount.ts";
import pkg from "../../package.json" with { type: "json" };

type Group = "core" | "info" | "search" | "agent" | "debug";
interface Entry {
  name: string;
  args: string;
  doc: string;
  group: Group;
  cmd: CommandDef<any>;
}

const COMMANDS: Entry[] = [
  { name: "mkfs", args: "META-DEVICE DATA-DEVICE", doc: "Initialize a new ScoutFS filesystem", group: "core", cmd: mkfsCommand },
  { name: "mount", args: "-o metadev_path=META[,...] DATA-DEVICE MOUNT-POINT", doc: "Mount a ScoutFS filesystem (starts a node)", group: "core", cmd: mountCommand },
  { name: "print", args: "META-DEV", doc: "Print metadata structures", group: "debug", cmd: printCommand },
];

const GROUPS: [Group, string][] = [
  ["core", "Core admin:"],
  ["info", "Additional Information:"],
  ["search", "Search Acceleration:"],
  ["agent", "Archival Agent Support:"],
  ["debug", "Debugging commands:"],
];

export function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  let s = "usage: scoutfs <command> [<args>]\n\n";
  s += "Selected fs defaults to current working directory.\n";
  s += "See <command> --help for more details.\n";
  s += `\nSupported format version: ${FORMAT_VERSION_MIN}-${FORMAT_VERSION_MAX}\n`;
  for (const [g, title] of GROUPS) {
    const cmds = COMMANDS.filter((c) => c.group === g);
    if (cmds.length === 0) continue;
    s += `\n${title}\n`;
    for (const c of cmds) s += `  ${c.name.padStart(width)} ${c.args}\n  ${"".padStart(width)} ${c.doc}\n`;
  }
  return s;
}

function errorLine(cmd: string, err: unknown): string {
  if (err instanceof ScoutfsError) {
    return `scoutfs ${cmd}: ${err.message}${err.hint ? ` (${err.hint})` : ""} [${err.code}]`;
  }
  const e = err as Error;
  return `scoutfs ${cmd}: internal error: ${e?.message ?? String(err)} (set SCOUTFS_DEBUG=1 for a stack trace)`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "-h" || name === "--help" || name === "help") {
    (name ? process.stdout : process.stderr).write(usage());
    return name ? 0 : 1;
  }
  if (name === "--version" || name === "version") {
    process.stdout.write(`scoutfs ${pkg.version} (format version ${FORMAT_VERSION_MIN}-${FORMAT_VERSION_MAX})\n`);
    return 0;
  }
  const entry = COMMANDS.find((c) => c.name === name);
  if (!entry) {
    process.stderr.write(`scoutfs: unrecognized command: '${name}'\n`);
    process.stderr.write(usage());
    return 1;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    let text = await renderUsage(entry.cmd, { meta: { name: "scoutfs" } });
    if (!process.stdout.isTTY) text = text.replace(/\u001b\[[0-9;]*m/g, "");
    process.stdout.write(text + "\n");
    return 0;
  }
  try {
    await runCommand(entry.cmd, { rawArgs: rest });
    return 0;
  } catch (err) {
    if (err instanceof QuietExit) return err.code;
    if (process.env.SCOUTFS_DEBUG) console.error(err);
    process.stderr.write(errorLine(name, err) + "\n");
    return 1;
  }
}

/** Invoked as mount.scoutfs (by mount(8) for `mount -t scoutfs`)? */
function asMountHelper(): boolean {
  const names = [process.argv0, process.argv[1] ?? ""].map((p) => p.split("/").pop());
  return names.includes("mount.scoutfs");
}

if (import.meta.main) {
  let argv = process.argv.slice(2);
  if (asMountHelper()) {
    let helper: string[] | null;
    try {
      helper = mountHelperArgs(argv);
    } catch (err) {
      process.stderr.write(errorLine("mount", err) + "\n");
      process.exit(1);
    }
    if (helper === null) process.exit(0);
    argv = ["mount", ...helper];
  }
  main(argv).then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(errorLine("", err) + "\n");
      process.exit(1);
    },
  );
}
