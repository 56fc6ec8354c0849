/**
 * A main-side TCP connection: the socket the coordinator owns for the connection's whole life.
 * The handshake reads and writes it through {@link StreamTransport}; TLS, when negotiated, is
 * layered on the same reader and writer; afterwards the session gets Web streams that start
 * with whatever bytes were already read behind the handshake, so nothing is lost or reordered.
 * @module
 */
import { StreamTransport, type TlsStarter } from "../handshake/stream_transport.ts";

/** Plaintext streams of an established TLS layer. */
export interface TlsStreams {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
  /** Sends close_notify and releases the TLS engine (the socket is closed separately). */
  close?(): Promise<void>;
}

/** A connection's data streams after the handshake. */
export interface DataStreams {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
}

/** A TCP connection owned by the coordinator. */
export class Connection extends StreamTransport {
  /** Set by the TLS starter when TLS stays on for the session. */
  tls: TlsStreams | undefined;
  #streams: DataStreams | undefined;
  #conn: Deno.Conn | undefined;

  constructor(
    conn: { readable: ReadableStream<Uint8Array>; writable: WritableStream<Uint8Array> },
    peerAddress: string,
    startTls: TlsStarter | undefined,
    onClose?: () => void,
  ) {
    super({ readable: conn.readable, writable: conn.writable, peerAddress, startTls, onClose });
  }

  /** Wraps an accepted or dialed `Deno.Conn`, with TCP_NODELAY on. */
  static fromDenoConn(conn: Deno.TcpConn, startTls: TlsStarter | undefined): Connection {
    try {
      conn.setNoDelay(true);
    } catch {
      // An already-reset socket fails here; the first read or write reports it properly.
    }
    const remote = conn.remoteAddr;
    const label = remote.hostname.includes(":")
      ? `[${remote.hostname}]:${remote.port}`
      : `${remote.hostname}:${remote.port}`;
    const c: Connection = new Connection(conn, label, startTls, () => {
      c.tls?.close?.().catch(() => {});
      try {
        conn.close();
      } catch {
        // already closed
      }
    });
    c.#conn = conn;
    return c;
  }

  /** The underlying Deno connection, if any. */
  get denoConn(): Deno.Conn | undefined {
    return this.#conn;
  }

  /**
   * The session's view of the connection, created once: the TLS plaintext streams when TLS
   * stays on, else the raw bytes, starting with those already buffered behind the handshake.
   */
  dataStreams(): DataStreams {
    if (this.#streams) return this.#streams;
    if (this.tls) {
      this.#streams = this.tls;
      return this.#streams;
    }
    const reader = this.reader;
    const writer = this.writer;
    const readable = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        try {
          const chunk = await reader.readSome();
          if (chunk === null) {
            controller.close();
            this.close();
          } else controller.enqueue(chunk);
        } catch (e) {
          controller.error(e);
          this.close();
        }
      },
      cancel: () => this.close(),
    });
    const writable = new WritableStream<Uint8Array>({
      write: async (chunk) => {
        if (this.closed) throw this.#closedError();
        try {
          await writer.write(chunk);
        } catch (e) {
          throw this.#closedError(e);
        }
      },
      close: () => this.close(),
      abort: () => this.close(),
    });
    this.#streams = { readable, writable };
    return this.#streams;
  }

  /** What a write to a closed connection says: which peer, and why when the socket said. */
  #closedError(cause?: unknown): Error {
    const why = cause instanceof Error ? `: ${cause.message}` : "";
    return new Error(`connection to ${this.peerAddress ?? "<unknown>"} is closed${why}`, {
      cause,
    });
  }
}
