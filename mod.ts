/**
 * ic-handshake: YDB's actor-system interconnect handshake (protocol version 2) for Deno.
 *
 * This entry point exports the wire core: actor ids, the 52-byte initial packet, ExBlock
 * framing, the proto2 handshake messages and CRC32C. All of it is pure and synchronous.
 *
 * @example Encode and check a new-session initial packet
 * ```ts
 * import { ActorId, decodeInitialPacket, encodeInitialPacket, verifyInitialPacket } from "@ic/handshake";
 *
 * const self = ActorId.plain(1, 7061644215716937729n);
 * const bytes = encodeInitialPacket({ selfVirtualId: self, peerVirtualId: ActorId.EMPTY, nextPacket: 0n });
 * const packet = decodeInitialPacket(bytes);
 * console.log(bytes.length, verifyInitialPacket(packet).ok, packet.selfVirtualId.toString());
 * // 52 true [1:7061644215716937729:0]
 * ```
 * @module
 */
export * from "./lib/wire/mod.ts";
