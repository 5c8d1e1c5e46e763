/**
 * The privilege-removal checklist shared by the FUSE library's lifecycle test (memfs) and the
 * POSIX suite (scoutfs): with FUSE_HANDLE_KILLPRIV_V2 the filesystem, not the kernel, removes
 * setuid/setgid on writes, truncation, O_TRUNC and chown by users without CAP_FSETID, and file
 * capabilities on any write or truncation.
 */
import { expect } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { sh } from "../fuse/helpers.ts";

export function expectPrivilegesRemoved(d: string): void {
  const mode = (p: string) => fs.statSync(p).mode & 0o7777;
  const mk = (name: string, m: number): string => {
    const p = path.join(d, name);
    fs.writeFileSync(p, "data");
    fs.chmodSync(p, m);
    return p;
  };
  // a writer without CAP_FSETID: setuid goes, setgid too when group-executable
  const w1 = mk("w1", 0o6777);
  expect(sh(`echo x >> ${w1}`, "nobody").code).toBe(0);
  expect(mode(w1)).toBe(0o777);
  const w2 = mk("w2", 0o6767);
  expect(sh(`echo x >> ${w2}`, "nobody").code).toBe(0);
  expect(mode(w2)).toBe(0o2767);
  // root (CAP_FSETID) keeps them
  const w3 = mk("w3", 0o6777);
  fs.appendFileSync(w3, "x");
  expect(mode(w3)).toBe(0o6777);
  // truncate and O_TRUNC by someone else, also of an empty file
  const t1 = mk("t1", 0o4777);
  expect(sh(`truncate -s 1 ${t1}`, "nobody").code).toBe(0);
  expect(mode(t1)).toBe(0o777);
  expect(fs.readFileSync(t1, "utf8")).toBe("d");
  const t2 = mk("t2", 0o4777);
  expect(sh(`echo y > ${t2}`, "nobody").code).toBe(0);
  expect(mode(t2)).toBe(0o777);
  expect(fs.readFileSync(t2, "utf8")).toBe("y\n");
  const t3 = mk("t3", 0o4777);
  fs.truncateSync(t3, 0);
  expect(sh(`echo z > ${t3}`, "nobody").code).toBe(0);
  expect(mode(t3)).toBe(0o777);
  // chown clears them even for root
  const c1 = mk("c1", 0o6777);
  fs.chownSync(c1, 1000, 1000);
  expect(mode(c1)).toBe(0o777);
  // file capabilities go on any write or truncation, even root's
  const cap = mk("cap", 0o755);
  if (Bun.spawnSync(["setcap", "cap_net_raw+ep", cap]).exitCode === 0) {
    expect(Bun.spawnSync(["getcap", cap]).stdout.toString()).toContain("cap_net_raw");
    fs.appendFileSync(cap, "x");
    expect(Bun.spawnSync(["getcap", cap]).stdout.toString()).not.toContain("cap_net_raw");
    expect(Bun.spawnSync(["setcap", "cap_net_raw+ep", cap]).exitCode).toBe(0);
    fs.truncateSync(cap, 1);
    expect(Bun.spawnSync(["getcap", cap]).stdout.toString()).not.toContain("cap_net_raw");
  }
}
