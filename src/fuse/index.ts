/**
 * The FUSE library: speak the Linux FUSE protocol over /dev/fuse from TypeScript, no libfuse.
 * Knows nothing of scoutfs. See docs/fuse.md.
 */
export * from "./errno.ts";
export * from "./filesystem.ts";
export { mount, unmountPath, FuseMount, type MountOptions } from "./mount.ts";
export { Session, type SessionOptions, type SessionCounters } from "./session.ts";
export * from "./types.ts";
