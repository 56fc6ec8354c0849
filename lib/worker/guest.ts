/**
 * The worker side of a pooled handshake: turns the coordinator's `start` message into a run of
 * {@link runOutgoingHandshake} or {@link runIncomingHandshake} over proxies whose every
 * operation is a message to the coordinator, and posts the outcome. Also configures LogTape
 * in the worker isolate with a sink that posts records to the coordinator.
 *
 * One job at a time. A job's calls, connections and replies are tagged with its id; anything
 * that arrives for another id is ignored, so nothing of one handshake reaches the next.
 * @module
 */
import { configureSync, type LogLevel, type LogRecord, type Sink } from "@logtape/logtape";
import { ChunkQueue } from "../io/chunk_queue.ts";
import { runIncomingHandshake, runOutgoingHandshake } from "../handshake/handshake.ts";
import {
  type HandshakeEnvironment,
  type HandshakeOutcome,
  type HandshakeTransport,
  type TlsRole,
  TransportStepError,
} from "../handshake/types.ts";
import { UnexpectedEofError } from "../io/buffered_reader.ts";
import {
  askToWire,
  type CallArgs,
  type CallMessage,
  type CallOp,
  type CallResult,
  continuationFromWire,
  doneToWire,
  errorFromWire,
  type FromWorker,
  newSessionFromWire,
  outgoingParamsFromWire,
  ownedBytes,
  type ReplyMessage,
  type StartIncoming,
  type StartOutgoing,
  type ToWorker,
  type WireLogRecord,
  type WireOutcome,
} from "./protocol.ts";

/** Posts a message to the coordinator, transferring the listed buffers. */
export type PostToCoordinator = (message: FromWorker, transfer?: Transferable[]) => void;

/** The LogTape category whose records the worker forwards. */
export const FORWARDED_CATEGORY: readonly string[] = ["ic-handshake"];

interface Pending {
  readonly op: CallOp;
  resolve(value: unknown): void;
  reject(error: Error): void;
  cleanup(): void;
}

/** One running handshake: its outstanding calls. */
class GuestJob {
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  ended = false;

  constructor(readonly id: number, readonly post: PostToCoordinator) {}

  /** Sends call `op` and resolves with the coordinator's result. */
  call<K extends CallOp>(
    op: K,
    args: CallArgs<K>,
    transfer: Transferable[] = [],
    signal?: AbortSignal,
  ): Promise<CallResult<K>> {
    if (this.ended) return Promise.reject(new Error("handshake job ended"));
    if (signal?.aborted) return Promise.reject(abortError(signal));
    const id = this.#nextId++;
    return new Promise<CallResult<K>>((resolve, reject) => {
      const onAbort = () => {
        if (!this.#pending.delete(id)) return;
        if (!this.ended) this.post({ type: "cancel", job: this.id, id });
        reject(abortError(signal!));
      };
      this.#pending.set(id, {
        op,
        resolve: resolve as (value: unknown) => void,
        reject,
        cleanup: () => signal?.removeEventListener("abort", onAbort),
      });
      signal?.addEventListener("abort", onAbort, { once: true });
      const message = { type: "call", job: this.id, id, op, args } as CallMessage;
      this.post(message, transfer);
    });
  }

  /** Settles the call a reply answers; replies to unknown ids (cancelled calls) are dropped. */
  settle(reply: ReplyMessage): void {
    const pending = this.#pending.get(reply.id);
    if (!pending || pending.op !== reply.op) return;
    this.#pending.delete(reply.id);
    pending.cleanup();
    if (reply.ok) pending.resolve(reply.result);
    else pending.reject(errorFromWire(reply.error));
  }

  /**
   * Ends the job. Calls still outstanding are dropped without settling: nothing awaits them
   * any more, and rejecting them could only raise unhandled rejections.
   */
  end(): void {
    this.ended = true;
    for (const p of this.#pending.values()) p.cleanup();
    this.#pending.clear();
  }

  /** The environment proxy: each method is a call answered by the coordinator's environment. */
  environment(): HandshakeEnvironment {
    return {
      resolve: (nodeId, signal) => this.call("resolve", { nodeId }, [], signal),
      nodeInfo: (nodeId) => this.call("nodeInfo", { nodeId }),
      connect: async (address, signal) => {
        const { conn, peerAddress } = await this.call("connect", { address }, [], signal);
        return new RemoteTransport(this, conn, peerAddress);
      },
      continuation: async (ask) =>
        continuationFromWire(await this.call("continuation", askToWire(ask))),
      newSession: async (peerNodeId, request) =>
        newSessionFromWire(await this.call("newSession", { peerNodeId, request })),
    };
  }
}

/**
 * A connection that lives in the coordinator, seen from the worker. Reads come back with
 * whatever the coordinator had already buffered behind the requested bytes (read-ahead, so an
 * ExBlock's header and payload take one round trip); the surplus waits here and goes back to
 * the coordinator with `startTls` or with the outcome, so nothing is lost or reordered.
 */
class RemoteTransport implements HandshakeTransport {
  #closed = false;
  readonly #queue = new ChunkQueue();

  constructor(
    readonly job: GuestJob,
    readonly conn: number,
    readonly peerAddress?: string,
    preload?: Uint8Array,
  ) {
    if (preload && preload.length > 0) {
      this.#queue.push(preload);
    }
  }

  readExactly(n: number): Promise<Uint8Array> {
    if (this.#closed) return Promise.reject(new Error("transport closed"));
    if (this.#queue.size >= n) return Promise.resolve(this.#queue.take(n));
    const held = this.#queue.size;
    return this.job.call("read", { conn: this.conn, n: n - held }).then(
      (bytes) => this.#arrived(bytes, n),
      (e) => {
        throw countHeld(e, held);
      },
    );
  }

  async write(bytes: Uint8Array): Promise<void> {
    if (this.#closed) throw new Error("transport closed");
    // Copy, then transfer the copy: the caller keeps its array intact (the handshake quotes
    // its length in failure messages), and the copy is the only one made.
    const copy = bytes.slice();
    await this.job.call("write", { conn: this.conn, bytes: copy }, [copy.buffer]);
  }

  async writeThenRead(bytes: Uint8Array, n: number): Promise<Uint8Array> {
    if (this.#closed) throw new TransportStepError("write", new Error("transport closed"));
    const copy = bytes.slice();
    const held = this.#queue.size;
    const need = Math.max(0, n - held);
    let result;
    try {
      result = await this.job.call(
        "writeRead",
        { conn: this.conn, bytes: copy, n: need },
        [copy.buffer],
      );
    } catch (e) {
      throw new TransportStepError("write", e);
    }
    if (!result.ok) {
      const error = errorFromWire(result.error);
      throw new TransportStepError(
        result.step,
        result.step === "read" ? countHeld(error, held) : error,
      );
    }
    return this.#arrived(result.bytes, n);
  }

  startTls(role: TlsRole, authOnly: boolean): Promise<{ authCN: string }> {
    if (this.#closed) return Promise.reject(new Error("transport closed"));
    const [unread, transfer] = this.takeHeld();
    return this.job.call("startTls", { conn: this.conn, role, authOnly, unread }, transfer);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue.clear();
    if (!this.job.ended) this.job.post({ type: "close", job: this.job.id, conn: this.conn });
  }

  /** Removes the read-ahead surplus, ready to post (undefined when there is none). */
  takeHeld(): [Uint8Array | undefined, Transferable[]] {
    if (this.#queue.size === 0) return [undefined, []];
    return ownedBytes(this.#queue.take(this.#queue.size));
  }

  #arrived(bytes: Uint8Array, n: number): Uint8Array {
    this.#queue.push(bytes);
    if (this.#queue.size < n) throw new Error(`short read: ${this.#queue.size} of ${n} bytes`);
    return this.#queue.take(n);
  }
}

/**
 * An EOF met while `held` bytes were already here counts them as processed, as one read of
 * the whole length would have.
 */
function countHeld(e: unknown, held: number): unknown {
  if (held > 0 && e instanceof UnexpectedEofError) {
    return new UnexpectedEofError(e.processed + held, e.remain);
  }
  return e;
}

/** Serves handshake jobs inside a worker. */
export class HandshakeGuest {
  readonly #post: PostToCoordinator;
  #job: GuestJob | undefined;
  #logLevel: LogLevel | null | undefined;

  constructor(post: PostToCoordinator) {
    this.#post = post;
    this.#configureLogging(null);
  }

  /** Handles one message from the coordinator. Throws on a protocol violation. */
  handle(message: ToWorker): void {
    switch (message.type) {
      case "start":
        if (this.#job) {
          throw new Error(`start of job ${message.job} while job ${this.#job.id} runs`);
        }
        this.#start(message);
        return;
      case "reply":
        if (this.#job?.id === message.job) this.#job.settle(message);
        return;
    }
  }

  #start(start: StartOutgoing | StartIncoming): void {
    const job = new GuestJob(start.job, this.#post);
    this.#job = job;
    this.#configureLogging(start.logLevel);
    if (start.fault === "throw") throw new Error("injected fault: the handshake worker throws");
    if (start.fault === "reject") {
      Promise.reject(new Error("injected fault: unhandled rejection in the handshake worker"));
      return;
    }
    // The procedures never reject; should anything here throw anyway, the rejection stays
    // unhandled on purpose: it is the worker's `error` event, and the coordinator fails this
    // job TRANSIENT and discards the worker.
    this.#run(job, start).then((outcome) => {
      job.end();
      if (this.#job === job) this.#job = undefined;
      // The surplus is a whole buffer of its own (see takeHeld): transfer it.
      const transfer = outcome.kind === "done" && outcome.unread
        ? [outcome.unread.buffer as ArrayBuffer]
        : [];
      this.#post({ type: "outcome", job: job.id, outcome }, transfer);
    });
  }

  async #run(job: GuestJob, start: StartOutgoing | StartIncoming): Promise<WireOutcome> {
    const env = job.environment();
    const options = { deadlineMs: start.deadlineMs };
    const outcome: HandshakeOutcome = start.kind === "outgoing"
      ? await runOutgoingHandshake(
        start.settings,
        env,
        outgoingParamsFromWire(start.params),
        options,
      )
      : await runIncomingHandshake(
        start.settings,
        env,
        new RemoteTransport(job, start.conn, start.peerAddress, start.preload),
        options,
      );
    if (outcome.kind !== "done") return outcome;
    if (!(outcome.transport instanceof RemoteTransport) || outcome.transport.job !== job) {
      throw new Error("the handshake ended on a transport the coordinator does not know");
    }
    const [unread] = outcome.transport.takeHeld();
    return { kind: "done", done: doneToWire(outcome.done), conn: outcome.transport.conn, unread };
  }

  /** (Re)configures LogTape when the coordinator's lowest level changed. */
  #configureLogging(level: LogLevel | null): void {
    if (level === this.#logLevel) return;
    this.#logLevel = level;
    const sink: Sink = (record) => this.#forward(record);
    configureSync({
      reset: true,
      sinks: { coordinator: sink },
      loggers: [
        { category: [...FORWARDED_CATEGORY], sinks: ["coordinator"], lowestLevel: level },
        { category: ["logtape", "meta"], sinks: ["coordinator"], lowestLevel: "warning" },
      ],
    });
  }

  #forward(record: LogRecord): void {
    const job = this.#job?.id ?? null;
    const wire: WireLogRecord = {
      category: record.category,
      level: record.level,
      message: record.message,
      rawMessage: typeof record.rawMessage === "string"
        ? record.rawMessage
        : Array.from(record.rawMessage).join("{}"),
      timestamp: record.timestamp,
      properties: record.properties,
    };
    try {
      this.#post({ type: "log", job, record: wire });
    } catch {
      // Something in the record is not cloneable (a function, a class with private state):
      // send such values as text.
      this.#post({
        type: "log",
        job,
        record: {
          ...wire,
          message: wire.message.map(cloneable),
          properties: Object.fromEntries(
            Object.entries(wire.properties).map(([k, v]) => [k, cloneable(v)]),
          ),
        },
      });
    }
  }
}

function cloneable(value: unknown): unknown {
  if (value === null || (typeof value !== "object" && typeof value !== "function")) return value;
  try {
    structuredClone(value);
    return value;
  } catch {
    return String(value);
  }
}

function abortError(signal: AbortSignal): Error {
  const reason = signal.reason;
  if (reason instanceof Error) return reason;
  return new DOMException("The operation was aborted", "AbortError");
}
