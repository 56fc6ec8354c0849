import assert from "node:assert/strict";
import {
  ActorId,
  crc32c,
  crc32cExtend,
  decodeExBlock,
  decodeInitialPacket,
  encodeExBlock,
  encodeInitialPacket,
  verifyInitialPacket,
} from "../lib/wire/mod.ts";
import { fromHex, toHex, vectors } from "./_helpers/vectors.ts";

const ascii = (s: string) => new TextEncoder().encode(s);

Deno.test("fixture copy of the golden vectors matches the spec's file when shared/ is present", async () => {
  let spec: string;
  try {
    spec = await Deno.readTextFile(new URL("../../shared/spec/vectors.json", import.meta.url));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return; // a checkout without shared/ uses the copy
    throw e;
  }
  assert.deepEqual(JSON.parse(spec), vectors);
});

Deno.test("crc32c reproduces every golden CRC value", () => {
  for (const v of vectors.crc32c) {
    const prev = v.extend_from ?? 0;
    assert.equal(crc32cExtend(prev, ascii(v.input_ascii)), v.value, v.input_ascii);
  }
  assert.equal(crc32c(ascii("123456789")), 0xe3069283);
  assert.equal(crc32cExtend(crc32c(ascii("1234")), ascii("56789")), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(0)), 0);
});

Deno.test("actor ids encode to and decode from the golden bytes", () => {
  for (const v of vectors.actorIds) {
    const id = v.service !== undefined
      ? ActorId.service(v.nodeId, v.service)
      : ActorId.plain(v.nodeId, BigInt(v.localId!), v.hint);
    assert.equal(toHex(id.encode()), v.hex);
    const back = ActorId.decode(fromHex(v.hex));
    assert.ok(back.equals(id));
    assert.equal(back.nodeId, v.nodeId);
    if (v.text !== undefined) {
      assert.equal(back.toString(), v.text);
      const parsed = ActorId.parse(v.text);
      assert.ok(parsed.ok);
      assert.ok(parsed.id.equals(id));
    } else {
      assert.ok(back.isService);
    }
  }
});

Deno.test("initial packets V1-V5 encode to the golden bytes and decode to their fields", () => {
  for (const v of vectors.initialPackets) {
    const fields = {
      selfVirtualId: ActorId.decode(fromHex(v.selfVirtualId)),
      peerVirtualId: ActorId.decode(fromHex(v.peerVirtualId)),
      nextPacket: BigInt(v.nextPacket),
      version: BigInt(v.version),
    };
    assert.equal(toHex(encodeInitialPacket(fields)), v.hex, v.name);
    const decoded = decodeInitialPacket(fromHex(v.hex));
    assert.ok(decoded.selfVirtualId.equals(fields.selfVirtualId), v.name);
    assert.ok(decoded.peerVirtualId.equals(fields.peerVirtualId), v.name);
    assert.equal(decoded.nextPacket, fields.nextPacket, v.name);
    assert.equal(decoded.version, fields.version, v.name);
    assert.equal(decoded.checksum, v.checksum, v.name);
    assert.deepEqual(verifyInitialPacket(decoded), { ok: true }, v.name);
  }
});

Deno.test("ExBlocks E1-E8 frame to the golden bytes and unframe to their payloads", () => {
  for (const v of vectors.exBlocks) {
    const payload = fromHex(v.payloadHex);
    assert.equal(toHex(encodeExBlock(payload)), v.frameHex, v.name);
    const { payload: back, consumed } = decodeExBlock(fromHex(v.frameHex));
    assert.equal(toHex(back), v.payloadHex, v.name);
    assert.equal(consumed, v.frameHex.length / 2, v.name);
  }
});
