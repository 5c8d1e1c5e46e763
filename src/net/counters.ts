/**
 * Counters and logging for the net layer. Every notable event is counted (as the kmod's
 * net_* counters are) so that tests and the management API can see what the network did:
 * resends, dropped duplicates, invalid frames, keepalive timeouts. One NetCounters is shared by
 * all connections of a NetServer or NetClient unless the caller passes its own.
 */

export class NetCounters {
  /** Frames received and sent, heartbeats included in send_messages but not in recv_messages. */
  recv_messages = 0;
  recv_bytes = 0;
  send_messages = 0;
  send_bytes = 0;
  /** Frames that repeated a seq already received (resent across a reconnect): dropped. */
  recv_dropped_duplicate = 0;
  /** Frames that broke the protocol; each one closed its socket. */
  recv_invalid_message = 0;
  /** Responses to requests that were no longer pending (timed out): dropped. */
  dropped_response = 0;
  /** Responses whose request came from a previous server or a destroyed client: dropped. */
  dropped_stale_response = 0;
  /** Requests for a command with no registered handler: answered with EINVAL. */
  unknown_request = 0;
  /** Handlers that threw something other than a ScoutfsError: answered with EIO. */
  handler_errors = 0;
  /** Handler errnos outside the wire table, sent as EINVAL. */
  untranslated_errno = 0;
  request_timeouts = 0;
  /** Kept messages written again down a new socket after its greeting. */
  resent_messages = 0;
  heartbeats_sent = 0;
  heartbeats_recv = 0;
  keepalive_timeouts = 0;
  /** Sockets closed because the greeting exchange did not finish within the keepalive timeout. */
  greeting_timeouts = 0;
  send_queue_overflows = 0;
  greetings = 0;
  greeting_errors = 0;
  connect_attempts = 0;
  connect_errors = 0;
  sockets_accepted = 0;
  sockets_rejected = 0;
  sockets_closed = 0;
  /** Server: clients whose state was dropped because they did not reconnect in time. */
  reconnect_timeouts = 0;

  snapshot(): Record<string, number> {
    return { ...this } as unknown as Record<string, number>;
  }
}

export type NetLogLevel = "info" | "warn" | "error";
export type NetLogger = (level: NetLogLevel, message: string) => void;

/** Warnings and errors to stderr; info is quiet unless SCOUTFS_DEBUG is set. */
export const defaultNetLogger: NetLogger = (level, message) => {
  if (level === "info" && !process.env.SCOUTFS_DEBUG) return;
  console.error(`scoutfs net ${level}: ${message}`);
};

export function hex64(v: bigint): string {
  return v.toString(16).padStart(16, "0");
}
