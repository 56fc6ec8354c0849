/**
 * Byte-level surgery on protobuf messages for tests: list the top-level fields of a message,
 * drop one, or wrap bytes as a length-delimited field. It works on wire bytes only, so a test
 * can build messages that the codecs under test refuse to encode (a missing required field).
 */
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { concat } from "./bytes.ts";

export { concat };

/** One top-level field: its number, wire type, and where its bytes (tag included) lie. */
export interface FieldSpan {
  readonly no: number;
  readonly wireType: WireType;
  /** Offset of the tag. */
  readonly start: number;
  /** Offset of the first byte of the value (after the tag, before any length prefix). */
  readonly valueStart: number;
  /** Offset just past the field. */
  readonly end: number;
}

/** The top-level fields of a well-formed message, in wire order. */
export function fieldSpans(bytes: Uint8Array): FieldSpan[] {
  const reader = new BinaryReader(bytes);
  const out: FieldSpan[] = [];
  while (reader.pos < reader.len) {
    const start = reader.pos;
    const [no, wireType] = reader.tag();
    const valueStart = reader.pos;
    reader.skip(wireType, no);
    out.push({ no, wireType, start, valueStart, end: reader.pos });
  }
  return out;
}

/** The message without any occurrence of field `no`. */
export function withoutField(bytes: Uint8Array, no: number): Uint8Array {
  const keep = fieldSpans(bytes).filter((f) => f.no !== no);
  const out = new Uint8Array(keep.reduce((n, f) => n + f.end - f.start, 0));
  let at = 0;
  for (const f of keep) {
    out.set(bytes.subarray(f.start, f.end), at);
    at += f.end - f.start;
  }
  return out;
}

/** The content of the first length-delimited field `no` (a nested message, string or bytes). */
export function fieldContent(bytes: Uint8Array, no: number): Uint8Array {
  const span = fieldSpans(bytes).find((f) => f.no === no);
  if (span === undefined || span.wireType !== WireType.LengthDelimited) {
    throw new Error(`no length-delimited field ${no}`);
  }
  const reader = new BinaryReader(bytes.subarray(span.valueStart, span.end));
  return reader.bytes();
}

/** `content` written as length-delimited field `no`. */
export function lengthDelimited(no: number, content: Uint8Array): Uint8Array {
  return new BinaryWriter().tag(no, WireType.LengthDelimited).bytes(content).finish();
}
