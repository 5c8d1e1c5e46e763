// Pins the wire structs and constants of src/format/net.ts to kmod/src/format.h of scoutfs
// (sizes and offsets checked once with offsetof() on the C definitions, recorded as numbers).
import { describe, expect, test } from "bun:test";
import * as N from "../../src/format/net.ts";
import { makeKey } from "../../src/format/key.ts";

function hex(buf: Uint8Array): string {
  return Buffer.from(buf).toString("hex");
}

describe("net struct layouts", () => {
  test("sizes", () => {
    expect(N.NetGreeting.size).toBe(40);
    expect(N.NetHeader.size).toBe(32);
    expect(N.NET_HEADER_BYTES).toBe(32);
    expect(N.NetInodeAlloc.size).toBe(16);
    expect(N.NetRoots.size).toBe(72);
    expect(N.NetResizeDevices.size).toBe(16);
    expect(N.NetStatfs.size).toBe(56);
    expect(N.NetLock.size).toBe(48);
    expect(N.NetLockRecover.size).toBe(8);
  });

  test("offsets", () => {
    expect(N.NetGreeting.off).toEqual({ fsid: 0, fmt_vers: 8, server_term: 16, rid: 24, flags: 32 });
    expect(N.NetHeader.off).toEqual({ seq: 0, recv_seq: 8, id: 16, data_len: 24, cmd: 26, flags: 27, error: 28, _pad: 29 });
    expect(N.NetStatfs.off.free_meta_blocks).toBe(16);
    expect(N.NetStatfs.off.inode_count).toBe(48);
    expect(N.NetLock.off.write_seq).toBe(32);
    expect(N.NetLock.off.old_mode).toBe(40);
    expect(N.NetLock.off.new_mode).toBe(41);
    expect(N.NetRoots.off).toEqual({ fs_root: 0, logs_root: 24, srch_root: 48 });
  });

  test("greeting bytes", () => {
    const g = { fsid: 0x0102030405060708n, fmt_vers: 2n, server_term: 3n, rid: 0xaabbccddeeff0011n, flags: N.NET_GREETING_FLAG_FAREWELL | N.NET_GREETING_FLAG_QUORUM };
    const buf = N.NetGreeting.encode(g);
    expect(hex(buf)).toBe(
      "0807060504030201" + "0200000000000000" + "0300000000000000" + "1100ffeeddccbbaa" + "0300000000000000",
    );
    expect(N.NetGreeting.decode(buf)).toEqual(g);
  });

  test("header bytes", () => {
    const h = { seq: 1n, recv_seq: 0x0203n, id: 0xfffffffffffffffen, data_len: 0x0102, cmd: N.NET_CMD_LOCK, flags: N.NET_FLAG_RESPONSE, error: N.NET_ERR_ENOLINK };
    const buf = N.NetHeader.encode(h);
    expect(hex(buf)).toBe("0100000000000000" + "0302000000000000" + "feffffffffffffff" + "0201" + "07" + "01" + "06" + "000000");
    expect(N.NetHeader.decode(buf)).toEqual(h);
  });

  test("lock and lock_recover bytes", () => {
    const lock = { key: makeKey(3, 5n, 1, 7n, 9n, 2), write_seq: 0x10n, old_mode: 1, new_mode: 2 };
    const buf = N.NetLock.encode(lock);
    expect(buf.length).toBe(48);
    expect(hex(buf.subarray(32))).toBe("1000000000000000" + "0102" + "000000000000");
    const rec = N.encodeNetLockRecover([lock, lock]);
    expect(rec.length).toBe(8 + 2 * 48);
    expect(hex(rec.subarray(0, 8))).toBe("0200000000000000");
    expect(N.decodeNetLockRecover(rec)).toEqual([lock, lock]);
    expect(() => N.decodeNetLockRecover(rec.subarray(0, 50))).toThrow(/lock_recover/);
    expect(N.NET_LOCK_MAX_RECOVER_NR).toBe(22);
  });
});

describe("net constants", () => {
  test("commands in format.h order", () => {
    expect(N.NET_CMD_NAMES.length).toBe(N.NET_CMD_UNKNOWN);
    const want: [number, string][] = [
      [N.NET_CMD_GREETING, "greeting"],
      [N.NET_CMD_ALLOC_INODES, "alloc_inodes"],
      [N.NET_CMD_GET_LOG_TREES, "get_log_trees"],
      [N.NET_CMD_COMMIT_LOG_TREES, "commit_log_trees"],
      [N.NET_CMD_SYNC_LOG_TREES, "sync_log_trees"],
      [N.NET_CMD_GET_ROOTS, "get_roots"],
      [N.NET_CMD_GET_LAST_SEQ, "get_last_seq"],
      [N.NET_CMD_LOCK, "lock"],
      [N.NET_CMD_LOCK_RECOVER, "lock_recover"],
      [N.NET_CMD_SRCH_GET_COMPACT, "srch_get_compact"],
      [N.NET_CMD_SRCH_COMMIT_COMPACT, "srch_commit_compact"],
      [N.NET_CMD_GET_LOG_MERGE, "get_log_merge"],
      [N.NET_CMD_COMMIT_LOG_MERGE, "commit_log_merge"],
      [N.NET_CMD_OPEN_INO_MAP, "open_ino_map"],
      [N.NET_CMD_GET_VOLOPT, "get_volopt"],
      [N.NET_CMD_SET_VOLOPT, "set_volopt"],
      [N.NET_CMD_CLEAR_VOLOPT, "clear_volopt"],
      [N.NET_CMD_RESIZE_DEVICES, "resize_devices"],
      [N.NET_CMD_STATFS, "statfs"],
      [N.NET_CMD_FAREWELL, "farewell"],
    ];
    want.forEach(([cmd, name], i) => {
      expect(cmd).toBe(i);
      expect(N.netCmdName(cmd)).toBe(name);
    });
    expect(N.NET_CMD_UNKNOWN).toBe(20);
    expect(N.netCmdName(200)).toBe("cmd200");
  });

  test("flags and limits", () => {
    expect(N.NET_FLAG_RESPONSE).toBe(1);
    expect(N.NET_FLAGS_UNKNOWN).toBe(0xfe);
    expect(N.NET_GREETING_FLAG_FAREWELL).toBe(1n);
    expect(N.NET_GREETING_FLAG_QUORUM).toBe(2n);
    expect(N.NET_GREETING_FLAG_INVALID).toBe(0xfffffffffffffffcn);
    expect(N.NET_MAX_DATA_LEN).toBe(1100);
    expect(N.NET_MAX_FRAME_BYTES).toBe(1132);
  });

  test("errno table and translation", () => {
    expect([N.NET_ERR_NONE, N.NET_ERR_ENOENT, N.NET_ERR_ENOMEM, N.NET_ERR_EIO, N.NET_ERR_ENOSPC, N.NET_ERR_EINVAL, N.NET_ERR_ENOLINK, N.NET_ERR_UNKNOWN]).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    const pairs: [number, string, number][] = [
      [N.NET_ERR_ENOENT, "ENOENT", 2],
      [N.NET_ERR_ENOMEM, "ENOMEM", 12],
      [N.NET_ERR_EIO, "EIO", 5],
      [N.NET_ERR_ENOSPC, "ENOSPC", 28],
      [N.NET_ERR_EINVAL, "EINVAL", 22],
      [N.NET_ERR_ENOLINK, "ENOLINK", 67],
    ];
    for (const [net, name, errno] of pairs) {
      expect(N.netErrToErrno(net)).toBe(name as never);
      expect(N.netErrFromErrno(name as never)).toBe(net);
      expect(N.netErrToErrnoNumber(net)).toBe(errno);
      expect(N.netErrnoIsWireSafe(name as never)).toBe(true);
    }
    expect(N.netErrToErrno(N.NET_ERR_NONE)).toBeUndefined();
    expect(N.netErrToErrno(N.NET_ERR_UNKNOWN)).toBe("EINVAL");
    // errnos outside the table travel as EINVAL, as in the kmod
    expect(N.netErrFromErrno("EEXIST")).toBe(N.NET_ERR_EINVAL);
    expect(N.netErrnoIsWireSafe("EEXIST")).toBe(false);
  });
});

describe("open_ino_map", () => {
  test("layout of format.h scoutfs_open_ino_map_args and scoutfs_open_ino_map", () => {
    expect(N.NetOpenInoMapArgs.size).toBe(16);
    expect(N.NetOpenInoMapArgs.off).toEqual({ group_nr: 0, req_id: 8 });
    // 1024 bits = 16 le64s after the args
    expect(N.NetOpenInoMap.size).toBe(16 + 16 * 8);
    expect(N.NetOpenInoMap.off).toEqual({ args: 0, bits: 16 });
  });

  test("inode -> group and bit; bits are le64 words, so byte b/8, bit b%8", () => {
    expect(N.openInoMapGroup(0n)).toEqual({ groupNr: 0n, bit: 0 });
    expect(N.openInoMapGroup(1023n)).toEqual({ groupNr: 0n, bit: 1023 });
    expect(N.openInoMapGroup(1024n + 65n)).toEqual({ groupNr: 1n, bit: 65 });
    const bits = new Uint8Array(N.NET_OPEN_INO_MAP_BITS_BYTES);
    N.openInoMapSet(bits, 65);
    // bit 65 = bit 1 of the second le64 = byte 8, bit 1
    expect(bits[8]).toBe(2);
    expect(N.openInoMapTest(bits, 65)).toBe(true);
    expect(N.openInoMapTest(bits, 64)).toBe(false);
    const m = N.NetOpenInoMap.encode({ args: { group_nr: 3n, req_id: 9n }, bits });
    expect(hex(m.subarray(0, 16))).toBe("0300000000000000" + "0900000000000000");
    expect(N.NetOpenInoMap.decode(m).bits[8]).toBe(2);
  });
});
