/**
 * Start-up probe for the handshake benchmark: imports the node, starts one listening on
 * 127.0.0.1 with a pool of `Deno.args[0]` workers, waits for the warm pool, prints
 * `{"event":"listening",...}` and exits. Started by `bench/handshake.ts`.
 * @module
 */
import { InterconnectNode } from "../lib/node/node.ts";

const workers = Number(Deno.args[0] ?? 4);
const node = InterconnectNode.start({
  nodeId: 1,
  listen: { host: "127.0.0.1", port: 0 },
  nodes: [{ nodeId: 1, host: "node-1", port: 19001 }],
}, { workers });
await node.ready();
console.log(JSON.stringify({ event: "listening", port: node.listenAddress?.port, workers }));
await node.close();
