import assert from "node:assert/strict";
import { ACTOR_ID_SIZE, ActorId, MAX_NODE_ID, MAX_POOL_ID, WireError } from "../lib/wire/mod.ts";
import { Rng, testSeed } from "./_helpers/random.ts";
import { fromHex, toHex } from "./_helpers/vectors.ts";

const U64_MAX = (1n << 64n) - 1n;
const U32_MAX = 0xffffffff;

/** Asserts that `fn` throws a WireError with `code`. */
function throwsWire(fn: () => unknown, code: string): void {
  assert.throws(fn, (e: unknown) => e instanceof WireError && e.code === code);
}

/** The raw words of a parse result, to compare partial fills field by field. */
function parsed(text: string): { ok: boolean; localId: bigint; hint: number; nodeWord: number } {
  const { id, ok } = ActorId.parse(text);
  assert.ok(id instanceof ActorId);
  return { ok, localId: id.localId, hint: id.hint, nodeWord: id.nodeWord };
}

function failsEmpty(text: string): void {
  assert.deepEqual(parsed(text), { ok: false, localId: 0n, hint: 0, nodeWord: 0 }, text);
}

Deno.test("a plain id packs node and pool into the node word and lays out 16 LE bytes", () => {
  const id = ActorId.plain(5, 0x0102030405060708n, 0x0a0b0c0d, 3);
  assert.equal(id.nodeWord, 5 | (3 << 20));
  assert.equal(id.nodeId, 5);
  assert.equal(id.poolId, 3);
  assert.equal(id.isService, false);
  assert.equal(toHex(id.encode()), "0807060504030201" + "0d0c0b0a" + "05003000");
  assert.equal(ACTOR_ID_SIZE, 16);
});

Deno.test("a plain id at the limits keeps every bit: node 2^20-1, pool 0x7FF, u64 and u32 max", () => {
  const id = ActorId.plain(MAX_NODE_ID, U64_MAX, U32_MAX, MAX_POOL_ID);
  assert.equal(id.nodeWord, 0x7fffffff);
  assert.equal(id.nodeId, MAX_NODE_ID);
  assert.equal(id.poolId, MAX_POOL_ID);
  assert.equal(id.isService, false);
  assert.equal(toHex(id.encode()), "ffffffffffffffffffffffffffffff7f");
});

Deno.test("plain() refuses a node id, pool id or word outside its range with bad_argument", () => {
  throwsWire(() => ActorId.plain(MAX_NODE_ID + 1, 1n), "bad_argument");
  throwsWire(() => ActorId.plain(-1, 1n), "bad_argument");
  throwsWire(() => ActorId.plain(1.5, 1n), "bad_argument");
  throwsWire(() => ActorId.plain(1, 1n, 0, MAX_POOL_ID + 1), "bad_argument");
  throwsWire(() => ActorId.plain(1, U64_MAX + 1n), "bad_argument");
  throwsWire(() => ActorId.plain(1, -1n), "bad_argument");
  throwsWire(() => ActorId.plain(1, 1n, U32_MAX + 1), "bad_argument");
  throwsWire(() => new ActorId(0n, 0, U32_MAX + 1), "bad_argument");
  throwsWire(() => new ActorId(0n, -1, 0), "bad_argument");
});

Deno.test("a service id holds its zero-padded name in bytes 0..11 and sets bit 31 of the node word", () => {
  const cookie = ActorId.service(2, "cookie check");
  assert.equal(toHex(cookie.encode()), "636f6f6b696520636865636b02000080");
  assert.equal(cookie.nodeWord, 0x80000002);
  assert.equal(cookie.nodeId, 2);
  assert.equal(cookie.poolId, 0);
  assert.equal(cookie.isService, true);
  // The name's first 8 bytes are the LocalId, bytes 8..11 the Hint.
  assert.equal(cookie.localId, 0x2065696b6f6f63n | (0x63n << 56n));
  assert.equal(cookie.hint, 0x6b636568);

  const namesvc = ActorId.service(0, "namesvc");
  assert.equal(toHex(namesvc.encode()), "6e616d65737663000000000000000080");
  assert.equal(namesvc.nodeId, 0);
  assert.equal(namesvc.isEmpty, false);

  const bytes = ActorId.service(
    1,
    new Uint8Array([0x78, 0x64, 0x63, 0x20, 0x70, 0x61, 0x79, 0x6c]),
  );
  assert.equal(toHex(bytes.encode()), "786463207061796c0000000001000080");
});

Deno.test("a service name longer than 12 bytes is refused with bad_argument", () => {
  ActorId.service(1, "123456789012");
  throwsWire(() => ActorId.service(1, "1234567890123"), "bad_argument");
  throwsWire(() => ActorId.service(1, "é".repeat(7)), "bad_argument"); // 14 UTF-8 bytes
  throwsWire(() => ActorId.service(MAX_NODE_ID + 1, "x"), "bad_argument");
});

Deno.test("nodeId and toString mask off the pool bits and the service flag", () => {
  const all = new ActorId(0n, 0, 0xffffffff);
  assert.equal(all.nodeId, MAX_NODE_ID);
  assert.equal(all.poolId, MAX_POOL_ID);
  assert.equal(all.isService, true);
  assert.equal(all.toString(), "[1048575:0:0]");

  const pooled = new ActorId(7n, 3, (9 << 20) | 42);
  assert.equal(pooled.nodeId, 42);
  assert.equal(pooled.poolId, 9);
  assert.equal(pooled.toString(), "[42:7:3]");

  const service = ActorId.service(2, "cookie check");
  assert.equal(service.toString(), `[2:${service.localId}:${service.hint}]`);
});

Deno.test("only the all-zero id is empty: any single non-zero byte of the 16 makes it non-empty", () => {
  assert.equal(ActorId.EMPTY.isEmpty, true);
  assert.equal(ActorId.decode(new Uint8Array(16)).isEmpty, true);
  assert.ok(ActorId.decode(new Uint8Array(16)).equals(ActorId.EMPTY));
  for (let i = 0; i < 16; i++) {
    const raw = new Uint8Array(16);
    raw[i] = i === 15 ? 0x80 : 1; // byte 15 alone: the service flag with node 0
    assert.equal(ActorId.decode(raw).isEmpty, false, `byte ${i}`);
  }
  // Node 0 with only a pool bit, and a hint-only id, are not empty either.
  assert.equal(new ActorId(0n, 0, 1 << 20).isEmpty, false);
  assert.equal(new ActorId(0n, 1, 0).isEmpty, false);
});

Deno.test("equality is over all 16 bytes: ids that differ in any one byte are not equal", () => {
  const base = fromHex("01000000000000620000000001000000");
  const id = ActorId.decode(base);
  assert.ok(id.equals(ActorId.decode(base.slice())));
  for (let i = 0; i < 16; i++) {
    const other = base.slice();
    other[i] ^= 0x10;
    assert.equal(id.equals(ActorId.decode(other)), false, `byte ${i}`);
    assert.equal(ActorId.decode(other).equals(id), false, `byte ${i}`);
  }
});

Deno.test("ids that differ only in hint or pool bits are not equal, though nodeId matches", () => {
  const a = ActorId.plain(1, 5n, 0, 0);
  const hinted = ActorId.plain(1, 5n, 1, 0);
  const pooled = ActorId.plain(1, 5n, 0, 1);
  assert.equal(a.equals(hinted), false);
  assert.equal(a.equals(pooled), false);
  // The pooled id prints like the plain one (masked node), yet it is a different id.
  assert.equal(pooled.toString(), a.toString());
  assert.equal(pooled.nodeId, a.nodeId);
  // The service flag alone also separates two ids.
  assert.equal(new ActorId(5n, 0, 1).equals(new ActorId(5n, 0, 0x80000001)), false);
});

Deno.test("the text form is [NodeId:LocalId:Hint] in unsigned decimal", () => {
  assert.equal(
    ActorId.plain(1, 7061644215716937729n).toString(),
    "[1:7061644215716937729:0]",
  );
  assert.equal(
    ActorId.plain(MAX_NODE_ID, U64_MAX, U32_MAX).toString(),
    "[1048575:18446744073709551615:4294967295]",
  );
  assert.equal(ActorId.EMPTY.toString(), "[0:0:0]");
});

Deno.test("decode reads 16 bytes at an offset and refuses fewer with truncated", () => {
  const buf = new Uint8Array(20);
  buf.set(fromHex("02000000000000620000000002000000"), 3);
  const id = ActorId.decode(buf, 3);
  assert.equal(id.toString(), "[2:7061644215716937730:0]");
  assert.ok(ActorId.decode(buf.subarray(3)).equals(id));
  throwsWire(() => ActorId.decode(new Uint8Array(15)), "truncated");
  throwsWire(() => ActorId.decode(buf, 5), "truncated");
  const out = new Uint8Array(17);
  id.encodeInto(out, 1);
  assert.equal(toHex(out.subarray(1)), "02000000000000620000000002000000");
  throwsWire(() => id.encodeInto(out, 2), "truncated");
});

Deno.test("parse accepts canonical text and sets all three words", () => {
  assert.deepEqual(parsed("[1:7061644215716937729:0]"), {
    ok: true,
    localId: 7061644215716937729n,
    hint: 0,
    nodeWord: 1,
  });
  assert.deepEqual(parsed("[0:0:0]"), { ok: true, localId: 0n, hint: 0, nodeWord: 0 });
  assert.deepEqual(parsed("[4294967295:18446744073709551615:4294967295]"), {
    ok: true,
    localId: U64_MAX,
    hint: U32_MAX,
    nodeWord: U32_MAX,
  });
});

Deno.test("parse fails on text shorter than 4 characters", () => {
  for (const text of ["", "[", "[]", "[:]", "[1]", "::"]) failsEmpty(text);
  // Four characters pass the length rule and then fail on the empty parts.
  failsEmpty("[::]");
});

Deno.test("parse fails without the leading [ or the trailing ]", () => {
  for (const text of ["1:2:3]", "[1:2:3", "1:2:3", "(1:2:3)", " [1:2:3]", "[1:2:3] ", "]1:2:3["]) {
    failsEmpty(text);
  }
});

Deno.test("parse fails when the first or the second colon is missing", () => {
  failsEmpty("[123]");
  failsEmpty("[1;2;3]");
  failsEmpty("[1:2]"); // first colon only
  failsEmpty("[12:345]");
});

Deno.test("parse accepts a single leading + on each part", () => {
  assert.deepEqual(parsed("[+1:+2:+3]"), { ok: true, localId: 2n, hint: 3, nodeWord: 1 });
  assert.deepEqual(parsed("[+1:2:3]"), { ok: true, localId: 2n, hint: 3, nodeWord: 1 });
  // A sign alone, a double sign, or a sign after a digit is not a number.
  failsEmpty("[+:2:3]");
  failsEmpty("[++1:2:3]");
  failsEmpty("[1+:2:3]");
  assert.deepEqual(parsed("[1:2:+]"), { ok: false, localId: 2n, hint: 0, nodeWord: 1 });
});

Deno.test("parse rejects a - sign, even on zero", () => {
  failsEmpty("[-1:2:3]");
  failsEmpty("[-0:0:0]");
  assert.deepEqual(parsed("[1:-2:3]"), { ok: false, localId: 0n, hint: 0, nodeWord: 1 });
  assert.deepEqual(parsed("[1:2:-0]"), { ok: false, localId: 2n, hint: 0, nodeWord: 1 });
});

Deno.test("parse rejects whitespace anywhere inside a part", () => {
  for (const text of ["[ 1:2:3]", "[1 :2:3]", "[\t1:2:3]", "[\n1:2:3]", "[\u00a01:2:3]"]) {
    failsEmpty(text);
  }
  assert.deepEqual(parsed("[1: 2:3]"), { ok: false, localId: 0n, hint: 0, nodeWord: 1 });
  assert.deepEqual(parsed("[1:2 :3]"), { ok: false, localId: 0n, hint: 0, nodeWord: 1 });
  assert.deepEqual(parsed("[1:2: 3]"), { ok: false, localId: 2n, hint: 0, nodeWord: 1 });
  assert.deepEqual(parsed("[1:2:3 ]"), { ok: false, localId: 2n, hint: 0, nodeWord: 1 });
});

Deno.test("parse accepts ASCII digits only: leading zeros yes, other characters no", () => {
  assert.deepEqual(parsed("[007:0010:00]"), { ok: true, localId: 10n, hint: 0, nodeWord: 7 });
  for (const text of ["[0x1:2:3]", "[1e3:2:3]", "[1.0:2:3]", "[\u0661:2:3]", "[\uff11:2:3]"]) {
    failsEmpty(text); // hex, exponent, decimal point, Arabic-Indic and full-width digits
  }
});

Deno.test("parse fails on an empty node, LocalId or Hint part, keeping earlier parts", () => {
  failsEmpty("[:2:3]");
  assert.deepEqual(parsed("[1::3]"), { ok: false, localId: 0n, hint: 0, nodeWord: 1 });
  assert.deepEqual(parsed("[1:2:]"), { ok: false, localId: 2n, hint: 0, nodeWord: 1 });
});

Deno.test("parse fails when the node word overflows u32 (4294967296)", () => {
  failsEmpty("[4294967296:0:0]");
  failsEmpty("[99999999999999999999999:0:0]");
  assert.equal(parsed("[4294967295:0:0]").ok, true);
});

Deno.test("parse fails when LocalId overflows u64 (18446744073709551616), keeping the node word", () => {
  assert.deepEqual(parsed("[1:18446744073709551616:0]"), {
    ok: false,
    localId: 0n,
    hint: 0,
    nodeWord: 1,
  });
  assert.equal(parsed("[1:18446744073709551615:0]").ok, true);
});

Deno.test("parse fails when Hint overflows u32, keeping node word and LocalId", () => {
  assert.deepEqual(parsed("[1:2:4294967296]"), { ok: false, localId: 2n, hint: 0, nodeWord: 1 });
});

Deno.test("parse fills fields up to the first failure: [5:abc:0] and [1:2:x]", () => {
  assert.deepEqual(parsed("[5:abc:0]"), { ok: false, localId: 0n, hint: 0, nodeWord: 5 });
  assert.deepEqual(parsed("[1:2:x]"), { ok: false, localId: 2n, hint: 0, nodeWord: 1 });
  // A third colon lands in the Hint part, which then is not a number.
  assert.deepEqual(parsed("[1:2:3:4]"), { ok: false, localId: 2n, hint: 0, nodeWord: 1 });
  // The partially filled id prints with what was kept.
  assert.equal(ActorId.parse("[5:abc:0]").id.toString(), "[5:0:0]");
});

Deno.test("parse writes the node part into the raw word: pool and service bits survive", () => {
  const service = ActorId.parse("[2147483650:0:0]");
  assert.equal(service.ok, true);
  assert.equal(service.id.nodeWord, 2147483650);
  assert.equal(service.id.isService, true);
  assert.equal(service.id.nodeId, 2);

  const pooled = ActorId.parse(`[${(3 << 20) | 1}:9:0]`);
  assert.equal(pooled.ok, true);
  assert.equal(pooled.id.poolId, 3);
  assert.equal(pooled.id.nodeId, 1);
  // toString masks them again, so such an id does not print back to its input.
  assert.equal(pooled.id.toString(), "[1:9:0]");
  assert.ok(pooled.id.equals(ActorId.plain(1, 9n, 0, 3)));
});

Deno.test("toString then parse gives back the same id, over random plain ids", () => {
  const seed = testSeed(0x5eed1d);
  const rng = new Rng(seed);
  for (let i = 0; i < 500; i++) {
    const id = ActorId.plain(rng.int(MAX_NODE_ID + 1), rng.u64(), rng.u32());
    const { id: back, ok } = ActorId.parse(id.toString());
    assert.ok(ok, `seed ${seed} case ${i}: ${id}`);
    assert.ok(back.equals(id), `seed ${seed} case ${i}: ${id} -> ${back}`);
  }
});

Deno.test("encode then decode gives back the same id, over random raw words", () => {
  const seed = testSeed(0xac7012);
  const rng = new Rng(seed);
  for (let i = 0; i < 500; i++) {
    const id = new ActorId(rng.u64(), rng.u32(), rng.u32());
    const bytes = id.encode();
    assert.equal(bytes.length, 16);
    const back = ActorId.decode(bytes);
    assert.ok(back.equals(id), `seed ${seed} case ${i}`);
    assert.equal(back.nodeId, id.nodeWord & 0xfffff);
    assert.equal(back.poolId, (id.nodeWord >>> 20) & 0x7ff);
    assert.equal(back.isService, id.nodeWord >= 0x80000000);
  }
});
