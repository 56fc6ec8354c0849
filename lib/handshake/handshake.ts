/**
 * The two handshake procedures of YDB's handshake actor (spec 1.2-1.4, 4.1, 4.2, 5.1): outgoing
 * (new session or continuation) and incoming (including the cookie-check answer), plus the
 * cookie connect-back check. They talk to the world only through {@link HandshakeTransport}
 * and {@link HandshakeEnvironment}, and end with a {@link HandshakeOutcome} value.
 * @module
 */
import { getLogger, type Logger } from "@logtape/logtape";
import { ActorId } from "../wire/actor_id.ts";
import { WireError } from "../wire/errors.ts";
import {
  decodeExBlockHeader,
  encodeExBlock,
  EXBLOCK_HEADER_SIZE,
  verifyExBlockPayload,
} from "../wire/exblock.ts";
import {
  decodeInitialPacket,
  encodeInitialPacket,
  INITIAL_PACKET_SIZE,
  type InitialPacket,
  verifyInitialPacket,
} from "../wire/initial_packet.ts";
import {
  decodeHandshakeReply,
  decodeHandshakeRequest,
  encodeHandshakeReply,
  encodeHandshakeRequest,
  type HandshakeReply,
  type HandshakeRequest,
  type HandshakeSuccess,
} from "../wire/messages.ts";
import {
  type FailureClass,
  formatFailureMessage,
  HandshakeEndedSilently,
  HandshakeFailedError,
  type HandshakeKind,
} from "./failure.ts";
import {
  acceptorEncryption,
  checkClusterUUID,
  checkVersionTag,
  makeBallast,
  requireEncryptionField,
  sortedTags,
} from "./policy.ts";
import { textFormat } from "./text_format.ts";
import {
  EMPTY_SCOPE,
  type HandshakeEnvironment,
  type HandshakeOutcome,
  type HandshakeSettings,
  type HandshakeTransport,
  type OutgoingParams,
  type ProgramInfo,
  type ResolvedAddress,
  type SessionParams,
  type TlsRole,
  TransportStepError,
} from "./types.ts";

/** DEFAULT_HANDSHAKE_TIMEOUT of the early revision (spec 6.4). */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 1000;
/** The wait for a resolve reply before falling back to the static address (spec 6.4). */
export const RESOLVE_TIMEOUT_MS = 1000;
/** Network errors of one peer are logged at NOTICE at most once per this period (spec 8). */
export const NETWORK_LOG_MUTE_MS = 15_000;
/** The 12-byte service name of the cookie-check sub-connection's self id. */
export const COOKIE_CHECK_SERVICE = "cookie check";

/** The overall deadline of a handshake: timeout + 2 x resolve wait (spec 6.4). */
export function handshakeDeadlineMs(settings: HandshakeSettings): number {
  // 0 means "use the default" (1 s in the early revision), as YDB's settings do.
  return (settings.handshakeTimeoutMs || DEFAULT_HANDSHAKE_TIMEOUT_MS) + 2 * RESOLVE_TIMEOUT_MS;
}

/** The TLS role of this node towards `peerNodeId`: the lower node id is the server. */
export function tlsRole(selfNodeId: number, peerNodeId: number): TlsRole {
  return selfNodeId < peerNodeId ? "server" : "client";
}

/** Why a finished handshake's signal is aborted (one value for all). */
const ENDED = new HandshakeEndedSilently("handshake ended");

/** Options shared by both procedures. */
export interface RunOptions {
  /** Ends the handshake early, as a poison pill would: silently. */
  readonly signal?: AbortSignal;
  /** Overrides {@link handshakeDeadlineMs}; mainly for tests. */
  readonly deadlineMs?: number;
  /** Logger to use; defaults to the `["ic-handshake", "handshake"]` category. */
  readonly logger?: Logger;
}

/**
 * Runs an outgoing handshake: resolve and dial the peer, then a new session when
 * `params.peerVirtualId` is empty, else a continuation.
 */
export function runOutgoingHandshake(
  settings: HandshakeSettings,
  env: HandshakeEnvironment,
  params: OutgoingParams,
  options: RunOptions = {},
): Promise<HandshakeOutcome> {
  const actor = new HandshakeActor("outgoing handshake", settings, env, options);
  actor.peerNodeId = params.peerNodeId;
  actor.peerHostName = params.peerHostName;
  return actor.run(() => actor.performOutgoing(params));
}

/** Runs an incoming handshake on an accepted connection. */
export function runIncomingHandshake(
  settings: HandshakeSettings,
  env: HandshakeEnvironment,
  transport: HandshakeTransport,
  options: RunOptions = {},
): Promise<HandshakeOutcome> {
  const actor = new HandshakeActor("incoming handshake", settings, env, options);
  actor.peerAddr = transport.peerAddress;
  actor.track(transport);
  return actor.run(() => actor.performIncoming(transport));
}

class HandshakeActor {
  state = "Start";
  peerNodeId = 0;
  peerHostName: string | undefined;
  peerAddr: string | undefined;
  resolveTimedOut = false;
  /** Time of the last network-error NOTICE; lives and dies with this actor (spec 8). */
  lastNetworkNotice: number | undefined;
  readonly #transports = new Set<HandshakeTransport>();
  readonly #abort = new AbortController();
  #ended = false;
  readonly log: Logger;

  constructor(
    readonly kind: HandshakeKind,
    readonly settings: HandshakeSettings,
    readonly env: HandshakeEnvironment,
    readonly options: RunOptions,
  ) {
    this.log = options.logger ?? getLogger(["ic-handshake", "handshake"]);
  }

  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  track(t: HandshakeTransport): void {
    if (this.#ended) {
      t.close();
      this.alive();
    }
    this.#transports.add(t);
  }

  /**
   * Ends the procedure silently once its outcome is settled (deadline, poison, result): a
   * handshake that has ended must not dial, write, log a second failure or finish later.
   */
  alive(): void {
    if (this.#ended) throw new HandshakeEndedSilently("handshake already ended");
  }

  untrack(t: HandshakeTransport): void {
    this.#transports.delete(t);
  }

  closeAll(): void {
    for (const t of this.#transports) t.close();
    this.#transports.clear();
  }

  async run(body: () => Promise<HandshakeOutcome>): Promise<HandshakeOutcome> {
    const deadlineMs = this.options.deadlineMs ?? handshakeDeadlineMs(this.settings);
    let timer: ReturnType<typeof setTimeout> | undefined;
    let onAbort: (() => void) | undefined;
    const deadline = new Promise<HandshakeOutcome>((resolve) => {
      timer = setTimeout(() => {
        resolve(
          this.outcomeOf(() =>
            this.fail("transient", `Handshake timed out, State# ${this.state}`, true)
          ),
        );
      }, deadlineMs);
    });
    const aborted = new Promise<HandshakeOutcome>((resolve) => {
      const s = this.options.signal;
      if (!s) return;
      onAbort = () => resolve({ kind: "silent", peerNodeId: this.peerNodeId, reason: "poisoned" });
      if (s.aborted) onAbort();
      else s.addEventListener("abort", onAbort, { once: true });
    });
    const work = body().catch((e) =>
      this.outcomeOf(() => {
        throw e;
      })
    );
    try {
      const outcome = await Promise.race([work, deadline, aborted]);
      if (outcome.kind === "done") this.untrack(outcome.transport);
      return outcome;
    } finally {
      clearTimeout(timer);
      if (onAbort) this.options.signal?.removeEventListener("abort", onAbort);
      this.#ended = true;
      // A reason of our own: without one, abort() builds a DOMException (and its stack).
      this.#abort.abort(ENDED);
      this.closeAll();
      // The losing branch may still settle later; its result is of no interest.
      work.catch(() => {});
    }
  }

  /** Runs `f` and turns a thrown failure or silent end into an outcome value. */
  outcomeOf(f: () => never): HandshakeOutcome {
    try {
      f();
    } catch (e) {
      if (e instanceof HandshakeFailedError) {
        return { kind: "failed", peerNodeId: this.peerNodeId, failure: e.failure };
      }
      if (e instanceof HandshakeEndedSilently) {
        return { kind: "silent", peerNodeId: this.peerNodeId, reason: e.reason };
      }
      // A bug, not a protocol event: report it as a transient failure of this handshake only.
      const text = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
      return this.outcomeOf(() => this.fail("transient", `internal error: ${text}`));
    }
  }

  // ---------------------------------------------------------------------------------------
  // Failures and logging

  fail(cls: FailureClass, explanation: string, network = false, errorReplySent = false): never {
    this.alive();
    const message = formatFailureMessage(
      this.kind,
      this.peerHostName,
      this.peerAddr,
      this.resolveTimedOut,
      explanation,
    );
    const props = { peerNodeId: this.peerNodeId, failure: cls, state: this.state };
    if (network) {
      const now = Date.now();
      if (
        this.lastNetworkNotice === undefined || now - this.lastNetworkNotice > NETWORK_LOG_MUTE_MS
      ) {
        this.lastNetworkNotice = now;
        this.log.info(
          this.#prefix(`network-related error occured on handshake: ${message}`),
          props,
        );
      } else {
        this.log.debug(
          this.#prefix(`network-related error occured on handshake: ${message}`),
          props,
        );
      }
    } else {
      // YDB logs NOTICE for PERMANENT and INFO otherwise; LogTape has no NOTICE, both are info.
      this.log.info(this.#prefix(`ICH03 handshake failed, explanation# ${message}`), props);
    }
    throw new HandshakeFailedError({
      class: cls,
      explanation,
      message,
      network,
      errorReplySent,
    });
  }

  #prefix(text: string): string {
    // Braces would be read as LogTape placeholders; escape them by doubling.
    return `Handshake [node ${this.peerNodeId}] ${text}`.replaceAll("{", "{{").replaceAll(
      "}",
      "}}",
    );
  }

  debug(code: string, text: string | (() => string)): void {
    // The text (a message dump, say) is built only when a sink takes debug records.
    if (!this.log.isEnabledFor("debug")) return;
    const line = typeof text === "string" ? text : text();
    this.log.debug(this.#prefix(`${code} ${line}`), { peerNodeId: this.peerNodeId });
  }

  // ---------------------------------------------------------------------------------------
  // Communication block

  async send(t: HandshakeTransport, bytes: Uint8Array, state: string): Promise<void> {
    this.alive();
    this.state = state;
    try {
      await t.write(bytes);
    } catch (e) {
      this.fail("transient", socketError(e, state, 0, bytes.length), true);
    }
  }

  /**
   * Receives exactly `n` bytes in `state`. With `before`, sends it first: in one step when the
   * transport can ({@link HandshakeTransport.writeThenRead}), each failure still named by the
   * state of the step that failed.
   */
  async receive(
    t: HandshakeTransport,
    n: number,
    state: string,
    before?: Outbound,
  ): Promise<Uint8Array> {
    if (before && !t.writeThenRead) await this.send(t, before.bytes, before.state);
    this.alive();
    if (before && t.writeThenRead) {
      this.state = before.state;
      try {
        const bytes = await t.writeThenRead(before.bytes, n);
        this.state = state;
        return bytes;
      } catch (e) {
        if (e instanceof TransportStepError && e.step === "read") {
          this.state = state;
          this.fail("transient", socketError(e.cause, state, 0, n), true);
        }
        const cause = e instanceof TransportStepError ? e.cause : e;
        this.fail("transient", socketError(cause, before.state, 0, before.bytes.length), true);
      }
    }
    this.state = state;
    try {
      return await t.readExactly(n);
    } catch (e) {
      this.fail("transient", socketError(e, state, 0, n), true);
    }
  }

  async sendInitialPacket(
    t: HandshakeTransport,
    packet: Omit<InitialPacket, "version">,
  ): Promise<void> {
    const { bytes, state } = this.initialPacket(packet);
    await this.send(t, bytes, state);
  }

  /** An initial packet to send, with the state that sends it. */
  initialPacket(packet: Omit<InitialPacket, "version">): Outbound {
    return { bytes: encodeInitialPacket(packet), state: "SendInitialPacket" };
  }

  /** Receives the peer's initial packet, after sending `before` if given. */
  async receiveInitialPacket(t: HandshakeTransport, state: string, before?: Outbound) {
    const packet = decodeInitialPacket(await this.receive(t, INITIAL_PACKET_SIZE, state, before));
    const verdict = verifyInitialPacket(packet);
    if (!verdict.ok) {
      this.fail(verdict.reason === "crc" ? "transient" : "permanent", verdict.explanation);
    }
    return packet;
  }

  /** A request to send (logged as sent now), with the state that sends it. */
  request(request: HandshakeRequest, what: string): Outbound {
    this.debug("ICH07", () => `SendExBlock ${what} ${textFormat(request)}`);
    return { bytes: encodeExBlock(encodeHandshakeRequest(request)), state: `Send${what}` };
  }

  /**
   * Receives one ExBlock and decodes it with `decode`; a payload that does not parse (a
   * missing required field included) fails PERMANENT with `incorrect`, as C++'s
   * ParseFromString does. Logs the ICH07 dump.
   */
  async receiveMessage<T extends object>(
    t: HandshakeTransport,
    what: string,
    decode: (payload: Uint8Array) => T,
    incorrect: string,
    before?: Outbound,
  ): Promise<T> {
    const payload = await this.receiveExBlock(t, what, before);
    let message: T;
    try {
      message = decode(payload);
    } catch (e) {
      if (e instanceof WireError) this.fail("permanent", incorrect);
      throw e;
    }
    this.debug("ICH07", () => `ReceiveExBlock ${what} ${textFormat(message)}`);
    return message;
  }

  /** The all-zero initial packet: a new-session answer or a continuation reject. */
  async sendZeroInitialPacket(t: HandshakeTransport): Promise<void> {
    const { bytes, state } = this.zeroInitialPacket();
    await this.send(t, bytes, state);
  }

  /** The all-zero initial packet, to send. */
  zeroInitialPacket(): Outbound {
    return this.initialPacket({
      selfVirtualId: ActorId.EMPTY,
      peerVirtualId: ActorId.EMPTY,
      nextPacket: 0n,
    });
  }

  async sendReply(t: HandshakeTransport, reply: HandshakeReply, what: string): Promise<void> {
    this.debug("ICH07", () => `SendExBlock ${what} ${textFormat(reply)}`);
    await this.send(t, encodeExBlock(encodeHandshakeReply(reply)), `Send${what}`);
  }

  /** Receives one ExBlock's payload, after sending `before` if given. */
  async receiveExBlock(
    t: HandshakeTransport,
    what: string,
    before?: Outbound,
  ): Promise<Uint8Array> {
    const headerBytes = await this.receive(
      t,
      EXBLOCK_HEADER_SIZE,
      `Receive${what}Header`,
      before,
    );
    let header;
    try {
      header = decodeExBlockHeader(headerBytes);
    } catch (e) {
      if (e instanceof WireError && e.code === "exblock_size") {
        this.fail("permanent", "Incorrect extended header size");
      }
      throw e;
    }
    const payload = await this.receive(t, header.size, `Receive${what}Data`);
    try {
      verifyExBlockPayload(header, payload);
    } catch (e) {
      if (e instanceof WireError && e.code === "exblock_crc") {
        this.fail("transient", "Extended header CRC error");
      }
      throw e;
    }
    return payload;
  }

  /** Resolve with the 1 s wait and the static fallback, then connect (spec 1.2 steps 2-3). */
  async connect(nodeId: number, recordPeerAddr: boolean): Promise<HandshakeTransport> {
    const address = await this.resolvePeer(nodeId);
    this.alive();
    this.state = "Connect";
    const label = formatAddress(address);
    if (recordPeerAddr) this.peerAddr = label;
    let t: HandshakeTransport;
    try {
      t = await this.env.connect(address, this.signal);
    } catch (e) {
      this.fail("permanent", `Connection failed: ${errorText(e)}`, true);
    }
    this.track(t);
    const noticed = this.lastNetworkNotice !== undefined;
    this.lastNetworkNotice = undefined;
    const text = this.#prefix(`ICH05 connected to peer ${label}`);
    if (noticed) this.log.info(text, { peerNodeId: this.peerNodeId });
    else this.log.debug(text, { peerNodeId: this.peerNodeId });
    return t;
  }

  async resolvePeer(nodeId: number): Promise<ResolvedAddress> {
    this.state = "ResolvePeer";
    const resolveAbort = new AbortController();
    const onAbort = () => resolveAbort.abort();
    this.signal.addEventListener("abort", onAbort, { once: true });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), RESOLVE_TIMEOUT_MS);
    });
    let result: ResolvedAddress | undefined | "timeout";
    try {
      result = await Promise.race([this.env.resolve(nodeId, resolveAbort.signal), timeout]);
    } catch (e) {
      this.fail("permanent", `DNS resolve error: ${errorText(e)}`, true);
    } finally {
      clearTimeout(timer);
      this.signal.removeEventListener("abort", onAbort);
    }
    if (result === "timeout") {
      resolveAbort.abort();
      this.state = "GetNode";
      const info = await this.env.nodeInfo(nodeId);
      if (info?.address) {
        this.resolveTimedOut = true;
        return { address: info.address, port: info.port };
      }
      this.fail("permanent", "DNS resolve timed out and no static address defined", true);
    }
    if (result === undefined || !result.address) {
      this.fail("permanent", "DNS resolve error: no address returned", true);
    }
    return result;
  }

  async establishSecureConnection(t: HandshakeTransport, params: MutableParams): Promise<void> {
    this.state = "EstablishSecureConnection";
    const role = tlsRole(this.settings.selfNodeId, this.peerNodeId);
    let authCN: string;
    try {
      ({ authCN } = await t.startTls(role, params.authOnly));
    } catch (e) {
      this.fail("permanent", errorText(e), true);
    }
    params.authCN = authCN;
    if (params.authOnly) params.encryption = false;
  }

  // ---------------------------------------------------------------------------------------
  // Outgoing

  async performOutgoing(p: OutgoingParams): Promise<HandshakeOutcome> {
    this.debug("ICH01", "starting outgoing handshake");
    const t = await this.connect(p.peerNodeId, true);
    const response = await this.receiveInitialPacket(
      t,
      "ReceiveResponse",
      this.initialPacket({
        selfVirtualId: p.selfVirtualId,
        peerVirtualId: p.peerVirtualId,
        nextPacket: p.nextPacket,
      }),
    );
    const params: MutableParams = p.sessionParams ? { ...p.sessionParams } : emptyParams();
    const continuation = !p.peerVirtualId.isEmpty;
    let peerVirtualId = p.peerVirtualId;
    let programInfo: ProgramInfo | null = null;

    if (continuation) {
      if (response.selfVirtualId.isEmpty) {
        this.fail("session_mismatch", "Peer rejected session continuation handshake");
      }
      if (
        !response.selfVirtualId.equals(p.peerVirtualId) ||
        !response.peerVirtualId.equals(p.selfVirtualId)
      ) {
        this.fail("session_mismatch", "Session virtual ID mismatch");
      }
      if (params.encryption) await this.establishSecureConnection(t, params);
    } else {
      const request = this.buildRequest(p);
      const reply = await this.receiveMessage(
        t,
        "ExReply",
        decodeHandshakeReply,
        "Incorrect THandshakeReply",
        this.request(request, "ExRequest"),
      );
      if (reply.ErrorExplaination !== undefined) {
        this.fail("permanent", `error from peer: ${reply.ErrorExplaination}`);
      }
      const success = reply.Success;
      if (success === undefined) this.fail("permanent", "empty reply");
      const uuidError = checkClusterUUID(this.settings, success.ClusterUUIDs);
      if (uuidError) this.fail("permanent", uuidError);
      const versionError = this.checkVersion(success);
      if (versionError) this.fail("permanent", versionError);
      peerVirtualId = ActorId.parse(success.SenderActorId ?? "").id;
      if (peerVirtualId.isEmpty) {
        // Deviation (README): C++ would assert later on an empty id; refuse it here instead.
        this.fail(
          "permanent",
          `Incorrect SenderActorId# ${success.SenderActorId} in THandshakeSuccess`,
        );
      }
      params.encryption = success.StartEncryption ?? false;
      params.useModernFrame = success.UseModernFrame ?? false;
      params.authOnly = params.encryption && (success.AuthOnly ?? false);
      if (success.ServerScopeId) {
        params.peerScopeId = [success.ServerScopeId.X1 ?? 0n, success.ServerScopeId.X2 ?? 0n];
      }
      programInfo = {
        pid: success.ProgramPID!,
        startTime: success.ProgramStartTime!,
        serial: success.Serial!,
      };
      if (params.encryption) {
        await this.establishSecureConnection(t, params);
      } else if (this.settings.encryption === "required" && !params.authOnly) {
        this.fail("permanent", "Peer doesn't support encryption, which is required");
      }
    }
    this.log.info(this.#prefix("ICH04 handshake succeeded"), { peerNodeId: this.peerNodeId });
    return {
      kind: "done",
      transport: t,
      done: {
        peerNodeId: this.peerNodeId,
        selfVirtualId: p.selfVirtualId,
        peerVirtualId,
        nextPacketFromPeer: response.nextPacket,
        programInfo,
        params,
        peerHostName: p.peerHostName,
      },
    };
  }

  buildRequest(p: OutgoingParams): HandshakeRequest {
    const s = this.settings;
    const request: HandshakeRequest = {
      Protocol: 2n,
      ProgramPID: s.programPid,
      ProgramStartTime: s.programStartTime,
      Serial: p.selfVirtualId.localId,
      ReceiverNodeId: p.peerNodeId,
      SenderActorId: p.selfVirtualId.toString(),
      SenderHostName: s.selfHostName,
      ReceiverHostName: p.peerHostName,
      ClusterUUIDs: { ClusterUUID: s.clusterUUID, AcceptUUID: [...s.acceptUUID] },
      RequireEncryption: requireEncryptionField(s.encryption),
      RequestModernFrame: true,
      RequestAuthOnly: s.tlsAuthOnly,
    };
    if (s.clusterUUID !== "") request.UUID = s.clusterUUID;
    if (s.ballastSize > 0) request.Ballast = makeBallast(s.ballastSize);
    if (s.versionTag !== undefined) {
      request.VersionTag = s.versionTag;
      request.AcceptedVersionTags = sortedTags(s.acceptedVersionTags);
    }
    if (s.scopeId[0] !== 0n || s.scopeId[1] !== 0n) {
      request.ClientScopeId = { X1: s.scopeId[0], X2: s.scopeId[1] };
    }
    if (s.cookie !== "") request.Cookie = s.cookie;
    return request;
  }

  /** The version-tag check (spec 4.3): the explanation on failure; ICH06 when the peer has none. */
  checkVersion(peer: { VersionTag?: string; AcceptedVersionTags?: string[] }): string | undefined {
    const verdict = checkVersionTag(this.settings, peer);
    if (!verdict.ok) return verdict.explanation;
    if (verdict.peerReportedNoTag) {
      this.log.warn(this.#prefix("ICH06 peer did not report VersionTag, accepting by default"), {
        peerNodeId: this.peerNodeId,
      });
    }
    return undefined;
  }

  // ---------------------------------------------------------------------------------------
  // Incoming

  async performIncoming(t: HandshakeTransport): Promise<HandshakeOutcome> {
    this.debug("ICH02", "starting incoming handshake");
    const packet = await this.receiveInitialPacket(t, "ReceiveRequest");
    this.peerNodeId = packet.selfVirtualId.nodeId;
    if (this.peerNodeId === 0) {
      this.fail("permanent", "SelfVirtualId.NodeId is empty in initial packet");
    }
    if (!packet.peerVirtualId.isEmpty) return await this.incomingContinuation(t, packet);
    return await this.incomingNewSession(t, packet);
  }

  async incomingContinuation(
    t: HandshakeTransport,
    packet: InitialPacket,
  ): Promise<HandshakeOutcome> {
    this.state = "AskProxy(TEvHandshakeAsk)";
    const decision = await this.env.continuation({
      self: packet.selfVirtualId,
      peer: packet.peerVirtualId,
      counter: packet.nextPacket,
    });
    if (decision.kind === "poison") throw new HandshakeEndedSilently(decision.reason);
    if (decision.kind === "nak") {
      this.log.info(this.#prefix("ICH08 continuation request rejected by proxy (Nak)"), {
        peerNodeId: this.peerNodeId,
      });
      await this.sendZeroInitialPacket(t);
      throw new HandshakeEndedSilently("continuation rejected (Nak)");
    }
    await this.sendInitialPacket(t, {
      selfVirtualId: decision.self,
      peerVirtualId: packet.selfVirtualId,
      nextPacket: decision.nextPacket,
    });
    const params: MutableParams = { ...decision.params };
    if (params.encryption) await this.establishSecureConnection(t, params);
    this.log.info(this.#prefix("ICH04 handshake succeeded"), { peerNodeId: this.peerNodeId });
    return {
      kind: "done",
      transport: t,
      done: {
        peerNodeId: this.peerNodeId,
        selfVirtualId: decision.self,
        peerVirtualId: packet.selfVirtualId,
        nextPacketFromPeer: packet.nextPacket,
        programInfo: null,
        params,
        peerHostName: this.peerHostName ?? "",
      },
    };
  }

  async incomingNewSession(
    t: HandshakeTransport,
    packet: InitialPacket,
  ): Promise<HandshakeOutcome> {
    const request = await this.receiveMessage(
      t,
      "ExRequest",
      decodeHandshakeRequest,
      "Incorrect THandshakeRequest",
      this.zeroInitialPacket(),
    );

    const generateError = async (explanation: string): Promise<never> => {
      await this.sendReply(t, { ErrorExplaination: explanation }, "ExReply");
      this.fail("permanent", explanation, false, true);
    };

    if (request.DoCheckCookie !== undefined) {
      await this.sendReply(
        t,
        { CookieCheckResult: (request.Cookie ?? "") === this.settings.cookie },
        "ExReplyDoCheckCookie",
      );
      throw new HandshakeEndedSilently("cookie check answered");
    }
    if (request.Cookie !== undefined) {
      const error = await this.checkPeerCookie(request.Cookie);
      if (error !== undefined) {
        await generateError(`Peer connectivity-checking failed, error# ${error}`);
      }
    }

    this.peerHostName = request.SenderHostName ?? "";
    const peerVirtualId = ActorId.parse(request.SenderActorId ?? "").id;

    const s = this.settings;
    const uuidError = checkClusterUUID(s, request.ClusterUUIDs, request.UUID ?? "");
    if (uuidError) await generateError(uuidError);
    if (request.ReceiverNodeId !== s.selfNodeId) {
      await generateError(
        `Incorrect ReceiverNodeId# ${request.ReceiverNodeId} from the peer, expected# ${s.selfNodeId}`,
      );
    }
    if ((request.ReceiverHostName ?? "") !== s.selfHostName) {
      await generateError(
        `ReceiverHostName# ${request.ReceiverHostName ?? ""} mismatch, expected# ${s.selfHostName}`,
      );
    }
    const versionError = this.checkVersion(request);
    if (versionError) await generateError(versionError);
    this.state = "GetPeerNodeInfo";
    const peerInfo = await this.env.nodeInfo(this.peerNodeId);
    if (!peerInfo) {
      await generateError("Peer node not registered in nameservice");
    } else if (peerInfo.host !== (request.SenderHostName ?? "")) {
      await generateError("SenderHostName mismatch");
    }
    const enc = acceptorEncryption(s.encryption, request.RequireEncryption);
    if (!enc.ok) await generateError(enc.explanation);
    if (peerVirtualId.isEmpty) {
      // Deviation (README): C++ asserts later on an empty RemoteSessionVirtualId.
      await generateError(`Incorrect SenderActorId# ${request.SenderActorId ?? ""}`);
    }

    const encryption = enc.ok && enc.encryption;
    const params: MutableParams = {
      encryption,
      useModernFrame: request.RequestModernFrame ?? false,
      authOnly: encryption && (request.RequestAuthOnly ?? false) && s.tlsAuthOnly,
      authCN: "",
      peerScopeId: request.ClientScopeId
        ? [request.ClientScopeId.X1 ?? 0n, request.ClientScopeId.X2 ?? 0n]
        : EMPTY_SCOPE,
    };
    const programInfo: ProgramInfo = {
      pid: request.ProgramPID!,
      startTime: request.ProgramStartTime!,
      serial: request.Serial!,
    };

    this.state = "AskProxy(TEvHandshakeRequest)";
    const decision = await this.env.newSession(this.peerNodeId, request);
    if (decision.kind === "poison") throw new HandshakeEndedSilently(decision.reason);
    if (decision.kind === "error") {
      await this.sendReply(t, { ErrorExplaination: decision.explanation }, "ExReply");
      throw new HandshakeEndedSilently(`proxy replied error: ${decision.explanation}`);
    }
    const selfVirtualId = decision.selfVirtualId;
    const success: HandshakeSuccess = {
      Protocol: 2n,
      ProgramPID: s.programPid,
      ProgramStartTime: s.programStartTime,
      Serial: selfVirtualId.localId,
      SenderActorId: selfVirtualId.toString(),
      ClusterUUIDs: { ClusterUUID: s.clusterUUID, AcceptUUID: [...s.acceptUUID] },
      StartEncryption: params.encryption,
      UseModernFrame: params.useModernFrame,
      AuthOnly: params.authOnly,
    };
    if (s.versionTag !== undefined) {
      success.VersionTag = s.versionTag;
      success.AcceptedVersionTags = sortedTags(s.acceptedVersionTags);
    }
    if (s.scopeId[0] !== 0n || s.scopeId[1] !== 0n) {
      success.ServerScopeId = { X1: s.scopeId[0], X2: s.scopeId[1] };
    }
    await this.sendReply(t, { Success: success }, "ExReply");
    if (params.encryption) await this.establishSecureConnection(t, params);
    this.log.info(this.#prefix("ICH04 handshake succeeded"), { peerNodeId: this.peerNodeId });
    return {
      kind: "done",
      transport: t,
      done: {
        peerNodeId: this.peerNodeId,
        selfVirtualId,
        peerVirtualId,
        nextPacketFromPeer: packet.nextPacket,
        programInfo,
        params,
        peerHostName: this.peerHostName,
      },
    };
  }

  /**
   * The cookie connect-back (spec 1.4): dial the peer at the address our own nameservice has
   * for it, from the `cookie check` service id, and ask whether `cookie` is its own. Returns
   * the bare inner explanation on failure, undefined on success.
   */
  async checkPeerCookie(cookie: string): Promise<string | undefined> {
    let sub: HandshakeTransport | undefined;
    try {
      sub = await this.connect(this.peerNodeId, false);
      await this.receiveInitialPacket(
        sub,
        "ReceiveResponse",
        this.initialPacket({
          selfVirtualId: ActorId.service(this.settings.selfNodeId, COOKIE_CHECK_SERVICE),
          peerVirtualId: ActorId.EMPTY,
          nextPacket: 0n,
        }),
      );
      const request: HandshakeRequest = {
        Protocol: 2n,
        ProgramPID: 0n,
        ProgramStartTime: 0n,
        Serial: 0n,
        ReceiverNodeId: 0,
        SenderActorId: "",
        Cookie: cookie,
        DoCheckCookie: true,
      };
      const reply = await this.receiveMessage(
        sub,
        "ExBlockDoCheckCookie",
        decodeHandshakeReply,
        "Incorrect packet from peer",
        this.request(request, "ExBlockDoCheckCookie"),
      );
      if (reply.CookieCheckResult === false) {
        this.fail("permanent", "Cookie check error -- possible network problem");
      }
      return undefined;
    } catch (e) {
      if (e instanceof HandshakeFailedError) return e.failure.explanation;
      throw e;
    } finally {
      if (sub) {
        sub.close();
        this.untrack(sub);
      }
    }
  }
}

/** Bytes to send right before a receive, and the state that sends them. */
interface Outbound {
  readonly bytes: Uint8Array;
  readonly state: string;
}

type MutableParams = { -readonly [K in keyof SessionParams]: SessionParams[K] };

function emptyParams(): MutableParams {
  return {
    encryption: false,
    useModernFrame: false,
    authOnly: false,
    authCN: "",
    peerScopeId: EMPTY_SCOPE,
  };
}

function formatAddress(a: ResolvedAddress): string {
  return a.address.includes(":") ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** O8: "Socket error# <msg> state# <S> processed# N remain# M". */
function socketError(e: unknown, state: string, processed: number, remain: number): string {
  const eof = e as { processed?: unknown; remain?: unknown; name?: unknown };
  if (eof?.name === "UnexpectedEofError" && typeof eof.processed === "number") {
    return `Socket error# connection unexpectedly closed state# ${state} processed# ${eof.processed} remain# ${eof.remain}`;
  }
  return `Socket error# ${errorText(e)} state# ${state} processed# ${processed} remain# ${remain}`;
}
