/**
 * Shared by the handshake benchmark's orchestrator (`bench/handshake.ts`) and its child
 * processes (`bench/_listener.ts`, `bench/_dialer.ts`): the JSON-lines control channel, the
 * node tables, the TLS fixtures, wall-clock time and percentiles.
 * @module
 */
import process from "node:process";
import type { NodeConfig, NodeEntry, TlsConfig } from "../lib/node/config.ts";

/** The listening node's id; every dialer node has a higher id (so the listener is TLS server). */
export const LISTENER_ID = 1;
/** The listening node's host name in every table. */
export const LISTENER_HOST = "node-1";

/** Host name of dialer node `id`. */
export function peerHost(id: number): string {
  return `peer-${id}`;
}

const FIXTURES = new URL("../tests/fixtures/tls/", import.meta.url);

/** A PEM fixture's text. */
export function fixtureText(name: string): string {
  return Deno.readTextFileSync(new URL(name, FIXTURES));
}

/** TLS material of fixture `node-N` trusting the fixture CA. */
export function tlsOf(name: string): TlsConfig {
  return {
    cert: fixtureText(`${name}.pem`),
    key: fixtureText(`${name}.key`),
    ca: fixtureText("ca.pem"),
  };
}

/** The benchmark's modes: what a node's config says about encryption. */
export type Mode = "plain" | "tls";

/**
 * The listener's config: node 1 on 127.0.0.1 (port 0), with the dialer nodes `from` ..
 * `from + count - 1` in its table (no address: the listener never dials them).
 */
export function listenerConfig(mode: Mode, from: number, count: number): NodeConfig {
  const nodes: NodeEntry[] = [{ nodeId: LISTENER_ID, host: LISTENER_HOST, port: 1 }];
  for (let id = from; id < from + count; id++) {
    nodes.push({ nodeId: id, host: peerHost(id), port: 1 });
  }
  return {
    nodeId: LISTENER_ID,
    listen: { host: "127.0.0.1", port: 0 },
    nodes,
    ...(mode === "tls" ? { encryption: "required", tls: tlsOf("node-1") } : {}),
  };
}

/** A dialer node's config: itself (not listening) and the listener at `port`. */
export function dialerConfig(
  mode: Mode,
  id: number,
  port: number,
  tls: TlsConfig | undefined,
  handshakeTimeoutMs?: number,
): NodeConfig {
  return {
    nodeId: id,
    nodes: [
      { nodeId: id, host: peerHost(id), port: 1 },
      { nodeId: LISTENER_ID, host: LISTENER_HOST, port, address: "127.0.0.1" },
    ],
    ...(mode === "tls" ? { encryption: "required", tls } : {}),
    ...(handshakeTimeoutMs ? { handshakeTimeoutMs } : {}),
  };
}

/** Milliseconds since the epoch with sub-millisecond precision, comparable across processes. */
export function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

/** The `p`-th percentile (0..100) of ascending `sorted`, nearest rank; NaN when empty. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** Latency summary of a sample (ms). */
export interface LatencySummary {
  readonly n: number;
  readonly p50: number;
  readonly p99: number;
  readonly mean: number;
  readonly min: number;
  readonly max: number;
}

/** Summarises latencies in ms. */
export function summarise(samples: readonly number[]): LatencySummary {
  const sorted = Float64Array.from(samples).sort();
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    n: sorted.length,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    mean: sorted.length ? sum / sorted.length : NaN,
    min: sorted.length ? sorted[0] : NaN,
    max: sorted.length ? sorted[sorted.length - 1] : NaN,
  };
}

/** Splits a byte stream into text lines. */
export async function* lines(readable: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let rest = "";
  for await (const chunk of readable) {
    rest += decoder.decode(chunk, { stream: true });
    let i;
    while ((i = rest.indexOf("\n")) >= 0) {
      yield rest.slice(0, i);
      rest = rest.slice(i + 1);
    }
  }
  if (rest) yield rest;
}

/** A command to a child process. */
export interface Command {
  readonly id: number;
  readonly cmd: string;
  readonly [key: string]: unknown;
}

/**
 * The child side of the control channel: commands arrive as JSON lines on stdin, each answer
 * is one JSON line on stdout carrying the command's id. Nothing else may go to stdout.
 */
export async function serveCommands(
  handle: (c: Command) => Promise<Record<string, unknown>>,
): Promise<void> {
  const out = (v: unknown) => console.log(JSON.stringify(v, bigintText));
  for await (const line of lines(Deno.stdin.readable)) {
    if (!line.trim()) continue;
    const c = JSON.parse(line) as Command;
    handle(c).then(
      (r) => out({ id: c.id, ok: true, ...r }),
      (e) =>
        out({ id: c.id, ok: false, error: e instanceof Error ? e.stack ?? e.message : String(e) }),
    );
    if (c.cmd === "exit") break;
  }
}

/** Prints the child's unsolicited first line (its ports, pid). */
export function announce(v: Record<string, unknown>): void {
  console.log(JSON.stringify({ id: 0, ok: true, ...v }, bigintText));
}

function bigintText(_k: string, v: unknown): unknown {
  return typeof v === "bigint" ? v.toString() : v;
}

/** CPU and memory of this process, as a child reports them to the orchestrator. */
export interface ProcSample {
  /** User + system CPU time of the whole process (all threads), ms. */
  readonly cpuMs: number;
  /** Current resident set size, MB. */
  readonly rssMB: number;
  /** Highest RSS sampled (every 10 ms) since the last reset, MB. */
  readonly peakMB: number;
  /** The kernel's peak RSS since the process started, MB. */
  readonly maxRssMB: number;
}

/**
 * Samples this process's RSS every 10 ms to keep a resettable peak (reading or resetting the
 * kernel's own, /proc/self, needs --allow-all in Deno), and reads CPU time with getrusage.
 */
export class ProcessMeter {
  #peak = 0;

  constructor() {
    const timer = setInterval(() => this.#sample(), 10);
    Deno.unrefTimer(timer);
  }

  #sample(): number {
    const rss = Deno.memoryUsage().rss;
    if (rss > this.#peak) this.#peak = rss;
    return rss;
  }

  /** The current figures; `reset` restarts the peak from now. */
  snapshot(reset = false): ProcSample {
    const rss = this.#sample();
    const cpu = process.cpuUsage();
    const sample = {
      cpuMs: (cpu.user + cpu.system) / 1000,
      rssMB: rss / MB,
      peakMB: this.#peak / MB,
      maxRssMB: process.resourceUsage().maxRSS / 1024,
    };
    if (reset) this.#peak = rss;
    return sample;
  }
}

const MB = 1024 * 1024;
