/**
 * Where handshake procedures run. The node hands an executor a main-side environment and
 * main-side transports; the executor runs the procedure (in this isolate, or in a pooled
 * worker) and resolves with its outcome. Either way the sockets stay with the coordinator.
 *
 * Every executor enforces the same bounds, per direction (incoming and outgoing apart, so an
 * outgoing handshake waiting for the peer's cookie connect-back never blocks the incoming
 * handshake that answers it):
 *
 * - **concurrency**: at most `concurrency` handshakes run at once (the worker pool's sizes);
 * - **queue**: at most `maxQueued` more wait for a slot, in FIFO order; a handshake beyond that
 *   ends at once, failed TRANSIENT `too many queued handshakes (N)` (an incoming one's
 *   connection is closed);
 * - **deadline**: a handshake ends by its `deadlineAt`, counted from when it was submitted, so
 *   the time spent in the queue counts: a handshake still queued then ends failed TRANSIENT
 *   `Handshake timed out, State# Queued`, and one that starts gets only the time left.
 * @module
 */
import {
  handshakeDeadlineMs,
  runIncomingHandshake,
  runOutgoingHandshake,
} from "../handshake/handshake.ts";
import { formatFailureMessage } from "../handshake/failure.ts";
import type {
  HandshakeEnvironment,
  HandshakeOutcome,
  HandshakeSettings,
  HandshakeTransport,
  OutgoingParams,
} from "../handshake/types.ts";
import { HandshakeWorkerPool, type HandshakeWorkerPoolOptions } from "../worker/host.ts";

/** The queue bound per direction when none is given. */
export const DEFAULT_MAX_QUEUED_HANDSHAKES = 1024;
/** Concurrent handshakes per direction of an {@link InlineExecutor} when none is given. */
export const DEFAULT_INLINE_CONCURRENCY = 16;
/** The state named in the timeout of a handshake that never left the queue. */
export const QUEUED_STATE = "Queued";

/** How a handshake is submitted to an executor. */
export interface ExecuteOptions {
  /** Ends the handshake silently (a poison pill), queued or running. */
  readonly signal?: AbortSignal;
  /**
   * When the handshake must have ended, as a `performance.now()` time; covers the wait in the
   * queue. Default: {@link handshakeDeadlineMs} from the call.
   */
  readonly deadlineAt?: number;
  /** The peer's node id when the caller knows it (incoming: from the initial packet). */
  readonly peerNodeId?: number;
  /**
   * Called when the handshake leaves the queue and is about to run; returning false ends it
   * silently instead (the caller no longer needs it).
   */
  readonly onStart?: () => boolean;
}

/** Handshakes of one direction. */
export interface DirectionCounts {
  /** Incoming (accepted) handshakes. */
  readonly incoming: number;
  /** Outgoing (dialed) handshakes. */
  readonly outgoing: number;
}

/** What an executor is doing now. */
export interface ExecutorLoad {
  /** Handshakes holding a slot. */
  readonly running: DirectionCounts;
  /** Handshakes waiting for a slot. */
  readonly queued: DirectionCounts;
}

/** Runs handshake procedures within the bounds described in the module doc. */
export interface HandshakeExecutor {
  outgoing(
    settings: HandshakeSettings,
    env: HandshakeEnvironment,
    params: OutgoingParams,
    options: ExecuteOptions,
  ): Promise<HandshakeOutcome>;
  incoming(
    settings: HandshakeSettings,
    env: HandshakeEnvironment,
    transport: HandshakeTransport,
    options: ExecuteOptions,
  ): Promise<HandshakeOutcome>;
  /** Slots per direction. */
  readonly concurrency: DirectionCounts;
  /** The queue bound per direction. */
  readonly maxQueued: number;
  /** Running and queued handshakes now. */
  readonly load: ExecutorLoad;
  /** Resolves once the executor can run a handshake without start-up delay. */
  warm(): Promise<void>;
  /** Ends queued handshakes (failed TRANSIENT) and releases the executor's resources. */
  close(): Promise<void>;
}

type Direction = keyof DirectionCounts;
type Verdict = "go" | "expired" | "poisoned" | "closed";

interface QueueEntry {
  settled: boolean;
  settle(verdict: Verdict): void;
}

/** What a handshake needs from the limiter besides the run itself. */
interface Submission {
  readonly direction: Direction;
  readonly settings: HandshakeSettings;
  readonly options: ExecuteOptions;
  readonly peerNodeId: number;
  readonly peerHostName: string | undefined;
  readonly peerAddress: string | undefined;
  /** The incoming connection, closed whenever the handshake does not run. */
  readonly transport?: HandshakeTransport;
}

function checkCount(name: string, n: number, min: number): number {
  if (!Number.isInteger(n) || n < min) throw new RangeError(`${name}# ${n}`);
  return n;
}

/**
 * FIFO slots per direction with a bounded queue and deadlines that count the queue. A slot is
 * held from the grant until the run's promise settles.
 */
export class SlotLimiter {
  readonly #running: Record<Direction, number> = { incoming: 0, outgoing: 0 };
  readonly #queues: Record<Direction, QueueEntry[]> = { incoming: [], outgoing: [] };
  #closed = false;

  /** `concurrency` slots per direction, at most `maxQueued` waiting per direction. */
  constructor(readonly concurrency: DirectionCounts, readonly maxQueued: number) {
    checkCount("concurrency.incoming", concurrency.incoming, 1);
    checkCount("concurrency.outgoing", concurrency.outgoing, 1);
    checkCount("maxQueued", maxQueued, 0);
  }

  /** Running and queued handshakes now. */
  get load(): ExecutorLoad {
    return {
      running: { ...this.#running },
      queued: { incoming: this.#queues.incoming.length, outgoing: this.#queues.outgoing.length },
    };
  }

  /**
   * Runs `start` with the milliseconds left to the deadline once a slot of the direction is
   * free. Never rejects unless `start` does: a refusal, an expiry or a poison is an outcome.
   */
  async run(
    s: Submission,
    start: (deadlineMs: number) => Promise<HandshakeOutcome>,
  ): Promise<HandshakeOutcome> {
    const deadlineAt = s.options.deadlineAt ??
      performance.now() + handshakeDeadlineMs(s.settings);
    if (this.#closed) return this.#refuse(s, "closed");
    if (s.options.signal?.aborted) return this.#refuse(s, "poisoned");
    const queue = this.#queues[s.direction];
    if (queue.length === 0 && this.#running[s.direction] < this.concurrency[s.direction]) {
      this.#running[s.direction]++;
    } else if (queue.length >= this.maxQueued) {
      return this.#refuse(s, "full");
    } else {
      const verdict = await this.#wait(queue, deadlineAt, s.options.signal);
      if (verdict !== "go") return this.#refuse(s, verdict);
    }
    try {
      const left = Math.floor(deadlineAt - performance.now());
      if (left < 1) return this.#refuse(s, "expired");
      if (s.options.onStart && !s.options.onStart()) return this.#refuse(s, "poisoned");
      return await start(left);
    } finally {
      this.#release(s.direction);
    }
  }

  /** Ends every queued handshake (failed TRANSIENT); running ones are the caller's to end. */
  close(): void {
    this.#closed = true;
    for (const queue of Object.values(this.#queues)) {
      for (const entry of queue.splice(0)) entry.settle("closed");
    }
  }

  #wait(queue: QueueEntry[], deadlineAt: number, signal?: AbortSignal): Promise<Verdict> {
    return new Promise<Verdict>((resolve) => {
      const leave = (verdict: Verdict) => {
        const i = queue.indexOf(entry);
        if (i >= 0) queue.splice(i, 1);
        entry.settle(verdict);
      };
      const onAbort = () => leave("poisoned");
      const timer = setTimeout(() => leave("expired"), Math.max(0, deadlineAt - performance.now()));
      const entry: QueueEntry = {
        settled: false,
        settle(verdict) {
          if (entry.settled) return;
          entry.settled = true;
          clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
          resolve(verdict);
        },
      };
      queue.push(entry);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  #release(direction: Direction): void {
    this.#running[direction]--;
    const queue = this.#queues[direction];
    while (queue.length > 0 && this.#running[direction] < this.concurrency[direction]) {
      const entry = queue.shift()!;
      this.#running[direction]++;
      entry.settle("go");
    }
  }

  #refuse(s: Submission, why: Exclude<Verdict, "go"> | "full"): HandshakeOutcome {
    try {
      s.transport?.close();
    } catch {
      // Best effort, as everywhere a connection is closed.
    }
    if (why === "poisoned") return { kind: "silent", peerNodeId: s.peerNodeId, reason: "poisoned" };
    const explanation = why === "full"
      ? `too many queued handshakes (${this.maxQueued})`
      : why === "expired"
      ? `Handshake timed out, State# ${QUEUED_STATE}`
      : "handshake executor closed";
    return {
      kind: "failed",
      peerNodeId: s.peerNodeId,
      failure: {
        class: "transient",
        explanation,
        message: formatFailureMessage(
          `${s.direction} handshake`,
          s.peerHostName,
          s.peerAddress,
          false,
          explanation,
        ),
        network: why === "expired",
        errorReplySent: false,
      },
    };
  }
}

function outgoingSubmission(
  settings: HandshakeSettings,
  params: OutgoingParams,
  options: ExecuteOptions,
): Submission {
  return {
    direction: "outgoing",
    settings,
    options,
    peerNodeId: params.peerNodeId,
    peerHostName: params.peerHostName,
    peerAddress: undefined,
  };
}

function incomingSubmission(
  settings: HandshakeSettings,
  transport: HandshakeTransport,
  options: ExecuteOptions,
): Submission {
  return {
    direction: "incoming",
    settings,
    options,
    peerNodeId: options.peerNodeId ?? 0,
    peerHostName: undefined,
    peerAddress: transport.peerAddress,
    transport,
  };
}

/** Options of {@link InlineExecutor}. */
export interface InlineExecutorOptions {
  /** Handshakes per direction that run at once. Default {@link DEFAULT_INLINE_CONCURRENCY}. */
  readonly concurrency?: number;
  /** Handshakes per direction that may wait. Default {@link DEFAULT_MAX_QUEUED_HANDSHAKES}. */
  readonly maxQueued?: number;
}

/**
 * The part every executor shares: the slot limiter in front of the runs, its figures, and the
 * submission of each direction. Subclasses say how one admitted handshake runs.
 */
abstract class LimitedExecutor implements HandshakeExecutor {
  readonly #limiter: SlotLimiter;

  constructor(limiter: SlotLimiter) {
    this.#limiter = limiter;
  }

  get concurrency(): DirectionCounts {
    return this.#limiter.concurrency;
  }

  get maxQueued(): number {
    return this.#limiter.maxQueued;
  }

  get load(): ExecutorLoad {
    return this.#limiter.load;
  }

  outgoing(
    settings: HandshakeSettings,
    env: HandshakeEnvironment,
    params: OutgoingParams,
    options: ExecuteOptions,
  ): Promise<HandshakeOutcome> {
    return this.#limiter.run(
      outgoingSubmission(settings, params, options),
      (deadlineMs) => this.runOutgoing(settings, env, params, options.signal, deadlineMs),
    );
  }

  incoming(
    settings: HandshakeSettings,
    env: HandshakeEnvironment,
    transport: HandshakeTransport,
    options: ExecuteOptions,
  ): Promise<HandshakeOutcome> {
    return this.#limiter.run(
      incomingSubmission(settings, transport, options),
      (deadlineMs) => this.runIncoming(settings, env, transport, options.signal, deadlineMs),
    );
  }

  close(): Promise<void> {
    this.#limiter.close();
    return this.release();
  }

  abstract warm(): Promise<void>;

  /** Runs one admitted outgoing handshake within `deadlineMs`. */
  protected abstract runOutgoing(
    settings: HandshakeSettings,
    env: HandshakeEnvironment,
    params: OutgoingParams,
    signal: AbortSignal | undefined,
    deadlineMs: number,
  ): Promise<HandshakeOutcome>;

  /** Runs one admitted incoming handshake within `deadlineMs`. */
  protected abstract runIncoming(
    settings: HandshakeSettings,
    env: HandshakeEnvironment,
    transport: HandshakeTransport,
    signal: AbortSignal | undefined,
    deadlineMs: number,
  ): Promise<HandshakeOutcome>;

  /** Releases what the runs use, once the queue is closed. */
  protected abstract release(): Promise<void>;
}

/** Runs every handshake in the calling isolate (no workers). */
export class InlineExecutor extends LimitedExecutor {
  constructor(options: InlineExecutorOptions = {}) {
    const n = options.concurrency ?? DEFAULT_INLINE_CONCURRENCY;
    super(
      new SlotLimiter(
        { incoming: n, outgoing: n },
        options.maxQueued ?? DEFAULT_MAX_QUEUED_HANDSHAKES,
      ),
    );
  }

  warm(): Promise<void> {
    return Promise.resolve();
  }

  protected runOutgoing(
    settings: HandshakeSettings,
    env: HandshakeEnvironment,
    params: OutgoingParams,
    signal: AbortSignal | undefined,
    deadlineMs: number,
  ): Promise<HandshakeOutcome> {
    return runOutgoingHandshake(settings, env, params, { signal, deadlineMs });
  }

  protected runIncoming(
    settings: HandshakeSettings,
    env: HandshakeEnvironment,
    transport: HandshakeTransport,
    signal: AbortSignal | undefined,
    deadlineMs: number,
  ): Promise<HandshakeOutcome> {
    return runIncomingHandshake(settings, env, transport, { signal, deadlineMs });
  }

  protected release(): Promise<void> {
    return Promise.resolve();
  }
}

/** Options of {@link WorkerExecutor}: the pool's, plus the queue bound. */
export interface WorkerExecutorOptions extends HandshakeWorkerPoolOptions {
  /** Handshakes per direction that may wait. Default {@link DEFAULT_MAX_QUEUED_HANDSHAKES}. */
  readonly maxQueued?: number;
}

/**
 * Runs every handshake in a pooled Web Worker; sockets stay in the calling isolate. The slots
 * are the pool's (`size` outgoing, `incomingLimit` incoming); the queue in front of the pool is
 * this executor's, so the pool's own queue stays empty.
 */
export class WorkerExecutor extends LimitedExecutor {
  readonly pool: HandshakeWorkerPool;

  constructor(options: WorkerExecutorOptions = {}) {
    const maxQueued = options.maxQueued ?? DEFAULT_MAX_QUEUED_HANDSHAKES;
    checkCount("maxQueued", maxQueued, 0);
    const pool = new HandshakeWorkerPool(options);
    super(new SlotLimiter({ incoming: pool.incomingLimit, outgoing: pool.size }, maxQueued));
    this.pool = pool;
  }

  warm(): Promise<void> {
    return this.pool.warm();
  }

  protected runOutgoing(
    settings: HandshakeSettings,
    env: HandshakeEnvironment,
    params: OutgoingParams,
    signal: AbortSignal | undefined,
    deadlineMs: number,
  ): Promise<HandshakeOutcome> {
    return this.pool.run({ kind: "outgoing", settings, env, params, signal, deadlineMs });
  }

  protected runIncoming(
    settings: HandshakeSettings,
    env: HandshakeEnvironment,
    transport: HandshakeTransport,
    signal: AbortSignal | undefined,
    deadlineMs: number,
  ): Promise<HandshakeOutcome> {
    return this.pool.run({ kind: "incoming", settings, env, transport, signal, deadlineMs });
  }

  protected release(): Promise<void> {
    return this.pool.close();
  }
}
