/**
 * Entry of a handshake worker: wires the worker's global scope to {@link HandshakeGuest}.
 * Started by the coordinator's `HandshakeWorkerPool`; it posts `ready` once loaded, then runs
 * the handshakes it is given, one at a time. All logic lives in `lib/worker/guest.ts`.
 * @module
 */
/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />
import { HandshakeGuest } from "../lib/worker/guest.ts";
import type { ToWorker } from "../lib/worker/protocol.ts";

const guest = new HandshakeGuest((message, transfer) => self.postMessage(message, transfer ?? []));
self.onmessage = (event: MessageEvent<ToWorker>) => guest.handle(event.data);
self.postMessage({ type: "ready" });
