/**
 * The per-peer proxy's decisions (spec 6): one {@link PeerProxy} per peer node id. It answers
 * the incoming handshakes' questions (continuation Ack / Nak, new-session ReplyOK / ReplyError /
 * poison), applies the simultaneous-dial tie-break by holding answers, keeps the session
 * record, and turns each handshake outcome into the next step (create or re-attach the
 * session, resume, redial, or back off). It does no I/O: the coordinator carries out the steps.
 * @module
 */
import type { ActorId } from "../wire/actor_id.ts";
import type { HandshakeRequest } from "../wire/messages.ts";
import type { HandshakeFailure } from "../handshake/failure.ts";
import type {
  ContinuationAsk,
  ContinuationDecision,
  HandshakeDone,
  NewSessionDecision,
  ProgramInfo,
  SessionParams,
} from "../handshake/types.ts";
import { type BackoffOptions, ErrorBackoff } from "./backoff.ts";
import type { VirtualIdAllocator } from "./virtual_id.ts";

/** One running handshake as the proxy knows it. */
export interface HandshakeHandle {
  readonly direction: "incoming" | "outgoing";
  /** Ends the handshake silently (PoisonPill): its socket closes without a reply. */
  poison(reason: string): void;
}

/** The session record (SessionVirtualId, RemoteSessionVirtualId, params, input serial). */
export interface SessionRecord {
  readonly selfVirtualId: ActorId;
  readonly peerVirtualId: ActorId;
  readonly params: SessionParams;
  /** Serial of the last data packet processed from the peer (NextPacket we send). */
  lastInputSerial: bigint;
}

/** What the coordinator should do next after an outcome. */
export type ProxyStep =
  | { readonly kind: "none"; readonly why: string }
  | { readonly kind: "session_created"; readonly session: SessionRecord }
  | { readonly kind: "session_resumed"; readonly session: SessionRecord }
  | { readonly kind: "dial_new" }
  | { readonly kind: "dial_resume" }
  | { readonly kind: "hold_by_error"; readonly sleepMs: number; readonly explanation: string };

/** Hooks into the coordinator. */
export interface PeerProxyHooks {
  /** The session must drop its connection (reason "NewSession", "HandshakeFailPermanent", ...). */
  terminateSession?(reason: string): void;
  /** A log line with a proxy code (ICPxx). */
  log?(code: string, text: string): void;
}

/** Proxy states of spec 6.1 that matter here. */
export type ProxyState = "PendingActivation" | "PendingConnection" | "StateWork" | "HoldByError";

interface IncomingSlot {
  readonly handle: HandshakeHandle;
  /** L of spec 6.2: 0 for a new-session handshake, the peer's session LocalId on continuation. */
  readonly lastSerial: bigint;
  /** The answer held by the tie-break, and how to deliver it. */
  held?: { release: () => void; drop: () => void };
}

/** The decisions of one peer's proxy. */
export class PeerProxy {
  state: ProxyState = "PendingActivation";
  session: SessionRecord | undefined;
  /** Remembered RemoteProgramInfo of the peer (spec 6.2 rule 1). */
  remoteProgram: ProgramInfo | undefined;
  outgoing: HandshakeHandle | undefined;
  incoming: IncomingSlot | undefined;
  /** Set while in HoldByError: the time (ms since epoch) the error state ends. */
  holdUntil = 0;
  readonly backoff: ErrorBackoff;

  constructor(
    readonly selfNodeId: number,
    readonly peerNodeId: number,
    /** TechnicalPeerHostName: the peer's `Host` in our node table. */
    readonly peerHostName: string,
    readonly ids: VirtualIdAllocator,
    readonly hooks: PeerProxyHooks = {},
    backoff: BackoffOptions = {},
  ) {
    this.backoff = new ErrorBackoff(backoff);
  }

  #log(code: string, text: string): void {
    this.hooks.log?.(code, `Proxy [node ${this.peerNodeId}] ${text}`);
  }

  /** Registers an outgoing handshake the coordinator started (dropping the previous one). */
  startOutgoing(handle: HandshakeHandle, newSession: boolean): void {
    if (this.outgoing && this.outgoing !== handle) this.outgoing.poison("replaced");
    if (newSession && this.session) {
      // Starting a new-session handshake terminates the existing session (spec 6.3).
      this.#log("ICP04", "terminating current session for a new one");
      this.hooks.terminateSession?.("NewSession");
      this.session = undefined;
    }
    this.outgoing = handle;
    if (this.state !== "StateWork") this.state = "PendingConnection";
  }

  /** TEvHandshakeAsk → Ack / Nak (spec 1.3 step 4), subject to the hold rule. */
  continuation(handle: HandshakeHandle, ask: ContinuationAsk): Promise<ContinuationDecision> {
    this.#log("ICP09", `Ask received Self# ${ask.self} Peer# ${ask.peer} Counter# ${ask.counter}`);
    const s = this.session;
    if (!s) {
      this.#log("ICP12", "Ask for a nonexistent session");
      return Promise.resolve({ kind: "nak" });
    }
    if (!s.selfVirtualId.equals(ask.peer) || !s.peerVirtualId.equals(ask.self)) {
      this.#log("ICP13", `Ask virtual-id mismatch SessionVirtualId# ${s.selfVirtualId}`);
      return Promise.resolve({ kind: "nak" });
    }
    this.#dropIncoming(handle);
    this.hooks.terminateSession?.("NewSession"); // the session closes its socket, keeps its queue
    const decision: ContinuationDecision = {
      kind: "ack",
      self: s.selfVirtualId,
      nextPacket: s.lastInputSerial,
      params: s.params,
    };
    return this.#answer<ContinuationDecision>(handle, ask.self.localId, decision, {
      kind: "poison",
      reason: "dropped by tie-break",
    });
  }

  /** TEvHandshakeRequest → ReplyOK / ReplyError / poison (spec 6.2), subject to the hold rule. */
  newSession(handle: HandshakeHandle, request: HandshakeRequest): Promise<NewSessionDecision> {
    const serial = request.Serial ?? 0n;
    const pid = request.ProgramPID ?? 0n;
    const startTime = request.ProgramStartTime ?? 0n;
    this.#log("ICP17", `incoming handshake Serial# ${serial}`);
    // 1. remembered program info
    const known = this.remoteProgram;
    if (known && known.pid === pid && known.startTime === startTime) {
      if (serial < known.serial) {
        this.#log("ICP18", `too old Serial# ${serial} < ${known.serial}`);
        return Promise.resolve({ kind: "poison", reason: "too old serial" });
      }
      this.remoteProgram = { pid, startTime, serial };
    } else {
      this.remoteProgram = { pid, startTime, serial };
    }
    // 2. host name
    if (request.SenderHostName !== undefined && request.SenderHostName !== this.peerHostName) {
      return Promise.resolve({ kind: "error", explanation: "host name mismatch" });
    }
    // 3. duplicate / obsolete serial against the in-flight incoming handshake
    if (this.incoming && this.incoming.handle !== handle) {
      const last = this.incoming.lastSerial;
      if (serial < last) {
        this.#log("ICP15", `duplicate serial Serial# ${serial} < ${last}`);
        return Promise.resolve({ kind: "error", explanation: "duplicate serial" });
      }
      if (serial === last) {
        this.#log("ICP15", `obsolete serial Serial# ${serial}`);
        return Promise.resolve({
          kind: "poison",
          reason: "same serial as the in-flight handshake",
        });
      }
    }
    // 4. drop the previous incoming handshake; 5. terminate the current session at once
    this.#dropIncoming(handle);
    if (this.session) {
      this.#log("ICP04", "terminating current session for a new one");
      this.hooks.terminateSession?.("NewSession");
      this.session = undefined;
    }
    this.state = "PendingConnection";
    // 6. fresh virtual id, reply OK (subject to the hold rule); 7. the outgoing one stays.
    const decision: NewSessionDecision = {
      kind: "ok",
      selfVirtualId: this.ids.next(this.selfNodeId),
    };
    return this.#answer<NewSessionDecision>(handle, 0n, decision, {
      kind: "poison",
      reason: "dropped by tie-break",
    });
  }

  /** Registers `handle` as the incoming handshake and answers now or holds the answer. */
  #answer<T>(handle: HandshakeHandle, lastSerial: bigint, answer: T, dropped: T): Promise<T> {
    const slot: IncomingSlot = { handle, lastSerial };
    this.incoming = slot;
    if (this.outgoing && this.selfNodeId < this.peerNodeId) {
      this.#log("ICP06", "incoming reply held: own outgoing handshake in flight, own id is lower");
      return new Promise<T>((resolve) => {
        slot.held = {
          release: () => {
            this.#log("ICP26", "held reply released");
            resolve(answer);
          },
          drop: () => resolve(dropped),
        };
      });
    }
    this.#log("ICP07", "incoming reply issued");
    return Promise.resolve(answer);
  }

  #dropIncoming(except: HandshakeHandle): void {
    const slot = this.incoming;
    if (!slot || slot.handle === except) return;
    this.incoming = undefined;
    this.#log("ICP111", "dropped incoming handshake");
    slot.held?.drop();
    slot.handle.poison("dropped by a newer handshake");
  }

  /** TEvHandshakeDone (spec 6.3). */
  done(handle: HandshakeHandle, done: HandshakeDone): ProxyStep {
    const isIncoming = this.incoming?.handle === handle;
    const isOutgoing = this.outgoing === handle;
    if (!isIncoming && !isOutgoing) return { kind: "none", why: "Done from an obsolete handshake" };
    if (isIncoming) {
      this.incoming = undefined;
      if (this.outgoing) {
        this.#log("ICP112", "dropped outgoing handshake");
        this.outgoing.poison("the incoming handshake won");
        this.outgoing = undefined;
      }
    } else {
      this.outgoing = undefined;
      const slot = this.incoming;
      if (slot) {
        this.incoming = undefined;
        this.#log("ICP111", "dropped incoming handshake");
        slot.held?.drop();
        slot.handle.poison("the outgoing handshake won");
      }
    }
    this.state = "StateWork";
    this.backoff.reset();
    const s = this.session;
    if (s) {
      if (
        !s.selfVirtualId.equals(done.selfVirtualId) || !s.peerVirtualId.equals(done.peerVirtualId)
      ) {
        // YDB asserts here; a value is kinder: drop the session and start over.
        this.session = undefined;
        this.hooks.terminateSession?.("SessionMismatch");
        return { kind: "dial_new" };
      }
      this.#log(isIncoming ? "ICP19" : "ICP20", "continuation succeeded");
      return { kind: "session_resumed", session: s };
    }
    if (done.programInfo === null) {
      return this.#enterError("Session continuation race");
    }
    // As YDB: a new session remembers the peer's program from this Done, whichever direction.
    // After an outgoing win that is the Serial of the peer's reply, newer than the Serial of
    // the peer's own crossing dial, so a request from that dial arriving late is poisoned as
    // too old (rule 1) instead of terminating the session just made.
    this.remoteProgram = done.programInfo;
    const created: SessionRecord = {
      selfVirtualId: done.selfVirtualId,
      peerVirtualId: done.peerVirtualId,
      params: done.params,
      lastInputSerial: 0n,
    };
    this.session = created;
    this.#log("ICP22", `new session created SessionVirtualId# ${done.selfVirtualId}`);
    return { kind: "session_created", session: created };
  }

  /** TEvHandshakeFail (spec 6.3). */
  fail(handle: HandshakeHandle, failure: HandshakeFailure): ProxyStep {
    const isIncoming = this.incoming?.handle === handle;
    const isOutgoing = this.outgoing === handle;
    if (!isIncoming && !isOutgoing) {
      this.#log("ICP27", `obsolete fail: ${failure.message}`);
      return { kind: "none", why: "Fail from an obsolete handshake" };
    }
    if (isOutgoing) {
      this.outgoing = undefined;
      this.#log("ICP25", `outgoing handshake failed: ${failure.message}`);
      // An outgoing failure releases any answer held for the incoming handshake.
      this.incoming?.held?.release();
      if (this.incoming) this.incoming.held = undefined;
    } else {
      this.incoming = undefined;
      this.#log("ICP24", `incoming handshake failed: ${failure.message}`);
    }
    if (this.incoming || this.outgoing) {
      this.#log("ICP28", "other handshake still running");
      return { kind: "none", why: "other handshake still running" };
    }
    switch (failure.class) {
      case "transient":
        if (this.session) return { kind: "dial_resume" };
        this.state = "PendingActivation";
        return { kind: "none", why: "transient failure without a session" };
      case "session_mismatch":
        return { kind: "dial_new" };
      case "permanent":
        if (this.session) {
          this.hooks.terminateSession?.("HandshakeFailPermanent");
          this.session = undefined;
        }
        return this.#enterError(failure.explanation);
    }
  }

  #enterError(explanation: string): ProxyStep {
    const sleepMs = this.backoff.next();
    this.state = "HoldByError";
    this.holdUntil = Date.now() + sleepMs;
    this.#log("ICP32", `transit to hold-by-error for ${sleepMs} ms: ${explanation}`);
    return { kind: "hold_by_error", sleepMs, explanation };
  }

  /** The error-state sleep is over (spec 6.3): back to PendingActivation. */
  wake(): void {
    if (this.state === "HoldByError") {
      this.state = "PendingActivation";
      this.holdUntil = 0;
      this.#log("ICP33", "wake from error state");
    }
  }
}
