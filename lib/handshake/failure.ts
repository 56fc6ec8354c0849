/**
 * Handshake failures as values (spec 4.4): a class that drives the proxy's reaction, the bare
 * explanation (what the peer is told in an error reply), and the formatted message with YDB's
 * prefix (what the proxy and the logs see).
 * @module
 */

/** TEvHandshakeFail's class: TRANSIENT, PERMANENT or SESSION_MISMATCH. */
export type FailureClass = "transient" | "permanent" | "session_mismatch";

/** Which side of the exchange failed. */
export type HandshakeKind = "outgoing handshake" | "incoming handshake";

/** A failed handshake. */
export interface HandshakeFailure {
  readonly class: FailureClass;
  /** The bare gist, e.g. `ReceiverHostName# b mismatch, expected# c`. */
  readonly explanation: string;
  /**
   * `<kind> Peer# <host or "<unknown>">(<addr or "<unknown>">) [resolve timeout] <explanation>`,
   * as YDB formats it for the proxy.
   */
  readonly message: string;
  /** Network-class failures are logged under the 15 s mute rule (spec 8). */
  readonly network: boolean;
  /** True when an ExBlock error reply with the explanation went to the peer first. */
  readonly errorReplySent: boolean;
}

/** Thrown inside a handshake procedure to end it with a failure; caught at its top. */
export class HandshakeFailedError extends Error {
  override name = "HandshakeFailedError";
  constructor(readonly failure: HandshakeFailure) {
    super(failure.message);
  }
}

/** Thrown inside a handshake procedure to end it without any failure report (poison, Nak...). */
export class HandshakeEndedSilently extends Error {
  override name = "HandshakeEndedSilently";
  constructor(readonly reason: string) {
    super(reason);
  }
}

/** Builds the prefixed message of spec 4.4. */
export function formatFailureMessage(
  kind: HandshakeKind,
  peerHostName: string | undefined,
  peerAddr: string | undefined,
  resolveTimedOut: boolean,
  explanation: string,
): string {
  return `${kind} Peer# ${peerHostName || "<unknown>"}(${peerAddr || "<unknown>"}) ${
    resolveTimedOut ? "[resolve timeout] " : ""
  }${explanation}`;
}
