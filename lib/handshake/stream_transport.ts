/**
 * A {@link HandshakeTransport} over a pair of Web streams, read through a
 * {@link BufferedReader} so that bytes behind the handshake stay available to the next owner.
 * @module
 */
import { BufferedReader, streamSource } from "../io/buffered_reader.ts";
import type { HandshakeTransport, TlsRole } from "./types.ts";

/** Runs TLS over the connection's reader and writer; resolves with the peer CN. */
export type TlsStarter = (
  connection: StreamTransport,
  role: TlsRole,
  authOnly: boolean,
) => Promise<{ authCN: string }>;

/** Options of {@link StreamTransport}. */
export interface StreamTransportOptions {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
  readonly peerAddress?: string;
  /** How to run TLS; without it, startTls rejects. */
  readonly startTls?: TlsStarter;
  /** Called once by close(), after the streams are released (e.g. to close a Deno.Conn). */
  readonly onClose?: () => void;
}

/** A byte transport over Web streams. */
export class StreamTransport implements HandshakeTransport {
  readonly reader: BufferedReader;
  readonly writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly peerAddress?: string;
  #source: ReturnType<typeof streamSource>;
  #startTls?: TlsStarter;
  #onClose?: () => void;
  #closed = false;

  constructor(options: StreamTransportOptions) {
    this.#source = streamSource(options.readable);
    this.reader = new BufferedReader(this.#source);
    this.writer = options.writable.getWriter();
    this.peerAddress = options.peerAddress;
    this.#startTls = options.startTls;
    this.#onClose = options.onClose;
  }

  /** True once {@link close} ran. */
  get closed(): boolean {
    return this.#closed;
  }

  readExactly(n: number): Promise<Uint8Array> {
    if (this.#closed) return Promise.reject(new Error("transport closed"));
    return this.reader.readExactly(n);
  }

  async write(bytes: Uint8Array): Promise<void> {
    if (this.#closed) throw new Error("transport closed");
    await this.writer.write(bytes);
  }

  /** The bytes read from the stream and not yet handed out; nothing more is read. */
  takeBuffered(): Uint8Array {
    return this.reader.takeBuffered();
  }

  /** Puts bytes back in front of the reader. */
  unread(bytes: Uint8Array): void {
    this.reader.unread(bytes);
  }

  startTls(role: TlsRole, authOnly: boolean): Promise<{ authCN: string }> {
    if (!this.#startTls) return Promise.reject(new Error("TLS is not available on this transport"));
    return this.#startTls(this, role, authOnly);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.reader.cancel().catch(() => {});
    this.writer.close().catch(() => {});
    this.#onClose?.();
  }
}
