/**
 * ExBlock framing (spec 2.3): checksum u32 LE, size u32 LE, then `size` payload bytes. The
 * checksum is CRC32C over the 4 size bytes followed by the payload. Payloads above 1 MiB are
 * refused: a sender never writes one, a receiver rejects the header before reading on.
 * @module
 */
import { crc32cExtend } from "./crc32c.ts";
import { needBytes, WireError } from "./errors.ts";

/** Size of the ExBlock header (checksum + size). */
export const EXBLOCK_HEADER_SIZE = 8;
/** Largest payload: 1 MiB. */
export const EXBLOCK_MAX_SIZE = 1 << 20;

/** The 8-byte header of an ExBlock. */
export interface ExBlockHeader {
  /** Checksum as received. */
  readonly checksum: number;
  /** Announced payload length; at most {@link EXBLOCK_MAX_SIZE} once decoded. */
  readonly size: number;
}

/** Scratch for the 4 size bytes; the checksum is synchronous, so one buffer serves all calls. */
const SIZE_BYTES = new Uint8Array(4);

/** The ExBlock checksum of a payload: CRC32C over the LE size bytes, then the payload. */
export function exBlockChecksum(payload: Uint8Array): number {
  const n = payload.length;
  SIZE_BYTES[0] = n & 0xff;
  SIZE_BYTES[1] = (n >>> 8) & 0xff;
  SIZE_BYTES[2] = (n >>> 16) & 0xff;
  SIZE_BYTES[3] = (n >>> 24) & 0xff;
  return crc32cExtend(crc32cExtend(0, SIZE_BYTES), payload);
}

/** Frames a payload. Throws {@link WireError} `exblock_size` above 1 MiB, as YDB asserts. */
export function encodeExBlock(payload: Uint8Array): Uint8Array {
  if (payload.length > EXBLOCK_MAX_SIZE) {
    throw new WireError(
      "exblock_size",
      `ExBlock payload of ${payload.length} bytes exceeds ${EXBLOCK_MAX_SIZE}`,
    );
  }
  const out = new Uint8Array(EXBLOCK_HEADER_SIZE + payload.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, exBlockChecksum(payload), true);
  view.setUint32(4, payload.length, true);
  out.set(payload, EXBLOCK_HEADER_SIZE);
  return out;
}

/**
 * Reads the 8-byte header and checks the announced size before anything is allocated for
 * the payload: above 1 MiB is {@link WireError} `exblock_size` ("Incorrect extended header
 * size", PERMANENT).
 */
export function decodeExBlockHeader(bytes: Uint8Array): ExBlockHeader {
  needBytes("ExBlock header", bytes.length, EXBLOCK_HEADER_SIZE);
  const view = new DataView(bytes.buffer, bytes.byteOffset, EXBLOCK_HEADER_SIZE);
  const size = view.getUint32(4, true);
  if (size > EXBLOCK_MAX_SIZE) {
    throw new WireError(
      "exblock_size",
      `Incorrect extended header size: ${size} exceeds ${EXBLOCK_MAX_SIZE}`,
    );
  }
  return { checksum: view.getUint32(0, true), size };
}

/**
 * Checks a payload read after its header: a mismatch is {@link WireError} `exblock_crc`
 * ("Extended header CRC error", TRANSIENT).
 */
export function verifyExBlockPayload(header: ExBlockHeader, payload: Uint8Array): void {
  if (payload.length !== header.size) {
    throw new WireError(
      "truncated",
      `ExBlock payload: need ${header.size} bytes, have ${payload.length}`,
    );
  }
  const computed = exBlockChecksum(payload);
  if (computed !== header.checksum) {
    throw new WireError(
      "exblock_crc",
      `Extended header CRC error: checksum# ${header.checksum} computed# ${computed}`,
    );
  }
}

/**
 * Decodes one whole frame from a buffer: header, bounds, payload, CRC. Returns the payload
 * (a view into `bytes`) and the number of bytes consumed.
 */
export function decodeExBlock(bytes: Uint8Array): { payload: Uint8Array; consumed: number } {
  const header = decodeExBlockHeader(bytes);
  needBytes("ExBlock payload", bytes.length - EXBLOCK_HEADER_SIZE, header.size);
  const payload = bytes.subarray(EXBLOCK_HEADER_SIZE, EXBLOCK_HEADER_SIZE + header.size);
  verifyExBlockPayload(header, payload);
  return { payload, consumed: EXBLOCK_HEADER_SIZE + header.size };
}
