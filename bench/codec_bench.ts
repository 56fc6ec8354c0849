/**
 * The wire codecs at handshake sizes: the 52-byte initial packet, ExBlock framing of a 76-byte
 * payload (E8's size) and of a 64 KiB one, and the THandshakeRequest / THandshakeReply protobuf
 * codecs with E6-like and E7-like contents. Framing groups put encode beside decode; the message
 * groups put our codec beside the protobuf-es code generated from the same schema.
 *
 * Run with `deno task bench`.
 */
import {
  ActorId,
  decodeExBlock,
  decodeHandshakeReply,
  decodeHandshakeRequest,
  decodeInitialPacket,
  encodeExBlock,
  encodeHandshakeReply,
  encodeHandshakeRequest,
  encodeInitialPacket,
  type HandshakeReply,
  type HandshakeRequest,
  verifyInitialPacket,
} from "../lib/wire/mod.ts";
import * as reference from "../tests/_helpers/pb_reference.ts";

const a = ActorId.plain(1, (0x62000000n << 32n) | 1n);
const b = ActorId.plain(2, (0x62000000n << 32n) | 2n);

/** Results go here so the optimiser cannot drop the calls. */
let _sink: unknown;

// Initial packet: a continuation request (V3), the one with every field non-zero.
const packet = { selfVirtualId: a, peerVirtualId: b, nextPacket: 42n };
const packetBytes = encodeInitialPacket(packet);
Deno.bench({
  name: "initial packet encode",
  group: "initial packet (52 B)",
  baseline: true,
  fn: () => {
    _sink = encodeInitialPacket(packet);
  },
});
Deno.bench({
  name: "initial packet decode + verify",
  group: "initial packet (52 B)",
  fn: () => {
    _sink = verifyInitialPacket(decodeInitialPacket(packetBytes));
  },
});

for (const [label, size] of [["76 B", 76], ["64 KiB", 65536]] as const) {
  const payload = new Uint8Array(size);
  for (let i = 0; i < size; i++) payload[i] = (i * 31 + 7) & 0xff;
  const frame = encodeExBlock(payload);
  Deno.bench({
    name: `ExBlock encode ${label}`,
    group: `ExBlock ${label}`,
    baseline: true,
    fn: () => {
      _sink = encodeExBlock(payload);
    },
  });
  Deno.bench({
    name: `ExBlock decode ${label}`,
    group: `ExBlock ${label}`,
    fn: () => {
      _sink = decodeExBlock(frame);
    },
  });
}

// E6's fields: a new-session request with encryption disabled.
const request: HandshakeRequest = {
  Protocol: 2n,
  ProgramPID: 12345n,
  ProgramStartTime: 1000000n,
  Serial: a.localId,
  ReceiverNodeId: 2,
  SenderActorId: a.toString(),
  SenderHostName: "host-a",
  ReceiverHostName: "host-b",
  ClusterUUIDs: { ClusterUUID: "" },
  RequestModernFrame: true,
  RequestAuthOnly: false,
};
const requestBytes = encodeHandshakeRequest(request);
benchMessage("THandshakeRequest (E6)", {
  encode: () => encodeHandshakeRequest(request),
  encodeReference: () => reference.encodeHandshakeRequest(request),
  decode: () => decodeHandshakeRequest(requestBytes),
  decodeReference: () => reference.decodeHandshakeRequest(requestBytes),
});

// E7's fields: the Success answer to E6.
const reply: HandshakeReply = {
  Success: {
    Protocol: 2n,
    ProgramPID: 23456n,
    ProgramStartTime: 2000000n,
    Serial: b.localId,
    SenderActorId: b.toString(),
    ClusterUUIDs: { ClusterUUID: "" },
    StartEncryption: false,
    UseModernFrame: true,
    AuthOnly: false,
  },
};
const replyBytes = encodeHandshakeReply(reply);
benchMessage("THandshakeReply (E7)", {
  encode: () => encodeHandshakeReply(reply),
  encodeReference: () => reference.encodeHandshakeReply(reply),
  decode: () => decodeHandshakeReply(replyBytes),
  decodeReference: () => reference.decodeHandshakeReply(replyBytes),
});

/** Encode and decode of one message, each beside protobuf-es (the baseline) in its group. */
function benchMessage(label: string, fns: Record<string, () => unknown>): void {
  for (const op of ["encode", "decode"] as const) {
    Deno.bench({
      name: `${label} ${op}, protobuf-es`,
      group: `${label} ${op}`,
      baseline: true,
      fn: () => {
        _sink = fns[`${op}Reference`]();
      },
    });
    Deno.bench({
      name: `${label} ${op}, lib/wire/proto2.ts`,
      group: `${label} ${op}`,
      fn: () => {
        _sink = fns[op]();
      },
    });
  }
}
