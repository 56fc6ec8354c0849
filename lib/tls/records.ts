/**
 * TLS record framing (RFC 8446 section 5.1, RFC 5246 section 6.2): just enough to cut a byte
 * stream into whole records, so the TLS engine can be fed one record at a time and never sees a
 * byte past the record that carried the peer's close_notify.
 * @module
 */
import { UnexpectedEofError } from "../io/buffered_reader.ts";
import type { TlsReader } from "./record_duplex.ts";
import { TlsError } from "./errors.ts";

/** Size of a TLS record header: content type (1), legacy version (2), length (2). */
export const TLS_RECORD_HEADER_SIZE = 5;

/**
 * The largest record body accepted: 2^14 plus the TLS 1.2 ciphertext expansion allowance
 * (2048). TLS 1.3 allows less (2^14 + 256), so this bound covers both.
 */
export const TLS_MAX_RECORD_BODY = 16384 + 2048;

/** Record content types. In TLS 1.3 every encrypted record says `application_data`. */
export const ContentType = {
  change_cipher_spec: 20,
  alert: 21,
  handshake: 22,
  application_data: 23,
  heartbeat: 24,
} as const;

/**
 * Checks a 5-byte record header and returns the length of the body that follows. Throws
 * {@link TlsError} `bad_record` for anything that cannot start a TLS record: a peer that talks
 * plaintext where TLS is due must fail, never be read as data.
 */
export function recordBodyLength(header: Uint8Array): number {
  if (header.length < TLS_RECORD_HEADER_SIZE) {
    throw new TlsError("bad_record", `SSL error: short TLS record header (${header.length} bytes)`);
  }
  const type = header[0];
  const length = (header[3] << 8) | header[4];
  if (
    type < ContentType.change_cipher_spec || type > ContentType.heartbeat || header[1] !== 3 ||
    length > TLS_MAX_RECORD_BODY
  ) {
    const hex = Array.from(header.subarray(0, 5), (b) => b.toString(16).padStart(2, "0")).join("");
    throw new TlsError("bad_record", `SSL error: not a TLS record header: ${hex}`);
  }
  return length;
}

/**
 * Reads one whole TLS record (header and body) from `reader`. Resolves with `null` when the
 * stream ends cleanly before a header starts; rejects with {@link TlsError} `peer_closed` when it
 * ends inside a record, or `bad_record` for a malformed header. A record that cannot be completed
 * is left unconsumed in the reader.
 */
export async function readTlsRecord(reader: TlsReader): Promise<Uint8Array | null> {
  if (reader.buffered === 0) {
    const chunk = await reader.readSome();
    if (chunk === null) return null;
    reader.unread(chunk);
  }
  const header = await readOrPeerClosed(reader, TLS_RECORD_HEADER_SIZE);
  let body: Uint8Array;
  try {
    body = await readOrPeerClosed(reader, recordBodyLength(header));
  } catch (e) {
    reader.unread(header);
    throw e;
  }
  const record = new Uint8Array(TLS_RECORD_HEADER_SIZE + body.length);
  record.set(header);
  record.set(body, TLS_RECORD_HEADER_SIZE);
  return record;
}

async function readOrPeerClosed(reader: TlsReader, n: number): Promise<Uint8Array> {
  try {
    return await reader.readExactly(n);
  } catch (e) {
    if (e instanceof UnexpectedEofError) {
      throw new TlsError(
        "peer_closed",
        `syscall error: connection closed by peer inside a TLS record`,
        {
          cause: e,
        },
      );
    }
    throw e;
  }
}
