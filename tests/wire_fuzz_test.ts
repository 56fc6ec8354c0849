/**
 * Seeded property tests over every decoder of `lib/wire`: random bytes and mutations of the
 * golden vectors (bit flips, truncation, extension, splices, length-field tampering) must give
 * a value or a WireError, never any other exception. The seed is printed; rerun a failure with
 * `IC_TEST_SEED=<seed> deno task test`.
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
  verifyExBlockPayload,
  verifyInitialPacket,
  WireError,
} from "../lib/wire/mod.ts";
import { BufferedReader, type ByteSource, UnexpectedEofError } from "../lib/io/buffered_reader.ts";
import { concat, fieldSpans } from "./_helpers/protobuf_fields.ts";
import { Rng, testSeed } from "./_helpers/random.ts";
import { fromHex, toHex, vectors } from "./_helpers/vectors.ts";

const SEED = testSeed(0x1c0ffee);
const BYTE_CASES = 7000;
const TEXT_CASES = 2700;
const STREAM_CASES = 300;

/** Every byte decoder, each with a check of what it returns when it does not throw. */
const DECODERS: [string, (bytes: Uint8Array) => void][] = [
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

/**
 * Runs `fn`: true when it returned, false on a WireError (an accepted outcome); anything else
 * fails the test with what is needed to reproduce it.
 */
function valueOrWireError(
  what: string,
  fn: () => void,
  input: Uint8Array | string,
  at: number,
): boolean {
  try {
    fn();
    return true;
  } catch (e) {
    if (e instanceof WireError) return false;
    throw new Error(
      `${what} threw ${e instanceof Error ? e.name : typeof e} on case ${at} (seed ${SEED}): ` +
        `${e instanceof Error ? e.message : String(e)}\n` +
        `input: ${typeof input === "string" ? input : toHex(input)}`,
      { cause: e },
    );
  }
}

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
const CORPUS_GROUPS: Uint8Array[][] = [
  vectors.initialPackets.map((v) => fromHex(v.hex)),
  [...vectors.exBlocks.map((v) => fromHex(v.frameHex)), encodeExBlock(newerRequest)],
  [...vectors.exBlocks.map((v) => fromHex(v.payloadHex)), newerRequest, newerReply],
  vectors.actorIds.map((v) => fromHex(v.hex)),
];
const CORPUS = CORPUS_GROUPS.flat();

// ---------------------------------------------------------------------------------------------
// Mutators. Each returns a new array and leaves its input alone.

const INTERESTING_SIZES = [
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

const MUTATORS = [
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

function nextInput(rng: Rng): Uint8Array {
  if (rng.chance(0.15)) return rng.bytes(rng.int(rng.chance(0.5) ? 20 : 160));
  let bytes = rng.pick(rng.pick(CORPUS_GROUPS));
  for (let n = rng.range(1, 3); n > 0; n--) bytes = rng.pick(MUTATORS)(rng, bytes);
  return bytes;
}

// ---------------------------------------------------------------------------------------------

Deno.test(`every byte decoder returns a value or throws a WireError on ${BYTE_CASES} random and mutated inputs`, () => {
  console.log(`wire fuzz seed ${SEED} (rerun with IC_TEST_SEED=${SEED})`);
  const rng = new Rng(SEED);
  const outcomes = new Map<string, { value: number; wireError: number }>();
  for (const [name] of DECODERS) outcomes.set(name, { value: 0, wireError: 0 });
  for (let i = 0; i < BYTE_CASES; i++) {
    const input = nextInput(rng);
    for (const [name, decode] of DECODERS) {
      const tally = outcomes.get(name)!;
      if (valueOrWireError(name, () => decode(input), input, i)) tally.value++;
      else tally.wireError++;
    }
  }
  // The inputs are varied enough to reach both outcomes of every decoder.
  for (const [name, { value, wireError }] of outcomes) {
    assert.ok(value > 0 && wireError > 0, `${name}: ${value} values, ${wireError} WireErrors`);
  }
});

/** An independent statement of when TActorId::Parse succeeds, as a regular expression. */
const PARSE_OK = /^\[(\+?[0-9]+):(\+?[0-9]+):(\+?[0-9]+)\]$/;
const TEXT_ALPHABET = [
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

function nextText(rng: Rng): string {
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

Deno.test(`ActorId.parse never throws and succeeds exactly on [u32:u64:u32], over ${TEXT_CASES} random strings`, () => {
  console.log(`wire fuzz seed ${SEED}`);
  const rng = new Rng(SEED ^ 0x9e3779b9);
  let oks = 0;
  for (let i = 0; i < TEXT_CASES; i++) {
    const text = nextText(rng);
    valueOrWireError(
      "ActorId.parse",
      () => {
        const { id, ok } = ActorId.parse(text);
        assert.ok(id instanceof ActorId);
        const m = PARSE_OK.exec(text);
        const fits = m !== null && BigInt(m[1]) <= 0xffffffffn && BigInt(m[2]) < 1n << 64n &&
          BigInt(m[3]) <= 0xffffffffn;
        assert.equal(ok, fits, JSON.stringify(text));
        if (ok) {
          oks++;
          assert.deepEqual([id.nodeWord, id.localId, id.hint], [
            Number(m![1]),
            BigInt(m![2]),
            Number(m![3]),
          ]);
        }
      },
      JSON.stringify(text),
      i,
    );
  }
  // Both outcomes are reached often enough to mean something.
  assert.ok(
    oks > TEXT_CASES / 20 && oks < TEXT_CASES / 2,
    `${oks} of ${TEXT_CASES} strings parsed`,
  );
});

// ---------------------------------------------------------------------------------------------
// The allocation bound: a receiver reads the 8-byte header, judges the size, and only then
// asks for the payload. A hostile size is refused before anything is requested for it.

/** Reads one ExBlock the way a receiver does: header, decodeExBlockHeader, then the payload. */
async function readExBlock(reader: BufferedReader): Promise<Uint8Array> {
  const header = decodeExBlockHeader(await reader.readExactly(EXBLOCK_HEADER_SIZE));
  const payload = await reader.readExactly(header.size);
  verifyExBlockPayload(header, payload);
  return payload;
}

/** A BufferedReader that records every size it is asked for. */
class RecordingReader extends BufferedReader {
  readonly requests: number[] = [];
  override readExactly(n: number): Promise<Uint8Array> {
    this.requests.push(n);
    return super.readExactly(n);
  }
}

/** Serves `bytes` in chunks of `chunk`, then `filler` more bytes; counts what it gave. */
function chunkedSource(bytes: Uint8Array, chunk: number, filler = 0): ByteSource & {
  pulled: number;
} {
  const all = concat(bytes, new Uint8Array(filler).fill(0xaa));
  const source = {
    pulled: 0,
    read(): Promise<Uint8Array | null> {
      if (source.pulled >= all.length) return Promise.resolve(null);
      const out = all.slice(source.pulled, source.pulled + chunk);
      source.pulled += out.length;
      return Promise.resolve(out);
    },
  };
  return source;
}

function headerAnnouncing(size: number): Uint8Array {
  const out = new Uint8Array(EXBLOCK_HEADER_SIZE);
  new DataView(out.buffer).setUint32(4, size, true);
  return out;
}

Deno.test("a header announcing 64 MiB is rejected while the reader was never asked for more than 8 bytes", async () => {
  for (const size of [64 << 20, EXBLOCK_MAX_SIZE + 1, 0xffffffff]) {
    // The source has 2 MiB more to give: only the receiver's own bound stops it asking.
    const source = chunkedSource(headerAnnouncing(size), 3, 2 * EXBLOCK_MAX_SIZE);
    const reader = new RecordingReader(source);
    await assert.rejects(
      readExBlock(reader),
      (e: unknown) => e instanceof WireError && e.code === "exblock_size",
    );
    assert.deepEqual(reader.requests, [EXBLOCK_HEADER_SIZE], `size ${size}`);
    assert.ok(source.pulled < 2 * EXBLOCK_HEADER_SIZE, `pulled ${source.pulled} bytes`);
  }
});

Deno.test("the receiver-style reader returns E6's payload from 5-byte chunks: 8 bytes asked, then 74", async () => {
  const e6 = vectors.exBlocks.find((v) => v.name === "E6")!;
  const reader = new RecordingReader(chunkedSource(fromHex(e6.frameHex), 5));
  assert.equal(toHex(await readExBlock(reader)), e6.payloadHex);
  assert.deepEqual(reader.requests, [8, 74]);
});

Deno.test(`the receiver-style reader never asks for more than 1 MiB, over ${STREAM_CASES} mutated streams`, async () => {
  console.log(`wire fuzz seed ${SEED}`);
  const rng = new Rng(SEED ^ 0x51ab);
  for (let i = 0; i < STREAM_CASES; i++) {
    const input = nextInput(rng);
    const reader = new RecordingReader(chunkedSource(input, rng.range(1, 17)));
    try {
      await readExBlock(reader);
    } catch (e) {
      if (!(e instanceof WireError || e instanceof UnexpectedEofError)) {
        throw new Error(`case ${i} (seed ${SEED}) threw ${e}; input ${toHex(input)}`, { cause: e });
      }
    }
    assert.equal(reader.requests[0], EXBLOCK_HEADER_SIZE);
    assert.ok(reader.requests.every((n) => n <= EXBLOCK_MAX_SIZE), `case ${i}: ${reader.requests}`);
  }
});
