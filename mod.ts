/**
 * ic-handshake: YDB's actor-system interconnect handshake (protocol version 2, early-2022
 * revision) for Deno. A node listens and dials, runs each handshake in a pooled Web Worker,
 * applies YDB's checks (cookie connect-back, ClusterUUID, version tags, host names, encryption
 * negotiation, mutual TLS with the role fixed by node id, AuthOnly, scope ids), keeps one
 * session per peer and resumes it by continuation.
 *
 * @example Two nodes on loopback
 * ```ts
 * import { InterconnectNode } from "@ic/handshake";
 *
 * const nodes = [
 *   { nodeId: 1, host: "node-1", port: 19101, address: "127.0.0.1" },
 *   { nodeId: 2, host: "node-2", port: 19102, address: "127.0.0.1" },
 * ];
 * await using a = InterconnectNode.start({ nodeId: 1, listen: { host: "127.0.0.1", port: 19101 }, nodes });
 * await using b = InterconnectNode.start({ nodeId: 2, listen: { host: "127.0.0.1", port: 19102 }, nodes });
 * b.onSession((s) => console.log(`node 2 accepted ${s.peerVirtualId}`));
 * const session = await a.connect(2);
 * console.log(session.selfVirtualId.toString(), session.params.useModernFrame);
 * const writer = session.writable.getWriter();
 * await writer.write(new TextEncoder().encode("hello"));
 * writer.releaseLock();
 * ```
 * @module
 */
export {
  type DirectionCounts,
  HandshakeError,
  type HandshakeEvent,
  type HandshakeLoad,
  InterconnectNode,
  type NodeOptions,
  type Session,
} from "./lib/node/node.ts";
export {
  ConfigError,
  type NodeConfig,
  type NodeEntry,
  type TlsConfig,
  validateConfig,
} from "./lib/node/config.ts";
export {
  denoDnsLookup,
  type DnsLookup,
  type Nameservice,
  StaticNameservice,
} from "./lib/node/nameservice.ts";
export type {
  EncryptionMode,
  NodeInfo,
  ProgramInfo,
  ResolvedAddress,
  SessionParams,
} from "./lib/handshake/types.ts";
export type { BackoffOptions } from "./lib/proxy/backoff.ts";
export { TlsError, type TlsErrorCode } from "./lib/tls/errors.ts";
export { ACTOR_ID_SIZE, ActorId, MAX_NODE_ID, MAX_POOL_ID } from "./lib/wire/actor_id.ts";
export {
  type DecodedInitialPacket,
  decodeInitialPacket,
  encodeInitialPacket,
  INITIAL_PACKET_SIZE,
  type InitialPacket,
  type InitialPacketVerdict,
  INTERCONNECT_PROTOCOL_VERSION,
  verifyInitialPacket,
} from "./lib/wire/initial_packet.ts";
export {
  decodeExBlock,
  decodeExBlockHeader,
  encodeExBlock,
  EXBLOCK_HEADER_SIZE,
  EXBLOCK_MAX_SIZE,
  type ExBlockHeader,
} from "./lib/wire/exblock.ts";
export { WireError, type WireErrorCode } from "./lib/wire/errors.ts";
export { crc32c, crc32cExtend } from "./lib/wire/crc32c.ts";
