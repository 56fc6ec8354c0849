/**
 * TActorId: the 16-byte actor id of YDB's actor system (spec 2.1).
 *
 * Layout, little-endian: LocalId u64 at 0, Hint u32 at 8, node word u32 at 12. The node word
 * holds the 20-bit node id, 11 pool bits and the service flag. A service id carries up to 12
 * name bytes in place of LocalId and Hint.
 * @module
 */
import { needBytes, WireError } from "./errors.ts";

/** Size of an actor id on the wire. */
export const ACTOR_ID_SIZE = 16;
/** Largest node id: the node field has 20 bits. */
export const MAX_NODE_ID = 0xfffff;
/** Largest pool id: 11 bits above the node id. */
export const MAX_POOL_ID = 0x7ff;
const POOL_SHIFT = 20;
const SERVICE_FLAG = 0x80000000;
const U64_MAX = (1n << 64n) - 1n;
const U32_MAX = 0xffffffff;

/** An immutable TActorId. Equality and emptiness are over all 16 bytes. */
export class ActorId {
  /** The all-zero id: "no id", the empty/false id of the C++ code. */
  static readonly EMPTY: ActorId = new ActorId(0n, 0, 0);

  /**
   * Builds an id from its three raw words. Prefer {@link ActorId.plain} or
   * {@link ActorId.service}; this one keeps whatever bits it is given.
   */
  constructor(
    /** Bytes 0..7 as a u64 (the name's first 8 bytes for a service id). */
    readonly localId: bigint,
    /** Bytes 8..11 as a u32 (name bytes 8..11 for a service id). */
    readonly hint: number,
    /** Bytes 12..15 as a u32: node id, pool bits and the service flag. */
    readonly nodeWord: number,
  ) {
    if (localId < 0n || localId > U64_MAX) {
      throw new WireError("bad_argument", `ActorId LocalId# ${localId} is not a u64`);
    }
    if (!Number.isInteger(hint) || hint < 0 || hint > U32_MAX) {
      throw new WireError("bad_argument", `ActorId Hint# ${hint} is not a u32`);
    }
    if (!Number.isInteger(nodeWord) || nodeWord < 0 || nodeWord > U32_MAX) {
      throw new WireError("bad_argument", `ActorId node word# ${nodeWord} is not a u32`);
    }
  }

  /** A plain id: node word = nodeId | poolId << 20. */
  static plain(nodeId: number, localId: bigint, hint = 0, poolId = 0): ActorId {
    checkNodeId(nodeId);
    if (!Number.isInteger(poolId) || poolId < 0 || poolId > MAX_POOL_ID) {
      throw new WireError(
        "bad_argument",
        `ActorId pool id# ${poolId} is outside 0..${MAX_POOL_ID}`,
      );
    }
    return new ActorId(localId, hint, (nodeId | (poolId << POOL_SHIFT)) >>> 0);
  }

  /**
   * A service id: the name (at most 12 bytes, zero-padded) in bytes 0..11, node word =
   * nodeId | 0x80000000. Example: `ActorId.service(2, "cookie check")`.
   */
  static service(nodeId: number, name: string | Uint8Array): ActorId {
    checkNodeId(nodeId);
    const bytes = typeof name === "string" ? new TextEncoder().encode(name) : name;
    if (bytes.length > 12) {
      throw new WireError("bad_argument", `service name of ${bytes.length} bytes exceeds 12`);
    }
    const raw = new Uint8Array(ACTOR_ID_SIZE);
    raw.set(bytes);
    const view = new DataView(raw.buffer);
    view.setUint32(12, (nodeId | SERVICE_FLAG) >>> 0, true);
    return ActorId.decode(raw);
  }

  /** Reads 16 bytes at `offset`. Throws {@link WireError} `truncated` if they are not there. */
  static decode(bytes: Uint8Array, offset = 0): ActorId {
    needBytes("ActorId", bytes.length - offset, ACTOR_ID_SIZE);
    const view = new DataView(bytes.buffer, bytes.byteOffset + offset, ACTOR_ID_SIZE);
    return new ActorId(
      view.getBigUint64(0, true),
      view.getUint32(8, true),
      view.getUint32(12, true),
    );
  }

  /** Writes the 16 bytes into `out` at `offset`. */
  encodeInto(out: Uint8Array, offset = 0): void {
    needBytes("ActorId output", out.length - offset, ACTOR_ID_SIZE);
    const view = new DataView(out.buffer, out.byteOffset + offset, ACTOR_ID_SIZE);
    view.setBigUint64(0, this.localId, true);
    view.setUint32(8, this.hint, true);
    view.setUint32(12, this.nodeWord, true);
  }

  /** The 16 bytes of this id. */
  encode(): Uint8Array {
    const out = new Uint8Array(ACTOR_ID_SIZE);
    this.encodeInto(out);
    return out;
  }

  /** `NodeId()`: the 20-bit node id; pool bits and the service flag are masked off. */
  get nodeId(): number {
    return this.nodeWord & MAX_NODE_ID;
  }

  /** The 11 pool bits. */
  get poolId(): number {
    return (this.nodeWord >>> POOL_SHIFT) & MAX_POOL_ID;
  }

  /** True when the service flag (bit 31 of the node word) is set. */
  get isService(): boolean {
    return (this.nodeWord & SERVICE_FLAG) !== 0;
  }

  /** True for the all-zero id. */
  get isEmpty(): boolean {
    return this.localId === 0n && this.hint === 0 && this.nodeWord === 0;
  }

  /** Bytewise equality over all 16 bytes. */
  equals(other: ActorId): boolean {
    return this.localId === other.localId && this.hint === other.hint &&
      this.nodeWord === other.nodeWord;
  }

  /** `ToString`: `[NodeId():LocalId:Hint]`, with the masked 20-bit node id. */
  toString(): string {
    return `[${this.nodeId}:${this.localId}:${this.hint}]`;
  }

  /**
   * `TActorId::Parse` with its exact semantics (spec 2.1): returns the id as far as it was
   * filled, and whether every part converted. The node part goes into the raw node word, so
   * pool or service bits written in decimal survive. Conversions stop at the first failure,
   * leaving the earlier fields set and the later ones zero. The handshake ignores `ok`.
   */
  static parse(text: string): { id: ActorId; ok: boolean } {
    if (text.length < 4 || text[0] !== "[" || text[text.length - 1] !== "]") {
      return { id: ActorId.EMPTY, ok: false };
    }
    const c1 = text.indexOf(":", 1);
    if (c1 < 0) return { id: ActorId.EMPTY, ok: false };
    const c2 = text.indexOf(":", c1 + 1);
    if (c2 < 0) return { id: ActorId.EMPTY, ok: false };
    const nodeWord = parseUnsignedDecimal(text.slice(1, c1), BigInt(U32_MAX));
    if (nodeWord === undefined) return { id: ActorId.EMPTY, ok: false };
    const localId = parseUnsignedDecimal(text.slice(c1 + 1, c2), U64_MAX);
    if (localId === undefined) return { id: new ActorId(0n, 0, Number(nodeWord)), ok: false };
    const hint = parseUnsignedDecimal(text.slice(c2 + 1, text.length - 1), BigInt(U32_MAX));
    if (hint === undefined) return { id: new ActorId(localId, 0, Number(nodeWord)), ok: false };
    return { id: new ActorId(localId, Number(hint), Number(nodeWord)), ok: true };
  }
}

function checkNodeId(nodeId: number): void {
  if (!Number.isInteger(nodeId) || nodeId < 0 || nodeId > MAX_NODE_ID) {
    throw new WireError("bad_argument", `node id# ${nodeId} is outside 0..${MAX_NODE_ID}`);
  }
}

/**
 * util's `TryFromString` for an unsigned integer: an optional single leading `+` (not alone),
 * then one or more ASCII digits, no sign `-`, no whitespace, no overflow past `max`.
 */
function parseUnsignedDecimal(s: string, max: bigint): bigint | undefined {
  let start = 0;
  if (s[0] === "+") start = 1;
  if (s.length === start) return undefined;
  let value = 0n;
  for (let i = start; i < s.length; i++) {
    const d = s.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return undefined;
    value = value * 10n + BigInt(d);
    if (value > max) return undefined;
  }
  return value;
}
