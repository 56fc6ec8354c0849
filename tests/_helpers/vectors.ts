/**
 * Loads the golden vectors of the spec (`../shared/spec/vectors.json`), with a committed copy in
 * `tests/fixtures/vectors.json` so the tests run from a checkout that lacks `shared/`.
 */
import vectors from "../fixtures/vectors.json" with { type: "json" };

export { vectors };

/** Hex text to bytes. */
export function fromHex(hex: string): Uint8Array {
  if (hex.length % 2 !== 0) throw new Error(`odd hex length ${hex.length}`);
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Bytes to lower-case hex text. */
export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
