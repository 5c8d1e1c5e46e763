// The filesystem layer over the in-memory store, driven through its FUSE Filesystem methods
// without a kernel, with checks on the items it leaves behind.
import { describe, expect, test } from "bun:test";
import { INODE_INDEX_ZONE, ORPHAN_ZONE, SEF_UNWRITTEN } from "../../src/format/constants.ts";
import { direntNameHash } from "../../src/format/hash.ts";
import { keyUnpack } from "../../src/format/key.ts";
import { extAll } from "../../src/fs/data.ts";
import { dirAddEntryItems, dirLookup } from "../../src/fs/dir.ts";
import { inodeGet } from "../../src/fs/inode.ts";
import { direntKey, linkBackrefKey, readdirKey } from "../../src/fs/keys.ts";
import { fsTransact } from "../../src/fs/trans.ts";
import { xattrNrParts } from "../../src/fs/xattr.ts";
import { ctx, errnoOf, keysOf, list, setup, sink, sizeSet } from "./harness.ts";
import type { MemStore } from "../helpers/memstore.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const c = ctx();

function inode(store: MemStore, nodeid: number) {
  return inodeGet(store.reader, BigInt(nodeid), store.fmtVers).v;
}

/** Every inode has exactly one meta_seq index item (and regular files one data_seq) at its seqs. */
function checkIndex(store: MemStore): void {
  const idx = new Map<string, bigint>();
  for (const k of store.allKeys().map(keyUnpack)) {
    if (k.zone !== INODE_INDEX_ZONE) continue;
    const id = `${k.type}:${k.third}`;
    expect(idx.has(id)).toBe(false);
    idx.set(id, k.second);
  }
  let inodes = 0;
  for (const k of store.allKeys().map(keyUnpack)) {
    if (k.zone !== 16 || k.type !== 4) continue;
    inodes++;
    const v = inodeGet(store.reader, k.first, store.fmtVers).v;
    expect(idx.get(`4:${k.first}`)).toBe(v.meta_seq);
    if ((v.mode & 0o170000) === 0o100000) expect(idx.get(`8:${k.first}`)).toBe(v.data_seq);
    else expect(idx.has(`8:${k.first}`)).toBe(false);
  }
  expect(idx.size).toBe(inodes + [...idx.keys()].filter((k) => k.startsWith("8:")).length);
}

describe("directories", () => {
  test("the three entry items carry the same value; dir size and nlink follow", () => {
    const { store, fs } = setup();
    const d = fs.mkdir(c, 1, "dir", 0o755, 0o022);
    const f = fs.mknod(c, d.nodeid, "file", 0o100644, 0, 0o022);
    const ent = dirLookup(store.reader, BigInt(d.nodeid), enc("file"))!;
    expect(ent.ino).toBe(BigInt(f.nodeid));
    expect(ent.pos).toBe(2n);
    const a = store.reader.lookup(direntKey(BigInt(d.nodeid), direntNameHash(enc("file")), 2n))!;
    const b = store.reader.lookup(readdirKey(BigInt(d.nodeid), 2n))!;
    const l = store.reader.lookup(linkBackrefKey(BigInt(f.nodeid), BigInt(d.nodeid), 2n))!;
    expect([...a]).toEqual([...b]);
    expect([...a]).toEqual([...l]);
    expect(dec(a.subarray(32))).toBe("file");
    expect(inode(store, d.nodeid).size).toBe(4n); // sum of name lengths
    expect(inode(store, d.nodeid).nlink).toBe(2);
    expect(inode(store, 1).nlink).toBe(3);
    expect(inode(store, d.nodeid).next_readdir_pos).toBe(3n);
    expect(errnoOf(() => fs.rmdir(c, 1, "dir"))).toBe("ENOTEMPTY");
    fs.unlink(c, d.nodeid, "file");
    expect(inode(store, d.nodeid).size).toBe(0n);
    fs.rmdir(c, 1, "dir");
    expect(inode(store, 1).nlink).toBe(2);
    checkIndex(store);
  });

  test("hash collisions: lookup walks every pos of the hash and compares names", () => {
    const { store, fs } = setup();
    const f = fs.mknod(c, 1, "real", 0o100644, 0, 0);
    // Forge an entry named "other" filed under the hash of "real" at a lower position.
    fsTransact(store, (tx) =>
      dirAddEntryItems(tx, 1n, { ino: 999n, hash: direntNameHash(enc("real")), pos: 1n, type: 4, name: enc("other") }),
    );
    expect(dirLookup(store.reader, 1n, enc("real"))!.ino).toBe(BigInt(f.nodeid));
    expect(dirLookup(store.reader, 1n, enc("other"))).toBeNull();
    expect(fs.lookup(c, 1, "real").nodeid).toBe(f.nodeid);
  });

  test("readdir: offsets resume after the last entry; creates and removes meanwhile never duplicate", () => {
    const { fs } = setup();
    for (let k = 0; k < 50; k++) fs.mknod(c, 1, `f${k}`, 0o100644, 0, 0);
    const s1 = sink(false, 20);
    fs.readdir(c, 1, 0, 0, s1);
    expect(s1.out.slice(0, 2).map((e) => e.name)).toEqual([".", ".."]);
    expect(s1.out[0]!.offset).toBe(1);
    expect(s1.out[1]!.offset).toBe(2);
    expect(s1.out[2]!.offset).toBe(3); // pos 2 -> next offset 3
    fs.unlink(c, 1, "f30");
    fs.mknod(c, 1, "late", 0o100644, 0, 0);
    const s2 = sink(false);
    fs.readdir(c, 1, 0, s1.out[19]!.offset, s2);
    const names = [...s1.out, ...s2.out].map((e) => e.name);
    expect(new Set(names).size).toBe(names.length);
    expect(names).toContain("late");
    expect(names).not.toContain("f30");
    expect(names.length).toBe(2 + 50);
    // readdirplus counts a lookup per entry it returns
    const sp = sink(true);
    fs.readdir(c, 1, 0, 0, sp);
    expect(sp.out[5]!.entry!.attr.mode & 0o170000).toBe(0o100000);
  });

  test("rename: across directories, over files and empty dirs, NOREPLACE, EXCHANGE, loops", () => {
    const { store, fs } = setup();
    const a = fs.mkdir(c, 1, "a", 0o755, 0);
    const b = fs.mkdir(c, 1, "b", 0o755, 0);
    const sub = fs.mkdir(c, a.nodeid, "sub", 0o755, 0);
    fs.rename(c, a.nodeid, "sub", b.nodeid, "sub2", 0);
    expect(inode(store, a.nodeid).nlink).toBe(2);
    expect(inode(store, b.nodeid).nlink).toBe(3);
    expect(fs.lookup(c, sub.nodeid, "..").nodeid).toBe(b.nodeid);
    expect(errnoOf(() => fs.rename(c, 1, "b", sub.nodeid, "x", 0))).toBe("EINVAL");
    const f1 = fs.mknod(c, 1, "f1", 0o100644, 0, 0);
    const f2 = fs.mknod(c, 1, "f2", 0o100644, 0, 0);
    expect(errnoOf(() => fs.rename(c, 1, "f1", 1, "f2", 1))).toBe("EEXIST");
    fs.rename(c, 1, "f1", 1, "f2", 0); // f2's inode loses its last name: an orphan while the kernel holds it
    expect(fs.lookup(c, 1, "f2").nodeid).toBe(f1.nodeid);
    expect(keysOf(store, ORPHAN_ZONE)).toEqual([`8.0.4.${f2.nodeid}.0.0`]);
    fs.forget(f2.nodeid, 1);
    expect(keysOf(store, ORPHAN_ZONE)).toEqual([]);
    fs.rename(c, 1, "f2", b.nodeid, "sub2", 2); // exchange a file and a directory
    expect(fs.lookup(c, 1, "f2").nodeid).toBe(sub.nodeid);
    expect(fs.lookup(c, b.nodeid, "sub2").nodeid).toBe(f1.nodeid);
    expect(inode(store, b.nodeid).nlink).toBe(2);
    expect(inode(store, 1).nlink).toBe(5);
    expect(fs.lookup(c, sub.nodeid, "..").nodeid).toBe(1);
    expect(errnoOf(() => fs.rename(c, 1, "nope", 1, "x", 2))).toBe("ENOENT");
    fs.mkdir(c, 1, "empty", 0o755, 0);
    fs.rename(c, 1, "f2", 1, "empty", 0); // dir over empty dir
    expect(list(fs, 1).sort()).toEqual([".", "..", "a", "b", "empty"]);
    expect(inode(store, 1).nlink).toBe(5);
    checkIndex(store);
  });
});

describe("orphans", () => {
  test("an unlinked open file keeps its items until the last reference goes", () => {
    const { store, fs } = setup({ dataBlocks: 1000n });
    const f = fs.create(c, 1, "f", 0o644, 0, 2);
    fs.write(c, f.entry.nodeid, f.open.fh, 0, new Uint8Array(40960).fill(7));
    store.commit();
    const free0 = store.freeBlocks();
    fs.unlink(c, 1, "f");
    expect(keysOf(store, ORPHAN_ZONE)).toEqual([`8.0.4.${f.entry.nodeid}.0.0`]);
    expect(fs.read(c, f.entry.nodeid, f.open.fh, 0, 3)).toEqual(new Uint8Array([7, 7, 7]));
    fs.release(c, f.entry.nodeid, f.open.fh, 0, 0, 0n);
    expect(keysOf(store, ORPHAN_ZONE).length).toBe(1); // the kernel still has a lookup
    fs.forget(f.entry.nodeid, 1);
    expect(keysOf(store, ORPHAN_ZONE)).toEqual([]);
    expect(keysOf(store).filter((k) => k.startsWith(`16.${f.entry.nodeid}.`))).toEqual([]);
    expect(keysOf(store, INODE_INDEX_ZONE).some((k) => k.endsWith(`.${f.entry.nodeid}.0`))).toBe(false);
    expect(store.freeBlocks()).toBe(free0 + 10n); // pending until the next commit, then reusable
    checkIndex(store);
  });

  test("O_TMPFILE is an orphan until linked", () => {
    const { store, fs } = setup();
    const t = fs.tmpfile(c, 1, 0o600, 0, 2);
    expect(inode(store, t.entry.nodeid).nlink).toBe(0);
    expect(keysOf(store, ORPHAN_ZONE).length).toBe(1);
    fs.link(c, t.entry.nodeid, 1, "named");
    expect(keysOf(store, ORPHAN_ZONE)).toEqual([]);
    expect(inode(store, t.entry.nodeid).nlink).toBe(1);
  });

  test("orphans left by a previous run are deleted on init when asked", async () => {
    const { store, fs } = setup();
    const f = fs.create(c, 1, "f", 0o644, 0, 2);
    fs.unlink(c, 1, "f");
    const { ScoutfsFuse } = await import("../../src/fs/fuse.ts");
    const fresh = new ScoutfsFuse(store, { deleteOrphansOnInit: true });
    fresh.init();
    expect(keysOf(store, ORPHAN_ZONE)).toEqual([]);
    expect(keysOf(store).filter((k) => k.startsWith(`16.${f.entry.nodeid}.`))).toEqual([]);
  });
});

describe("inodes", () => {
  test("index items move when metadata or data change in a later transaction", () => {
    const { store, fs } = setup();
    const f = fs.create(c, 1, "f", 0o644, 0, 2);
    const id = f.entry.nodeid;
    expect(inode(store, id).meta_seq).toBe(1n);
    store.commit();
    fs.setxattr(c, id, "user.x", enc("1"), 0);
    expect(inode(store, id).meta_seq).toBe(2n);
    expect(inode(store, id).data_seq).toBe(1n);
    store.commit();
    fs.write(c, id, f.open.fh, 0, enc("data"));
    const v = inode(store, id);
    expect([v.meta_seq, v.data_seq, v.data_version]).toEqual([3n, 3n, 1n]);
    expect(keysOf(store, INODE_INDEX_ZONE).filter((k) => k.endsWith(`.${id}.0`))).toEqual([`4.0.4.3.${id}.0`, `4.0.8.3.${id}.0`]);
    checkIndex(store);
  });

  test("format version 1 writes 160-byte inodes; creation inherits setgid and applies umask", () => {
    const { store, fs } = setup({ fmtVers: 1 });
    const d = fs.mkdir(c, 1, "d", 0o2777, 0o022);
    fs.setattr(c, d.nodeid, { valid: 4, fh: 0, size: 0, lockOwner: 0n, atime: 0, atimensec: 0, mtime: 0, mtimensec: 0, ctime: 0, ctimensec: 0, mode: 0, uid: 0, gid: 4242 });
    const f = fs.mknod(ctx(1000, 1000), d.nodeid, "f", 0o100666, 0, 0o022);
    expect(store.reader.lookup(keysToPacked(f.nodeid))!.length).toBe(160);
    const v = inode(store, f.nodeid);
    expect(v.mode).toBe(0o100644);
    expect(v.gid).toBe(4242);
    expect(v.uid).toBe(1000);
    expect(inode(store, d.nodeid).mode & 0o7777).toBe(0o2755);
    expect(fs.mkdir(ctx(1000, 1000), d.nodeid, "s", 0o777, 0).attr.mode & 0o2000).toBe(0o2000);
  });

  test("symlinks: long targets in several items, size counts the NUL", () => {
    const { store, fs } = setup();
    const target = "x/".repeat(1500) + "end";
    const l = fs.symlink(c, 1, "ln", target);
    expect(fs.readlink(c, l.nodeid)).toBe(target);
    expect(inode(store, l.nodeid).size).toBe(BigInt(target.length + 1));
    expect(keysOf(store).filter((k) => k.startsWith(`16.${l.nodeid}.24.`)).length).toBe(4);
    expect(errnoOf(() => fs.symlink(c, 1, "big", "y".repeat(4096)))).toBe("ENAMETOOLONG");
    fs.unlink(c, 1, "ln");
    fs.forget(l.nodeid, 1);
    expect(keysOf(store).filter((k) => k.startsWith(`16.${l.nodeid}.`))).toEqual([]);
  });

  test("a failed operation changes nothing (ENOSPC mid-write rolls back)", () => {
    const { store, fs } = setup({ dataBlocks: 4n });
    const f = fs.create(c, 1, "f", 0o644, 0, 2);
    const before = keysOf(store);
    const vals = before.length;
    expect(errnoOf(() => fs.write(c, f.entry.nodeid, f.open.fh, 0, new Uint8Array(8 * 4096)))).toBe("ENOSPC");
    expect(keysOf(store)).toEqual(before);
    expect(keysOf(store).length).toBe(vals);
    expect(store.freeBlocks()).toBe(4n);
    expect(inode(store, f.entry.nodeid).size).toBe(0n);
  });
});

function keysToPacked(nodeid: number): string {
  return require("../../src/fs/keys.ts").inodeKey(BigInt(nodeid));
}

describe("xattrs", () => {
  test("values split into parts; replace keeps the id; remove deletes every part", () => {
    const { store, fs } = setup();
    const f = fs.mknod(c, 1, "f", 0o100644, 0, 0);
    const big = new Uint8Array(5000).map((_, i) => i & 0xff);
    fs.setxattr(c, f.nodeid, "user.big", big, 0);
    const parts = () => keysOf(store).filter((k) => k.startsWith(`16.${f.nodeid}.8.`));
    expect(parts().length).toBe(xattrNrParts(8, 5000));
    expect(parts().length).toBe(6);
    expect(fs.getxattr(c, f.nodeid, "user.big")).toEqual(big);
    const id = parts()[0]!.split(".")[4];
    fs.setxattr(c, f.nodeid, "user.big", enc("small"), 2);
    expect(parts().length).toBe(1);
    expect(parts()[0]!.split(".")[4]).toBe(id);
    expect(dec(fs.getxattr(c, f.nodeid, "user.big"))).toBe("small");
    fs.setxattr(c, f.nodeid, "user.other", new Uint8Array(0), 0);
    expect(inode(store, f.nodeid).next_xattr_id).toBe(2n);
    expect(fs.listxattr(c, f.nodeid).sort()).toEqual(["user.big", "user.other"]);
    fs.removexattr(c, f.nodeid, "user.big");
    expect(errnoOf(() => fs.getxattr(c, f.nodeid, "user.big"))).toBe("ENODATA");
    expect(errnoOf(() => fs.removexattr(c, f.nodeid, "user.big"))).toBe("ENODATA");
    expect(errnoOf(() => fs.setxattr(c, f.nodeid, "user.other", enc("x"), 1))).toBe("EEXIST");
    expect(errnoOf(() => fs.setxattr(c, f.nodeid, "user.none", enc("x"), 2))).toBe("ENODATA");
    expect(errnoOf(() => fs.setxattr(c, f.nodeid, "user.huge", new Uint8Array(65536), 0))).toBe("E2BIG");
    expect(errnoOf(() => fs.setxattr(c, f.nodeid, "other.x", enc("x"), 0))).toBe("EOPNOTSUPP");
  });

  test("scoutfs. tags: recognised, root only, .hide. not listed, totl and indx validated", () => {
    const { store, fs } = setup();
    const f = fs.mknod(c, 1, "f", 0o100644, 0, 0);
    const user = ctx(1000, 1000);
    expect(errnoOf(() => fs.setxattr(user, f.nodeid, "scoutfs.hide.secret", enc("x"), 0))).toBe("EPERM");
    expect(errnoOf(() => fs.setxattr(c, f.nodeid, "scoutfs.notatag", enc("x"), 0))).toBe("EINVAL");
    fs.setxattr(c, f.nodeid, "scoutfs.hide.secret", enc("x"), 0);
    fs.setxattr(c, f.nodeid, "scoutfs.hide.srch.both", enc("y"), 0);
    fs.setxattr(c, f.nodeid, "scoutfs.totl.sum.1.2.3", enc("42"), 0);
    expect(errnoOf(() => fs.setxattr(c, f.nodeid, "scoutfs.totl.bad.1.2", enc("42"), 0))).toBe("EINVAL");
    expect(errnoOf(() => fs.setxattr(c, f.nodeid, "scoutfs.totl.sum.1.2.4", enc("nope"), 0))).toBe("EINVAL");
    fs.setxattr(c, f.nodeid, "scoutfs.indx.i.7.99", new Uint8Array(0), 0);
    expect(errnoOf(() => fs.setxattr(c, f.nodeid, "scoutfs.indx.i.256.1", new Uint8Array(0), 0))).toBe("EINVAL");
    expect(fs.listxattr(c, f.nodeid).sort()).toEqual(["scoutfs.indx.i.7.99", "scoutfs.totl.sum.1.2.3"]);
    expect(dec(fs.getxattr(c, f.nodeid, "scoutfs.hide.secret"))).toBe("x");
    expect(errnoOf(() => fs.removexattr(user, f.nodeid, "scoutfs.hide.secret"))).toBe("EPERM");
    void store;
  });

  test("POSIX ACLs: access ACL sets the mode, chmod updates it, default ACL is inherited", () => {
    const { store, fs } = setup();
    const acl = (...es: [number, number, number][]) => {
      const b = new Uint8Array(4 + es.length * 8);
      const dv = new DataView(b.buffer);
      dv.setUint32(0, 2, true);
      es.forEach(([tag, perm, id], i) => {
        dv.setUint16(4 + i * 8, tag, true);
        dv.setUint16(6 + i * 8, perm, true);
        dv.setUint32(8 + i * 8, id, true);
      });
      return b;
    };
    const d = fs.mkdir(c, 1, "d", 0o755, 0);
    const def = acl([1, 7, 0], [2, 6, 1000], [4, 5, 0], [0x10, 7, 0], [0x20, 1, 0]);
    fs.setxattr(c, d.nodeid, "system.posix_acl_default", def, 0);
    const f = fs.mknod(c, d.nodeid, "f", 0o100666, 0, 0o077);
    expect(inode(store, f.nodeid).mode).toBe(0o100660); // masked by the ACL, not the umask
    expect(fs.getxattr(c, f.nodeid, "system.posix_acl_access").length).toBe(4 + 5 * 8);
    const sd = fs.mkdir(c, d.nodeid, "sd", 0o777, 0o077);
    expect(fs.getxattr(c, sd.nodeid, "system.posix_acl_default")).toEqual(def);
    // chmod rewrites the access ACL's owner, mask and other entries
    fs.setattr(c, f.nodeid, { valid: 1, fh: 0, size: 0, lockOwner: 0n, atime: 0, atimensec: 0, mtime: 0, mtimensec: 0, ctime: 0, ctimensec: 0, mode: 0o640, uid: 0, gid: 0 });
    const a = new DataView(fs.getxattr(c, f.nodeid, "system.posix_acl_access").buffer);
    expect(a.getUint16(6, true)).toBe(6); // user_obj
    expect(a.getUint16(4 + 3 * 8 + 2, true)).toBe(4); // mask
    expect(a.getUint16(4 + 4 * 8 + 2, true)).toBe(0); // other
    // an access ACL equivalent to a mode just sets the mode
    fs.setxattr(c, f.nodeid, "system.posix_acl_access", acl([1, 7, 0], [4, 0, 0], [0x20, 0, 0]), 0);
    expect(inode(store, f.nodeid).mode).toBe(0o100700);
    expect(errnoOf(() => fs.getxattr(c, f.nodeid, "system.posix_acl_access"))).toBe("ENODATA");
  });
});

describe("request buffers", () => {
  test("write data and xattr values are copied, not kept as views of the reused request buffer", () => {
    const { fs } = setup();
    const f = fs.create(c, 1, "f", 0o644, 0, 2);
    const req = Buffer.alloc(3 * 4096, 0x41);
    fs.write(c, f.entry.nodeid, f.open.fh, 0, req.subarray(0, 2 * 4096));
    fs.write(c, f.entry.nodeid, f.open.fh, 8192, req.subarray(0, 100));
    fs.setxattr(c, f.entry.nodeid, "user.v", req.subarray(0, 2000), 0);
    req.fill(0xee);
    const r = fs.read(c, f.entry.nodeid, f.open.fh, 0, 8192 + 100);
    expect(r.every((b) => b === 0x41)).toBe(true);
    expect(fs.getxattr(c, f.entry.nodeid, "user.v").every((b) => b === 0x41)).toBe(true);
  });
});

describe("data extents", () => {
  const blk = (n: number, v: number) => new Uint8Array(n * 4096).fill(v);

  test("sequential writes merge into one extent; punch splits and frees; truncate frees", () => {
    const { store, fs } = setup({ dataBlocks: 1000n });
    const f = fs.create(c, 1, "f", 0o644, 0, 2);
    const id = f.entry.nodeid;
    const ino = BigInt(id);
    for (let k = 0; k < 8; k++) fs.write(c, id, f.open.fh, k * 4096, blk(1, k + 1));
    expect(extAll(store.reader, ino)).toEqual([{ start: 0n, len: 8n, map: 64n, flags: 0 }]);
    expect(inode(store, id).online_blocks).toBe(8n);
    expect(fs.getattr(c, id).attr.blocks).toBe(64);
    fs.fallocate(c, id, f.open.fh, 2 * 4096, 3 * 4096, 3); // punch blocks 2..4
    expect(extAll(store.reader, ino)).toEqual([
      { start: 0n, len: 2n, map: 64n, flags: 0 },
      { start: 5n, len: 3n, map: 69n, flags: 0 },
    ]);
    expect(inode(store, id).online_blocks).toBe(5n);
    const r = fs.read(c, id, f.open.fh, 0, 8 * 4096);
    expect([r[0], r[2 * 4096], r[5 * 4096 - 1], r[5 * 4096]]).toEqual([1, 0, 0, 6]);
    store.commit();
    expect(store.freeBlocks()).toBe(1000n - 5n);
    // partial punch zeroes bytes inside a block without freeing it
    fs.fallocate(c, id, f.open.fh, 10, 20, 3);
    const p = fs.read(c, id, f.open.fh, 0, 40);
    expect([p[9], p[10], p[29], p[30]]).toEqual([1, 0, 0, 1]);
    fs.setattr(c, id, sizeSet(5 * 4096 + 100));
    expect(extAll(store.reader, ino)).toEqual([
      { start: 0n, len: 2n, map: 64n, flags: 0 },
      { start: 5n, len: 1n, map: 69n, flags: 0 },
    ]);
    const t = fs.read(c, id, f.open.fh, 5 * 4096, 200);
    expect(t.length).toBe(100);
    // growing again exposes zeros past the old size, not the old bytes
    fs.setattr(c, id, sizeSet(6 * 4096));
    expect(fs.read(c, id, f.open.fh, 5 * 4096 + 100, 10)).toEqual(new Uint8Array(10));
    expect(inode(store, id).online_blocks).toBe(3n);
    checkIndex(store);
  });

  test("fallocate preallocates unwritten extents that read as zeros and become written", () => {
    const { store, fs } = setup({ dataBlocks: 1000n });
    const f = fs.create(c, 1, "f", 0o644, 0, 2);
    const id = f.entry.nodeid;
    const ino = BigInt(id);
    fs.fallocate(c, id, f.open.fh, 0, 4 * 4096, 0);
    expect(inode(store, id).size).toBe(4n * 4096n);
    expect(extAll(store.reader, ino)).toEqual([{ start: 0n, len: 4n, map: 64n, flags: SEF_UNWRITTEN }]);
    expect(inode(store, id).online_blocks).toBe(0n); // scoutfs counts unwritten blocks as neither
    expect(fs.read(c, id, f.open.fh, 0, 100)).toEqual(new Uint8Array(100));
    expect(fs.lseek(c, id, f.open.fh, 0, 4)).toBe(0); // SEEK_HOLE: unwritten is a hole
    fs.write(c, id, f.open.fh, 4096 + 10, enc("hi"));
    expect(extAll(store.reader, ino)).toEqual([
      { start: 0n, len: 1n, map: 64n, flags: SEF_UNWRITTEN },
      { start: 1n, len: 1n, map: 65n, flags: 0 },
      { start: 2n, len: 2n, map: 66n, flags: SEF_UNWRITTEN },
    ]);
    expect(fs.read(c, id, f.open.fh, 4096, 14)).toEqual(new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 104, 105, 0, 0]));
    expect(fs.lseek(c, id, f.open.fh, 0, 3)).toBe(4096); // SEEK_DATA
    expect(fs.lseek(c, id, f.open.fh, 4096, 4)).toBe(8192);
    fs.fallocate(c, id, f.open.fh, 100 * 4096, 4096, 1); // KEEP_SIZE
    expect(inode(store, id).size).toBe(4n * 4096n);
    fs.fallocate(c, id, f.open.fh, 4096, 4096, 0x10); // zero range over written data
    expect(fs.read(c, id, f.open.fh, 4096, 14)).toEqual(new Uint8Array(14));
    expect(errnoOf(() => fs.fallocate(c, id, f.open.fh, 0, 10, 2))).toBe("EOPNOTSUPP"); // punch needs KEEP_SIZE
  });
});
