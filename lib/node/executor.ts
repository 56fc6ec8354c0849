/**
 * Where handshake procedures run. The node hands an executor a main-side environment and
 * main-side transports; the executor runs the procedure (in this isolate, or in a pooled
 * worker) and resolves with its outcome. Either way the sockets stay with the coordinator.
 * @module
 */
import {
  runIncomingHandshake,
  type RunOptions,
  runOutgoingHandshake,
} from "../handshake/handshake.ts";
import type {
  HandshakeEnvironment,
  HandshakeOutcome,
  HandshakeSettings,
  HandshakeTransport,
  OutgoingParams,
} from "../handshake/types.ts";
import { HandshakeWorkerPool, type HandshakeWorkerPoolOptions } from "../worker/host.ts";

/** Runs handshake procedures. */
export interface HandshakeExecutor {
  outgoing(
    settings: HandshakeSettings,
    env: HandshakeEnvironment,
    params: OutgoingParams,
    options: RunOptions,
  ): Promise<HandshakeOutcome>;
  incoming(
    settings: HandshakeSettings,
    env: HandshakeEnvironment,
    transport: HandshakeTransport,
    options: RunOptions,
  ): Promise<HandshakeOutcome>;
  /** Resolves once the executor can run a handshake without start-up delay. */
  warm(): Promise<void>;
  close(): Promise<void>;
}

/** Runs every handshake in the calling isolate (no workers). */
export class InlineExecutor implements HandshakeExecutor {
  outgoing(
    settings: HandshakeSettings,
    env: HandshakeEnvironment,
    params: OutgoingParams,
    options: RunOptions,
  ): Promise<HandshakeOutcome> {
    return runOutgoingHandshake(settings, env, params, options);
  }

  incoming(
    settings: HandshakeSettings,
    env: HandshakeEnvironment,
    transport: HandshakeTransport,
    options: RunOptions,
  ): Promise<HandshakeOutcome> {
    return runIncomingHandshake(settings, env, transport, options);
  }

  warm(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** Runs every handshake in a pooled Web Worker; sockets stay in the calling isolate. */
export class WorkerExecutor implements HandshakeExecutor {
  readonly pool: HandshakeWorkerPool;

  constructor(options: HandshakeWorkerPoolOptions = {}) {
    this.pool = new HandshakeWorkerPool(options);
  }

  outgoing(
    settings: HandshakeSettings,
    env: HandshakeEnvironment,
    params: OutgoingParams,
    options: RunOptions,
  ): Promise<HandshakeOutcome> {
    return this.pool.run({
      kind: "outgoing",
      settings,
      env,
      params,
      signal: options.signal,
      deadlineMs: options.deadlineMs,
    });
  }

  incoming(
    settings: HandshakeSettings,
    env: HandshakeEnvironment,
    transport: HandshakeTransport,
    options: RunOptions,
  ): Promise<HandshakeOutcome> {
    return this.pool.run({
      kind: "incoming",
      settings,
      env,
      transport,
      signal: options.signal,
      deadlineMs: options.deadlineMs,
    });
  }

  warm(): Promise<void> {
    return this.pool.warm();
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}
