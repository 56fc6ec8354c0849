/**
 * The proto2 handshake messages as plain objects, and their codecs.
 *
 * Keys are the proto field names of spec section 3. A key that is `undefined` (or missing) is
 * an absent field: presence matters in proto2 (RequireEncryption absent differs from false),
 * so encoders write exactly the keys that are set, in field-number order, and decoders report
 * exactly the fields that were on the wire. Fields this module does not know, and known field
 * numbers under another wire type (as the C++ parser treats them), are kept in
 * `unknownFields` and written back unchanged.
 *
 * The schema below mirrors `proto/interconnect.proto`; the codec is the table-driven one of
 * `proto2.ts`. The protobuf-es code generated from the same file is the reference the tests
 * compare it with, byte for byte (see the README's design notes for why it is not used at
 * run time).
 * @module
 */
import {
  decodeMessage,
  encodeMessage,
  type FieldKind,
  type FieldSpec,
  type MessageSpec,
  messageSpec,
  type UnknownField,
} from "./proto2.ts";

export type { UnknownField } from "./proto2.ts";

interface HasUnknown {
  /** Fields not in the schema, written back after the known ones. */
  unknownFields?: UnknownField[];
}

/** TClusterUUIDs (spec 3.2). */
export interface ClusterUUIDs extends HasUnknown {
  ClusterUUID?: string;
  AcceptUUID?: string[];
}

/** TScopeId (spec 3.2): a pair of fixed64. */
export interface ScopeIdMessage extends HasUnknown {
  X1?: bigint;
  X2?: bigint;
}

/** TKeyValuePair of the newer Params lists (spec 9). */
export interface KeyValuePair extends HasUnknown {
  Key?: string;
  Value?: Uint8Array;
}

/** TRdmaCred (newer, spec 9). */
export interface RdmaCred extends HasUnknown {
  Address?: bigint;
  Size?: bigint;
  Rkey?: number;
}

/** TRdmaHandshake (newer, spec 9). */
export interface RdmaHandshake extends HasUnknown {
  QpNum?: number;
  SubnetPrefix?: bigint;
  InterfaceId?: bigint;
  MtuIndex?: number;
  Read?: RdmaCred;
  RdmaChecksum?: boolean;
}

/** THandshakeRequest (spec 3.1), including the newer fields of section 9. */
export interface HandshakeRequest extends HasUnknown {
  Protocol?: bigint;
  ProgramPID?: bigint;
  ProgramStartTime?: bigint;
  Serial?: bigint;
  ReceiverNodeId?: number;
  SenderActorId?: string;
  SenderHostName?: string;
  ReceiverHostName?: string;
  UUID?: string;
  Ballast?: Uint8Array;
  VersionTag?: string;
  AcceptedVersionTags?: string[];
  ClusterUUIDs?: ClusterUUIDs;
  RequireEncryption?: boolean;
  ClientScopeId?: ScopeIdMessage;
  Cookie?: string;
  DoCheckCookie?: boolean;
  RequestModernFrame?: boolean;
  RequestAuthOnly?: boolean;
  RequestExtendedTraceFmt?: boolean;
  RequestExternalDataChannel?: boolean;
  CompatibilityInfo?: Uint8Array;
  HandshakeId?: Uint8Array;
  RequestXxhash?: boolean;
  RequestXdcShuffle?: boolean;
  Params?: KeyValuePair[];
  RdmaHandshake?: RdmaHandshake;
}

/** THandshakeSuccess (spec 3.3), including the newer fields of section 9. */
export interface HandshakeSuccess extends HasUnknown {
  Protocol?: bigint;
  ProgramPID?: bigint;
  ProgramStartTime?: bigint;
  Serial?: bigint;
  SenderActorId?: string;
  VersionTag?: string;
  AcceptedVersionTags?: string[];
  ClusterUUIDs?: ClusterUUIDs;
  StartEncryption?: boolean;
  ServerScopeId?: ScopeIdMessage;
  UseModernFrame?: boolean;
  AuthOnly?: boolean;
  UseExtendedTraceFmt?: boolean;
  UseExternalDataChannel?: boolean;
  CompatibilityInfo?: Uint8Array;
  UseXxhash?: boolean;
  UseXdcShuffle?: boolean;
  Params?: KeyValuePair[];
  /** Member of the RdmaHandshake oneof; at most one of QpPrepared / RdmaErr is set. */
  QpPrepared?: RdmaHandshake;
  /** Member of the RdmaHandshake oneof. */
  RdmaErr?: string;
}

/** THandshakeReply (spec 3.4). */
export interface HandshakeReply extends HasUnknown {
  Success?: HandshakeSuccess;
  /** Sic: the upstream spelling. Its presence alone means rejection. */
  ErrorExplaination?: string;
  CookieCheckResult?: boolean;
  Params?: KeyValuePair[];
}

function opt(no: number, name: string, kind: FieldKind, message?: () => MessageSpec): FieldSpec {
  return { no, name, kind, label: "optional", message };
}
function req(no: number, name: string, kind: FieldKind): FieldSpec {
  return { no, name, kind, label: "required" };
}
function rep(no: number, name: string, kind: FieldKind, message?: () => MessageSpec): FieldSpec {
  return { no, name, kind, label: "repeated", message };
}
function one(
  no: number,
  name: string,
  kind: FieldKind,
  oneof: string,
  message?: () => MessageSpec,
): FieldSpec {
  return { no, name, kind, label: "optional", oneof, message };
}

const TClusterUUIDs = messageSpec("TClusterUUIDs", [
  opt(1, "ClusterUUID", "string"),
  rep(2, "AcceptUUID", "string"),
]);
const TScopeId = messageSpec("TScopeId", [opt(1, "X1", "fixed64"), opt(2, "X2", "fixed64")]);
const TRdmaCred = messageSpec("TRdmaCred", [
  req(1, "Address", "fixed64"),
  req(2, "Size", "uint64"),
  req(3, "Rkey", "fixed32"),
]);
const TRdmaHandshake = messageSpec("TRdmaHandshake", [
  req(1, "QpNum", "uint32"),
  req(3, "SubnetPrefix", "fixed64"),
  req(4, "InterfaceId", "fixed64"),
  req(5, "MtuIndex", "uint32"),
  one(6, "Read", "message", "Verb", () => TRdmaCred),
  opt(11, "RdmaChecksum", "bool"),
]);
const TKeyValuePair = messageSpec("TKeyValuePair", [
  opt(1, "Key", "string"),
  opt(2, "Value", "bytes"),
]);

const THandshakeRequest = messageSpec("THandshakeRequest", [
  req(1, "Protocol", "uint64"),
  req(2, "ProgramPID", "uint64"),
  req(3, "ProgramStartTime", "uint64"),
  req(4, "Serial", "uint64"),
  req(5, "ReceiverNodeId", "uint32"),
  req(6, "SenderActorId", "string"),
  opt(7, "SenderHostName", "string"),
  opt(8, "ReceiverHostName", "string"),
  opt(9, "UUID", "string"),
  opt(10, "Ballast", "bytes"),
  opt(11, "VersionTag", "string"),
  rep(12, "AcceptedVersionTags", "string"),
  opt(13, "ClusterUUIDs", "message", () => TClusterUUIDs),
  opt(14, "RequireEncryption", "bool"),
  opt(15, "ClientScopeId", "message", () => TScopeId),
  opt(16, "Cookie", "string"),
  opt(17, "DoCheckCookie", "bool"),
  opt(18, "RequestModernFrame", "bool"),
  opt(19, "RequestAuthOnly", "bool"),
  opt(20, "RequestExtendedTraceFmt", "bool"),
  opt(21, "RequestExternalDataChannel", "bool"),
  opt(22, "CompatibilityInfo", "bytes"),
  opt(23, "HandshakeId", "bytes"),
  opt(24, "RequestXxhash", "bool"),
  opt(25, "RequestXdcShuffle", "bool"),
  rep(26, "Params", "message", () => TKeyValuePair),
  opt(27, "RdmaHandshake", "message", () => TRdmaHandshake),
]);

const THandshakeSuccess = messageSpec("THandshakeSuccess", [
  req(1, "Protocol", "uint64"),
  req(2, "ProgramPID", "uint64"),
  req(3, "ProgramStartTime", "uint64"),
  req(4, "Serial", "uint64"),
  req(5, "SenderActorId", "string"),
  opt(6, "VersionTag", "string"),
  rep(7, "AcceptedVersionTags", "string"),
  opt(8, "ClusterUUIDs", "message", () => TClusterUUIDs),
  opt(9, "StartEncryption", "bool"),
  opt(10, "ServerScopeId", "message", () => TScopeId),
  opt(11, "UseModernFrame", "bool"),
  opt(12, "AuthOnly", "bool"),
  opt(13, "UseExtendedTraceFmt", "bool"),
  opt(14, "UseExternalDataChannel", "bool"),
  opt(15, "CompatibilityInfo", "bytes"),
  opt(16, "UseXxhash", "bool"),
  opt(17, "UseXdcShuffle", "bool"),
  rep(18, "Params", "message", () => TKeyValuePair),
  one(19, "QpPrepared", "message", "RdmaHandshake", () => TRdmaHandshake),
  one(20, "RdmaErr", "string", "RdmaHandshake"),
]);

const THandshakeReply = messageSpec("THandshakeReply", [
  opt(1, "Success", "message", () => THandshakeSuccess),
  opt(2, "ErrorExplaination", "string"),
  opt(3, "CookieCheckResult", "bool"),
  rep(4, "Params", "message", () => TKeyValuePair),
]);

/** Encodes a THandshakeRequest. Throws a `WireError` on a missing required field or a bad value. */
export function encodeHandshakeRequest(msg: HandshakeRequest): Uint8Array {
  return encodeMessage(THandshakeRequest, msg, "THandshakeRequest");
}

/**
 * Decodes a THandshakeRequest as the C++ peer would: a missing required field fails. Bytes
 * values (Ballast, ...) and unknown-field data are views into `bytes`.
 */
export function decodeHandshakeRequest(bytes: Uint8Array): HandshakeRequest {
  return decodeMessage(THandshakeRequest, bytes, "THandshakeRequest") as HandshakeRequest;
}

/** Encodes a THandshakeReply (with its Success, if any). */
export function encodeHandshakeReply(msg: HandshakeReply): Uint8Array {
  return encodeMessage(THandshakeReply, msg, "THandshakeReply");
}

/**
 * Decodes a THandshakeReply; a Success lacking a required field fails the whole reply. Bytes
 * values and unknown-field data are views into `bytes`.
 */
export function decodeHandshakeReply(bytes: Uint8Array): HandshakeReply {
  return decodeMessage(THandshakeReply, bytes, "THandshakeReply") as HandshakeReply;
}

/** Encodes a bare THandshakeSuccess (used by tests and dumps). */
export function encodeHandshakeSuccess(msg: HandshakeSuccess): Uint8Array {
  return encodeMessage(THandshakeSuccess, msg, "THandshakeSuccess");
}
