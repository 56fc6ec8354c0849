/**
 * The wire core: pure, synchronous codecs for the interconnect handshake bytes.
 * @module
 */
export * from "./errors.ts";
export * from "./crc32c.ts";
export * from "./actor_id.ts";
export * from "./initial_packet.ts";
export * from "./exblock.ts";
export * from "./messages.ts";
