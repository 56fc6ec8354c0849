/**
 * Typed TLS failures. Every failure of the TLS layer rejects with {@link TlsError}; a failed TLS
 * exchange is never turned into plaintext.
 * @module
 */

/**
 * Why TLS failed. Stable strings that callers branch on, never message text.
 *
 * - `certificate_invalid`: the peer's certificate did not verify against the configured CA
 *   (unknown issuer, expired, bad signature, ...).
 * - `no_peer_certificate`: the peer sent no certificate (the server demands one).
 * - `handshake_failed`: the TLS engine failed (protocol error, alert from the peer, no common
 *   version or cipher).
 * - `peer_closed`: the TCP stream ended before the TLS exchange finished.
 * - `teardown_data`: AuthOnly teardown received application data instead of close_notify.
 * - `bad_record`: the peer sent bytes that are not a TLS record.
 * - `transport`: writing to the connection failed.
 * - `aborted`: the caller's `AbortSignal` fired.
 * - `bad_credentials`: the certificate, key or CA text could not be loaded.
 */
export type TlsErrorCode =
  | "certificate_invalid"
  | "no_peer_certificate"
  | "handshake_failed"
  | "peer_closed"
  | "teardown_data"
  | "bad_record"
  | "transport"
  | "aborted"
  | "bad_credentials";

/**
 * A TLS failure with a stable {@link TlsErrorCode}. The message follows the gist of YDB's
 * strings (spec 4.5), e.g. "Error during certificate validation error# ..." or
 * "non-zero return from SSL_read_ex: N", so an operator who knows YDB's logs recognises it.
 */
export class TlsError extends Error {
  /** Always `"TlsError"`. */
  override name = "TlsError";
  /** The stable failure class. */
  readonly code: TlsErrorCode;
  /**
   * Makes a TLS error.
   * @param code the stable failure class
   * @param message the explanation, in the gist of YDB's TLS error strings
   * @param options `cause`: the underlying error, if any
   */
  constructor(code: TlsErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}
