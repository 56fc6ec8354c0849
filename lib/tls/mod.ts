/**
 * The TLS layer of the interconnect handshake (spec section 5): mutual TLS on the connection
 * the handshake used, in the role fixed by node ids, in full-encryption or AuthOnly mode.
 *
 * @example AuthOnly between two nodes over one loopback connection
 * ```ts ignore
 * import { authOnlyTls, createTlsContext, tlsRoleFor } from "./mod.ts";
 *
 * const ctx = createTlsContext({ cert, key, ca });
 * const { authCN } = await authOnlyTls({ reader, write }, tlsRoleFor(selfNodeId, peerNodeId), ctx);
 * // reader now holds exactly the plain bytes that followed the peer's close_notify
 * ```
 * @module
 */
export { TlsError, type TlsErrorCode } from "./errors.ts";
export {
  createTlsContext,
  type TlsContext,
  type TlsContextOptions,
  type TlsCredentials,
  type TlsRole,
  tlsRoleFor,
  type TlsVersion,
} from "./context.ts";
export {
  type AuthOnlyResult,
  authOnlyTls,
  startTls,
  type TlsHandshakeOptions,
  type TlsReader,
  type TlsStream,
  type TlsTransport,
} from "./exchange.ts";
export { commonNameText } from "./peer.ts";
export {
  generateCredentials,
  type GeneratedCredentials,
  type GenerateOptions,
} from "./generate.ts";
