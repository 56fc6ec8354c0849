/**
 * The handshake benchmark (issue 6): two node processes on loopback, a listener and a dialer,
 * running full handshakes to completion (both sides report success) against the floors of
 * the same work measured in the same run.
 *
 * ```sh
 * deno task bench:handshake            # full run, about two minutes
 * deno task bench:handshake --quick    # under 30 seconds
 * ```
 *
 * Cases, each at concurrency 1, 16 and 64 (C dialer nodes, each in a closed loop):
 * - `plain`: new-session handshake, no encryption (`connect`, then `close`, again);
 * - `tls`: new-session handshake with mutual TLS kept on (encryption "required");
 * - `continuation`: `session.resume()` again and again on a live session;
 * - `floor-plain`: `Deno.connect` + 3 round trips with the handshake's byte sizes;
 * - `floor-tls`: a bare `node:tls` mutual-TLS handshake with the same certificates.
 *
 * Then: memory (a node holding 1,000 live sessions against an idle node), storm (1,000 peers
 * dialing at once) and start (process start to the CLI's "listening" line, warm pool).
 *
 * Per case: p50 and p99 latency (dialer side, call to session), handshakes per second,
 * CPU ms per handshake (both processes, user + system, as each child reports it), the peak
 * RSS of each process (sampled every 10 ms) and the ratio to the floor. Handshakes count
 * only once the listener reported as many successes as the dialer (`confirmedByListener`).
 * stdout carries a Markdown report (table, memory, storm, start, targets); the last line is
 * one JSON object for comparing commits. Progress goes to stderr.
 *
 * Options: `--quick`; `--workers N` (the listener's pool, default the node default 4; 0 runs
 * its handshakes inline, to see what the workers cost);
 * `--dialer-workers N` (each dialer node's pool, 0 = handshakes inline; default 1);
 * `--concurrency 1,16,64`; `--cases plain,tls,continuation`; `--seconds S` per case;
 * `--peers N` (memory and storm, default 1000); `--storm-queue N` (the storm listener's
 * `maxQueuedHandshakes`; default the node's); `--skip floors,memory,storm,start`;
 * `--floor-rtts N` (round trips of the plain floor, default 3);
 * `--profile DIR` (CPU profiles of both processes, every isolate, with `--cpu-prof`;
 * summarise them with `deno run --allow-read bench/profile_summary.ts DIR/plain-listener`).
 * @module
 */
import { parseArgs } from "node:util";
import {
  encodeHandshakeReply,
  encodeHandshakeRequest,
  type HandshakeRequest,
} from "../lib/wire/messages.ts";
import { EXBLOCK_HEADER_SIZE } from "../lib/wire/exblock.ts";
import { INITIAL_PACKET_SIZE } from "../lib/wire/initial_packet.ts";
import { VirtualIdAllocator } from "../lib/proxy/virtual_id.ts";
import os from "node:os";
import {
  lines,
  LISTENER_HOST,
  LISTENER_ID,
  type Mode,
  peerHost,
  type ProcSample,
  summarise,
} from "./_common.ts";
import type { ListenerSpec } from "./_listener.ts";
import type { DialerSpec } from "./_dialer.ts";

const REPO = new URL("../", import.meta.url);

const opts = parseArgs({
  args: Deno.args,
  options: {
    quick: { type: "boolean", default: false },
    workers: { type: "string", default: "4" },
    "dialer-workers": { type: "string", default: "1" },
    concurrency: { type: "string", default: "1,16,64" },
    cases: { type: "string", default: "plain,tls,continuation" },
    seconds: { type: "string" },
    peers: { type: "string", default: "1000" },
    skip: { type: "string", default: "" },
    profile: { type: "string" },
    "floor-rtts": { type: "string", default: "3" },
    "storm-queue": { type: "string" },
  },
}).values;

const quick = opts.quick!;
const listenerWorkers = Number(opts.workers);
const dialerWorkers = Number(opts["dialer-workers"]);
const concurrencies = opts.concurrency!.split(",").map(Number);
const cases = new Set(opts.cases!.split(","));
const seconds = Number(opts.seconds ?? (quick ? 0.5 : 3));
const warmupMs = quick ? 150 : 800;
const peers = Number(opts.peers);
const skip = new Set(opts.skip!.split(",").filter(Boolean));
const floorRtts = Number(opts["floor-rtts"]);
const stormQueue = opts["storm-queue"] === undefined ? undefined : Number(opts["storm-queue"]);
const maxConcurrency = Math.max(...concurrencies);
const DIALER_FROM = 101;

function progress(text: string): void {
  console.error(`[bench] ${text}`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------
// CPU and memory of a child, as it reports them

async function proc(child: Child, reset = false): Promise<ProcSample> {
  return await child.call("proc", { reset }) as unknown as ProcSample;
}

// ---------------------------------------------------------------------------------------
// Children

class Child {
  readonly process: Deno.ChildProcess;
  readonly #lines: AsyncGenerator<string>;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #pending = new Map<number, (v: Record<string, unknown>) => void>();
  #nextId = 1;
  first!: Record<string, unknown>;
  pid = 0;

  constructor(readonly name: string, script: string, spec: unknown) {
    const flags = [
      "--allow-net=127.0.0.1,localhost",
      "--allow-read",
      "--allow-env",
      "--allow-sys",
    ];
    if (opts.profile) flags.push("--cpu-prof", `--cpu-prof-dir=${opts.profile}/${name}`);
    this.process = new Deno.Command(Deno.execPath(), {
      args: ["run", ...flags, new URL(script, import.meta.url).pathname, JSON.stringify(spec)],
      cwd: REPO.pathname,
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#lines = lines(this.process.stdout);
    this.#writer = this.process.stdin.getWriter();
  }

  async started(): Promise<this> {
    const { value, done } = await this.#lines.next();
    if (done) throw new Error(`${this.name} exited before it started`);
    this.first = JSON.parse(value);
    this.pid = this.first.pid as number;
    (async () => {
      for await (const line of this.#lines) {
        const msg = JSON.parse(line) as Record<string, unknown>;
        this.#pending.get(msg.id as number)?.(msg);
        this.#pending.delete(msg.id as number);
      }
    })();
    return this;
  }

  async call(cmd: string, args: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const id = this.#nextId++;
    const answer = new Promise<Record<string, unknown>>((r) => this.#pending.set(id, r));
    await this.#writer.write(new TextEncoder().encode(JSON.stringify({ id, cmd, ...args }) + "\n"));
    const msg = await answer;
    if (!msg.ok) throw new Error(`${this.name} ${cmd}: ${msg.error}`);
    return msg;
  }

  async exit(): Promise<void> {
    try {
      await Promise.race([this.call("exit"), sleep(3000)]);
    } catch {
      // gone already
    }
    const timer = setTimeout(() => {
      try {
        this.process.kill("SIGKILL");
      } catch {
        // exited
      }
    }, 3000);
    await this.process.status;
    clearTimeout(timer);
  }
}

async function listener(name: string, spec: ListenerSpec): Promise<Child> {
  return await new Child(name, "./_listener.ts", spec).started();
}

async function dialer(name: string, spec: DialerSpec): Promise<Child> {
  return await new Child(name, "./_dialer.ts", spec).started();
}

// ---------------------------------------------------------------------------------------
// The handshake's byte sizes, for the plain floor

function handshakeSizes(): [number, number] {
  const ids = new VirtualIdAllocator();
  const self = ids.next(DIALER_FROM);
  const pid = BigInt(Deno.pid);
  const startTime = BigInt(Math.round(performance.timeOrigin * 1000));
  const request: HandshakeRequest = {
    Protocol: 2n,
    ProgramPID: pid,
    ProgramStartTime: startTime,
    Serial: self.localId,
    ReceiverNodeId: LISTENER_ID,
    SenderActorId: self.toString(),
    SenderHostName: peerHost(DIALER_FROM),
    ReceiverHostName: LISTENER_HOST,
    ClusterUUIDs: { ClusterUUID: "", AcceptUUID: [] },
    RequireEncryption: false,
    RequestModernFrame: true,
    RequestAuthOnly: false,
  };
  const peer = ids.next(LISTENER_ID);
  const reply = {
    Success: {
      Protocol: 2n,
      ProgramPID: pid,
      ProgramStartTime: startTime,
      Serial: peer.localId,
      SenderActorId: peer.toString(),
      ClusterUUIDs: { ClusterUUID: "", AcceptUUID: [] },
      StartEncryption: false,
      UseModernFrame: true,
      AuthOnly: false,
    },
  };
  return [
    EXBLOCK_HEADER_SIZE + encodeHandshakeRequest(request).length,
    EXBLOCK_HEADER_SIZE + encodeHandshakeReply(reply).length,
  ];
}

const [requestSize, replySize] = handshakeSizes();
const allRounds: [number, number][] = [
  [INITIAL_PACKET_SIZE, INITIAL_PACKET_SIZE],
  [requestSize, replySize],
  [INITIAL_PACKET_SIZE, INITIAL_PACKET_SIZE],
];
const rounds = allRounds.slice(0, floorRtts);

// ---------------------------------------------------------------------------------------
// One case at one concurrency

type Kind = "plain" | "tls" | "continuation" | "floor-plain" | "floor-tls";

interface CaseResult {
  case: Kind;
  concurrency: number;
  p50Ms: number;
  p99Ms: number;
  perSec: number;
  cpuMsPerHandshake: number;
  listenerCpuMsPerHandshake: number;
  dialerCpuMsPerHandshake: number;
  listenerPeakRssMB: number;
  dialerPeakRssMB: number;
  completed: number;
  failures: number;
  confirmedByListener: boolean;
  floorPerSec?: number;
  floorP50Ms?: number;
  ratioToFloor?: number;
  p50RatioToFloor?: number;
}

const COUNTER: Record<Kind, string> = {
  plain: "fresh",
  tls: "fresh",
  continuation: "continuation",
  "floor-plain": "floorPlain",
  "floor-tls": "floorTls",
};

async function measure(l: Child, d: Child, kind: Kind, concurrency: number): Promise<CaseResult> {
  const counter = COUNTER[kind];
  if (!kind.startsWith("floor")) await d.call("ensure", { count: concurrency });
  const base = (await l.call("stats"))[counter] as number;
  await d.call("start", { kind, concurrency });
  await sleep(warmupMs);
  const [l0, d0] = await Promise.all([proc(l, true), proc(d, true)]);
  await d.call("mark");
  await sleep(seconds * 1000);
  const r = await d.call("stop");
  const [l1, d1] = await Promise.all([proc(l), proc(d)]);
  const total = r.total as number;
  let confirmed = false;
  for (let i = 0; i < 100; i++) {
    const seen = (await l.call("stats"))[counter] as number;
    if (seen - base >= total) {
      confirmed = true;
      break;
    }
    await sleep(20);
  }
  const latency = r.latency as ReturnType<typeof summarise>;
  const completed = r.completed as number;
  const n = Math.max(1, completed);
  const result: CaseResult = {
    case: kind,
    concurrency,
    p50Ms: round(latency.p50),
    p99Ms: round(latency.p99),
    perSec: round(completed / ((r.elapsedMs as number) / 1000), 0),
    cpuMsPerHandshake: round((l1.cpuMs - l0.cpuMs + d1.cpuMs - d0.cpuMs) / n),
    listenerCpuMsPerHandshake: round((l1.cpuMs - l0.cpuMs) / n),
    dialerCpuMsPerHandshake: round((d1.cpuMs - d0.cpuMs) / n),
    listenerPeakRssMB: round(l1.peakMB, 1),
    dialerPeakRssMB: round(d1.peakMB, 1),
    completed,
    failures: r.failures as number,
    confirmedByListener: confirmed,
  };
  const texts = r.failureTexts as string[];
  if (texts.length) progress(`  ${kind} c=${concurrency} failures: ${texts.join(" | ")}`);
  progress(
    `  ${kind.padEnd(12)} c=${
      String(concurrency).padStart(2)
    }  p50 ${result.p50Ms} ms  p99 ${result.p99Ms} ms  ${result.perSec}/s  cpu ${result.cpuMsPerHandshake} ms`,
  );
  return result;
}

function round(v: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

// ---------------------------------------------------------------------------------------
// Cases

async function pair(mode: Mode, name: string, count: number, withFloors: boolean) {
  const l = await listener(`${name}-listener`, {
    mode,
    from: DIALER_FROM,
    count,
    workers: listenerWorkers,
    rounds: withFloors ? rounds : undefined,
  });
  const d = await dialer(`${name}-dialer`, {
    mode,
    port: l.first.port as number,
    floorPort: l.first.floorPort as number,
    tlsFloorPort: l.first.tlsFloorPort as number,
    rounds,
    from: DIALER_FROM,
    workers: dialerWorkers,
  });
  await d.call("ensure", { count: maxConcurrency });
  return { l, d };
}

async function runCases(): Promise<CaseResult[]> {
  const results: CaseResult[] = [];
  const plainKinds: Kind[] = skip.has("floors") ? [] : ["floor-plain", "floor-tls"];
  if (cases.has("plain")) plainKinds.push("plain");
  if (cases.has("continuation")) plainKinds.push("continuation");
  progress(`plain pair: ${plainKinds.join(", ")}`);
  {
    const { l, d } = await pair("plain", "plain", maxConcurrency, true);
    for (const c of concurrencies) {
      for (const k of plainKinds) results.push(await measure(l, d, k, c));
    }
    await d.exit();
    await l.exit();
  }
  if (cases.has("tls")) {
    progress("TLS pair: tls");
    const { l, d } = await pair("tls", "tls", maxConcurrency, false);
    for (const c of concurrencies) results.push(await measure(l, d, "tls", c));
    await d.exit();
    await l.exit();
  }
  // Ratios: plain and continuation against the plain floor, tls against the TLS floor.
  for (const r of results) {
    if (r.case.startsWith("floor")) continue;
    const floorCase = r.case === "tls" ? "floor-tls" : "floor-plain";
    const floor = results.find((f) => f.case === floorCase && f.concurrency === r.concurrency);
    if (!floor) continue;
    r.floorPerSec = floor.perSec;
    r.floorP50Ms = floor.p50Ms;
    r.ratioToFloor = round(r.perSec / floor.perSec);
    r.p50RatioToFloor = round(r.p50Ms / floor.p50Ms);
  }
  return results;
}

interface MemoryResult {
  sessions: number;
  failed: number;
  idleRssMB: number;
  rssMB: number;
  aboveIdleMB: number;
  peakRssMB: number;
  liveSessions: number;
  liveWorkers: number;
  peakLiveWorkers: number;
  poolSize: number;
  dialerRssMB: number;
}

/**
 * A plain listener for `peers` simulated peers (node ids from 1001) and a dialer process that
 * hosts them, inline, each node ready to dial: the set-up of the memory and storm runs.
 */
async function peerPair(name: string, listenerExtra: Partial<ListenerSpec>) {
  const from = 1001;
  const l = await listener(`${name}-listener`, {
    mode: "plain",
    from,
    count: peers,
    workers: listenerWorkers,
    ...listenerExtra,
  });
  const d = await dialer(`${name}-dialer`, {
    mode: "plain",
    port: l.first.port as number,
    floorPort: 0,
    tlsFloorPort: 0,
    rounds: [],
    from,
    workers: 0,
  });
  await d.call("ensure", { count: peers });
  return { l, d };
}

async function runMemory(): Promise<MemoryResult> {
  progress(`memory: ${peers} live sessions`);
  const { l, d } = await peerPair("memory", {});
  await sleep(quick ? 200 : 500);
  const idle = await proc(l, true);
  const r = await d.call("hold", { count: peers, concurrency: 16 });
  await sleep(quick ? 300 : 1000);
  const stats = await l.call("stats");
  const after = await proc(l);
  const dp = await proc(d);
  await d.exit();
  await l.exit();
  const result: MemoryResult = {
    sessions: r.ok as number,
    failed: r.failed as number,
    idleRssMB: round(idle.rssMB, 1),
    rssMB: round(after.rssMB, 1),
    aboveIdleMB: round(after.rssMB - idle.rssMB, 1),
    peakRssMB: round(after.peakMB, 1),
    liveSessions: stats.liveSessions as number,
    liveWorkers: stats.liveWorkers as number,
    peakLiveWorkers: stats.peakLiveWorkers as number,
    poolSize: listenerWorkers,
    dialerRssMB: round(dp.rssMB, 1),
  };
  if ((r.errors as string[]).length) progress(`  errors: ${(r.errors as string[]).join(" | ")}`);
  progress(`  ${JSON.stringify(result)}`);
  return result;
}

interface StormResult {
  peers: number;
  /** The listener's bound on queued incoming handshakes; null: the node's default. */
  maxQueued: number | null;
  sessions: number;
  failed: number;
  listenerConfirmed: number;
  listenerFailures: number;
  timeToLastSessionMs: number;
  listenerTimeToLastMs: number;
  listenerPeakRssMB: number;
  dialerPeakRssMB: number;
  peakLiveWorkers: number;
}

async function runStorm(): Promise<StormResult> {
  progress(`storm: ${peers} peers at once`);
  const { l, d } = await peerPair("storm", { maxQueued: stormQueue });
  await sleep(quick ? 100 : 300);
  await Promise.all([proc(l, true), proc(d, true)]);
  const r = await d.call("storm", { count: peers });
  let stats = await l.call("stats");
  for (let i = 0; i < 100 && (stats.fresh as number) + (stats.failed as number) < peers; i++) {
    await sleep(50);
    stats = await l.call("stats");
  }
  const [lp, dp] = await Promise.all([proc(l), proc(d)]);
  await d.exit();
  await l.exit();
  const started = r.startedAt as number;
  const result: StormResult = {
    peers,
    maxQueued: stormQueue ?? null,
    sessions: r.ok as number,
    failed: r.failed as number,
    listenerConfirmed: stats.fresh as number,
    listenerFailures: stats.failed as number,
    timeToLastSessionMs: round((r.lastSessionAt as number) - started, 1),
    listenerTimeToLastMs: round((stats.lastOkAt as number) - started, 1),
    listenerPeakRssMB: round(lp.peakMB, 1),
    dialerPeakRssMB: round(dp.peakMB, 1),
    peakLiveWorkers: stats.peakLiveWorkers as number,
  };
  if ((r.errors as string[]).length) progress(`  errors: ${(r.errors as string[]).join(" | ")}`);
  if ((stats.failures as string[]).length) {
    progress(`  listener failures: ${(stats.failures as string[]).join(" | ")}`);
  }
  progress(`  ${JSON.stringify(result)}`);
  return result;
}

interface StartResult {
  runs: number;
  /** `deno task ic listen` (the CLI, its default pool of 4) to its "listening" line. */
  p50Ms: number;
  minMs: number;
  maxMs: number;
  /** `deno eval` printing one line: the runtime's own start. */
  bareDenoP50Ms: number;
  /** The same through `bench/_start.ts`, per pool size: how the pool size weighs. */
  byPoolSize: Record<string, number>;
}

/** Process start to the first stdout line of `args`, `n` times. */
async function timeToFirstLine(args: string[], n: number, until: (line: string) => boolean) {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const child = new Deno.Command(Deno.execPath(), {
      args,
      cwd: REPO.pathname,
      stdout: "piped",
      stderr: "inherit",
      stdin: "null",
    }).spawn();
    for await (const line of lines(child.stdout)) {
      if (until(line)) {
        times.push(performance.now() - t0);
        break;
      }
    }
    try {
      child.kill("SIGTERM");
    } catch {
      // exited
    }
    await child.status;
  }
  return summarise(times);
}

async function runStart(): Promise<StartResult> {
  const runs = quick ? 3 : 7;
  progress(`start: ${runs} runs of "deno task ic listen" to its listening line`);
  const dir = Deno.makeTempDirSync({ prefix: "ic-bench-" });
  const config = `${dir}/node.json`;
  Deno.writeTextFileSync(
    config,
    JSON.stringify({
      nodeId: 1,
      listen: { host: "127.0.0.1", port: 0 },
      nodes: [{ nodeId: 1, host: "node-1", port: 19001 }],
    }),
  );
  try {
    const deno = `${REPO.pathname}deno.json`;
    const cli = await timeToFirstLine(
      ["run", "--config", deno, "-P=cli", "cli.ts", "listen", "--config", config, "--json"],
      runs,
      (line) => line.includes('"listening"'),
    );
    const bare = await timeToFirstLine(
      ["eval", "console.log('up')"],
      runs,
      (line) => line === "up",
    );
    const byPoolSize: Record<string, number> = {};
    for (const size of quick ? [2] : [1, 2, 4]) {
      const s = await timeToFirstLine(
        [
          "run",
          "--allow-net=127.0.0.1",
          "--allow-read",
          "--allow-env",
          "--allow-sys",
          "bench/_start.ts",
          String(size),
        ],
        runs,
        (line) => line.includes('"listening"'),
      );
      byPoolSize[size] = round(s.p50, 1);
    }
    const result = {
      runs,
      p50Ms: round(cli.p50, 1),
      minMs: round(cli.min, 1),
      maxMs: round(cli.max, 1),
      bareDenoP50Ms: round(bare.p50, 1),
      byPoolSize,
    };
    progress(`  ${JSON.stringify(result)}`);
    return result;
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

// ---------------------------------------------------------------------------------------
// Report

function cpuModel(): string {
  try {
    return os.cpus()[0]?.model?.trim() || "unknown";
  } catch {
    return "unknown";
  }
}

function table(results: CaseResult[]): string {
  const head =
    "| case | C | p50 ms | p99 ms | per s | CPU ms/hs | listener peak RSS MB | dialer peak RSS MB | floor per s | floor p50 ms | throughput / floor | p50 / floor |";
  const sep = "|" + "---|".repeat(12);
  const rows = results.map((r) =>
    `| ${r.case} | ${r.concurrency} | ${r.p50Ms.toFixed(2)} | ${
      r.p99Ms.toFixed(2)
    } | ${r.perSec} | ${
      r.cpuMsPerHandshake.toFixed(2)
    } | ${r.listenerPeakRssMB} | ${r.dialerPeakRssMB} | ${r.floorPerSec ?? "-"} | ${
      r.floorP50Ms?.toFixed(2) ?? "-"
    } | ${r.ratioToFloor?.toFixed(2) ?? "-"} | ${r.p50RatioToFloor?.toFixed(2) ?? "-"} |`
  );
  return [head, sep, ...rows].join("\n");
}

interface Target {
  name: string;
  met: boolean;
  measured: string;
}

function targets(
  results: CaseResult[],
  memory: MemoryResult | undefined,
  storm: StormResult | undefined,
  start: StartResult | undefined,
): Target[] {
  const out: Target[] = [];
  const at = (k: Kind, c: number) => results.find((r) => r.case === k && r.concurrency === c);
  const plain1 = at("plain", 1);
  if (plain1?.p50RatioToFloor !== undefined) {
    out.push({
      name: "plain p50 at C=1 <= 3x floor",
      met: plain1.p50RatioToFloor <= 3,
      measured: `${plain1.p50Ms} ms vs floor ${plain1.floorP50Ms} ms = ${plain1.p50RatioToFloor}x`,
    });
  }
  const plain16 = at("plain", 16);
  if (plain16?.ratioToFloor !== undefined) {
    out.push({
      name: "plain throughput at C=16 >= 25% of floor",
      met: plain16.ratioToFloor >= 0.25,
      measured: `${plain16.perSec}/s vs floor ${plain16.floorPerSec}/s = ${
        (plain16.ratioToFloor * 100).toFixed(0)
      }%`,
    });
  }
  const tls16 = at("tls", 16);
  if (tls16?.ratioToFloor !== undefined) {
    out.push({
      name: "TLS throughput at C=16 >= 70% of node:tls floor",
      met: tls16.ratioToFloor >= 0.7,
      measured: `${tls16.perSec}/s vs floor ${tls16.floorPerSec}/s = ${
        (tls16.ratioToFloor * 100).toFixed(0)
      }%`,
    });
    out.push({
      name: "TLS p50 at C=16 <= 1.5x node:tls floor",
      met: tls16.p50RatioToFloor! <= 1.5,
      measured: `${tls16.p50Ms} ms vs floor ${tls16.floorP50Ms} ms = ${tls16.p50RatioToFloor}x`,
    });
  }
  for (const c of concurrencies) {
    const cont = at("continuation", c);
    const plain = at("plain", c);
    if (cont && plain) {
      out.push({
        name: `continuation p50 at C=${c} <= plain new-session p50`,
        met: cont.p50Ms <= plain.p50Ms,
        measured: `${cont.p50Ms} ms vs ${plain.p50Ms} ms`,
      });
    }
  }
  if (memory) {
    out.push({
      name: `${memory.sessions} live sessions: < 150 MB above idle, workers <= pool`,
      met: memory.liveSessions === peers && memory.aboveIdleMB < 150 &&
        memory.peakLiveWorkers <= memory.poolSize,
      measured:
        `${memory.liveSessions} sessions, +${memory.aboveIdleMB} MB (idle ${memory.idleRssMB} MB), peak live workers ${memory.peakLiveWorkers} of pool ${memory.poolSize}`,
    });
  }
  if (storm) {
    out.push({
      name: `storm: ${storm.peers} peers all get sessions, none failed or dropped`,
      met: storm.sessions === storm.peers && storm.failed === 0 &&
        storm.listenerConfirmed === storm.peers && storm.listenerFailures === 0,
      measured:
        `${storm.sessions} sessions (listener ${storm.listenerConfirmed}), ${storm.failed} failed; last session after ${storm.timeToLastSessionMs} ms; peak RSS listener ${storm.listenerPeakRssMB} MB`,
    });
  }
  if (start) {
    out.push({
      name: "start to listening with a warm pool < 150 ms",
      met: start.p50Ms < 150,
      measured: `p50 ${start.p50Ms} ms (bare deno start ${start.bareDenoP50Ms} ms)`,
    });
  }
  return out;
}

const began = performance.now();
const machine = {
  cpu: cpuModel(),
  cores: navigator.hardwareConcurrency,
  deno: Deno.version.deno,
  v8: Deno.version.v8,
  os: `${Deno.build.os} ${Deno.osRelease()}`,
};
progress(
  `${machine.cpu}, ${machine.cores} cores, deno ${machine.deno}; listener pool ${listenerWorkers}, ` +
    `dialer nodes' pools ${dialerWorkers || "inline"}; ${seconds} s per case${
      quick ? " (quick)" : ""
    }`,
);
progress(`floor rounds (client bytes/server bytes): ${rounds.map((r) => r.join("/")).join(", ")}`);

const results = await runCases();
const memory = skip.has("memory") ? undefined : await runMemory();
const storm = skip.has("storm") ? undefined : await runStorm();
const start = skip.has("start") ? undefined : await runStart();
const verdicts = targets(results, memory, storm, start);

console.log(
  `## Handshake benchmark (${machine.cpu}, ${machine.cores} cores, Deno ${machine.deno})\n`,
);
console.log(
  `Listener: ${
    listenerWorkers ? `a pool of ${listenerWorkers} workers` : "handshakes inline (no workers)"
  }; dialer: one node per concurrent handshake, each ${
    dialerWorkers ? `with a ${dialerWorkers}-worker pool` : "running its handshakes inline"
  }; ${seconds} s per case after ${warmupMs} ms warm-up. Plain floor: Deno.connect + ${rounds.length} round trips of ${
    rounds.map((r) => r.join("/")).join(", ")
  } bytes. TLS floor: bare node:tls mutual TLS, same certificates.\n`,
);
console.log(table(results));
if (memory) {
  console.log(
    `\nMemory: ${memory.liveSessions} live sessions; listener RSS ${memory.rssMB} MB vs idle ${memory.idleRssMB} MB (+${memory.aboveIdleMB} MB), peak ${memory.peakRssMB} MB; live workers ${memory.liveWorkers}, peak ${memory.peakLiveWorkers}, pool ${memory.poolSize}.`,
  );
}
if (storm) {
  console.log(
    `Storm: ${storm.peers} peers at once: ${storm.sessions} sessions, ${storm.failed} failed (listener saw ${storm.listenerConfirmed} ok, ${storm.listenerFailures} failed); last session after ${storm.timeToLastSessionMs} ms; peak RSS listener ${storm.listenerPeakRssMB} MB, dialer ${storm.dialerPeakRssMB} MB.`,
  );
}
if (start) {
  console.log(
    `Start: process start to "listening" (deno task ic listen, warm pool of the default size, min(cores, 4)): p50 ${start.p50Ms} ms, max ${start.maxMs} ms over ${start.runs} runs; bare \`deno eval\` start p50 ${start.bareDenoP50Ms} ms; a node alone (bench/_start.ts), by pool size: ${
      Object.entries(start.byPoolSize).map(([k, v]) => `${k}: ${v} ms`).join(", ")
    }.`,
  );
}
console.log("\n| target | met | measured |\n|---|---|---|");
for (const t of verdicts) {
  console.log(`| ${t.name} | ${t.met ? "yes" : "**no**"} | ${t.measured} |`);
}
console.log(`\n(total ${((performance.now() - began) / 1000).toFixed(1)} s)`);
console.log(JSON.stringify({
  bench: "handshake",
  machine,
  options: { quick, listenerWorkers, dialerWorkers, seconds, floorRounds: rounds },
  results,
  memory,
  storm,
  start,
  targets: verdicts,
}));
