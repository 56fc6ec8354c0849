/**
 * The peer's identity after a TLS handshake: the AuthCN rule and the certificate-failure text.
 * @module
 */
import type tls from "node:tls";
import { TlsError } from "./errors.ts";

/** YDB reads the CN into a 256-byte buffer: at most 255 bytes survive. */
const MAX_CN_BYTES = 255;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * The AuthCN rule of spec 5.3: the subject common name as text, at most 255 bytes (UTF-8; a
 * character cut in the middle is dropped), stripped at the first NUL; `""` when there is none.
 * With several CN entries the first counts, as OpenSSL's lookup by NID returns the first.
 */
export function commonNameText(cn: string | readonly string[] | undefined): string {
  let text = typeof cn === "string" ? cn : (cn?.[0] ?? "");
  const nul = text.indexOf("\0");
  if (nul >= 0) text = text.slice(0, nul);
  const bytes = encoder.encode(text);
  if (bytes.length <= MAX_CN_BYTES) return text;
  let end = MAX_CN_BYTES;
  while (end > 0 && (bytes[end] & 0xc0) === 0x80) end--; // do not split a UTF-8 sequence
  return decoder.decode(bytes.subarray(0, end));
}

/** The peer certificate's subject CN after {@link commonNameText}; `""` without a certificate. */
export function peerCommonName(socket: tls.TLSSocket): string {
  const cert = socket.getPeerCertificate();
  return commonNameText(cert?.subject?.CN);
}

/** OpenSSL's wording for the verification codes `node:tls` reports. */
const VERIFY_TEXT: Record<string, string> = {
  CERT_HAS_EXPIRED: "certificate has expired",
  CERT_NOT_YET_VALID: "certificate is not yet valid",
  DEPTH_ZERO_SELF_SIGNED_CERT: "self-signed certificate",
  SELF_SIGNED_CERT_IN_CHAIN: "self-signed certificate in certificate chain",
  UNABLE_TO_GET_ISSUER_CERT: "unable to get issuer certificate",
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: "unable to get local issuer certificate",
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: "unable to verify the first certificate",
  CERT_SIGNATURE_FAILURE: "certificate signature failure",
  CERT_REVOKED: "certificate revoked",
  INVALID_PURPOSE: "unsupported certificate purpose",
};

/** True for a code that `node:tls` uses for a failed verification of the peer's chain. */
export function isVerifyCode(code: unknown): code is string {
  return typeof code === "string" && (code in VERIFY_TEXT || code === "CERT_UNTRUSTED" ||
    code === "CERT_REJECTED" || code === "CERT_CHAIN_TOO_LONG");
}

/** The subject and issuer of the peer's certificate as one-line texts, when there is one. */
function certLines(socket: tls.TLSSocket | undefined): { subject?: string; issuer?: string } {
  try {
    const cert = socket?.getPeerX509Certificate();
    if (!cert) return {};
    const oneLine = (dn: string) => dn.split("\n").filter((s) => s !== "").join(", ");
    return { subject: oneLine(cert.subject), issuer: oneLine(cert.issuer) };
  } catch {
    return {};
  }
}

/**
 * The error for a peer certificate that failed verification, in the gist of YDB's
 * "Error during certificate validation error# <reason> cert# <subject>" (spec 4.5; the depth
 * is not known here). `code` is the verification code `node:tls` reports.
 */
export function certificateError(
  code: string,
  socket?: tls.TLSSocket,
  cause?: unknown,
): TlsError {
  const reason = VERIFY_TEXT[code] ? `${VERIFY_TEXT[code]} (${code})` : code;
  const { subject, issuer } = certLines(socket);
  let message = `Error during certificate validation error# ${reason}`;
  if (subject !== undefined) message += ` cert# ${subject}`;
  if (issuer !== undefined && /ISSUER/.test(code)) message += ` issuer# ${issuer}`;
  return new TlsError("certificate_invalid", message, { cause });
}

/** The error for a peer that presented no certificate. */
export function noPeerCertificateError(): TlsError {
  return new TlsError(
    "no_peer_certificate",
    "Error during certificate validation error# peer did not return a certificate",
  );
}
