/**
 * Scripted hostile peers against both handshake procedures: corrupt and oversized frames,
 * messages the proto2 parser must refuse, malformed actor ids, truncated streams, and two
 * deterministic fuzz passes. Every case must end in a typed outcome (never an internal error,
 * never a crash) and never cost more than the 1 MiB ExBlock bound.
 */
import assert from "node:assert/strict";
import { ActorId } from "../lib/wire/actor_id.ts";
import {
  decodeExBlock,
  decodeHandshakeReply,
  encodeHandshakeRequest,
  EXBLOCK_MAX_SIZE,
} from "../lib/wire/mod.ts";
import type { HandshakeOutcome } from "../lib/handshake/types.ts";
import {
  A,
  accept,
  answers,
  assertIncomingFailed,
  assertOutgoingFailed,
  assertRejectedWithReply,
  B,
  concat,
  dial,
  done,
  exBlockHeader,
  failed,
  flipBit,
  initialPacket,
  pb,
  rawFrame,
  replyFrame,
  request,
  requestFrame,
  success,
  V,
} from "./_helpers/scripted_peer.ts";
import { toHex } from "./_helpers/vectors.ts";

const NOTHING = new Uint8Array(0);

/** Every outcome must be one of the typed kinds; a failure must not be an internal error. */
function assertTyped(o: HandshakeOutcome, what: string): void {
  assert.ok(["done", "failed", "silent"].includes(o.kind), what);
  if (o.kind === "failed") {
    assert.ok(
      ["transient", "permanent", "session_mismatch"].includes(o.failure.class),
      `${what}: class ${o.failure.class}`,
    );
    assert.doesNotMatch(o.failure.explanation, /internal error/, what);
    assert.ok(o.failure.message.endsWith(o.failure.explanation), what);
  }
}

/** A tiny deterministic PRNG (xorshift32). */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

// ---------------------------------------------------------------------------------------------
// Initial packet

Deno.test('hostile: a flipped bit anywhere in the 52-byte initial packet fails TRANSIENT "Initial packet CRC error" on both sides', async () => {
  for (const i of [0, 12, 15, 16, 31, 32, 39, 40, 47, 48, 51]) {
    const inc = await accept([flipBit(V.V1, i)]);
    assertIncomingFailed(inc, "transient", "Initial packet CRC error", {
      peerNodeId: 0,
      written: NOTHING,
    });
    const out = await dial((p) => p.send(flipBit(V.V2, i)));
    assertOutgoingFailed(out, "transient", "Initial packet CRC error");
  }
});

Deno.test('hostile: versions other than 2 (0, 1, 3, 7, 2^64-1) fail PERMANENT "Incompatible protocol N" on both sides', async () => {
  for (const version of [0n, 1n, 3n, 7n, (1n << 64n) - 1n]) {
    const inc = await accept([initialPacket(A, ActorId.EMPTY, 0n, version)]);
    assertIncomingFailed(inc, "permanent", `Incompatible protocol ${version}`, {
      peerNodeId: 0,
      written: NOTHING,
    });
    const out = await dial((p) => p.send(initialPacket(ActorId.EMPTY, ActorId.EMPTY, 0n, version)));
    assertOutgoingFailed(out, "permanent", `Incompatible protocol ${version}`);
  }
});

Deno.test("hostile incoming: a Self whose 20-bit node id is 0 fails PERMANENT with peerNodeId 0, whatever the other bits", async () => {
  const ids = [
    ActorId.EMPTY, // all zero (and Peer zero: would otherwise look like a new session)
    new ActorId(0n, 0, 0x80000000), // service flag only
    new ActorId(0n, 0, 0x7ff00000), // pool bits only
    new ActorId(7061644215716937729n, 5, 0), // ids present, node 0
  ];
  for (const self of ids) {
    for (const peer of [ActorId.EMPTY, B]) { // new session and continuation alike
      const r = await accept([initialPacket(self, peer, 42n)]);
      assertIncomingFailed(r, "permanent", "SelfVirtualId.NodeId is empty in initial packet", {
        peerNodeId: 0,
        written: NOTHING,
      });
      assert.equal(r.node.requests.length, 0);
    }
  }
});

// ---------------------------------------------------------------------------------------------
// ExBlock framing

Deno.test('hostile: an ExBlock announcing 64 MiB fails PERMANENT "Incorrect extended header size" at once, without reading or allocating the payload', async () => {
  for (const size of [64 << 20, EXBLOCK_MAX_SIZE + 1, 0xffffffff]) {
    // Only the 8-byte header is sent and the connection stays open: had the code tried to read
    // the payload, it would wait for the (10 s) deadline and fail "Handshake timed out".
    const inc = await accept([V.V1, exBlockHeader(size, 0x12345678)], { deadlineMs: 10_000 });
    assertIncomingFailed(inc, "permanent", "Incorrect extended header size", {
      peerNodeId: 1,
      written: V.V2,
    });
    // The only reads ever asked of the transport: the initial packet and the ExBlock header.
    assert.deepEqual(inc.transport.reads, [52, 8], `size ${size}`);

    const out = await dial(answers(exBlockHeader(size)), { deadlineMs: 10_000 });
    assertOutgoingFailed(out, "permanent", "Incorrect extended header size");
  }
});

Deno.test("hostile: an ExBlock of exactly 1 MiB is legal framing: the code waits for its payload", async () => {
  const r = await accept([V.V1, exBlockHeader(EXBLOCK_MAX_SIZE)], { deadlineMs: 50 });
  assertIncomingFailed(r, "transient", "Handshake timed out, State# ReceiveExRequestData", {
    peerNodeId: 1,
    network: true,
    written: V.V2,
  });
  assert.deepEqual(r.transport.reads, [52, 8, EXBLOCK_MAX_SIZE]);
});

Deno.test('hostile: an ExBlock with a bad CRC (payload, size-covered checksum or checksum field) fails TRANSIENT "Extended header CRC error" on both sides', async () => {
  const req = requestFrame(request());
  const rep = replyFrame({ Success: success() });
  for (const at of ["payload", "checksum"] as const) {
    const badReq = at === "payload" ? flipBit(req) : flipBit(req, 0);
    const inc = await accept([V.V1, badReq]);
    assertIncomingFailed(inc, "transient", "Extended header CRC error", {
      peerNodeId: 1,
      written: V.V2,
    });
    const badRep = at === "payload" ? flipBit(rep) : flipBit(rep, 0);
    const out = await dial(answers(badRep));
    assertOutgoingFailed(out, "transient", "Extended header CRC error");
  }
});

// ---------------------------------------------------------------------------------------------
// Protobuf content

/** The fields of a valid request as pb-encoded pieces, by field number. */
const requestFields: Record<number, Uint8Array> = {
  1: pb.varint(1, 2),
  2: pb.varint(2, 1001),
  3: pb.varint(3, 5001),
  4: pb.varint(4, A.localId),
  5: pb.varint(5, 2),
  6: pb.bytes(6, A.toString()),
  7: pb.bytes(7, "host-1"),
  8: pb.bytes(8, "host-2"),
  13: pb.bytes(13, pb.bytes(1, "")),
  18: pb.varint(18, 1),
  19: pb.varint(19, 0),
};

function requestWithout(field: number): Uint8Array {
  return concat(
    ...Object.entries(requestFields).filter(([no]) => Number(no) !== field).map(([, b]) => b),
  );
}

Deno.test('hostile incoming: requests that do not parse fail PERMANENT "Incorrect THandshakeRequest" without an error reply', async () => {
  // Sanity: all pieces together are a valid request.
  done((await accept([V.V1, rawFrame(requestWithout(0))])).outcome);
  const payloads: Array<[string, Uint8Array]> = [
    ...[1, 2, 3, 4, 5, 6].map((
      n,
    ): [string, Uint8Array] => [`without field ${n}`, requestWithout(n)]),
    ["empty payload (every required field missing)", NOTHING],
    ["wire type 7", Uint8Array.of(0x0f, 0x00)],
    ["truncated varint", concat(requestWithout(0), Uint8Array.of(0x08, 0x80))],
    ["length beyond the payload", concat(requestWithout(0), Uint8Array.of(0x3a, 0x7f, 0x61))],
    ["garbage nested ClusterUUIDs", concat(requestWithout(13), pb.bytes(13, Uint8Array.of(0xff)))],
    ["field number 0", concat(Uint8Array.of(0x00, 0x01), requestWithout(0))],
  ];
  for (const [what, payload] of payloads) {
    const r = await accept([V.V1, rawFrame(payload)]);
    const f = assertIncomingFailed(r, "permanent", "Incorrect THandshakeRequest", {
      peerNodeId: 1,
      written: V.V2,
    });
    assert.equal(f.errorReplySent, false, what);
    assert.equal(r.node.requests.length, 0, `${what}: the proxy was asked`);
  }
});

Deno.test('hostile outgoing: replies missing a required Success field fail PERMANENT "Incorrect THandshakeReply"', async () => {
  const successFields: Record<number, Uint8Array> = {
    1: pb.varint(1, 2),
    2: pb.varint(2, 1002),
    3: pb.varint(3, 5002),
    4: pb.varint(4, B.localId),
    5: pb.bytes(5, B.toString()),
    8: pb.bytes(8, pb.bytes(1, "")),
    9: pb.varint(9, 0),
    11: pb.varint(11, 1),
    12: pb.varint(12, 0),
  };
  const without = (field: number) =>
    pb.bytes(
      1,
      concat(
        ...Object.entries(successFields).filter(([no]) => Number(no) !== field).map(([, b]) => b),
      ),
    );
  done((await dial(answers(rawFrame(without(0))))).outcome); // sanity: complete Success is fine
  for (const field of [1, 2, 3, 4, 5]) {
    const r = await dial(answers(rawFrame(without(field))));
    assertOutgoingFailed(r, "permanent", "Incorrect THandshakeReply");
  }
  // An empty Success message is present but lacks everything required.
  const empty = await dial(answers(rawFrame(pb.bytes(1, NOTHING))));
  assertOutgoingFailed(empty, "permanent", "Incorrect THandshakeReply");
});

Deno.test('hostile incoming: an empty or malformed SenderActorId is rejected with the error reply "Incorrect SenderActorId# ..." (deviation: C++ would abort later)', async () => {
  for (const text of ["", "[1:2:3]x", "garbage", "[]", "[::]", "[0:0:0]", "[x:1:0]"]) {
    const r = await accept([V.V1, requestFrame(request({ SenderActorId: text }))]);
    assertRejectedWithReply(r, `Incorrect SenderActorId# ${text}`);
    assert.equal(r.node.requests.length, 0, `${text}: the proxy was asked`);
  }
});

Deno.test("hostile incoming: a partially valid SenderActorId that parses to a non-empty id is accepted, as C++ does", async () => {
  // TActorId::Parse stops at the first bad part and keeps what it already wrote.
  const cases: Array<[string, string]> = [
    ["[1:abc:0]", "[1:0:0]"],
    ["[1:5:x]", "[1:5:0]"],
    ["[1:5:99999999999]", "[1:5:0]"], // hint overflows u32
    ["[1048577:5:0]", "[1:5:0]"], // node word 0x100001: pool 1, node 1
  ];
  for (const [text, parsed] of cases) {
    const r = await accept([V.V1, requestFrame(request({ SenderActorId: text }))]);
    assert.equal(done(r.outcome).peerVirtualId.toString(), parsed, text);
  }
});

Deno.test("hostile outgoing: a Success SenderActorId that parses to an empty id fails PERMANENT; a partial one is accepted", async () => {
  for (const text of ["", "garbage", "[0:0:0]"]) {
    const r = await dial(answers({ Success: success({ SenderActorId: text }) }));
    assertOutgoingFailed(r, "permanent", `Incorrect SenderActorId# ${text} in THandshakeSuccess`);
  }
  const partial = await dial(answers({ Success: success({ SenderActorId: "[2:abc:0]" }) }));
  assert.equal(done(partial.outcome).peerVirtualId.toString(), "[2:0:0]");
});

// ---------------------------------------------------------------------------------------------
// Truncated streams

Deno.test('hostile: half an initial packet then close fails TRANSIENT "Socket error# connection unexpectedly closed ..." with exact counts', async () => {
  for (const n of [0, 1, 26, 51]) {
    const inc = await accept([V.V1.subarray(0, n)], { end: true });
    assertIncomingFailed(
      inc,
      "transient",
      `Socket error# connection unexpectedly closed state# ReceiveRequest processed# ${n} remain# ${
        52 - n
      }`,
      { peerNodeId: 0, network: true, written: NOTHING },
    );
    const out = await dial(async (p) => {
      await p.send(V.V2.subarray(0, n));
      await p.end();
    });
    assertOutgoingFailed(
      out,
      "transient",
      `Socket error# connection unexpectedly closed state# ReceiveResponse processed# ${n} remain# ${
        52 - n
      }`,
      { network: true },
    );
  }
});

Deno.test("hostile: a peer that closes after its initial packet (or inside the ExBlock) fails TRANSIENT with the state and counts", async () => {
  const eof = (state: string, processed: number, remain: number) =>
    `Socket error# connection unexpectedly closed state# ${state} processed# ${processed} remain# ${remain}`;
  const req = requestFrame(request());
  const incoming: Array<[Uint8Array[], string]> = [
    [[V.V1], eof("ReceiveExRequestHeader", 0, 8)],
    [[V.V1, req.subarray(0, 3)], eof("ReceiveExRequestHeader", 3, 5)],
    [[V.V1, req.subarray(0, 8)], eof("ReceiveExRequestData", 0, req.length - 8)],
    [[V.V1, req.subarray(0, 38)], eof("ReceiveExRequestData", 30, req.length - 38)],
  ];
  for (const [input, gist] of incoming) {
    const r = await accept(input, { end: true });
    assertIncomingFailed(r, "transient", gist, { peerNodeId: 1, network: true, written: V.V2 });
  }
  const rep = replyFrame({ Success: success() });
  const outgoing: Array<[Uint8Array[], string]> = [
    [[V.V2], eof("ReceiveExReplyHeader", 0, 8)],
    [[V.V2, rep.subarray(0, 20)], eof("ReceiveExReplyData", 12, rep.length - 20)],
  ];
  for (const [input, gist] of outgoing) {
    const r = await dial(async (p) => {
      await p.send(...input);
      await p.end();
    });
    assertOutgoingFailed(r, "transient", gist, { network: true });
  }
  // A continuation acceptor that closes instead of answering.
  const cont = await dial((p) => p.end(), { params: { peerVirtualId: B, nextPacket: 42n } });
  assertOutgoingFailed(cont, "transient", eof("ReceiveResponse", 0, 52), { network: true });
  assert.equal(toHex(cont.peers[0].received()), toHex(V.V3));
});

// ---------------------------------------------------------------------------------------------
// Fuzz (deterministic)

Deno.test("hostile fuzz: random byte streams never crash the incoming side and always fail typed", async () => {
  const next = prng(0x1c4);
  for (let round = 0; round < 60; round++) {
    const len = next() % 140;
    const bytes = Uint8Array.from({ length: len }, () => next() & 0xff);
    // Half the rounds start with a valid initial packet so the ExBlock path gets garbage too.
    const input = round % 2 === 0 ? [bytes] : [V.V1, bytes];
    const r = await accept(input, { end: true });
    assertTyped(r.outcome, `round ${round}`);
    assert.equal(r.outcome.kind, "failed", `round ${round}`);
    assert.ok(r.transport.closed, `round ${round}`);
  }
});

Deno.test("hostile fuzz: every single-byte mutation of a valid request or Success payload (CRC fixed up) gives a typed outcome", async () => {
  const reqPayload = encodeHandshakeRequest(request());
  const okReply = replyFrame({ Success: success() });
  const repPayload = decodeExBlock(okReply).payload;
  // Sanity: the replies carry what the decoder expects.
  assert.equal(decodeHandshakeReply(repPayload).Success?.SenderActorId, B.toString());
  const kinds = new Map<string, number>();
  const count = (o: HandshakeOutcome) => {
    const key = o.kind === "failed" ? `failed:${o.failure.explanation.split("#")[0]}` : o.kind;
    kinds.set(key, (kinds.get(key) ?? 0) + 1);
  };
  for (const mask of [0x01, 0x80, 0xff]) {
    for (let i = 0; i < reqPayload.length; i++) {
      const mutated = reqPayload.slice();
      mutated[i] ^= mask;
      const r = await accept([V.V1, rawFrame(mutated)], { deadlineMs: 300 });
      assertTyped(r.outcome, `request byte ${i} ^ ${mask}`);
      count(r.outcome);
    }
    for (let i = 0; i < repPayload.length; i++) {
      const mutated = repPayload.slice();
      mutated[i] ^= mask;
      // A mutation may switch StartEncryption on: the fake TLS then waits for the deadline.
      const r = await dial(answers(rawFrame(mutated)), { deadlineMs: 300 });
      assertTyped(r.outcome, `reply byte ${i} ^ ${mask}`);
      count(r.outcome);
      if (r.outcome.kind === "failed") {
        assert.equal(r.outcome.failure.errorReplySent, false);
        assert.ok(r.net.transports.every((t) => t.closed));
      }
    }
  }
  // The mutations reached the parser and the validators, not just the framing.
  assert.ok(kinds.has("failed:Incorrect THandshakeRequest"), [...kinds.keys()].join(", "));
  assert.ok(kinds.has("failed:Incorrect THandshakeReply"), [...kinds.keys()].join(", "));
  assert.ok(kinds.has("done"));
  const failedOnly = [...kinds.keys()].filter((k) => k.startsWith("failed:"));
  assert.ok(failedOnly.length >= 4, failedOnly.join(", "));
});

Deno.test("hostile: a failure that arrives with garbage still pending is final: nothing more is read and the connection is closed", async () => {
  // A valid initial packet, a bad CRC ExBlock, then more bytes that must never be read.
  const tail = new Uint8Array(4096).fill(0x41);
  const r = await accept([V.V1, flipBit(requestFrame(request())), tail]);
  failed(r.outcome);
  assert.ok(r.transport.closed && r.transport.closeCalls >= 1);
  assert.equal(
    r.transport.reads.reduce((a, b) => a + b, 0),
    52 + requestFrame(request()).length,
    "nothing read past the bad ExBlock",
  );
});
