import assert from "node:assert/strict";
import {
  decodeHandshakeReply,
  decodeHandshakeRequest,
  encodeHandshakeReply,
  encodeHandshakeRequest,
  encodeHandshakeSuccess,
  type HandshakeReply,
  type HandshakeRequest,
  type HandshakeSuccess,
  WireError,
} from "../lib/wire/mod.ts";
import {
  concat,
  fieldContent,
  fieldSpans,
  lengthDelimited,
  withoutField,
} from "./_helpers/protobuf_fields.ts";
import { fromHex, toHex, vectors } from "./_helpers/vectors.ts";

const payload = (name: string) => vectors.exBlocks.find((v) => v.name === name)!.payloadHex;

const A_LOCAL = 7061644215716937729n;
const B_LOCAL = 7061644215716937730n;

/** E6 (spec 2.4): a new-session request with encryption disabled. */
const E6_FIELDS: HandshakeRequest = {
  Protocol: 2n,
  ProgramPID: 12345n,
  ProgramStartTime: 1000000n,
  Serial: A_LOCAL,
  ReceiverNodeId: 2,
  SenderActorId: "[1:7061644215716937729:0]",
  SenderHostName: "host-a",
  ReceiverHostName: "host-b",
  ClusterUUIDs: { ClusterUUID: "" },
  RequestModernFrame: true,
  RequestAuthOnly: false,
};

/** E7's Success (spec 2.4). */
const E7_SUCCESS: HandshakeSuccess = {
  Protocol: 2n,
  ProgramPID: 23456n,
  ProgramStartTime: 2000000n,
  Serial: B_LOCAL,
  SenderActorId: "[2:7061644215716937730:0]",
  ClusterUUIDs: { ClusterUUID: "" },
  StartEncryption: false,
  UseModernFrame: true,
  AuthOnly: false,
};

/** E4 (spec 1.4 step 5): the cookie-check request, every required field explicitly zero. */
const E4_FIELDS: HandshakeRequest = {
  Protocol: 2n,
  ProgramPID: 0n,
  ProgramStartTime: 0n,
  Serial: 0n,
  ReceiverNodeId: 0,
  SenderActorId: "",
  Cookie: "abc",
  DoCheckCookie: true,
};

const REQUEST_REQUIRED: [number, keyof HandshakeRequest][] = [
  [1, "Protocol"],
  [2, "ProgramPID"],
  [3, "ProgramStartTime"],
  [4, "Serial"],
  [5, "ReceiverNodeId"],
  [6, "SenderActorId"],
];
const SUCCESS_REQUIRED: [number, keyof HandshakeSuccess][] = [
  [1, "Protocol"],
  [2, "ProgramPID"],
  [3, "ProgramStartTime"],
  [4, "Serial"],
  [5, "SenderActorId"],
];

function wireError(code: string, pattern?: RegExp): (e: unknown) => boolean {
  return (e) => e instanceof WireError && e.code === code && (!pattern || pattern.test(e.message));
}

Deno.test("E6 built from its fields encodes to exactly the golden payload and decodes back", () => {
  const bytes = encodeHandshakeRequest(E6_FIELDS);
  assert.equal(toHex(bytes), payload("E6"));
  assert.deepEqual(decodeHandshakeRequest(fromHex(payload("E6"))), E6_FIELDS);
});

Deno.test("E8 (E6 with RequireEncryption present = false) encodes to exactly the golden payload", () => {
  const fields = { ...E6_FIELDS, RequireEncryption: false };
  assert.equal(toHex(encodeHandshakeRequest(fields)), payload("E8"));
  assert.deepEqual(decodeHandshakeRequest(fromHex(payload("E8"))), fields);
});

Deno.test("E7 built from its fields encodes to exactly the golden payload and decodes back", () => {
  const reply: HandshakeReply = { Success: E7_SUCCESS };
  assert.equal(toHex(encodeHandshakeReply(reply)), payload("E7"));
  assert.deepEqual(decodeHandshakeReply(fromHex(payload("E7"))), reply);
  // The nested Success is the same bytes as a bare THandshakeSuccess.
  assert.equal(
    toHex(encodeHandshakeSuccess(E7_SUCCESS)),
    toHex(fieldContent(fromHex(payload("E7")), 1)),
  );
});

Deno.test("E4, the cookie-check request, writes its zero required fields and encodes to the golden payload", () => {
  assert.equal(toHex(encodeHandshakeRequest(E4_FIELDS)), payload("E4"));
  assert.deepEqual(decodeHandshakeRequest(fromHex(payload("E4"))), E4_FIELDS);
});

Deno.test("E1, E2 and E3 replies encode to the golden payloads and decode back", () => {
  const cases: [string, HandshakeReply][] = [
    ["E1", { CookieCheckResult: true }],
    ["E2", { CookieCheckResult: false }],
    ["E3", { ErrorExplaination: "duplicate serial" }],
  ];
  for (const [name, reply] of cases) {
    assert.equal(toHex(encodeHandshakeReply(reply)), payload(name), name);
    assert.deepEqual(decodeHandshakeReply(fromHex(payload(name))), reply, name);
  }
});

Deno.test("RequireEncryption absent, false and true are three different encodings, decoded as such", () => {
  const encodings = [undefined, false, true].map((mode) =>
    toHex(encodeHandshakeRequest({ ...E6_FIELDS, RequireEncryption: mode }))
  );
  assert.equal(new Set(encodings).size, 3);
  assert.equal(encodings[0], payload("E6"));
  assert.equal(encodings[1], payload("E8"));
  assert.equal(encodings[2], payload("E8").replace("6a020a007000", "6a020a007001"));

  const decoded = encodings.map((hex) => decodeHandshakeRequest(fromHex(hex)));
  assert.equal("RequireEncryption" in decoded[0], false);
  assert.equal(decoded[1].RequireEncryption, false);
  assert.equal(decoded[2].RequireEncryption, true);
});

Deno.test("ClusterUUIDs with an empty ClusterUUID, an empty ClusterUUIDs and none differ on the wire", () => {
  const { ClusterUUIDs: _, ...none } = E6_FIELDS;
  const variants: HandshakeRequest[] = [
    { ...none, ClusterUUIDs: { ClusterUUID: "" } },
    { ...none, ClusterUUIDs: {} },
    none,
  ];
  const encodings = variants.map((v) => encodeHandshakeRequest(v));
  assert.equal(new Set(encodings.map(toHex)).size, 3);
  const field13 = encodings.map((bytes) =>
    fieldSpans(bytes).filter((f) => f.no === 13).map((f) => toHex(bytes.subarray(f.start, f.end)))
  );
  assert.deepEqual(field13, [["6a020a00"], ["6a00"], []]);
  encodings.forEach((bytes, i) => assert.deepEqual(decodeHandshakeRequest(bytes), variants[i]));
  // Success keeps the same distinction.
  const { ClusterUUIDs: __, ...successNone } = E7_SUCCESS;
  assert.notEqual(
    toHex(encodeHandshakeReply({ Success: successNone })),
    toHex(encodeHandshakeReply({ Success: E7_SUCCESS })),
  );
  assert.equal(
    "ClusterUUIDs" in decodeHandshakeReply(encodeHandshakeReply({ Success: successNone })).Success!,
    false,
  );
});

Deno.test("decoding a request without any one of its 6 required fields fails protobuf_missing_required naming it", () => {
  const e6 = fromHex(payload("E6"));
  for (const [no, name] of REQUEST_REQUIRED) {
    const bytes = withoutField(e6, no);
    assert.equal(bytes.length < e6.length, true, name);
    assert.throws(
      () => decodeHandshakeRequest(bytes),
      wireError("protobuf_missing_required", new RegExp(`THandshakeRequest\\.${name}\\b`)),
      name,
    );
  }
});

Deno.test("decoding a reply whose Success lacks any one of its 5 required fields fails protobuf_missing_required naming it", () => {
  const success = fieldContent(fromHex(payload("E7")), 1);
  for (const [no, name] of SUCCESS_REQUIRED) {
    const reply = lengthDelimited(1, withoutField(success, no));
    assert.throws(
      () => decodeHandshakeReply(reply),
      wireError("protobuf_missing_required", new RegExp(`Success\\.${name}\\b`)),
      name,
    );
  }
  // An empty Success (present, no fields) fails too; an absent Success is a valid reply.
  assert.throws(
    () => decodeHandshakeReply(fromHex("0a00")),
    wireError("protobuf_missing_required"),
  );
  assert.deepEqual(decodeHandshakeReply(new Uint8Array(0)), {});
});

Deno.test("encoding a request or reply lacking a required field fails protobuf_missing_required naming it", () => {
  for (const [, name] of REQUEST_REQUIRED) {
    const fields: HandshakeRequest = { ...E6_FIELDS, [name]: undefined };
    assert.throws(
      () => encodeHandshakeRequest(fields),
      wireError("protobuf_missing_required", new RegExp(`THandshakeRequest\\.${name}\\b`)),
      name,
    );
  }
  for (const [, name] of SUCCESS_REQUIRED) {
    const success: HandshakeSuccess = { ...E7_SUCCESS, [name]: undefined };
    assert.throws(
      () => encodeHandshakeReply({ Success: success }),
      wireError("protobuf_missing_required", new RegExp(`Success\\.${name}\\b`)),
      name,
    );
  }
});

Deno.test("unknown fields of every wire type are kept on decode and written back byte for byte", () => {
  const unknown = concat(
    fromHex("a006" + "05"), // field 100, varint 5
    fromHex("aa06" + "03" + "78797a"), // field 101, length-delimited "xyz"
    fromHex("bd06" + "01020304"), // field 103, fixed32
    fromHex("b106" + "0102030405060708"), // field 102, fixed64
  );
  const request = concat(fromHex(payload("E6")), unknown);
  const decoded = decodeHandshakeRequest(request);
  assert.deepEqual(
    decoded.unknownFields?.map((u) => [u.no, u.wireType]),
    [[100, 0], [101, 2], [103, 5], [102, 1]],
  );
  assert.equal(toHex(encodeHandshakeRequest(decoded)), toHex(request));

  // Inside a nested Success as well as at the top of the reply.
  const success = concat(fieldContent(fromHex(payload("E7")), 1), fromHex("f8070b"));
  const reply = concat(lengthDelimited(1, success), fromHex("e807" + "01"));
  const decodedReply = decodeHandshakeReply(reply);
  assert.deepEqual(decodedReply.Success?.unknownFields?.map((u) => u.no), [127]);
  assert.deepEqual(decodedReply.unknownFields?.map((u) => u.no), [125]);
  assert.equal(toHex(encodeHandshakeReply(decodedReply)), toHex(reply));
});

Deno.test("the newer request fields of spec section 9 (20..27) round-trip under their field numbers", () => {
  const request: HandshakeRequest = {
    ...E6_FIELDS,
    RequestExtendedTraceFmt: true,
    RequestExternalDataChannel: true,
    CompatibilityInfo: new Uint8Array([0x0a, 0x03, 0x32, 0x35, 0x2e]),
    HandshakeId: new Uint8Array(32).map((_, i) => i * 7),
    RequestXxhash: true,
    RequestXdcShuffle: false,
    Params: [{ Key: "checker", Value: new Uint8Array([1, 2]) }, { Key: "empty" }],
    RdmaHandshake: {
      QpNum: 77,
      SubnetPrefix: 0xfe80000000000000n,
      InterfaceId: 0x0123456789abcdefn,
      MtuIndex: 5,
      Read: { Address: 0x7f0000001000n, Size: 4096n, Rkey: 0xdeadbeef },
      RdmaChecksum: true,
    },
  };
  const bytes = encodeHandshakeRequest(request);
  assert.deepEqual(
    [...new Set(fieldSpans(bytes).map((f) => f.no))],
    [1, 2, 3, 4, 5, 6, 7, 8, 13, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27],
  );
  assert.deepEqual(decodeHandshakeRequest(bytes), request);
});

Deno.test("the newer Success and reply fields of spec section 9 round-trip, with either RDMA oneof member", () => {
  const qp = { QpNum: 1, SubnetPrefix: 2n, InterfaceId: 3n, MtuIndex: 4 };
  const success: HandshakeSuccess = {
    ...E7_SUCCESS,
    UseExtendedTraceFmt: true,
    UseExternalDataChannel: false,
    CompatibilityInfo: new Uint8Array([9, 9]),
    UseXxhash: true,
    UseXdcShuffle: true,
    Params: [{ Key: "k", Value: new Uint8Array(0) }],
    QpPrepared: qp,
  };
  const reply: HandshakeReply = {
    Success: success,
    Params: [{ Key: "veto", Value: fromHex("00") }],
  };
  const bytes = encodeHandshakeReply(reply);
  assert.deepEqual(fieldSpans(bytes).map((f) => f.no), [1, 4]);
  assert.deepEqual(
    fieldSpans(fieldContent(bytes, 1)).map((f) => f.no),
    [1, 2, 3, 4, 5, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19],
  );
  assert.deepEqual(decodeHandshakeReply(bytes), reply);

  const { QpPrepared: _, ...rest } = success;
  const withErr: HandshakeReply = { Success: { ...rest, RdmaErr: "no rdma device" } };
  const errBytes = encodeHandshakeReply(withErr);
  assert.deepEqual(fieldSpans(fieldContent(errBytes, 1)).map((f) => f.no).at(-1), 20);
  assert.deepEqual(decodeHandshakeReply(errBytes), withErr);
});

Deno.test("a nested newer message lacking its own required field fails like the outer ones", () => {
  assert.throws(
    () => encodeHandshakeReply({ Success: { ...E7_SUCCESS, QpPrepared: { QpNum: 1 } } }),
    wireError("protobuf_missing_required", /QpPrepared\.SubnetPrefix/),
  );
});

Deno.test("setting both members of the RdmaHandshake oneof is refused with bad_argument, not silently dropped", () => {
  const qp = { QpNum: 1, SubnetPrefix: 2n, InterfaceId: 3n, MtuIndex: 4 };
  assert.throws(
    () => encodeHandshakeReply({ Success: { ...E7_SUCCESS, QpPrepared: qp, RdmaErr: "x" } }),
    wireError("bad_argument", /QpPrepared.*RdmaErr/),
  );
});

Deno.test("a field name the schema does not have is refused with bad_argument", () => {
  const bogus = { ...E6_FIELDS, RequireEncryptoin: true } as HandshakeRequest;
  assert.throws(
    () => encodeHandshakeRequest(bogus),
    wireError("bad_argument", /RequireEncryptoin/),
  );
  assert.throws(
    () => encodeHandshakeRequest({ ...E6_FIELDS, ReceiverNodeId: -1 }),
    wireError("bad_argument"),
  );
});

Deno.test("malformed protobuf bytes fail protobuf_malformed", () => {
  const e6 = fromHex(payload("E6"));
  const malformed = [
    fromHex("08"), // varint with no value
    fromHex("0880"), // varint cut inside
    fromHex("0f"), // wire type 7
    fromHex("00"), // field number 0
    fromHex("3205ab"), // length 5, 1 byte present
    fromHex("8080808080808080808001"), // varint longer than 10 bytes
    e6.subarray(0, 20), // cut inside SenderActorId
    concat(e6, fromHex("3a")), // a tag with no value after a whole message
  ];
  for (const bytes of malformed) {
    assert.throws(
      () => decodeHandshakeRequest(bytes),
      wireError("protobuf_malformed"),
      toHex(bytes),
    );
  }
  for (
    const bytes of [
      fromHex("0a05"),
      fromHex("0a0208"),
      fromHex("1a"),
      fromHex(payload("E7")).subarray(0, 30),
    ]
  ) {
    assert.throws(() => decodeHandshakeReply(bytes), wireError("protobuf_malformed"), toHex(bytes));
  }
});
