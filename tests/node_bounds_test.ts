/**
 * The resource bounds of a node, under load: concurrent handshakes per direction (the pool's
 * slots), queued handshakes per direction (`maxQueuedHandshakes`: the rest is refused at once),
 * the deadline (counted from the accept or the dial, queue included), and the per-handshake
 * memory ceiling (no read larger than one 1 MiB ExBlock payload, nothing allocated for an
 * announced size before the bytes arrive).
 */
import assert from "node:assert/strict";
import { ActorId, encodeExBlock, EXBLOCK_HEADER_SIZE, EXBLOCK_MAX_SIZE } from "../lib/wire/mod.ts";
import type { HandshakeOutcome, HandshakeSettings } from "../lib/handshake/types.ts";
import { HandshakeError, InterconnectNode } from "../lib/node/node.ts";
import {
  type HandshakeExecutor,
  InlineExecutor,
  QUEUED_STATE,
  SlotLimiter,
  WorkerExecutor,
} from "../lib/node/executor.ts";
import { concat, exBlockHeader, initialPacket, scriptedPair, V } from "./_helpers/scripted_peer.ts";
import { testCluster } from "./_helpers/memory_net.ts";
import {
  eventually,
  hostileId,
  nextEvent,
  RawPeer,
  recordEvents,
  startNodes,
} from "./_helpers/hostile_peer.ts";

const TIMEOUT = { handshakeTimeoutMs: 300 }; // deadline 2.3 s
const QUEUE_FULL = (n: number) => `too many queued handshakes (${n})`;

/** Resolves once `check` is true, looking after every handshake event of `node`. */
function until(node: InterconnectNode, check: () => boolean, limitMs = 20_000): Promise<void> {
  if (check()) return Promise.resolve();
  return nextEvent(node, check, limitMs).then(() => {});
}

Deno.test("incoming: one slot, three queue places; more stalling peers are refused at once, and all end by the deadline", async () => {
  const SLOTS = 1, QUEUE = 3, REFUSED = 4, SILENT = 1;
  await using c = await startNodes([1, 2], {
    absent: [3],
    extra: () => TIMEOUT,
    options: () => ({ workers: SLOTS, maxQueuedHandshakes: QUEUE }),
  });
  const node = c.node(1);
  const rec = recordEvents(node);
  let most = 0;
  const watch = node.onHandshake(() => {
    most = Math.max(most, node.handshakeLoad.running.incoming);
  });
  // Peers claiming a known node id that send a valid initial packet and then nothing: each
  // admitted one holds a slot or a queue place until the deadline.
  const stallers = await Promise.all(
    Array.from({ length: SLOTS + QUEUE + REFUSED }, async () => {
      const p = await RawPeer.connect(c.port(1));
      await p.send(initialPacket(hostileId(3)));
      return p;
    }),
  );
  // And one that sends nothing at all: it never gets further than admission.
  const silent = await RawPeer.connect(c.port(1));
  const refusals = () => rec.events.filter((e) => !e.ok && e.explanation === QUEUE_FULL(QUEUE));
  await until(node, () => refusals().length === REFUSED);
  const load = node.handshakeLoad;
  assert.deepEqual(load.slots, { incoming: SLOTS, outgoing: SLOTS });
  assert.equal(load.maxQueued, QUEUE);
  assert.deepEqual(load.running, { incoming: SLOTS, outgoing: 0 });
  assert.deepEqual(load.queued, { incoming: QUEUE, outgoing: 0 });
  assert.equal(load.admitting, SILENT);
  assert.ok(refusals().every((e) => !e.ok && e.failure === "transient" && e.peerNodeId === 3));

  // Every staller and the silent one end: the refused ones at once, the others by the deadline.
  const ends = await Promise.all([...stallers, silent].map((p) => p.readToEnd()));
  assert.ok(ends.every((r) => r.eof), "every connection closed cleanly");
  await until(node, () => rec.events.length === SLOTS + QUEUE + REFUSED + SILENT);
  rec.stop();
  watch();
  const timeouts = rec.events.filter((e) =>
    !e.ok && e.explanation.startsWith("Handshake timed out")
  );
  assert.equal(timeouts.length, SLOTS + QUEUE + SILENT);
  assert.ok(timeouts.every((e) => !e.ok && e.failure === "transient"), JSON.stringify(timeouts));
  assert.ok(
    timeouts.some((e) => !e.ok && e.explanation === "Handshake timed out, State# ReceiveRequest"),
    "the silent connection timed out in admission",
  );
  assert.ok(most <= SLOTS, `${most} incoming handshakes ran at once`);
  for (const p of [...stallers, silent]) p.close();
  await eventually(() => node.handshakeLoad.admitting === 0, "no connection left in admission");
  const idle = node.handshakeLoad;
  assert.deepEqual([idle.admitting, idle.running.incoming, idle.queued.incoming], [0, 0, 0]);
  // Nothing is left holding the node up: a good peer handshakes.
  const onL = nextEvent(node, (e) => e.ok && e.peerNodeId === 2);
  await c.node(2).connect(1);
  await onL;
});

Deno.test("outgoing: beyond one slot and one queue place connect() rejects at once with a HandshakeError; the rest end by the deadline", async () => {
  // Peers 2..5 are listening sockets that never accept: a dial connects and then hears nothing.
  const sinks = [2, 3, 4, 5].map(() => Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  try {
    await using c = await startNodes([1], {
      absent: [2, 3, 4, 5],
      ports: Object.fromEntries(sinks.map((l, i) => [i + 2, l.addr.port])),
      extra: () => TIMEOUT,
      options: () => ({ workers: 1, maxQueuedHandshakes: 1 }),
    });
    const node = c.node(1);
    const results = await Promise.allSettled([2, 3, 4, 5].map((id) => node.connect(id)));
    const errors = results.map((r) => {
      assert.equal(r.status, "rejected");
      const e = (r as PromiseRejectedResult).reason;
      assert.ok(e instanceof HandshakeError, String(e));
      assert.equal(e.failure, "transient");
      return e;
    });
    // The first dial ran, the second waited, the third and fourth were refused: FIFO order.
    assert.deepEqual(errors.map((e) => e.peerNodeId), [2, 3, 4, 5]);
    assert.equal(errors[0].explanation, "Handshake timed out, State# ReceiveResponse");
    assert.match(errors[1].explanation, /^Handshake timed out, State# /);
    assert.equal(errors[2].explanation, QUEUE_FULL(1));
    assert.equal(errors[3].explanation, QUEUE_FULL(1));
    const load = node.handshakeLoad;
    assert.deepEqual([load.running.outgoing, load.queued.outgoing], [0, 0]);
  } finally {
    for (const l of sinks) l.close();
  }
});

Deno.test("the limiter: FIFO slots, a bounded queue, and a queued handshake that expires before its turn", async () => {
  const limiter = new SlotLimiter({ incoming: 1, outgoing: 1 }, 2);
  const settings = testCluster({ 1: {} }).nodes[1].settings;
  const submit = (deadlineAt: number, start: () => Promise<HandshakeOutcome>) =>
    limiter.run({
      direction: "outgoing",
      settings,
      options: { deadlineAt },
      peerNodeId: 2,
      peerHostName: "host-2",
      peerAddress: undefined,
    }, start);
  const silent = (reason: string): HandshakeOutcome => ({ kind: "silent", peerNodeId: 2, reason });
  const started: string[] = [];
  const release = Promise.withResolvers<void>();
  const now = performance.now();
  const a = submit(now + 60_000, async () => {
    started.push("a");
    await release.promise;
    return silent("a");
  });
  const b = submit(now + 30, () => {
    started.push("b");
    return Promise.resolve(silent("b"));
  });
  const c = submit(now + 60_000, () => {
    started.push("c");
    return Promise.resolve(silent("c"));
  });
  const d = await submit(now + 60_000, () => Promise.resolve(silent("d")));
  assert.equal(d.kind, "failed");
  assert.equal(d.kind === "failed" && d.failure.explanation, QUEUE_FULL(2));
  assert.deepEqual(limiter.load.queued, { incoming: 0, outgoing: 2 });
  // b's deadline passes while a holds the only slot: it ends without ever starting.
  const expired = await b;
  assert.equal(expired.kind, "failed");
  assert.equal(
    expired.kind === "failed" && expired.failure.explanation,
    `Handshake timed out, State# ${QUEUED_STATE}`,
  );
  assert.equal(expired.kind === "failed" && expired.failure.class, "transient");
  release.resolve();
  assert.equal((await a).kind, "silent");
  assert.equal((await c).kind, "silent");
  assert.deepEqual(started, ["a", "c"]);
  assert.deepEqual(limiter.load, {
    running: { incoming: 0, outgoing: 0 },
    queued: { incoming: 0, outgoing: 0 },
  });
  // A poisoned handshake leaves the queue silently; a closed limiter refuses.
  const hold = Promise.withResolvers<void>();
  const first = submit(performance.now() + 60_000, async () => {
    await hold.promise;
    return silent("first");
  });
  const poison = new AbortController();
  const poisoned = limiter.run({
    direction: "outgoing",
    settings,
    options: { signal: poison.signal },
    peerNodeId: 2,
    peerHostName: "host-2",
    peerAddress: undefined,
  }, () => Promise.resolve(silent("never")));
  poison.abort();
  assert.deepEqual(await poisoned, { kind: "silent", peerNodeId: 2, reason: "poisoned" });
  limiter.close();
  hold.resolve();
  await first;
  const late = await submit(performance.now() + 60_000, () => Promise.resolve(silent("late")));
  assert.equal(late.kind === "failed" && late.failure.explanation, "handshake executor closed");
  assert.throws(() => new SlotLimiter({ incoming: 0, outgoing: 1 }, 1), RangeError);
  assert.throws(() => new SlotLimiter({ incoming: 1, outgoing: 1 }, -1), RangeError);
});

Deno.test("memory ceiling: whatever a peer announces, no read asks for more than one 1 MiB payload, in main or in a worker", async () => {
  const executors: Array<[string, () => HandshakeExecutor]> = [
    ["inline", () => new InlineExecutor({ concurrency: 1 })],
    ["worker", () => new WorkerExecutor({ size: 1, maxQueued: 4 })],
  ];
  const id = ActorId.plain(1, 7061644215716937729n);
  const maxPayload = new Uint8Array(EXBLOCK_MAX_SIZE).fill(0x41);
  const cases: Array<[string, Uint8Array[], number[]]> = [
    ["64 MiB announced", [V.V1, exBlockHeader(64 << 20)], [52, 8]],
    ["2^32-1 announced", [V.V1, exBlockHeader(0xffffffff)], [52, 8]],
    ["1 MiB + 1 announced", [V.V1, exBlockHeader(EXBLOCK_MAX_SIZE + 1)], [52, 8]],
    // The largest legal frame is read whole (and then refused: it is no THandshakeRequest).
    ["1 MiB frame", [V.V1, encodeExBlock(maxPayload)], [52, 8, EXBLOCK_MAX_SIZE]],
  ];
  for (const [name, make] of executors) {
    const executor = make();
    await executor.warm();
    try {
      const { nodes } = testCluster({ 2: {} });
      const settings: HandshakeSettings = nodes[2].settings;
      for (const [what, input, reads] of cases) {
        const { peer, transport } = scriptedPair();
        await peer.send(...input);
        const outcome = await executor.incoming(settings, nodes[2].env, transport, {
          peerNodeId: id.nodeId,
        });
        assert.equal(outcome.kind, "failed", `${name} ${what}`);
        assert.deepEqual(transport.reads, reads, `${name} ${what}`);
        assert.ok(Math.max(...transport.reads) <= EXBLOCK_MAX_SIZE);
        assert.ok(transport.closed);
        await peer.close();
      }
    } finally {
      await executor.close();
    }
  }
});

Deno.test("memory ceiling on a node: 16 peers sending the largest frames at once stay within a generous bound", async () => {
  await using c = await startNodes([1], { absent: [3], extra: () => TIMEOUT });
  const node = c.node(1);
  const PEERS = 16;
  const rssBefore = Deno.memoryUsage().rss;
  const rec = recordEvents(node);
  const payload = new Uint8Array(EXBLOCK_MAX_SIZE).fill(0x41);
  const results = await Promise.all(Array.from({ length: PEERS }, async () => {
    await using p = await RawPeer.connect(c.port(1));
    const self = hostileId(3);
    await p.send(initialPacket(self), encodeExBlock(payload));
    return await p.readToEnd();
  }));
  await until(node, () => rec.events.length === PEERS);
  rec.stop();
  const rssAfter = Deno.memoryUsage().rss;
  console.log(
    `${PEERS} x 1 MiB frames: RSS ${(rssBefore / 2 ** 20).toFixed(1)} MiB before, ` +
      `${(rssAfter / 2 ** 20).toFixed(1)} MiB after`,
  );
  const tally = new Map<string, number>();
  for (const e of rec.events) {
    assert.equal(e.ok, false);
    const key = e.ok ? "ok" : `${e.failure} ${e.explanation}`;
    tally.set(key, (tally.get(key) ?? 0) + 1);
  }
  console.log(`outcomes: ${JSON.stringify([...tally])}`);
  // Each frame was read whole and refused, unless its handshake's deadline (which counts the
  // wait for a slot) came first.
  for (const key of tally.keys()) {
    assert.match(key, /^(permanent Incorrect THandshakeRequest|transient Handshake timed out, )/);
  }
  assert.ok(tally.has("permanent Incorrect THandshakeRequest"));
  assert.ok(results.every((r) => r.eof));
  assert.ok(rssAfter - rssBefore < 512 * 2 ** 20, `RSS grew by ${rssAfter - rssBefore} bytes`);
  // The same frame one byte larger is refused before its payload is read.
  const refused = nextEvent(node, (e) => !e.ok);
  {
    await using p = await RawPeer.connect(c.port(1));
    await p.send(
      initialPacket(hostileId(3)),
      concat(exBlockHeader(EXBLOCK_MAX_SIZE + 1), new Uint8Array(EXBLOCK_HEADER_SIZE)),
    );
    const e = await refused;
    assert.equal(!e.ok && e.explanation, "Incorrect extended header size");
  }
});

Deno.test("admission: two places; a third silent peer is closed at accept, the two end by the deadline", async () => {
  await using c = await startNodes([1, 2], {
    extra: () => TIMEOUT,
    options: () => ({ workers: 1, maxAdmitting: 2 }),
  });
  const node = c.node(1);
  const rec = recordEvents(node);
  const full = "too many connections in admission (2)";
  // Peers that connect and never send a byte: each sits in admission until the deadline.
  const quiet = [await RawPeer.connect(c.port(1)), await RawPeer.connect(c.port(1))];
  await eventually(() => node.handshakeLoad.admitting === 2, "two connections in admission");
  const third = await RawPeer.connect(c.port(1));
  const end = await third.readToEnd();
  assert.ok(end.eof && end.bytes.length === 0, "the third is closed at once, unanswered");
  await eventually(() => rec.events.length === 1, "the refusal is reported");
  const refusal = rec.events[0];
  assert.ok(!refusal.ok);
  assert.deepEqual(
    [refusal.direction, refusal.failure, refusal.peerNodeId, refusal.explanation],
    ["incoming", "transient", 0, full],
  );
  const load = node.handshakeLoad;
  assert.deepEqual([load.admitting, load.maxAdmitting], [2, 2]);
  // The two quiet ones end by the deadline, then admission has room again.
  const ends = await Promise.all(quiet.map((p) => p.readToEnd()));
  assert.ok(ends.every((r) => r.eof));
  await until(node, () => rec.events.length === 3);
  assert.ok(
    rec.events.slice(1).every((e) =>
      !e.ok && e.explanation === "Handshake timed out, State# ReceiveRequest"
    ),
  );
  rec.stop();
  for (const p of [...quiet, third]) p.close();
  await eventually(() => node.handshakeLoad.admitting === 0, "no connection left in admission");
  const onL = nextEvent(node, (e) => e.ok && e.peerNodeId === 2);
  await c.node(2).connect(1);
  await onL;
});

Deno.test("maxQueuedHandshakes must be an integer >= 0, maxAdmitting one >= 1", () => {
  const config = {
    nodeId: 1,
    nodes: [{ nodeId: 1, host: "node-1", port: 1, address: "127.0.0.1" }],
  };
  for (const bad of [-1, 1.5, Number.NaN]) {
    assert.throws(
      () => InterconnectNode.start(config, { workers: false, maxQueuedHandshakes: bad }),
      /maxQueuedHandshakes# /,
    );
  }
  for (const bad of [0, -1, 2.5, Number.NaN]) {
    assert.throws(
      () => InterconnectNode.start(config, { workers: false, maxAdmitting: bad }),
      (e: Error) => e instanceof RangeError && e.message.startsWith(`maxAdmitting# ${bad} `),
    );
  }
});
