/**
 * Extended attributes, stored as scoutfs stores them.
 *
 * An xattr is 1..N XATTR items of its inode keyed (ino, name hash, id, part). The name hash is
 * crc32c of the name from ~0 without final inversion (the kernel's crc32c()); the id is the
 * inode's next_xattr_id at creation and tells apart names whose hashes collide, so lookup walks
 * the ids of one hash comparing names. Part 0 holds the 8-byte `struct scoutfs_xattr` header
 * (val_len, name_len), the name, and as much of the value as fits in MAX_VAL_SIZE (896) bytes;
 * parts 1.. hold the rest of the value, 896 bytes each. Replacing a value keeps the id.
 *
 * Names: user., trusted., security., scoutfs. and the two POSIX ACL names are accepted (others
 * are EOPNOTSUPP, as the kernel's handler table refuses them). A scoutfs. name may carry tags
 * right after the prefix — hide. srch. totl. indx. in any order and repetition — and must carry at
 * least one if it is longer than "scoutfs." plus one tag; setting or removing any tagged name
 * needs root (EPERM otherwise, scoutfs asks CAP_SYS_ADMIN). .totl. names must end in three dotted
 * u64s and hold a u64 value; .indx. names end in a u8 and a u64 and hold no value (format v2).
 * Their global indexes (srch files, totl totals, indx items) are maintained by later layers; here
 * they are validated and stored. .hide. names are left out of listxattr.
 *
 * POSIX ACLs (system.posix_acl_access/default) are stored as ordinary xattrs in the kernel's
 * xattr format. With FUSE's POSIX_ACL the kernel checks permissions from them but leaves the rest
 * to us, as a local filesystem does it: setting an access ACL sets the mode's permission bits
 * (an ACL equivalent to the mode is not stored), chmod updates the access ACL, and creating in a
 * directory with a default ACL inherits it (instead of applying the umask).
 */
import { FORMAT_VERSION_FEAT_INDX_TAG, MAX_VAL_SIZE, XATTR_MAX_NAME_LEN, XATTR_MAX_VAL_LEN } from "../format/constants.ts";
import { crc32c } from "../format/crc.ts";
import { XATTR_NAME_OFF, XattrHeader } from "../format/items.ts";
import type { ItemReader } from "../item/types.ts";
import { fsFail } from "./errors.ts";
import { type FsInode, S_IFMT, isDir, isLnk } from "./inode.ts";
import { keyFourth, keySecond, keyThird, xattrKey, xattrLastKey } from "./keys.ts";
import type { Tx } from "./trans.ts";

export const XATTR_CREATE = 1;
export const XATTR_REPLACE = 2;
export const ACL_ACCESS = "system.posix_acl_access";
export const ACL_DEFAULT = "system.posix_acl_default";
const SCOUTFS_PREFIX = "scoutfs.";
const TAG_LEN = 5;
const PREFIXES = ["user.", "trusted.", "security.", SCOUTFS_PREFIX];
const MAX_TOTL_U64_CHARS = 23;

/**
 * A name's bytes, one per char (names are latin1 byte strings). A plain loop: `Uint8Array.from`
 * with a mapping function iterated the string, for every GETXATTR. A string with surrogates
 * (not a byte string) keeps the iteration's one byte per code point.
 */
function latin1(s: string): Uint8Array {
  const b = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdfff) return Uint8Array.from(s, (ch) => ch.charCodeAt(0) & 0xff);
    b[i] = c & 0xff;
  }
  return b;
}
const str = (b: Uint8Array): string => String.fromCharCode(...b);

export function xattrNameHash(name: Uint8Array): number {
  return crc32c(0xffffffff, name) >>> 0;
}

export function xattrNrParts(nameLen: number, valLen: number): number {
  return Math.ceil((XATTR_NAME_OFF + nameLen + valLen) / MAX_VAL_SIZE);
}

export interface XattrTags {
  hide: number;
  indx: number;
  srch: number;
  totl: number;
}

/** Tags of a scoutfs. name; EINVAL for a scoutfs. name that is not made of tags. */
export function xattrParseTags(name: string): XattrTags {
  const t: XattrTags = { hide: 0, indx: 0, srch: 0, totl: 0 };
  if (name.length < SCOUTFS_PREFIX.length + TAG_LEN + 1 || !name.startsWith(SCOUTFS_PREFIX)) return t;
  let at = SCOUTFS_PREFIX.length;
  let found = false;
  for (;;) {
    const tag = name.slice(at, at + TAG_LEN);
    if (tag === "hide.") t.hide++;
    else if (tag === "indx.") t.indx++;
    else if (tag === "srch.") t.srch++;
    else if (tag === "totl.") t.totl++;
    else {
      if (!found) fsFail("EINVAL", `scoutfs. xattr name without tags: ${name}`);
      return t;
    }
    at += TAG_LEN;
    found = true;
  }
}

/** A u64 as scoutfs parses .totl. fields and values: any base (0x, 0 octal), no sign or newline. */
function parseTotlU64(s: string): bigint {
  if (s.length === 0 || s.length > MAX_TOTL_U64_CHARS || s[0] === "+" || s.endsWith("\n")) fsFail("EINVAL", `bad u64 "${s}"`);
  let digits = s;
  let base = 10;
  if (/^0[xX]/.test(s)) {
    digits = s.slice(2);
    base = 16;
  } else if (s.length > 1 && s[0] === "0") {
    digits = s.slice(1);
    base = 8;
  }
  const ok = base === 16 ? /^[0-9a-fA-F]+$/ : base === 8 ? /^[0-7]+$/ : /^[0-9]+$/;
  if (!ok.test(digits)) fsFail("EINVAL", `bad u64 "${s}"`);
  const prefix = base === 16 ? "0x" : base === 8 ? "0o" : "";
  const v = BigInt(prefix + digits);
  if (v > 0xffffffffffffffffn) fsFail("EINVAL", `u64 overflow "${s}"`);
  return v;
}

/** The last `nr` dotted u64s of a name (scoutfs parse_dotted_u64s). */
function parseDottedU64s(name: string, nr: number): bigint[] {
  const parts = name.split(".");
  if (parts.length < nr + 1) fsFail("EINVAL", `xattr name needs ${nr} dotted numbers: ${name}`);
  return parts.slice(parts.length - nr).map(parseTotlU64);
}

function checkNamespace(name: string): void {
  if (name === ACL_ACCESS || name === ACL_DEFAULT) return;
  if (!PREFIXES.some((p) => name.startsWith(p))) fsFail("EOPNOTSUPP", `xattr namespace of ${name}`);
}

// ---------------------------------------------------------------------------------------------
// Items.

export interface XattrFound {
  nameHash: number;
  id: bigint;
  valLen: number;
  nameLen: number;
  /** Part 0's value. */
  first: Uint8Array;
}

function decodeFirst(ino: bigint, key: string, val: Uint8Array): { nameLen: number; valLen: number } {
  if (keyFourth(key) !== 0) fsFail("EIO", `inode ${ino}: xattr part ${keyFourth(key)} without its first part`);
  if (val.length < XATTR_NAME_OFF) fsFail("EIO", `inode ${ino}: short xattr item`);
  const h = XattrHeader.decode(val);
  if (h.name_len < 1 || val.length < XATTR_NAME_OFF + h.name_len || h.val_len > XATTR_MAX_VAL_LEN) {
    fsFail("EIO", `inode ${ino}: corrupt xattr header`);
  }
  return { nameLen: h.name_len, valLen: h.val_len };
}

/** The xattr `name` of `ino`, or null. */
export function xattrFind(r: ItemReader, ino: bigint, name: Uint8Array): XattrFound | null {
  const nameHash = xattrNameHash(name);
  const last = xattrLastKey(ino);
  let id = 0n;
  for (;;) {
    const it = r.next(xattrKey(ino, nameHash, id, 0), last);
    if (it === null || Number(keySecond(it.key)) !== nameHash) return null;
    const h = decodeFirst(ino, it.key, it.val);
    id = keyThird(it.key);
    if (h.nameLen === name.length && it.val.subarray(XATTR_NAME_OFF, XATTR_NAME_OFF + h.nameLen).every((b, i) => b === name[i])) {
      return { nameHash, id, valLen: h.valLen, nameLen: h.nameLen, first: it.val };
    }
    id++;
  }
}

function readValue(r: ItemReader, ino: bigint, f: XattrFound): Uint8Array {
  const out = new Uint8Array(f.valLen);
  const head = f.first.subarray(XATTR_NAME_OFF + f.nameLen);
  const inFirst = Math.min(f.valLen, MAX_VAL_SIZE - XATTR_NAME_OFF - f.nameLen);
  if (head.length !== inFirst) fsFail("EIO", `inode ${ino}: xattr first part of ${f.first.length} bytes`);
  out.set(head);
  let done = inFirst;
  for (let part = 1; done < f.valLen; part++) {
    const want = Math.min(MAX_VAL_SIZE, f.valLen - done);
    const v = r.lookup(xattrKey(ino, f.nameHash, f.id, part));
    if (v === null || v.length !== want) fsFail("EIO", `inode ${ino}: xattr part ${part} missing or short`);
    out.set(v, done);
    done += want;
  }
  return out;
}

export function xattrGet(r: ItemReader, ino: bigint, name: string): Uint8Array | null {
  if (name.length > XATTR_MAX_NAME_LEN) return null;
  const n = latin1(name);
  const f = xattrFind(r, ino, n);
  return f === null ? null : readValue(r, ino, f);
}

/** Names in key order; .hide. names only when `hidden` (and then only those). */
export function xattrList(r: ItemReader, ino: bigint, hidden = false): string[] {
  const out: string[] = [];
  const last = xattrLastKey(ino);
  let key = xattrKey(ino, 0, 0n, 0);
  for (;;) {
    const it = r.next(key, last);
    if (it === null) return out;
    const h = decodeFirst(ino, it.key, it.val);
    const name = str(it.val.subarray(XATTR_NAME_OFF, XATTR_NAME_OFF + h.nameLen));
    let isHidden = false;
    try {
      isHidden = xattrParseTags(name).hide > 0;
    } catch {
      isHidden = false;
    }
    if (isHidden === hidden) out.push(name);
    key = xattrKey(ino, Number(keySecond(it.key)), keyThird(it.key) + 1n, 0);
  }
}

function createItems(tx: Tx, ino: bigint, nameHash: number, id: bigint, name: Uint8Array, value: Uint8Array): void {
  const firstVal = Math.min(value.length, MAX_VAL_SIZE - XATTR_NAME_OFF - name.length);
  const first = new Uint8Array(XATTR_NAME_OFF + name.length + firstVal);
  XattrHeader.encode({ val_len: value.length, name_len: name.length }, first, 0);
  first.set(name, XATTR_NAME_OFF);
  first.set(value.subarray(0, firstVal), XATTR_NAME_OFF + name.length);
  tx.w.create(xattrKey(ino, nameHash, id, 0), first);
  let done = firstVal;
  for (let part = 1; done < value.length; part++) {
    const n = Math.min(MAX_VAL_SIZE, value.length - done);
    tx.w.create(xattrKey(ino, nameHash, id, part), new Uint8Array(value.subarray(done, done + n)));
    done += n;
  }
}

function deleteItems(tx: Tx, ino: bigint, f: XattrFound): void {
  const parts = xattrNrParts(f.nameLen, f.valLen);
  for (let part = 0; part < parts; part++) tx.w.delete(xattrKey(ino, f.nameHash, f.id, part));
}

/**
 * Store the items of one xattr without namespace, tag or permission checks (value null
 * removes). Returns false when nothing existed to remove. The caller saves the inode.
 */
export function xattrSetRaw(tx: Tx, inode: FsInode, name: string, value: Uint8Array | null, flags: number): boolean {
  const n = latin1(name);
  if (n.length > XATTR_MAX_NAME_LEN) fsFail("ERANGE", `xattr name of ${n.length} bytes`);
  if (n.length === 0) fsFail("EINVAL", "empty xattr name");
  if (value !== null && value.length > XATTR_MAX_VAL_LEN) fsFail("E2BIG", `xattr value of ${value.length} bytes`);
  if ((flags & XATTR_CREATE && flags & XATTR_REPLACE) || flags & ~(XATTR_CREATE | XATTR_REPLACE)) fsFail("EINVAL", `xattr flags ${flags}`);
  const f = xattrFind(tx.w, inode.ino, n);
  if (f === null && flags & XATTR_REPLACE) fsFail("ENODATA", `no xattr ${name}`);
  if (f !== null && flags & XATTR_CREATE) fsFail("EEXIST", `xattr ${name} exists`);
  if (f === null && value === null) return false;
  let id: bigint;
  if (f !== null) {
    id = f.id;
    deleteItems(tx, inode.ino, f);
  } else {
    id = inode.v.next_xattr_id;
    inode.v.next_xattr_id = id + 1n;
  }
  if (value !== null) createItems(tx, inode.ino, f?.nameHash ?? xattrNameHash(n), id, n, value);
  return true;
}

/** File capabilities: what a write, truncate or chown of a file removes. */
export const XATTR_CAPS = "security.capability";
const S_ISUID = 0o4000;
const S_ISGID = 0o2000;
const S_IXGRP = 0o0010;

/**
 * Remove privileges as the kernel's file_remove_privs does, for a filesystem that asked to do
 * it itself (FUSE_HANDLE_KILLPRIV_V2, see src/fuse/filesystem.ts `killPrivV2`): the
 * security.capability xattr always, and with `suidgid` (the caller lacks CAP_FSETID, or a chown)
 * S_ISUID, and S_ISGID when group execute is set. Directories keep everything. An inode that never
 * had an xattr (next_xattr_id 0: ids are only ever taken from it) costs no item lookup, so a write
 * pays nothing for this in the common case. Returns whether the inode changed (ctime moved); the
 * caller saves it.
 */
export function xattrKillPriv(tx: Tx, inode: FsInode, suidgid: boolean, now: { sec: bigint; nsec: number }): boolean {
  if (isDir(inode.v.mode)) return false;
  let changed = false;
  if (suidgid) {
    const kill = S_ISUID | (inode.v.mode & S_IXGRP ? S_ISGID : 0);
    if (inode.v.mode & kill) {
      inode.v.mode &= ~kill;
      changed = true;
    }
  }
  if (inode.v.next_xattr_id !== 0n && xattrSetRaw(tx, inode, XATTR_CAPS, null, 0)) changed = true;
  if (changed) inode.v.ctime = { sec: now.sec, nsec: now.nsec };
  return changed;
}

export interface XattrCaller {
  uid: number;
}

/**
 * setxattr/removexattr (value null) as scoutfs does them: namespace, tags, limits, flags. Updates
 * ctime; the caller saves the inode. Removing a missing xattr is ENODATA.
 */
export function xattrSet(tx: Tx, inode: FsInode, name: string, value: Uint8Array | null, flags: number, who: XattrCaller, now: { sec: bigint; nsec: number }): void {
  checkNamespace(name);
  const tags = xattrParseTags(name);
  const tagged = tags.hide + tags.indx + tags.srch + tags.totl > 0;
  if (tagged && who.uid !== 0) fsFail("EPERM", `${name} needs CAP_SYS_ADMIN`);
  if (tags.totl && tags.indx) fsFail("EINVAL", "totl and indx tags together");
  if (tags.totl) parseDottedU64s(name, 3);
  if (tags.indx) {
    if (tx.fmtVers < FORMAT_VERSION_FEAT_INDX_TAG) fsFail("EINVAL", ".indx. xattrs need format version 2");
    const [major] = parseDottedU64s(name, 2);
    if (major! > 255n) fsFail("EINVAL", `indx major ${major} above 255`);
    if (value !== null && value.length !== 0) fsFail("EINVAL", ".indx. xattrs hold no value");
  }
  if (tags.totl && value !== null) parseTotlU64(str(value));
  if (name === ACL_ACCESS || name === ACL_DEFAULT) {
    aclSet(tx, inode, name, value, flags);
  } else if (!xattrSetRaw(tx, inode, name, value, flags)) {
    fsFail("ENODATA", `no xattr ${name}`);
  }
  inode.v.ctime = { sec: now.sec, nsec: now.nsec };
}

/** Delete every xattr item of an inode, at most `limit` items; true when none are left. */
export function xattrDropAll(tx: Tx, ino: bigint, limit: number): boolean {
  const last = xattrLastKey(ino);
  const first = xattrKey(ino, 0, 0n, 0);
  for (let n = 0; n < limit; n++) {
    const it = tx.w.next(first, last);
    if (it === null) return true;
    tx.w.delete(it.key);
  }
  return tx.w.next(first, last) === null;
}

// ---------------------------------------------------------------------------------------------
// POSIX ACLs (the kernel's xattr format: u32 version 2, then {u16 tag, u16 perm, u32 id}).

const ACL_VERSION = 2;
const ACL_USER_OBJ = 0x01;
const ACL_USER = 0x02;
const ACL_GROUP_OBJ = 0x04;
const ACL_GROUP = 0x08;
const ACL_MASK = 0x10;
const ACL_OTHER = 0x20;

interface AclEntry {
  tag: number;
  perm: number;
  id: number;
}

function aclDecode(b: Uint8Array): AclEntry[] {
  if (b.length < 4 || (b.length - 4) % 8 !== 0) fsFail("EINVAL", `ACL of ${b.length} bytes`);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (dv.getUint32(0, true) !== ACL_VERSION) fsFail("EINVAL", "ACL version");
  const out: AclEntry[] = [];
  for (let at = 4; at < b.length; at += 8) out.push({ tag: dv.getUint16(at, true), perm: dv.getUint16(at + 2, true), id: dv.getUint32(at + 4, true) });
  for (const e of out) if (![ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER].includes(e.tag) || e.perm & ~7) fsFail("EINVAL", "ACL entry");
  return out;
}

function aclEncode(es: AclEntry[]): Uint8Array {
  const b = new Uint8Array(4 + es.length * 8);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, ACL_VERSION, true);
  es.forEach((e, i) => {
    dv.setUint16(4 + i * 8, e.tag, true);
    dv.setUint16(6 + i * 8, e.perm, true);
    dv.setUint32(8 + i * 8, e.id >>> 0, true);
  });
  return b;
}

/** Permission bits an access ACL implies, and whether the mode alone says everything. */
function aclModeBits(es: AclEntry[]): { bits: number; equiv: boolean } {
  let bits = 0;
  let equiv = true;
  let mask: AclEntry | undefined;
  let group: AclEntry | undefined;
  for (const e of es) {
    if (e.tag === ACL_USER_OBJ) bits |= e.perm << 6;
    else if (e.tag === ACL_GROUP_OBJ) group = e;
    else if (e.tag === ACL_OTHER) bits |= e.perm;
    else if (e.tag === ACL_MASK) {
      mask = e;
      equiv = false;
    } else equiv = false;
  }
  bits |= ((mask ?? group)?.perm ?? 0) << 3;
  return { bits, equiv };
}

function aclSet(tx: Tx, inode: FsInode, name: string, value: Uint8Array | null, flags: number): void {
  if (name === ACL_DEFAULT && !isDir(inode.v.mode)) {
    if (value !== null) fsFail("EACCES", "default ACL on a non-directory");
    return;
  }
  if (value === null) {
    if (!xattrSetRaw(tx, inode, name, null, flags)) fsFail("ENODATA", `no xattr ${name}`);
    return;
  }
  const es = aclDecode(value);
  if (name === ACL_ACCESS) {
    const { bits, equiv } = aclModeBits(es);
    inode.v.mode = (inode.v.mode & ~0o777) | bits;
    if (equiv) {
      xattrSetRaw(tx, inode, name, null, flags & ~XATTR_REPLACE);
      return;
    }
  }
  xattrSetRaw(tx, inode, name, value, flags);
}

/** chmod: the access ACL (if any) follows the new permission bits. */
export function aclChmod(tx: Tx, inode: FsInode): void {
  const cur = xattrGet(tx.w, inode.ino, ACL_ACCESS);
  if (cur === null) return;
  const mode = inode.v.mode;
  const es = aclDecode(cur);
  const hasMask = es.some((e) => e.tag === ACL_MASK);
  for (const e of es) {
    if (e.tag === ACL_USER_OBJ) e.perm = (mode >> 6) & 7;
    else if (e.tag === ACL_OTHER) e.perm = mode & 7;
    else if (e.tag === ACL_MASK || (e.tag === ACL_GROUP_OBJ && !hasMask)) e.perm = (mode >> 3) & 7;
  }
  xattrSetRaw(tx, inode, ACL_ACCESS, aclEncode(es), XATTR_REPLACE);
}

/**
 * A new inode in `dir`: inherit dir's default ACL (posix_acl_create) or apply the umask. The
 * caller saves the inode.
 */
export function aclInherit(tx: Tx, dir: FsInode, inode: FsInode, umask: number): void {
  if (isLnk(inode.v.mode)) return;
  // a directory that never had an xattr (ids come from next_xattr_id) has no default ACL
  const def = dir.v.next_xattr_id === 0n ? null : xattrGet(tx.w, dir.ino, ACL_DEFAULT);
  if (def === null) {
    inode.v.mode &= ~(umask & 0o777) | S_IFMT | 0o7000;
    return;
  }
  const es = aclDecode(def);
  let mode = inode.v.mode;
  let equiv = true;
  let mask: AclEntry | undefined;
  let group: AclEntry | undefined;
  for (const e of es) {
    if (e.tag === ACL_USER_OBJ) {
      e.perm &= (mode >> 6) & 7;
      mode &= (e.perm << 6) | ~0o700;
    } else if (e.tag === ACL_OTHER) {
      e.perm &= mode & 7;
      mode &= e.perm | ~0o007;
    } else if (e.tag === ACL_GROUP_OBJ) group = e;
    else if (e.tag === ACL_MASK) {
      mask = e;
      equiv = false;
    } else equiv = false;
  }
  const g = mask ?? group;
  if (g !== undefined) {
    g.perm &= (mode >> 3) & 7;
    mode &= (g.perm << 3) | ~0o070;
  }
  inode.v.mode = mode;
  if (!equiv) xattrSetRaw(tx, inode, ACL_ACCESS, aclEncode(es), 0);
  if (isDir(mode)) xattrSetRaw(tx, inode, ACL_DEFAULT, def, 0);
}
