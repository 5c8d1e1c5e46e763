import { describe, expect, test } from "bun:test";
import { parseMountOptions, formatMountOptions, defaultOptions } from "../../src/mount/options.ts";

describe("mount options (scoutfs(5))", () => {
  test("defaults", () => {
    const o = parseMountOptions("metadev_path=/dev/sdb");
    expect(o).toEqual({ ...defaultOptions("/dev/sdb") });
    expect(o.quorumHeartbeatTimeoutMs).toBe(10000);
    expect(o.tcpKeepaliveTimeoutMs).toBe(24000);
    expect(o.dataPreallocBlocks).toBe(2048n);
    expect(o.quorumSlotNr).toBe(-1);
  });

  test("every option parsed", () => {
    const o = parseMountOptions(
      "metadev_path=/m,quorum_slot_nr=3,noacl,data_prealloc_blocks=16,data_prealloc_contig_only=0,ino_alloc_per_lock=64," +
        "lock_idle_count=100,log_merge_wait_timeout_ms=1000,orphan_scan_delay_ms=200,quorum_heartbeat_timeout_ms=2000,tcp_keepalive_timeout_ms=5000,ro,noatime,_netdev,x-systemd.requires=foo",
    );
    expect(o).toMatchObject({
      metadevPath: "/m", quorumSlotNr: 3, acl: false, dataPreallocBlocks: 16n, dataPreallocContigOnly: false, inoAllocPerLock: 64,
      lockIdleCount: 100, logMergeWaitTimeoutMs: 1000, orphanScanDelayMs: 200, quorumHeartbeatTimeoutMs: 2000, tcpKeepaliveTimeoutMs: 5000,
      generic: ["ro", "noatime"],
    });
    expect(parseMountOptions(formatMountOptions(o))).toEqual(o);
  });

  const bad: [string, RegExp][] = [
    ["quorum_slot_nr=0", /Required mount option "metadev_path" not found/],
    ["metadev_path=/m,bogus", /Unknown or malformed option, "bogus"/],
    ["metadev_path=/m,acl=1", /"acl" takes no value/],
    ["metadev_path=/m,quorum_slot_nr=15", /quorum_slot_nr option, must be between 0 and 14/],
    ["metadev_path=/m,quorum_slot_nr=-1", /failed to parse quorum_slot_nr/],
    ["metadev_path=/m,quorum_slot_nr=1,quorum_slot_nr=2", /multiple quorum_slot_nr/],
    ["metadev_path=/m,metadev_path=/n", /multiple metadev_path/],
    ["metadev_path=/m,quorum_heartbeat_timeout_ms=1999", /quorum_heartbeat_timeout_ms value 1999, must be between 2000 and 60000/],
    ["metadev_path=/m,quorum_heartbeat_timeout_ms=60001", /must be between 2000 and 60000/],
    ["metadev_path=/m,tcp_keepalive_timeout_ms=3000", /tcp_keepalive_timeout_ms value 3000, must be larger than 3000/],
    ["metadev_path=/m,lock_idle_count=31", /lock_idle_count value 31, must be between 32 and 100000/],
    ["metadev_path=/m,log_merge_wait_timeout_ms=99", /between 100 and 60000/],
    ["metadev_path=/m,orphan_scan_delay_ms=60001", /between 100 and 60000/],
    ["metadev_path=/m,ino_alloc_per_lock=0", /ino_alloc_per_lock option, must be between 1 and 1024/],
    ["metadev_path=/m,ino_alloc_per_lock=1025", /between 1 and 1024/],
    ["metadev_path=/m,data_prealloc_blocks=0", /data_prealloc_blocks option/],
    ["metadev_path=/m,data_prealloc_contig_only=2", /bool must only be 0 or 1/],
    ["metadev_path=/m,lock_idle_count=abc", /failed to parse lock_idle_count value 'abc'/],
    ["metadev_path=", /"metadev_path" needs a device path/],
  ];
  for (const [s, re] of bad) test(`refuses ${s}`, () => expect(() => parseMountOptions(s)).toThrow(re));
});
