/**
 * Real nodes on loopback for tests: free ports, a shared node table, TLS fixtures.
 */
import {
  type HandshakeEvent,
  InterconnectNode,
  type NodeOptions,
  type Session,
} from "../../lib/node/node.ts";
import type { NodeConfig, TlsConfig } from "../../lib/node/config.ts";

const fixtures = new URL("../fixtures/tls/", import.meta.url);

/** TLS material from the fixtures: `<name>.pem/.key` trusting `ca.pem`. */
export function tlsFixture(name: string, authOnly = false): TlsConfig {
  const read = (f: string) => Deno.readTextFileSync(new URL(f, fixtures));
  return { cert: read(`${name}.pem`), key: read(`${name}.key`), ca: read("ca.pem"), authOnly };
}

/** Reserves free loopback ports (the listeners bind them right after). */
export function freePorts(n: number): number[] {
  const ls = Array.from({ length: n }, () => Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  const ports = ls.map((l) => l.addr.port);
  for (const l of ls) l.close();
  return ports;
}

/**
 * Starts nodes `ids` on loopback with a shared table; `extra(id)` adds config keys. Each node
 * gets 2 handshake workers unless `options` says otherwise, and is warm when this resolves.
 */
export async function startCluster(
  ids: number[],
  extra: (id: number) => Partial<NodeConfig> = () => ({}),
  options: NodeOptions = {},
): Promise<InterconnectNode[]> {
  const ports = freePorts(ids.length);
  const nodes = ids.map((id, i) => ({
    nodeId: id,
    host: `node-${id}`,
    port: ports[i],
    address: "127.0.0.1",
  }));
  const started = ids.map((id, i) =>
    InterconnectNode.start({
      nodeId: id,
      listen: { host: "127.0.0.1", port: ports[i] },
      nodes,
      ...extra(id),
    }, { workers: 2, ...options })
  );
  await Promise.all(started.map((n) => n.ready()));
  return started;
}

/**
 * Reads from a session until `n` characters arrived (or the stream ended). Throws after
 * `timeoutMs` without them, so a regression fails the test instead of hanging it.
 */
export async function readText(s: Session, n: number, timeoutMs = 10_000): Promise<string> {
  const reader = s.readable.getReader();
  let text = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), timeoutMs));
  try {
    while (text.length < n) {
      const read = reader.read();
      read.catch(() => {}); // a read left pending at the time-out ends when the test closes up
      const result = await Promise.race([read, expired]);
      if (result === "timeout") {
        throw new Error(`read ${text.length} of ${n} characters in ${timeoutMs} ms: "${text}"`);
      }
      if (result.done) break;
      text += new TextDecoder().decode(result.value);
    }
    reader.releaseLock();
  } finally {
    clearTimeout(timer);
  }
  return text;
}

/** Writes text to a session. */
export async function writeText(s: Session, text: string): Promise<void> {
  const w = s.writable.getWriter();
  try {
    await w.write(new TextEncoder().encode(text));
  } finally {
    w.releaseLock();
  }
}

/**
 * Resolves when `node` finishes a successful continuation handshake: its session's streams are
 * those of the new connection only from then on.
 */
export function continuationOn(node: InterconnectNode): Promise<HandshakeEvent> {
  return new Promise((resolve) => {
    const off = node.onHandshake((e) => {
      if (e.ok && e.continuation) {
        off();
        resolve(e);
      }
    });
  });
}
