/**
 * Seeded property tests over every decoder of `lib/wire`: random bytes and mutations of the
 * golden vectors (bit flips, truncation, extension, splices, length-field tampering; the
 * generators are in `_helpers/wire_mutators.ts`, shared with `scripts/fuzz.ts`) must give a
 * value or a WireError, never any other exception. The seed is printed; rerun a failure with
 * `IC_TEST_SEED=<seed> deno task test`.
 */
import assert from "node:assert/strict";
import {
  ActorId,
  decodeExBlockHeader,
  EXBLOCK_HEADER_SIZE,
  EXBLOCK_MAX_SIZE,
  verifyExBlockPayload,
  WireError,
} from "../lib/wire/mod.ts";
import { BufferedReader, type ByteSource, UnexpectedEofError } from "../lib/io/buffered_reader.ts";
import { concat } from "./_helpers/protobuf_fields.ts";
import { Rng, testSeed } from "./_helpers/random.ts";
import { fromHex, toHex, vectors } from "./_helpers/vectors.ts";
import { DECODERS, nextInput, nextText, PARSE_OK } from "./_helpers/wire_mutators.ts";

const SEED = testSeed(0x1c0ffee);
const BYTE_CASES = 7000;
const TEXT_CASES = 2700;
const STREAM_CASES = 300;

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
