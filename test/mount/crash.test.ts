// Crash and remount of a `scoutfs mount` node: renames, unlinks, replacements and hard links made
// after the files were durable, then made durable themselves by fsync of their directories, are
// all there after SIGKILL of the node and a new mount (the previous leader is fenced) — exactly:
// no name lost, none resurrected, contents whole.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { tempDir } from "../helpers/images.ts";
import { NodeVolume } from "../fs/node-mount.ts";

const dir = tempDir("scoutfs-crash-");
let vol: NodeVolume;

beforeAll(async () => {
  vol = await NodeVolume.mkfs(dir, { metaBytes: 1 << 30, dataBytes: 1 << 30 });
  vol.mount();
}, 30_000);

afterAll(async () => {
  await vol?.cleanup();
  fs.rmSync(dir, { recursive: true, force: true });
}, 30_000);

function fsyncPath(p: string): void {
  const fd = fs.openSync(p, "r");
  fs.fsyncSync(fd);
  fs.closeSync(fd);
}

function tree(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const n of fs.readdirSync(d).sort()) {
      const p = path.join(d, n);
      const st = fs.lstatSync(p);
      const rel = path.relative(root, p);
      if (st.isDirectory()) {
        out[rel] = "dir";
        walk(p);
      } else out[rel] = `${st.nlink}:${fs.readFileSync(p, "utf8")}`;
    }
  };
  walk(root);
  return out;
}

describe("crash and remount", () => {
  test("renames, unlinks and links made durable by directory fsync survive SIGKILL of the node", async () => {
    const m = vol.mnt;
    const a = path.join(m, "a");
    const b = path.join(m, "b");
    fs.mkdirSync(a);
    fs.mkdirSync(b);
    for (let i = 0; i < 200; i++) fs.writeFileSync(path.join(a, `f${i}`), `contents of f${i}`);
    fs.mkdirSync(path.join(a, "sub"));
    fs.writeFileSync(path.join(a, "sub", "deep"), "deep");
    fsyncPath(a);

    // changes, each kind several times
    for (let i = 0; i < 40; i++) fs.renameSync(path.join(a, `f${i}`), path.join(a, `renamed${i}`)); // same dir
    for (let i = 40; i < 80; i++) fs.renameSync(path.join(a, `f${i}`), path.join(b, `moved${i}`)); // across dirs
    for (let i = 80; i < 120; i++) fs.unlinkSync(path.join(a, `f${i}`));
    for (let i = 120; i < 140; i++) fs.renameSync(path.join(a, `f${i}`), path.join(a, `f${i + 20}`)); // replaces f140..f159
    for (let i = 160; i < 180; i++) fs.linkSync(path.join(a, `f${i}`), path.join(b, `link${i}`));
    fs.renameSync(path.join(a, "sub"), path.join(b, "sub")); // a directory moves
    fs.rmdirSync(fs.mkdtempSync(path.join(a, "gone-")));
    fsyncPath(a);
    fsyncPath(b);
    const want = tree(m);
    expect(Object.keys(want).length).toBe(2 + (200 - 40 - 20) + 1 + 1 + 20); // a, b, files, sub, deep, links

    await vol.kill();
    vol.mount();
    expect(tree(m)).toEqual(want);
    expect(fs.readFileSync(path.join(a, "f150"), "utf8")).toBe("contents of f130");
    expect(fs.statSync(path.join(b, "link170")).ino).toBe(fs.statSync(path.join(a, "f170")).ino);
    expect(fs.statSync(b).nlink).toBe(3);
    expect(fs.statSync(a).nlink).toBe(2);
    expect(vol.log()).toMatch(/fenc/);

    // and the volume goes on working after the crash
    fs.writeFileSync(path.join(m, "after"), "after the crash");
    await vol.unmount();
    vol.mount();
    expect(fs.readFileSync(path.join(m, "after"), "utf8")).toBe("after the crash");
    const again = tree(m);
    delete again.after;
    expect(again).toEqual(want);
  }, 60_000);
});
