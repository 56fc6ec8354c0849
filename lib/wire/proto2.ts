/**
 * A small table-driven proto2 codec for the handshake messages: plain objects in, bytes out,
 * and back, with the C++ parser's rules where they matter on the wire:
 *
 * - presence is kept (a key is set exactly when its field was on the wire);
 * - a field the schema does not know, or a known field number under another wire type, is an
 *   unknown field, kept verbatim (its bytes after the tag) and written back after the known
 *   ones; groups are skipped as a whole;
 * - the last value of a singular field wins, an embedded message seen twice is merged, and
 *   setting a oneof member clears the other one;
 * - a varint takes at most 10 bytes; lengths and fixed fields are checked against the input
 *   before anything is allocated for them; groups nest at most {@link MAX_DEPTH} deep;
 * - `required` fields are checked after parsing, in nested messages too.
 *
 * Strings are decoded as UTF-8 with replacement characters for invalid sequences.
 * @module
 */
import { WireError } from "./errors.ts";

/** Field types used by the handshake schema. */
export type FieldKind =
  | "uint64"
  | "uint32"
  | "fixed64"
  | "fixed32"
  | "bool"
  | "string"
  | "bytes"
  | "message";

/** One field of a message schema. */
export interface FieldSpec {
  readonly no: number;
  readonly name: string;
  readonly kind: FieldKind;
  readonly label: "optional" | "required" | "repeated";
  /** The embedded message's schema (kind "message"), as a thunk for forward references. */
  readonly message?: () => MessageSpec;
  /** The oneof the field belongs to. */
  readonly oneof?: string;
}

/** A message schema: its name and fields in field-number order. */
export interface MessageSpec {
  readonly name: string;
  readonly fields: readonly FieldSpec[];
  readonly byNumber: ReadonlyMap<number, FieldSpec>;
  readonly byName: ReadonlyMap<string, FieldSpec>;
}

/** A field the decoder did not know, kept verbatim (field number, wire type, raw bytes). */
export interface UnknownField {
  readonly no: number;
  readonly wireType: number;
  readonly data: Uint8Array;
}

/** A decoded or to-be-encoded message: field name → value, plus `unknownFields`. */
export type PlainMessage = Record<string, unknown>;

/** How deep groups may nest inside an unknown field (the C++ parser's recursion limit). */
export const MAX_DEPTH = 100;

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LENGTH = 2;
const WIRE_START_GROUP = 3;
const WIRE_END_GROUP = 4;
const WIRE_FIXED32 = 5;

const WIRE_TYPE: Readonly<Record<FieldKind, number>> = {
  uint64: WIRE_VARINT,
  uint32: WIRE_VARINT,
  bool: WIRE_VARINT,
  fixed64: WIRE_FIXED64,
  fixed32: WIRE_FIXED32,
  string: WIRE_LENGTH,
  bytes: WIRE_LENGTH,
  message: WIRE_LENGTH,
};

const U64_MAX = (1n << 64n) - 1n;
const utf8Decoder = new TextDecoder();
const utf8Encoder = new TextEncoder();

/** Builds a schema from its fields (sorted by number here, so the table may list them freely). */
export function messageSpec(name: string, fields: FieldSpec[]): MessageSpec {
  const sorted = [...fields].sort((a, b) => a.no - b.no);
  return {
    name,
    fields: sorted,
    byNumber: new Map(sorted.map((f) => [f.no, f])),
    byName: new Map(sorted.map((f) => [f.name, f])),
  };
}

// ---------------------------------------------------------------------------------------------
// Decoding

class Reader {
  pos = 0;
  /**
   * The messages that met unknown fields, with their schema and the byte ranges of their
   * encodings (two numbers per range; an embedded message seen twice has two). Their
   * {@link UnknownField}s are collected by a second walk of those ranges only once the whole
   * input parsed and passed the required checks, so a hostile megabyte of tiny unknown fields
   * costs nothing per field while it is judged.
   */
  readonly unknown = new Map<PlainMessage, { spec: MessageSpec; ranges: number[] }>();
  constructor(readonly buf: Uint8Array, readonly what: string) {}

  malformed(text: string): WireError {
    return new WireError("protobuf_malformed", `${this.what}: ${text} at offset ${this.pos}`);
  }

  /** A varint as its low and high 32-bit halves. */
  varint(): [number, number] {
    const buf = this.buf;
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= buf.length) throw this.malformed("varint cut short");
      const b = buf[this.pos++];
      if (i < 4) lo |= (b & 0x7f) << (7 * i);
      else if (i === 4) {
        lo |= (b & 0x0f) << 28;
        hi |= (b & 0x7f) >>> 4;
      } else hi |= (b & 0x7f) << (7 * i - 32);
      if ((b & 0x80) === 0) return [lo >>> 0, hi >>> 0];
    }
    throw this.malformed("varint longer than 10 bytes");
  }

  /** A length prefix, checked against the bytes that are left. */
  length(): number {
    const [lo, hi] = this.varint();
    if (hi !== 0 || lo > this.buf.length - this.pos) {
      throw this.malformed(`length ${hi === 0 ? lo : "over 2^32"} beyond the input`);
    }
    return lo;
  }

  take(n: number): Uint8Array {
    if (n > this.buf.length - this.pos) throw this.malformed(`${n} bytes beyond the input`);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  fixed32(): number {
    const b = this.take(4);
    return (b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)) >>> 0;
  }

  fixed64(): bigint {
    const lo = this.fixed32();
    const hi = this.fixed32();
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  /** Skips the value of a field of `wireType` (a whole group for StartGroup). */
  skip(wireType: number, no: number, depth: number): void {
    switch (wireType) {
      case WIRE_VARINT:
        this.varint();
        return;
      case WIRE_FIXED64:
        this.take(8);
        return;
      case WIRE_LENGTH:
        this.take(this.length());
        return;
      case WIRE_FIXED32:
        this.take(4);
        return;
      case WIRE_START_GROUP: {
        if (depth >= MAX_DEPTH) throw this.malformed(`groups nested deeper than ${MAX_DEPTH}`);
        for (;;) {
          if (this.pos >= this.buf.length) throw this.malformed(`group ${no} not ended`);
          const [innerNo, innerType] = this.tag();
          if (innerType === WIRE_END_GROUP) {
            if (innerNo !== no) throw this.malformed(`group ${no} ended by ${innerNo}`);
            return;
          }
          this.skip(innerType, innerNo, depth + 1);
        }
      }
      default:
        throw this.malformed(`wire type ${wireType} of field ${no}`);
    }
  }

  tag(): [number, number] {
    const [lo, hi] = this.varint();
    const wireType = lo & 7;
    const no = (lo >>> 3) + hi * 2 ** 29;
    if (no === 0 || no > 0x1fffffff) throw this.malformed(`field number ${no}`);
    if (wireType > 5) throw this.malformed(`wire type ${wireType} of field ${no}`);
    return [no, wireType];
  }
}

/**
 * Decodes `bytes` as `spec`. Throws {@link WireError} `protobuf_malformed` on bytes no proto2
 * parser accepts, `protobuf_missing_required` when a required field is absent. Values of
 * `bytes` fields and the data of unknown fields are views into `bytes` (as with protobuf-es):
 * copy them before reusing the buffer.
 */
export function decodeMessage(spec: MessageSpec, bytes: Uint8Array, what: string): PlainMessage {
  const reader = new Reader(bytes, what);
  const out = readMessage(spec, reader, bytes.length, {});
  const missing = missingRequired(spec, out, spec.name);
  if (missing) {
    throw new WireError(
      "protobuf_missing_required",
      `${what}: required field ${missing} is missing`,
    );
  }
  for (const [msg, { spec, ranges }] of reader.unknown) {
    const list: UnknownField[] = [];
    for (let i = 0; i < ranges.length; i += 2) {
      collectUnknown(spec, reader, ranges[i], ranges[i + 1], list);
    }
    msg.unknownFields = list;
  }
  return out;
}

/** The unknown fields of one already-validated encoding of a `spec` message, in wire order. */
function collectUnknown(
  spec: MessageSpec,
  r: Reader,
  start: number,
  end: number,
  into: UnknownField[],
): void {
  r.pos = start;
  while (r.pos < end) {
    const [no, wireType] = r.tag();
    const field = spec.byNumber.get(no);
    const dataStart = r.pos;
    r.skip(wireType, no, 0);
    if (!field || WIRE_TYPE[field.kind] !== wireType) {
      into.push({ no, wireType, data: r.buf.subarray(dataStart, r.pos) });
    }
  }
}

function readMessage(spec: MessageSpec, r: Reader, end: number, into: PlainMessage): PlainMessage {
  const start = r.pos;
  let sawUnknown = false;
  while (r.pos < end) {
    const [no, wireType] = r.tag();
    if (wireType === WIRE_END_GROUP) throw r.malformed(`end of group ${no} outside a group`);
    const field = spec.byNumber.get(no);
    if (!field || WIRE_TYPE[field.kind] !== wireType) {
      r.skip(wireType, no, 0);
      sawUnknown = true;
      continue;
    }
    const value = readValue(field, r, into[field.name]);
    if (field.label === "repeated") {
      const list = (into[field.name] ??= []) as unknown[];
      list.push(value);
    } else {
      if (field.oneof) {
        for (const other of spec.fields) {
          if (other.oneof === field.oneof && other !== field) delete into[other.name];
        }
      }
      into[field.name] = value;
    }
  }
  if (r.pos !== end) throw r.malformed("embedded message overruns its length");
  if (sawUnknown) {
    const seen = r.unknown.get(into);
    if (seen) seen.ranges.push(start, end);
    else r.unknown.set(into, { spec, ranges: [start, end] });
  }
  return into;
}

function readValue(field: FieldSpec, r: Reader, previous: unknown): unknown {
  switch (field.kind) {
    case "uint64": {
      const [lo, hi] = r.varint();
      return hi === 0 ? BigInt(lo) : (BigInt(hi) << 32n) | BigInt(lo);
    }
    case "uint32":
      return r.varint()[0];
    case "bool": {
      const [lo, hi] = r.varint();
      return lo !== 0 || hi !== 0;
    }
    case "fixed64":
      return r.fixed64();
    case "fixed32":
      return r.fixed32();
    case "string":
      return utf8Decoder.decode(r.take(r.length()));
    case "bytes":
      return r.take(r.length());
    case "message": {
      const n = r.length();
      const end = r.pos + n;
      // A singular embedded message seen twice is merged into the first, as C++ does.
      const into = field.label !== "repeated" && previous !== undefined
        ? previous as PlainMessage
        : {};
      return readMessage(field.message!(), r, end, into);
    }
  }
}

/** The path of the first unset `required` field, searching nested messages too (as C++ does). */
function missingRequired(spec: MessageSpec, msg: PlainMessage, path: string): string | undefined {
  for (const f of spec.fields) {
    const value = msg[f.name];
    if (value === undefined) {
      if (f.label === "required") return `${path}.${f.name}`;
      continue;
    }
    if (f.kind !== "message") continue;
    if (f.label === "repeated") {
      const list = value as PlainMessage[];
      for (let i = 0; i < list.length; i++) {
        const inner = missingRequired(f.message!(), list[i], `${path}.${f.name}[${i}]`);
        if (inner) return inner;
      }
    } else {
      const inner = missingRequired(f.message!(), value as PlainMessage, `${path}.${f.name}`);
      if (inner) return inner;
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Encoding

class Writer {
  buf = new Uint8Array(256);
  pos = 0;

  #room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }

  /** A varint of a value in [0, 2^32). */
  varint32(v: number): void {
    this.#room(5);
    while (v > 0x7f) {
      this.buf[this.pos++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.buf[this.pos++] = v;
  }

  varint64(v: bigint): void {
    if (v <= 0xffffffffn) return this.varint32(Number(v));
    // Two 32-bit halves: BigInt arithmetic per 7 bits costs several times more.
    let lo = Number(v & 0xffffffffn);
    let hi = Number(v >> 32n);
    this.#room(10);
    // The low 28 bits, then 4 low bits joined with 3 high ones, then the high bits.
    for (let i = 0; i < 4; i++) {
      this.buf[this.pos++] = (lo & 0x7f) | 0x80;
      lo >>>= 7;
    }
    let b = lo | ((hi & 0x07) << 4);
    hi >>>= 3;
    while (hi > 0) {
      this.buf[this.pos++] = b | 0x80;
      b = hi & 0x7f;
      hi >>>= 7;
    }
    this.buf[this.pos++] = b;
  }

  tag(no: number, wireType: number): void {
    if (no < 2 ** 28) this.varint32(((no << 3) | wireType) >>> 0);
    else this.varint64((BigInt(no) << 3n) | BigInt(wireType));
  }

  raw(bytes: Uint8Array): void {
    this.#room(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  /** A length-prefixed UTF-8 string, encoded in place when its length fits one byte. */
  string(text: string): void {
    if (text.length * 3 < 128) {
      this.#room(1 + text.length * 3);
      const { written } = utf8Encoder.encodeInto(text, this.buf.subarray(this.pos + 1));
      this.buf[this.pos] = written;
      this.pos += 1 + written;
      return;
    }
    const b = utf8Encoder.encode(text);
    this.varint32(b.length);
    this.raw(b);
  }

  fixed32(v: number): void {
    this.#room(4);
    this.buf[this.pos++] = v & 0xff;
    this.buf[this.pos++] = (v >>> 8) & 0xff;
    this.buf[this.pos++] = (v >>> 16) & 0xff;
    this.buf[this.pos++] = (v >>> 24) & 0xff;
  }

  fixed64(v: bigint): void {
    this.fixed32(Number(v & 0xffffffffn));
    this.fixed32(Number(v >> 32n));
  }

  /** Room for a 5-byte length that {@link endLength} fills in and compacts. */
  startLength(): number {
    this.#room(5);
    const at = this.pos;
    this.pos += 5;
    return at;
  }

  endLength(at: number): void {
    const n = this.pos - at - 5;
    let size = 1;
    while (n >= 2 ** (7 * size)) size++;
    if (size < 5) this.buf.copyWithin(at + size, at + 5, this.pos);
    this.pos -= 5 - size;
    let v = n;
    for (let i = 0; i < size; i++) {
      this.buf[at + i] = (v & 0x7f) | (i < size - 1 ? 0x80 : 0);
      v >>>= 7;
    }
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.pos);
  }
}

/**
 * Encodes `msg` as `spec`: the keys that are set, in field-number order, then the unknown
 * fields. Throws {@link WireError} `bad_argument` naming the field and value for a value of
 * the wrong type or range, an unknown key, or both members of a oneof;
 * `protobuf_missing_required` for an unset required field.
 */
export function encodeMessage(spec: MessageSpec, msg: object, what: string): Uint8Array {
  const plain = msg as PlainMessage;
  check(spec, plain, spec.name, what);
  const w = new Writer();
  writeMessage(spec, plain, w);
  return w.finish();
}

function badArgument(what: string, text: string): WireError {
  return new WireError("bad_argument", `${what}: ${text}`);
}

function show(value: unknown): string {
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "string") return JSON.stringify(value);
  if (value instanceof Uint8Array) return `Uint8Array(${value.length})`;
  if (Array.isArray(value)) return `array(${value.length})`;
  return String(value);
}

/** Validates a whole message before any byte is written. */
function check(spec: MessageSpec, msg: PlainMessage, path: string, what: string): void {
  if (typeof msg !== "object" || msg === null || Array.isArray(msg)) {
    throw badArgument(what, `${path} must be an object, got ${show(msg)}`);
  }
  for (const key of Object.keys(msg)) {
    if (key !== "unknownFields" && !spec.byName.has(key) && msg[key] !== undefined) {
      throw badArgument(what, `${spec.name} has no field ${key}`);
    }
  }
  let oneofTaken: Map<string, string> | undefined;
  for (const f of spec.fields) {
    const value = msg[f.name];
    if (value === undefined) {
      if (f.label === "required") {
        throw new WireError(
          "protobuf_missing_required",
          `${what}: required field ${path}.${f.name} is not set`,
        );
      }
      continue;
    }
    if (f.oneof) {
      oneofTaken ??= new Map();
      const taken = oneofTaken.get(f.oneof);
      if (taken) {
        throw badArgument(
          what,
          `${spec.name}: ${taken} and ${f.name} are both set; oneof ${f.oneof} takes one`,
        );
      }
      oneofTaken.set(f.oneof, f.name);
    }
    if (f.label === "repeated") {
      if (!Array.isArray(value)) {
        throw badArgument(what, `${path}.${f.name} must be an array, got ${show(value)}`);
      }
      for (let i = 0; i < value.length; i++) checkValue(f, value[i], path, i, what);
    } else checkValue(f, value, path, -1, what);
  }
  const unknown = msg.unknownFields;
  if (unknown !== undefined) {
    if (!Array.isArray(unknown)) throw badArgument(what, `${path}.unknownFields must be an array`);
    unknown.forEach((u: UnknownField, i) => {
      const ok = typeof u === "object" && u !== null && Number.isInteger(u.no) && u.no > 0 &&
        u.no <= 0x1fffffff && Number.isInteger(u.wireType) && u.wireType >= 0 &&
        u.wireType <= 5 && u.wireType !== WIRE_END_GROUP && u.data instanceof Uint8Array;
      if (!ok) throw badArgument(what, `${path}.unknownFields[${i}] is not a valid unknown field`);
    });
  }
}

/** Checks one value of field `f` of the message at `path` (`index` >= 0 in a list). */
function checkValue(f: FieldSpec, value: unknown, path: string, index: number, what: string): void {
  let ok: boolean;
  switch (f.kind) {
    case "uint64":
    case "fixed64":
      ok = typeof value === "bigint" && value >= 0n && value <= U64_MAX;
      break;
    case "uint32":
    case "fixed32":
      ok = typeof value === "number" && Number.isInteger(value) && value >= 0 &&
        value <= 0xffffffff;
      break;
    case "bool":
      ok = typeof value === "boolean";
      break;
    case "string":
      ok = typeof value === "string";
      break;
    case "bytes":
      ok = value instanceof Uint8Array;
      break;
    case "message":
      check(f.message!(), value as PlainMessage, fieldPath(f, path, index), what);
      return;
  }
  if (!ok) {
    throw badArgument(
      what,
      `${fieldPath(f, path, index)} must be ${EXPECTED[f.kind]}, got ${show(value)}`,
    );
  }
}

const EXPECTED: Readonly<Record<FieldKind, string>> = {
  uint64: "a bigint in [0, 2^64)",
  fixed64: "a bigint in [0, 2^64)",
  uint32: "an integer in [0, 2^32)",
  fixed32: "an integer in [0, 2^32)",
  bool: "a boolean",
  string: "a string",
  bytes: "a Uint8Array",
  message: "an object",
};

function fieldPath(f: FieldSpec, path: string, index: number): string {
  return index < 0 ? `${path}.${f.name}` : `${path}.${f.name}[${index}]`;
}

function writeMessage(spec: MessageSpec, msg: PlainMessage, w: Writer): void {
  for (const f of spec.fields) {
    const value = msg[f.name];
    if (value === undefined) continue;
    if (f.label === "repeated") {
      for (const item of value as unknown[]) writeField(f, item, w);
    } else writeField(f, value, w);
  }
  const unknown = msg.unknownFields as UnknownField[] | undefined;
  if (unknown) {
    for (const u of unknown) {
      w.tag(u.no, u.wireType);
      w.raw(u.data);
    }
  }
}

function writeField(f: FieldSpec, value: unknown, w: Writer): void {
  w.tag(f.no, WIRE_TYPE[f.kind]);
  switch (f.kind) {
    case "uint64":
      w.varint64(value as bigint);
      return;
    case "uint32":
      w.varint32(value as number);
      return;
    case "bool":
      w.varint32(value ? 1 : 0);
      return;
    case "fixed64":
      w.fixed64(value as bigint);
      return;
    case "fixed32":
      w.fixed32(value as number);
      return;
    case "string":
      w.string(value as string);
      return;
    case "bytes": {
      const b = value as Uint8Array;
      w.varint32(b.length);
      w.raw(b);
      return;
    }
    case "message": {
      const at = w.startLength();
      writeMessage(f.message!(), value as PlainMessage, w);
      w.endLength(at);
      return;
    }
  }
}
