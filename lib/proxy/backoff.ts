/**
 * HoldByError backoff (spec 6.3): the first sleep is 10 ms, each consecutive permanent failure
 * multiplies it by 4, capped (early YDB: 10 s; newer: 1 s); a successful handshake resets it.
 * @module
 */

/** Backoff settings. */
export interface BackoffOptions {
  /** First sleep, ms. Default 10. */
  readonly firstMs?: number;
  /** Multiplier per consecutive entry. Default 4. */
  readonly multiplier?: number;
  /** Cap, ms. Default 10 000 (the early revision). */
  readonly maxMs?: number;
}

/** Consecutive error sleeps: 10 → 40 → 160 → 640 ms → 2.56 s → 10 s by default. */
export class ErrorBackoff {
  readonly firstMs: number;
  readonly multiplier: number;
  readonly maxMs: number;
  #current = 0;

  constructor(options: BackoffOptions = {}) {
    this.firstMs = options.firstMs ?? 10;
    this.multiplier = options.multiplier ?? 4;
    this.maxMs = options.maxMs ?? 10_000;
    if (!(this.firstMs > 0) || !(this.multiplier >= 1) || !(this.maxMs >= this.firstMs)) {
      throw new RangeError(
        `invalid backoff firstMs# ${this.firstMs} multiplier# ${this.multiplier} maxMs# ${this.maxMs}`,
      );
    }
  }

  /** The sleep for the next entry into the error state. */
  next(): number {
    this.#current = this.#current === 0
      ? this.firstMs
      : Math.min(this.#current * this.multiplier, this.maxMs);
    return this.#current;
  }

  /** After a successful handshake. */
  reset(): void {
    this.#current = 0;
  }
}
