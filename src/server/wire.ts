/**
 * Keys and payload codecs shared by the server and client roles: the keys of log_trees and
 * mounted_client items (format.h / key.h: LOG_TREES_ZONE keyed by rid in `first` and nr in
 * `second`; MOUNTED_CLIENT_ZONE keyed by rid in `first`), and the small payloads of the
 * requests that have no struct of their own (a bare le64, a key). Every decoder checks the
 * payload length and answers EINVAL for a wrong one, as server.c does.
 */
import { keyPack, keyUnpack, KeyStruct, type Key, type PackedKey } from "../format/key.ts";
import { LogTrees } from "../format/log_trees.ts";
import * as C from "../format/constants.ts";
import { ScoutfsError } from "../util/errors.ts";

export function logTreesKey(rid: bigint, nr: bigint): PackedKey {
  return keyPack({ zone: C.LOG_TREES_ZONE, first: rid, type: 0, second: nr, third: 0n, fourth: 0 });
}

/** rid and nr of a log_trees key; null when the key is in another zone. */
export function logTreesKeyFields(p: PackedKey): { rid: bigint; nr: bigint } | null {
  const k = keyUnpack(p);
  return k.zone === C.LOG_TREES_ZONE ? { rid: k.first, nr: k.second } : null;
}

export function mountedClientKey(rid: bigint): PackedKey {
  return keyPack({ zone: C.MOUNTED_CLIENT_ZONE, first: rid, type: 0, second: 0n, third: 0n, fourth: 0 });
}

export function mountedClientRid(p: PackedKey): bigint | null {
  const k = keyUnpack(p);
  return k.zone === C.MOUNTED_CLIENT_ZONE ? k.first : null;
}

export function encodeLe64(v: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, v), true);
  return b;
}

export function decodeLe64(buf: Uint8Array, what: string): bigint {
  if (buf.length !== 8) throw new ScoutfsError("EINVAL", `${what}: payload of ${buf.length} bytes, expected 8`);
  return new DataView(buf.buffer, buf.byteOffset, 8).getBigUint64(0, true);
}

export function expectEmpty(buf: Uint8Array, what: string): void {
  if (buf.length !== 0) throw new ScoutfsError("EINVAL", `${what}: unexpected payload of ${buf.length} bytes`);
}

export function decodeLogTrees(buf: Uint8Array, what: string): LogTrees {
  if (buf.length !== LogTrees.size) throw new ScoutfsError("EINVAL", `${what}: log_trees payload of ${buf.length} bytes, expected ${LogTrees.size}`);
  return LogTrees.decode(buf);
}

export function encodeKey(k: Key): Uint8Array {
  return KeyStruct.encode(k);
}

export function decodeKey(buf: Uint8Array, what: string): Key {
  if (buf.length !== KeyStruct.size) throw new ScoutfsError("EINVAL", `${what}: key payload of ${buf.length} bytes, expected ${KeyStruct.size}`);
  return KeyStruct.decode(buf);
}

export function cloneLogTrees(lt: LogTrees): LogTrees {
  return LogTrees.decode(LogTrees.encode(lt));
}
