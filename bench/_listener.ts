/**
 * The benchmark's listening process: one {@link InterconnectNode} (node 1) with its warm worker
 * pool, plus the two floors' servers: a raw TCP server that answers the same byte sizes as the
 * handshake, and a bare `node:tls` mutual-TLS server with the same certificates. It counts
 * every incoming handshake the node reports (`onHandshake`) and every floor exchange it
 * completed, and answers the orchestrator's `stats` command with the counts, the live workers
 * and the live sessions. Started by `bench/handshake.ts`; not meant to be run by hand.
 *
 * Argument: a JSON {@link ListenerSpec}.
 * @module
 */
import tls from "node:tls";
import type net from "node:net";
import { InterconnectNode, type NodeOptions } from "../lib/node/node.ts";
import {
  announce,
  type Command,
  fixtureText,
  LISTENER_ID,
  listenerConfig,
  type Mode,
  ProcessMeter,
  serveCommands,
  wallMs,
} from "./_common.ts";

/** What the orchestrator asks of this process. */
export interface ListenerSpec {
  readonly mode: Mode;
  /** First dialer node id in the table. */
  readonly from: number;
  /** How many dialer node ids the table holds. */
  readonly count: number;
  /** The node's worker pool size; 0 runs its handshakes inline (no workers). */
  readonly workers: number;
  /** The node's bound on queued handshakes per direction (NodeOptions); default the node's. */
  readonly maxQueued?: number;
  /** Byte sizes of the plain floor's round trips, [client sends, server answers]; none: no floors. */
  readonly rounds?: readonly (readonly [number, number])[];
}

const spec = JSON.parse(Deno.args[0]) as ListenerSpec;
const meter = new ProcessMeter();

// Count the handshake workers the pool starts and terminates: the pool creates them with the
// global `Worker`, looked up at each construction.
let liveWorkers = 0;
let workersStarted = 0;
let peakLiveWorkers = 0;
const BaseWorker = globalThis.Worker;
class CountingWorker extends BaseWorker {
  #ended = false;
  constructor(url: string | URL, options?: WorkerOptions) {
    super(url, options);
    workersStarted++;
    peakLiveWorkers = Math.max(peakLiveWorkers, ++liveWorkers);
  }
  override terminate(): void {
    if (!this.#ended) {
      this.#ended = true;
      liveWorkers--;
    }
    super.terminate();
  }
}
globalThis.Worker = CountingWorker;

const counts = { fresh: 0, continuation: 0, failed: 0, floorPlain: 0, floorTls: 0 };
const failures: string[] = [];
let lastOkAt = 0;

const options: NodeOptions = { workers: spec.workers > 0 ? spec.workers : false };
if (spec.maxQueued !== undefined) {
  (options as Record<string, unknown>).maxQueuedHandshakes = spec.maxQueued;
}
const node = InterconnectNode.start(listenerConfig(spec.mode, spec.from, spec.count), options);
node.onHandshake((e) => {
  if (e.direction !== "incoming") return;
  if (e.ok) {
    if (e.continuation) counts.continuation++;
    else counts.fresh++;
    lastOkAt = wallMs();
  } else {
    counts.failed++;
    if (failures.length < 5) failures.push(`${e.failure}: ${e.explanation}`);
  }
});
await node.ready();

// The plain floor: read and answer the same byte sizes as the handshake, then wait for EOF.
let floorPort = 0;
let floorListener: Deno.TcpListener | undefined;
if (spec.rounds) {
  const rounds = spec.rounds;
  floorListener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  floorPort = floorListener.addr.port;
  const answers = rounds.map(([, n]) => new Uint8Array(n).fill(7));
  (async () => {
    for await (const conn of floorListener!) {
      (async () => {
        conn.setNoDelay(true);
        const reader = conn.readable.getReader({ mode: "byob" });
        const writer = conn.writable.getWriter();
        try {
          let buf = new Uint8Array(4096);
          for (let r = 0; r < rounds.length; r++) {
            let need = rounds[r][0];
            while (need > 0) {
              const { value, done } = await reader.read(buf.subarray(0, Math.min(need, 4096)));
              if (done || !value) throw new Error("floor: EOF");
              need -= value.length;
              buf = new Uint8Array(value.buffer);
            }
            await writer.write(answers[r]);
          }
          counts.floorPlain++;
          await reader.read(buf); // the client's close
        } catch {
          // a client that went away: nothing to count
        } finally {
          try {
            conn.close();
          } catch {
            // already closed
          }
        }
      })();
    }
  })().catch(() => {});
}

// The TLS floor: a bare node:tls server demanding a client certificate from the same CA.
let tlsFloorPort = 0;
let tlsServer: tls.Server | undefined;
if (spec.rounds) {
  tlsServer = tls.createServer({
    cert: fixtureText("node-1.pem"),
    key: fixtureText("node-1.key"),
    ca: fixtureText("ca.pem"),
    requestCert: true,
    rejectUnauthorized: true,
  });
  tlsServer.on("connection", (s: net.Socket) => s.setNoDelay(true));
  tlsServer.on("secureConnection", (s: tls.TLSSocket) => {
    counts.floorTls++;
    s.on("error", () => {});
    s.resume();
  });
  tlsServer.on("tlsClientError", () => {});
  await new Promise<void>((r) => tlsServer!.listen(0, "127.0.0.1", r));
  tlsFloorPort = (tlsServer.address() as { port: number }).port;
}

announce({
  event: "listening",
  pid: Deno.pid,
  nodeId: LISTENER_ID,
  port: node.listenAddress!.port,
  floorPort,
  tlsFloorPort,
});

await serveCommands(async (c: Command) => {
  switch (c.cmd) {
    case "proc":
      return { ...meter.snapshot(c.reset === true) };
    case "stats": {
      let liveSessions = 0;
      for (let id = spec.from; id < spec.from + spec.count; id++) {
        if (node.session(id)) liveSessions++;
      }
      return {
        ...counts,
        failures,
        lastOkAt,
        liveWorkers,
        peakLiveWorkers,
        workersStarted,
        liveSessions,
        rss: Deno.memoryUsage().rss,
      };
    }
    case "exit":
      floorListener?.close();
      tlsServer?.close();
      await node.close();
      setTimeout(() => Deno.exit(0), 50);
      return {};
    default:
      throw new Error(`unknown command ${c.cmd}`);
  }
});
