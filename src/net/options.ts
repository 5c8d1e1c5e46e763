/**
 * Options shared by NetServer and NetClient, with their defaults. Every bound the net layer
 * enforces is named here with its unit.
 */
import { NET_DEFAULT_TCP_KEEPALIVE_TIMEOUT_MS, NET_MAX_FRAME_BYTES } from "../format/net.ts";
import { assert } from "../util/assert.ts";
import { NetCounters, defaultNetLogger, type NetLogger } from "./counters.ts";

export interface NetCommonOptions {
  /** A socket on which nothing arrives for this long is dead (mount option tcp_keepalive_timeout_ms). */
  keepalive_timeout_ms?: number;
  /** Outgoing requests awaiting responses, per connection; more fail with EBUSY. */
  max_pending_requests?: number;
  /** Incoming requests in progress plus unacknowledged responses, per connection. */
  max_incoming_requests?: number;
  /** Bytes queued for one socket that the kernel has not taken yet. */
  max_send_queue_bytes?: number;
  counters?: NetCounters;
  log?: NetLogger;
}

export interface ResolvedCommonOptions {
  keepalive_timeout_ms: number;
  max_pending_requests: number;
  max_incoming_requests: number;
  max_send_queue_bytes: number;
  counters: NetCounters;
  log: NetLogger;
}

export const NET_DEFAULT_MAX_PENDING_REQUESTS = 1024;
export const NET_DEFAULT_MAX_INCOMING_REQUESTS = 1024;
export const NET_DEFAULT_MAX_SEND_QUEUE_BYTES = 4 * 1024 * 1024;

export function resolveCommonOptions(o: NetCommonOptions): ResolvedCommonOptions {
  const r: ResolvedCommonOptions = {
    keepalive_timeout_ms: o.keepalive_timeout_ms ?? NET_DEFAULT_TCP_KEEPALIVE_TIMEOUT_MS,
    max_pending_requests: o.max_pending_requests ?? NET_DEFAULT_MAX_PENDING_REQUESTS,
    max_incoming_requests: o.max_incoming_requests ?? NET_DEFAULT_MAX_INCOMING_REQUESTS,
    max_send_queue_bytes: o.max_send_queue_bytes ?? NET_DEFAULT_MAX_SEND_QUEUE_BYTES,
    counters: o.counters ?? new NetCounters(),
    log: o.log ?? defaultNetLogger,
  };
  assert(r.keepalive_timeout_ms > 0, "keepalive_timeout_ms is positive");
  assert(r.max_pending_requests > 0 && r.max_incoming_requests > 0, "request bounds are positive");
  // everything kept must fit when it is all resent at once down a new socket
  assert(
    r.max_send_queue_bytes >= (r.max_pending_requests + r.max_incoming_requests + 2) * NET_MAX_FRAME_BYTES,
    "max_send_queue_bytes holds every kept message",
  );
  return r;
}
