/**
 * The protobuf-es implementation of the handshake message codecs, generated from the same
 * `proto/interconnect.proto`: the reference that `lib/wire/messages.ts` is compared with in the
 * differential tests. Not used at run time.
 * @module
 */
import { create, type DescMessage, fromBinary, type Message, toBinary } from "@bufbuild/protobuf";
import { reflect, type ReflectMessage } from "@bufbuild/protobuf/reflect";
import { FeatureSet_FieldPresence } from "@bufbuild/protobuf/wkt";
import {
  THandshakeReplySchema,
  THandshakeRequestSchema,
  THandshakeSuccessSchema,
} from "../../proto/gen/interconnect_pb.ts";
import { WireError } from "../../lib/wire/errors.ts";
import type {
  HandshakeReply,
  HandshakeRequest,
  HandshakeSuccess,
  UnknownField,
} from "../../lib/wire/messages.ts";

/** Encodes a THandshakeRequest. Throws {@link WireError} on a missing required field. */
export function encodeHandshakeRequest(msg: HandshakeRequest): Uint8Array {
  return encodePlain(THandshakeRequestSchema, msg, "THandshakeRequest");
}

/** Decodes a THandshakeRequest as the C++ peer would: a missing required field fails. */
export function decodeHandshakeRequest(bytes: Uint8Array): HandshakeRequest {
  return decodePlain(THandshakeRequestSchema, bytes, "THandshakeRequest") as HandshakeRequest;
}

/** Encodes a THandshakeReply (with its Success, if any). */
export function encodeHandshakeReply(msg: HandshakeReply): Uint8Array {
  return encodePlain(THandshakeReplySchema, msg, "THandshakeReply");
}

/** Decodes a THandshakeReply; a Success lacking a required field fails the whole reply. */
export function decodeHandshakeReply(bytes: Uint8Array): HandshakeReply {
  return decodePlain(THandshakeReplySchema, bytes, "THandshakeReply") as HandshakeReply;
}

/** Encodes a bare THandshakeSuccess (used by tests and dumps). */
export function encodeHandshakeSuccess(msg: HandshakeSuccess): Uint8Array {
  return encodePlain(THandshakeSuccessSchema, msg, "THandshakeSuccess");
}

type Plain = Record<string, unknown>;

function encodePlain(desc: DescMessage, plain: object, what: string): Uint8Array {
  let message: Message;
  try {
    message = toReflect(desc, plain as Plain).message;
  } catch (e) {
    if (e instanceof WireError) throw e;
    throw new WireError("bad_argument", `${what}: ${errorText(e)}`, { cause: e });
  }
  const missing = missingRequired(reflect(desc, message), desc.name);
  if (missing) {
    throw new WireError(
      "protobuf_missing_required",
      `${what}: required field ${missing} is not set`,
    );
  }
  try {
    return toBinary(desc, message);
  } catch (e) {
    throw new WireError("bad_argument", `${what}: ${errorText(e)}`, { cause: e });
  }
}

function decodePlain(desc: DescMessage, bytes: Uint8Array, what: string): Plain {
  let message: Message;
  try {
    message = fromBinary(desc, bytes);
  } catch (e) {
    throw new WireError("protobuf_malformed", `${what}: ${errorText(e)}`, { cause: e });
  }
  const r = reflect(desc, message);
  const missing = missingRequired(r, desc.name);
  if (missing) {
    throw new WireError(
      "protobuf_missing_required",
      `${what}: required field ${missing} is missing`,
    );
  }
  return fromReflect(r);
}

/** The path of the first unset `required` field, searching nested messages too (as C++ does). */
function missingRequired(r: ReflectMessage, path: string): string | undefined {
  for (const f of r.fields) {
    const set = r.isSet(f);
    if (!set) {
      if (f.presence === FeatureSet_FieldPresence.LEGACY_REQUIRED) return `${path}.${f.name}`;
      continue;
    }
    if (f.fieldKind === "message") {
      const inner = missingRequired(r.get(f), `${path}.${f.name}`);
      if (inner) return inner;
    } else if (f.fieldKind === "list" && f.listKind === "message") {
      let i = 0;
      for (const item of r.get(f)) {
        const inner = missingRequired(item as ReflectMessage, `${path}.${f.name}[${i++}]`);
        if (inner) return inner;
      }
    }
  }
  return undefined;
}

function fromReflect(r: ReflectMessage): Plain {
  const out: Plain = {};
  for (const f of r.fields) {
    if (!r.isSet(f)) continue;
    switch (f.fieldKind) {
      case "scalar":
      case "enum":
        out[f.name] = r.get(f);
        break;
      case "message":
        out[f.name] = fromReflect(r.get(f));
        break;
      case "list":
        out[f.name] = f.listKind === "message"
          ? Array.from(r.get(f), (item) => fromReflect(item as ReflectMessage))
          : Array.from(r.get(f));
        break;
      case "map":
        // The handshake schema has no map fields.
        break;
    }
  }
  const unknown = r.getUnknown();
  if (unknown && unknown.length > 0) {
    out.unknownFields = unknown.map((u) => ({ no: u.no, wireType: u.wireType, data: u.data }));
  }
  return out;
}

function toReflect(desc: DescMessage, plain: Plain): ReflectMessage {
  const r = reflect(desc, create(desc));
  const known = new Set(desc.fields.map((f) => f.name));
  for (const key of Object.keys(plain)) {
    if (key !== "unknownFields" && !known.has(key) && plain[key] !== undefined) {
      throw new WireError("bad_argument", `${desc.name} has no field ${key}`);
    }
  }
  for (const f of desc.fields) {
    const value = plain[f.name];
    if (value === undefined) continue;
    // Setting a second member of a oneof would silently clear the first one.
    const taken = f.oneof ? r.oneofCase(f.oneof) : undefined;
    if (taken) {
      throw new WireError(
        "bad_argument",
        `${desc.name}: ${taken.name} and ${f.name} are both set; oneof ${f.oneof?.name} takes one`,
      );
    }
    switch (f.fieldKind) {
      case "scalar":
      case "enum":
        r.set(f, value);
        break;
      case "message":
        r.set(f, toReflect(f.message, value as Plain));
        break;
      case "list": {
        if (!Array.isArray(value)) {
          throw new WireError("bad_argument", `${desc.name}.${f.name} must be an array`);
        }
        const list = r.get(f);
        for (const item of value) {
          list.add(f.listKind === "message" ? toReflect(f.message, item as Plain) : item);
        }
        break;
      }
      case "map":
        break;
    }
  }
  const unknown = plain.unknownFields as UnknownField[] | undefined;
  if (unknown && unknown.length > 0) r.setUnknown(unknown.map((u) => ({ ...u })));
  return r;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
