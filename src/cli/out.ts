/**
 * Buffered synchronous output for commands that print a lot (print, walk-inodes): one write per
 * 64 KiB, in order with stderr, and a closed pipe (`| head`) ends the output quietly.
 */
import * as fs from "node:fs";

export class BufferedOut {
  private chunks: string[] = [];
  private len = 0;
  private closed = false;

  constructor(private readonly fd: number, private readonly limit = 64 * 1024) {}

  write(s: string): void {
    if (this.closed) return;
    this.chunks.push(s);
    this.len += s.length;
    if (this.len >= this.limit) this.flush();
  }

  flush(): void {
    if (this.closed || this.chunks.length === 0) return;
    const buf = Buffer.from(this.chunks.join(""));
    this.chunks = [];
    this.len = 0;
    let off = 0;
    while (off < buf.length) {
      try {
        off += fs.writeSync(this.fd, buf, off, buf.length - off);
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code === "EAGAIN") continue;
        if (code === "EPIPE") {
          this.closed = true;
          return;
        }
        throw err;
      }
    }
  }
}
