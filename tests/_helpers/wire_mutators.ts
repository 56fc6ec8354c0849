/**
 * The generators of the wire fuzz tests, shared with the fuzz script (`scripts/fuzz_lib.ts`):
 * every byte decoder with an oracle for what it returns, a seed corpus built from the golden
 * vectors, mutators (bit flips, truncation, extension, splices, ExBlock size and protobuf
 * length tampering, field shuffles, re-framing with a correct CRC), and random actor-id texts.
 */
import assert from "node:assert/strict";
import {
  ActorId,
  decodeExBlock,
  decodeExBlockHeader,
  decodeHandshakeReply,
  decodeHandshakeRequest,
  decodeInitialPacket,
  encodeExBlock,
  encodeHandshakeReply,
  encodeHandshakeRequest,
  EXBLOCK_HEADER_SIZE,
  EXBLOCK_MAX_SIZE,
  verifyInitialPacket,
} from "../../lib/wire/mod.ts";
import { concat, fieldSpans } from "./protobuf_fields.ts";
import type { Rng } from "./random.ts";
import { fromHex, toHex, vectors } from "./vectors.ts";

/** Every byte decoder, each with a check of what it returns when it does not throw. */
export const DECODERS: [string, (bytes: Uint8Array) => void][] = [
  ["decodeInitialPacket+verifyInitialPacket", (bytes) => {
    const packet = decodeInitialPacket(bytes);
    assert.ok(packet.selfVirtualId instanceof ActorId && packet.peerVirtualId instanceof ActorId);
    const verdict = verifyInitialPacket(packet);
    assert.equal(verdict.ok, packet.checksum === packet.computedChecksum && packet.version === 2n);
  }],
  ["decodeExBlockHeader", (bytes) => {
    assert.ok(decodeExBlockHeader(bytes).size <= EXBLOCK_MAX_SIZE);
  }],
  ["decodeExBlock", (bytes) => {
    const { payload, consumed } = decodeExBlock(bytes);
    assert.equal(consumed, EXBLOCK_HEADER_SIZE + payload.length);
    assert.ok(consumed <= bytes.length && payload.length <= EXBLOCK_MAX_SIZE);
  }],
  ["decodeHandshakeRequest", (bytes) => {
    // A decoded request is complete: it encodes again, to a request that decodes the same.
    const request = decodeHandshakeRequest(bytes);
    assert.deepEqual(decodeHandshakeRequest(encodeHandshakeRequest(request)), request);
  }],
  ["decodeHandshakeReply", (bytes) => {
    const reply = decodeHandshakeReply(bytes);
    assert.deepEqual(decodeHandshakeReply(encodeHandshakeReply(reply)), reply);
  }],
  ["ActorId.decode", (bytes) => {
    const id = ActorId.decode(bytes);
    assert.equal(toHex(id.encode()), toHex(bytes.subarray(0, 16)));
  }],
];

// ---------------------------------------------------------------------------------------------
// Seed corpus: the golden vectors plus messages that reach the nested and newer fields.

const newerRequest = encodeHandshakeRequest({
  ...decodeHandshakeRequest(fromHex(vectors.exBlocks[7].payloadHex)),
  Cookie: "00000000-1111-2222-3333-444444444444",
  ClientScopeId: { X1: 1n, X2: 2n },
  AcceptedVersionTags: ["stable-22-2", "stable-22-4"],
  HandshakeId: new Uint8Array(32).fill(7),
  Params: [{ Key: "k", Value: new Uint8Array([1]) }],
  RdmaHandshake: {
    QpNum: 1,
    SubnetPrefix: 2n,
    InterfaceId: 3n,
    MtuIndex: 4,
    Read: { Address: 5n, Size: 6n, Rkey: 7 },
  },
});
const newerReply = encodeHandshakeReply({
  Success: {
    ...decodeHandshakeReply(fromHex(vectors.exBlocks[6].payloadHex)).Success!,
    ServerScopeId: { X1: 9n, X2: 10n },
    UseExtendedTraceFmt: true,
    RdmaErr: "none",
  },
  Params: [{ Key: "p" }],
});

/** Grouped by kind, so that each kind is picked as often as the others. */
export const CORPUS_GROUPS: Uint8Array[][] = [
  vectors.initialPackets.map((v) => fromHex(v.hex)),
  [...vectors.exBlocks.map((v) => fromHex(v.frameHex)), encodeExBlock(newerRequest)],
  [...vectors.exBlocks.map((v) => fromHex(v.payloadHex)), newerRequest, newerReply],
  vectors.actorIds.map((v) => fromHex(v.hex)),
];
export const CORPUS = CORPUS_GROUPS.flat();

// ---------------------------------------------------------------------------------------------
// Mutators. Each returns a new array and leaves its input alone.

export const INTERESTING_SIZES = [
  0,
  1,
  0x7f,
  0x80,
  0xffff,
  EXBLOCK_MAX_SIZE - 1,
  EXBLOCK_MAX_SIZE,
  EXBLOCK_MAX_SIZE + 1,
  64 << 20,
  0x7fffffff,
  0xffffffff,
];

function varint(value: number): Uint8Array {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return new Uint8Array(out);
}

function flipBits(rng: Rng, b: Uint8Array): Uint8Array {
  const out = b.slice();
  if (out.length === 0) return out;
  for (let n = rng.range(1, 8); n > 0; n--) out[rng.int(out.length)] ^= 1 << rng.int(8);
  return out;
}

function truncate(rng: Rng, b: Uint8Array): Uint8Array {
  return b.slice(0, rng.int(b.length + 1));
}

function extend(rng: Rng, b: Uint8Array): Uint8Array {
  return concat(b, rng.bytes(rng.range(1, 64)));
}

function splice(rng: Rng, b: Uint8Array): Uint8Array {
  const other = rng.pick(CORPUS);
  return concat(b.subarray(0, rng.int(b.length + 1)), other.subarray(rng.int(other.length + 1)));
}

function setInterestingBytes(rng: Rng, b: Uint8Array): Uint8Array {
  const out = b.slice();
  if (out.length === 0) return out;
  for (let n = rng.range(1, 4); n > 0; n--) {
    out[rng.int(out.length)] = rng.pick([0, 0x7f, 0x80, 0xff]);
  }
  return out;
}

function insertOrDelete(rng: Rng, b: Uint8Array): Uint8Array {
  const at = rng.int(b.length + 1);
  return rng.chance(0.5)
    ? concat(b.subarray(0, at), rng.bytes(rng.range(1, 4)), b.subarray(at))
    : concat(b.subarray(0, at), b.subarray(Math.min(b.length, at + rng.range(1, 4))));
}

/** Overwrites the ExBlock size field (bytes 4..7) with a boundary or random value. */
function tamperExBlockSize(rng: Rng, b: Uint8Array): Uint8Array {
  const out = b.length >= 8 ? b.slice() : concat(b, new Uint8Array(8 - b.length));
  const payload = out.length - 8;
  const size = rng.pick([...INTERESTING_SIZES, payload - 1, payload + 1, rng.u32()]);
  new DataView(out.buffer).setUint32(4, Math.max(0, size) >>> 0, true);
  return out;
}

/** Rewrites the length prefix of one length-delimited protobuf field (possibly nested deeper). */
function tamperProtobufLength(rng: Rng, b: Uint8Array): Uint8Array {
  let spans;
  try {
    spans = fieldSpans(b).filter((f) => f.wireType === 2);
  } catch {
    return setInterestingBytes(rng, b); // not parseable: fall back to a byte-level change
  }
  if (spans.length === 0) return setInterestingBytes(rng, b);
  const span = rng.pick(spans);
  let lengthEnd = span.valueStart;
  while (b[lengthEnd] & 0x80) lengthEnd++;
  lengthEnd++;
  const real = span.end - lengthEnd;
  const length = rng.chance(0.1)
    ? fromHex("ffffffffffffffffff01") // 2^64 - 1: a 10-byte varint
    : varint(rng.pick([...INTERESTING_SIZES, real - 1, real + 1, real + 1000, rng.int(300)]));
  return concat(b.subarray(0, span.valueStart), length, b.subarray(lengthEnd));
}

/** Drops, repeats or moves one top-level protobuf field: still well-formed, often still complete. */
function shuffleFields(rng: Rng, b: Uint8Array): Uint8Array {
  let spans;
  try {
    spans = fieldSpans(b);
  } catch {
    return insertOrDelete(rng, b);
  }
  if (spans.length === 0) return b.slice();
  const parts = spans.map((f) => b.subarray(f.start, f.end));
  const at = rng.int(parts.length);
  const op = rng.int(3);
  if (op === 0) parts.splice(at, 1);
  else if (op === 1) parts.splice(rng.int(parts.length + 1), 0, parts[at]);
  else parts.push(...parts.splice(at, 1));
  return concat(...parts);
}

/** Re-frames a (mutated) payload so the ExBlock CRC is right and the protobuf decoders are reached. */
function reframe(rng: Rng, b: Uint8Array): Uint8Array {
  const inner = b.length >= 8 && rng.chance(0.5) ? b.subarray(8) : b;
  return encodeExBlock(inner.length > EXBLOCK_MAX_SIZE ? inner.subarray(0, 100) : inner);
}

/** A mutation: a new array made from `b`, which is left alone. */
export type Mutator = (rng: Rng, b: Uint8Array) => Uint8Array;

/** Every mutator, framing ones included. */
export const MUTATORS: readonly Mutator[] = [
  flipBits,
  truncate,
  extend,
  splice,
  setInterestingBytes,
  insertOrDelete,
  tamperExBlockSize,
  tamperProtobufLength,
  shuffleFields,
  reframe,
];

/** The mutators that suit a protobuf payload about to be framed with a correct CRC. */
export const PAYLOAD_MUTATORS: readonly Mutator[] = [
  flipBits,
  truncate,
  extend,
  splice,
  setInterestingBytes,
  insertOrDelete,
  tamperProtobufLength,
  shuffleFields,
];

/** `b` after 1 to 3 mutations picked from `mutators`. */
export function mutate(
  rng: Rng,
  b: Uint8Array,
  mutators: readonly Mutator[] = MUTATORS,
): Uint8Array {
  for (let n = rng.range(1, 3); n > 0; n--) b = rng.pick(mutators)(rng, b);
  return b;
}

/** The next fuzz input: random bytes, or a corpus entry after 1 to 3 mutations. */
export function nextInput(rng: Rng): Uint8Array {
  if (rng.chance(0.15)) return rng.bytes(rng.int(rng.chance(0.5) ? 20 : 160));
  let bytes = rng.pick(rng.pick(CORPUS_GROUPS));
  for (let n = rng.range(1, 3); n > 0; n--) bytes = rng.pick(MUTATORS)(rng, bytes);
  return bytes;
}

/** An independent statement of when TActorId::Parse succeeds, as a regular expression. */
export const PARSE_OK = /^\[(\+?[0-9]+):(\+?[0-9]+):(\+?[0-9]+)\]$/;
export const TEXT_ALPHABET = [
  ..."[]:+-0123456789",
  " ",
  "\t",
  "a",
  "x",
  "\u00e9",
  "\u0661",
  "\uff11",
  "\ud800",
];

export function nextText(rng: Rng): string {
  const kind = rng.int(3);
  if (kind === 0) {
    let s = "";
    for (let n = rng.int(24); n > 0; n--) s += rng.pick(TEXT_ALPHABET);
    return s;
  }
  if (kind === 1) {
    const digits = () =>
      String(rng.chance(0.5) ? rng.u64() : BigInt(rng.u32()) * 10n ** BigInt(rng.int(12)));
    return `[${rng.chance(0.2) ? "+" : ""}${digits()}:${digits()}:${digits()}]`;
  }
  const chars = [...new ActorId(rng.u64(), rng.u32(), rng.u32()).toString()];
  for (let n = rng.range(1, 3); n > 0; n--) {
    const at = rng.int(chars.length + 1);
    const op = rng.int(3);
    if (op === 0) chars.splice(at, 0, rng.pick(TEXT_ALPHABET));
    else if (op === 1) chars.splice(at, 1);
    else chars[Math.min(at, chars.length - 1)] = rng.pick(TEXT_ALPHABET);
  }
  return chars.join("");
}
