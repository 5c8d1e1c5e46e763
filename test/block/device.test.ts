/**
 * Device: positional I/O on an image file, and its flush accounting (takeFlushStats), which the
 * fs benchmark reports per operation.
 */
import { afterAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Device, takeFlushStats } from "../../src/block/device.ts";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "scoutfs-device-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

test("writes read back, and every sync is counted under the device's path until taken", () => {
  const p = path.join(dir, "img");
  fs.writeFileSync(p, "");
  fs.truncateSync(p, 1 << 20);
  takeFlushStats();
  const dev = Device.open(p, { write: true });
  try {
    const buf = new Uint8Array(4096).fill(0xa5);
    dev.writeAt(buf, 8192);
    dev.sync();
    dev.sync();
    const back = new Uint8Array(4096);
    dev.readAt(back, 8192);
    expect(back).toEqual(buf);
    const st = takeFlushStats();
    expect(st[p]?.flushes).toBe(2);
    expect(st[p]!.ms).toBeGreaterThanOrEqual(0);
    // taken: counting starts again
    expect(takeFlushStats()[p]).toBeUndefined();
  } finally {
    dev.close();
  }
});

test("a read-only device refuses writes with EROFS and reads do not count as flushes", () => {
  const p = path.join(dir, "ro");
  fs.writeFileSync(p, Buffer.alloc(8192, 1));
  const dev = Device.open(p);
  try {
    expect(() => dev.writeAt(new Uint8Array(4096), 0)).toThrow(/read-only/);
    const b = new Uint8Array(4096);
    dev.readAt(b, 4096);
    expect(b[0]).toBe(1);
    expect(takeFlushStats()[p]).toBeUndefined();
  } finally {
    dev.close();
  }
});
