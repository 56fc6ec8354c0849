/**
 * The initial packet (spec 2.2): exactly 52 bytes, little-endian. Self and Peer virtual ids,
 * NextPacket, Version, then a CRC32C over the first 48 bytes. No length prefix, no magic.
 * @module
 */
import { ACTOR_ID_SIZE, ActorId } from "./actor_id.ts";
import { crc32c } from "./crc32c.ts";
import { needBytes, WireError } from "./errors.ts";

/** Size of an initial packet on the wire. */
export const INITIAL_PACKET_SIZE = 52;
/** Bytes covered by the checksum: everything before it. */
export const INITIAL_PACKET_HEADER_SIZE = 48;
/** INTERCONNECT_PROTOCOL_VERSION of the early-2022 revision. */
export const INTERCONNECT_PROTOCOL_VERSION = 2n;
const U64_MAX = (1n << 64n) - 1n;

/** The fields of an initial packet. */
export interface InitialPacket {
  /** The sender's side of the session. */
  readonly selfVirtualId: ActorId;
  /** What the sender believes the receiver's id is; empty means new session or reject. */
  readonly peerVirtualId: ActorId;
  /** Serial of the last data packet the sender received from the receiver; 0 for a new session. */
  readonly nextPacket: bigint;
  /** Protocol version; 2 for everything this module sends. */
  readonly version: bigint;
}

/** A decoded initial packet, with the checksum as received and as computed. */
export interface DecodedInitialPacket extends InitialPacket {
  /** The checksum field as read from bytes 48..51. */
  readonly checksum: number;
  /** CRC32C of bytes 0..47 as received. */
  readonly computedChecksum: number;
}

/** Result of {@link verifyInitialPacket}, in YDB's check order: CRC first, then version. */
export type InitialPacketVerdict =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: "crc"; readonly explanation: string }
  | { readonly ok: false; readonly reason: "version"; readonly explanation: string };

/** Encodes the 52 bytes; `version` defaults to 2. */
export function encodeInitialPacket(
  packet: Omit<InitialPacket, "version"> & { version?: bigint },
): Uint8Array {
  const version = packet.version ?? INTERCONNECT_PROTOCOL_VERSION;
  if (packet.nextPacket < 0n || packet.nextPacket > U64_MAX) {
    throw new WireError("bad_argument", `NextPacket# ${packet.nextPacket} is not a u64`);
  }
  if (version < 0n || version > U64_MAX) {
    throw new WireError("bad_argument", `Version# ${version} is not a u64`);
  }
  const out = new Uint8Array(INITIAL_PACKET_SIZE);
  const view = new DataView(out.buffer);
  packet.selfVirtualId.encodeInto(out, 0);
  packet.peerVirtualId.encodeInto(out, ACTOR_ID_SIZE);
  view.setBigUint64(32, packet.nextPacket, true);
  view.setBigUint64(40, version, true);
  view.setUint32(48, crc32c(out.subarray(0, INITIAL_PACKET_HEADER_SIZE)), true);
  return out;
}

/**
 * Decodes 52 bytes without judging them: see {@link verifyInitialPacket}. Throws
 * {@link WireError} `truncated` when fewer than 52 bytes are given; extra bytes are ignored.
 */
export function decodeInitialPacket(bytes: Uint8Array): DecodedInitialPacket {
  needBytes("initial packet", bytes.length, INITIAL_PACKET_SIZE);
  const view = new DataView(bytes.buffer, bytes.byteOffset, INITIAL_PACKET_SIZE);
  return {
    selfVirtualId: ActorId.decode(bytes, 0),
    peerVirtualId: ActorId.decode(bytes, ACTOR_ID_SIZE),
    nextPacket: view.getBigUint64(32, true),
    version: view.getBigUint64(40, true),
    checksum: view.getUint32(48, true),
    computedChecksum: crc32c(bytes.subarray(0, INITIAL_PACKET_HEADER_SIZE)),
  };
}

/**
 * The receiver's checks in order: a checksum mismatch is "Initial packet CRC error"
 * (TRANSIENT), then a version other than 2 is "Incompatible protocol N" (PERMANENT).
 */
export function verifyInitialPacket(packet: DecodedInitialPacket): InitialPacketVerdict {
  if (packet.checksum !== packet.computedChecksum) {
    return { ok: false, reason: "crc", explanation: "Initial packet CRC error" };
  }
  if (packet.version !== INTERCONNECT_PROTOCOL_VERSION) {
    return { ok: false, reason: "version", explanation: `Incompatible protocol ${packet.version}` };
  }
  return { ok: true };
}
