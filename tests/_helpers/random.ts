/**
 * A seeded pseudo-random generator for property tests: the same seed gives the same cases on
 * every machine, so a failure reproduces from the seed a test prints. SFC32 (Chris Doty-Humphrey's
 * small fast chaotic generator), seeded through SplitMix32 so that nearby seeds diverge at once.
 */

/** The seed a test uses: `IC_TEST_SEED` from the environment when set, else `fallback`. */
export function testSeed(fallback: number): number {
  const fromEnv = Deno.env.get("IC_TEST_SEED");
  if (fromEnv === undefined || fromEnv === "") return fallback >>> 0;
  const seed = Number(fromEnv);
  if (!Number.isInteger(seed)) throw new Error(`IC_TEST_SEED# ${fromEnv} is not an integer`);
  return seed >>> 0;
}

const U64_EDGES = [0n, 1n, 0x7fffffffn, 0xffffffffn, 1n << 32n, (1n << 63n) - 1n, 1n << 63n];
const U64_MAX = (1n << 64n) - 1n;

/** Deterministic generator of numbers, bigints and bytes. */
export class Rng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  constructor(readonly seed: number) {
    let s = seed >>> 0;
    const splitmix = () => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.#a = splitmix();
    this.#b = splitmix();
    this.#c = splitmix();
    this.#d = splitmix();
    for (let i = 0; i < 12; i++) this.u32();
  }

  /** A uniform u32. */
  u32(): number {
    const t = (((this.#a + this.#b) | 0) + this.#d) | 0;
    this.#d = (this.#d + 1) | 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) | 0;
    this.#c = (this.#c << 21) | (this.#c >>> 11);
    this.#c = (this.#c + t) | 0;
    return t >>> 0;
  }

  /** A uniform integer in `[0, n)`, for `n` up to 2^32. */
  int(n: number): number {
    return Math.floor((this.u32() / 0x100000000) * n);
  }

  /** A uniform integer in `[lo, hi]`. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.u32() / 0x100000000 < p;
  }

  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  /** A u64: one time in four an edge value (0, 1, 2^32, 2^63, 2^64 - 1, ...), else uniform. */
  u64(): bigint {
    if (this.chance(0.25)) return this.chance(0.2) ? U64_MAX : this.pick(U64_EDGES);
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
  }

  /** `n` uniform bytes. */
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }
}
