/**
 * A single-line text dump of a handshake message, in the spirit of protobuf's TextFormat
 * single-line mode (ICH07 log lines). Ballast and other bytes are summarised, not dumped.
 * @module
 */

/** Formats a plain message object as `Field: value Nested { ... }` on one line. */
export function textFormat(message: object): string {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(message)) {
    if (value === undefined) continue;
    if (key === "unknownFields") {
      parts.push(`<${(value as unknown[]).length} unknown fields>`);
      continue;
    }
    const values = Array.isArray(value) ? value : [value];
    for (const v of values) parts.push(formatField(key, v));
  }
  return parts.join(" ");
}

function formatField(key: string, v: unknown): string {
  if (v instanceof Uint8Array) {
    return v.length <= 32
      ? `${key}: "${Array.from(v, (b) => `\\x${b.toString(16).padStart(2, "0")}`).join("")}"`
      : `${key}: <${v.length} bytes>`;
  }
  if (typeof v === "string") return `${key}: ${JSON.stringify(v)}`;
  if (typeof v === "object" && v !== null) return `${key} { ${textFormat(v)} }`;
  return `${key}: ${String(v)}`;
}
