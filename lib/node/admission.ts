/**
 * Admission of accepted connections, in the coordinator, before a handshake takes a place in
 * the queue. The 52-byte initial packet is read straight off the socket into a 52-byte buffer
 * (no stream, nothing larger is allocated), judged as the incoming handshake judges it (spec
 * 4.2 I2-I4, same classes and explanations), and the sender's node id is looked up in the
 * nameservice. Only a connection that passes is queued; its packet is handed back to the
 * handshake through the connection's reader, so the handshake sees the stream unchanged.
 *
 * A sender the nameservice does not know (I14) is answered at once, without a worker and
 * without a queue place: a new-session request gets the all-zero initial packet and the error
 * reply "Peer node not registered in nameservice" (PERMANENT), a continuation gets the all-zero
 * packet (Nak, silent, as I5). Deviation: YDB reads the request first and runs I7-I13 before
 * I14, so a peer outside the node table may hear this explanation where YDB would name an
 * earlier check. A Self that is a service id (the cookie-check sub-connection) is not looked
 * up: the cookie check is answered before I14 in YDB too.
 *
 * Everything here ends by the handshake's deadline, counted from the accept.
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { ActorId } from "../wire/actor_id.ts";
import { encodeExBlock, EXBLOCK_HEADER_SIZE, EXBLOCK_MAX_SIZE } from "../wire/exblock.ts";
import {
  type DecodedInitialPacket,
  decodeInitialPacket,
  encodeInitialPacket,
  INITIAL_PACKET_SIZE,
  verifyInitialPacket,
} from "../wire/initial_packet.ts";
import { encodeHandshakeReply } from "../wire/messages.ts";
import {
  type FailureClass,
  formatFailureMessage,
  type HandshakeFailure,
} from "../handshake/failure.ts";
import type { NodeInfo } from "../handshake/types.ts";

/** The explanation of I14, sent to the peer and reported locally. */
export const NOT_REGISTERED = "Peer node not registered in nameservice";
/** The state an admission failure names: the incoming handshake's first read. */
const STATE = "ReceiveRequest";
/** At most this much is read and dropped while waiting for the peer to close after a reply. */
const LINGER_MAX_BYTES = INITIAL_PACKET_SIZE + EXBLOCK_HEADER_SIZE + EXBLOCK_MAX_SIZE;
const LINGER_CHUNK = 4096;

const log = getLogger(["ic-handshake", "handshake"]);

/** The verdict on an accepted connection. */
export type Admission =
  /** Queue it: `bytes` are the 52 bytes read, to put back in front of the connection's reader. */
  | {
    readonly kind: "admitted";
    readonly bytes: Uint8Array;
    readonly packet: DecodedInitialPacket;
  }
  /** A failure to report; `reply` (if any) is sent before the connection closes. */
  | {
    readonly kind: "rejected";
    readonly peerNodeId: number;
    readonly failure: HandshakeFailure;
    readonly reply?: Uint8Array;
  }
  /** Ends without a report (continuation Nak); `reply` is sent before the connection closes. */
  | { readonly kind: "silent"; readonly peerNodeId: number; readonly reply?: Uint8Array }
  /** The connection was closed under admission (the node is closing). */
  | { readonly kind: "closed" };

/** What admission needs from the node. */
export interface AdmissionContext {
  /** The handshake's deadline, a `performance.now()` time. */
  readonly deadlineAt: number;
  /** The nameservice's record of a node. */
  nodeInfo(nodeId: number): Promise<NodeInfo | undefined>;
  /** True once the node is closing: a read error then is no failure. */
  closing(): boolean;
}

/** A Deno connection as admission uses it. */
export type RawConn = Pick<Deno.TcpConn, "read" | "write" | "close" | "closeWrite">;

/** The text form of a remote address, as the handshake reports it. */
export function addressLabel(addr: Deno.NetAddr): string {
  return addr.hostname.includes(":")
    ? `[${addr.hostname}]:${addr.port}`
    : `${addr.hostname}:${addr.port}`;
}

function closeQuietly(conn: RawConn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

/** Calls `onExpiry` once the deadline passes; returns the cancel function. */
function atDeadline(deadlineAt: number, onExpiry: () => void): () => void {
  const timer = setTimeout(onExpiry, Math.max(0, deadlineAt - performance.now()));
  return () => clearTimeout(timer);
}

function failure(
  cls: FailureClass,
  explanation: string,
  peerAddress: string,
  network = false,
  errorReplySent = false,
): HandshakeFailure {
  return {
    class: cls,
    explanation,
    message: formatFailureMessage("incoming handshake", undefined, peerAddress, false, explanation),
    network,
    errorReplySent,
  };
}

function reject(
  peerNodeId: number,
  f: HandshakeFailure,
  reply?: Uint8Array,
): Admission {
  const text = f.network
    ? `network-related error occured on handshake: ${f.message}`
    : `ICH03 handshake failed, explanation# ${f.message}`;
  log.info("Handshake [node {peerNodeId}] {text}", { peerNodeId, text, failure: f.class });
  return { kind: "rejected", peerNodeId, failure: f, reply };
}

/**
 * Reads and judges the initial packet of a freshly accepted connection. Never rejects. On
 * any verdict but `admitted` the caller finishes the connection with {@link dismiss}.
 */
export async function admit(
  conn: RawConn,
  peerAddress: string,
  ctx: AdmissionContext,
): Promise<Admission> {
  const bytes = new Uint8Array(INITIAL_PACKET_SIZE);
  let got = 0;
  let expired = false;
  const cancel = atDeadline(ctx.deadlineAt, () => {
    expired = true;
    closeQuietly(conn); // ends the pending read
  });
  try {
    while (got < INITIAL_PACKET_SIZE) {
      let n: number | null;
      try {
        n = await conn.read(bytes.subarray(got));
      } catch (e) {
        if (expired) {
          return reject(
            0,
            failure("transient", `Handshake timed out, State# ${STATE}`, peerAddress, true),
          );
        }
        if (ctx.closing()) return { kind: "closed" };
        const text = e instanceof Error ? e.message : String(e);
        return reject(
          0,
          failure(
            "transient",
            `Socket error# ${text} state# ${STATE} processed# ${got} remain# ${
              INITIAL_PACKET_SIZE - got
            }`,
            peerAddress,
            true,
          ),
        );
      }
      if (n === null) {
        return reject(
          0,
          failure(
            "transient",
            `Socket error# connection unexpectedly closed state# ${STATE} processed# ${got} remain# ${
              INITIAL_PACKET_SIZE - got
            }`,
            peerAddress,
            true,
          ),
        );
      }
      got += n;
    }
  } finally {
    cancel();
  }
  const packet = decodeInitialPacket(bytes);
  const verdict = verifyInitialPacket(packet);
  if (!verdict.ok) {
    return reject(
      0,
      failure(
        verdict.reason === "crc" ? "transient" : "permanent",
        verdict.explanation,
        peerAddress,
      ),
    );
  }
  const self = packet.selfVirtualId;
  if (self.nodeId === 0) {
    return reject(
      0,
      failure("permanent", "SelfVirtualId.NodeId is empty in initial packet", peerAddress),
    );
  }
  if (!self.isService) {
    let info: NodeInfo | undefined;
    try {
      info = await ctx.nodeInfo(self.nodeId);
    } catch {
      info = undefined;
    }
    if (ctx.closing()) return { kind: "closed" };
    if (!info) {
      const zero = encodeInitialPacket({
        selfVirtualId: ActorId.EMPTY,
        peerVirtualId: ActorId.EMPTY,
        nextPacket: 0n,
      });
      if (!packet.peerVirtualId.isEmpty) {
        log.info("Handshake [node {peerNodeId}] ICH08 continuation request rejected (Nak)", {
          peerNodeId: self.nodeId,
        });
        return { kind: "silent", peerNodeId: self.nodeId, reply: zero };
      }
      const reply = encodeExBlock(encodeHandshakeReply({ ErrorExplaination: NOT_REGISTERED }));
      const both = new Uint8Array(zero.length + reply.length);
      both.set(zero);
      both.set(reply, zero.length);
      return reject(
        self.nodeId,
        failure("permanent", NOT_REGISTERED, peerAddress, false, true),
        both,
      );
    }
  }
  return { kind: "admitted", bytes, packet };
}

/**
 * Finishes a connection that was not admitted: sends `reply` if any, then, so that the reply
 * is not lost to a reset, half-closes and drops what the peer still sends until it closes
 * (at most one request's worth), and closes. Everything ends by `deadlineAt`. Never rejects.
 */
export async function dismiss(
  conn: RawConn,
  reply: Uint8Array | undefined,
  deadlineAt: number,
): Promise<void> {
  if (!reply) {
    closeQuietly(conn);
    return;
  }
  const cancel = atDeadline(deadlineAt, () => closeQuietly(conn));
  try {
    let sent = 0;
    while (sent < reply.length) sent += await conn.write(reply.subarray(sent));
    await conn.closeWrite();
    const scratch = new Uint8Array(LINGER_CHUNK);
    let dropped = 0;
    while (dropped <= LINGER_MAX_BYTES) {
      const n = await conn.read(scratch);
      if (n === null) break;
      dropped += n;
    }
  } catch {
    // Reset, closed at the deadline, or by the node: nothing more to do.
  } finally {
    cancel();
    closeQuietly(conn);
  }
}
