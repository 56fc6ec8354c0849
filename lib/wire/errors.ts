/**
 * Typed decode errors. Every decoder in `lib/wire` throws only {@link WireError}: a hostile
 * peer can make a decode fail, never make it throw something else or allocate past a bound.
 * @module
 */

/** Why a decode failed. Stable strings that callers branch on, never message text. */
export type WireErrorCode =
  | "truncated"
  | "initial_packet_crc"
  | "initial_packet_version"
  | "exblock_size"
  | "exblock_crc"
  | "protobuf_malformed"
  | "protobuf_missing_required"
  | "bad_argument";

/** A decode or encode failure with a stable {@link WireErrorCode}. */
export class WireError extends Error {
  /** Always `"WireError"`. */
  override name = "WireError";
  /** A failure of kind `code`, described by `message`. */
  constructor(readonly code: WireErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** Throws a {@link WireError} `truncated` unless `have >= need`. */
export function needBytes(what: string, have: number, need: number): void {
  if (have < need) {
    throw new WireError("truncated", `${what}: need ${need} bytes, have ${have}`);
  }
}
