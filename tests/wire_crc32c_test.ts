import assert from "node:assert/strict";
import { crc32c, crc32cExtend } from "../lib/wire/mod.ts";
import { crc32cExtendTable } from "../lib/wire/crc32c_table.ts";
import { Rng, testSeed } from "./_helpers/random.ts";

/** CRC-32C one bit at a time, straight from the definition: the reference for the tables. */
function crc32cBitwise(prev: number, data: Uint8Array): number {
  let crc = ~prev >>> 0;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return ~crc >>> 0;
}

Deno.test("crc32cExtend equals a bitwise CRC-32C on both sides of the 16-byte and 512-byte paths", () => {
  const seed = testSeed(0xc4c32c);
  const rng = new Rng(seed);
  const lengths = [0, 1, 15, 16, 17, 48, 52, 511, 512, 513, 527, 528, 529, 4096, 65536 + 3];
  for (const length of lengths) {
    for (let offset = 0; offset < 4; offset++) {
      const data = rng.bytes(length + offset).subarray(offset);
      const prev = rng.chance(0.5) ? 0 : rng.u32();
      const want = crc32cBitwise(prev, data);
      assert.equal(
        crc32cExtend(prev, data),
        want,
        `seed ${seed} length ${length} offset ${offset}`,
      );
      assert.equal(crc32cExtendTable(prev, data), want);
    }
  }
});

Deno.test("crc32cExtend chains: the CRC of a split input equals the CRC of the whole", () => {
  const seed = testSeed(0xc4a1);
  const rng = new Rng(seed);
  for (let i = 0; i < 50; i++) {
    const data = rng.bytes(rng.int(3000));
    const cut = rng.int(data.length + 1);
    assert.equal(
      crc32cExtend(crc32c(data.subarray(0, cut)), data.subarray(cut)),
      crc32c(data),
      `seed ${seed} case ${i}`,
    );
  }
});
