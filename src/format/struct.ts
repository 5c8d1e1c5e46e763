/**
 * A small table-driven codec for fixed-layout little-endian structs. Every on-disk and wire
 * struct is declared once as a table of named fields with explicit byte offsets; the table gives
 * decode, encode, the struct size and the offsets (`S.off.field`) for hot paths that want to poke
 * single fields. Declarations are checked when the module loads: fields must lie inside the
 * struct and must not overlap, so a typo in an offset fails at once instead of corrupting disks.
 *
 * Decoding never reads past the buffer: callers pass a DataView and a base offset, and
 * `decodeChecked` verifies the length first and reports a typed error.
 */
import { ScoutfsError } from "../util/errors.ts";

export interface Field<T> {
  readonly size: number;
  /** Padding: not decoded, always written as zeros. */
  readonly isPad?: boolean;
  get(dv: DataView, at: number): T;
  set(dv: DataView, at: number, v: T): void;
}

export const u8: Field<number> = {
  size: 1,
  get: (dv, at) => dv.getUint8(at),
  set: (dv, at, v) => dv.setUint8(at, v),
};
export const u16: Field<number> = {
  size: 2,
  get: (dv, at) => dv.getUint16(at, true),
  set: (dv, at, v) => dv.setUint16(at, v, true),
};
export const u32: Field<number> = {
  size: 4,
  get: (dv, at) => dv.getUint32(at, true),
  set: (dv, at, v) => dv.setUint32(at, v >>> 0, true),
};
export const u64: Field<bigint> = {
  size: 8,
  get: (dv, at) => dv.getBigUint64(at, true),
  set: (dv, at, v) => dv.setBigUint64(at, BigInt.asUintN(64, v), true),
};
/** Signed 64-bit (inode_count_delta, totl totals). */
export const s64: Field<bigint> = {
  size: 8,
  get: (dv, at) => dv.getBigInt64(at, true),
  set: (dv, at, v) => dv.setBigInt64(at, BigInt.asIntN(64, v), true),
};

/** Raw bytes copied out on decode (a fresh Uint8Array), zero-padded on encode. */
export function bytes(len: number): Field<Uint8Array> {
  return {
    size: len,
    get: (dv, at) => new Uint8Array(dv.buffer, dv.byteOffset + at, len).slice(),
    set: (dv, at, v) => {
      const dst = new Uint8Array(dv.buffer, dv.byteOffset + at, len);
      dst.fill(0);
      dst.set(v.subarray(0, len));
    },
  };
}

/** Reserved padding: decodes to nothing useful, always encoded as zeros. */
export function pad(len: number): Field<undefined> {
  return {
    size: len,
    isPad: true,
    get: () => undefined,
    set: (dv, at) => new Uint8Array(dv.buffer, dv.byteOffset + at, len).fill(0),
  };
}

export function array<T>(elem: Field<T>, count: number): Field<T[]> {
  return {
    size: elem.size * count,
    get: (dv, at) => {
      const out: T[] = new Array(count);
      for (let i = 0; i < count; i++) out[i] = elem.get(dv, at + i * elem.size);
      return out;
    },
    set: (dv, at, v) => {
      if (v.length !== count) throw new RangeError(`array field needs ${count} elements, got ${v.length}`);
      for (let i = 0; i < count; i++) elem.set(dv, at + i * elem.size, v[i]!);
    },
  };
}

type Spec = Record<string, readonly [number, Field<any>]>;
export type Decoded<S extends Spec> = {
  -readonly [K in keyof S as S[K][1] extends Field<undefined> ? never : K]: S[K][1] extends Field<infer T> ? T : never;
};

export interface Struct<S extends Spec> extends Field<Decoded<S>> {
  readonly name: string;
  readonly off: { readonly [K in keyof S]: number };
  decode(buf: Uint8Array, at?: number): Decoded<S>;
  /** Decode after checking that `buf` holds the struct at `at`; a short buffer is EINVAL. */
  decodeChecked(buf: Uint8Array, at: number, what: string): Decoded<S>;
  encode(v: Decoded<S>, buf?: Uint8Array, at?: number): Uint8Array;
  zero(): Decoded<S>;
}

/**
 * Typed arrays (Uint32Array, BigUint64Array) hold their elements in the host's byte order; every
 * format here is little-endian. Where this holds, their bytes can be copied to and from disk.
 */
export const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

export function view(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

export function struct<S extends Spec>(name: string, size: number, spec: S): Struct<S> {
  const entries = Object.entries(spec) as [string, readonly [number, Field<any>]][];
  // Check the declaration: inside the struct, in order, no overlaps.
  let end = 0;
  for (const [field, [off, f]] of entries) {
    if (off < end) throw new Error(`${name}.${field} at ${off} overlaps the previous field ending at ${end}`);
    if (off + f.size > size) throw new Error(`${name}.${field} at ${off}+${f.size} exceeds struct size ${size}`);
    end = off + f.size;
  }
  const live = entries.filter(([, [, f]]) => !f.isPad);
  const off = Object.fromEntries(entries.map(([k, [o]]) => [k, o])) as { [K in keyof S]: number };
  // the live fields as parallel arrays: indexed loops, no iterator or destructuring per field
  // (the super block and log_trees are encoded several times per server commit)
  const names = live.map(([k]) => k);
  const offs = live.map(([, [o]]) => o);
  const fields = live.map(([, [, f]]) => f);
  const n = live.length;

  const get = (dv: DataView, at: number): Decoded<S> => {
    const out: Record<string, unknown> = {};
    for (let i = 0; i < n; i++) out[names[i]!] = fields[i]!.get(dv, at + offs[i]!);
    return out as Decoded<S>;
  };
  const set = (dv: DataView, at: number, v: Decoded<S>): void => {
    // padding (and any gap) is zeros
    new Uint8Array(dv.buffer, dv.byteOffset + at, size).fill(0);
    const rec = v as Record<string, unknown>;
    for (let i = 0; i < n; i++) {
      const val = rec[names[i]!];
      if (val === undefined) throw new TypeError(`${name}.${names[i]} is missing`);
      fields[i]!.set(dv, at + offs[i]!, val);
    }
  };
  const zero = (): Decoded<S> => get(new DataView(new ArrayBuffer(size)), 0);

  return {
    name,
    size,
    off,
    get,
    set,
    zero,
    decode: (buf, at = 0) => get(view(buf), at),
    decodeChecked: (buf, at, what) => {
      if (at < 0 || at + size > buf.length) {
        throw new ScoutfsError("EINVAL", `${what}: ${name} needs ${size} bytes at offset ${at}, only ${Math.max(0, buf.length - at)} present`);
      }
      return get(view(buf), at);
    },
    encode: (v, buf = new Uint8Array(size), at = 0) => {
      set(view(buf), at, v);
      return buf;
    },
  };
}
