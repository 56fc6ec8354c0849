/**
 * What a handshake procedure needs from the outside, as two small interfaces: a byte
 * transport and the environment (YDB's proxy and nameservice). The same procedures run in a
 * worker (messages to the coordinator), over an in-memory pipe, and against a scripted peer.
 * @module
 */
import type { ActorId } from "../wire/actor_id.ts";
import type { HandshakeRequest } from "../wire/messages.ts";
import type { HandshakeFailure } from "./failure.ts";

/** Encryption policy (YDB's EEncryptionMode). */
export type EncryptionMode = "disabled" | "optional" | "required";

/** TLS role: the node with the lower node id is the TLS server, whoever dialed (spec 5.2). */
export type TlsRole = "server" | "client";

/** Node-wide settings (YDB's TInterconnectProxyCommon and its Settings). */
export interface HandshakeSettings {
  /** Own node id, 1..1048575. */
  readonly selfNodeId: number;
  /** TechnicalSelfHostName: own `Host` in the node table. */
  readonly selfHostName: string;
  /** Own process id, sent as ProgramPID. */
  readonly programPid: bigint;
  /** Own start marker, sent as ProgramStartTime (identity together with the PID). */
  readonly programStartTime: bigint;
  /** Own ClusterUUID ("" when none). */
  readonly clusterUUID: string;
  /** AcceptUUID list; empty accepts any peer. */
  readonly acceptUUID: readonly string[];
  /** Own version tag; version-tag checks are on only when this is set. */
  readonly versionTag?: string;
  /** Tags this node accepts (sent in sorted order, as a C++ set iterates). */
  readonly acceptedVersionTags: readonly string[];
  /** Own cookie; non-empty means: send it, answer cookie checks with it. */
  readonly cookie: string;
  /** Own scope id; (0,0) is never sent. */
  readonly scopeId: readonly [bigint, bigint];
  /** Encryption policy. */
  readonly encryption: EncryptionMode;
  /** TlsAuthOnly: TLS authenticates, then plain TCP continues. */
  readonly tlsAuthOnly: boolean;
  /** Bytes of Ballast in a new-session request (byte i = i mod 256); 0 sends none. */
  readonly ballastSize: number;
  /** Handshake timeout; the overall deadline is this plus 2 x the 1 s resolve wait. */
  readonly handshakeTimeoutMs: number;
}

/** Negotiated session parameters (early TSessionParams). */
export interface SessionParams {
  /** TLS stays on for the session. False after an AuthOnly TLS exchange. */
  readonly encryption: boolean;
  /** The session uses the modern (v2) data frame header. */
  readonly useModernFrame: boolean;
  /** TLS authenticated the peer, then the session went on in plain TCP. */
  readonly authOnly: boolean;
  /** Peer certificate CN after TLS; "" otherwise. */
  readonly authCN: string;
  /** Peer scope id, (0,0) when the peer sent none. */
  readonly peerScopeId: readonly [bigint, bigint];
}

/** TProgramInfo of the peer (null on continuation). */
export interface ProgramInfo {
  /** The peer's process id (ProgramPID). */
  readonly pid: bigint;
  /** The peer's start marker (ProgramStartTime); with the PID, the peer's identity. */
  readonly startTime: bigint;
  /** Serial of the request or Success: the LocalId of the sender's virtual id. */
  readonly serial: bigint;
}

/** A byte transport: one TCP connection as the handshake sees it. */
export interface HandshakeTransport {
  /** Resolves with exactly `n` bytes; rejects (any error) on EOF or a socket error. */
  readExactly(n: number): Promise<Uint8Array>;
  /** Writes all bytes; rejects on a socket error. */
  write(bytes: Uint8Array): Promise<void>;
  /**
   * Runs TLS on this connection in `role`. With `authOnly`, TLS authenticates and is torn
   * down again (close_notify both ways), leaving plain TCP. Resolves with the peer's
   * certificate CN; rejects with an error whose message is the TLS explanation.
   */
  startTls(role: TlsRole, authOnly: boolean): Promise<{ authCN: string }>;
  /** Closes the connection; pending reads and writes reject. Idempotent. */
  close(): void;
  /** The peer's address as text, for log lines and failure messages. */
  readonly peerAddress?: string;
  /**
   * Optional: `write(bytes)`, then `readExactly(n)`, as one step. A transport whose every
   * operation is a message (a worker's view of a coordinator socket) saves a round trip of
   * messages with it. Rejects with {@link TransportStepError} naming the step that failed.
   */
  writeThenRead?(bytes: Uint8Array, n: number): Promise<Uint8Array>;
  /**
   * Optional, with {@link HandshakeTransport.unread}: removes and returns the bytes already
   * read from the socket and not yet handed out (possibly none), without reading more.
   */
  takeBuffered?(): Uint8Array;
  /** Optional: puts bytes back in front; the next read returns them first. */
  unread?(bytes: Uint8Array): void;
}

/** Which step of {@link HandshakeTransport.writeThenRead} failed, and why. */
export class TransportStepError extends Error {
  override name = "TransportStepError";
  /** `step` failed with `cause` (the error the plain write or read would have thrown). */
  constructor(readonly step: "write" | "read", override readonly cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause));
  }
}

/** TEvNodeInfo's node record (spec 7). */
export interface NodeInfo {
  /** The node's id. */
  readonly nodeId: number;
  /** Technical host name used in the handshake. */
  readonly host: string;
  /** Literal address, if configured: no DNS then. */
  readonly address?: string;
  /** Name to resolve when there is no literal address (defaults to `host`). */
  readonly resolveHost?: string;
  /** Interconnect port. */
  readonly port: number;
}

/** Where to connect. */
export interface ResolvedAddress {
  /** IP address (v4 or v6) as text. */
  readonly address: string;
  /** TCP port. */
  readonly port: number;
}

/** TEvHandshakeAsk: a continuation request seen by the incoming side. */
export interface ContinuationAsk {
  /** The peer's SelfVirtualId from its initial packet. */
  readonly self: ActorId;
  /** The packet's PeerVirtualId: what the peer believes our session id is. */
  readonly peer: ActorId;
  /** The packet's NextPacket (logged only). */
  readonly counter: bigint;
}

/** The proxy's answer to a continuation request (Ack, Nak, or PoisonPill). */
export type ContinuationDecision =
  | {
    readonly kind: "ack";
    /** Our SessionVirtualId. */
    readonly self: ActorId;
    /** Our last processed input serial. */
    readonly nextPacket: bigint;
    /** The session's params. */
    readonly params: SessionParams;
  }
  | { readonly kind: "nak" }
  | { readonly kind: "poison"; readonly reason: string };

/** The proxy's answer to a new-session request (ReplyOK / ReplyError / PoisonPill). */
export type NewSessionDecision =
  | {
    readonly kind: "ok";
    /** Fresh virtual id of this side (Success.SenderActorId and Serial come from it). */
    readonly selfVirtualId: ActorId;
  }
  | { readonly kind: "error"; readonly explanation: string }
  | { readonly kind: "poison"; readonly reason: string };

/** What the handshake asks of its proxy and nameservice. */
export interface HandshakeEnvironment {
  /**
   * TEvResolveNode: the peer's address, or undefined when the nameservice has none (unknown
   * node). Rejects with an error whose message is the resolver's explanation. May take long:
   * the handshake waits 1 s, then falls back to the static address of {@link nodeInfo}.
   */
  resolve(nodeId: number, signal: AbortSignal): Promise<ResolvedAddress | undefined>;
  /** TEvGetNode: the node record, or undefined for an unknown node. */
  nodeInfo(nodeId: number): Promise<NodeInfo | undefined>;
  /** Opens a TCP connection (TCP_NODELAY). Rejects with the system's error text. */
  connect(address: ResolvedAddress, signal: AbortSignal): Promise<HandshakeTransport>;
  /** TEvHandshakeAsk → Ack / Nak. */
  continuation(ask: ContinuationAsk): Promise<ContinuationDecision>;
  /** TEvHandshakeRequest → ReplyOK / ReplyError / poison. May be held (tie-break). */
  newSession(peerNodeId: number, request: HandshakeRequest): Promise<NewSessionDecision>;
}

/** TEvHandshakeDone's contents (spec 6.7), minus the socket, which the caller holds. */
export interface HandshakeDone {
  readonly peerNodeId: number;
  readonly selfVirtualId: ActorId;
  readonly peerVirtualId: ActorId;
  /** The peer's NextPacket from its initial packet. */
  readonly nextPacketFromPeer: bigint;
  /** Null on continuation. */
  readonly programInfo: ProgramInfo | null;
  readonly params: SessionParams;
  /** The peer's host name as reported (incoming) or as known (outgoing). */
  readonly peerHostName: string;
}

/** How a handshake procedure ended. */
export type HandshakeOutcome =
  | { readonly kind: "done"; readonly done: HandshakeDone; readonly transport: HandshakeTransport }
  | {
    readonly kind: "failed";
    /** 0 when the peer's node id is unknown (I4, or before the initial packet). */
    readonly peerNodeId: number;
    readonly failure: HandshakeFailure;
  }
  | {
    /** Ended without reporting to the proxy: Nak, cookie-check answer, ReplyError, poison. */
    readonly kind: "silent";
    readonly peerNodeId: number;
    readonly reason: string;
  };

/** Parameters of one outgoing handshake (what the proxy gives the handshake actor). */
export interface OutgoingParams {
  readonly peerNodeId: number;
  /** The peer's `Host` from our nameservice; sent as ReceiverHostName. */
  readonly peerHostName: string;
  /** Our virtual id: fresh for a new session, the SessionVirtualId for a continuation. */
  readonly selfVirtualId: ActorId;
  /** Empty for a new session; the RemoteSessionVirtualId for a continuation. */
  readonly peerVirtualId: ActorId;
  /** Our last processed input serial (0 for a new session). */
  readonly nextPacket: bigint;
  /** Continuation only: the session's params. */
  readonly sessionParams?: SessionParams;
}

/** The empty scope. */
export const EMPTY_SCOPE: readonly [bigint, bigint] = [0n, 0n];
