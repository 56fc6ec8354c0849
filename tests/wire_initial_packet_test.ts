import assert from "node:assert/strict";
import {
  ActorId,
  crc32c,
  decodeInitialPacket,
  encodeInitialPacket,
  INITIAL_PACKET_HEADER_SIZE,
  INITIAL_PACKET_SIZE,
  verifyInitialPacket,
  WireError,
} from "../lib/wire/mod.ts";
import { Rng, testSeed } from "./_helpers/random.ts";
import { fromHex, toHex, vectors } from "./_helpers/vectors.ts";

const U64_MAX = (1n << 64n) - 1n;
const A = ActorId.plain(1, 7061644215716937729n);
const B = ActorId.plain(2, 7061644215716937730n);
const V1 = fromHex(vectors.initialPackets[0].hex);

function throwsWire(fn: () => unknown, code: string): void {
  assert.throws(fn, (e: unknown) => e instanceof WireError && e.code === code);
}

function randomId(rng: Rng): ActorId {
  return rng.chance(0.1) ? ActorId.EMPTY : new ActorId(rng.u64(), rng.u32(), rng.u32());
}

Deno.test("an initial packet is 52 bytes: ids, NextPacket and Version LE, CRC32C of the first 48", () => {
  const bytes = encodeInitialPacket({ selfVirtualId: A, peerVirtualId: B, nextPacket: 42n });
  assert.equal(bytes.length, INITIAL_PACKET_SIZE);
  assert.equal(toHex(bytes.subarray(0, 16)), toHex(A.encode()));
  assert.equal(toHex(bytes.subarray(16, 32)), toHex(B.encode()));
  assert.equal(toHex(bytes.subarray(32, 40)), "2a00000000000000");
  assert.equal(toHex(bytes.subarray(40, 48)), "0200000000000000"); // Version defaults to 2
  const crc = new DataView(bytes.buffer).getUint32(48, true);
  assert.equal(crc, crc32c(bytes.subarray(0, INITIAL_PACKET_HEADER_SIZE)));
  assert.equal(toHex(bytes), vectors.initialPackets[2].hex); // V3
});

Deno.test("encode then decode keeps every field, over random ids, NextPacket and Version", () => {
  const seed = testSeed(0x1a171a1);
  const rng = new Rng(seed);
  for (let i = 0; i < 500; i++) {
    const fields = {
      selfVirtualId: randomId(rng),
      peerVirtualId: randomId(rng),
      nextPacket: rng.u64(),
      version: rng.chance(0.5) ? 2n : rng.u64(),
    };
    const bytes = encodeInitialPacket(fields);
    const back = decodeInitialPacket(bytes);
    const where = `seed ${seed} case ${i}`;
    assert.ok(back.selfVirtualId.equals(fields.selfVirtualId), where);
    assert.ok(back.peerVirtualId.equals(fields.peerVirtualId), where);
    assert.equal(back.nextPacket, fields.nextPacket, where);
    assert.equal(back.version, fields.version, where);
    assert.equal(back.checksum, back.computedChecksum, where);
    assert.equal(verifyInitialPacket(back).ok, fields.version === 2n, where);
  }
});

Deno.test("verify gives reason version, Incompatible protocol 7, for version 7 with a correct CRC", () => {
  const bytes = encodeInitialPacket({
    selfVirtualId: A,
    peerVirtualId: ActorId.EMPTY,
    nextPacket: 0n,
    version: 7n,
  });
  const packet = decodeInitialPacket(bytes);
  assert.equal(packet.checksum, packet.computedChecksum);
  assert.deepEqual(verifyInitialPacket(packet), {
    ok: false,
    reason: "version",
    explanation: "Incompatible protocol 7",
  });
  // Newer versions 3 and 4 are not accepted by the early-2022 receiver, nor is 0 or 2^64-1.
  for (const version of [0n, 1n, 3n, 4n, U64_MAX]) {
    const other = decodeInitialPacket(
      encodeInitialPacket({ selfVirtualId: A, peerVirtualId: B, nextPacket: 1n, version }),
    );
    assert.deepEqual(verifyInitialPacket(other), {
      ok: false,
      reason: "version",
      explanation: `Incompatible protocol ${version}`,
    });
  }
});

Deno.test("verify gives reason crc, Initial packet CRC error, for any single flipped bit", () => {
  for (let bit = 0; bit < INITIAL_PACKET_SIZE * 8; bit++) {
    const bytes = V1.slice();
    bytes[bit >> 3] ^= 1 << (bit & 7);
    assert.deepEqual(
      verifyInitialPacket(decodeInitialPacket(bytes)),
      { ok: false, reason: "crc", explanation: "Initial packet CRC error" },
      `bit ${bit}`,
    );
  }
});

Deno.test("verify checks the CRC before the version: version 7 with a bad CRC is a crc failure", () => {
  const bytes = encodeInitialPacket({
    selfVirtualId: A,
    peerVirtualId: ActorId.EMPTY,
    nextPacket: 0n,
    version: 7n,
  });
  const crcError = { ok: false, reason: "crc", explanation: "Initial packet CRC error" };
  bytes[50] ^= 0x01;
  assert.deepEqual(verifyInitialPacket(decodeInitialPacket(bytes)), crcError);
  // Writing version 7 over a good version-2 packet without re-computing the CRC: also crc.
  const patched = V1.slice();
  patched[40] = 7;
  assert.deepEqual(verifyInitialPacket(decodeInitialPacket(patched)), crcError);
});

Deno.test("decode refuses a 51-byte buffer with truncated and ignores bytes after the 52nd", () => {
  throwsWire(() => decodeInitialPacket(V1.subarray(0, 51)), "truncated");
  throwsWire(() => decodeInitialPacket(new Uint8Array(0)), "truncated");
  const longer = new Uint8Array(60);
  longer.set(V1);
  longer.fill(0xee, 52);
  const packet = decodeInitialPacket(longer);
  assert.deepEqual(verifyInitialPacket(packet), { ok: true });
  assert.ok(packet.selfVirtualId.equals(A));
});

Deno.test("decode reads a packet that starts inside a larger buffer", () => {
  const buf = new Uint8Array(3 + 52);
  buf.set(V1, 3);
  const packet = decodeInitialPacket(buf.subarray(3));
  assert.deepEqual(verifyInitialPacket(packet), { ok: true });
  assert.ok(packet.selfVirtualId.equals(A));
  assert.equal(packet.checksum, vectors.initialPackets[0].checksum);
});

Deno.test("encode refuses a NextPacket or Version outside u64 with bad_argument", () => {
  const base = { selfVirtualId: A, peerVirtualId: B };
  throwsWire(() => encodeInitialPacket({ ...base, nextPacket: -1n }), "bad_argument");
  throwsWire(() => encodeInitialPacket({ ...base, nextPacket: U64_MAX + 1n }), "bad_argument");
  throwsWire(() => encodeInitialPacket({ ...base, nextPacket: 0n, version: -1n }), "bad_argument");
  throwsWire(
    () => encodeInitialPacket({ ...base, nextPacket: 0n, version: U64_MAX + 1n }),
    "bad_argument",
  );
  const max = decodeInitialPacket(encodeInitialPacket({ ...base, nextPacket: U64_MAX }));
  assert.equal(max.nextPacket, U64_MAX);
});
