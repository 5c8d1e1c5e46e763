/**
 * The scoutfs client/server message protocol over TCP. See docs/net.md for a guided tour:
 * frame.ts (bytes <-> frames), link.ts (one socket), conn.ts (message state, resend and
 * duplicate suppression across sockets), server.ts and client.ts (greetings and the API).
 */
export { NetServer, type NetServerOptions, type NetGreetingInfo, NET_DEFAULT_MAX_SOCKETS } from "./server.ts";
export { NetClient, type NetClientOptions, type NetAddress } from "./client.ts";
export { NetConnection, type NetIncomingRequest, type NetRequestHandler, type NetRequestOptions } from "./conn.ts";
export { NetCounters, defaultNetLogger, type NetLogger, type NetLogLevel } from "./counters.ts";
export { type NetCommonOptions } from "./options.ts";
export { FrameReader, encodeFrame, encodeHeartbeat, headerProblem, type RecvHeader } from "./frame.ts";
