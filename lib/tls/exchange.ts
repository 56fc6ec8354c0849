/**
 * TLS on the connection the interconnect handshake just used (spec 5.2 to 5.5): full
 * encryption ({@link startTls}) or AuthOnly ({@link authOnlyTls}: TLS to authenticate, then
 * close_notify both ways and plain TCP again on the same socket).
 *
 * The engine is `node:tls` (rustls inside Deno) over a {@link RecordDuplex}, which feeds it
 * whole TLS records from the coordinator's reader one at a time and never closes the socket.
 * @module
 */
import type { Buffer } from "node:buffer";
import tls from "node:tls";
import {
  contextInternals,
  type TlsContext,
  type TlsContextInternals,
  type TlsRole,
} from "./context.ts";
import { TlsError } from "./errors.ts";
import { certificateError, commonNameText, isVerifyCode, noPeerCertificateError } from "./peer.ts";
import { RecordDuplex, type TlsTransport } from "./record_duplex.ts";

/** Options of {@link startTls} and {@link authOnlyTls}. */
export interface TlsHandshakeOptions {
  /**
   * Aborts the TLS exchange: the promise rejects with {@link TlsError} `aborted`. The caller
   * (the coordinator) then closes the connection.
   */
  readonly signal?: AbortSignal;
}

/** Result of {@link authOnlyTls}. */
export interface AuthOnlyResult {
  /** The peer certificate's subject CN (spec 5.3 rule), `""` if none. */
  readonly authCN: string;
  /** The negotiated protocol, `"TLSv1.2"` or `"TLSv1.3"`. */
  readonly protocol: string;
}

/** An encrypted connection made by {@link startTls}. */
export interface TlsStream extends AsyncDisposable {
  /** The peer certificate's subject CN (spec 5.3 rule), `""` if none. */
  readonly authCN: string;
  /** The negotiated protocol, `"TLSv1.2"` or `"TLSv1.3"`. */
  readonly protocol: string;
  /** Plaintext from the peer. Ends at the peer's close_notify; errors with a {@link TlsError}. */
  readonly readable: ReadableStream<Uint8Array>;
  /** Plaintext to the peer. Closing it sends close_notify; reading goes on. */
  readonly writable: WritableStream<Uint8Array>;
  /**
   * Sends close_notify if not sent yet and releases the TLS engine. The connection itself
   * stays open: the coordinator owns it and closes it next (a read of the peer's next record
   * may still be pending on the reader). Best effort: close_notify is recognised among the
   * outgoing records by its size, so a 2-byte write still queued in the engine can end the
   * wait early.
   */
  close(): Promise<void>;
}

export type { TlsReader, TlsTransport } from "./record_duplex.ts";

/**
 * Runs the TLS handshake on `transport` in `role` and returns plaintext Web streams over it.
 * Mutual TLS: the peer must present a certificate that verifies against the context's CA.
 * Rejects with {@link TlsError}; never falls back to plaintext. From the call on, the TLS
 * layer owns `transport.reader` (it starts with any bytes the reader already holds) until the
 * peer's close_notify, a failure, or {@link TlsStream.close}.
 *
 * @example
 * ```ts ignore
 * const secure = await startTls({ reader, write: (b) => writer.write(b) }, tlsRoleFor(1, 2), ctx);
 * console.log(secure.authCN);
 * ```
 */
export async function startTls(
  transport: TlsTransport,
  role: TlsRole,
  context: TlsContext,
  options: TlsHandshakeOptions = {},
): Promise<TlsStream> {
  const link = new TlsLink(transport, role, context, options.signal, false);
  // Whether the engine's end of stream was the peer's close_notify (true) or a bare TCP EOF.
  const ending = { ended: false, clean: false };
  try {
    const socket = await link.handshake(
      () => ending.ended || link.error !== undefined,
      (socket) =>
        watchEngineOutput(socket, {
          data() {},
          end() {
            ending.ended = true;
            ending.clean = !link.duplex.transportEof;
          },
        }),
    );
    return new TlsStreamImpl(link, socket, ending);
  } finally {
    link.detachSignal();
  }
}

/**
 * AuthOnly (spec 5.4): runs the TLS handshake to authenticate the peer, sends close_notify at
 * once, waits for the peer's, and hands the connection back in plain TCP. The engine is fed
 * one TLS record at a time and feeding stops at the record that carried the peer's
 * close_notify, so afterwards `transport.reader` holds exactly the bytes that followed it,
 * even when they arrived in the same TCP segment. Application data instead of close_notify
 * fails with `teardown_data` ("non-zero return from SSL_read_ex: N").
 */
export async function authOnlyTls(
  transport: TlsTransport,
  role: TlsRole,
  context: TlsContext,
  options: TlsHandshakeOptions = {},
): Promise<AuthOnlyResult> {
  const link = new TlsLink(transport, role, context, options.signal, true);
  const peerClosed = Promise.withResolvers<void>();
  let peerEnded = false;
  let ownCloseNotify: Promise<void> | undefined;
  try {
    const socket = await link.handshake(
      () => peerEnded || link.error !== undefined,
      (socket) => {
        // Runs synchronously inside the delivery of the record that completed the handshake,
        // so no later record has reached the engine yet.
        watchEngineOutput(socket, {
          data(n) {
            link.fail(new TlsError("teardown_data", `non-zero return from SSL_read_ex: ${n}`));
          },
          end() {
            if (link.duplex.transportEof) return; // a TCP EOF, not close_notify: link failed it
            peerEnded = true;
            peerClosed.resolve();
          },
        });
        // Our close_notify goes out before any further record is fed: an engine that has
        // already seen the peer's close_notify and been torn down would never send ours.
        link.duplex.holdFeeding();
        ownCloseNotify = link.duplex.closeNotifyWritten();
        ownCloseNotify.then(() => link.duplex.releaseFeeding(), () => {});
        socket.end();
      },
    );
    await Promise.race([Promise.all([ownCloseNotify, peerClosed.promise]), link.failure]);
    const result = { authCN: link.authCN, protocol: socket.getProtocol() ?? "" };
    link.release();
    return result;
  } finally {
    link.detachSignal();
  }
}

/** Intercepts what the engine hands the TLS socket: plaintext chunks and the end of stream. */
function watchEngineOutput(
  socket: tls.TLSSocket,
  on: { data(bytes: number): void; end(): void },
): void {
  // The engine reports the peer's close_notify by pushing the end of stream into the socket,
  // synchronously inside the delivery of that record; the 'end' event comes later. Watching
  // push is what lets feeding stop at exactly that record.
  const push = socket.push;
  socket.push = function (chunk: unknown, encoding?: BufferEncoding): boolean {
    if (chunk === null) on.end();
    else on.data((chunk as Uint8Array).length ?? 0);
    return push.call(this, chunk, encoding);
  };
}

/** One TLS exchange over one connection. */
class TlsLink {
  readonly duplex: RecordDuplex;
  socket: tls.TLSSocket | undefined;
  /** The peer certificate's subject CN (spec 5.3 rule), set once the peer is verified. */
  authCN = "";
  readonly #role: TlsRole;
  readonly #context: TlsContext;
  readonly #signal: AbortSignal | undefined;
  readonly #failure = Promise.withResolvers<never>();
  #error: TlsError | undefined;
  #established = false;
  #released = false;

  /**
   * `eofFails` says whether a TCP EOF after the handshake fails the exchange. In AuthOnly it
   * does: feeding stops at close_notify, so an EOF seen means the peer closed without one. In
   * full encryption the engine judges it and the readable side reports it.
   */
  constructor(
    transport: TlsTransport,
    role: TlsRole,
    context: TlsContext,
    signal: AbortSignal | undefined,
    eofFails: boolean,
  ) {
    this.#role = role;
    this.#context = context;
    this.#signal = signal;
    this.#failure.promise.catch(() => {});
    this.duplex = new RecordDuplex(transport, (error) => {
      if (error) this.fail(error);
      else if (!this.#established || eofFails) this.fail(this.#peerClosed());
    });
    // Failures surface through fail(); an unhandled 'error' event would throw.
    this.duplex.on("error", () => {});
    signal?.addEventListener("abort", this.#onAbort);
  }

  get error(): TlsError | undefined {
    return this.#error;
  }

  /** Rejects with the first failure. */
  get failure(): Promise<never> {
    return this.#failure.promise;
  }

  detachSignal(): void {
    this.#signal?.removeEventListener("abort", this.#onAbort);
  }

  #onAbort = () => {
    const reason = this.#signal?.reason;
    const text = reason instanceof Error ? reason.message : String(reason);
    this.fail(
      new TlsError("aborted", `TLS ${this.#role} exchange aborted: ${text}`, {
        cause: reason,
      }),
    );
  };

  /**
   * Starts the engine and resolves with the TLS socket once the handshake succeeded and the
   * peer verified. `onSecure` runs synchronously at that moment. `shouldStop` is asked after
   * each record the engine consumed.
   */
  handshake(
    shouldStop: () => boolean,
    onSecure?: (socket: tls.TLSSocket) => void,
  ): Promise<tls.TLSSocket> {
    const secure = Promise.withResolvers<tls.TLSSocket>();
    if (this.#signal?.aborted) {
      this.#onAbort();
      return this.failure;
    }
    const accept = (socket: tls.TLSSocket) => {
      if (this.#error) return;
      // Read once: each call builds the certificate object anew.
      const cert = socket.getPeerCertificate();
      const problem = verifiedPeer(socket, cert);
      if (problem) {
        this.fail(problem);
        return;
      }
      this.authCN = commonNameText(cert?.subject?.CN);
      this.#established = true;
      onSecure?.(socket);
      secure.resolve(socket);
    };
    const internals = contextInternals(this.#context);
    if (this.#role === "client") {
      const socket = tls.connect({
        socket: this.duplex,
        secureContext: internals.clientContext,
        rejectUnauthorized: true,
        // YDB checks no names and sends no SNI: the CA alone decides.
        checkServerIdentity: () => undefined,
      });
      this.#watch(socket);
      socket.once("secureConnect", () => accept(socket));
    } else {
      // A server object rather than `new TLSSocket({isServer: true})`: the bare socket accepts a
      // client certificate from an unknown CA (platform.md), the server path verifies it.
      const server = serverFor(internals);
      server.on("secureConnection", (socket: tls.TLSSocket) => {
        this.#watch(socket);
        accept(socket);
      });
      server.on("tlsClientError", (e: Error, socket?: tls.TLSSocket) => {
        this.fail(this.#classify(e, socket));
      });
      server.emit("connection", this.duplex);
    }
    this.duplex.arm(shouldStop);
    return Promise.race([secure.promise, this.failure]);
  }

  #watch(socket: tls.TLSSocket): void {
    this.socket = socket;
    socket.on("error", (e: Error) => this.fail(this.#classify(e, socket)));
    socket.on("close", () => {
      if (!this.#established) this.fail(this.#classify(undefined, socket));
    });
  }

  /** Records the first failure and tears the engine down; the connection stays open. */
  fail(error: TlsError): void {
    if (this.#error || this.#released) return;
    this.#error = error;
    this.duplex.stop();
    this.socket?.destroy();
    this.duplex.destroy();
    this.#failure.reject(error);
  }

  /** Success: releases the engine without touching the connection. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.duplex.stop();
    this.socket?.destroy();
    this.duplex.destroy();
  }

  #peerClosed(cause?: unknown): TlsError {
    return new TlsError("peer_closed", "TLS negotiation failed: connection closed by peer", {
      cause,
    });
  }

  #classify(e: unknown, socket: tls.TLSSocket | undefined): TlsError {
    if (e instanceof TlsError) return e;
    if (this.duplex.transportError) return this.duplex.transportError;
    // Set by node:tls before it drops a peer whose certificate failed verification.
    const authorizationError = socket?.authorizationError;
    if (authorizationError !== undefined && authorizationError !== null) {
      return certificateError(String(authorizationError), socket);
    }
    // The engine verified inline and failed the handshake with the verification code.
    const code = (e as { code?: unknown } | undefined)?.code;
    if (isVerifyCode(code)) return certificateError(code, socket, e);
    if (code === "ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE") return noPeerCertificateError();
    if (this.duplex.transportEof) return this.#peerClosed(e);
    let text = e instanceof Error ? e.message : e === undefined ? "connection closed" : String(e);
    if (typeof code === "string" && !text.includes(code)) text += ` (${code})`;
    return new TlsError("handshake_failed", `SSL error: ${text}`, { cause: e });
  }
}

/**
 * A TLS server object for one connection, verifying client certificates against the CA. A
 * server built from the PEM texts parses the key and certificates again each time (about
 * 0.35 ms on the test machine, a fifth of a whole handshake); so the server is built without
 * credentials and given the context's, parsed once, through `_sharedCreds`: the field where
 * `node:tls`'s server keeps what `setSecureContext` made, and which its connection listener
 * hands to each server-side socket. Should the field be missing (another runtime version),
 * the server is built from the PEM texts as before.
 */
function serverFor(internals: TlsContextInternals): tls.Server {
  const { requestCert, rejectUnauthorized, minVersion, maxVersion } = internals.serverOptions;
  const server = tls.createServer({ requestCert, rejectUnauthorized, minVersion, maxVersion });
  const shared = server as unknown as { _sharedCreds?: unknown };
  if (shared._sharedCreds === undefined) return tls.createServer(internals.serverOptions);
  shared._sharedCreds = internals.serverContext;
  return server;
}

/** Undefined when the peer, whose certificate is `cert`, is verified; else the failure. */
function verifiedPeer(
  socket: tls.TLSSocket,
  cert: tls.PeerCertificate | undefined,
): TlsError | undefined {
  if (cert === undefined || cert === null || Object.keys(cert).length === 0) {
    return noPeerCertificateError();
  }
  if (socket.authorized) return undefined;
  return certificateError(
    String(socket.authorizationError ?? "unknown verification failure"),
    socket,
  );
}

/** {@link TlsStream} over an established link. */
class TlsStreamImpl implements TlsStream {
  readonly authCN: string;
  readonly protocol: string;
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
  readonly #link: TlsLink;
  readonly #socket: tls.TLSSocket;
  #closing: Promise<void> | undefined;
  #ending: Promise<void> | undefined;

  constructor(link: TlsLink, socket: tls.TLSSocket, ending: { readonly clean: boolean }) {
    this.#link = link;
    this.#socket = socket;
    this.authCN = link.authCN;
    this.protocol = socket.getProtocol() ?? "";
    let readableDone = false;
    this.readable = new ReadableStream<Uint8Array>({
      start: (controller) => {
        socket.on("data", (chunk: Buffer) => {
          if (readableDone) return;
          controller.enqueue(new Uint8Array(chunk)); // a copy: the engine may reuse its buffer
          if ((controller.desiredSize ?? 1) <= 0) socket.pause();
        });
        socket.on("end", () => {
          if (readableDone) return;
          readableDone = true;
          // A TCP EOF without close_notify may be a truncation attack: report it.
          if (ending.clean) controller.close();
          else {
            controller.error(
              new TlsError("peer_closed", "TLS connection closed by peer without close_notify"),
            );
          }
        });
        link.failure.catch((e) => {
          if (readableDone) return;
          readableDone = true;
          controller.error(e);
        });
        this.#closeReadable = () => {
          if (readableDone) return;
          readableDone = true;
          controller.close();
        };
      },
      pull: () => {
        socket.resume();
      },
      cancel: async () => {
        readableDone = true;
        await this.close();
      },
    }, new CountQueuingStrategy({ highWaterMark: 16 }));
    this.writable = new WritableStream<Uint8Array>({
      write: (chunk) =>
        new Promise<void>((resolve, reject) => {
          if (link.error) return reject(link.error);
          socket.write(chunk, (e?: Error | null) => {
            if (e) {
              reject(
                link.error ?? new TlsError("transport", `SSL error: ${e.message}`, { cause: e }),
              );
            } else resolve();
          });
        }),
      close: () => this.#end(),
      abort: () => this.close(),
    });
  }

  #closeReadable: () => void = () => {};

  /** Sends close_notify once; resolves when it was written (or could not be). */
  #end(): Promise<void> {
    this.#ending ??= (async () => {
      if (this.#link.error || this.#socket.destroyed) return;
      const written = this.#link.duplex.closeNotifyWritten();
      this.#socket.end();
      await Promise.race([written, this.#link.failure]).catch(() => {});
    })();
    return this.#ending;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#end();
      this.#link.release();
      this.#closeReadable();
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
