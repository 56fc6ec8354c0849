/**
 * A queue of byte chunks that hands out exactly N bytes at a time: without a copy when the
 * bytes lie in one chunk, gathered into one new array when they span several.
 * @module
 */

/** Bytes received and not yet handed out, in order. */
export class ChunkQueue {
  #chunks: Uint8Array[] = [];
  #size = 0;

  /** Number of bytes queued. */
  get size(): number {
    return this.#size;
  }

  /** Appends a chunk (kept by reference). */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#size += chunk.length;
  }

  /** Puts a chunk in front: the next take returns its bytes first. */
  unshift(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#chunks.unshift(chunk);
    this.#size += chunk.length;
  }

  /** Drops everything queued. */
  clear(): void {
    this.#chunks = [];
    this.#size = 0;
  }

  /** Removes and returns the first `n` bytes; the caller ensures `n <= size`. */
  take(n: number): Uint8Array {
    if (n > this.#size) throw new RangeError(`take ${n} of ${this.#size} queued bytes`);
    if (n === 0) return new Uint8Array(0);
    const first = this.#chunks[0];
    if (first.length === n) {
      this.#chunks.shift();
      this.#size -= n;
      return first;
    }
    if (first.length > n) {
      this.#chunks[0] = first.subarray(n);
      this.#size -= n;
      return first.subarray(0, n);
    }
    const out = new Uint8Array(n);
    let off = 0;
    while (off < n) {
      const c = this.#chunks[0];
      const k = Math.min(c.length, n - off);
      out.set(c.subarray(0, k), off);
      off += k;
      if (k === c.length) this.#chunks.shift();
      else this.#chunks[0] = c.subarray(k);
    }
    this.#size -= n;
    return out;
  }
}
