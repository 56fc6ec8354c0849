/**
 * The benchmark's dialing process: it hosts many dialer nodes, each an
 * {@link InterconnectNode} with its own node id that does not listen, and runs handshakes to
 * the listener (node 1) in closed loops, one loop per node, so that concurrency C means C
 * handshakes in flight. It also runs the floors' clients. Started by `bench/handshake.ts`.
 *
 * Kinds of loop:
 * - `plain`, `tls`: `connect(1)` (a new-session handshake), then `session.close()`, again.
 * - `continuation`: one new session first, then `session.resume()` again and again.
 * - `floor-plain`: `Deno.connect`, then the handshake's byte sizes as round trips, close.
 * - `floor-tls`: a bare `node:tls` mutual-TLS handshake with the same certificates.
 *
 * Argument: a JSON {@link DialerSpec}.
 * @module
 */
import tls from "node:tls";
import { InterconnectNode, type Session } from "../lib/node/node.ts";
import {
  announce,
  type Command,
  dialerConfig,
  fixtureText,
  LISTENER_ID,
  type Mode,
  ProcessMeter,
  serveCommands,
  summarise,
  tlsOf,
  wallMs,
} from "./_common.ts";

/** What the orchestrator asks of this process. */
export interface DialerSpec {
  readonly mode: Mode;
  /** The listener's interconnect port. */
  readonly port: number;
  /** The plain floor server's port (0: none). */
  readonly floorPort: number;
  /** The TLS floor server's port (0: none). */
  readonly tlsFloorPort: number;
  /** Byte sizes of the plain floor's round trips. */
  readonly rounds: readonly (readonly [number, number])[];
  /** Node id of the first dialer node; node i has id `from + i`. */
  readonly from: number;
  /** Worker pool size of each dialer node; 0 runs its handshakes inline (no workers). */
  readonly workers: number;
  /** The dialer nodes' handshake timeout (config key), ms; default the node default. */
  readonly handshakeTimeoutMs?: number;
}

type Kind = "plain" | "tls" | "continuation" | "floor-plain" | "floor-tls";

const spec = JSON.parse(Deno.args[0]) as DialerSpec;
const meter = new ProcessMeter();
const tlsConfig = spec.mode === "tls" ? tlsOf("node-2") : undefined;
const nodes: InterconnectNode[] = [];

/** Makes sure nodes 0..n-1 exist and are warm. */
async function ensureNodes(n: number): Promise<void> {
  const fresh: InterconnectNode[] = [];
  while (nodes.length < n) {
    const id = spec.from + nodes.length;
    const node = InterconnectNode.start(
      dialerConfig(spec.mode, id, spec.port, tlsConfig, spec.handshakeTimeoutMs),
      { workers: spec.workers > 0 ? spec.workers : false },
    );
    nodes.push(node);
    fresh.push(node);
  }
  await Promise.all(fresh.map((n) => n.ready()));
}

// ---------------------------------------------------------------------------------------
// Closed loops

interface Run {
  stop: boolean;
  recording: boolean;
  markedAt: number;
  /** Handshakes completed since the start, warm-up included. */
  total: number;
  latencies: number[];
  failures: number;
  failureTexts: string[];
  loops: Promise<void>[];
}

let run: Run | undefined;

function record(r: Run, started: number): void {
  r.total++;
  if (r.recording) r.latencies.push(performance.now() - started);
}

async function failed(r: Run, e: unknown): Promise<void> {
  if (r.recording) r.failures++;
  if (r.failureTexts.length < 5) r.failureTexts.push(e instanceof Error ? e.message : String(e));
  await new Promise((res) => setTimeout(res, 5));
}

async function nodeLoop(r: Run, node: InterconnectNode, kind: Kind): Promise<void> {
  let session: Session | undefined;
  if (kind === "continuation") {
    while (!session && !r.stop) {
      try {
        session = await node.connect(LISTENER_ID);
      } catch (e) {
        await failed(r, e);
      }
    }
  }
  while (!r.stop) {
    const t = performance.now();
    try {
      if (kind === "continuation") {
        const s = await session!.resume();
        record(r, t);
        session = s;
      } else {
        const s = await node.connect(LISTENER_ID);
        record(r, t);
        s.close();
      }
    } catch (e) {
      await failed(r, e);
    }
  }
  session?.close();
}

const clientContext = tls.createSecureContext({
  cert: fixtureText("node-2.pem"),
  key: fixtureText("node-2.key"),
  ca: fixtureText("ca.pem"),
});

function tlsFloorOnce(): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const sock = tls.connect({
      host: "127.0.0.1",
      port: spec.tlsFloorPort,
      secureContext: clientContext,
      rejectUnauthorized: true,
      checkServerIdentity: () => undefined,
    });
    sock.setNoDelay(true);
    sock.once("secureConnect", () => {
      if (!sock.authorized) reject(new Error(`floor-tls: ${sock.authorizationError}`));
      else resolve();
      sock.end();
    });
    sock.once("error", reject);
    sock.on("close", () => sock.destroy());
  });
}

const floorOut = spec.rounds.map(([n]) => new Uint8Array(n).fill(5));

async function plainFloorOnce(): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: spec.floorPort });
  try {
    conn.setNoDelay(true);
    let buf = new Uint8Array(4096);
    for (let r = 0; r < spec.rounds.length; r++) {
      let written = 0;
      while (written < floorOut[r].length) {
        written += await conn.write(floorOut[r].subarray(written));
      }
      let need = spec.rounds[r][1];
      while (need > 0) {
        const n = await conn.read(buf.subarray(0, Math.min(need, buf.length)));
        if (n === null) throw new Error("floor: EOF");
        need -= n;
      }
    }
    buf = buf.subarray(0, 0);
  } finally {
    conn.close();
  }
}

async function floorLoop(r: Run, kind: Kind): Promise<void> {
  const once = kind === "floor-plain" ? plainFloorOnce : tlsFloorOnce;
  while (!r.stop) {
    const t = performance.now();
    try {
      await once();
      record(r, t);
    } catch (e) {
      await failed(r, e);
    }
  }
}

async function start(kind: Kind, concurrency: number): Promise<void> {
  if (run) throw new Error("a run is in progress");
  const r: Run = {
    stop: false,
    recording: false,
    markedAt: 0,
    total: 0,
    latencies: [],
    failures: 0,
    failureTexts: [],
    loops: [],
  };
  if (kind.startsWith("floor")) {
    for (let i = 0; i < concurrency; i++) r.loops.push(floorLoop(r, kind));
  } else {
    await ensureNodes(concurrency);
    for (let i = 0; i < concurrency; i++) r.loops.push(nodeLoop(r, nodes[i], kind));
  }
  run = r;
}

// ---------------------------------------------------------------------------------------
// Many peers: sessions held (memory) and all at once (storm)

const held: Session[] = [];

async function holdSessions(count: number, concurrency: number) {
  await ensureNodes(count);
  const t0 = wallMs();
  let next = 0;
  let ok = 0;
  const errors: string[] = [];
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) {
      const node = nodes[next++];
      try {
        held.push(await node.connect(LISTENER_ID));
        ok++;
      } catch (e) {
        if (errors.length < 5) errors.push(e instanceof Error ? e.message : String(e));
      }
    }
  }));
  return { ok, failed: count - ok, errors, elapsedMs: wallMs() - t0 };
}

async function storm(count: number) {
  await ensureNodes(count);
  const t0 = wallMs();
  let last = 0;
  const errors: string[] = [];
  const results = await Promise.allSettled(
    nodes.slice(0, count).map(async (node) => {
      const s = await node.connect(LISTENER_ID);
      last = Math.max(last, wallMs());
      held.push(s);
    }),
  );
  let ok = 0;
  for (const r of results) {
    if (r.status === "fulfilled") ok++;
    else if (errors.length < 5) errors.push(String(r.reason?.message ?? r.reason));
  }
  return { ok, failed: count - ok, errors, startedAt: t0, lastSessionAt: last };
}

announce({ event: "ready", pid: Deno.pid });

await serveCommands(async (c: Command) => {
  switch (c.cmd) {
    case "proc":
      return { ...meter.snapshot(c.reset === true) };
    case "ensure":
      await ensureNodes(c.count as number);
      return { nodes: nodes.length };
    case "start":
      await start(c.kind as Kind, c.concurrency as number);
      return {};
    case "mark": {
      const r = run!;
      r.latencies = [];
      r.failures = 0;
      r.recording = true;
      r.markedAt = performance.now();
      return {};
    }
    case "stop": {
      const r = run!;
      r.stop = true;
      await Promise.all(r.loops);
      const elapsedMs = performance.now() - r.markedAt;
      run = undefined;
      return {
        elapsedMs,
        completed: r.latencies.length,
        total: r.total,
        failures: r.failures,
        failureTexts: r.failureTexts,
        latency: summarise(r.latencies),
      };
    }
    case "hold":
      return await holdSessions(c.count as number, c.concurrency as number);
    case "storm":
      return await storm(c.count as number);
    case "exit":
      for (const s of held) s.close();
      await Promise.all(nodes.map((n) => n.close()));
      setTimeout(() => Deno.exit(0), 50);
      return {};
    default:
      throw new Error(`unknown command ${c.cmd}`);
  }
});
