// The command line as users meet it: help text, and one-line errors with a non-zero exit (never a
// stack trace) for every kind of bad input, with the devices left untouched.
import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { runCli, sha256, sparseFile, tempDir, fixtureImage } from "../helpers/images.ts";

const dir = tempDir();
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const META = 67698688;
const DATA = 266240;

function pair(name: string, meta = META, data = DATA) {
  return [sparseFile(path.join(dir, `${name}.m`), meta), sparseFile(path.join(dir, `${name}.d`), data)] as const;
}

function expectOneLineError(r: { code: number; stderr: string }, re: RegExp) {
  expect(r.code).not.toBe(0);
  const lines = r.stderr.trimEnd().split("\n");
  expect(lines.length).toBe(1);
  expect(lines[0]).toMatch(re);
  expect(r.stderr).not.toMatch(/\n\s+at |Error:/);
}

describe("help", () => {
  test("top-level usage lists commands and the supported format versions", () => {
    const r = runCli(["--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("usage: scoutfs <command> [<args>]");
    expect(r.stdout).toContain("Supported format version: 1-2");
    expect(r.stdout).toMatch(/Core admin:\n\s+mkfs META-DEVICE DATA-DEVICE\n\s+Initialize a new ScoutFS filesystem/);
    expect(r.stdout).toMatch(/Debugging commands:\n\s+print META-DEV/);
  });
  test("no command prints usage to stderr and fails; unknown commands are named", () => {
    expect(runCli([]).code).toBe(1);
    const r = runCli(["frobnicate"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toStartWith("scoutfs: unrecognized command: 'frobnicate'\n");
  });
  test("command help shows every option", () => {
    const r = runCli(["mkfs", "--help"]);
    expect(r.code).toBe(0);
    for (const o of ["-Q, --quorum-slot", "-f, --force", "-A, --allow-small-size", "-m, --max-meta-size", "-d, --max-data-size", "-z, --data-alloc-zone-blocks", "-V, --format-version"]) {
      expect(r.stdout).toContain(o);
    }
    expect(r.stdout).not.toMatch(/\u001b\[/);
    expect(runCli(["print", "--help"]).stdout).toContain("-S, --skip-likely-huge");
  });
});

describe("mkfs and print from the command line", () => {
  test("make a volume, print it, refuse to make it again", () => {
    const [m, d] = pair("ok");
    const r = runCli(["mkfs", "-A", "-Q", "0,127.0.0.1,42000", "-Q", "1,127.0.0.1,42001", m, d]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Created scoutfs filesystem:");
    expect(r.stdout).toContain("  quorum slots:           0: 127.0.0.1:42000\n                          1: 127.0.0.1:42001\n");
    expect(r.stderr).toContain("too small for min 64.00GB meta device, allowing with -A");
    const p = runCli(["print", "-S", m]);
    expect(p.code).toBe(0);
    expect(p.stdout).toStartWith("super blkno 16\n");
    expect(p.stdout).toContain("    quorum slot  1: 127.0.0.1:42001\n");
    const before = sha256(m);
    expectOneLineError(runCli(["mkfs", "-A", "-Q", "0,127.0.0.1,42000", m, d]), /^scoutfs mkfs: meta device .* appears to contain an existing ScoutFS metadata superblock \(use -f/);
    expect(sha256(m)).toBe(before);
  });

  const bad: [string, (m: string, d: string) => string[], RegExp][] = [
    ["no quorum slot", (m, d) => ["mkfs", "-A", m, d], /must specify at least one quorum slot/],
    ["no devices", () => ["mkfs", "-A", "-Q", "0,127.0.0.1,1"], /no metadata device argument given/],
    ["one device", (m) => ["mkfs", "-A", "-Q", "0,127.0.0.1,1", m], /no data device argument given/],
    ["three devices", (m, d) => ["mkfs", "-A", "-Q", "0,127.0.0.1,1", m, d, d], /more than two arguments/],
    ["missing device", (m) => ["mkfs", "-A", "-Q", "0,127.0.0.1,1", m, path.join(dir, "absent")], /cannot open device .*absent.*ENOENT/],
    ["a directory", (m) => ["mkfs", "-A", "-Q", "0,127.0.0.1,1", m, dir], /is not a regular file or block device/],
    ["too small without -A", (m, d) => ["mkfs", "-Q", "0,127.0.0.1,1", m, d], /too small for min 64.00GB meta device \(use -A/],
    ["malformed -Q", (m, d) => ["mkfs", "-A", "-Q", "0:127.0.0.1:1", m, d], /quorum slot '0:127.0.0.1:1' is not NR,ADDR,PORT/],
    ["slot out of range", (m, d) => ["mkfs", "-A", "-Q", "15,127.0.0.1,1", m, d], /invalid nr '15'/],
    ["duplicate slot", (m, d) => ["mkfs", "-A", "-Q", "0,127.0.0.1,1", "-Q", "0,127.0.0.2,1", m, d], /quorum slot 0 is specified more than once/],
    ["duplicate address", (m, d) => ["mkfs", "-A", "-Q", "0,127.0.0.1,1", "-Q", "1,127.0.0.1,1", m, d], /have the same address/],
    ["unknown option", (m, d) => ["mkfs", "-A", "--frob", "-Q", "0,127.0.0.1,1", m, d], /Unknown option '--frob'/],
    ["bad size", (m, d) => ["mkfs", "-A", "-m", "12Q", "-Q", "0,127.0.0.1,1", m, d], /unknown size suffix 'Q'/],
    ["bad version", (m, d) => ["mkfs", "-A", "-V", "7", "-Q", "0,127.0.0.1,1", m, d], /format-version 7 is outside supported range of 1-2/],
    ["zero zone", (m, d) => ["mkfs", "-A", "-z", "0", "-Q", "0,127.0.0.1,1", m, d], /non-zero data-alloc-zone-blocks/],
  ];
  for (const [what, args, re] of bad) {
    test(`mkfs refuses ${what} and writes nothing`, () => {
      const [m, d] = pair(what.replace(/\W/g, "_"));
      const before = [sha256(m), sha256(d)];
      expectOneLineError(runCli(args(m, d)), re);
      expect([sha256(m), sha256(d)]).toEqual(before);
    });
  }

  test("print refuses a data device, a missing device, no argument", () => {
    const data = fixtureImage("v2-1slot", "data", dir);
    const r = runCli(["print", data]);
    expect(r.code).toBe(1);
    expect(r.stderr.trimEnd().split("\n")).toEqual([expect.stringMatching(/^scoutfs print: '.*' is a scoutfs data device; print reads the metadata device \[EINVAL\]$/)]);
    expectOneLineError(runCli(["print", path.join(dir, "absent")]), /cannot open device .*ENOENT/);
    expectOneLineError(runCli(["print"]), /no metadata device argument given/);
  });

  test("print of a corrupted super reports it in one line", () => {
    const meta = fixtureImage("v2-1slot", "meta", dir);
    const fd = fs.openSync(meta, "r+");
    fs.writeSync(fd, new Uint8Array([0xaa]), 0, 1, 16 * 4096 + 300);
    fs.closeSync(fd);
    const r = runCli(["print", "-S", meta]);
    expectOneLineError(r, /^scoutfs print: super block crc [0-9a-f]{8} does not match computed/);
    expect(r.stdout).toContain("(!= ");
  });
});
