/**
 * Strict argument parsing for commands declared with citty. citty renders the help from the
 * declaration; we parse with node:util parseArgs in strict mode so an unknown option or a missing
 * value is an error (scoutfs(8) users rely on typos being refused, not ignored), and options
 * listed in `multiple` (like -Q) may repeat.
 */
import { parseArgs } from "node:util";
import type { ArgsDef } from "citty";
import { ScoutfsError } from "../util/errors.ts";

export interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

export function parseStrict(rawArgs: string[], def: ArgsDef, multiple: string[] = []): Parsed {
  const options: Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean }> = {};
  for (const [name, a] of Object.entries(def)) {
    if (a.type === "positional") continue;
    const raw = "alias" in a ? a.alias : undefined;
    const alias: string[] = Array.isArray(raw) ? raw : raw ? [raw as string] : [];
    const short = alias.find((x) => x.length === 1);
    options[name] = {
      type: a.type === "boolean" ? "boolean" : "string",
      ...(short ? { short } : {}),
      ...(multiple.includes(name) ? { multiple: true } : {}),
    };
  }
  try {
    const r = parseArgs({ args: rawArgs, options, allowPositionals: true, strict: true });
    return { values: r.values as Parsed["values"], positionals: r.positionals };
  } catch (err) {
    const msg = (err as Error).message.replace(/\. To specify a positional argument.*$/, "");
    throw new ScoutfsError("EINVAL", msg, "see --help for the options");
  }
}

export function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}
