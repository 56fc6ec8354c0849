/**
 * Throw-away TLS credentials made at run time, in TypeScript, with WebCrypto only: a fresh CA
 * and node certificates signed by it, all P-256 ECDSA. For demos and tests that must not need
 * openssl nor write anything outside a temporary folder. Not for production: the CA's private
 * key is dropped as soon as the node certificates are signed, and nothing is revocable.
 *
 * The X.509 encoding is the minimum that rustls (Deno's `node:tls`) and OpenSSL accept: v3,
 * random positive serial, ECDSA-with-SHA256, a Common Name subject, basic constraints, key usage,
 * and on node certificates the serverAuth and clientAuth purposes (the TLS role follows node ids).
 * @module
 */
import type { TlsCredentials } from "./context.ts";

/** Options of {@link generateCredentials}. */
export interface GenerateOptions {
  /** Validity in days from now (one hour of back-dating is added for clock skew). Default 1. */
  readonly validDays?: number;
  /** Common Name of the CA. Default `"ic-handshake throw-away CA"`. */
  readonly caName?: string;
}

/** What {@link generateCredentials} returns. */
export interface GeneratedCredentials {
  /** The CA certificate (PEM), also set as `ca` of every node's credentials. */
  readonly ca: string;
  /** One set of credentials per requested Common Name, in order. */
  readonly nodes: readonly TlsCredentials[];
}

/**
 * Makes a CA and one certificate per Common Name in `commonNames`, signed by that CA.
 *
 * @example
 * ```ts
 * import { generateCredentials } from "./generate.ts";
 * const { nodes } = await generateCredentials(["node-1", "node-2"]);
 * console.log(nodes.length, nodes[0].cert.startsWith("-----BEGIN CERTIFICATE-----")); // 2 true
 * ```
 */
export async function generateCredentials(
  commonNames: readonly string[],
  options: GenerateOptions = {},
): Promise<GeneratedCredentials> {
  const days = options.validDays ?? 1;
  const now = Date.now();
  const notBefore = new Date(now - 3600_000);
  const notAfter = new Date(now + days * 86400_000);
  const caName = name(options.caName ?? "ic-handshake throw-away CA");
  const caKeys = await newKeyPair();
  const caCert = await certificate({
    subject: caName,
    issuer: caName,
    publicKey: caKeys.publicKey,
    signingKey: caKeys.privateKey,
    notBefore,
    notAfter,
    extensions: [
      extension(OID.basicConstraints, true, seq(bool(true))),
      extension(OID.keyUsage, true, keyUsageBits(KeyUsage.keyCertSign | KeyUsage.cRLSign)),
    ],
  });
  const ca = pem("CERTIFICATE", caCert);
  const nodes: TlsCredentials[] = [];
  for (const cn of commonNames) {
    const keys = await newKeyPair();
    const cert = await certificate({
      subject: name(cn),
      issuer: caName,
      publicKey: keys.publicKey,
      signingKey: caKeys.privateKey,
      notBefore,
      notAfter,
      extensions: [
        extension(OID.basicConstraints, true, seq()),
        extension(OID.keyUsage, true, keyUsageBits(KeyUsage.digitalSignature)),
        extension(OID.extKeyUsage, false, seq(oid(OID.serverAuth), oid(OID.clientAuth))),
      ],
    });
    const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey));
    nodes.push({ cert: pem("CERTIFICATE", cert), key: pem("PRIVATE KEY", pkcs8), ca });
  }
  return { ca, nodes };
}

const OID = {
  commonName: "2.5.4.3",
  ecdsaWithSha256: "1.2.840.10045.4.3.2",
  basicConstraints: "2.5.29.19",
  keyUsage: "2.5.29.15",
  extKeyUsage: "2.5.29.37",
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
} as const;

/** KeyUsage bits, numbered from the first (most significant) bit of the first byte. */
const KeyUsage = { digitalSignature: 0x80, keyCertSign: 0x04, cRLSign: 0x02 } as const;

function newKeyPair(): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ]);
}

interface CertificateSpec {
  subject: Uint8Array;
  issuer: Uint8Array;
  publicKey: CryptoKey;
  signingKey: CryptoKey;
  notBefore: Date;
  notAfter: Date;
  extensions: Uint8Array[];
}

async function certificate(spec: CertificateSpec): Promise<Uint8Array> {
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", spec.publicKey));
  const serial = crypto.getRandomValues(new Uint8Array(16));
  serial[0] &= 0x7f; // positive
  serial[0] |= 0x01; // and no leading zero byte to strip
  const algorithm = seq(oid(OID.ecdsaWithSha256));
  const tbs = seq(
    tlv(0xa0, integer(new Uint8Array([2]))), // version v3
    integer(serial),
    algorithm,
    spec.issuer,
    seq(time(spec.notBefore), time(spec.notAfter)),
    spec.subject,
    spki,
    tlv(0xa3, seq(...spec.extensions)),
  );
  const raw = new Uint8Array(
    await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, spec.signingKey, tbs),
  );
  // WebCrypto gives r || s; X.509 wants SEQUENCE { INTEGER r, INTEGER s }.
  const half = raw.length / 2;
  const signature = seq(integer(raw.subarray(0, half)), integer(raw.subarray(half)));
  return seq(tbs, algorithm, bitString(signature));
}

// --- DER --------------------------------------------------------------------------------------

function tlv(tag: number, ...contents: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const length = contents.reduce((n, c) => n + c.length, 0);
  const head = [tag];
  if (length < 0x80) head.push(length);
  else {
    const bytes: number[] = [];
    for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
    head.push(0x80 | bytes.length, ...bytes);
  }
  const out = new Uint8Array(head.length + length);
  out.set(head);
  let off = head.length;
  for (const c of contents) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

const seq = (...items: Uint8Array[]) => tlv(0x30, ...items);
const set = (...items: Uint8Array[]) => tlv(0x31, ...items);
const bool = (v: boolean) => tlv(0x01, new Uint8Array([v ? 0xff : 0]));
const octets = (v: Uint8Array) => tlv(0x04, v);
const bitString = (v: Uint8Array) => tlv(0x03, new Uint8Array([0]), v);

/** An unsigned big-endian integer, minimal and positive. */
function integer(bytes: Uint8Array): Uint8Array {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  const v = bytes.subarray(i);
  return v[0] & 0x80 ? tlv(0x02, new Uint8Array([0]), v) : tlv(0x02, v);
}

function oid(dotted: string): Uint8Array {
  const parts = dotted.split(".").map(Number);
  const out = [parts[0] * 40 + parts[1]];
  for (const p of parts.slice(2)) {
    const group = [p & 0x7f];
    for (let n = Math.floor(p / 128); n > 0; n = Math.floor(n / 128)) {
      group.unshift(0x80 | (n & 0x7f));
    }
    out.push(...group);
  }
  return tlv(0x06, new Uint8Array(out));
}

/** UTCTime up to 2049, GeneralizedTime after, as RFC 5280 requires. */
function time(d: Date): Uint8Array {
  const iso = d.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = iso.slice(0, 19).replace(/[-T:]/g, "") + "Z";
  const ascii = new TextEncoder();
  return d.getUTCFullYear() < 2050
    ? tlv(0x17, ascii.encode(digits.slice(2)))
    : tlv(0x18, ascii.encode(digits));
}

function name(commonName: string): Uint8Array {
  return seq(set(seq(oid(OID.commonName), tlv(0x0c, new TextEncoder().encode(commonName)))));
}

function extension(id: string, critical: boolean, value: Uint8Array): Uint8Array {
  return critical ? seq(oid(id), bool(true), octets(value)) : seq(oid(id), octets(value));
}

/** A one-byte KeyUsage BIT STRING with the trailing unused bits counted, as DER wants. */
function keyUsageBits(bits: number): Uint8Array {
  let unused = 0;
  while (unused < 7 && !(bits & (1 << unused))) unused++;
  return tlv(0x03, new Uint8Array([unused, bits]));
}

function pem(label: string, der: Uint8Array): string {
  let binary = "";
  for (const b of der) binary += String.fromCharCode(b);
  const lines = btoa(binary).match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}
