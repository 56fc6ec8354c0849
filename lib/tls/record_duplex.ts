/**
 * The Node `Duplex` that `node:tls` runs over. Its read side feeds the TLS engine whole TLS
 * records from the coordinator's reader ({@link TlsReader}), one at a time, and waits until the
 * engine has consumed each one before it reads the next; its write side writes to the
 * connection. Ending or destroying it never closes or half-closes the connection: the
 * coordinator owns the socket.
 * @module
 */
import { Buffer } from "node:buffer";
import { Duplex } from "node:stream";
import { TlsError } from "./errors.ts";
import { ContentType, readTlsRecord, TLS_RECORD_HEADER_SIZE } from "./records.ts";

/** Body of a TLS 1.3 alert record: 2-byte alert, 1-byte inner content type, 16-byte tag. */
const TLS13_ALERT_RECORD_BODY = 2 + 1 + 16;

/**
 * What the TLS layer needs of the connection's reader: the `BufferedReader` of
 * `lib/io/buffered_reader.ts` has it. Not safe for concurrent readers: while TLS runs, nobody
 * else reads.
 */
export interface TlsReader {
  /** Bytes already read from the socket and not yet handed out. */
  readonly buffered: number;
  /** Exactly `n` bytes; rejects with `UnexpectedEofError` if the stream ends first. */
  readExactly(n: number): Promise<Uint8Array>;
  /** The buffered bytes, else the next chunk; `null` at the end of the stream. */
  readSome(): Promise<Uint8Array | null>;
  /** Puts bytes back in front: the next read returns them first. */
  unread(bytes: Uint8Array): void;
}

/** The connection as the TLS layer sees it: the coordinator's reader and a write function. */
export interface TlsTransport {
  /**
   * The connection's reader. It may already hold bytes that arrived behind the last handshake
   * message (the peer's first TLS records); the TLS layer reads them first, in order.
   */
  readonly reader: TlsReader;
  /** Writes bytes to the connection; resolves when they are handed to the socket. */
  write(bytes: Uint8Array): Promise<void>;
}

/**
 * A `Duplex` for `node:tls` over a {@link TlsTransport}.
 *
 * Feeding is gated: a record is read from the transport only after the previous one was
 * delivered to the TLS engine (the `data` listener that this class registers after the TLS
 * socket's own runs right after the engine processed the record, synchronously) and
 * {@link RecordDuplex.arm}'s `shouldStop` said to go on. So when the engine reports the peer's
 * close_notify, not one byte after that record has been taken from the reader.
 */
export class RecordDuplex extends Duplex {
  readonly #transport: TlsTransport;
  #shouldStop: () => boolean = () => false;
  #armed = false;
  #wanted = false;
  #fetching = false;
  #inFlight = false;
  #stopped = false;
  #held = false;
  #transportEof = false;
  #transportError: TlsError | undefined;
  #watchCloseNotify = false;
  #closeNotifyWritten = false;
  #outRecordLeft = 0;
  #outHeader = new Uint8Array(5);
  #outHeaderLen = 0;
  #flushWaiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];

  readonly #onTransportEnd: (error?: TlsError) => void;

  /**
   * `onTransportEnd` is called once when reading the transport ends: without an argument at a
   * clean end (TCP EOF at a record boundary), with a {@link TlsError} on a framing error or an
   * end inside a record.
   */
  constructor(transport: TlsTransport, onTransportEnd: (error?: TlsError) => void = () => {}) {
    super({ allowHalfOpen: true, decodeStrings: true });
    this.#transport = transport;
    this.#onTransportEnd = onTransportEnd;
  }

  /** True once the transport ended at a record boundary (TCP EOF, no close_notify seen). */
  get transportEof(): boolean {
    return this.#transportEof;
  }

  /** The framing or EOF error met while reading the transport, if any. */
  get transportError(): TlsError | undefined {
    return this.#transportError;
  }

  /**
   * Starts feeding. Call it right after the TLS socket was created over this duplex, so that the
   * delivery listener runs after the socket's own `data` listener. `shouldStop` is asked after
   * each record the engine consumed; when it returns true, feeding stops for good.
   */
  arm(shouldStop: () => boolean): void {
    if (this.#armed) return;
    if (this.listenerCount("data") === 0) {
      throw new Error("RecordDuplex.arm: the TLS socket must be attached first");
    }
    this.#armed = true;
    this.#shouldStop = shouldStop;
    this.on("data", () => {
      this.#inFlight = false;
      if (this.#shouldStop()) this.#stopped = true;
      else this.#pump();
    });
    this.#pump();
  }

  /** Holds feeding (the current record, if any, still goes through) until {@link releaseFeeding}. */
  holdFeeding(): void {
    this.#held = true;
  }

  /** Resumes feeding after {@link holdFeeding}. */
  releaseFeeding(): void {
    this.#held = false;
    this.#pump();
  }

  /** Stops feeding for good. A record being fetched at this moment is put back in the reader. */
  stop(): void {
    this.#stopped = true;
  }

  /**
   * Resolves once this side's close_notify has been written to the transport, together with
   * everything written before it. Call it just before ending the TLS socket. Outgoing records
   * are scanned: close_notify is an alert record (TLS 1.2, type 21) or, in TLS 1.3, where every
   * record says application_data, the 19-byte one (2-byte alert, 1-byte inner type, 16-byte
   * AEAD tag; the engine adds no padding). In AuthOnly mode no application data is ever written,
   * so nothing else can look like that. Rejects if a write fails or the duplex is destroyed.
   */
  closeNotifyWritten(): Promise<void> {
    this.#watchCloseNotify = true;
    return new Promise((resolve, reject) => {
      this.#flushWaiters.push({ resolve, reject });
      this.#checkFlushed();
    });
  }

  override _read(): void {
    this.#wanted = true;
    this.#pump();
  }

  #pump(): void {
    if (
      !this.#armed || !this.#wanted || this.#inFlight || this.#fetching || this.#stopped ||
      this.#held || this.#transportEof || this.destroyed
    ) return;
    this.#fetching = true;
    readTlsRecord(this.#transport.reader).then(
      (record) => {
        this.#fetching = false;
        if (this.#stopped || this.destroyed) {
          if (record !== null) this.#transport.reader.unread(record);
          return;
        }
        if (record === null) {
          this.#transportEof = true;
          this.#onTransportEnd();
          this.push(null);
          return;
        }
        this.#wanted = false;
        this.#inFlight = true;
        this.push(Buffer.from(record.buffer, record.byteOffset, record.byteLength));
      },
      (e) => {
        this.#fetching = false;
        if (this.#stopped || this.destroyed) return;
        this.#transportError = e instanceof TlsError
          ? e
          : new TlsError("peer_closed", `syscall error: ${errorText(e)}`, { cause: e });
        this.#onTransportEnd(this.#transportError);
        this.destroy(this.#transportError);
      },
    );
  }

  override _write(
    chunk: Buffer,
    _encoding: string,
    callback: (error?: Error | null) => void,
  ): void {
    const bytes = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    // Scan always, so record boundaries are known when watching starts.
    const carriesCloseNotify = this.#scanOutgoing(bytes) && this.#watchCloseNotify;
    this.#transport.write(bytes).then(
      () => {
        if (carriesCloseNotify) this.#closeNotifyWritten = true;
        callback();
        this.#checkFlushed();
      },
      (e) => {
        const error = new TlsError("transport", `syscall error: ${errorText(e)}`, { cause: e });
        this.#rejectFlushWaiters(error);
        callback(error);
      },
    );
  }

  /** The coordinator owns the connection: ending the TLS layer must not half-close TCP. */
  override _final(callback: (error?: Error | null) => void): void {
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#stopped = true;
    // An error (and its stack) only for someone waiting: this runs for every released engine.
    if (this.#flushWaiters.length > 0) {
      this.#rejectFlushWaiters(error ?? new TlsError("transport", "TLS transport closed"));
    }
    callback(error);
  }

  /** Walks the record headers in outgoing bytes; true if one looks like close_notify. */
  #scanOutgoing(bytes: Uint8Array): boolean {
    let found = false;
    let i = 0;
    while (i < bytes.length) {
      if (this.#outRecordLeft > 0) {
        const k = Math.min(this.#outRecordLeft, bytes.length - i);
        this.#outRecordLeft -= k;
        i += k;
        continue;
      }
      this.#outHeader[this.#outHeaderLen++] = bytes[i++];
      if (this.#outHeaderLen < TLS_RECORD_HEADER_SIZE) continue;
      this.#outHeaderLen = 0;
      const type = this.#outHeader[0];
      const length = (this.#outHeader[3] << 8) | this.#outHeader[4];
      this.#outRecordLeft = length;
      if (
        type === ContentType.alert ||
        (type === ContentType.application_data && length === TLS13_ALERT_RECORD_BODY)
      ) found = true;
    }
    return found;
  }

  #checkFlushed(): void {
    if (!this.#closeNotifyWritten || this.writableLength !== 0) return;
    const waiters = this.#flushWaiters;
    this.#flushWaiters = [];
    for (const w of waiters) w.resolve();
  }

  #rejectFlushWaiters(error: unknown): void {
    const waiters = this.#flushWaiters;
    this.#flushWaiters = [];
    for (const w of waiters) w.reject(error);
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
