/**
 * Framing: turning a TCP byte stream into (header, payload) messages and back.
 *
 * A frame is a 32-byte NetHeader followed by `data_len` payload bytes (format.h). TCP delivers
 * the stream in arbitrary chunks, so a frame may be split across chunks and one chunk may hold
 * many frames. `FrameReader` parses whole frames straight out of each chunk and copies only an
 * incomplete tail into one fixed buffer of NET_MAX_FRAME_BYTES, so memory per socket is bounded
 * and complete frames cost no copy. The payload handed to the callback is a view that is only
 * valid during the call: receivers copy what they keep.
 *
 * Each header is checked as soon as its 32 bytes are present, before waiting for its payload, so
 * an oversized data_len is refused at once instead of buffering it. The checks here are the
 * stateless ones of the kmod's invalid_message(): non-zero seq and id, known cmd, flags and
 * error, bounded data_len, errors only in responses. Stateful checks (greeting order, duplicate
 * seqs, response ids) belong to the connection. A problem is returned as a string, never thrown:
 * input from the network must not be able to throw.
 *
 * Heartbeats are our one extension of the wire format (see docs/net.md): a header with seq, id,
 * cmd, flags, error and data_len all zero, carrying only recv_seq. The kmod relies on TCP
 * keepalive with TCP_USER_TIMEOUT, which Bun cannot set, so we detect dead peers by silence
 * and keep healthy idle sockets talking with these frames.
 */
import {
  NetHeader,
  NET_CMD_UNKNOWN,
  NET_ERR_NONE,
  NET_ERR_UNKNOWN,
  NET_FLAG_RESPONSE,
  NET_FLAGS_UNKNOWN,
  NET_HEADER_BYTES,
  NET_MAX_DATA_LEN,
  NET_MAX_FRAME_BYTES,
  netCmdName,
} from "../format/net.ts";
import { assert } from "../util/assert.ts";

const OFF_SEQ = NetHeader.off.seq;
const OFF_RECV_SEQ = NetHeader.off.recv_seq;
const OFF_ID = NetHeader.off.id;
const OFF_DATA_LEN = NetHeader.off.data_len;
const OFF_CMD = NetHeader.off.cmd;
const OFF_FLAGS = NetHeader.off.flags;
const OFF_ERROR = NetHeader.off.error;

/** A received header. FrameReader reuses one instance for every frame: copy fields you keep. */
export interface RecvHeader {
  seq: bigint;
  recv_seq: bigint;
  id: bigint;
  data_len: number;
  cmd: number;
  flags: number;
  error: number;
}

export function isResponse(h: RecvHeader): boolean {
  return (h.flags & NET_FLAG_RESPONSE) !== 0;
}

export function isHeartbeat(h: RecvHeader): boolean {
  return h.seq === 0n && h.id === 0n && h.cmd === 0 && h.flags === 0 && h.error === 0 && h.data_len === 0;
}

/** The stateless reasons a header is invalid, or undefined when it is acceptable. */
export function headerProblem(h: RecvHeader): string | undefined {
  if (isHeartbeat(h)) return undefined;
  if (h.seq === 0n || h.id === 0n) return `seq ${h.seq} and id ${h.id} must be non-zero`;
  if (h.cmd >= NET_CMD_UNKNOWN) return `unknown cmd ${h.cmd}`;
  if ((h.flags & NET_FLAGS_UNKNOWN) !== 0) return `unknown flags 0x${h.flags.toString(16)}`;
  if (h.error >= NET_ERR_UNKNOWN) return `unknown net error ${h.error}`;
  if (h.data_len > NET_MAX_DATA_LEN) return `data_len ${h.data_len} exceeds the maximum ${NET_MAX_DATA_LEN}`;
  if (!isResponse(h) && h.error !== NET_ERR_NONE) return `${netCmdName(h.cmd)} request carries error ${h.error}`;
  return undefined;
}

function readHeader(dv: DataView, at: number, h: RecvHeader): void {
  h.seq = dv.getBigUint64(at + OFF_SEQ, true);
  h.recv_seq = dv.getBigUint64(at + OFF_RECV_SEQ, true);
  h.id = dv.getBigUint64(at + OFF_ID, true);
  h.data_len = dv.getUint16(at + OFF_DATA_LEN, true);
  h.cmd = dv.getUint8(at + OFF_CMD);
  h.flags = dv.getUint8(at + OFF_FLAGS);
  h.error = dv.getUint8(at + OFF_ERROR);
}

/** A whole frame: header then payload, recv_seq left 0 (it is set as the frame leaves). */
export function encodeFrame(seq: bigint, id: bigint, cmd: number, flags: number, error: number, data: Uint8Array): Uint8Array {
  assert(data.length <= NET_MAX_DATA_LEN, `frame payload ${data.length} bytes exceeds ${NET_MAX_DATA_LEN}`);
  assert(seq > 0n && id > 0n, "frames need non-zero seq and id");
  const frame = new Uint8Array(NET_HEADER_BYTES + data.length);
  const dv = new DataView(frame.buffer);
  dv.setBigUint64(OFF_SEQ, seq, true);
  dv.setBigUint64(OFF_ID, id, true);
  dv.setUint16(OFF_DATA_LEN, data.length, true);
  dv.setUint8(OFF_CMD, cmd);
  dv.setUint8(OFF_FLAGS, flags);
  dv.setUint8(OFF_ERROR, error);
  frame.set(data, NET_HEADER_BYTES);
  return frame;
}

/** A heartbeat frame: all zero but recv_seq, which is set as it leaves. */
export function encodeHeartbeat(): Uint8Array {
  return new Uint8Array(NET_HEADER_BYTES);
}

/** Set recv_seq in an encoded frame (done for every frame as it is written to a socket). */
export function patchRecvSeq(frame: Uint8Array, recvSeq: bigint): void {
  new DataView(frame.buffer, frame.byteOffset, NET_HEADER_BYTES).setBigUint64(OFF_RECV_SEQ, recvSeq, true);
}

export type FrameCallback = (h: RecvHeader, payload: Uint8Array) => void;

export class FrameReader {
  /** Holds at most one incomplete frame. */
  private readonly partial = new Uint8Array(NET_MAX_FRAME_BYTES);
  private readonly partialView = new DataView(this.partial.buffer);
  private partialBytes = 0;
  /** data_len of the partial frame once its header is complete and checked, else -1. */
  private partialDataLen = -1;
  private readonly hdr: RecvHeader = { seq: 0n, recv_seq: 0n, id: 0n, data_len: 0, cmd: 0, flags: 0, error: 0 };
  private stopped = false;

  constructor(private readonly onFrame: FrameCallback) {}

  /** Stop delivering frames, also in the middle of a chunk (the socket is being closed). */
  stop(): void {
    this.stopped = true;
  }

  /** Feed one chunk. Returns a problem description when the stream is invalid (then stops). */
  push(chunk: Uint8Array): string | undefined {
    if (this.stopped) return undefined;
    let off = 0;
    if (this.partialBytes > 0) {
      const r = this.fillPartial(chunk);
      if (typeof r === "string") return this.fail(r);
      off = r;
      if (this.partialBytes > 0 || this.stopped) return undefined; // chunk used up, or stopped
    }

    const dv = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const h = this.hdr;
    while (!this.stopped && chunk.length - off >= NET_HEADER_BYTES) {
      readHeader(dv, off, h);
      const problem = headerProblem(h);
      if (problem) return this.fail(problem);
      const total = NET_HEADER_BYTES + h.data_len;
      if (chunk.length - off < total) break;
      this.onFrame(h, chunk.subarray(off + NET_HEADER_BYTES, off + total));
      off += total;
    }
    if (this.stopped || off === chunk.length) return undefined;

    // Keep the incomplete tail; its header (if whole) was already checked in the loop above.
    const tail = chunk.length - off;
    assert(tail < NET_MAX_FRAME_BYTES, "incomplete frame tail fits the partial buffer");
    this.partial.set(chunk.subarray(off), 0);
    this.partialBytes = tail;
    this.partialDataLen = tail >= NET_HEADER_BYTES ? h.data_len : -1;
    return undefined;
  }

  /** Complete the partial frame from the chunk; returns how much of the chunk it used. */
  private fillPartial(chunk: Uint8Array): number | string {
    let off = 0;
    if (this.partialDataLen < 0) {
      const take = Math.min(NET_HEADER_BYTES - this.partialBytes, chunk.length);
      this.partial.set(chunk.subarray(0, take), this.partialBytes);
      this.partialBytes += take;
      off = take;
      if (this.partialBytes < NET_HEADER_BYTES) return off;
      readHeader(this.partialView, 0, this.hdr);
      const problem = headerProblem(this.hdr);
      if (problem) return problem;
      this.partialDataLen = this.hdr.data_len;
    }
    const total = NET_HEADER_BYTES + this.partialDataLen;
    const take = Math.min(total - this.partialBytes, chunk.length - off);
    this.partial.set(chunk.subarray(off, off + take), this.partialBytes);
    this.partialBytes += take;
    off += take;
    if (this.partialBytes < total) return off;

    readHeader(this.partialView, 0, this.hdr);
    this.partialBytes = 0;
    this.partialDataLen = -1;
    this.onFrame(this.hdr, this.partial.subarray(NET_HEADER_BYTES, total));
    return off;
  }

  private fail(problem: string): string {
    this.stopped = true;
    this.partialBytes = 0;
    this.partialDataLen = -1;
    return problem;
  }
}
