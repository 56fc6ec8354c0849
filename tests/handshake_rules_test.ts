/**
 * One test per validation rule of spec 4.1 (O1-O21) and 4.2 (I1-I24) that belongs to the
 * handshake layer, plus the policy checks of 4.3 as pure functions. Each rule test checks the
 * outcome kind, the failure class, the exact explanation, whether an error reply went to the
 * peer (the flag and the bytes the peer actually received), and the formatted message of 4.4.
 *
 * Not applicable in this layer: O5 (socket() fails), O6 and I1 (non-blocking / TCP_NODELAY
 * setup) - there is no socket creation step here; the environment's connect() hands over a
 * ready transport.
 */
import assert from "node:assert/strict";
import { ActorId } from "../lib/wire/actor_id.ts";
import {
  decodeExBlock,
  decodeHandshakeReply,
  decodeHandshakeRequest,
  type HandshakeRequest,
} from "../lib/wire/mod.ts";
import { handshakeDeadlineMs, RESOLVE_TIMEOUT_MS } from "../lib/handshake/handshake.ts";
import { checkClusterUUID, checkVersionTag, sortedTags } from "../lib/handshake/policy.ts";
import type {
  ContinuationAsk,
  HandshakeSettings,
  OutgoingParams,
  ResolvedAddress,
} from "../lib/handshake/types.ts";
import { fakeTls, testCluster, testSettings, testTable } from "./_helpers/memory_net.ts";
import {
  A,
  accept,
  type AcceptOptions,
  answers,
  assertIncomingFailed,
  assertOutgoingFailed,
  assertRejectedWithReply,
  B,
  concat,
  dial,
  type DialOptions,
  done,
  E,
  exBlockHeader,
  failed,
  flipBit,
  hangingResolve,
  initialPacket,
  pb,
  PEER_ADDR,
  rawFrame,
  replyFrame,
  request,
  requestFrame,
  scriptedListener,
  type ScriptedPeer,
  silent,
  success,
  V,
} from "./_helpers/scripted_peer.ts";
import { toHex, vectors } from "./_helpers/vectors.ts";

// =============================================================================================
// 4.1 Outgoing side

Deno.test('O1 outgoing: overall deadline fails TRANSIENT "Handshake timed out, State# <state>" and closes the transport', async () => {
  const cases: Array<[string, DialOptions, ((p: ScriptedPeer) => void) | undefined, string]> = [
    ["silent acceptor", {}, () => {}, "ReceiveResponse"],
    ["acceptor stops after its initial packet", {}, answers(), "ReceiveExReplyHeader"],
    [
      "resolve never answers",
      { setup: (n) => (n.resolveOverride = hangingResolve()) },
      undefined,
      "ResolvePeer",
    ],
  ];
  for (const [what, opts, script, state] of cases) {
    const r = await dial(script, { ...opts, deadlineMs: 150 });
    assertOutgoingFailed(r, "transient", `Handshake timed out, State# ${state}`, {
      network: true,
      addr: state === "ResolvePeer" ? "<unknown>" : undefined,
    });
    assert.equal(r.net.transports.length, script ? 1 : 0, what);
  }
});

Deno.test("O1/I24 default deadline: handshakeDeadlineMs = handshakeTimeoutMs + 2 x the 1 s resolve wait", () => {
  assert.equal(RESOLVE_TIMEOUT_MS, 1000);
  assert.equal(handshakeDeadlineMs(testSettings(1)), 3000); // early default: 1 s + 2 s
  assert.equal(handshakeDeadlineMs(testSettings(1, { handshakeTimeoutMs: 5000 })), 7000);
  assert.equal(handshakeDeadlineMs(testSettings(1, { handshakeTimeoutMs: 250 })), 2250);
});

Deno.test("O1/I24: handshakeTimeoutMs 0 means the 1 s default, so the deadline is 3 s (spec 6.4)", () => {
  // YDB: `if (timeout == TDuration::Zero()) timeout = DEFAULT_HANDSHAKE_TIMEOUT;` before adding
  // 2 x ResolveTimeout. lib/handshake/handshake.ts adds 2000 to 0 and gives 2000.
  assert.equal(handshakeDeadlineMs(testSettings(1, { handshakeTimeoutMs: 0 })), 3000);
});

Deno.test('O2 outgoing: resolve silent for 1 s and no static address fails PERMANENT "DNS resolve timed out and no static address defined"', async () => {
  const table = testTable(1);
  table.set(2, { nodeId: 2, host: "host-2", port: 19001 }); // no literal address
  const signals: AbortSignal[] = [];
  const r = await dial(undefined, {
    table,
    setup: (n) => (n.resolveOverride = hangingResolve(signals)),
  });
  assertOutgoingFailed(r, "permanent", "DNS resolve timed out and no static address defined", {
    network: true,
    addr: "<unknown>",
  });
  assert.equal(r.net.transports.length, 0, "nothing was dialed");
  assert.equal(signals.length, 1);
  assert.ok(signals[0].aborted, "the abandoned resolve was cancelled");
});

Deno.test('O2 outgoing: resolve silent for 1 s falls back to the static address; later failures carry "[resolve timeout] "', async () => {
  const { net, nodes } = testCluster({ 1: {}, 2: {} });
  nodes[1].resolveOverride = hangingResolve();
  nodes[2].newSessionDecision = () =>
    Promise.resolve({ kind: "error", explanation: "duplicate serial" });
  const outcome = await nodes[1].dial(2);
  silent(await nodes[2].incomingOutcome());
  assertOutgoingFailed(
    { outcome, peers: [], net, node: nodes[1] },
    "permanent",
    "error from peer: duplicate serial",
    { resolveTimeout: true },
  );
});

Deno.test('O3 outgoing: resolve reply without an address fails PERMANENT "DNS resolve error: no address returned"', async () => {
  for (const reply of [undefined, { address: "", port: 19001 }]) {
    const r = await dial(undefined, {
      setup: (n) => (n.resolveOverride = () => Promise.resolve(reply)),
    });
    assertOutgoingFailed(r, "permanent", "DNS resolve error: no address returned", {
      network: true,
      addr: "<unknown>",
    });
    assert.equal(r.net.transports.length, 0);
  }
});

Deno.test('O4 outgoing: resolve error fails PERMANENT "DNS resolve error: <explain>"', async () => {
  const r = await dial(undefined, {
    setup: (
      n,
    ) => (n.resolveOverride = () => Promise.reject(new Error("Dns resolver is unavailable"))),
  });
  assertOutgoingFailed(r, "permanent", "DNS resolve error: Dns resolver is unavailable", {
    network: true,
    addr: "<unknown>",
  });
});

Deno.test('O7 outgoing: connect error fails PERMANENT "Connection failed: <strerror>" (in-memory and real TCP)', async () => {
  // Nobody listens at mem-2:19001.
  const r = await dial(undefined);
  assertOutgoingFailed(r, "permanent", "Connection failed: Connection refused", { network: true });

  // A real TCP port that was just released.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const table = testTable(1);
  table.set(2, { nodeId: 2, host: "host-2", address: "127.0.0.1", port });
  const tcp = await dial(undefined, {
    table,
    env: (node) => ({
      ...node.env,
      connect: async (a) => {
        const conn = await Deno.connect({ hostname: a.address, port: a.port });
        conn.close();
        throw new Error("connected to a port that should be closed");
      },
    }),
  });
  const { failure } = failed(tcp.outcome);
  assert.equal(failure.class, "permanent");
  assert.equal(failure.network, true);
  assert.match(failure.explanation, /^Connection failed: .*refused/i);
  assert.equal(
    failure.message,
    `outgoing handshake Peer# host-2(127.0.0.1:${port}) ${failure.explanation}`,
  );
});

Deno.test('O8 outgoing: EOF or a socket error fails TRANSIENT "Socket error# ... state# S processed# N remain# M"', async () => {
  const eof = await dial((p) => p.end());
  assertOutgoingFailed(
    eof,
    "transient",
    "Socket error# connection unexpectedly closed state# ReceiveResponse processed# 0 remain# 52",
    { network: true },
  );

  const reset = await dial((p) => void p, {
    env: (node, peers) => ({
      ...node.env,
      connect: async (a, s) => {
        const t = await node.env.connect(a, s);
        await peers[0].reset(new Error("Connection reset by peer"));
        return t;
      },
    }),
  });
  assertOutgoingFailed(
    reset,
    "transient",
    "Socket error# Connection reset by peer state# SendInitialPacket processed# 0 remain# 52",
    { network: true },
  );
});

Deno.test('O9 outgoing: response initial packet with a bad CRC fails TRANSIENT "Initial packet CRC error"', async () => {
  const r = await dial((p) => p.send(flipBit(V.V2)));
  assertOutgoingFailed(r, "transient", "Initial packet CRC error");
  assert.equal(toHex(r.peers[0].received()), toHex(V.V1), "no request after a bad answer");
});

Deno.test('O10 outgoing: response Version 7 fails PERMANENT "Incompatible protocol 7"', async () => {
  const r = await dial((p) => p.send(initialPacket(ActorId.EMPTY, ActorId.EMPTY, 0n, 7n)));
  assertOutgoingFailed(r, "permanent", "Incompatible protocol 7");
  assert.equal(toHex(r.peers[0].received()), toHex(V.V1));
});

const continuation: Partial<OutgoingParams> = {
  peerVirtualId: B,
  nextPacket: 42n,
  sessionParams: {
    encryption: false,
    useModernFrame: true,
    authOnly: false,
    authCN: "",
    peerScopeId: [0n, 0n],
  },
};

Deno.test('O11 outgoing continuation: all-zero response Self fails SESSION_MISMATCH "Peer rejected session continuation handshake"', async () => {
  const r = await dial((p) => p.send(V.V2), { params: continuation });
  assertOutgoingFailed(r, "session_mismatch", "Peer rejected session continuation handshake");
  assert.equal(toHex(r.peers[0].received()), toHex(V.V3), "the request was V3, nothing else");
});

Deno.test('O12 outgoing continuation: response Self != expected Peer or Peer != own Self fails SESSION_MISMATCH "Session virtual ID mismatch"', async () => {
  const C = ActorId.plain(2, 7061644215716937731n);
  for (const answer of [initialPacket(C, A, 17n), initialPacket(B, C, 17n)]) {
    const r = await dial((p) => p.send(answer), { params: continuation });
    assertOutgoingFailed(r, "session_mismatch", "Session virtual ID mismatch");
    assert.equal(toHex(r.peers[0].received()), toHex(V.V3));
  }
});

Deno.test('O13 outgoing: reply ExBlock Size above 1 MiB fails PERMANENT "Incorrect extended header size" at once', async () => {
  const r = await dial(answers(exBlockHeader(64 << 20)), { deadlineMs: 10_000 });
  assertOutgoingFailed(r, "permanent", "Incorrect extended header size");
});

Deno.test('O14 outgoing: reply ExBlock with a bad CRC fails TRANSIENT "Extended header CRC error"', async () => {
  const r = await dial(answers(flipBit(replyFrame({ Success: success() }))));
  assertOutgoingFailed(r, "transient", "Extended header CRC error");
});

Deno.test('O15 outgoing: a reply that does not parse (Success without SenderActorId) fails PERMANENT "Incorrect THandshakeReply"', async () => {
  const noSender = pb.bytes(
    1,
    concat(
      pb.varint(1, 2),
      pb.varint(2, 1002),
      pb.varint(3, 5002),
      pb.varint(4, B.localId),
      pb.bytes(8, pb.bytes(1, "")),
      pb.varint(9, 0),
      pb.varint(11, 1),
      pb.varint(12, 0),
    ),
  );
  for (const payload of [noSender, Uint8Array.of(0xff, 0xff, 0xff)]) {
    const r = await dial(answers(rawFrame(payload)));
    assertOutgoingFailed(r, "permanent", "Incorrect THandshakeReply");
  }
});

Deno.test('O16 outgoing: reply with ErrorExplaination fails PERMANENT "error from peer: <text>"', async () => {
  const r = await dial(answers(E.E3)); // golden vector: ErrorExplaination = "duplicate serial"
  assertOutgoingFailed(r, "permanent", "error from peer: duplicate serial");
});

Deno.test('O17 outgoing: reply without Success fails PERMANENT "empty reply"', async () => {
  for (const frame of [E.E5, E.E1]) { // empty payload; CookieCheckResult only
    const r = await dial(answers(frame));
    assertOutgoingFailed(r, "permanent", "empty reply");
  }
});

Deno.test('O18 outgoing: ClusterUUID check of Success fails PERMANENT "Peer ClusterUUID# X mismatch, AcceptUUID# [..]"', async () => {
  const settings = { clusterUUID: "u1", acceptUUID: ["u1", "u0"] };
  const r = await dial(
    answers({ Success: success({ ClusterUUIDs: { ClusterUUID: "u2", AcceptUUID: ["u2"] } }) }),
    { settings },
  );
  assertOutgoingFailed(r, "permanent", "Peer ClusterUUID# u2 mismatch, AcceptUUID# [u1 u0]");
  // The same Success accepting our UUID passes; no ClusterUUIDs at all passes on this side.
  for (const ClusterUUIDs of [{ ClusterUUID: "u2", AcceptUUID: ["u1"] }, undefined]) {
    done((await dial(answers({ Success: success({ ClusterUUIDs }) }), { settings })).outcome);
  }
});

Deno.test('O19 outgoing: version-tag check of Success fails PERMANENT "local/peer version tags did not match accepted ones ..."', async () => {
  const r = await dial(
    answers({ Success: success({ VersionTag: "v9", AcceptedVersionTags: ["v9", "v8"] }) }),
    { settings: { versionTag: "v1", acceptedVersionTags: ["v1", "v0"] } },
  );
  assertOutgoingFailed(
    r,
    "permanent",
    "local/peer version tags did not match accepted ones local Tag# v1 accepted Tags# [v0 v1]" +
      " peer Tag# v9 accepted Tags# [v9 v8]",
  );
});

Deno.test("O20 outgoing: TLS establishment error fails PERMANENT (network) with the TLS text", async () => {
  const junk = new TextEncoder().encode("HTTP/1.1 400");
  const r = await dial(answers({ Success: success({ StartEncryption: true }) }, junk), {
    settings: { encryption: "optional" },
  });
  assertOutgoingFailed(r, "permanent", "SSL error: wrong version number", { network: true });
});

Deno.test('O21 outgoing: encryption not negotiated while REQUIRED (not AuthOnly) fails PERMANENT "Peer doesn\'t support encryption, which is required"', async () => {
  for (const AuthOnly of [false, true]) {
    const r = await dial(answers({ Success: success({ StartEncryption: false, AuthOnly }) }), {
      settings: { encryption: "required" },
    });
    assertOutgoingFailed(r, "permanent", "Peer doesn't support encryption, which is required");
  }
});

Deno.test("outgoing: a poisoned or timed-out handshake must not go on to dial and complete in the background", async () => {
  // The handshake ends (poison pill, or the overall deadline) while resolve is pending, and the
  // resolve answers afterwards. Expected (C++: the actor is dead): nothing more happens.
  // lib/handshake/handshake.ts HandshakeActor.run() returns its outcome but leaves the body
  // running: it dials node 2, runs a whole new-session handshake (node 2 reports "done" and
  // would create a session), and nobody closes either transport.
  for (const trigger of ["poison", "deadline"] as const) {
    const { net, nodes } = testCluster({ 1: {}, 2: {} });
    let answer!: (a: ResolvedAddress) => void;
    const asked = new Promise<void>((ready) => {
      nodes[1].resolveOverride = () =>
        new Promise((resolve) => {
          answer = resolve;
          ready();
        });
    });
    const poison = new AbortController();
    const pending = nodes[1].dial(
      2,
      trigger === "poison" ? { signal: poison.signal } : { deadlineMs: 10 },
    );
    await asked;
    if (trigger === "poison") poison.abort();
    const outcome = await pending;
    if (trigger === "poison") assert.equal(silent(outcome).reason, "poisoned");
    else {assert.equal(
        failed(outcome).failure.explanation,
        "Handshake timed out, State# ResolvePeer",
      );}
    answer({ address: "mem-2", port: 19001 }); // the resolve ignored the abort signal
    await new Promise((r) => setTimeout(r, 20));
    const leaked = net.transports.filter((t) => !t.closed).length;
    for (const t of net.transports) t.close(); // clean up either way
    await Promise.all(nodes[2].incoming);
    assert.equal(nodes[2].incoming.length, 0, `${trigger}: the ended handshake dialed the peer`);
    assert.equal(leaked, 0, `${trigger}: transports left open`);
  }
});

// =============================================================================================
// 4.2 Incoming side

Deno.test('I2 incoming: initial packet with a bad CRC fails TRANSIENT "Initial packet CRC error", no reply', async () => {
  const r = await accept([flipBit(V.V1)]);
  assertIncomingFailed(r, "transient", "Initial packet CRC error", {
    peerNodeId: 0,
    written: new Uint8Array(0),
  });
});

Deno.test('I3 incoming: Version 7 fails PERMANENT "Incompatible protocol 7", no reply', async () => {
  const r = await accept([initialPacket(A, ActorId.EMPTY, 0n, 7n)]);
  assertIncomingFailed(r, "permanent", "Incompatible protocol 7", {
    peerNodeId: 0,
    written: new Uint8Array(0),
  });
});

Deno.test('I4 incoming: node id 0 in Self fails PERMANENT "SelfVirtualId.NodeId is empty in initial packet" with peerNodeId 0', async () => {
  // The nameservice service id (node 0) and an id with only pool bits set: both have node 0.
  for (const self of [ActorId.service(0, "namesvc"), new ActorId(5n, 0, 0x7ff00000)]) {
    const r = await accept([initialPacket(self)]);
    assertIncomingFailed(r, "permanent", "SelfVirtualId.NodeId is empty in initial packet", {
      peerNodeId: 0,
      written: new Uint8Array(0),
    });
  }
});

Deno.test("I5 incoming continuation: proxy Nak ends silent and sends the all-zero initial packet (V2)", async () => {
  const asks: ContinuationAsk[] = [];
  const r = await accept([V.V3], {
    setup: (node) =>
      node.continuationDecision = (ask) => {
        asks.push(ask);
        return Promise.resolve({ kind: "nak" });
      },
  });
  const s = silent(r.outcome);
  assert.equal(s.peerNodeId, 1);
  assert.equal(toHex(r.written), vectors.initialPackets.find((v) => v.name === "V2")!.hex);
  assert.equal(asks.length, 1);
  assert.ok(asks[0].self.equals(A));
  assert.ok(asks[0].peer.equals(B));
  assert.equal(asks[0].counter, 42n);
  assert.ok(r.transport.closed);
});

Deno.test("I6 incoming: ExBlock Size above 1 MiB fails PERMANENT, a bad ExBlock CRC fails TRANSIENT, no reply", async () => {
  const big = await accept([V.V1, exBlockHeader((1 << 20) + 1)], { deadlineMs: 10_000 });
  assertIncomingFailed(big, "permanent", "Incorrect extended header size", {
    peerNodeId: 1,
    written: V.V2,
  });
  const crc = await accept([V.V1, flipBit(requestFrame(request()))]);
  assertIncomingFailed(crc, "transient", "Extended header CRC error", {
    peerNodeId: 1,
    written: V.V2,
  });
});

Deno.test('I7 incoming: a request without SenderActorId fails PERMANENT "Incorrect THandshakeRequest", no reply', async () => {
  const noSender = concat(
    pb.varint(1, 2),
    pb.varint(2, 1001),
    pb.varint(3, 5001),
    pb.varint(4, A.localId),
    pb.varint(5, 2),
    pb.bytes(7, "host-1"),
    pb.bytes(8, "host-2"),
    pb.bytes(13, pb.bytes(1, "")),
    pb.varint(18, 1),
    pb.varint(19, 0),
  );
  const r = await accept([V.V1, rawFrame(noSender)]);
  assertIncomingFailed(r, "permanent", "Incorrect THandshakeRequest", {
    peerNodeId: 1,
    written: V.V2,
  });
});

Deno.test("I8 incoming: DoCheckCookie answers CookieCheckResult only (E1/E2) and ends silent", async () => {
  for (const [cookie, answer] of [["abc", E.E1], ["xyz", E.E2]] as const) {
    // V5 + E4: node 2's "cookie check" sub-connection asks node 1 about cookie "abc".
    const r = await accept([V.V5, E.E4], { self: 1, settings: { cookie } });
    const s = silent(r.outcome);
    assert.equal(s.peerNodeId, 2);
    assert.equal(toHex(r.written), toHex(concat(V.V2, answer)));
    assert.equal(r.node.requests.length, 0, "the proxy is not asked");
  }
});

Deno.test('I9 incoming: a failed cookie connect-back sends the error reply "Peer connectivity-checking failed, error# <inner>"', async () => {
  const cookieRequest = [V.V1, requestFrame(request({ Cookie: "c1" }))];
  // Nobody listens where node 2's table says node 1 is.
  const refused = await accept(cookieRequest);
  assertRejectedWithReply(
    refused,
    "Peer connectivity-checking failed, error# Connection failed: Connection refused",
    "<unknown>", // PeerHostName is taken from the request only after the cookie step
  );

  // Something answers there, but its reply does not parse.
  let impostor: ScriptedPeer[] = [];
  const garbled = await accept(cookieRequest, {
    setup: (_node, net) => {
      impostor = scriptedListener(net, "mem-1:19001", answers(rawFrame(Uint8Array.of(0x0a, 0x05))));
    },
  });
  assertRejectedWithReply(
    garbled,
    "Peer connectivity-checking failed, error# Incorrect packet from peer",
    "<unknown>",
  );
  assert.equal(impostor.length, 1);
  assert.ok(impostor[0].remoteClosed, "the sub-connection was closed");
  const sub = await impostor[0].untilClosed();
  assert.equal(toHex(sub.subarray(0, 52)), toHex(V.V5), "connect-back from the cookie check id");
  const asked = decodeHandshakeRequest(decodeExBlock(sub.subarray(52)).payload);
  assert.equal(asked.Cookie, "c1");
  assert.equal(asked.DoCheckCookie, true);

  // It answers CookieCheckResult = false.
  const wrong = await accept(cookieRequest, {
    setup: (_node, net) => void scriptedListener(net, "mem-1:19001", answers(E.E2)),
  });
  assertRejectedWithReply(
    wrong,
    "Peer connectivity-checking failed, error# Cookie check error -- possible network problem",
    "<unknown>",
  );
});

Deno.test('I10 incoming: ClusterUUID check sends the error reply "Peer ClusterUUID# X mismatch, AcceptUUID# [..]" (ClusterUUIDs and legacy UUID)', async () => {
  const settings = { clusterUUID: "u2", acceptUUID: ["u2", "u3"] };
  const symmetric = await accept(
    [V.V1, requestFrame(request({ ClusterUUIDs: { ClusterUUID: "u1", AcceptUUID: ["u1"] } }))],
    { settings },
  );
  assertRejectedWithReply(symmetric, "Peer ClusterUUID# u1 mismatch, AcceptUUID# [u2 u3]");

  // Without ClusterUUIDs the incoming side checks the legacy UUID field ("" when absent).
  const legacy = await accept(
    [V.V1, requestFrame(request({ ClusterUUIDs: undefined, UUID: "u1" }))],
    { settings },
  );
  assertRejectedWithReply(legacy, "Peer ClusterUUID# u1 mismatch, AcceptUUID# [u2 u3]");
  const none = await accept([V.V1, requestFrame(request({ ClusterUUIDs: undefined }))], {
    settings,
  });
  assertRejectedWithReply(none, "Peer ClusterUUID#  mismatch, AcceptUUID# [u2 u3]");
  const legacyOk = await accept(
    [V.V1, requestFrame(request({ ClusterUUIDs: undefined, UUID: "u3" }))],
    { settings },
  );
  done(legacyOk.outcome);
});

Deno.test('I11 incoming: ReceiverNodeId mismatch sends the error reply "Incorrect ReceiverNodeId# R from the peer, expected# S"', async () => {
  const r = await accept([V.V1, requestFrame(request({ ReceiverNodeId: 3 }))]);
  assertRejectedWithReply(r, "Incorrect ReceiverNodeId# 3 from the peer, expected# 2");
});

Deno.test('I12 incoming rejects ReceiverHostName mismatch with an error reply "ReceiverHostName# X mismatch, expected# Y"', async () => {
  const r = await accept([V.V1, requestFrame(request({ ReceiverHostName: "host-b" }))]);
  assertRejectedWithReply(r, "ReceiverHostName# host-b mismatch, expected# host-2");
  const absent = await accept([V.V1, requestFrame(request({ ReceiverHostName: undefined }))]);
  assertRejectedWithReply(absent, "ReceiverHostName#  mismatch, expected# host-2");
});

Deno.test("I13 incoming: version-tag check sends the error reply with both tags and both accepted lists", async () => {
  const r = await accept(
    [V.V1, requestFrame(request({ VersionTag: "v1", AcceptedVersionTags: ["v1", "v0"] }))],
    { settings: { versionTag: "v2", acceptedVersionTags: ["v3", "v2"] } },
  );
  assertRejectedWithReply(
    r,
    "local/peer version tags did not match accepted ones local Tag# v2 accepted Tags# [v2 v3]" +
      " peer Tag# v1 accepted Tags# [v1 v0]",
  );
});

Deno.test('I14 incoming: peer unknown to the nameservice sends the error reply "Peer node not registered in nameservice"', async () => {
  const r = await accept([V.V1, requestFrame(request())], { table: testTable(2) });
  assertRejectedWithReply(r, "Peer node not registered in nameservice");
});

Deno.test('I15 incoming: nameservice Host != SenderHostName sends the error reply "SenderHostName mismatch"', async () => {
  const r = await accept([V.V1, requestFrame(request({ SenderHostName: "host-x" }))]);
  assertRejectedWithReply(r, "SenderHostName mismatch", "host-x");
});

Deno.test('I16 incoming: local DISABLED and RequireEncryption = true sends the error reply "Peer requested encryption, but it is disabled locally"', async () => {
  const r = await accept([V.V1, requestFrame(request({ RequireEncryption: true }))]);
  assertRejectedWithReply(r, "Peer requested encryption, but it is disabled locally");
});

Deno.test('I17 incoming: local REQUIRED and RequireEncryption absent sends the error reply "Peer did not request encryption, but it is required locally"', async () => {
  const r = await accept([V.V1, requestFrame(request())], {
    settings: { encryption: "required" },
  });
  assertRejectedWithReply(r, "Peer did not request encryption, but it is required locally");
});

Deno.test("I10-I17 incoming: with several checks failing, the first in spec order wins", async () => {
  const settings: Partial<HandshakeSettings> = {
    clusterUUID: "u2",
    acceptUUID: ["u2"],
    versionTag: "v2",
    acceptedVersionTags: ["v2"],
    encryption: "required",
  };
  const violations: Array<[Partial<HandshakeRequest>, string]> = [
    [{ ClusterUUIDs: { ClusterUUID: "u1" } }, "Peer ClusterUUID# u1 mismatch, AcceptUUID# [u2]"],
    [{ ReceiverNodeId: 9 }, "Incorrect ReceiverNodeId# 9 from the peer, expected# 2"],
    [{ ReceiverHostName: "nope" }, "ReceiverHostName# nope mismatch, expected# host-2"],
    [
      { VersionTag: "v1" },
      "local/peer version tags did not match accepted ones local Tag# v2 accepted Tags# [v2]" +
      " peer Tag# v1 accepted Tags# []",
    ],
    [{ SenderHostName: "host-x" }, "SenderHostName mismatch"],
  ];
  const bad: Partial<HandshakeRequest> = Object.assign({}, ...violations.map(([v]) => v));
  for (const [fix, gist] of violations) {
    const r = await accept([V.V1, requestFrame(request(bad))], { settings });
    assertRejectedWithReply(r, gist, bad.SenderHostName ?? "host-1");
    // Fix this violation for the next round.
    for (const key of Object.keys(fix) as Array<keyof HandshakeRequest>) delete bad[key];
    if ("ClusterUUIDs" in fix) bad.ClusterUUIDs = { ClusterUUID: "u2" };
  }
  // Only the encryption check is left (I17).
  const last = await accept([V.V1, requestFrame(request(bad))], { settings });
  assertRejectedWithReply(last, "Peer did not request encryption, but it is required locally");
});

Deno.test("I18/I19 incoming (proxy): a proxy ReplyError is forwarded as the ExBlock error reply and the handshake ends silent", async () => {
  const r = await accept([V.V1, requestFrame(request())], {
    setup: (node) =>
      node.newSessionDecision = () =>
        Promise.resolve({ kind: "error", explanation: "duplicate serial" }),
  });
  const s = silent(r.outcome);
  assert.equal(s.peerNodeId, 1);
  assert.equal(toHex(r.written), toHex(concat(V.V2, E.E3))); // E3: "duplicate serial"
  assert.ok(r.transport.closed);
});

Deno.test("I20/I21/I22 incoming (proxy): a proxy poison closes the connection without a reply", async () => {
  const r = await accept([V.V1, requestFrame(request())], {
    setup: (node) =>
      node.newSessionDecision = () => Promise.resolve({ kind: "poison", reason: "too old" }),
  });
  assert.equal(silent(r.outcome).reason, "too old");
  assert.equal(toHex(r.written), toHex(V.V2), "nothing after the initial packet");
  assert.ok(r.transport.closed);

  // A held reply (6.2) that ends in a poison pill: the run's signal.
  const poison = new AbortController();
  let asked!: () => void;
  const askedP = new Promise<void>((r) => (asked = r));
  const held = accept([V.V1, requestFrame(request())], {
    signal: poison.signal,
    setup: (node) =>
      node.newSessionDecision = () => {
        asked();
        return new Promise(() => {}); // held forever
      },
  });
  await askedP;
  poison.abort();
  const h = await held;
  assert.equal(silent(h.outcome).reason, "poisoned");
  assert.equal(toHex(h.written), toHex(V.V2));
  assert.ok(h.transport.closed);
});

Deno.test("I23 incoming: TLS error fails PERMANENT (network) with the TLS text, no error reply", async () => {
  const junk = new TextEncoder().encode("HTTP/1.1 400");
  const r = await accept([V.V1, requestFrame(request({ RequireEncryption: false })), junk], {
    settings: { encryption: "optional" },
    startTls: fakeTls(2),
  });
  const { peerNodeId, failure } = failed(r.outcome);
  assert.equal(peerNodeId, 1);
  assert.equal(failure.class, "permanent");
  assert.equal(failure.network, true);
  assert.equal(failure.errorReplySent, false);
  assert.equal(failure.explanation, "SSL error: wrong version number");
  assert.equal(
    failure.message,
    `incoming handshake Peer# host-1(${PEER_ADDR}) SSL error: wrong version number`,
  );
  // The peer got V2 and a Success with StartEncryption, then the TLS bytes: no error reply.
  assert.equal(toHex(r.written.subarray(0, 52)), toHex(V.V2));
  const frame = decodeExBlock(r.written.subarray(52));
  const reply = decodeHandshakeReply(frame.payload);
  assert.equal(reply.ErrorExplaination, undefined);
  assert.equal(reply.Success?.StartEncryption, true);
  assert.equal(r.written.length, 52 + frame.consumed + 12, "only the fake TLS record follows");
});

Deno.test('I24 incoming: overall deadline fails TRANSIENT "Handshake timed out, State# <state>" and closes the transport', async () => {
  const cases: Array<[Uint8Array[], AcceptOptions, string, number, string, Uint8Array]> = [
    [[], {}, "ReceiveRequest", 0, "<unknown>", new Uint8Array(0)],
    [[V.V1], {}, "ReceiveExRequestHeader", 1, "<unknown>", V.V2],
    [
      [V.V1, requestFrame(request())],
      { setup: (node) => node.newSessionDecision = () => new Promise(() => {}) },
      "AskProxy(TEvHandshakeRequest)",
      1,
      "host-1",
      V.V2,
    ],
  ];
  for (const [input, opts, state, peerNodeId, host, written] of cases) {
    const r = await accept(input, { ...opts, deadlineMs: 150 });
    assertIncomingFailed(r, "transient", `Handshake timed out, State# ${state}`, {
      peerNodeId,
      host,
      network: true,
      written,
    });
  }
});

// =============================================================================================
// 4.3 Policy checks as pure functions

Deno.test("4.3 ClusterUUID: an empty local AcceptUUID list accepts every peer (promiscuous)", () => {
  const local = { clusterUUID: "mine", acceptUUID: [] };
  assert.equal(checkClusterUUID(local, { ClusterUUID: "other", AcceptUUID: ["x"] }), undefined);
  assert.equal(checkClusterUUID(local, undefined), undefined);
  assert.equal(checkClusterUUID(local, undefined, "other"), undefined);
});

Deno.test("4.3 ClusterUUID symmetric: accept if the peer accepts our UUID or we accept the peer's", () => {
  const local = { clusterUUID: "a", acceptUUID: ["a", "b"] };
  assert.equal(checkClusterUUID(local, { ClusterUUID: "b" }), undefined);
  assert.equal(checkClusterUUID(local, { ClusterUUID: "z", AcceptUUID: ["y", "a"] }), undefined);
  assert.equal(
    checkClusterUUID(local, { ClusterUUID: "z", AcceptUUID: ["y"] }),
    "Peer ClusterUUID# z mismatch, AcceptUUID# [a b]",
  );
  // ClusterUUIDs present but its ClusterUUID absent reads as "".
  assert.equal(
    checkClusterUUID(local, {}),
    "Peer ClusterUUID#  mismatch, AcceptUUID# [a b]",
  );
  assert.equal(checkClusterUUID({ clusterUUID: "a", acceptUUID: [""] }, {}), undefined);
});

Deno.test("4.3 ClusterUUID legacy: without ClusterUUIDs the incoming side checks UUID, the outgoing side accepts", () => {
  const local = { clusterUUID: "a", acceptUUID: ["a", "b"] };
  // incoming: the legacy UUID ("" when absent) must be in the list
  assert.equal(checkClusterUUID(local, undefined, "b"), undefined);
  assert.equal(
    checkClusterUUID(local, undefined, "c"),
    "Peer ClusterUUID# c mismatch, AcceptUUID# [a b]",
  );
  assert.equal(
    checkClusterUUID(local, undefined, ""),
    "Peer ClusterUUID#  mismatch, AcceptUUID# [a b]",
  );
  // outgoing: no legacy argument, absent ClusterUUIDs is accepted
  assert.equal(checkClusterUUID(local, undefined), undefined);
});

Deno.test("4.3 version tag: no local tag configured skips the check", () => {
  assert.deepEqual(
    checkVersionTag({ acceptedVersionTags: [] }, { VersionTag: "x", AcceptedVersionTags: [] }),
    { ok: true, peerReportedNoTag: false },
  );
});

Deno.test("4.3 version tag: a peer without a tag is accepted and flagged for ICH06", () => {
  assert.deepEqual(
    checkVersionTag({ versionTag: "v1", acceptedVersionTags: ["v1"] }, {}),
    { ok: true, peerReportedNoTag: true },
  );
});

Deno.test("4.3 version tag: peer tag in our accepted set, or our tag in the peer's list, is accepted", () => {
  const local = { versionTag: "v2", acceptedVersionTags: ["v1", "v2"] };
  assert.deepEqual(checkVersionTag(local, { VersionTag: "v1" }), {
    ok: true,
    peerReportedNoTag: false,
  });
  assert.deepEqual(
    checkVersionTag(local, { VersionTag: "v9", AcceptedVersionTags: ["v8", "v2"] }),
    { ok: true, peerReportedNoTag: false },
  );
});

Deno.test("4.3 version tag: failure prints the local accepted tags in sorted (bytewise) order, the peer's as sent", () => {
  const verdict = checkVersionTag(
    { versionTag: "v3", acceptedVersionTags: ["v3", "v10", "v2", "v3"] },
    { VersionTag: "v9", AcceptedVersionTags: ["b", "a"] },
  );
  assert.deepEqual(verdict, {
    ok: false,
    explanation: "local/peer version tags did not match accepted ones local Tag# v3" +
      " accepted Tags# [v10 v2 v3] peer Tag# v9 accepted Tags# [b a]",
  });
  // Bytewise, not locale order: "é" (0xC3 0xA9) sorts after "z".
  assert.deepEqual(sortedTags(["é", "z", "a", "Z"]), ["Z", "a", "z", "é"]);
});

Deno.test("4.3 version tag: an empty local accepted set does NOT accept everything", () => {
  const local = { versionTag: "v1", acceptedVersionTags: [] };
  assert.deepEqual(checkVersionTag(local, { VersionTag: "v2", AcceptedVersionTags: [] }), {
    ok: false,
    explanation: "local/peer version tags did not match accepted ones local Tag# v1" +
      " accepted Tags# [] peer Tag# v2 accepted Tags# []",
  });
  // Even the peer's tag equal to ours is refused unless one side lists it.
  assert.equal(checkVersionTag(local, { VersionTag: "v1" }).ok, false);
  // It falls through to the peer's list.
  assert.equal(checkVersionTag(local, { VersionTag: "v2", AcceptedVersionTags: ["v1"] }).ok, true);
});
