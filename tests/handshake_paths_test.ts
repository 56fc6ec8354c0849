import assert from "node:assert/strict";
import type { HandshakeOutcome } from "../lib/handshake/types.ts";
import { testCluster } from "./_helpers/memory_net.ts";

function done(o: HandshakeOutcome) {
  assert.equal(o.kind, "done", JSON.stringify(o, (_, v) => typeof v === "bigint" ? `${v}` : v));
  return (o as Extract<HandshakeOutcome, { kind: "done" }>).done;
}

Deno.test("outgoing new session against incoming over a pipe: both sides agree on ids and params", async () => {
  const { nodes } = testCluster({ 1: {}, 2: {} });
  const out = done(await nodes[1].dial(2));
  const inc = done(await nodes[2].incomingOutcome());
  assert.ok(out.selfVirtualId.equals(inc.peerVirtualId));
  assert.ok(out.peerVirtualId.equals(inc.selfVirtualId));
  assert.equal(out.peerVirtualId.nodeId, 2);
  assert.equal(out.params.encryption, false);
  assert.equal(out.params.useModernFrame, true);
  assert.equal(inc.params.useModernFrame, true);
  assert.deepEqual(out.programInfo, {
    pid: 1002n,
    startTime: 5002n,
    serial: inc.selfVirtualId.localId,
  });
  assert.deepEqual(inc.programInfo, {
    pid: 1001n,
    startTime: 5001n,
    serial: out.selfVirtualId.localId,
  });
  assert.equal(inc.peerHostName, "host-1");
  assert.equal(out.nextPacketFromPeer, 0n);
});

Deno.test("continuation Ack keeps both virtual ids and carries NextPacket both ways", async () => {
  const { nodes } = testCluster({ 1: {}, 2: {} });
  const first = done(await nodes[1].dial(2));
  await nodes[2].incomingOutcome(0);
  nodes[2].sessions.get(1)!.nextPacket = 17n;
  const again = done(await nodes[1].resume(2, 42n));
  const inc = done(await nodes[2].incomingOutcome(1));
  assert.ok(again.selfVirtualId.equals(first.selfVirtualId));
  assert.ok(again.peerVirtualId.equals(first.peerVirtualId));
  assert.equal(again.nextPacketFromPeer, 17n);
  assert.equal(inc.nextPacketFromPeer, 42n);
  assert.equal(again.programInfo, null);
  assert.equal(inc.programInfo, null);
});

Deno.test("continuation Nak: the dialer fails SESSION_MISMATCH, the acceptor ends silently", async () => {
  const { nodes } = testCluster({ 1: {}, 2: {} });
  done(await nodes[1].dial(2));
  await nodes[2].incomingOutcome(0);
  nodes[2].sessions.clear(); // the peer forgot the session
  const o = await nodes[1].resume(2);
  assert.equal(o.kind, "failed");
  if (o.kind !== "failed") return;
  assert.equal(o.failure.class, "session_mismatch");
  assert.equal(o.failure.explanation, "Peer rejected session continuation handshake");
  const inc = await nodes[2].incomingOutcome(1);
  assert.equal(inc.kind, "silent");
});

Deno.test("cookie check passes when the dialer answers the connect-back with its own cookie", async () => {
  const { nodes } = testCluster({ 1: { cookie: "cookie-of-1" }, 2: { cookie: "cookie-of-2" } });
  done(await nodes[1].dial(2));
  done(await nodes[2].incomingOutcome(0));
  // Node 1 saw the connect-back from node 2's "cookie check" service id and answered it.
  const answer = await nodes[1].incomingOutcome(0);
  assert.equal(answer.kind, "silent");
  assert.equal(answer.peerNodeId, 2);
});

Deno.test("cookie check fails when the address in the acceptor's table reaches another process", async () => {
  const { net, nodes } = testCluster({ 1: { cookie: "real" }, 2: {} });
  // An impostor listens where node 2's table says node 1 is; it has another cookie.
  const impostor = testCluster({ 1: { cookie: "other" } });
  net.listeners.set("mem-1:19001", impostor.net.listeners.get("mem-1:19001")!);
  const o = await nodes[1].dial(2);
  assert.equal(o.kind, "failed");
  if (o.kind !== "failed") return;
  assert.equal(o.failure.class, "permanent");
  assert.equal(
    o.failure.explanation,
    "error from peer: Peer connectivity-checking failed, error# Cookie check error -- possible network problem",
  );
  const inc = await nodes[2].incomingOutcome(0);
  assert.equal(inc.kind, "failed");
  if (inc.kind === "failed") assert.ok(inc.failure.errorReplySent);
});

const matrix: Array<[string, string, "plain" | "tls" | "I16" | "I17"]> = [
  ["disabled", "disabled", "plain"],
  ["disabled", "optional", "plain"],
  ["disabled", "required", "I17"],
  ["optional", "disabled", "plain"],
  ["optional", "optional", "tls"],
  ["optional", "required", "tls"],
  ["required", "disabled", "I16"],
  ["required", "optional", "tls"],
  ["required", "required", "tls"],
];
for (const [initiator, acceptor, expected] of matrix) {
  Deno.test(`encryption matrix: initiator ${initiator} x acceptor ${acceptor} gives ${expected}`, async () => {
    const { nodes } = testCluster({
      1: { encryption: initiator as "disabled" },
      2: { encryption: acceptor as "disabled" },
    });
    const o = await nodes[1].dial(2);
    const inc = await nodes[2].incomingOutcome();
    if (expected === "plain" || expected === "tls") {
      const d = done(o);
      const di = done(inc);
      assert.equal(d.params.encryption, expected === "tls");
      assert.equal(di.params.encryption, expected === "tls");
      // The fake TLS reports the peer's node: proof that both ran it with opposite roles.
      assert.equal(d.params.authCN, expected === "tls" ? "node-2" : "");
      assert.equal(di.params.authCN, expected === "tls" ? "node-1" : "");
    } else {
      const gist = expected === "I16"
        ? "Peer requested encryption, but it is disabled locally"
        : "Peer did not request encryption, but it is required locally";
      assert.equal(o.kind, "failed");
      assert.equal(inc.kind, "failed");
      if (o.kind === "failed") assert.equal(o.failure.explanation, `error from peer: ${gist}`);
      if (inc.kind === "failed") {
        assert.equal(inc.failure.explanation, gist);
        assert.ok(inc.failure.errorReplySent);
      }
    }
  });
}

Deno.test("AuthOnly: TLS authenticates, then encryption is off and the CN is kept on both sides", async () => {
  const { nodes } = testCluster({
    1: { encryption: "required", tlsAuthOnly: true },
    2: { encryption: "optional", tlsAuthOnly: true },
  });
  const d = done(await nodes[1].dial(2));
  const di = done(await nodes[2].incomingOutcome());
  for (const [p, cn] of [[d.params, "node-2"], [di.params, "node-1"]] as const) {
    assert.equal(p.authOnly, true);
    assert.equal(p.encryption, false);
    assert.equal(p.authCN, cn);
  }
  // A continuation of an AuthOnly session does not repeat TLS: the fake TLS would need bytes.
  const again = done(await nodes[1].resume(2));
  assert.equal(again.params.authOnly, true);
  assert.equal(again.params.encryption, false);
});

Deno.test("AuthOnly is off when the acceptor does not have TlsAuthOnly itself", async () => {
  const { nodes } = testCluster({
    1: { encryption: "optional", tlsAuthOnly: true },
    2: { encryption: "optional", tlsAuthOnly: false },
  });
  const d = done(await nodes[1].dial(2));
  assert.equal(d.params.authOnly, false);
  assert.equal(d.params.encryption, true);
});

Deno.test("scope ids travel both ways and (0,0) is never sent", async () => {
  const { nodes } = testCluster({ 1: { scopeId: [7n, 8n] }, 2: {} });
  const d = done(await nodes[1].dial(2));
  const di = done(await nodes[2].incomingOutcome());
  assert.deepEqual(di.params.peerScopeId, [7n, 8n]);
  assert.deepEqual(d.params.peerScopeId, [0n, 0n]);
  assert.deepEqual(nodes[2].requests[0].ClientScopeId, { X1: 7n, X2: 8n });
  const back = testCluster({ 1: {}, 2: { scopeId: [1n, 18446744073709551615n] } });
  const d2 = done(await back.nodes[1].dial(2));
  assert.deepEqual(d2.params.peerScopeId, [1n, 18446744073709551615n]);
  assert.equal(back.nodes[2].requests[0].ClientScopeId, undefined);
});

Deno.test("ballast of N bytes has byte i = i mod 256 and does not disturb the handshake", async () => {
  const { nodes } = testCluster({ 1: { ballastSize: 70_000 }, 2: {} });
  done(await nodes[1].dial(2));
  done(await nodes[2].incomingOutcome());
  const ballast = nodes[2].requests[0].Ballast!;
  assert.equal(ballast.length, 70_000);
  for (let i = 0; i < ballast.length; i++) if (ballast[i] !== i % 256) assert.fail(`byte ${i}`);
  const none = testCluster({ 1: {}, 2: {} });
  done(await none.nodes[1].dial(2));
  assert.equal(none.nodes[2].requests[0].Ballast, undefined);
});
