// A mount in its own process (for the SIGKILL test): commits keys [0, n), then changes more
// without committing, says so on stdout, and waits to be killed.
import { ClientStore } from "../../src/item/client-store.ts";
import { key, val } from "./helpers.ts";

const [metaPath, dataPath, nArg] = process.argv.slice(2);
const n = Number(nArg);
const s = await ClientStore.open({ metaPath: metaPath!, dataPath: dataPath!, commitIntervalMs: 0, client: { net: { keepalive_timeout_ms: 4000 } } });
s.transact((w) => {
  for (let i = 0; i < n; i++) w.put(key(i), val(i));
});
const e = s.transact(() => s.data.alloc(8n));
s.data.write(e.start, new Uint8Array(8 * 4096).fill(7));
await s.sync();
s.transact((w) => {
  for (let i = n; i < 2 * n; i++) w.put(key(i), val(i));
  w.delete(key(0));
});
s.transact(() => s.data.alloc(8n));
process.stdout.write(`ready ${s.client.rid.toString(16)}\n`);
await new Promise(() => {});
