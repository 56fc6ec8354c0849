/**
 * `demo`: a three-node cluster on loopback, certificates made on the fly in memory (nothing is
 * written to disk), handshakes in every mode, and a table of what happened.
 * @module
 */
import type { NodeConfig, NodeEntry } from "../node/config.ts";
import { type HandshakeEvent, InterconnectNode, type Session } from "../node/node.ts";
import { generateCredentials } from "../tls/mod.ts";
import type { TlsCredentials } from "../tls/mod.ts";

/** One row of the demo's table. */
export interface DemoRow {
  scenario: string;
  nodes: string;
  mode: string;
  outcome: string;
  latencyMs: string;
  params: string;
  explanation: string;
}

interface Scenario {
  name: string;
  from: number;
  to: number;
  mode: string;
  config: (id: number) => Partial<NodeConfig>;
  resume?: boolean;
}

function freePorts(n: number): number[] {
  const ls = Array.from({ length: n }, () => Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  const ports = ls.map((l) => l.addr.port);
  for (const l of ls) l.close();
  return ports;
}

/** Runs every scenario and returns the table rows. */
export async function runDemo(options: { workers?: number | false } = {}): Promise<DemoRow[]> {
  const ids = [1, 2, 3];
  const generated = await generateCredentials(ids.map((id) => `node-${id}`));
  const creds = new Map<number, TlsCredentials>(ids.map((id, i) => [id, generated.nodes[i]]));
  const tls = (id: number, authOnly = false) => ({ ...creds.get(id)!, authOnly });
  const scenarios: Scenario[] = [
    { name: "new session", from: 1, to: 2, mode: "plain", config: () => ({}) },
    {
      name: "new session",
      from: 1,
      to: 2,
      mode: "TLS, dialer is TLS server",
      config: (id) => ({ encryption: "required", tls: tls(id) }),
    },
    {
      name: "new session",
      from: 3,
      to: 1,
      mode: "TLS, dialer is TLS client",
      config: (id) => ({ encryption: "optional", tls: tls(id) }),
    },
    {
      name: "new session",
      from: 2,
      to: 3,
      mode: "AuthOnly",
      config: (id) => ({ encryption: "optional", tls: tls(id, true) }),
    },
    { name: "continuation", from: 1, to: 3, mode: "plain", config: () => ({}), resume: true },
    {
      name: "rejected peer",
      from: 3,
      to: 2,
      mode: "plain",
      config: (id) => ({
        clusterUUID: id === 3 ? "other-cluster" : "demo",
        acceptUUID: [id === 3 ? "other-cluster" : "demo"],
      }),
    },
    {
      name: "rejected peer",
      from: 1,
      to: 2,
      mode: "encryption required vs disabled",
      config: (id) => (id === 1 ? { encryption: "required", tls: tls(id) } : {}),
    },
  ];
  const rows: DemoRow[] = [];
  for (const sc of scenarios) rows.push(...await runScenario(sc, ids, options));
  return rows;
}

async function runScenario(
  sc: Scenario,
  ids: number[],
  options: { workers?: number | false },
): Promise<DemoRow[]> {
  const ports = freePorts(ids.length);
  const table: NodeEntry[] = ids.map((id, i) => ({
    nodeId: id,
    host: `node-${id}`,
    port: ports[i],
    address: "127.0.0.1",
  }));
  const nodes = new Map<number, InterconnectNode>();
  const events: HandshakeEvent[] = [];
  try {
    for (const [i, id] of ids.entries()) {
      const node = InterconnectNode.start({
        nodeId: id,
        listen: { host: "127.0.0.1", port: ports[i] },
        nodes: table,
        ...sc.config(id),
      }, { workers: options.workers ?? 2 });
      await node.ready();
      nodes.set(id, node);
      if (id === sc.from) node.onHandshake((e) => e.direction === "outgoing" && events.push(e));
    }
    const from = nodes.get(sc.from)!;
    let session: Session | undefined;
    try {
      session = await from.connect(sc.to);
    } catch {
      // The failure is in the events.
    }
    if (session && sc.resume) {
      try {
        await session.resume();
      } catch {
        // as above
      }
    }
  } finally {
    for (const n of nodes.values()) await n.close();
  }
  return events.map((e) => row(sc, e));
}

function row(sc: Scenario, e: HandshakeEvent): DemoRow {
  const base = {
    scenario: e.continuation ? "continuation" : sc.resume ? "new session" : sc.name,
    nodes: `${sc.from} -> ${sc.to}`,
    mode: sc.mode,
    latencyMs: e.durationMs.toFixed(2),
  };
  if (!e.ok) {
    return {
      ...base,
      outcome: e.failure.toUpperCase(),
      params: "",
      explanation: e.explanation,
    };
  }
  const p = e.session.params;
  const flags = [
    p.encryption ? "encryption" : "",
    p.authOnly ? "authOnly" : "",
    p.authCN ? `CN=${p.authCN}` : "",
    p.useModernFrame ? "modernFrame" : "",
  ].filter(Boolean).join(" ");
  return {
    ...base,
    outcome: "ok",
    params: flags,
    explanation: `${e.session.selfVirtualId} <-> ${e.session.peerVirtualId}`,
  };
}

/** Renders rows as an aligned text table. */
export function renderTable(rows: DemoRow[]): string {
  const headers: Record<keyof DemoRow, string> = {
    scenario: "scenario",
    nodes: "nodes",
    mode: "mode",
    outcome: "outcome",
    latencyMs: "ms",
    params: "negotiated",
    explanation: "ids / explanation",
  };
  const keys = Object.keys(headers) as (keyof DemoRow)[];
  const width = (k: keyof DemoRow) => Math.max(headers[k].length, ...rows.map((r) => r[k].length));
  const widths = keys.map((k) => (k === "explanation" ? 0 : width(k)));
  const line = (r: Record<keyof DemoRow, string>) =>
    keys.map((k, i) => (widths[i] ? r[k].padEnd(widths[i]) : r[k])).join("  ").trimEnd();
  return [line(headers), ...rows.map(line)].join("\n");
}
