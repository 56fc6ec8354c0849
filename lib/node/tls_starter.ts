/**
 * TLS for the node's connections: the handshake asks its transport for TLS in a role, and the
 * connection runs it in the main isolate over its own reader and writer with the node's shared
 * TLS context. Full encryption leaves plaintext streams on the connection for the session;
 * AuthOnly leaves the connection in plain TCP with the bytes behind close_notify kept.
 * @module
 */
import type { TlsStarter } from "../handshake/stream_transport.ts";
import { authOnlyTls, startTls, type TlsContext } from "../tls/mod.ts";
import { Connection } from "./connection.ts";

/** A {@link TlsStarter} over the node's TLS context. */
export function tlsStarter(context: TlsContext): TlsStarter {
  return async (connection, role, authOnly) => {
    const transport = { reader: connection.reader, write: (b: Uint8Array) => connection.write(b) };
    if (authOnly) {
      const { authCN } = await authOnlyTls(transport, role, context);
      return { authCN };
    }
    const secure = await startTls(transport, role, context);
    if (connection instanceof Connection) connection.tls = secure;
    return { authCN: secure.authCN };
  };
}
