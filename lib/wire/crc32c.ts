/**
 * The CRC32C shim: one small interface over the implementation chosen by measurement
 * (see README, "CRC32C"). Standard CRC-32C (iSCSI, RFC 3720): reflected, init and final xor
 * 0xFFFFFFFF, which is what YDB's `Crc32cExtend` computes (spec 2.4).
 * @module
 */
import { crc32cExtendTable } from "./crc32c_table.ts";

/**
 * `Crc32cExtend(prev, data)`: the CRC-32C of (whatever gave `prev`) followed by `data`.
 * `crc32cExtend(0, x)` is the plain CRC-32C of `x`; `crc32cExtend(0, empty)` is 0.
 * Returns an unsigned 32-bit value.
 */
export const crc32cExtend: (prev: number, data: Uint8Array) => number = crc32cExtendTable;

/** The plain CRC-32C of `data`, as an unsigned 32-bit value. */
export function crc32c(data: Uint8Array): number {
  return crc32cExtend(0, data);
}
