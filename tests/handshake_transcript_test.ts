/**
 * Byte transcripts against the golden vectors of spec 2.4. Each direction is checked on its
 * own: a scripted peer replays the vector bytes of the other side and records every byte the
 * code under test writes, which must equal the vectors exactly.
 *
 * Inputs of the vectors: node 1 = host-a, PID 12345, StartTime 1000000, virtual id A;
 * node 2 = host-b, PID 23456, StartTime 2000000, virtual id B; no cookie, UUID, version tag or
 * scope; encryption disabled (E6) or optional (E8).
 */
import assert from "node:assert/strict";
import { ActorId } from "../lib/wire/actor_id.ts";
import {
  decodeExBlock,
  decodeHandshakeRequest,
  encodeExBlock,
  encodeHandshakeRequest,
  type HandshakeRequest,
} from "../lib/wire/mod.ts";
import { runIncomingHandshake, runOutgoingHandshake } from "../lib/handshake/handshake.ts";
import type {
  ContinuationAsk,
  HandshakeOutcome,
  HandshakeSettings,
  NodeInfo,
  OutgoingParams,
  SessionParams,
} from "../lib/handshake/types.ts";
import { MemoryNet, TestNode, testSettings } from "./_helpers/memory_net.ts";
import { A, B, done, E, scriptedListener, scriptedPair, V } from "./_helpers/scripted_peer.ts";
import { toHex, vectors } from "./_helpers/vectors.ts";

const hex = {
  V: Object.fromEntries(vectors.initialPackets.map((v) => [v.name, v.hex])),
  E: Object.fromEntries(vectors.exBlocks.map((e) => [e.name, e.frameHex])),
};

function settingsA(over: Partial<HandshakeSettings> = {}): HandshakeSettings {
  return testSettings(1, {
    selfHostName: "host-a",
    programPid: 12345n,
    programStartTime: 1000000n,
    ...over,
  });
}

function settingsB(over: Partial<HandshakeSettings> = {}): HandshakeSettings {
  return testSettings(2, {
    selfHostName: "host-b",
    programPid: 23456n,
    programStartTime: 2000000n,
    ...over,
  });
}

const table = new Map<number, NodeInfo>([
  [1, { nodeId: 1, host: "host-a", address: "mem-a", port: 19001 }],
  [2, { nodeId: 2, host: "host-b", address: "mem-b", port: 19001 }],
]);

const plain: SessionParams = {
  encryption: false,
  useModernFrame: true,
  authOnly: false,
  authCN: "",
  peerScopeId: [0n, 0n],
};

const newSession: OutgoingParams = {
  peerNodeId: 2,
  peerHostName: "host-b",
  selfVirtualId: A,
  peerVirtualId: ActorId.EMPTY,
  nextPacket: 0n,
};

/** Node 1 dials a scripted node 2 that replays `reply`; returns the outcome and node 1's bytes. */
async function outgoingTranscript(
  settings: HandshakeSettings,
  params: OutgoingParams,
  ...reply: Uint8Array[]
): Promise<{ outcome: HandshakeOutcome; written: string }> {
  const net = new MemoryNet();
  const node1 = new TestNode(net, settings, table);
  const peers = scriptedListener(net, "mem-b:19001", (p) => p.send(...reply));
  const outcome = await runOutgoingHandshake(settings, node1.env, params, { deadlineMs: 2000 });
  if (outcome.kind === "done") outcome.transport.close();
  assert.equal(peers.length, 1);
  return { outcome, written: toHex(await peers[0].untilClosed()) };
}

/** A scripted node 1 sends `input` to node 2's incoming side; returns node 2's bytes. */
async function incomingTranscript(
  node2: TestNode,
  ...input: Uint8Array[]
): Promise<{ outcome: HandshakeOutcome; written: string }> {
  const { peer, transport } = scriptedPair({ peerAddress: "mem-a:40001" });
  await peer.send(...input);
  const outcome = await runIncomingHandshake(node2.settings, node2.env, transport, {
    deadlineMs: 2000,
  });
  if (outcome.kind === "done") outcome.transport.close();
  return { outcome, written: toHex(await peer.untilClosed()) };
}

function nodeB(net = new MemoryNet(), over: Partial<HandshakeSettings> = {}): TestNode {
  const node = new TestNode(net, settingsB(over), table);
  node.newSessionDecision = () => Promise.resolve({ kind: "ok", selfVirtualId: B });
  return node;
}

Deno.test("transcript outgoing, encryption disabled: writes exactly V1 then the E6 frame, and takes V2 + E7", async () => {
  const { outcome, written } = await outgoingTranscript(settingsA(), newSession, V.V2, E.E7);
  assert.equal(written, hex.V.V1 + hex.E.E6);
  const d = done(outcome);
  assert.ok(d.selfVirtualId.equals(A));
  assert.ok(d.peerVirtualId.equals(B));
  assert.equal(d.nextPacketFromPeer, 0n);
  assert.deepEqual(d.programInfo, { pid: 23456n, startTime: 2000000n, serial: B.localId });
  assert.deepEqual(d.params, plain);
  assert.equal(d.peerHostName, "host-b");
});

Deno.test("transcript outgoing, encryption optional: writes exactly V1 then the E8 frame (RequireEncryption present = false)", async () => {
  const { outcome, written } = await outgoingTranscript(
    settingsA({ encryption: "optional" }),
    newSession,
    V.V2,
    E.E7,
  );
  assert.equal(written, hex.V.V1 + hex.E.E8);
  // E7 answers StartEncryption = false: an OPTIONAL initiator goes on in plain TCP.
  assert.deepEqual(done(outcome).params, plain);
});

Deno.test("transcript incoming: V1 + E6 in gives exactly V2 then the E7 frame out", async () => {
  const node2 = nodeB();
  const { outcome, written } = await incomingTranscript(node2, V.V1, E.E6);
  assert.equal(written, hex.V.V2 + hex.E.E7);
  const d = done(outcome);
  assert.ok(d.selfVirtualId.equals(B));
  assert.ok(d.peerVirtualId.equals(A));
  assert.equal(d.peerNodeId, 1);
  assert.equal(d.peerHostName, "host-a");
  assert.deepEqual(d.programInfo, { pid: 12345n, startTime: 1000000n, serial: A.localId });
  assert.deepEqual(d.params, plain);
  // The proxy saw the request as decoded from E6.
  const expected: HandshakeRequest = {
    Protocol: 2n,
    ProgramPID: 12345n,
    ProgramStartTime: 1000000n,
    Serial: A.localId,
    ReceiverNodeId: 2,
    SenderActorId: "[1:7061644215716937729:0]",
    SenderHostName: "host-a",
    ReceiverHostName: "host-b",
    ClusterUUIDs: { ClusterUUID: "" },
    RequestModernFrame: true,
    RequestAuthOnly: false,
  };
  assert.deepEqual(node2.requests, [expected]);
});

Deno.test("transcript incoming: V1 + E8 in, at a DISABLED acceptor, gives the same V2 + E7 out", async () => {
  const node2 = nodeB();
  const { outcome, written } = await incomingTranscript(node2, V.V1, E.E8);
  assert.equal(written, hex.V.V2 + hex.E.E7);
  assert.equal(done(outcome).params.encryption, false);
  assert.equal(node2.requests[0].RequireEncryption, false);
});

Deno.test("transcript continuation incoming: V3 in gives exactly V4 out with a proxy Ack (Self = B, NextPacket 17)", async () => {
  const node2 = nodeB();
  const asks: ContinuationAsk[] = [];
  node2.continuationDecision = (ask) => {
    asks.push(ask);
    return Promise.resolve({ kind: "ack", self: B, nextPacket: 17n, params: plain });
  };
  const { outcome, written } = await incomingTranscript(node2, V.V3);
  assert.equal(written, hex.V.V4);
  const d = done(outcome);
  assert.ok(d.selfVirtualId.equals(B));
  assert.ok(d.peerVirtualId.equals(A));
  assert.equal(d.nextPacketFromPeer, 42n);
  assert.equal(d.programInfo, null);
  assert.deepEqual(d.params, plain);
  assert.equal(asks.length, 1);
  assert.ok(asks[0].self.equals(A) && asks[0].peer.equals(B));
  assert.equal(asks[0].counter, 42n);
  assert.equal(node2.requests.length, 0, "no ExBlock on continuation");
});

Deno.test("transcript continuation outgoing: writes exactly V3 and takes V4", async () => {
  const { outcome, written } = await outgoingTranscript(settingsA(), {
    ...newSession,
    peerVirtualId: B,
    nextPacket: 42n,
    sessionParams: plain,
  }, V.V4);
  assert.equal(written, hex.V.V3);
  const d = done(outcome);
  assert.ok(d.selfVirtualId.equals(A));
  assert.ok(d.peerVirtualId.equals(B));
  assert.equal(d.nextPacketFromPeer, 17n);
  assert.equal(d.programInfo, null);
  assert.deepEqual(d.params, plain);
});

Deno.test("transcript cookie connect-back: the checking side writes exactly V5 then the E4 frame, takes V2 + E1, then answers E7", async () => {
  const net = new MemoryNet();
  const node2 = nodeB(net);
  // Node 1 as node 2's table knows it (mem-a:19001) is scripted: it answers the check with E1.
  const checks = scriptedListener(net, "mem-a:19001", (p) => p.send(V.V2, E.E1));
  // The main request: E6 plus Cookie "abc" (field 16).
  const e6 = decodeHandshakeRequest(decodeExBlock(E.E6).payload);
  const withCookie = encodeExBlock(encodeHandshakeRequest({ ...e6, Cookie: "abc" }));
  const { outcome, written } = await incomingTranscript(node2, V.V1, withCookie);
  assert.equal(written, hex.V.V2 + hex.E.E7);
  done(outcome);
  assert.equal(checks.length, 1);
  assert.ok(checks[0].remoteClosed, "the sub-connection was closed");
  assert.equal(toHex(await checks[0].untilClosed()), hex.V.V5 + hex.E.E4);
});
