/**
 * Handshakes run in pooled workers against peers in main or in workers, over in-memory pipes.
 * The connections always stay in main; the worker only sees messages.
 */
import assert from "node:assert/strict";
import { StreamTransport } from "../lib/handshake/stream_transport.ts";
import type { HandshakeOutcome, OutgoingParams } from "../lib/handshake/types.ts";
import { ActorId } from "../lib/wire/actor_id.ts";
import { HandshakeWorkerPool } from "../lib/worker/host.ts";
import { fakeTls, freshVirtualId, testCluster, type TestNode } from "./_helpers/memory_net.ts";

type Done = Extract<HandshakeOutcome, { kind: "done" }>;

function show(o: HandshakeOutcome): string {
  return JSON.stringify(o, (k, v) => typeof v === "bigint" ? `${v}` : k === "transport" ? "…" : v);
}

function done(o: HandshakeOutcome): Done {
  assert.equal(o.kind, "done", show(o));
  return o as Done;
}

/** Makes `node` accept connections by running the incoming procedure in `pool`. */
function acceptInPool(node: TestNode, pool: HandshakeWorkerPool) {
  const accepted = node.acceptWith((transport) =>
    pool.run({ kind: "incoming", settings: node.settings, env: node.env, transport })
  );
  return { accepted, outcome: (i = 0) => node.incomingOutcome(i) };
}

function newSessionParams(node: TestNode, peer: number): OutgoingParams {
  return {
    peerNodeId: peer,
    peerHostName: node.table.get(peer)?.host ?? "",
    selfVirtualId: freshVirtualId(node.settings.selfNodeId),
    peerVirtualId: ActorId.EMPTY,
    nextPacket: 0n,
  };
}

/** Runs an outgoing new-session handshake of `node` in `pool`. */
async function dialInPool(pool: HandshakeWorkerPool, node: TestNode, peer: number) {
  const o = await pool.run({
    kind: "outgoing",
    settings: node.settings,
    env: node.env,
    params: newSessionParams(node, peer),
  });
  if (o.kind === "done") node.remember(o.done);
  return o;
}

function assertConsistent(out: Done, inc: Done) {
  assert.ok(out.done.selfVirtualId.equals(inc.done.peerVirtualId));
  assert.ok(out.done.peerVirtualId.equals(inc.done.selfVirtualId));
  assert.equal(out.done.peerNodeId, inc.done.selfVirtualId.nodeId);
  assert.equal(inc.done.peerNodeId, out.done.selfVirtualId.nodeId);
  assert.equal(out.done.programInfo?.serial, inc.done.selfVirtualId.localId);
  assert.equal(inc.done.programInfo?.serial, out.done.selfVirtualId.localId);
}

Deno.test("outgoing in a pooled worker, incoming in main: both agree on the virtual ids", async () => {
  await using pool = new HandshakeWorkerPool({ size: 1 });
  const { net, nodes } = testCluster({ 1: {}, 2: {} });
  const out = done(await dialInPool(pool, nodes[1], 2));
  const inc = done(await nodes[2].incomingOutcome());
  assertConsistent(out, inc);
  assert.equal(out.done.peerHostName, "host-2");
  assert.equal(inc.done.peerHostName, "host-1");
  assert.equal(out.done.params.useModernFrame, true);
  assert.ok(out.done.selfVirtualId instanceof ActorId);
  // The caller gets the main-side transport the session lives on (the dialer's end), open.
  const dialed = net.transports.find((t) => t.peerAddress === "mem-2:19001");
  assert.equal(out.transport, dialed);
  assert.equal(dialed?.closed, false);
});

Deno.test("incoming in a pooled worker, outgoing in main: both agree on the virtual ids", async () => {
  await using pool = new HandshakeWorkerPool({ size: 1 });
  const { nodes } = testCluster({ 1: {}, 2: {} });
  const acceptor = acceptInPool(nodes[2], pool);
  const out = done(await nodes[1].dial(2));
  const inc = done(await acceptor.outcome());
  assertConsistent(out, inc);
  assert.equal(inc.transport, acceptor.accepted[0]);
  assert.equal(inc.done.peerHostName, "host-1");
  assert.deepEqual(inc.done.programInfo, {
    pid: 1001n,
    startTime: 5001n,
    serial: out.done.selfVirtualId.localId,
  });
});

Deno.test("both sides in workers of one pool, with TLS run by the main-side transports", async () => {
  await using pool = new HandshakeWorkerPool({ size: 2 });
  const { nodes } = testCluster({
    1: { encryption: "required" },
    2: { encryption: "optional" },
  });
  const acceptor = acceptInPool(nodes[2], pool);
  const out = done(await dialInPool(pool, nodes[1], 2));
  const inc = done(await acceptor.outcome());
  assertConsistent(out, inc);
  assert.equal(out.done.params.encryption, true);
  assert.equal(out.done.params.authCN, "node-2");
  assert.equal(inc.done.params.authCN, "node-1");
});

Deno.test("continuation through workers: Ack keeps both ids and carries NextPacket both ways", async () => {
  await using pool = new HandshakeWorkerPool({ size: 2 });
  const { nodes } = testCluster({ 1: {}, 2: {} });
  const acceptor = acceptInPool(nodes[2], pool);
  const first = done(await dialInPool(pool, nodes[1], 2));
  done(await acceptor.outcome(0));
  nodes[2].sessions.get(1)!.nextPacket = 17n;
  const s = nodes[1].sessions.get(2)!;
  const again = done(
    await pool.run({
      kind: "outgoing",
      settings: nodes[1].settings,
      env: nodes[1].env,
      params: {
        peerNodeId: 2,
        peerHostName: "host-2",
        selfVirtualId: s.self,
        peerVirtualId: s.peer,
        nextPacket: 42n,
        sessionParams: s.params,
      },
    }),
  );
  const inc = done(await acceptor.outcome(1));
  assert.ok(again.done.selfVirtualId.equals(first.done.selfVirtualId));
  assert.ok(again.done.peerVirtualId.equals(first.done.peerVirtualId));
  assert.equal(again.done.nextPacketFromPeer, 17n);
  assert.equal(inc.done.nextPacketFromPeer, 42n);
  assert.equal(again.done.programInfo, null);
  assert.equal(inc.done.programInfo, null);
});

Deno.test("continuation Nak through workers: dialer SESSION_MISMATCH, acceptor silent", async () => {
  await using pool = new HandshakeWorkerPool({ size: 2 });
  const { nodes } = testCluster({ 1: {}, 2: {} });
  const acceptor = acceptInPool(nodes[2], pool);
  done(await dialInPool(pool, nodes[1], 2));
  done(await acceptor.outcome(0));
  nodes[2].sessions.clear();
  const o = await nodes[1].resume(2);
  assert.equal(o.kind, "failed", show(o));
  if (o.kind === "failed") assert.equal(o.failure.class, "session_mismatch");
  const inc = await acceptor.outcome(1);
  assert.equal(inc.kind, "silent");
  assert.equal(acceptor.accepted[1].closed, true);
});

Deno.test("cookie check through workers: the connect-back is a second main-side connection, and a node's single outgoing slot does not block its answer", async () => {
  // One pool per node, each with ONE outgoing slot: node 1's outgoing handshake holds its slot
  // while node 2's worker dials back and node 1 answers in an incoming slot.
  await using pool1 = new HandshakeWorkerPool({ size: 1 });
  await using pool2 = new HandshakeWorkerPool({ size: 1 });
  const { net, nodes } = testCluster({
    1: { cookie: "cookie-of-1" },
    2: { cookie: "cookie-of-2" },
  });
  const acceptor2 = acceptInPool(nodes[2], pool2);
  const acceptor1 = acceptInPool(nodes[1], pool1);
  const out = done(await dialInPool(pool1, nodes[1], 2));
  const inc = done(await acceptor2.outcome(0));
  assertConsistent(out, inc);
  const answer = await acceptor1.outcome(0);
  assert.equal(answer.kind, "silent");
  assert.equal(answer.peerNodeId, 2);
  // Main-side dials: the session's (by node 1's worker) and the connect-back (by node 2's).
  assert.deepEqual(net.transports.map((t) => t.closed), [false, true]);
  assert.equal(net.transports[0], out.transport);
  assert.equal(net.transports[1].closed, true, "the connect-back is closed after the check");
  assert.equal(acceptor1.accepted[0].closed, true);
  assert.equal(acceptor2.accepted[0], inc.transport);
  assert.equal(acceptor2.accepted[0].closed, false);
});

Deno.test("a failed cookie check through a worker fails PERMANENT like in main", async () => {
  await using pool = new HandshakeWorkerPool({ size: 2 });
  const { net, nodes } = testCluster({ 1: { cookie: "real" }, 2: {} });
  const impostor = testCluster({ 1: { cookie: "other" } });
  acceptInPool(nodes[2], pool);
  // Where node 2's table says node 1 is, an impostor with another cookie answers.
  const realDial = net.connect.bind(net);
  net.connect = (address, tls) =>
    address.address === "mem-1" ? impostor.net.connect(address, tls) : realDial(address, tls);
  const o = await dialInPool(pool, nodes[1], 2);
  assert.equal(o.kind, "failed", show(o));
  if (o.kind !== "failed") return;
  assert.equal(o.failure.class, "permanent");
  assert.match(o.failure.explanation, /Peer connectivity-checking failed/);
  assert.match(o.failure.explanation, /Cookie check error/);
  assert.equal(impostor.net.transports[0].closed, true);
});

Deno.test("a failure inside the worker is the same value as in main, and its worker is replaced", async () => {
  await using pool = new HandshakeWorkerPool({ size: 1 });
  await pool.warm();
  const { nodes } = testCluster({ 1: {}, 2: { selfHostName: "renamed" } });
  const acceptor = acceptInPool(nodes[2], pool);
  const out = await nodes[1].dial(2);
  const inc = await acceptor.outcome();
  assert.equal(out.kind, "failed");
  assert.equal(inc.kind, "failed", show(inc));
  if (inc.kind !== "failed" || out.kind !== "failed") return;
  assert.equal(inc.failure.class, "permanent");
  assert.equal(inc.failure.explanation, "ReceiverHostName# host-2 mismatch, expected# renamed");
  assert.equal(inc.failure.errorReplySent, true);
  assert.equal(inc.peerNodeId, 1);
  assert.equal(out.failure.explanation, "error from peer: " + inc.failure.explanation);
  assert.equal(acceptor.accepted[0].closed, true);
  const stats = pool.stats;
  assert.equal(stats.workersTerminated, 1);
  assert.equal(stats.workersStarted, 2);
});

Deno.test("an EOF in main reaches the worker as the same socket error text", async () => {
  await using pool = new HandshakeWorkerPool({ size: 1 });
  const { net, nodes } = testCluster({ 1: {}, 2: {} });
  net.listeners.set("mem-2:19001", (end) => {
    end.writable.close(); // the peer hangs up at once
  });
  const o = await dialInPool(pool, nodes[1], 2);
  assert.equal(o.kind, "failed", show(o));
  if (o.kind !== "failed") return;
  assert.equal(o.failure.class, "transient");
  assert.equal(
    o.failure.explanation,
    "Socket error# connection unexpectedly closed state# ReceiveResponse processed# 0 remain# 52",
  );
  assert.equal(net.transports[0].closed, true);
});

Deno.test("bytes the peer sent right behind its last handshake message stay in the session's reader", async () => {
  await using pool = new HandshakeWorkerPool({ size: 1 });
  const { net, nodes } = testCluster({ 1: {}, 2: {} });
  const behind = new TextEncoder().encode("SESSION-DATA");
  // Node 2 (in main) sends its ExReply and the first session bytes in one chunk.
  net.listeners.set("mem-2:19001", (end) => {
    let writes = 0;
    const transport = new StreamTransport({ ...end, peerAddress: "memory" });
    const write = transport.write.bind(transport);
    transport.write = (bytes) => {
      if (++writes !== 2) return write(bytes);
      const both = new Uint8Array(bytes.length + behind.length);
      both.set(bytes);
      both.set(behind, bytes.length);
      return write(both);
    };
    nodes[2].incoming.push(
      import("../lib/handshake/handshake.ts").then((h) =>
        h.runIncomingHandshake(nodes[2].settings, nodes[2].env, transport)
      ),
    );
  });
  const out = done(await dialInPool(pool, nodes[1], 2));
  done(await nodes[2].incomingOutcome());
  const session = out.transport as StreamTransport;
  assert.equal(session.reader.buffered, behind.length);
  assert.deepEqual(await session.readExactly(behind.length), behind);
});

Deno.test("a worker's handshake over a real loopback TCP connection owned by main", async () => {
  await using pool = new HandshakeWorkerPool({ size: 1 });
  const { nodes } = testCluster({ 1: {}, 2: {} });
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const tcpTransport = (conn: Deno.TcpConn, selfNodeId: number) => {
    conn.setNoDelay(true);
    return new StreamTransport({
      readable: conn.readable,
      writable: conn.writable,
      peerAddress: `${(conn.remoteAddr as Deno.NetAddr).hostname}`,
      startTls: fakeTls(selfNodeId),
      onClose: () => {
        try {
          conn.close();
        } catch {
          // The stream teardown may have closed it already.
        }
      },
    });
  };
  const accepted = (async () => {
    const conn = await listener.accept();
    const { runIncomingHandshake } = await import("../lib/handshake/handshake.ts");
    return await runIncomingHandshake(nodes[2].settings, nodes[2].env, tcpTransport(conn, 2));
  })();
  const port = (listener.addr as Deno.NetAddr).port;
  const o = await pool.run({
    kind: "outgoing",
    settings: nodes[1].settings,
    env: {
      ...nodes[1].env,
      resolve: () => Promise.resolve({ address: "127.0.0.1", port }),
      connect: async (address) => tcpTransport(await Deno.connect({ ...address }), 1),
    },
    params: newSessionParams(nodes[1], 2),
  });
  const out = done(o);
  const inc = done(await accepted);
  assertConsistent(out, inc);
  // The session's sockets are the caller's: close both.
  out.transport.close();
  inc.transport.close();
});

Deno.test("a resolve that outlives its 1 s wait is cancelled in main; the static address is used", async () => {
  await using pool = new HandshakeWorkerPool({ size: 1 });
  const { nodes } = testCluster({ 1: {}, 2: {} });
  let cancelled = false;
  nodes[1].resolveOverride = (_nodeId, signal) =>
    new Promise((_resolve, reject) => {
      signal.addEventListener("abort", () => {
        cancelled = true;
        reject(new Error("aborted"));
      });
    });
  const out = done(await dialInPool(pool, nodes[1], 2));
  assert.equal(cancelled, true, "the worker's cancel reached the main-side resolve");
  assert.equal(out.done.peerNodeId, 2);
  // The same (reused) worker serves the next handshake; nothing of the first one shows.
  nodes[1].resolveOverride = undefined;
  done(await dialInPool(pool, nodes[1], 2));
  assert.equal(pool.stats.workersStarted, 1);
});
