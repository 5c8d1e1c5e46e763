// Imports point downward only (docs/architecture.md): a module may import its own layer or a
// lower one, never a higher one. fuse/ is a leaf library that imports nothing of scoutfs, and
// format/ imports only util/.
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";

const SRC = path.join(import.meta.dir, "..", "src");

/** Higher number = higher layer. Equal numbers may import each other. */
const RANK: Record<string, number> = {
  cli: 100, mount: 90, api: 85, catalog: 80, fs: 70, lock: 60, item: 55, client: 50, server: 50,
  quorum: 40, net: 35, offline: 33, btree: 25, alloc: 25, block: 20, format: 10, util: 0, fuse: -1,
};

function files(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(path.join(dir, e.name)) : e.name.endsWith(".ts") ? [path.join(dir, e.name)] : [],
  );
}

test("every src/ folder has a layer", () => {
  for (const d of fs.readdirSync(SRC)) expect(RANK[d], `src/${d} needs a rank in test/layers.test.ts`).toBeDefined();
});

test("imports point downward", () => {
  const bad: string[] = [];
  for (const f of files(SRC)) {
    const from = path.relative(SRC, f).split(path.sep)[0]!;
    const text = fs.readFileSync(f, "utf8");
    for (const m of text.matchAll(/(?:import|export)[^'"]*?from\s+["'](\.[^"']+)["']|import\(\s*["'](\.[^"']+)["']\s*\)/g)) {
      const spec = m[1] ?? m[2]!;
      const target = path.relative(SRC, path.resolve(path.dirname(f), spec));
      if (target.startsWith("..")) continue; // package.json and the like
      const to = target.split(path.sep)[0]!;
      if (to === from) continue;
      const ok = from === "fuse" ? false : from === "format" ? to === "util" : (RANK[to] ?? 999) <= (RANK[from] ?? -999) && to !== "fuse" || (to === "fuse" && RANK[from]! >= RANK.fs!);
      if (!ok) bad.push(`${path.relative(SRC, f)} imports ${target}`);
    }
  }
  expect(bad).toEqual([]);
});
