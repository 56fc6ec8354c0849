/**
 * The coordinator: one per node, in the main isolate. It plays YDB's per-peer proxy around the
 * handshake procedures: it listens and dials, owns every main-connection socket, keeps one
 * {@link PeerProxy} per peer, runs each handshake through a {@link HandshakeExecutor} (a warm
 * worker pool in production), turns outcomes into sessions, and hands sessions to the user.
 * @module
 */
import { getLogger, type Logger } from "@logtape/logtape";
import { ActorId } from "../wire/actor_id.ts";
import { handshakeDeadlineMs } from "../handshake/handshake.ts";
import { formatFailureMessage, type HandshakeFailure } from "../handshake/failure.ts";
import type { TlsStarter } from "../handshake/stream_transport.ts";
import type {
  HandshakeDone,
  HandshakeEnvironment,
  HandshakeOutcome,
  HandshakeSettings,
  OutgoingParams,
  ProgramInfo,
  SessionParams,
} from "../handshake/types.ts";
import { type HandshakeHandle, PeerProxy, type ProxyStep } from "../proxy/peer_proxy.ts";
import { VirtualIdAllocator } from "../proxy/virtual_id.ts";
import type { BackoffOptions } from "../proxy/backoff.ts";
import { type NodeConfig, validateConfig } from "./config.ts";
import { Connection } from "./connection.ts";
import {
  DEFAULT_MAX_QUEUED_HANDSHAKES,
  type DirectionCounts,
  type HandshakeExecutor,
  InlineExecutor,
  WorkerExecutor,
} from "./executor.ts";
import { addressLabel, admit, dismiss } from "./admission.ts";
import { tlsStarter } from "./tls_starter.ts";
import { createTlsContext } from "../tls/mod.ts";
import { type Nameservice, StaticNameservice } from "./nameservice.ts";

export type { DirectionCounts } from "./executor.ts";

/** Pause of the accept loop after an accept error (EMFILE and the like). */
const ACCEPT_RETRY_MS = 100;
/** Default of {@link NodeOptions.maxAdmitting}. */
const DEFAULT_MAX_ADMITTING = 4096;

/** How a handshake ended, as announced to listeners. */
export type HandshakeEvent =
  | {
    readonly direction: "incoming" | "outgoing";
    readonly ok: true;
    readonly peerNodeId: number;
    readonly continuation: boolean;
    readonly durationMs: number;
    readonly session: Session;
    /** The peer's program info from this handshake; null on continuation (as YDB's Done). */
    readonly program: ProgramInfo | null;
  }
  | {
    readonly direction: "incoming" | "outgoing";
    readonly ok: false;
    /** 0 when the peer never said who it is. */
    readonly peerNodeId: number;
    readonly continuation: boolean;
    readonly durationMs: number;
    readonly failure: "transient" | "permanent" | "session_mismatch";
    readonly explanation: string;
  };

/** A handshake failed; `failure` is its class, `explanation` its gist. */
export class HandshakeError extends Error {
  /** Always `"HandshakeError"`. */
  override name = "HandshakeError";
  /** A failure of class `failure` with node `peerNodeId`, explained by `explanation`. */
  constructor(
    readonly failure: "transient" | "permanent" | "session_mismatch",
    readonly explanation: string,
    readonly peerNodeId: number,
  ) {
    super(`${failure} failure with node ${peerNodeId}: ${explanation}`);
  }
}

/** Handshake workers when `NodeOptions.workers` is not given: the CPU cores, at most 4. */
const DEFAULT_WORKERS = Math.min(4, Math.max(1, navigator.hardwareConcurrency || 4));

/** Runtime options of a node that are not part of the config file. */
export interface NodeOptions {
  /**
   * Handshake workers: the size of the warm pool, which is also the most handshakes of each
   * direction that run at once (outgoing and incoming apart); excess handshakes wait in order,
   * up to {@link NodeOptions.maxQueuedHandshakes}. `false` runs handshakes in the calling
   * isolate instead, at most 16 at once per direction. Default: the number of CPU cores, at
   * most 4 (more workers than cores only add start-up time).
   */
  workers?: number | false;
  /**
   * The most handshakes of each direction that wait for a slot. Beyond it an accepted
   * connection is closed at once (failure event TRANSIENT "too many queued handshakes (N)")
   * and {@link InterconnectNode.connect} rejects with a {@link HandshakeError} of that class
   * and explanation. 0 means no waiting at all. Default 1024 (a storm of 1,000 peers all get in).
   */
  maxQueuedHandshakes?: number;
  /**
   * The most accepted connections in admission at once (their initial packet not yet read and
   * judged). Beyond it an accepted connection is closed at once, failure event TRANSIENT
   * "too many connections in admission (N)" with peer node 0, so peers that connect and say
   * nothing hold at most this many sockets, each until the deadline. Default 4096.
   */
  maxAdmitting?: number;
  /**
   * Run workers in Deno's permission sandbox. Needs `--unstable-worker-options` on the command
   * line (without it Deno exits the process). Default false.
   */
  workerSandbox?: boolean;
  /** Nameservice; default: the static table of the config. */
  nameservice?: Nameservice;
  /** HoldByError backoff; default 10 ms x4 capped at 10 s. */
  backoff?: BackoffOptions;
  /** Own ProgramPID / ProgramStartTime; default: the process id and start time. */
  program?: { pid: bigint; startTime: bigint };
}

/**
 * What a node's handshakes are doing now (see {@link InterconnectNode.handshakeLoad}). The
 * bounds: `running` never exceeds the slots per direction, `queued` never exceeds
 * `maxQueuedHandshakes` per direction, and every accepted connection, whatever its stage, is
 * closed by the handshake deadline counted from its accept.
 */
export interface HandshakeLoad {
  /** Accepted connections whose initial packet is being read or that are being refused. */
  readonly admitting: number;
  /** The bound on `admitting` ({@link NodeOptions.maxAdmitting}). */
  readonly maxAdmitting: number;
  /** Handshakes holding a slot, per direction. */
  readonly running: DirectionCounts;
  /** Handshakes waiting for a slot, per direction. */
  readonly queued: DirectionCounts;
  /** The slots per direction (the worker pool's sizes). */
  readonly slots: DirectionCounts;
  /** The queue bound per direction. */
  readonly maxQueued: number;
}

interface Waiter {
  resolve(s: SessionImpl): void;
  reject(e: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

class Handle implements HandshakeHandle {
  readonly abort = new AbortController();
  constructor(readonly direction: "incoming" | "outgoing", readonly continuation: boolean) {}
  poison(): void {
    this.abort.abort();
  }
}

interface Peer {
  readonly nodeId: number;
  readonly proxy: PeerProxy;
  session: SessionImpl | undefined;
  waiters: Waiter[];
  outgoing: Handle | undefined;
  wakeTimer: ReturnType<typeof setTimeout> | undefined;
  lastError: HandshakeError | undefined;
  /**
   * Our dial failed while the peer's dial to us was still running: the waiters wait for that
   * one instead (its session is theirs), and get this error only if it fails too.
   */
  deferredError: HandshakeError | undefined;
}

/**
 * A session with one peer: the connection after the handshake and what was negotiated. The
 * session survives reconnects: after {@link Session.resume} its virtual ids stay and its
 * `readable` / `writable` are those of the new connection (get them again after a resume).
 */
export interface Session {
  /** Who dialed the connection that created the session. */
  readonly direction: "incoming" | "outgoing";
  /** The peer's node id. */
  readonly peerNodeId: number;
  /** This side's virtual id (SessionVirtualId). */
  readonly selfVirtualId: ActorId;
  /** The peer's virtual id (RemoteSessionVirtualId). */
  readonly peerVirtualId: ActorId;
  /** The peer's NextPacket from its initial packet in the last handshake. */
  readonly nextPacketFromPeer: bigint;
  /** Negotiated parameters. */
  readonly params: SessionParams;
  /** The peer's program info (PID, StartTime, Serial) from the new-session handshake. */
  readonly program: ProgramInfo | null;
  /** Bytes from the peer on the current connection (TLS plaintext when encryption is on). */
  readonly readable: ReadableStream<Uint8Array>;
  /** Bytes to the peer on the current connection. */
  readonly writable: WritableStream<Uint8Array>;
  /** True once the session was closed or replaced by a new one. */
  readonly closed: boolean;
  /**
   * Drops the current connection and runs a continuation handshake on a new one. Resolves
   * with this session (same virtual ids) on Ack, or with a new session when the peer had
   * forgotten this one (SESSION_MISMATCH, then a new-session handshake).
   */
  resume(): Promise<Session>;
  /** Closes the connection and forgets the session. */
  close(): void;
}

interface SessionHooks {
  resume(s: SessionImpl): Promise<Session>;
  forget(s: SessionImpl): void;
}

class SessionImpl implements Session {
  #node: SessionHooks;
  #connection: Connection;
  #done: HandshakeDone;
  #closed = false;

  constructor(
    node: SessionHooks,
    readonly direction: "incoming" | "outgoing",
    connection: Connection,
    done: HandshakeDone,
  ) {
    this.#node = node;
    this.#connection = connection;
    this.#done = done;
  }

  /** The peer's node id. */
  get peerNodeId(): number {
    return this.#done.peerNodeId;
  }

  /** This side's virtual id (SessionVirtualId). */
  get selfVirtualId(): ActorId {
    return this.#done.selfVirtualId;
  }

  /** The peer's virtual id (RemoteSessionVirtualId). */
  get peerVirtualId(): ActorId {
    return this.#done.peerVirtualId;
  }

  /** The peer's NextPacket from its initial packet in the last handshake. */
  get nextPacketFromPeer(): bigint {
    return this.#done.nextPacketFromPeer;
  }

  /** Negotiated parameters. */
  get params(): SessionParams {
    return this.#done.params;
  }

  /** The peer's program info (PID, StartTime, Serial) from the new-session handshake. */
  get program(): ProgramInfo | null {
    return this.#done.programInfo;
  }

  /** Bytes from the peer (TLS plaintext when encryption stays on). */
  get readable(): ReadableStream<Uint8Array> {
    return this.#connection.dataStreams().readable;
  }

  /** Bytes to the peer. */
  get writable(): WritableStream<Uint8Array> {
    return this.#connection.dataStreams().writable;
  }

  /** True once the session was closed or replaced by a new one. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Drops the current connection and runs a continuation handshake on a new one. Resolves with
   * this session (same virtual ids) on Ack, or with a new session when the peer had forgotten
   * this one (SESSION_MISMATCH, then a new-session handshake).
   */
  resume(): Promise<Session> {
    return this.#node.resume(this);
  }

  /** Closes the connection and forgets the session. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#connection.close();
    this.#node.forget(this);
  }

  attach(connection: Connection, done: HandshakeDone): void {
    if (connection !== this.#connection) this.#connection.close();
    this.#connection = connection;
    this.#done = { ...done, programInfo: this.#done.programInfo };
  }

  detach(): void {
    this.#connection.close();
  }

  markClosed(): void {
    this.#closed = true;
    this.#connection.close();
  }

  get done(): HandshakeDone {
    return this.#done;
  }
}

/**
 * An interconnect node: listener, dialer, per-peer proxies and sessions.
 *
 * Resource bounds (see {@link InterconnectNode.handshakeLoad} for the live figures):
 *
 * - **Admission.** An accepted connection first has its 52-byte initial packet read into a
 *   52-byte buffer in this isolate, judged (CRC, version, node id 0) and its sender looked up
 *   in the nameservice; a failure is reported and the socket closed without using a worker or
 *   a queue place. A sender outside the node table gets the error reply "Peer node not
 *   registered in nameservice" at once (see `admission.ts` for this deviation from YDB's order).
 *   At most `maxAdmitting` (default 4096) connections are in admission at once; one more is
 *   closed at accept (failure event TRANSIENT "too many connections in admission (N)").
 * - **Concurrency.** At most `workers` handshakes run at once per direction (incoming and
 *   outgoing apart); 16 per direction with `workers: false`.
 * - **Queue.** At most `maxQueuedHandshakes` (default 1024) more wait per direction, in order;
 *   beyond it an accepted connection is closed at once (failure event TRANSIENT "too many
 *   queued handshakes (N)") and `connect()` rejects with a {@link HandshakeError} saying so. A
 *   queued handshake holds only its socket: nothing is read from it until it runs.
 * - **Deadline.** Every handshake ends by `handshakeTimeoutMs` + 2 s (3 s by default), counted
 *   from the accept (incoming) or the dial (outgoing), admission and queue included; a
 *   handshake still queued then fails TRANSIENT "Handshake timed out, State# Queued".
 * - **Memory per handshake.** The largest read is one ExBlock: an 8-byte header whose size is
 *   checked against 1 MiB before anything is read for the payload, then at most 1 MiB, which
 *   the reader collects from the socket's chunks as they arrive (nothing is allocated up front
 *   for an announced size). TLS records are at most 18 KiB. So a running handshake holds a few
 *   MiB at most (the payload's chunks, their contiguous copy, the decoded message) besides its
 *   worker, and only running handshakes read anything.
 */
export class InterconnectNode implements AsyncDisposable {
  /** The validated configuration the node runs with. */
  readonly config: NodeConfig;
  readonly #settings: HandshakeSettings;
  readonly #executor: HandshakeExecutor;
  readonly #nameservice: Nameservice;
  readonly #tls: TlsStarter | undefined;
  readonly #ids = new VirtualIdAllocator();
  readonly #peers = new Map<number, Peer>();
  readonly #connections = new Set<Connection>();
  readonly #handles = new Set<Handle>();
  readonly #running = new Set<Promise<unknown>>();
  /** Accepted sockets in admission (before a Connection wraps them). */
  readonly #admitting = new Set<Deno.TcpConn>();
  /** Aborted by close(): ends the accept loop's back-off pause. */
  readonly #stop = new AbortController();
  readonly #sessionListeners = new Set<(s: Session) => void>();
  readonly #handshakeListeners = new Set<(e: HandshakeEvent) => void>();
  readonly #backoff: BackoffOptions;
  readonly #maxAdmitting: number;
  readonly #log: Logger;
  #listener: Deno.TcpListener | undefined;
  #closing = false;

  private constructor(config: NodeConfig, options: NodeOptions) {
    this.config = config;
    const workers = options.workers ?? DEFAULT_WORKERS;
    const maxQueued = options.maxQueuedHandshakes ?? DEFAULT_MAX_QUEUED_HANDSHAKES;
    if (!Number.isInteger(maxQueued) || maxQueued < 0) {
      throw new RangeError(`maxQueuedHandshakes# ${maxQueued} is not an integer >= 0`);
    }
    const maxAdmitting = options.maxAdmitting ?? DEFAULT_MAX_ADMITTING;
    if (!Number.isInteger(maxAdmitting) || maxAdmitting < 1) {
      throw new RangeError(`maxAdmitting# ${maxAdmitting} is not an integer >= 1`);
    }
    this.#maxAdmitting = maxAdmitting;
    // Everything that can throw comes before the workers start, so a bad config leaks none.
    this.#nameservice = options.nameservice ?? new StaticNameservice(config.nodes);
    this.#tls = config.tls
      ? tlsStarter(
        createTlsContext({ cert: config.tls.cert, key: config.tls.key, ca: config.tls.ca }),
      )
      : undefined;
    this.#executor = workers === false
      ? new InlineExecutor({ maxQueued })
      : new WorkerExecutor({ size: workers, sandbox: options.workerSandbox ?? false, maxQueued });
    this.#backoff = options.backoff ?? {};
    this.#log = getLogger(["ic-handshake", "node"]);
    const self = config.nodes.find((n) => n.nodeId === config.nodeId)!;
    this.#settings = {
      selfNodeId: config.nodeId,
      selfHostName: self.host,
      programPid: options.program?.pid ?? BigInt(Deno.pid),
      programStartTime: options.program?.startTime ??
        BigInt(Math.round(performance.timeOrigin * 1000)),
      clusterUUID: config.clusterUUID ?? "",
      acceptUUID: config.acceptUUID ?? [],
      versionTag: config.versionTag,
      acceptedVersionTags: config.acceptedVersionTags ?? [],
      cookie: config.cookie ?? "",
      scopeId: config.scopeId ? [BigInt(config.scopeId[0]), BigInt(config.scopeId[1])] : [0n, 0n],
      encryption: config.encryption ?? "disabled",
      tlsAuthOnly: config.tls?.authOnly ?? false,
      ballastSize: config.ballastSize ?? 0,
      handshakeTimeoutMs: config.handshakeTimeoutMs ?? 1000,
    };
  }

  /**
   * Validates `config`, then starts the node (listening when `config.listen` is set).
   * @throws {ConfigError} naming the bad key and value; {@link TlsError} `bad_credentials`
   * when the TLS material does not load.
   */
  static start(config: NodeConfig, options: NodeOptions = {}): InterconnectNode {
    const valid = validateConfig(config);
    const node = new InterconnectNode(valid, options);
    if (valid.listen) {
      try {
        node.#listen(valid.listen);
      } catch (e) {
        // The port is taken or the host unknown: stop the workers before reporting it.
        node.close().catch(() => {});
        throw e;
      }
    }
    return node;
  }

  /** Resolves once the handshake workers have started (the pool is warm). */
  ready(): Promise<void> {
    return this.#executor.warm();
  }

  /**
   * What the node's handshakes are doing now: connections in admission, handshakes running and
   * queued per direction, and the bounds they run under.
   */
  get handshakeLoad(): HandshakeLoad {
    const load = this.#executor.load;
    return {
      admitting: this.#admitting.size,
      maxAdmitting: this.#maxAdmitting,
      running: load.running,
      queued: load.queued,
      slots: this.#executor.concurrency,
      maxQueued: this.#executor.maxQueued,
    };
  }

  /** Own node id. */
  get nodeId(): number {
    return this.config.nodeId;
  }

  /** The bound listen address (with the real port when the config said 0). */
  get listenAddress(): { hostname: string; port: number } | undefined {
    const a = this.#listener?.addr;
    return a ? { hostname: a.hostname, port: a.port } : undefined;
  }

  /** Calls `listener` with every new session, incoming or outgoing. Returns an unsubscribe. */
  onSession(listener: (session: Session) => void): () => void {
    this.#sessionListeners.add(listener);
    return () => this.#sessionListeners.delete(listener);
  }

  /** Calls `listener` with every finished handshake. Returns an unsubscribe function. */
  onHandshake(listener: (event: HandshakeEvent) => void): () => void {
    this.#handshakeListeners.add(listener);
    return () => this.#handshakeListeners.delete(listener);
  }

  /** The live session with `peerNodeId`, if any. */
  session(peerNodeId: number): Session | undefined {
    const s = this.#peers.get(peerNodeId)?.session;
    return s && !s.closed ? s : undefined;
  }

  /**
   * A session with `peerNodeId`: the live one, or a new one from an outgoing handshake.
   * Rejects with {@link HandshakeError} when the handshake fails, or at once while the peer is
   * held in the error state after a permanent failure (backoff).
   */
  async connect(peerNodeId: number): Promise<Session> {
    if (this.#closing) throw new Error("node is closed");
    if (peerNodeId === this.nodeId) throw new RangeError(`node ${peerNodeId} is this node`);
    const info = await this.#nameservice.nodeInfo(peerNodeId);
    if (!info) throw new RangeError(`node ${peerNodeId} is not in the node table`);
    const peer = this.#peer(peerNodeId, info.host);
    const live = this.session(peerNodeId);
    if (live) return live;
    if (peer.proxy.state === "HoldByError" && peer.lastError) throw peer.lastError;
    const waiting = this.#wait(peer);
    if (!peer.outgoing) this.#dial(peer, false);
    return await waiting;
  }

  readonly #sessionHooks: SessionHooks = {
    resume: (s) => this.#resumeSession(s),
    forget: (s) => this.#forgetSession(s),
  };

  async #resumeSession(session: SessionImpl): Promise<Session> {
    if (this.#closing) throw new Error("node is closed");
    const peer = this.#peers.get(session.peerNodeId);
    if (!peer || peer.session !== session) throw new Error("session is no longer current");
    session.detach();
    const waiting = this.#wait(peer);
    if (!peer.outgoing) this.#dial(peer, true);
    return await waiting;
  }

  #forgetSession(session: SessionImpl): void {
    const peer = this.#peers.get(session.peerNodeId);
    if (peer?.session === session) {
      peer.session = undefined;
      peer.proxy.session = undefined;
    }
  }

  /** Stops listening, ends every handshake and connection. */
  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    this.#stop.abort();
    try {
      this.#listener?.close();
    } catch {
      // already closed
    }
    for (const conn of this.#admitting) {
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
    for (const h of this.#handles) h.poison();
    for (const peer of this.#peers.values()) {
      clearTimeout(peer.wakeTimer);
      for (const w of peer.waiters.splice(0)) {
        clearTimeout(w.timer);
        w.reject(new Error("node is closed"));
      }
      peer.session?.markClosed();
    }
    for (const c of this.#connections) c.close();
    while (this.#running.size > 0) await Promise.allSettled([...this.#running]);
    await this.#executor.close();
  }

  /** Same as {@link InterconnectNode.close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  // -----------------------------------------------------------------------------------------

  #track<T>(p: Promise<T>): void {
    const q = p.catch((e) => this.#log.error("internal error: {error}", { error: String(e) }))
      .finally(() => this.#running.delete(q));
    this.#running.add(q);
  }

  #peer(nodeId: number, host: string): Peer {
    let p = this.#peers.get(nodeId);
    if (!p) {
      p = {
        nodeId,
        proxy: new PeerProxy(this.nodeId, nodeId, host, this.#ids, {
          terminateSession: () => {
            const s = p!.session;
            if (s) s.detach();
          },
          log: (code, text) => this.#log.debug(`${code} ${text}`.replaceAll("{", "{{")),
        }, this.#backoff),
        session: undefined,
        waiters: [],
        outgoing: undefined,
        wakeTimer: undefined,
        lastError: undefined,
        deferredError: undefined,
      };
      this.#peers.set(nodeId, p);
    }
    return p;
  }

  #wait(peer: Peer): Promise<SessionImpl> {
    return new Promise<SessionImpl>((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        // Queued work expires instead of waiting forever.
        timer: setTimeout(() => {
          peer.waiters = peer.waiters.filter((w) => w !== waiter);
          reject(new HandshakeError("transient", "timed out waiting for a session", peer.nodeId));
        }, handshakeDeadlineMs(this.#settings) + 1000),
      };
      peer.waiters.push(waiter);
    });
  }

  #settleWaiters(peer: Peer, result: SessionImpl | Error): void {
    peer.deferredError = undefined;
    for (const w of peer.waiters.splice(0)) {
      clearTimeout(w.timer);
      if (result instanceof SessionImpl) w.resolve(result);
      else w.reject(result);
    }
  }

  #listen(addr: { host: string; port: number }): void {
    this.#listener = Deno.listen({ hostname: addr.host, port: addr.port, transport: "tcp" });
    const listener = this.#listener;
    this.#track((async () => {
      for (;;) {
        let conn: Deno.TcpConn;
        try {
          conn = await listener.accept();
        } catch (e) {
          if (this.#closing) return;
          // E.g. EMFILE: the pending connection stays in the backlog, so retrying at once would
          // spin. YDB re-binds after 1 s (ICL06); a short pause is enough here.
          this.#log.warn("ICL06 accept failed: {error}", { error: String(e) });
          await this.#pause(ACCEPT_RETRY_MS);
          continue;
        }
        if (this.#closing) {
          conn.close();
          return;
        }
        if (this.#admitting.size >= this.#maxAdmitting) {
          this.#refuseAdmission(conn);
          continue;
        }
        this.#track(this.#incoming(conn));
      }
    })());
  }

  /** Closes an accepted connection at once because admission is full, and reports it. */
  #refuseAdmission(conn: Deno.TcpConn): void {
    let peerAddress = "<unknown>";
    try {
      peerAddress = addressLabel(conn.remoteAddr);
    } catch {
      // keep the placeholder
    }
    try {
      conn.close();
    } catch {
      // already closed
    }
    const explanation = `too many connections in admission (${this.#maxAdmitting})`;
    this.#failed(new Handle("incoming", false), 0, {
      class: "transient",
      explanation,
      message: formatFailureMessage(
        "incoming handshake",
        undefined,
        peerAddress,
        false,
        explanation,
      ),
      network: false,
      errorReplySent: false,
    }, 0);
  }

  /** Waits `ms`, or less when the node closes. */
  #pause(ms: number): Promise<void> {
    const signal = this.#stop.signal;
    if (signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener("abort", done, { once: true });
    });
  }

  #connection(conn: Deno.TcpConn): Connection {
    const c = Connection.fromDenoConn(conn, this.#tls);
    this.#connections.add(c);
    const close = c.close.bind(c);
    c.close = () => {
      this.#connections.delete(c);
      close();
    };
    return c;
  }

  #env(handle: Handle): HandshakeEnvironment {
    return {
      resolve: (nodeId, signal) => this.#nameservice.resolve(nodeId, signal),
      nodeInfo: (nodeId) => this.#nameservice.nodeInfo(nodeId),
      connect: async (address) => {
        if (this.#closing) throw new Error("node is closed");
        const conn = await Deno.connect({
          hostname: address.address,
          port: address.port,
          transport: "tcp",
        });
        return this.#connection(conn);
      },
      continuation: async (ask) => {
        const info = await this.#nameservice.nodeInfo(ask.self.nodeId);
        if (!info) return { kind: "nak" };
        return this.#peer(ask.self.nodeId, info.host).proxy.continuation(handle, ask);
      },
      newSession: async (peerNodeId, request) => {
        const info = await this.#nameservice.nodeInfo(peerNodeId);
        if (!info) return { kind: "error", explanation: "cannot get node info" };
        return this.#peer(peerNodeId, info.host).proxy.newSession(handle, request);
      },
    };
  }

  /**
   * An accepted connection: admission (the initial packet, read and judged here), then a place
   * in the incoming queue, then the handshake; all by one deadline counted from the accept.
   */
  async #incoming(conn: Deno.TcpConn): Promise<void> {
    const started = performance.now();
    const deadlineAt = started + handshakeDeadlineMs(this.#settings);
    const handle = new Handle("incoming", false);
    let peerAddress = "<unknown>";
    try {
      peerAddress = addressLabel(conn.remoteAddr);
    } catch {
      // keep the placeholder
    }
    this.#admitting.add(conn);
    try {
      const admission = await admit(conn, peerAddress, {
        deadlineAt,
        nodeInfo: (nodeId) => this.#nameservice.nodeInfo(nodeId),
        closing: () => this.#closing,
      });
      if (admission.kind !== "admitted") {
        if (admission.kind === "rejected" && !this.#closing) {
          this.#failed(
            handle,
            admission.peerNodeId,
            admission.failure,
            performance.now() - started,
          );
        }
        const reply = admission.kind === "closed" || this.#closing ? undefined : admission.reply;
        await dismiss(conn, reply, deadlineAt);
        return;
      }
      if (this.#closing) {
        await dismiss(conn, undefined, deadlineAt);
        return;
      }
      this.#admitting.delete(conn);
      const connection = this.#connection(conn);
      // The handshake reads the initial packet again, from the reader, as if never taken.
      connection.reader.unread(admission.bytes);
      this.#handles.add(handle);
      try {
        const outcome = await this.#executor.incoming(
          this.#settings,
          this.#env(handle),
          connection,
          {
            signal: handle.abort.signal,
            deadlineAt,
            peerNodeId: admission.packet.selfVirtualId.nodeId,
          },
        );
        // The coordinator-side failures of a worker (deadline) may not know the peer's id yet;
        // admission read it from the initial packet.
        const known = outcome.kind === "failed" && outcome.peerNodeId === 0
          ? { ...outcome, peerNodeId: admission.packet.selfVirtualId.nodeId }
          : outcome;
        this.#outcome(handle, known, started, connection);
      } finally {
        this.#handles.delete(handle);
      }
    } finally {
      this.#admitting.delete(conn);
    }
  }

  #dial(peer: Peer, resume: boolean): void {
    const s = resume ? peer.session : undefined;
    const handle = new Handle("outgoing", s !== undefined);
    peer.outgoing = handle;
    this.#handles.add(handle);
    // The proxy learns of the outgoing handshake only when it leaves the queue: a queued dial
    // must not make the tie-break hold an incoming answer, or a held answer can occupy the
    // incoming slot that the peer's own handshake needs, until the deadline.
    const onStart = () => {
      if (this.#closing || handle.abort.signal.aborted) return false;
      // An incoming handshake made (or replaced) the session meanwhile: this dial is moot.
      if (peer.session && peer.session !== s) return false;
      peer.proxy.startOutgoing(handle, s === undefined);
      return true;
    };
    const params: OutgoingParams = s
      ? {
        peerNodeId: peer.nodeId,
        peerHostName: peer.proxy.peerHostName,
        selfVirtualId: s.selfVirtualId,
        peerVirtualId: s.peerVirtualId,
        nextPacket: peer.proxy.session?.lastInputSerial ?? 0n,
        sessionParams: s.params,
      }
      : {
        peerNodeId: peer.nodeId,
        peerHostName: peer.proxy.peerHostName,
        selfVirtualId: this.#ids.next(this.nodeId),
        peerVirtualId: ActorId.EMPTY,
        nextPacket: 0n,
      };
    const started = performance.now();
    this.#track((async () => {
      try {
        const outcome = await this.#executor.outgoing(
          this.#settings,
          this.#env(handle),
          params,
          {
            signal: handle.abort.signal,
            deadlineAt: started + handshakeDeadlineMs(this.#settings),
            onStart,
          },
        );
        this.#outcome(handle, outcome, started, undefined);
      } finally {
        this.#handles.delete(handle);
        if (peer.outgoing === handle) peer.outgoing = undefined;
      }
    })());
  }

  #outcome(
    handle: Handle,
    outcome: HandshakeOutcome,
    started: number,
    incomingConnection: Connection | undefined,
  ): void {
    const durationMs = performance.now() - started;
    if (outcome.kind === "silent") {
      incomingConnection?.close();
      const peer = this.#peers.get(outcome.peerNodeId);
      // A poisoned incoming handshake that waiters were left waiting for: nothing will make
      // their session now, so they get their own dial's failure.
      if (peer?.deferredError && !this.#handshakeRunning(peer)) {
        this.#settleWaiters(peer, peer.deferredError);
      }
      return;
    }
    if (outcome.kind === "failed") {
      incomingConnection?.close();
      this.#failed(handle, outcome.peerNodeId, outcome.failure, durationMs);
      return;
    }
    const connection = outcome.transport as Connection;
    const done = outcome.done;
    const peer = this.#peers.get(done.peerNodeId);
    if (!peer || this.#closing) {
      connection.close();
      return;
    }
    if (peer.outgoing === handle) peer.outgoing = undefined;
    const step = peer.proxy.done(handle, done);
    this.#step(peer, step, handle, connection, done, durationMs);
  }

  #step(
    peer: Peer,
    step: ProxyStep,
    handle: Handle,
    connection: Connection | undefined,
    done: HandshakeDone | undefined,
    durationMs: number,
  ): void {
    switch (step.kind) {
      case "session_created": {
        const previous = peer.session;
        const session = new SessionImpl(this.#sessionHooks, handle.direction, connection!, done!);
        if (previous && previous !== session) previous.markClosed();
        peer.session = session;
        peer.lastError = undefined;
        this.#emitHandshake({
          direction: handle.direction,
          ok: true,
          peerNodeId: peer.nodeId,
          continuation: false,
          durationMs,
          session,
          program: done!.programInfo,
        });
        for (const l of this.#sessionListeners) l(session);
        this.#settleWaiters(peer, session);
        return;
      }
      case "session_resumed": {
        const session = peer.session!;
        session.attach(connection!, done!);
        peer.lastError = undefined;
        this.#emitHandshake({
          direction: handle.direction,
          ok: true,
          peerNodeId: peer.nodeId,
          continuation: true,
          durationMs,
          session,
          program: null,
        });
        this.#settleWaiters(peer, session);
        return;
      }
      case "dial_new":
        connection?.close();
        if (peer.session) {
          peer.session.markClosed();
          peer.session = undefined;
        }
        if (!peer.outgoing && !this.#closing) this.#dial(peer, false);
        return;
      case "dial_resume":
        connection?.close();
        if (peer.waiters.length > 0 && !peer.outgoing && !this.#closing) this.#dial(peer, true);
        return;
      case "hold_by_error": {
        connection?.close();
        if (peer.session) {
          peer.session.markClosed();
          peer.session = undefined;
        }
        const error = new HandshakeError("permanent", step.explanation, peer.nodeId);
        peer.lastError = error;
        this.#settleWaiters(peer, error);
        clearTimeout(peer.wakeTimer);
        peer.wakeTimer = setTimeout(() => {
          peer.wakeTimer = undefined;
          peer.proxy.wake();
        }, step.sleepMs);
        return;
      }
      case "none":
        connection?.close();
        return;
    }
  }

  #failed(handle: Handle, peerNodeId: number, failure: HandshakeFailure, durationMs: number): void {
    this.#emitHandshake({
      direction: handle.direction,
      ok: false,
      peerNodeId,
      continuation: handle.continuation,
      durationMs,
      failure: failure.class,
      explanation: failure.explanation,
    });
    const peer = this.#peers.get(peerNodeId);
    if (!peer) return;
    if (peer.outgoing === handle) peer.outgoing = undefined;
    const step = peer.proxy.fail(handle, failure);
    if (step.kind === "none") {
      const error = new HandshakeError(failure.class, failure.explanation, peerNodeId);
      if (this.#handshakeRunning(peer)) {
        // In a simultaneous dial our dial may fail first (the peer dropped it) while the peer's
        // dial to us is about to make the session: YDB drops the queued messages here, but a
        // caller of connect() is better served by that session.
        if (handle.direction === "outgoing") peer.deferredError = error;
      } else if (handle.direction === "outgoing" || peer.deferredError) {
        // Our dial failed and nothing else runs, or the peer's dial that the waiters were left
        // waiting for failed too: they learn why their own dial failed.
        this.#settleWaiters(peer, handle.direction === "outgoing" ? error : peer.deferredError!);
      }
    }
    if (step.kind === "hold_by_error") {
      // Keep the class of the failure that led here for the waiters.
      this.#step(peer, step, handle, undefined, undefined, durationMs);
      return;
    }
    if (step.kind === "dial_resume" && handle.direction === "outgoing") {
      // Our own resume failed on the network: report it rather than redial in a tight loop;
      // the caller decides when to try again (Session.resume()).
      this.#settleWaiters(peer, new HandshakeError(failure.class, failure.explanation, peerNodeId));
      return;
    }
    this.#step(peer, step, handle, undefined, undefined, durationMs);
  }

  /** True while a dial of ours (queued or running) or a handshake the proxy knows is under way. */
  #handshakeRunning(peer: Peer): boolean {
    return peer.outgoing !== undefined || peer.proxy.incoming !== undefined ||
      peer.proxy.outgoing !== undefined;
  }

  #emitHandshake(event: HandshakeEvent): void {
    for (const l of this.#handshakeListeners) {
      try {
        l(event);
      } catch (e) {
        this.#log.error("handshake listener threw: {error}", { error: String(e) });
      }
    }
  }
}
