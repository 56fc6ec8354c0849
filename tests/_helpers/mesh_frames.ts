/**
 * The frames of the mesh test's data streams (see mesh_node.ts): `type u8, seq u32, length u32,
 * payload`. Message contents follow from (sender, receiver, seq), so a receiver can check them
 * and the test can count bytes without keeping them.
 * @module
 */

/** Message `seq`: DATA frame. */
export const DATA = 1;
/** Highest message received in order: ACK frame (also the heartbeat). */
export const ACK = 2;
/** First frame on every connection: ACK plus the sender's view of the virtual ids. */
export const HELLO = 3;
/** Frame header length. */
export const HEADER = 9;

/** One frame. */
export function frame(type: number, seq: number, payload?: Uint8Array): Uint8Array {
  const len = payload?.length ?? 0;
  const b = new Uint8Array(HEADER + len);
  const v = new DataView(b.buffer);
  v.setUint8(0, type);
  v.setUint32(1, seq);
  v.setUint32(5, len);
  if (payload) b.set(payload, HEADER);
  return b;
}

/** The length of message `seq` from node `from` to node `to`: 8..1507 bytes. */
export function payloadLength(from: number, to: number, seq: number): number {
  return 8 + ((seq * 7919 + from * 31 + to) % 1500);
}

/** The contents of message `seq` from node `from` to node `to`. */
export function payloadOf(from: number, to: number, seq: number): Uint8Array {
  const len = payloadLength(from, to, seq);
  const b = new Uint8Array(len);
  const v = new DataView(b.buffer);
  v.setUint16(0, from);
  v.setUint16(2, to);
  v.setUint32(4, seq);
  for (let i = 8; i < len; i++) b[i] = (seq + i * 31 + from * 7) & 0xff;
  return b;
}

/** Bytes of messages 1..n from `from` to `to`. */
export function bytesUpTo(from: number, to: number, n: number): number {
  let total = 0;
  for (let seq = 1; seq <= n; seq++) total += payloadLength(from, to, seq);
  return total;
}
