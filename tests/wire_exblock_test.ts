import assert from "node:assert/strict";
import {
  crc32c,
  decodeExBlock,
  decodeExBlockHeader,
  encodeExBlock,
  EXBLOCK_HEADER_SIZE,
  EXBLOCK_MAX_SIZE,
  exBlockChecksum,
  verifyExBlockPayload,
  WireError,
} from "../lib/wire/mod.ts";
import { Rng, testSeed } from "./_helpers/random.ts";
import { fromHex, toHex, vectors } from "./_helpers/vectors.ts";

const MiB = 1 << 20;
const E6 = vectors.exBlocks.find((v) => v.name === "E6")!;

function throwsWire(fn: () => unknown, code: string): void {
  assert.throws(fn, (e: unknown) => e instanceof WireError && e.code === code);
}

/** An 8-byte header alone: checksum 0 and the given announced size. */
function headerOnly(size: number): Uint8Array {
  const out = new Uint8Array(EXBLOCK_HEADER_SIZE);
  new DataView(out.buffer).setUint32(4, size, true);
  return out;
}

Deno.test("an ExBlock is checksum LE, size LE, payload; the checksum covers size bytes then payload", () => {
  const payload = fromHex(E6.payloadHex);
  const frame = encodeExBlock(payload);
  assert.equal(frame.length, EXBLOCK_HEADER_SIZE + payload.length);
  const view = new DataView(frame.buffer);
  assert.equal(view.getUint32(4, true), payload.length);
  const sizeAndPayload = frame.subarray(4);
  assert.equal(view.getUint32(0, true), crc32c(sizeAndPayload));
  assert.equal(exBlockChecksum(payload), E6.checksum);
  assert.equal(toHex(frame.subarray(8)), E6.payloadHex);
});

Deno.test("encode then decode gives back the payload and the frame length, over random payloads", () => {
  const seed = testSeed(0xeb10c);
  const rng = new Rng(seed);
  for (let i = 0; i < 200; i++) {
    const size = rng.pick([0, 1, 2, 15, 16, 17, 76, rng.int(600), rng.int(70000)]);
    const payload = rng.bytes(size);
    const frame = encodeExBlock(payload);
    const header = decodeExBlockHeader(frame);
    assert.equal(header.size, size);
    assert.equal(header.checksum, exBlockChecksum(payload));
    const { payload: back, consumed } = decodeExBlock(frame);
    assert.equal(consumed, frame.length, `seed ${seed} case ${i}`);
    assert.deepEqual(back, payload, `seed ${seed} case ${i}`);
  }
});

Deno.test("decodeExBlock takes one frame from the front and reports how many bytes it used", () => {
  const e1 = fromHex(vectors.exBlocks[0].frameHex);
  const e3 = fromHex(vectors.exBlocks[2].frameHex);
  const both = new Uint8Array(e1.length + e3.length);
  both.set(e1);
  both.set(e3, e1.length);
  const first = decodeExBlock(both);
  assert.equal(first.consumed, e1.length);
  assert.equal(toHex(first.payload), vectors.exBlocks[0].payloadHex);
  const second = decodeExBlock(both.subarray(first.consumed));
  assert.equal(second.consumed, e3.length);
  assert.equal(toHex(second.payload), vectors.exBlocks[2].payloadHex);
});

Deno.test("decodeExBlockHeader rejects an announced 1 MiB + 1 with exblock_size from the header alone", () => {
  throwsWire(() => decodeExBlockHeader(headerOnly(MiB + 1)), "exblock_size");
  throwsWire(() => decodeExBlock(headerOnly(MiB + 1)), "exblock_size");
});

Deno.test("decodeExBlockHeader rejects an announced 64 MiB and 2^32-1 with exblock_size", () => {
  throwsWire(() => decodeExBlockHeader(headerOnly(64 * MiB)), "exblock_size");
  throwsWire(() => decodeExBlockHeader(headerOnly(0xffffffff)), "exblock_size");
  // The error says what YDB says: the PERMANENT "Incorrect extended header size".
  assert.throws(() => decodeExBlockHeader(headerOnly(64 * MiB)), /Incorrect extended header size/);
});

Deno.test("decodeExBlockHeader accepts exactly 1 MiB, and a 1 MiB frame decodes", () => {
  assert.equal(EXBLOCK_MAX_SIZE, MiB);
  assert.equal(decodeExBlockHeader(headerOnly(MiB)).size, MiB);
  const payload = new Uint8Array(MiB).fill(0xa5);
  const frame = encodeExBlock(payload);
  const { payload: back, consumed } = decodeExBlock(frame);
  assert.equal(back.length, MiB);
  assert.equal(consumed, MiB + EXBLOCK_HEADER_SIZE);
});

Deno.test("size 0 is legal: the E5 frame decodes to an empty payload", () => {
  const e5 = vectors.exBlocks.find((v) => v.name === "E5")!;
  assert.equal(toHex(encodeExBlock(new Uint8Array(0))), e5.frameHex);
  const { payload, consumed } = decodeExBlock(fromHex(e5.frameHex));
  assert.equal(payload.length, 0);
  assert.equal(consumed, 8);
  assert.deepEqual(decodeExBlockHeader(fromHex(e5.frameHex)), { checksum: e5.checksum, size: 0 });
});

Deno.test("a flipped bit in the checksum or the payload is exblock_crc", () => {
  const frame = fromHex(E6.frameHex);
  for (const at of [0, 3, 8, 40, frame.length - 1]) {
    const bad = frame.slice();
    bad[at] ^= 0x04;
    throwsWire(() => decodeExBlock(bad), "exblock_crc");
  }
  assert.throws(() => {
    const bad = frame.slice();
    bad[20] ^= 1;
    decodeExBlock(bad);
  }, /Extended header CRC error/);
  // The same check through the two-step receiver path: header first, then the payload.
  const header = decodeExBlockHeader(frame);
  const payload = frame.slice(8);
  payload[0] ^= 0x80;
  throwsWire(() => verifyExBlockPayload(header, payload), "exblock_crc");
  verifyExBlockPayload(header, frame.subarray(8));
});

Deno.test("a changed size field is caught: truncated when it grows, exblock_crc when it shrinks", () => {
  const frame = fromHex(E6.frameHex);
  const grown = frame.slice();
  grown[4] += 1;
  throwsWire(() => decodeExBlock(grown), "truncated");
  const shrunk = frame.slice();
  shrunk[4] -= 1;
  throwsWire(() => decodeExBlock(shrunk), "exblock_crc");
});

Deno.test("a truncated header or payload is truncated", () => {
  const frame = fromHex(E6.frameHex);
  for (const n of [0, 1, 7]) {
    throwsWire(() => decodeExBlockHeader(frame.subarray(0, n)), "truncated");
    throwsWire(() => decodeExBlock(frame.subarray(0, n)), "truncated");
  }
  for (const n of [8, 9, frame.length - 1]) {
    throwsWire(() => decodeExBlock(frame.subarray(0, n)), "truncated");
  }
  const header = decodeExBlockHeader(frame);
  throwsWire(() => verifyExBlockPayload(header, frame.subarray(8, frame.length - 1)), "truncated");
});

Deno.test("encodeExBlock refuses a payload above 1 MiB with exblock_size", () => {
  throwsWire(() => encodeExBlock(new Uint8Array(MiB + 1)), "exblock_size");
  assert.equal(encodeExBlock(new Uint8Array(MiB)).length, MiB + 8);
});
