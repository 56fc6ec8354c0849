/**
 * Hostile peers for node tests over real loopback TCP: a raw `Deno.connect` client that writes
 * bytes built with the wire codecs and reads with its own buffer (so the socket can still be
 * handed to `Deno.startTls`), nodes started with extra node-table entries nobody runs, and a
 * wait for a node's next handshake event with a safety limit.
 */
import { BufferedReader, type ByteSource } from "../../lib/io/buffered_reader.ts";
import { ActorId } from "../../lib/wire/actor_id.ts";
import type { HandshakeRequest } from "../../lib/wire/messages.ts";
import { type HandshakeEvent, InterconnectNode, type NodeOptions } from "../../lib/node/node.ts";
import type { NodeConfig, NodeEntry } from "../../lib/node/config.ts";
import { freePorts } from "./cluster.ts";

/** A raw TCP client that misbehaves on purpose. */
export class RawPeer implements AsyncDisposable {
  readonly reader: BufferedReader;
  #closed = false;

  private constructor(readonly conn: Deno.TcpConn) {
    const source: ByteSource = {
      read: async () => {
        const buf = new Uint8Array(16 * 1024);
        const n = await conn.read(buf);
        return n === null ? null : buf.subarray(0, n);
      },
    };
    this.reader = new BufferedReader(source);
  }

  /** Connects to `port` on 127.0.0.1. */
  static async connect(port: number): Promise<RawPeer> {
    return new RawPeer(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  /** Wraps a connection, e.g. one a scripted listener accepted. */
  static wrap(conn: Deno.TcpConn): RawPeer {
    return new RawPeer(conn);
  }

  /** Writes every byte of every chunk, in order. */
  async send(...chunks: Uint8Array[]): Promise<void> {
    for (const c of chunks) {
      let off = 0;
      while (off < c.length) off += await this.conn.write(c.subarray(off));
    }
  }

  /** Exactly `n` bytes from the node. */
  read(n: number): Promise<Uint8Array> {
    return this.reader.readExactly(n);
  }

  /**
   * Everything the node sends until it closes: `eof` true when the stream ended cleanly, false
   * when it was reset (or could not be read).
   */
  async readToEnd(): Promise<{ bytes: Uint8Array; eof: boolean }> {
    const parts: Uint8Array[] = [];
    let eof = true;
    try {
      for (;;) {
        const chunk = await this.reader.readSome();
        if (chunk === null) break;
        parts.push(chunk.slice());
      }
    } catch {
      eof = false;
    }
    const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let off = 0;
    for (const p of parts) {
      bytes.set(p, off);
      off += p.length;
    }
    return { bytes, eof };
  }

  /** Closes the socket (idempotent). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}

/** Nodes and the node table they share. */
export interface Nodes extends AsyncDisposable {
  readonly nodes: InterconnectNode[];
  readonly table: NodeEntry[];
  /** The node with id `id`. */
  node(id: number): InterconnectNode;
  /** The port of `id` in the table (running or not). */
  port(id: number): number;
}

/**
 * Starts nodes `ids` on loopback; the table also lists `absent` ids (host `node-N`, a free
 * port nobody listens on, or `ports[N]` when given). Warm when this resolves.
 */
export async function startNodes(
  ids: number[],
  o: {
    absent?: number[];
    ports?: Record<number, number>;
    extra?: (id: number) => Partial<NodeConfig>;
    options?: (id: number) => NodeOptions;
  } = {},
): Promise<Nodes> {
  const all = [...ids, ...(o.absent ?? [])];
  const free = freePorts(all.length);
  const table: NodeEntry[] = all.map((id, i) => ({
    nodeId: id,
    host: `node-${id}`,
    port: o.ports?.[id] ?? free[i],
    address: "127.0.0.1",
  }));
  const portOf = (id: number) => table.find((n) => n.nodeId === id)!.port;
  const nodes = ids.map((id) =>
    InterconnectNode.start({
      nodeId: id,
      listen: { host: "127.0.0.1", port: portOf(id) },
      nodes: table,
      ...o.extra?.(id),
    }, { workers: 2, ...o.options?.(id) })
  );
  await Promise.all(nodes.map((n) => n.ready()));
  return {
    nodes,
    table,
    node: (id) => nodes[ids.indexOf(id)],
    port: portOf,
    async [Symbol.asyncDispose]() {
      await Promise.all(nodes.map((n) => n.close()));
    },
  };
}

/**
 * The first event of `node` that `match` accepts. Rejects after `limitMs` (a safety net so a
 * broken case fails instead of hanging the suite, not a timing assertion).
 */
export function nextEvent(
  node: InterconnectNode,
  match: (e: HandshakeEvent) => boolean,
  limitMs = 20_000,
): Promise<HandshakeEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no matching handshake event on node ${node.nodeId} in ${limitMs} ms`));
    }, limitMs);
    const off = node.onHandshake((e) => {
      if (!match(e)) return;
      clearTimeout(timer);
      off();
      resolve(e);
    });
  });
}

/**
 * Resolves once `check()` holds, looking every 10 ms; rejects after `limitMs` (a safety net for
 * states that no event announces, e.g. a refused connection's socket being let go).
 */
export async function eventually(
  check: () => boolean,
  what: string,
  limitMs = 10_000,
): Promise<void> {
  const end = performance.now() + limitMs;
  while (!check()) {
    if (performance.now() > end) throw new Error(`still not true after ${limitMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Collects every event of `node` until the returned `stop` is called. */
export function recordEvents(node: InterconnectNode): { events: HandshakeEvent[]; stop(): void } {
  const events: HandshakeEvent[] = [];
  const stop = node.onHandshake((e) => events.push(e));
  return { events, stop };
}

let serial = 1n << 40n;

/** A fresh plain virtual id of `nodeId` (strictly increasing LocalIds, like a real node). */
export function hostileId(nodeId: number): ActorId {
  return ActorId.plain(nodeId, ++serial);
}

/** A well-formed new-session request from `self` (node `self.nodeId`) to node `to`. */
export function requestTo(
  to: number,
  self: ActorId,
  over: Partial<HandshakeRequest> = {},
): HandshakeRequest {
  return {
    Protocol: 2n,
    ProgramPID: 4242n,
    ProgramStartTime: 4243n,
    Serial: self.localId,
    ReceiverNodeId: to,
    SenderActorId: self.toString(),
    SenderHostName: `node-${self.nodeId}`,
    ReceiverHostName: `node-${to}`,
    ClusterUUIDs: { ClusterUUID: "" },
    RequestModernFrame: true,
    RequestAuthOnly: false,
    ...over,
  };
}
