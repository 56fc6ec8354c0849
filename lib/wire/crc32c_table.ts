/**
 * Hand-written CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) with slice-by-16
 * tables. Kept beside the npm candidate so `bench/crc32c_bench.ts` can compare both in one
 * run; `crc32c.ts` exports the one the measurement chose.
 * @module
 */

const POLY = 0x82f63b78;

/** 16 tables of 256 u32 each: T[k][b] is the CRC of byte b followed by k zero bytes. */
const T = new Uint32Array(16 * 256);
for (let b = 0; b < 256; b++) {
  let c = b;
  for (let i = 0; i < 8; i++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
  T[b] = c;
}
for (let b = 0; b < 256; b++) {
  for (let k = 1; k < 16; k++) {
    const prev = T[(k - 1) * 256 + b];
    T[k * 256 + b] = (prev >>> 8) ^ T[prev & 0xff];
  }
}

/**
 * Extends the raw (pre-inverted) register `crc` over `data[start, end)`.
 * The loop body reads 16 bytes per step; the tail goes byte by byte.
 */
function update(crc: number, data: Uint8Array, start: number, end: number): number {
  let i = start;
  while (end - i >= 16) {
    const a = (data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)) ^ crc;
    crc = T[15 * 256 + (a & 0xff)] ^
      T[14 * 256 + ((a >>> 8) & 0xff)] ^
      T[13 * 256 + ((a >>> 16) & 0xff)] ^
      T[12 * 256 + (a >>> 24)] ^
      T[11 * 256 + data[i + 4]] ^
      T[10 * 256 + data[i + 5]] ^
      T[9 * 256 + data[i + 6]] ^
      T[8 * 256 + data[i + 7]] ^
      T[7 * 256 + data[i + 8]] ^
      T[6 * 256 + data[i + 9]] ^
      T[5 * 256 + data[i + 10]] ^
      T[4 * 256 + data[i + 11]] ^
      T[3 * 256 + data[i + 12]] ^
      T[2 * 256 + data[i + 13]] ^
      T[256 + data[i + 14]] ^
      T[data[i + 15]];
    i += 16;
  }
  while (i < end) crc = (crc >>> 8) ^ T[(crc ^ data[i++]) & 0xff];
  return crc;
}

/** `Crc32cExtend(prev, data)`: standard chaining (invert, run the table, invert). */
export function crc32cExtendTable(prev: number, data: Uint8Array): number {
  return (~update(~prev, data, 0, data.length)) >>> 0;
}
