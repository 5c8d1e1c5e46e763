/**
 * Reads and writes of whole 4 KiB blocks on the data device: the I/O half of a DataStore, shared
 * by the item stores (their allocation halves differ).
 */
import type { Device } from "../block/device.ts";
import { BLOCK_SM_SIZE } from "../format/constants.ts";
import { assert } from "../util/assert.ts";
import type { DataStore } from "./types.ts";

/** `onWrite` is told of every write, so the store flushes the data device before its next commit. */
export function dataBlockIO(dev: Device, onWrite: () => void): Pick<DataStore, "read" | "write"> {
  return {
    read: (blkno: bigint, count: number, out: Uint8Array) => {
      assert(out.byteLength >= count * BLOCK_SM_SIZE, "data read buffer too small");
      dev.readAt(out.subarray(0, count * BLOCK_SM_SIZE), Number(blkno) * BLOCK_SM_SIZE);
    },
    write: (blkno: bigint, data: Uint8Array) => {
      assert(data.byteLength % BLOCK_SM_SIZE === 0, "data writes are whole 4 KiB blocks");
      dev.writeAt(data, Number(blkno) * BLOCK_SM_SIZE);
      onWrite();
    },
  };
}
