/**
 * The coordinator side of worker handshakes: a warm pool of handshake workers, each running
 * one handshake at a time while every connection stays in the main isolate.
 *
 * The worker drives the protocol; the coordinator owns the sockets. A worker's
 * `readExactly`/`write`/`startTls`/`close` become calls on a main-side connection registry
 * (connection id → {@link HandshakeTransport}), and its environment calls (resolve, node
 * info, connect, continuation, new session) are answered by the caller's main-side
 * {@link HandshakeEnvironment}. Bytes the main-side transport buffered behind the handshake
 * stay in it: on success the caller gets that very transport back, with any bytes the worker
 * read ahead and did not use put back in front of its reader (see `protocol.ts`).
 *
 * The coordinator enforces the deadline: the job fails TRANSIENT, the worker is terminated and
 * every connection of the job is closed. A worker that throws or dies fails only its own job.
 *
 * Concurrency is bounded per direction, each with its own FIFO queue (jobs wait, never
 * dropped): `size` outgoing handshakes (YDB's handshake broker, which limits outgoing
 * handshakes only) and `incomingLimit` incoming ones. One shared limit would deadlock: an
 * outgoing handshake holds its slot while the peer's cookie check dials back, and the incoming
 * handshake that answers it would queue behind that very slot.
 * @module
 */
import { getLogger, type LogLevel } from "@logtape/logtape";
import { formatFailureMessage } from "../handshake/failure.ts";
import { handshakeDeadlineMs } from "../handshake/handshake.ts";
import { INITIAL_PACKET_SIZE } from "../wire/initial_packet.ts";
import type {
  HandshakeEnvironment,
  HandshakeOutcome,
  HandshakeSettings,
  HandshakeTransport,
  OutgoingParams,
  ResolvedAddress,
} from "../handshake/types.ts";
import {
  askFromWire,
  type CallArgs,
  type CallMessage,
  type CallOp,
  type CallResult,
  continuationToWire,
  doneFromWire,
  errorToWire,
  isFromWorker,
  newSessionToWire,
  outgoingParamsToWire,
  ownedBytes,
  type ReplyMessage,
  type ToWorker,
  type WireLogRecord,
  type WireOutcome,
  type WorkerFault,
} from "./protocol.ts";

export type { WorkerFault } from "./protocol.ts";

/** The worker's own deadline is the coordinator's plus this: the coordinator's fires first. */
export const WORKER_DEADLINE_SLACK_MS = 1000;

const LOG_LEVELS: readonly LogLevel[] = ["trace", "debug", "info", "warning", "error", "fatal"];
const HANDSHAKE_CATEGORY = ["ic-handshake", "handshake"];
const log = getLogger(["ic-handshake", "worker"]);

/** Options of {@link HandshakeWorkerPool}. */
export interface HandshakeWorkerPoolOptions {
  /** The most outgoing handshakes that run at once; also the number of warm workers. Default 2. */
  readonly size?: number;
  /** The most incoming handshakes that run at once. Default: `size`. */
  readonly incomingLimit?: number;
  /**
   * Reuse a worker after a handshake that ended cleanly (done or silent). Default true. A
   * worker whose handshake failed, threw, died, timed out or was poisoned is always discarded.
   * With false, every worker runs one handshake and is replaced.
   */
  readonly reuseWorkers?: boolean;
  /**
   * Start workers with `deno: { permissions: "none" }`. This needs Deno's
   * `--unstable-worker-options`; without it Deno 2.9.6 EXITS the process (code 70) on such a
   * constructor, it does not throw, so the default is {@link workerSandboxAvailable}, which
   * finds the flag on the command line only under `--allow-all`. Pass true when you know the
   * feature is on (the flag, or `"unstable": ["worker-options"]` in `deno.json`).
   */
  readonly sandbox?: boolean;
  /** The worker module; defaults to this package's `workers/handshake_worker.ts`. */
  readonly workerUrl?: string | URL;
}

/** What every {@link HandshakeJob} has. */
export interface HandshakeJobBase {
  /** This node's handshake settings. */
  readonly settings: HandshakeSettings;
  /** The main-side environment: nameservice and proxy. `connect` opens main-side connections. */
  readonly env: HandshakeEnvironment;
  /** Overrides {@link handshakeDeadlineMs}; counted from the moment the job gets a worker. */
  readonly deadlineMs?: number;
  /** Ends the job silently (a poison pill): worker terminated, connections closed. */
  readonly signal?: AbortSignal;
  /** Called when the job leaves the queue and gets a worker. */
  readonly onStart?: () => void;
  /** Test only: make the worker fail in the given way. */
  readonly fault?: WorkerFault;
}

/** An outgoing handshake: the worker asks `env.connect` for the connection. */
export interface OutgoingJob extends HandshakeJobBase {
  /** Discriminant. */
  readonly kind: "outgoing";
  /** What the proxy gives an outgoing handshake actor. */
  readonly params: OutgoingParams;
}

/** An incoming handshake on an accepted main-side connection. */
export interface IncomingJob extends HandshakeJobBase {
  /** Discriminant. */
  readonly kind: "incoming";
  /** The accepted connection, main-side; the job owns it until the outcome. */
  readonly transport: HandshakeTransport;
}

/** A handshake to run in a worker. */
export type HandshakeJob = OutgoingJob | IncomingJob;

/** Counters, for monitoring and tests. */
export interface HandshakeWorkerPoolStats {
  /** Workers created since the pool started. */
  readonly workersStarted: number;
  /** Workers terminated (discarded, failed, timed out, or closed with the pool). */
  readonly workersTerminated: number;
  /** Jobs that got a worker. */
  readonly jobsStarted: number;
  /** Jobs that returned their worker to the pool. */
  readonly workersReused: number;
  /** Milliseconds from `new Worker` to its `ready` message, per worker, most recent last. */
  readonly startupMs: readonly number[];
}

/**
 * Whether worker permission options can be used: true when `--unstable-worker-options` is on
 * this process's command line. Deno lets only `--allow-all` read `/proc/self/cmdline`, so
 * under narrower permissions (or off Linux) this says false, and a caller that knows the flag
 * is on passes `sandbox: true`. Probing with a constructor is not an option: it exits.
 */
export function workerSandboxAvailable(): boolean {
  try {
    const path = "/proc/self/cmdline";
    // Never prompt: read only what is already granted (a NotCapable throw is caught below).
    if (Deno.permissions.querySync({ name: "read", path }).state !== "granted") return false;
    const argv = new TextDecoder().decode(Deno.readFileSync(path)).split("\0");
    if (argv.at(-1) === "") argv.pop();
    const flagsEnd = argv.length - Deno.args.length; // script arguments come last
    const i = argv.indexOf("--unstable-worker-options");
    return i >= 0 && i < flagsEnd;
  } catch {
    return false;
  }
}

// -----------------------------------------------------------------------------------------

/** A main-side connection of a job. */
interface Connection {
  readonly transport: HandshakeTransport;
  /** The job's accepted connection (incoming) or one it dialed. */
  readonly accepted: boolean;
  /** Dialed by an incoming handshake: the cookie connect-back. */
  readonly cookieCheck: boolean;
  reads: number;
  writes: number;
  closed: boolean;
}

/** How a {@link PoolWorker} reports to its pool. */
interface WorkerEvents {
  message(w: PoolWorker, data: unknown): void;
  error(w: PoolWorker, reason: string): void;
}

class PoolWorker {
  readonly worker: Worker;
  readonly ready: Promise<void>;
  readonly #created = performance.now();
  #markReady!: () => void;
  #markBroken!: (e: Error) => void;
  isReady = false;
  /** Why the worker is unusable, once it is. */
  dead: string | undefined;
  job: ActiveJob | undefined;

  constructor(url: string | URL, sandbox: boolean, events: WorkerEvents) {
    this.ready = new Promise<void>((resolve, reject) => {
      this.#markReady = resolve;
      this.#markBroken = reject;
    });
    this.ready.catch(() => {});
    const options: WorkerOptions = sandbox
      ? { type: "module", deno: { permissions: "none" } } as WorkerOptions
      : { type: "module" };
    this.worker = new Worker(url, options);
    this.worker.onmessage = (e) => events.message(this, e.data);
    this.worker.onerror = (e) => {
      e.preventDefault();
      events.error(this, e.message || "worker error");
    };
    this.worker.onmessageerror = () => events.error(this, "message could not be decoded");
  }

  /** Marks the worker ready; returns the start-up time in ms. */
  readyNow(): number {
    this.isReady = true;
    this.#markReady();
    return performance.now() - this.#created;
  }

  broken(reason: string): void {
    this.dead ??= reason;
    this.#markBroken(new Error(reason));
  }

  post(message: ToWorker, transfer: Transferable[] = []): void {
    this.worker.postMessage(message, transfer);
  }
}

class ActiveJob {
  readonly conns = new Map<number, Connection>();
  readonly calls = new Map<number, AbortController>();
  /** The state the coordinator last knew the handshake to be in (YDB's names). */
  state = "Start";
  lastOp: CallOp | undefined;
  peerNodeId: number;
  peerHostName: string | undefined;
  peerAddr: string | undefined;
  resolveTimedOut = false;
  finished = false;
  timer: ReturnType<typeof setTimeout> | undefined;
  onAbort: (() => void) | undefined;
  readonly outcome: Promise<HandshakeOutcome>;
  resolve!: (outcome: HandshakeOutcome) => void;

  constructor(readonly id: number, readonly spec: HandshakeJob, public worker: PoolWorker) {
    this.outcome = new Promise((resolve) => this.resolve = resolve);
    this.peerNodeId = spec.kind === "outgoing" ? spec.params.peerNodeId : 0;
    if (spec.kind === "outgoing") this.peerHostName = spec.params.peerHostName;
    else this.peerAddr = spec.transport.peerAddress;
  }

  connection(id: number): Connection {
    const c = this.conns.get(id);
    if (!c) throw new Error(`unknown connection ${id}`);
    if (c.closed) throw new Error("transport closed");
    return c;
  }

  /** Follows the handshake's states from what it asks for (the best the coordinator knows). */
  note(message: CallMessage): void {
    const previous = this.lastOp;
    this.lastOp = message.op;
    switch (message.op) {
      case "read": {
        const c = this.conns.get(message.args.conn);
        if (c) this.noteRead(c);
        return;
      }
      case "write":
      case "writeRead": {
        // A writeRead's read is noted once its write is done (see the handler).
        const c = this.conns.get(message.args.conn);
        if (c) this.state = c.writes++ === 0 ? "SendInitialPacket" : `Send${blockName(c, true)}`;
        return;
      }
      case "startTls":
        this.state = "EstablishSecureConnection";
        return;
      case "resolve":
        this.state = "ResolvePeer";
        this.peerNodeId ||= message.args.nodeId;
        return;
      case "nodeInfo":
        // Right after a resolve it is the static-address fallback of a resolve timeout.
        this.state = previous === "resolve" ? "GetNode" : "GetPeerNodeInfo";
        this.peerNodeId ||= message.args.nodeId;
        return;
      case "connect":
        this.state = "Connect";
        return;
      case "continuation":
        this.state = "AskProxy(TEvHandshakeAsk)";
        this.peerNodeId ||= message.args.self.nodeWord & 0xfffff;
        return;
      case "newSession":
        this.state = "AskProxy(TEvHandshakeRequest)";
        this.peerNodeId ||= message.args.peerNodeId;
        this.peerHostName ??= message.args.request.SenderHostName;
        return;
    }
  }

  /** The state of a read on `c`: the initial packet, then an ExBlock's header and data. */
  noteRead(c: Connection): void {
    const what = blockName(c);
    this.state = [
      c.accepted ? "ReceiveRequest" : "ReceiveResponse",
      `Receive${what}Header`,
      `Receive${what}Data`,
    ][Math.min(c.reads++, 2)];
  }
}

/**
 * `bytes` just read from `t`, followed by whatever `t` already holds behind them (read-ahead),
 * when `t` can put bytes back later; the worker returns what it does not use.
 */
function withReadAhead(t: HandshakeTransport, bytes: Uint8Array): Uint8Array {
  if (!t.takeBuffered || !t.unread) return bytes;
  const more = t.takeBuffered();
  if (more.length === 0) return bytes;
  const out = new Uint8Array(bytes.length + more.length);
  out.set(bytes);
  out.set(more, bytes.length);
  return out;
}

/** Puts the worker's unused read-ahead bytes back in front of `t`'s reader. */
function giveBack(t: HandshakeTransport, bytes: Uint8Array | undefined): void {
  if (!bytes || bytes.length === 0) return;
  if (!t.unread) throw new Error("read-ahead bytes for a transport that cannot take them back");
  t.unread(bytes);
}

function closeConnection(c: Connection): void {
  if (c.closed) return;
  c.closed = true;
  try {
    c.transport.close();
  } catch {
    // close() is best effort; a transport that throws is closed as far as we are concerned.
  }
}

function blockName(c: Connection, sending = false): string {
  if (c.accepted) return sending ? "ExReply" : "ExRequest";
  if (c.cookieCheck) return "ExBlockDoCheckCookie";
  return sending ? "ExRequest" : "ExReply";
}

function formatAddress(a: ResolvedAddress): string {
  return a.address.includes(":") ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

/** The lowest level at which the coordinator's LogTape has a sink for the handshake logs. */
function lowestEnabledLevel(): LogLevel | null {
  const logger = getLogger(HANDSHAKE_CATEGORY);
  for (const level of LOG_LEVELS) if (logger.isEnabledFor(level)) return level;
  return null;
}

function reemit(record: WireLogRecord): void {
  if (!Array.isArray(record.category) || !LOG_LEVELS.includes(record.level)) return;
  getLogger(record.category.map(String)).emit({
    level: record.level,
    message: Array.isArray(record.message) ? record.message : [String(record.message)],
    rawMessage: String(record.rawMessage),
    timestamp: Number(record.timestamp),
    properties: record.properties ?? {},
  });
}

type Handler<K extends CallOp> = (
  job: ActiveJob,
  args: CallArgs<K>,
  signal: AbortSignal,
) => Promise<[CallResult<K>, Transferable[]]>;

type Waiter = (worker: PoolWorker | undefined) => void;
type Direction = HandshakeJob["kind"];

/**
 * A warm pool of handshake workers.
 *
 * ```ts
 * await using pool = new HandshakeWorkerPool({ size: 4 });
 * const outcome = await pool.run({ kind: "outgoing", settings, env, params });
 * if (outcome.kind === "done") useSession(outcome.done, outcome.transport);
 * ```
 */
export class HandshakeWorkerPool implements AsyncDisposable {
  /** The most outgoing handshakes at once, and the number of warm workers kept. */
  readonly size: number;
  /** The most incoming handshakes at once. */
  readonly incomingLimit: number;
  /** Whether a worker is reused after a clean end (see the options). */
  readonly reuseWorkers: boolean;
  /** Whether workers run with `permissions: "none"`. */
  readonly sandboxed: boolean;
  readonly #url: string | URL;
  /** Started workers without a job, at most `size`. */
  #idle: PoolWorker[] = [];
  readonly #waiters: Record<Direction, Waiter[]> = { outgoing: [], incoming: [] };
  /** Slots taken per direction (a job holds its slot from acquisition to its end). */
  readonly #slots: Record<Direction, number> = { outgoing: 0, incoming: 0 };
  readonly #running = new Set<ActiveJob>();
  #closed = false;
  #nextJob = 1;
  #nextConn = 1;
  #stats = {
    workersStarted: 0,
    workersTerminated: 0,
    jobsStarted: 0,
    workersReused: 0,
    startupMs: [] as number[],
  };

  /** Starts `size` workers at once, so that start-up is off the handshakes' path. */
  constructor(options: HandshakeWorkerPoolOptions = {}) {
    const size = options.size ?? 2;
    const incomingLimit = options.incomingLimit ?? size;
    for (const [name, n] of [["size", size], ["incomingLimit", incomingLimit]] as const) {
      if (!Number.isInteger(n) || n < 1) throw new RangeError(`pool ${name}# ${n}`);
    }
    this.size = size;
    this.incomingLimit = incomingLimit;
    this.reuseWorkers = options.reuseWorkers ?? true;
    this.sandboxed = options.sandbox ?? workerSandboxAvailable();
    this.#url = options.workerUrl ??
      new URL("../../workers/handshake_worker.ts", import.meta.url);
    for (let i = 0; i < size; i++) this.#idle.push(this.#spawn());
  }

  /** Jobs running in a worker now. */
  get running(): number {
    return this.#running.size;
  }

  /** Jobs waiting for a slot. */
  get queued(): number {
    return this.#waiters.outgoing.length + this.#waiters.incoming.length;
  }

  /** Counters since the pool started. */
  get stats(): HandshakeWorkerPoolStats {
    return { ...this.#stats, startupMs: [...this.#stats.startupMs] };
  }

  /** Resolves once every idle worker has started (or failed to). */
  async warm(): Promise<void> {
    await Promise.all(this.#idle.map((w) => w.ready.catch(() => {})));
  }

  /**
   * Runs a handshake in a worker. Waits for a slot of the job's direction first (FIFO).
   * Never rejects: every end is an outcome. On `done`, `transport` is the main-side
   * transport the session lives on, with any bytes read past the handshake still buffered in
   * it; every other connection of the job is closed. On any other outcome all of the job's
   * connections are closed.
   */
  async run(job: HandshakeJob): Promise<HandshakeOutcome> {
    if (this.#closed) return this.#refuse(job, "closed");
    if (job.signal?.aborted) return this.#refuse(job, "poisoned");
    const worker = await this.#acquire(job.kind, job.signal);
    if (!worker) return this.#refuse(job, this.#closed ? "closed" : "poisoned");
    if (this.#closed) {
      // Closed between the grant and now: the worker is in no list close() saw.
      this.#slots[job.kind]--;
      this.#retire(worker);
      return this.#refuse(job, "closed");
    }
    return await this.#start(worker, job);
  }

  /** Terminates every worker; running and queued jobs end as failed TRANSIENT. */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    for (const queue of Object.values(this.#waiters)) {
      for (const waiter of queue.splice(0)) waiter(undefined);
    }
    for (const job of [...this.#running]) {
      this.#finish(job, this.#coordinatorFailure(job, "handshake worker pool closed"), true);
    }
    for (const w of this.#idle.splice(0)) this.#retire(w);
    return Promise.resolve();
  }

  /** Same as {@link close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  // ---------------------------------------------------------------------------------------
  // Workers, slots and queues

  #spawn(): PoolWorker {
    this.#stats.workersStarted++;
    return new PoolWorker(this.#url, this.sandboxed, this.#events);
  }

  #retire(w: PoolWorker): void {
    w.broken("terminated");
    w.worker.terminate();
    this.#stats.workersTerminated++;
  }

  /**
   * A warm worker if there is one, else a new one (its start-up then delays this job). The
   * most recently used ready worker first: at low concurrency the same worker runs handshake
   * after handshake, with its code optimised and its caches warm, while the others sleep.
   */
  #takeWorker(): PoolWorker {
    for (let i = this.#idle.length - 1; i >= 0; i--) {
      const w = this.#idle[i];
      if (w.isReady && !w.dead) return this.#idle.splice(i, 1)[0];
    }
    return this.#idle.shift() ?? this.#spawn();
  }

  #limit(direction: Direction): number {
    return direction === "outgoing" ? this.size : this.incomingLimit;
  }

  /** Takes a slot of `direction` and a worker, waiting in FIFO order for the slot. */
  #acquire(direction: Direction, signal?: AbortSignal): Promise<PoolWorker | undefined> {
    const queue = this.#waiters[direction];
    if (queue.length === 0 && this.#slots[direction] < this.#limit(direction)) {
      this.#slots[direction]++;
      return Promise.resolve(this.#takeWorker());
    }
    return new Promise((resolve) => {
      const onAbort = () => {
        const i = queue.indexOf(waiter);
        if (i >= 0) queue.splice(i, 1);
        resolve(undefined);
      };
      const waiter: Waiter = (w) => {
        signal?.removeEventListener("abort", onAbort);
        resolve(w);
      };
      queue.push(waiter);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /**
   * Frees a slot of `direction`. The worker of the ended job (undefined when it was
   * discarded) goes to the first job waiting for that slot, else back to the warm list.
   */
  #releaseSlot(direction: Direction, worker: PoolWorker | undefined): void {
    this.#slots[direction]--;
    if (this.#closed) {
      if (worker) this.#retire(worker);
      return;
    }
    const waiter = this.#waiters[direction].shift();
    if (waiter) {
      this.#slots[direction]++;
      waiter(worker ?? this.#takeWorker());
      worker = undefined;
    }
    if (worker) {
      if (this.#idle.length < this.size) this.#idle.push(worker);
      else this.#retire(worker);
    }
    // Keep `size` workers alive (warm or busy), so a discarded worker is replaced ahead of need.
    while (this.#idle.length + this.#slots.outgoing + this.#slots.incoming < this.size) {
      this.#idle.push(this.#spawn());
    }
  }

  #refuse(job: HandshakeJob, why: "closed" | "poisoned"): HandshakeOutcome {
    if (job.kind === "incoming") {
      try {
        job.transport.close();
      } catch {
        // Best effort, as everywhere a connection is closed.
      }
    }
    const peerNodeId = job.kind === "outgoing" ? job.params.peerNodeId : 0;
    if (why === "poisoned") return { kind: "silent", peerNodeId, reason: "poisoned" };
    const explanation = "handshake worker pool closed";
    return {
      kind: "failed",
      peerNodeId,
      failure: {
        class: "transient",
        explanation,
        message: formatFailureMessage(
          `${job.kind} handshake`,
          job.kind === "outgoing" ? job.params.peerHostName : undefined,
          job.kind === "incoming" ? job.transport.peerAddress : undefined,
          false,
          explanation,
        ),
        network: false,
        errorReplySent: false,
      },
    };
  }

  #start(worker: PoolWorker, spec: HandshakeJob): Promise<HandshakeOutcome> {
    if (worker.dead) {
      // Died while idle: one fresh attempt for this job.
      this.#retire(worker);
      worker = this.#spawn();
    }
    const job = new ActiveJob(this.#nextJob++, spec, worker);
    worker.job = job;
    this.#running.add(job);
    this.#stats.jobsStarted++;
    if (spec.kind === "incoming") {
      job.conns.set(this.#nextConn++, {
        transport: spec.transport,
        accepted: true,
        cookieCheck: false,
        reads: 0,
        writes: 0,
        closed: false,
      });
    }
    const deadlineMs = spec.deadlineMs ?? handshakeDeadlineMs(spec.settings);
    job.timer = setTimeout(() => {
      this.#finish(job, this.#timeoutFailure(job), true);
    }, deadlineMs);
    if (spec.signal) {
      job.onAbort = () =>
        this.#finish(job, { kind: "silent", peerNodeId: job.peerNodeId, reason: "poisoned" }, true);
      spec.signal.addEventListener("abort", job.onAbort, { once: true });
    }
    try {
      spec.onStart?.();
    } catch {
      // The caller's hook; its failure is not the handshake's.
    }
    if (spec.signal?.aborted) job.onAbort?.();
    worker.ready.then(() => {
      if (job.finished) return;
      const common = {
        type: "start",
        job: job.id,
        settings: spec.settings,
        deadlineMs: deadlineMs + WORKER_DEADLINE_SLACK_MS,
        logLevel: lowestEnabledLevel(),
        fault: spec.fault,
      } as const;
      if (spec.kind === "outgoing") {
        worker.post({ ...common, kind: "outgoing", params: outgoingParamsToWire(spec.params) });
      } else {
        const [conn] = job.conns.keys();
        const t = spec.transport;
        const buffered = t.takeBuffered && t.unread ? t.takeBuffered() : undefined;
        const [preload, transfer] = buffered?.length ? ownedBytes(buffered) : [undefined, []];
        // A preloaded initial packet is the read the coordinator would otherwise have noted.
        if (preload && preload.length >= INITIAL_PACKET_SIZE) job.conns.get(conn)!.reads = 1;
        worker.post(
          { ...common, kind: "incoming", conn, peerAddress: t.peerAddress, preload },
          transfer,
        );
      }
    }, (e: Error) => {
      this.#finish(
        job,
        this.#coordinatorFailure(job, `handshake worker failed to start: ${e.message}`),
        true,
      );
    });
    return job.outcome;
  }

  /**
   * Ends a job once: stops its timer, cancels its calls, closes its connections (all but the
   * session's on success), and returns or replaces its worker.
   */
  #finish(job: ActiveJob, outcome: HandshakeOutcome, discardWorker: boolean): void {
    if (job.finished) return;
    job.finished = true;
    clearTimeout(job.timer);
    if (job.onAbort) job.spec.signal?.removeEventListener("abort", job.onAbort);
    for (const ac of job.calls.values()) ac.abort(new Error("handshake ended"));
    job.calls.clear();
    const keep = outcome.kind === "done" ? outcome.transport : undefined;
    for (const c of job.conns.values()) {
      if (c.transport !== keep) closeConnection(c);
    }
    this.#running.delete(job);
    const w = job.worker;
    w.job = undefined;
    if (discardWorker || !this.reuseWorkers || w.dead) {
      this.#retire(w);
      this.#releaseSlot(job.spec.kind, undefined);
    } else {
      this.#stats.workersReused++;
      this.#releaseSlot(job.spec.kind, w);
    }
    job.resolve(outcome);
  }

  #coordinatorFailure(job: ActiveJob, explanation: string, network = false): HandshakeOutcome {
    const failure = {
      class: "transient" as const,
      explanation,
      message: formatFailureMessage(
        `${job.spec.kind} handshake`,
        job.peerHostName,
        job.peerAddr,
        job.resolveTimedOut,
        explanation,
      ),
      network,
      errorReplySent: false,
    };
    log.info("Handshake [node {peerNodeId}] failed in the coordinator: {message}", {
      peerNodeId: job.peerNodeId,
      message: failure.message,
      state: job.state,
    });
    return { kind: "failed", peerNodeId: job.peerNodeId, failure };
  }

  #timeoutFailure(job: ActiveJob): HandshakeOutcome {
    return this.#coordinatorFailure(job, `Handshake timed out, State# ${job.state}`, true);
  }

  // ---------------------------------------------------------------------------------------
  // Messages from workers

  readonly #events: WorkerEvents = {
    message: (w, data) => this.#onWorkerMessage(w, data),
    error: (w, reason) => this.#onWorkerError(w, reason),
  };

  #onWorkerError(w: PoolWorker, reason: string): void {
    const job = w.job;
    w.broken(reason);
    if (job) {
      this.#finish(
        job,
        this.#coordinatorFailure(job, `internal error: handshake worker died: ${reason}`),
        true,
      );
    }
  }

  #onWorkerMessage(w: PoolWorker, data: unknown): void {
    try {
      this.#dispatch(w, data);
    } catch (e) {
      // Never let a worker's message throw in the coordinator: the worker is broken instead.
      const text = e instanceof Error ? e.message : String(e);
      this.#onWorkerError(w, `bad message from the handshake worker: ${text}`);
    }
  }

  #dispatch(w: PoolWorker, data: unknown): void {
    if (!isFromWorker(data)) {
      this.#onWorkerError(w, "malformed message from the handshake worker");
      return;
    }
    switch (data.type) {
      case "ready":
        if (!w.isReady) this.#stats.startupMs.push(w.readyNow());
        return;
      case "log":
        try {
          reemit(data.record);
        } catch {
          // A record the coordinator's LogTape cannot take is dropped, never fatal.
        }
        return;
    }
    const job = w.job;
    if (!job || job.id !== data.job || job.finished) return; // a message of an ended job
    switch (data.type) {
      case "call":
        job.note(data);
        this.#serve(job, data).catch((e) => this.#onWorkerError(w, String(e)));
        return;
      case "cancel":
        job.calls.get(data.id)?.abort(new Error("cancelled by the handshake"));
        return;
      case "close": {
        const c = job.conns.get(data.conn);
        if (c) closeConnection(c);
        return;
      }
      case "outcome":
        this.#complete(job, data.outcome);
        return;
    }
  }

  #complete(job: ActiveJob, wire: WireOutcome): void {
    if (wire.kind !== "done") {
      // A failed handshake's worker is discarded; a silent end is a clean end.
      this.#finish(job, wire, wire.kind === "failed");
      return;
    }
    const c = job.conns.get(wire.conn);
    let outcome: HandshakeOutcome;
    try {
      if (!c || c.closed) throw new Error(`the session's connection ${wire.conn} is not open`);
      giveBack(c.transport, wire.unread);
      outcome = { kind: "done", done: doneFromWire(wire.done), transport: c.transport };
    } catch (e) {
      const text = e instanceof Error ? e.message : String(e);
      this.#finish(job, this.#coordinatorFailure(job, `internal error: ${text}`), true);
      return;
    }
    this.#finish(job, outcome, false);
  }

  async #serve(job: ActiveJob, message: CallMessage): Promise<void> {
    const controller = new AbortController();
    job.calls.set(message.id, controller);
    const base = { type: "reply", job: job.id, id: message.id, op: message.op } as const;
    let reply: ReplyMessage;
    let transfer: Transferable[] = [];
    try {
      const handler = this.#handlers[message.op] as Handler<CallOp> | undefined;
      if (!handler) throw new Error(`unknown call ${String(message.op)}`);
      const [result, toTransfer] = await handler(job, message.args as never, controller.signal);
      reply = { ...base, ok: true, result } as ReplyMessage;
      transfer = toTransfer;
    } catch (e) {
      reply = { ...base, ok: false, error: errorToWire(e) };
    } finally {
      job.calls.delete(message.id);
    }
    if (job.finished) return;
    try {
      job.worker.post(reply, transfer);
    } catch (e) {
      // E.g. the environment answered with something that cannot be cloned.
      job.worker.post({ ...base, ok: false, error: errorToWire(e) });
    }
  }

  /** What each call does on the main side. */
  readonly #handlers: { readonly [K in CallOp]: Handler<K> } = {
    read: async (job, { conn, n }) => {
      const t = job.connection(conn).transport;
      const bytes = withReadAhead(t, await t.readExactly(n));
      // The bytes were handed out by the reader and are the job's: transfer, do not copy.
      return ownedBytes(bytes);
    },
    write: async (job, { conn, bytes }) => {
      await job.connection(conn).transport.write(bytes);
      return [null, []];
    },
    writeRead: async (job, { conn, bytes, n }) => {
      const c = job.connection(conn);
      const t = c.transport;
      try {
        await t.write(bytes);
      } catch (e) {
        return [{ ok: false, step: "write", error: errorToWire(e) }, []];
      }
      if (!job.finished) job.noteRead(c);
      let got: Uint8Array;
      try {
        got = withReadAhead(t, await t.readExactly(n));
      } catch (e) {
        return [{ ok: false, step: "read", error: errorToWire(e) }, []];
      }
      const [owned, transfer] = ownedBytes(got);
      return [{ ok: true, bytes: owned }, transfer];
    },
    startTls: async (job, { conn, role, authOnly, unread }) => {
      const t = job.connection(conn).transport;
      giveBack(t, unread);
      const { authCN } = await t.startTls(role, authOnly);
      return [{ authCN }, []];
    },
    resolve: async (job, { nodeId }, signal) => {
      const address = await job.spec.env.resolve(nodeId, signal);
      return [address && { address: address.address, port: address.port }, []];
    },
    nodeInfo: async (job, { nodeId }) => {
      const info = await job.spec.env.nodeInfo(nodeId);
      if (info?.address && job.lastOp === "nodeInfo" && job.state === "GetNode") {
        job.resolveTimedOut = true;
      }
      const copy = info && {
        nodeId: info.nodeId,
        host: info.host,
        address: info.address,
        resolveHost: info.resolveHost,
        port: info.port,
      };
      return [copy, []];
    },
    connect: async (job, { address }, signal) => {
      const transport = await job.spec.env.connect(address, signal);
      if (job.finished) {
        transport.close();
        throw new Error("handshake ended");
      }
      const conn = this.#nextConn++;
      job.conns.set(conn, {
        transport,
        accepted: false,
        cookieCheck: job.spec.kind === "incoming",
        reads: 0,
        writes: 0,
        closed: false,
      });
      if (job.spec.kind === "outgoing") job.peerAddr ??= formatAddress(address);
      return [{ conn, peerAddress: transport.peerAddress }, []];
    },
    continuation: async (job, ask) => {
      const decision = await job.spec.env.continuation(askFromWire(ask));
      return [continuationToWire(decision), []];
    },
    newSession: async (job, { peerNodeId, request }) => {
      const decision = await job.spec.env.newSession(peerNodeId, request);
      return [newSessionToWire(decision), []];
    },
  };
}
