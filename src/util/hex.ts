/** A 64-bit id (rid, fsid) as the 16 hex digits scoutfs prints. */
export const hex16 = (v: bigint): string => v.toString(16).padStart(16, "0");
