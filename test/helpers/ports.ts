/** Free loopback ports for quorum slots: bind UDP and TCP on port 0, note the ports, release them. */
import * as net from "node:net";

export async function freePorts(n: number): Promise<number[]> {
  const ports: number[] = [];
  const held: net.Server[] = [];
  while (ports.length < n) {
    const srv = net.createServer();
    await new Promise<void>((res) => srv.listen(0, "127.0.0.1", () => res()));
    const port = (srv.address() as net.AddressInfo).port;
    held.push(srv);
    try {
      const u = await Bun.udpSocket({ hostname: "127.0.0.1", port });
      u.close();
      ports.push(port);
    } catch {
      // UDP side taken: try another
    }
  }
  await Promise.all(held.map((s) => new Promise<void>((res) => s.close(() => res()))));
  return ports;
}
