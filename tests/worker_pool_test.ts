/**
 * The coordinator's handshake worker pool: deadlines, dying workers, limits and FIFO order,
 * poison, closing, reuse, log forwarding, and measurements (printed, not asserted).
 */
import assert from "node:assert/strict";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import { StreamTransport } from "../lib/handshake/stream_transport.ts";
import type { HandshakeOutcome, OutgoingParams } from "../lib/handshake/types.ts";
import type { PipeEnd } from "../lib/io/memory_pipe.ts";
import { ActorId } from "../lib/wire/actor_id.ts";
import {
  type HandshakeJob,
  HandshakeWorkerPool,
  workerSandboxAvailable,
} from "../lib/worker/host.ts";
import {
  freshVirtualId,
  type MemoryNet,
  testCluster,
  type TestNode,
} from "./_helpers/memory_net.ts";

function show(o: HandshakeOutcome): string {
  return JSON.stringify(o, (k, v) => typeof v === "bigint" ? `${v}` : k === "transport" ? "…" : v);
}

function params(node: TestNode, peer: number): OutgoingParams {
  return {
    peerNodeId: peer,
    peerHostName: node.table.get(peer)?.host ?? "",
    selfVirtualId: freshVirtualId(node.settings.selfNodeId),
    peerVirtualId: ActorId.EMPTY,
    nextPacket: 0n,
  };
}

function outgoing(node: TestNode, peer: number, extra: Partial<HandshakeJob> = {}): HandshakeJob {
  return {
    kind: "outgoing",
    settings: node.settings,
    env: node.env,
    params: params(node, peer),
    ...extra,
  } as HandshakeJob;
}

/** Makes `node` accept connections by running `extra`-adjusted incoming jobs in `pool`. */
function acceptInPool(
  node: TestNode,
  pool: HandshakeWorkerPool,
  extra: (i: number) => Partial<HandshakeJob> = () => ({}),
) {
  const accepted = node.acceptWith(
    (transport, i) =>
      pool.run({
        kind: "incoming",
        settings: node.settings,
        env: node.env,
        transport,
        ...extra(i),
      } as HandshakeJob),
    { remember: false },
  );
  return { accepted, outcomes: node.incoming };
}

/** A peer that accepts and then never reads or writes. */
function silentPeer(net: MemoryNet, key = "mem-2:19001"): PipeEnd[] {
  const ends: PipeEnd[] = [];
  net.listeners.set(key, (end) => ends.push(end));
  return ends;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("a silent peer hits the coordinator's deadline: TRANSIENT, worker replaced, connection closed", async () => {
  await using pool = new HandshakeWorkerPool({ size: 1 });
  await pool.warm();
  const { net, nodes } = testCluster({ 1: {}, 2: {} });
  const peer = silentPeer(net);
  const t0 = performance.now();
  const o = await pool.run(outgoing(nodes[1], 2, { deadlineMs: 300 }));
  const elapsed = performance.now() - t0;
  assert.equal(o.kind, "failed", show(o));
  if (o.kind !== "failed") return;
  assert.equal(o.peerNodeId, 2);
  assert.equal(o.failure.class, "transient");
  assert.equal(o.failure.explanation, "Handshake timed out, State# ReceiveResponse");
  assert.equal(
    o.failure.message,
    "outgoing handshake Peer# host-2(mem-2:19001) Handshake timed out, State# ReceiveResponse",
  );
  // Not a speed check: it ended at the job's 300 ms deadline, not early and not at the 3 s
  // default one (the bound sits halfway so a loaded machine cannot make it fail).
  assert.ok(elapsed >= 290 && elapsed < 1650, `elapsed ${elapsed}`);
  // The worker is gone and a fresh one took its place.
  assert.deepEqual([pool.stats.workersTerminated, pool.stats.workersStarted], [1, 2]);
  assert.equal(pool.running, 0);
  // The connection is closed: the peer reads our initial packet, then the end of the stream.
  assert.equal(net.transports[0].closed, true);
  const reader = peer[0].readable.getReader();
  let received = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    received += value.length;
  }
  assert.equal(received, 52);
  // The replacement works.
  const { nodes: fresh } = testCluster({ 1: {}, 2: {} });
  assert.equal((await pool.run(outgoing(fresh[1], 2))).kind, "done");
});

Deno.test("the deadline of an incoming handshake names the state, and closes the accepted connection", async () => {
  await using pool = new HandshakeWorkerPool({ size: 1 });
  await pool.warm();
  const { nodes } = testCluster({ 2: {} });
  const [, b] = (await import("../lib/io/memory_pipe.ts")).memoryPipe();
  const transport = new StreamTransport({ ...b, peerAddress: "10.0.0.1:4567" });
  const o = await pool.run({
    kind: "incoming",
    settings: nodes[2].settings,
    env: nodes[2].env,
    transport,
    deadlineMs: 200,
  });
  assert.equal(o.kind, "failed", show(o));
  if (o.kind !== "failed") return;
  assert.equal(o.peerNodeId, 0);
  assert.equal(
    o.failure.message,
    "incoming handshake Peer# <unknown>(10.0.0.1:4567) Handshake timed out, State# ReceiveRequest",
  );
  assert.equal(transport.closed, true);
});

for (const fault of ["throw", "reject"] as const) {
  Deno.test(`a worker that ${fault}s fails only its own handshake; a concurrent one succeeds`, async () => {
    await using pool = new HandshakeWorkerPool({ size: 2 });
    await pool.warm();
    const { net, nodes } = testCluster({ 1: {}, 2: {}, 3: {} });
    const [bad, good] = await Promise.all([
      pool.run(outgoing(nodes[1], 3, { fault })),
      pool.run(outgoing(nodes[1], 2)),
    ]);
    assert.equal(good.kind, "done", show(good));
    assert.equal(bad.kind, "failed", show(bad));
    if (bad.kind !== "failed") return;
    assert.equal(bad.failure.class, "transient");
    assert.match(
      bad.failure.explanation,
      /^internal error: handshake worker died: .*injected fault/,
    );
    assert.equal(pool.stats.workersTerminated, 1);
    // Nothing the failed job opened stays open (it opened nothing here); the good session does.
    assert.ok(net.transports.every((t) => t.closed === false));
    // The pool is whole again.
    const again = await Promise.all([
      pool.run(outgoing(nodes[1], 2)),
      pool.run(outgoing(nodes[1], 3)),
    ]);
    assert.deepEqual(again.map((o) => o.kind), ["done", "done"]);
  });
}

Deno.test("pool size 2, five concurrent outgoing jobs: all complete, at most 2 at once, FIFO", async () => {
  await using pool = new HandshakeWorkerPool({ size: 2 });
  const { nodes } = testCluster({ 1: {}, 2: {} });
  // Seen from the peer: how many of our handshakes are at their new-session step at once.
  let inFlight = 0;
  let maxInFlight = 0;
  nodes[2].newSessionDecision = async () => {
    maxInFlight = Math.max(maxInFlight, ++inFlight);
    await sleep(30); // keep each handshake busy long enough to overlap
    inFlight--;
    return { kind: "ok", selfVirtualId: freshVirtualId(2) };
  };
  const started: number[] = [];
  let maxRunning = 0;
  const jobs = [0, 1, 2, 3, 4].map((i) =>
    pool.run(outgoing(nodes[1], 2, {
      onStart: () => {
        started.push(i);
        maxRunning = Math.max(maxRunning, pool.running);
      },
    }))
  );
  assert.equal(pool.queued, 3);
  const outcomes = await Promise.all(jobs);
  assert.deepEqual(outcomes.map((o) => o.kind), ["done", "done", "done", "done", "done"]);
  assert.deepEqual(started, [0, 1, 2, 3, 4]);
  assert.equal(maxRunning, 2);
  assert.equal(maxInFlight, 2);
  assert.equal(pool.queued, 0);
  // Clean ends: the two warm workers did all the work.
  assert.equal(pool.stats.workersStarted, 2);
});

Deno.test("incoming handshakes have their own limit and FIFO queue", async () => {
  await using pool = new HandshakeWorkerPool({ size: 1, incomingLimit: 2 });
  const { nodes } = testCluster({ 1: {}, 2: {} });
  nodes[2].newSessionDecision = async () => {
    await sleep(30);
    return { kind: "ok", selfVirtualId: freshVirtualId(2) };
  };
  const started: number[] = [];
  let maxRunning = 0;
  const acceptor = acceptInPool(nodes[2], pool, (i) => ({
    onStart: () => {
      started.push(i);
      maxRunning = Math.max(maxRunning, pool.running);
    },
  }));
  const dials = await Promise.all([0, 1, 2, 3, 4].map(() => nodes[1].dial(2)));
  const incoming = await Promise.all(acceptor.outcomes);
  assert.deepEqual(dials.map((o) => o.kind), ["done", "done", "done", "done", "done"]);
  assert.deepEqual(incoming.map((o) => o.kind), ["done", "done", "done", "done", "done"]);
  assert.deepEqual(started, [0, 1, 2, 3, 4]);
  assert.equal(maxRunning, 2);
});

Deno.test("poison: a running job ends silently with its worker and connections; a queued one never starts", async () => {
  await using pool = new HandshakeWorkerPool({ size: 1 });
  const { net, nodes } = testCluster({ 1: {}, 2: {} });
  silentPeer(net);
  const first = new AbortController();
  const second = new AbortController();
  let secondStarted = false;
  const a = pool.run(outgoing(nodes[1], 2, { signal: first.signal }));
  const b = pool.run(outgoing(nodes[1], 2, {
    signal: second.signal,
    onStart: () => secondStarted = true,
  }));
  second.abort();
  assert.deepEqual(await b, { kind: "silent", peerNodeId: 2, reason: "poisoned" });
  while (net.transports.length === 0) await sleep(5);
  first.abort();
  assert.deepEqual(await a, { kind: "silent", peerNodeId: 2, reason: "poisoned" });
  assert.equal(secondStarted, false);
  assert.equal(net.transports[0].closed, true);
  assert.equal(pool.stats.workersTerminated, 1);
});

Deno.test("close() ends running and queued jobs as TRANSIENT and terminates every worker", async () => {
  const pool = new HandshakeWorkerPool({ size: 1 });
  const { net, nodes } = testCluster({ 1: {}, 2: {} });
  silentPeer(net);
  const running = pool.run(outgoing(nodes[1], 2));
  const queued = pool.run(outgoing(nodes[1], 2));
  while (net.transports.length === 0) await sleep(5);
  await pool.close();
  for (const o of await Promise.all([running, queued])) {
    assert.equal(o.kind, "failed");
    if (o.kind === "failed") {
      assert.equal(o.failure.class, "transient");
      assert.equal(o.failure.explanation, "handshake worker pool closed");
    }
  }
  assert.equal(net.transports[0].closed, true);
  assert.equal(pool.stats.workersTerminated, pool.stats.workersStarted);
  const late = await pool.run(outgoing(nodes[1], 2));
  assert.equal(late.kind, "failed");
});

// Detection reads /proc/self/cmdline, which Deno lets only --allow-all read; under -P, run
// `IC_TEST_WORKER_SANDBOX=1 deno test -P --unstable-worker-options` to cover this path.
const sandboxFlagged = workerSandboxAvailable() || Deno.env.get("IC_TEST_WORKER_SANDBOX") === "1";

Deno.test({
  name: "with --unstable-worker-options the workers run with no permissions, and still work",
  ignore: !sandboxFlagged,
  async fn() {
    await using pool = new HandshakeWorkerPool({ size: 1, sandbox: true });
    assert.equal(pool.sandboxed, true);
    const { nodes } = testCluster({ 1: {}, 2: {} });
    assert.equal((await pool.run(outgoing(nodes[1], 2))).kind, "done");
  },
});

Deno.test("reuse after clean ends vs. discard after every handshake", async () => {
  const { nodes } = testCluster({ 1: {}, 2: {} });
  {
    await using pool = new HandshakeWorkerPool({ size: 1 });
    for (let i = 0; i < 3; i++) assert.equal((await pool.run(outgoing(nodes[1], 2))).kind, "done");
    assert.deepEqual(
      [pool.stats.workersStarted, pool.stats.workersReused, pool.stats.workersTerminated],
      [1, 3, 0],
    );
  }
  {
    await using pool = new HandshakeWorkerPool({ size: 1, reuseWorkers: false });
    for (let i = 0; i < 3; i++) assert.equal((await pool.run(outgoing(nodes[1], 2))).kind, "done");
    assert.deepEqual(
      [pool.stats.workersStarted, pool.stats.workersReused, pool.stats.workersTerminated],
      [4, 0, 3],
    );
  }
});

Deno.test("worker log records reach the LogTape sinks configured in main, at main's levels", async () => {
  const records: LogRecord[] = [];
  const setup = (lowestLevel: "debug" | "info") =>
    configure({
      reset: true,
      sinks: { memory: (r: LogRecord) => records.push(r) },
      loggers: [
        { category: ["ic-handshake"], sinks: ["memory"], lowestLevel },
        { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
      ],
    });
  const text = (r: LogRecord) => r.message.map(String).join("");
  try {
    await setup("debug");
    await using pool = new HandshakeWorkerPool({ size: 1 });
    const { nodes } = testCluster({ 1: {}, 2: {} });
    assert.equal((await pool.run(outgoing(nodes[1], 2))).kind, "done");
    // ICH01 is logged by the outgoing side only, and that side ran in the worker.
    const ich01 = records.find((r) => text(r).includes("ICH01 starting outgoing handshake"));
    assert.ok(ich01, records.map(text).join("\n"));
    assert.deepEqual(ich01.category, ["ic-handshake", "handshake"]);
    assert.equal(ich01.level, "debug");
    assert.equal(ich01.properties.peerNodeId, 2);
    assert.equal(text(ich01), "Handshake [node 2] ICH01 starting outgoing handshake");

    // At "info", the worker sends no debug records, but still its info ones.
    records.length = 0;
    await setup("info");
    assert.equal((await pool.run(outgoing(nodes[1], 2))).kind, "done");
    assert.ok(!records.some((r) => r.level === "debug"));
    assert.ok(
      records.some((r) =>
        text(r).includes("ICH04 handshake succeeded") &&
        r.properties.peerNodeId === 2
      ),
    );

    // The coordinator's own records (a deadline) use the same LogTape.
    records.length = 0;
    const { net: net2, nodes: n2 } = testCluster({ 1: {}, 2: {} });
    silentPeer(net2);
    await pool.run(outgoing(n2[1], 2, { deadlineMs: 100 }));
    assert.ok(
      records.some((r) =>
        r.category.join(".") === "ic-handshake.worker" && text(r).includes("timed out")
      ),
    );
  } finally {
    await reset();
  }
});

// -----------------------------------------------------------------------------------------
// Measurements: printed for the report, never asserted.

function stats(samples: readonly number[]): string {
  const s = [...samples].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / s.length;
  const p = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))];
  return `mean ${mean.toFixed(2)} ms, p50 ${p(0.5).toFixed(2)}, p90 ${
    p(0.9).toFixed(2)
  } (n=${s.length})`;
}

async function timeSequential(n: number, one: () => Promise<HandshakeOutcome>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const o = await one();
    out.push(performance.now() - t0);
    if (o.kind !== "done") throw new Error(show(o));
  }
  return out;
}

Deno.test("measure: worker start-up, handshake in main vs. in a warm worker, reuse vs. discard", async () => {
  const lines: string[] = [];
  const { nodes } = testCluster({ 1: {}, 2: {} });
  const inMain = () => nodes[1].dial(2);
  await timeSequential(20, inMain); // warm up JIT
  lines.push(`handshake in main (both sides):        ${stats(await timeSequential(200, inMain))}`);

  {
    await using pool = new HandshakeWorkerPool({ size: 4 });
    await pool.warm();
    lines.push(`worker start-up (new Worker → ready):  ${stats(pool.stats.startupMs)}`);
    const viaWorker = () => pool.run(outgoing(nodes[1], 2));
    await timeSequential(20, viaWorker);
    lines.push(
      `outgoing in a warm reused worker:      ${stats(await timeSequential(200, viaWorker))}`,
    );
  }
  {
    await using pool = new HandshakeWorkerPool({ size: 4, reuseWorkers: false });
    await pool.warm();
    const viaWorker = () => pool.run(outgoing(nodes[1], 2));
    const samples = await timeSequential(30, viaWorker);
    lines.push(`outgoing, discard after use, 1 by 1:   ${stats(samples)}`);
    lines.push(`  start-ups of replacements:           ${stats(pool.stats.startupMs.slice(4))}`);
  }
  for (const reuseWorkers of [true, false]) {
    await using pool = new HandshakeWorkerPool({ size: 4, reuseWorkers });
    await pool.warm();
    const n = 40;
    const t0 = performance.now();
    const all = await Promise.all(Array.from({ length: n }, () => pool.run(outgoing(nodes[1], 2))));
    const total = performance.now() - t0;
    if (all.some((o) => o.kind !== "done")) throw new Error("a measured handshake failed");
    lines.push(
      `${n} at once, size 4, ${reuseWorkers ? "reuse  " : "discard"}:     ${
        (total / n).toFixed(2)
      } ms per handshake, ${
        total.toFixed(0)
      } ms total, workers started ${pool.stats.workersStarted}`,
    );
  }
  console.log("\n" + lines.join("\n"));
});
