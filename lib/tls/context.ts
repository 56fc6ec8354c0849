/**
 * TLS settings of a node: credentials, protocol versions, and the role rule.
 * @module
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import tls from "node:tls";
import { TlsError } from "./errors.ts";

/** PEM texts of a node's TLS identity, as in YDB's settings (spec 5.3). */
export interface TlsCredentials {
  /** The node's certificate; further PEM certificates after the leaf are sent as its chain. */
  readonly cert: string;
  /** The private key of the leaf certificate (PKCS#8, SEC1 EC or PKCS#1 RSA). */
  readonly key: string;
  /** The trusted CA certificates, one or more PEM blocks. Only these are trusted. */
  readonly ca: string;
}

/** A TLS protocol version that the layer can negotiate. */
export type TlsVersion = "TLSv1.2" | "TLSv1.3";

/** Options of {@link createTlsContext}. */
export interface TlsContextOptions {
  /** Lowest version offered or accepted. Default `"TLSv1.2"`, as in YDB. */
  readonly minVersion?: TlsVersion;
  /** Highest version. Default `"TLSv1.3"` (newer YDB); the early revision uses `"TLSv1.2"`. */
  readonly maxVersion?: TlsVersion;
}

/** Which side of the TLS handshake a node plays. */
export type TlsRole = "server" | "client";

/**
 * The TLS role rule of spec 5.2: the node with the lower node id is the TLS server, whichever
 * side dialed; the higher one is the client and sends ClientHello. Equal ids (a node talking to
 * itself, which the handshake refuses earlier) give `"client"`.
 *
 * @example
 * ```ts
 * import { tlsRoleFor } from "./context.ts";
 * console.log(tlsRoleFor(1, 2), tlsRoleFor(2, 1)); // server client
 * ```
 */
export function tlsRoleFor(selfNodeId: number, peerNodeId: number): TlsRole {
  return selfNodeId < peerNodeId ? "server" : "client";
}

/** What the TLS exchanges need from a context; module-internal. */
export interface TlsContextInternals {
  readonly clientContext: tls.SecureContext;
  /** The server side's credentials, parsed once (see `serverFor` in exchange.ts). */
  readonly serverContext: tls.SecureContext;
  readonly serverOptions: tls.TlsOptions;
}

const internals = new WeakMap<TlsContext, TlsContextInternals>();

/**
 * A node's TLS configuration, built once by {@link createTlsContext} and shared by all its
 * connections (YDB keeps one per proxy). Opaque: only contexts made by
 * {@link createTlsContext} are accepted.
 */
export interface TlsContext {
  /** Lowest protocol version. */
  readonly minVersion: TlsVersion;
  /** Highest protocol version. */
  readonly maxVersion: TlsVersion;
  /** The subject common name of this node's own certificate. */
  readonly ownCN: string;
}

/** Module-internal: the parsed parts of a {@link TlsContext}. */
export function contextInternals(context: TlsContext): TlsContextInternals {
  const parts = internals.get(context);
  if (!parts) throw new TypeError("not a TlsContext made by createTlsContext");
  return parts;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/**
 * Checks a node's credentials and builds its {@link TlsContext}: mutual TLS (the server demands
 * a client certificate, both sides verify the peer against `ca` only), no host name check, no
 * SNI, TLS 1.2 to 1.3 by default. Throws {@link TlsError} `bad_credentials` when a PEM text
 * does not parse, the key does not match the certificate, or `ca` holds no certificate.
 *
 * Cipher suites are not configurable: `node:tls` in Deno (rustls) offers ECDHE suites only and
 * ignores a cipher list, so a peer limited to YDB's early default, the static-RSA suite
 * AES128-GCM-SHA256, cannot connect (spec 5.5).
 */
export function createTlsContext(
  credentials: TlsCredentials,
  options: TlsContextOptions = {},
): TlsContext {
  const minVersion = options.minVersion ?? "TLSv1.2";
  const maxVersion = options.maxVersion ?? "TLSv1.3";
  for (const v of [minVersion, maxVersion]) {
    if (v !== "TLSv1.2" && v !== "TLSv1.3") {
      throw new TlsError("bad_credentials", `unsupported TLS version ${String(v)}`);
    }
  }
  if (minVersion === "TLSv1.3" && maxVersion === "TLSv1.2") {
    throw new TlsError("bad_credentials", "minVersion TLSv1.3 is above maxVersion TLSv1.2");
  }
  const ownCN = checkCredentials(credentials);
  const { cert, key, ca } = credentials;
  let clientContext: tls.SecureContext;
  let serverContext: tls.SecureContext;
  try {
    clientContext = tls.createSecureContext({ cert, key, ca, minVersion, maxVersion });
    serverContext = tls.createSecureContext({ cert, key, ca, minVersion, maxVersion });
  } catch (e) {
    throw new TlsError("bad_credentials", `SSL error: ${errorText(e)}`, { cause: e });
  }
  const serverOptions: tls.TlsOptions = {
    cert,
    key,
    ca,
    minVersion,
    maxVersion,
    requestCert: true,
    rejectUnauthorized: true,
  };
  const context: TlsContext = Object.freeze({ minVersion, maxVersion, ownCN });
  internals.set(context, { clientContext, serverContext, serverOptions });
  return context;
}

function checkCredentials({ cert, key, ca }: TlsCredentials): string {
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch (e) {
    throw new TlsError("bad_credentials", `cannot parse the certificate: ${errorText(e)}`, {
      cause: e,
    });
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (e) {
    throw new TlsError("bad_credentials", `cannot parse the private key: ${errorText(e)}`, {
      cause: e,
    });
  }
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new TlsError("bad_credentials", "the private key does not match the certificate");
  }
  const cas = ca.match(PEM_CERT) ?? [];
  if (cas.length === 0) throw new TlsError("bad_credentials", "no CA certificate in ca");
  for (const pem of cas) {
    try {
      new X509Certificate(pem);
    } catch (e) {
      throw new TlsError("bad_credentials", `cannot parse a CA certificate: ${errorText(e)}`, {
        cause: e,
      });
    }
  }
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(leaf.subject);
  return cn ? cn[1] : "";
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
