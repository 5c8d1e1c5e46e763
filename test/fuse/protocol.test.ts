// The protocol layer without a kernel: requests built by hand are dispatched to a Session whose
// "device" is a temp file, and the replies written there are decoded and checked. Covers INIT
// negotiation, malformed input (answered, never thrown), ENOSYS for unknown opcodes, errno
// mapping, interrupts, and the sized replies of GETXATTR/READ/READDIR.
import { afterEach, beforeEach, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { FuseError } from "../../src/fuse/errno.ts";
import type { DirentSink, Filesystem, RequestContext } from "../../src/fuse/filesystem.ts";
import { Session } from "../../src/fuse/session.ts";
import { InHeader, InitFlag, Opcode, OutHeader } from "../../src/fuse/types.ts";

let dir: string;
let fd: number;
let logs: string[];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "fuse-proto-"));
  fd = fs.openSync(path.join(dir, "dev"), "w+");
  logs = [];
});

afterEach(() => {
  fs.closeSync(fd);
  fs.rmSync(dir, { recursive: true });
});

let unique = 100n;
function request(opcode: number, nodeid: number, payload: Uint8Array = new Uint8Array(0), lenOverride?: number): Buffer {
  const b = Buffer.alloc(InHeader.SIZE + payload.byteLength);
  const v = new DataView(b.buffer);
  v.setUint32(InHeader.LEN, lenOverride ?? b.byteLength, true);
  v.setUint32(InHeader.OPCODE, opcode, true);
  v.setBigUint64(InHeader.UNIQUE, unique++, true);
  v.setBigUint64(InHeader.NODEID, BigInt(nodeid), true);
  v.setUint32(InHeader.UID, 1000, true);
  v.setUint32(InHeader.GID, 1000, true);
  v.setUint32(InHeader.PID, 42, true);
  b.set(payload, InHeader.SIZE);
  return b;
}

interface Reply {
  error: number;
  unique: bigint;
  payload: Buffer;
}

/** All replies written so far, in order. */
function replies(): Reply[] {
  const all = fs.readFileSync(path.join(dir, "dev"));
  const out: Reply[] = [];
  for (let p = 0; p < all.length; ) {
    const v = new DataView(all.buffer, all.byteOffset + p);
    const len = v.getUint32(OutHeader.LEN, true);
    out.push({ error: v.getInt32(OutHeader.ERROR, true), unique: v.getBigUint64(OutHeader.UNIQUE, true), payload: all.subarray(p + OutHeader.SIZE, p + len) });
    p += len;
  }
  return out;
}

function initPayload(minor: number, flags: number, flags2 = 0): Buffer {
  const b = Buffer.alloc(64);
  b.writeUInt32LE(7, 0);
  b.writeUInt32LE(minor, 4);
  b.writeUInt32LE(131072, 8);
  b.writeUInt32LE(flags >>> 0, 12);
  b.writeUInt32LE(flags2, 16);
  return b;
}

function session(f: Filesystem): Session {
  const s = new Session(fd, f, { log: (m) => logs.push(m) });
  s.dispatch(request(Opcode.INIT, 0, initPayload(45, 0xffffffff, 0xffff)), InHeader.SIZE + 64);
  return s;
}

function cstr(s: string): Buffer {
  return Buffer.from(`${s}\0`, "latin1");
}

const attr = { ino: 5, size: 3, blocks: 1, atime: 1, atimensec: 2, mtime: 3, mtimensec: 4, ctime: 5, ctimensec: 6, mode: 0o100644, nlink: 1, uid: 7, gid: 8, rdev: 0, blksize: 4096 };

test("INIT: answers 7.45 with max_write 1 MiB, max_pages 256 and the flags we want that the kernel offers", async () => {
  const s = session({});
  const info = await s.ready;
  const [r] = replies();
  expect(r!.error).toBe(0);
  expect(r!.payload.length).toBe(64);
  expect(r!.payload.readUInt32LE(0)).toBe(7);
  expect(r!.payload.readUInt32LE(4)).toBe(45);
  expect(r!.payload.readUInt32LE(20)).toBe(1 << 20);
  expect(r!.payload.readUInt16LE(28)).toBe(256);
  const flags = r!.payload.readUInt32LE(12);
  expect(flags & InitFlag.ASYNC_READ).toBeTruthy();
  expect(flags & InitFlag.PARALLEL_DIROPS).toBeTruthy();
  expect(flags & InitFlag.WRITEBACK_CACHE).toBe(0);
  expect(flags & InitFlag.POSIX_LOCKS).toBe(0); // the filesystem has no lock methods
  expect(info.minor).toBe(45);
});

test("INIT: an old kernel is refused with EPROTO; only the offered flags are enabled", async () => {
  const s = new Session(fd, {}, { log: (m) => logs.push(m) });
  s.dispatch(request(Opcode.INIT, 0, initPayload(20, 0xffffffff)), InHeader.SIZE + 64);
  expect(replies()[0]!.error).toBe(-71);
  await expect(s.ready).rejects.toThrow();
  const s2 = new Session(fd, { readdir: () => {} }, { log: (m) => logs.push(m) });
  s2.dispatch(request(Opcode.INIT, 0, initPayload(45, InitFlag.ASYNC_READ)), InHeader.SIZE + 64);
  const info = await s2.ready;
  expect(info.enabledFlags).toBe(InitFlag.ASYNC_READ);
});

test("malformed requests are answered and logged, never thrown", () => {
  const s = session({ lookup: () => ({ nodeid: 5, generation: 0, attr, entryTimeout: 1, attrTimeout: 1 }) });
  const before = replies().length;
  // shorter than a header: nothing to answer, logged
  s.dispatch(Buffer.alloc(10), 10);
  // header length disagrees with the read length
  const bad = request(Opcode.GETATTR, 1, Buffer.alloc(16), 999);
  s.dispatch(bad, bad.length);
  // fixed part missing
  const short = request(Opcode.GETATTR, 1, Buffer.alloc(4));
  s.dispatch(short, short.length);
  // a name without its NUL
  const nonul = request(Opcode.LOOKUP, 1, Buffer.from("abc"));
  s.dispatch(nonul, nonul.length);
  // a name that is too long
  const long = request(Opcode.LOOKUP, 1, cstr("x".repeat(300)));
  s.dispatch(long, long.length);
  // an opcode nobody knows, and STATX which we leave to the kernel's fallback
  const unknown = request(9999, 1);
  s.dispatch(unknown, unknown.length);
  const statx = request(Opcode.STATX, 1, Buffer.alloc(24));
  s.dispatch(statx, statx.length);
  // a batch forget whose count runs past the end
  const bf = Buffer.alloc(8 + 16);
  bf.writeUInt32LE(1000, 0);
  const forget = request(Opcode.BATCH_FORGET, 0, bf);
  s.dispatch(forget, forget.length);
  const rs = replies().slice(before);
  expect(rs.map((r) => r.error)).toEqual([-22, -22, -22, -36, -38, -38]);
  expect(logs.length).toBeGreaterThanOrEqual(4);
  expect(s.counters.malformed).toBeGreaterThanOrEqual(3);
});

test("requests before INIT are refused", () => {
  const s = new Session(fd, { getattr: () => ({ attr, attrTimeout: 1 }) }, { log: (m) => logs.push(m) });
  const r = request(Opcode.GETATTR, 1, Buffer.alloc(16));
  s.dispatch(r, r.length);
  expect(replies()[0]!.error).toBe(-22);
});

test("errors map to errnos; a non-errno throw is EIO and counted as a filesystem bug", async () => {
  const s = session({
    getattr: (_c, nodeid) => {
      if (nodeid === 2) throw new FuseError("ENOENT");
      if (nodeid === 3) throw Object.assign(new Error("sys"), { code: "EACCES" });
      if (nodeid === 4) throw new TypeError("oops");
      return Promise.reject(new FuseError("ESTALE"));
    },
    unlink: () => undefined,
  });
  for (const n of [2, 3, 4, 5]) {
    const r = request(Opcode.GETATTR, n, Buffer.alloc(16));
    s.dispatch(r, r.length);
  }
  const u = request(Opcode.UNLINK, 1, cstr("x"));
  s.dispatch(u, u.length);
  await Bun.sleep(1);
  expect(replies().slice(1).map((r) => r.error)).toEqual([-2, -13, -5, 0, -116]);
  expect(s.counters.fsBugs).toBe(1);
});

test("async replies go out in completion order; INTERRUPT reaches the request", async () => {
  let release!: () => void;
  let interrupted = false;
  const s = session({
    getattr: (ctx: RequestContext, nodeid) => {
      if (nodeid === 1) return { attr, attrTimeout: 1 };
      return new Promise((resolve, reject) => {
        release = () => resolve({ attr, attrTimeout: 1 });
        ctx.onInterrupt = () => {
          interrupted = true;
          reject(new FuseError("EINTR"));
        };
      });
    },
  });
  const slow = request(Opcode.GETATTR, 9, Buffer.alloc(16));
  const slowUnique = slow.readBigUInt64LE(8);
  s.dispatch(slow, slow.length);
  const fast = request(Opcode.GETATTR, 1, Buffer.alloc(16));
  s.dispatch(fast, fast.length);
  expect(s.inflight.size).toBe(1);
  const intr = Buffer.alloc(8);
  intr.writeBigUInt64LE(slowUnique);
  const ir = request(Opcode.INTERRUPT, 0, intr);
  s.dispatch(ir, ir.length);
  await Bun.sleep(1);
  expect(interrupted).toBe(true);
  const rs = replies().slice(1);
  expect(rs.map((r) => [r.unique === slowUnique, r.error])).toEqual([
    [false, 0],
    [true, -4],
  ]);
  void release;
  // an interrupt for a request we do not know: EAGAIN on the interrupt's own unique | 1
  intr.writeBigUInt64LE(123456n);
  const ir2 = request(Opcode.INTERRUPT, 0, intr);
  s.dispatch(ir2, ir2.length);
  const last = replies().at(-1)!;
  expect(last.error).toBe(-11);
  expect(last.unique & 1n).toBe(1n);
});

test("GETXATTR size probe, ERANGE and data; LISTXATTR encoding", () => {
  const s = session({ getxattr: () => Buffer.from("value!"), listxattr: () => ["user.a", "user.bb"] });
  const probe = Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 0, 0, 0]), cstr("user.a")]);
  const small = Buffer.concat([Buffer.from([3, 0, 0, 0, 0, 0, 0, 0]), cstr("user.a")]);
  const big = Buffer.concat([Buffer.from([64, 0, 0, 0, 0, 0, 0, 0]), cstr("user.a")]);
  for (const p of [probe, small, big]) {
    const r = request(Opcode.GETXATTR, 1, p);
    s.dispatch(r, r.length);
  }
  const l = request(Opcode.LISTXATTR, 1, Buffer.from([64, 0, 0, 0, 0, 0, 0, 0]));
  s.dispatch(l, l.length);
  const [a, b, c, d] = replies().slice(1);
  expect(a!.payload.readUInt32LE(0)).toBe(6);
  expect(b!.error).toBe(-34);
  expect(c!.payload.toString()).toBe("value!");
  expect(d!.payload.toString("latin1")).toBe("user.a\0user.bb\0");
});

test("READ replies never exceed the size asked; READDIR packs aligned dirents and stops when full", () => {
  const s = session({
    read: () => Buffer.alloc(100, 1),
    readdir: (_c, _n, _fh, offset, sink: DirentSink) => {
      for (let k = offset; k < 1000; k++) if (!sink.add(`name${k}`, 10 + k, 0o100644, k + 1)) return;
    },
  });
  const ri = Buffer.alloc(40);
  ri.writeUInt32LE(10, 16);
  const r = request(Opcode.READ, 2, ri);
  s.dispatch(r, r.length);
  const di = Buffer.alloc(40);
  di.writeUInt32LE(256, 16);
  const d = request(Opcode.READDIR, 1, di);
  s.dispatch(d, d.length);
  const [read, dir] = replies().slice(1);
  expect(read!.payload.length).toBe(10);
  const p = dir!.payload;
  expect(p.length).toBeLessThanOrEqual(256);
  let pos = 0;
  const names: string[] = [];
  while (pos < p.length) {
    const namelen = p.readUInt32LE(pos + 16);
    expect(p.readUInt32LE(pos + 20)).toBe(8); // DT_REG
    names.push(p.toString("latin1", pos + 24, pos + 24 + namelen));
    pos += (24 + namelen + 7) & ~7;
  }
  expect(pos).toBe(p.length);
  expect(names[0]).toBe("name0");
  expect(names.length).toBe(8);
});

test("per-opcode counts and the time profile", () => {
  const s = new Session(fd, { getattr: () => ({ attr, attrTimeout: 1 }) }, { log: (m) => logs.push(m), profile: true });
  const init = request(Opcode.INIT, 0, initPayload(45, 0));
  s.dispatch(init, init.length);
  for (let k = 0; k < 3; k++) {
    const r = request(Opcode.GETATTR, 1, Buffer.alloc(16));
    s.dispatch(r, r.length);
  }
  expect(s.opcodeCounts[Opcode.GETATTR]).toBe(3);
  expect(s.opcodeCounts[Opcode.INIT]).toBe(1);
  expect(s.profile!.dispatches).toBe(4);
  expect(s.profile!.replies).toBe(4);
  expect(s.profile!.dispatchMs).toBeGreaterThan(0);
  expect(replies().map((r) => r.error)).toEqual([0, 0, 0, 0]);
});
