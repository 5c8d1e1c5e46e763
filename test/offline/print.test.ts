// Our print against the real `scoutfs print`: on volumes made by the real mkfs (committed
// fixtures, with the real print's output saved beside them) the two outputs are identical.
import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { Device } from "../../src/block/device.ts";
import { VolumePrinter } from "../../src/offline/print.ts";
import { fixtureImage, fixtureText, tempDir } from "../helpers/images.ts";

const dir = tempDir();
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function printImage(p: string, skip = false): { text: string; problems: readonly string[] } {
  const dev = Device.open(p);
  let text = "";
  try {
    const pr = new VolumePrinter(dev, (s) => (text += s), { skipLikelyHuge: skip });
    pr.printVolume();
    return { text, problems: pr.problems };
  } finally {
    dev.close();
  }
}

describe("print matches the real scoutfs print on real mkfs volumes", () => {
  for (const name of ["v2-1slot", "v2-3slot", "v1-1slot", "v2-sparse-slots", "v2-mdlimit", "v2-zone", "v2-det"]) {
    test(name, () => {
      const meta = fixtureImage(name, "meta", dir);
      const full = printImage(meta);
      expect(full.problems).toEqual([]);
      expect(full.text).toBe(fixtureText(`${name}.print.txt`));
      expect(printImage(meta, true).text).toBe(fixtureText(`${name}.print-S.txt`));
      fs.rmSync(meta);
    });
  }
});

describe("print on damaged or wrong devices", () => {
  test("a data device prints its super then refuses", () => {
    const data = fixtureImage("v2-1slot", "data", dir);
    expect(() => printImage(data)).toThrow(/is a scoutfs data device/);
  });

  test("a file without a super block is refused", () => {
    const p = path.join(dir, "zero.img");
    fs.writeFileSync(p, new Uint8Array(256 * 1024));
    expect(() => printImage(p)).toThrow(/holds no scoutfs super block/);
  });

  test("a corrupted btree block is reported, not crashed on", () => {
    const meta = fixtureImage("v2-1slot", "meta", dir);
    // scribble over the fs_root leaf's avl root link and item array (meta blkno 2)
    const fd = fs.openSync(meta, "r+");
    fs.writeSync(fd, new Uint8Array([0x34, 0x12, 0xff, 0xff]), 0, 4, 2 * 65536 + 32);
    fs.closeSync(fd);
    const r = printImage(meta);
    expect(r.problems.length).toBe(1);
    expect(r.problems[0]).toMatch(/fs_root: btree block 2 is corrupt/);
    fs.rmSync(meta);
  });

  test("a corrupted super block crc is shown and reported", () => {
    const meta = fixtureImage("v2-1slot", "meta", dir);
    const fd = fs.openSync(meta, "r+");
    fs.writeSync(fd, new Uint8Array([0xaa]), 0, 1, 16 * 4096 + 100);
    fs.closeSync(fd);
    const r = printImage(meta);
    expect(r.text).toMatch(/^super blkno 16\n  hdr: crc [0-9a-f]{8} \(!= [0-9a-f]{8}\) magic/);
    expect(r.problems).toEqual([expect.stringMatching(/super block crc/)]);
    fs.rmSync(meta);
  });
});
