/**
 * The messages between the coordinator (main isolate) and a handshake worker, shared by both
 * sides. Everything here is structured-cloneable: an {@link ActorId} travels as its three
 * fields and is rebuilt on arrival, byte buffers are transferred rather than copied, errors
 * travel as {@link ErrorInfo}.
 *
 * One exchange, from the worker's point of view:
 * ```
 * worker  → ready                       (module loaded, LogTape configured)
 * coord   → start {job, kind, ...}
 * worker  → call {job, id, op, args}    (read, write, writeRead, startTls, resolve, ...)
 * coord   → reply {job, id, op, ...}    (one per call, unless the job ended first)
 * worker  → cancel {job, id}            (the procedure aborted a resolve or connect)
 * worker  → close {job, conn}           (the procedure closed a connection)
 * worker  → log {job, record}           (any time)
 * worker  → outcome {job, outcome}      (last message of the job)
 * ```
 *
 * Every message is a hop between threads, the main cost of a handshake in a worker (about
 * 40 us a round trip on an idle 2-core machine, more under load), so the exchange is kept
 * short: an incoming job's `start` carries the bytes already buffered (the initial packet),
 * a `read` answer carries whatever else the connection had buffered (an ExBlock's header and
 * payload in one answer), and `writeRead` sends a message and reads the answer in one call.
 * The worker keeps read-ahead bytes it has not used yet and hands them back with `startTls`
 * or its `outcome`, so the coordinator's reader still sees the stream in order.
 * @module
 */
import type { LogLevel } from "@logtape/logtape";
import { UnexpectedEofError } from "../io/buffered_reader.ts";
import type { HandshakeFailure } from "../handshake/failure.ts";
import type {
  ContinuationAsk,
  ContinuationDecision,
  HandshakeDone,
  HandshakeSettings,
  NewSessionDecision,
  NodeInfo,
  OutgoingParams,
  ResolvedAddress,
  TlsRole,
} from "../handshake/types.ts";
import { ActorId } from "../wire/actor_id.ts";
import type { HandshakeRequest } from "../wire/messages.ts";

// -----------------------------------------------------------------------------------------
// Values

/** An {@link ActorId} as its three raw words (bigint is structured-cloneable). */
export interface ActorIdFields {
  readonly localId: bigint;
  readonly hint: number;
  readonly nodeWord: number;
}

/** {@link OutgoingParams} with its ids as fields. */
export type WireOutgoingParams =
  & Omit<OutgoingParams, "selfVirtualId" | "peerVirtualId">
  & { readonly selfVirtualId: ActorIdFields; readonly peerVirtualId: ActorIdFields };

/** {@link ContinuationAsk} with its ids as fields. */
export interface WireContinuationAsk {
  readonly self: ActorIdFields;
  readonly peer: ActorIdFields;
  readonly counter: bigint;
}

/** {@link ContinuationDecision} with its id as fields. */
export type WireContinuationDecision =
  | (Omit<Extract<ContinuationDecision, { kind: "ack" }>, "self"> & {
    readonly self: ActorIdFields;
  })
  | Exclude<ContinuationDecision, { kind: "ack" }>;

/** {@link NewSessionDecision} with its id as fields. */
export type WireNewSessionDecision =
  | { readonly kind: "ok"; readonly selfVirtualId: ActorIdFields }
  | Exclude<NewSessionDecision, { kind: "ok" }>;

/** {@link HandshakeDone} with its ids as fields. */
export type WireHandshakeDone =
  & Omit<HandshakeDone, "selfVirtualId" | "peerVirtualId">
  & { readonly selfVirtualId: ActorIdFields; readonly peerVirtualId: ActorIdFields };

/**
 * How the procedure in the worker ended; `conn` names the connection the session lives on and
 * `unread` holds the bytes the worker read ahead on it and did not use (they go back in front
 * of the connection's reader).
 */
export type WireOutcome =
  | {
    readonly kind: "done";
    readonly done: WireHandshakeDone;
    readonly conn: number;
    readonly unread?: Uint8Array;
  }
  | { readonly kind: "failed"; readonly peerNodeId: number; readonly failure: HandshakeFailure }
  | { readonly kind: "silent"; readonly peerNodeId: number; readonly reason: string };

/** An error as it crosses the boundary. `processed`/`remain` keep an EOF's counters. */
export interface ErrorInfo {
  readonly name: string;
  readonly message: string;
  readonly processed?: number;
  readonly remain?: number;
}

/** A LogTape record reduced to cloneable parts. */
export interface WireLogRecord {
  readonly category: readonly string[];
  readonly level: LogLevel;
  /** Template parts and values interleaved, as in LogTape's `LogRecord.message`. */
  readonly message: readonly unknown[];
  readonly rawMessage: string;
  readonly timestamp: number;
  readonly properties: Record<string, unknown>;
}

/**
 * Test-only faults a job can ask the worker for: `throw` throws from the message handler,
 * `reject` leaves an unhandled rejection; both surface as the worker's `error` event.
 */
export type WorkerFault = "throw" | "reject";

// -----------------------------------------------------------------------------------------
// Calls: what the worker asks of the coordinator, and what each returns

/** Every call, its arguments and its result. The single source of the call vocabulary. */
export interface CallMap {
  /**
   * `readExactly(n)` on a connection, followed by whatever the connection has already buffered
   * behind those bytes (read-ahead: the worker keeps the surplus and hands it back with
   * `startTls` or its outcome, so nothing is lost or reordered).
   */
  read: { args: { readonly conn: number; readonly n: number }; result: Uint8Array };
  /** `write(bytes)` on a connection; the bytes' buffer is transferred. */
  write: { args: { readonly conn: number; readonly bytes: Uint8Array }; result: null };
  /**
   * `write(bytes)`, then `read` as above, in one round trip. A failure of either step is a
   * result, not an error, so that the worker knows which step failed.
   */
  writeRead: {
    args: { readonly conn: number; readonly bytes: Uint8Array; readonly n: number };
    result: WriteReadResult;
  };
  /**
   * `startTls(role, authOnly)` on a connection, run by the coordinator's transport; `unread`
   * is the worker's read-ahead surplus, put back in front of the connection's reader first.
   */
  startTls: {
    args: {
      readonly conn: number;
      readonly role: TlsRole;
      readonly authOnly: boolean;
      readonly unread?: Uint8Array;
    };
    result: { readonly authCN: string };
  };
  /** `env.resolve(nodeId)`; cancellable. */
  resolve: { args: { readonly nodeId: number }; result: ResolvedAddress | undefined };
  /** `env.nodeInfo(nodeId)`. */
  nodeInfo: { args: { readonly nodeId: number }; result: NodeInfo | undefined };
  /** `env.connect(address)`: the coordinator dials and registers a new connection. */
  connect: {
    args: { readonly address: ResolvedAddress };
    result: { readonly conn: number; readonly peerAddress?: string };
  };
  /** `env.continuation(ask)`. */
  continuation: { args: WireContinuationAsk; result: WireContinuationDecision };
  /** `env.newSession(peerNodeId, request)`. */
  newSession: {
    args: { readonly peerNodeId: number; readonly request: HandshakeRequest };
    result: WireNewSessionDecision;
  };
}

/** The result of a `writeRead` call. */
export type WriteReadResult =
  | { readonly ok: true; readonly bytes: Uint8Array }
  | { readonly ok: false; readonly step: "write" | "read"; readonly error: ErrorInfo };

/** The name of a call. */
export type CallOp = keyof CallMap;
/** Arguments of call `K`. */
export type CallArgs<K extends CallOp> = CallMap[K]["args"];
/** Result of call `K`. */
export type CallResult<K extends CallOp> = CallMap[K]["result"];

/** Worker → coordinator: a call with a request id unique within the job. */
export type CallMessage<K extends CallOp = CallOp> = {
  [P in K]: {
    readonly type: "call";
    readonly job: number;
    readonly id: number;
    readonly op: P;
    readonly args: CallArgs<P>;
  };
}[K];

/** Coordinator → worker: the answer to one call. */
export type ReplyMessage<K extends CallOp = CallOp> =
  | {
    [P in K]: {
      readonly type: "reply";
      readonly job: number;
      readonly id: number;
      readonly op: P;
      readonly ok: true;
      readonly result: CallResult<P>;
    };
  }[K]
  | {
    readonly type: "reply";
    readonly job: number;
    readonly id: number;
    readonly op: K;
    readonly ok: false;
    readonly error: ErrorInfo;
  };

// -----------------------------------------------------------------------------------------
// Messages

interface StartCommon {
  readonly type: "start";
  readonly job: number;
  readonly settings: HandshakeSettings;
  /** The worker's own backstop deadline; the coordinator's fires first. */
  readonly deadlineMs: number;
  /** Lowest level the coordinator's sinks take for the handshake category; null: none. */
  readonly logLevel: LogLevel | null;
  readonly fault?: WorkerFault;
}

/** Coordinator → worker: run an outgoing handshake. */
export interface StartOutgoing extends StartCommon {
  readonly kind: "outgoing";
  readonly params: WireOutgoingParams;
}

/** Coordinator → worker: run an incoming handshake on connection `conn`. */
export interface StartIncoming extends StartCommon {
  readonly kind: "incoming";
  readonly conn: number;
  readonly peerAddress?: string;
  /**
   * The bytes the connection had already buffered (the initial packet read at admission):
   * they come with the start, as the first read-ahead, instead of taking a `read` round trip.
   */
  readonly preload?: Uint8Array;
}

/** Coordinator → worker. */
export type ToWorker = StartOutgoing | StartIncoming | ReplyMessage;

/** Worker → coordinator: the module is loaded and the worker takes jobs. */
export interface ReadyMessage {
  readonly type: "ready";
}

/** Worker → coordinator: the procedure no longer wants the answer to call `id`. */
export interface CancelMessage {
  readonly type: "cancel";
  readonly job: number;
  readonly id: number;
}

/** Worker → coordinator: the procedure closed connection `conn` (fire and forget). */
export interface CloseMessage {
  readonly type: "close";
  readonly job: number;
  readonly conn: number;
}

/** Worker → coordinator: a log record, to be re-emitted through the coordinator's LogTape. */
export interface LogMessage {
  readonly type: "log";
  /** The job that was running, or null between jobs. */
  readonly job: number | null;
  readonly record: WireLogRecord;
}

/** Worker → coordinator: the job's result; the last message of a job. */
export interface OutcomeMessage {
  readonly type: "outcome";
  readonly job: number;
  readonly outcome: WireOutcome;
}

/** Worker → coordinator. */
export type FromWorker =
  | ReadyMessage
  | CallMessage
  | CancelMessage
  | CloseMessage
  | LogMessage
  | OutcomeMessage;

const FROM_WORKER_TYPES: ReadonlySet<string> = new Set<FromWorker["type"]>([
  "ready",
  "call",
  "cancel",
  "close",
  "log",
  "outcome",
]);

/** A cheap shape check of what a worker posted (the worker is not trusted blindly). */
export function isFromWorker(data: unknown): data is FromWorker {
  return typeof data === "object" && data !== null &&
    FROM_WORKER_TYPES.has((data as { type?: unknown }).type as string);
}

// -----------------------------------------------------------------------------------------
// Conversions

/** An id as fields. */
export function actorIdToWire(id: ActorId): ActorIdFields {
  return { localId: id.localId, hint: id.hint, nodeWord: id.nodeWord };
}

/** Rebuilds an id (validating its ranges). */
export function actorIdFromWire(f: ActorIdFields): ActorId {
  return new ActorId(f.localId, f.hint, f.nodeWord);
}

/** Outgoing params to the wire. */
export function outgoingParamsToWire(p: OutgoingParams): WireOutgoingParams {
  return {
    ...p,
    selfVirtualId: actorIdToWire(p.selfVirtualId),
    peerVirtualId: actorIdToWire(p.peerVirtualId),
  };
}

/** Outgoing params from the wire. */
export function outgoingParamsFromWire(p: WireOutgoingParams): OutgoingParams {
  return {
    ...p,
    selfVirtualId: actorIdFromWire(p.selfVirtualId),
    peerVirtualId: actorIdFromWire(p.peerVirtualId),
  };
}

/** A continuation ask to the wire. */
export function askToWire(a: ContinuationAsk): WireContinuationAsk {
  return { self: actorIdToWire(a.self), peer: actorIdToWire(a.peer), counter: a.counter };
}

/** A continuation ask from the wire. */
export function askFromWire(a: WireContinuationAsk): ContinuationAsk {
  return { self: actorIdFromWire(a.self), peer: actorIdFromWire(a.peer), counter: a.counter };
}

/** A continuation decision to the wire. */
export function continuationToWire(d: ContinuationDecision): WireContinuationDecision {
  return d.kind === "ack" ? { ...d, self: actorIdToWire(d.self) } : d;
}

/** A continuation decision from the wire. */
export function continuationFromWire(d: WireContinuationDecision): ContinuationDecision {
  return d.kind === "ack" ? { ...d, self: actorIdFromWire(d.self) } : d;
}

/** A new-session decision to the wire. */
export function newSessionToWire(d: NewSessionDecision): WireNewSessionDecision {
  return d.kind === "ok" ? { kind: "ok", selfVirtualId: actorIdToWire(d.selfVirtualId) } : d;
}

/** A new-session decision from the wire. */
export function newSessionFromWire(d: WireNewSessionDecision): NewSessionDecision {
  return d.kind === "ok" ? { kind: "ok", selfVirtualId: actorIdFromWire(d.selfVirtualId) } : d;
}

/** A finished handshake to the wire. */
export function doneToWire(d: HandshakeDone): WireHandshakeDone {
  return {
    ...d,
    selfVirtualId: actorIdToWire(d.selfVirtualId),
    peerVirtualId: actorIdToWire(d.peerVirtualId),
  };
}

/** A finished handshake from the wire. */
export function doneFromWire(d: WireHandshakeDone): HandshakeDone {
  return {
    ...d,
    selfVirtualId: actorIdFromWire(d.selfVirtualId),
    peerVirtualId: actorIdFromWire(d.peerVirtualId),
  };
}

/** Any thrown value as {@link ErrorInfo}. */
export function errorToWire(e: unknown): ErrorInfo {
  if (e instanceof UnexpectedEofError) {
    return { name: e.name, message: e.message, processed: e.processed, remain: e.remain };
  }
  if (e instanceof Error) return { name: e.name, message: e.message };
  return { name: "Error", message: String(e) };
}

/**
 * Rebuilds an error. An EOF becomes an {@link UnexpectedEofError} again, so the handshake's
 * "connection unexpectedly closed processed# N remain# M" text comes out the same as in main.
 */
export function errorFromWire(info: ErrorInfo): Error {
  if (
    info.name === "UnexpectedEofError" && typeof info.processed === "number" &&
    typeof info.remain === "number"
  ) {
    return new UnexpectedEofError(info.processed, info.remain);
  }
  const e = new Error(info.message);
  e.name = info.name;
  return e;
}

/**
 * Prepares bytes for posting with their buffer transferred. A view that covers its whole
 * (non-shared) buffer is sent as is and its buffer is detached here: the caller gives it
 * up. Any other view (a window into a larger buffer that still holds other bytes) is first
 * copied, so exactly its bytes travel and the larger buffer stays intact.
 */
export function ownedBytes(bytes: Uint8Array): [Uint8Array<ArrayBuffer>, Transferable[]] {
  const buffer = bytes.buffer;
  if (
    buffer instanceof ArrayBuffer && !buffer.resizable && bytes.byteOffset === 0 &&
    bytes.byteLength === buffer.byteLength && bytes.byteLength > 0
  ) {
    return [bytes as Uint8Array<ArrayBuffer>, [buffer]];
  }
  const copy = bytes.slice();
  return [copy, copy.byteLength > 0 ? [copy.buffer] : []];
}
