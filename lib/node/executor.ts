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

  close(): Promise<void> {
    return Promise.resolve();
  }
}
