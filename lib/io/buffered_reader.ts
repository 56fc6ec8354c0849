/**
 * A reader over a byte stream that can read exactly N bytes, hand out whatever is buffered,
 * and take bytes back. The handshake reads fixed-size records; whoever takes the connection
 * next (TLS, the session) gets the bytes that arrived behind them, in order, via
 * {@link BufferedReader.readSome} and {@link BufferedReader.takeBuffered}.
 * @module
 */

import { ChunkQueue } from "./chunk_queue.ts";

/** The stream ended before the requested bytes arrived. */
export class UnexpectedEofError extends Error {
  override name = "UnexpectedEofError";
  constructor(readonly processed: number, readonly remain: number) {
    super(`connection unexpectedly closed processed# ${processed} remain# ${remain}`);
  }
}

/** A pull source of byte chunks; `null` is the end of the stream. */
export interface ByteSource {
  read(): Promise<Uint8Array | null>;
  cancel?(reason?: unknown): Promise<void> | void;
}

/** Adapts a Web `ReadableStream` into a {@link ByteSource}. */
export function streamSource(readable: ReadableStream<Uint8Array>): ByteSource & {
  release(): void;
} {
  const reader = readable.getReader();
  return {
    async read() {
      const { value, done } = await reader.read();
      return done ? null : value;
    },
    async cancel(reason?: unknown) {
      await reader.cancel(reason);
    },
    release() {
      reader.releaseLock();
    },
  };
}

/** Buffered reads over a {@link ByteSource}. Not safe for concurrent readers. */
export class BufferedReader {
  #source: ByteSource;
  readonly #queue = new ChunkQueue();
  #eof = false;

  constructor(source: ByteSource) {
    this.#source = source;
  }

  /** Bytes already read from the source and not yet handed out. */
  get buffered(): number {
    return this.#queue.size;
  }

  /** True once the source reported its end. */
  get eof(): boolean {
    return this.#eof;
  }

  /**
   * Resolves with exactly `n` bytes, or rejects with {@link UnexpectedEofError} when the stream
   * ends first. Nothing is allocated for `n` before the bytes are there, so a hostile length
   * costs no memory up front; the caller bounds `n`.
   */
  async readExactly(n: number): Promise<Uint8Array> {
    while (this.#queue.size < n) {
      if (!(await this.#fill())) {
        throw new UnexpectedEofError(this.#queue.size, n - this.#queue.size);
      }
    }
    return this.#queue.take(n);
  }

  /**
   * Resolves with the buffered bytes if there are any, else with the next chunk from the
   * source, or `null` at the end of the stream.
   */
  async readSome(): Promise<Uint8Array | null> {
    if (this.#queue.size === 0 && !(await this.#fill())) return null;
    return this.#queue.take(this.#queue.size);
  }

  /** Puts bytes back in front of the buffer: the next read returns them first. */
  unread(bytes: Uint8Array): void {
    this.#queue.unshift(bytes);
  }

  /** Removes and returns everything buffered (possibly empty), without reading the source. */
  takeBuffered(): Uint8Array {
    return this.#queue.take(this.#queue.size);
  }

  /** Cancels the source. */
  async cancel(reason?: unknown): Promise<void> {
    this.#eof = true;
    await this.#source.cancel?.(reason);
  }

  async #fill(): Promise<boolean> {
    if (this.#eof) return false;
    const chunk = await this.#source.read();
    if (chunk === null) {
      this.#eof = true;
      return false;
    }
    this.#queue.push(chunk);
    return true;
  }
}
