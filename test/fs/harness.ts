// Drive ScoutfsFuse directly (no kernel) over a MemStore: fake request contexts and dirent sinks,
// plus item-level invariant checks shared by the unit and model tests.
import type { DirentSink, Entry, RequestContext, SetattrRequest } from "../../src/fuse/filesystem.ts";
import { FATTR } from "../../src/fuse/types.ts";
import { ScoutfsFuse, fsEnsureRoot } from "../../src/fs/fuse.ts";
import { keyUnpack } from "../../src/format/key.ts";
import { MemStore, type MemStoreOptions } from "../helpers/memstore.ts";

export function ctx(uid = 0, gid = 0): RequestContext {
  return { unique: 1n, nodeid: 0, uid, gid, pid: 1, interrupted: false, onInterrupt: undefined };
}

/** A SETATTR that only sets the size (truncate). */
export function sizeSet(size: number): SetattrRequest {
  return { valid: FATTR.SIZE, fh: 0, size, lockOwner: 0n, atime: 0, atimensec: 0, mtime: 0, mtimensec: 0, ctime: 0, ctimensec: 0, mode: 0, uid: 0, gid: 0 };
}

export interface Listed {
  name: string;
  ino: number;
  mode: number;
  offset: number;
  entry?: Entry;
}

export function sink(plus = false, max = Infinity): DirentSink & { out: Listed[] } {
  const out: Listed[] = [];
  return {
    plus,
    out,
    add(name, ino, mode, offset, entry) {
      if (out.length >= max) return false;
      out.push({ name, ino, mode, offset, entry });
      return true;
    },
  };
}

/**
 * ScoutfsFuse as these tests see it: over a MemStore (no ItemStore.hold) every operation answers
 * synchronously, so the `T | Promise<T>` results of mutating operations are plain T.
 */
export type SyncFs = {
  [K in keyof ScoutfsFuse]: ScoutfsFuse[K] extends (...a: infer A) => infer R ? (...a: A) => [R] extends [Promise<unknown>] ? R : Exclude<R, Promise<unknown>> : ScoutfsFuse[K];
};

export function setup(opts: MemStoreOptions = {}): { store: MemStore; fs: SyncFs } {
  const store = new MemStore(opts);
  fsEnsureRoot(store, 0o755);
  const fs = new ScoutfsFuse(store) as unknown as SyncFs;
  return { store, fs };
}

/** Item keys in "zone.first.type.second.third.fourth" form, optionally of one zone. */
export function keysOf(store: MemStore, zone?: number): string[] {
  return store
    .allKeys()
    .map(keyUnpack)
    .filter((k) => zone === undefined || k.zone === zone)
    .map((k) => `${k.zone}.${k.first}.${k.type}.${k.second}.${k.third}.${k.fourth}`);
}

export { errnoOf } from "../fuse/helpers.ts";

export function list(fs: SyncFs, nodeid: number): string[] {
  const s = sink();
  fs.readdir(ctx(), nodeid, 0, 0, s);
  return s.out.map((e) => e.name);
}
