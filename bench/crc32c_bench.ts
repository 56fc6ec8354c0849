/**
 * CRC-32C candidates side by side: the hand-written slice-by-16 of `lib/wire/crc32c_table.ts`
 * against the npm package `crc-32` (its `crc32c` module), at the sizes the handshake and a
 * large payload see: 48 bytes (the initial packet header), 4 KiB and 1 MiB (the ExBlock limit).
 * `lib/wire/crc32c.ts` exports the faster one. Targets: >= 1.5 GB/s at 1 MiB, <= 50 ns at 48 B.
 *
 * Run with `deno task bench`.
 */
import CRC32C from "crc-32/crc32c.js";
import { crc32cExtendTable } from "../lib/wire/crc32c_table.ts";
import { crc32cExtend } from "../lib/wire/crc32c.ts";

/** `crc-32` takes the previous CRC as its seed and returns a signed int: same contract once unsigned. */
function crc32cExtendNpm(prev: number, data: Uint8Array): number {
  return CRC32C.buf(data, prev) >>> 0;
}

function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let off = 0; off < n; off += 65536) {
    crypto.getRandomValues(out.subarray(off, Math.min(n, off + 65536)));
  }
  return out;
}

// Before timing anything: both candidates must agree, over lengths around every loop boundary
// (16-byte steps, the 512-byte word path), unaligned starts and random chaining values.
const lengths = [0, 1, 3, 15, 16, 17, 47, 48, 49, 255, 511, 512, 513, 527, 4096, 65539];
for (const n of lengths) {
  for (let offset = 0; offset < 4; offset++) {
    const data = randomBytes(n + offset).subarray(offset);
    const prev = crypto.getRandomValues(new Uint32Array(1))[0];
    const want = crc32cExtendNpm(prev, data);
    const got = crc32cExtendTable(prev, data);
    if (got !== want) {
      throw new Error(
        `CRC-32C mismatch: length ${n} offset ${offset} prev ${prev}: ${got} != ${want}`,
      );
    }
  }
}
if (crc32cExtend(0, new TextEncoder().encode("123456789")) !== 0xe3069283) {
  throw new Error("lib/wire/crc32c.ts fails the CRC-32C check value");
}

const sizes: [string, number][] = [["48 B", 48], ["4 KiB", 4096], ["1 MiB", 1 << 20]];
/** Results go here so the optimiser cannot drop the calls. */
let sink = 0;
for (const [label, size] of sizes) {
  const data = randomBytes(size);
  Deno.bench({
    name: `crc-32 npm, ${label}`,
    group: `crc32c ${label}`,
    baseline: true,
    fn: () => {
      sink ^= crc32cExtendNpm(0, data);
    },
  });
  Deno.bench({
    name: `hand-written slice-by-16, ${label}`,
    group: `crc32c ${label}`,
    fn: () => {
      sink ^= crc32cExtendTable(0, data);
    },
  });
}
