/**
 * A scripted peer for handshake tests: the far end of an in-memory pipe that records every byte
 * the code under test writes and sends whatever bytes a test scripts, so one direction of the
 * exchange can be checked byte for byte while the other is fully controlled. Also small
 * builders for the frames a test scripts (initial packets, ExBlocks, error replies).
 */
import assert from "node:assert/strict";
import { ActorId } from "../../lib/wire/actor_id.ts";
import { decodeExBlock, encodeExBlock } from "../../lib/wire/exblock.ts";
import { encodeInitialPacket } from "../../lib/wire/initial_packet.ts";
import {
  decodeHandshakeReply,
  decodeHandshakeRequest,
  encodeHandshakeReply,
  encodeHandshakeRequest,
  type HandshakeReply,
  type HandshakeRequest,
  type HandshakeSuccess,
} from "../../lib/wire/messages.ts";
import { memoryPipe, type PipeEnd } from "../../lib/io/memory_pipe.ts";
import { StreamTransport, type TlsStarter } from "../../lib/handshake/stream_transport.ts";
import { runIncomingHandshake, runOutgoingHandshake } from "../../lib/handshake/handshake.ts";
import type { FailureClass, HandshakeFailure } from "../../lib/handshake/failure.ts";
import type {
  HandshakeEnvironment,
  HandshakeOutcome,
  HandshakeSettings,
  HandshakeTransport,
  NodeInfo,
  OutgoingParams,
  ResolvedAddress,
  TlsRole,
} from "../../lib/handshake/types.ts";
import { type MemoryNet, testCluster, type TestNode, testTable } from "./memory_net.ts";
import { fromHex, toHex, vectors } from "./vectors.ts";
import { concat } from "./bytes.ts";

export { concat };

/** The peer's end of a pipe, driven by a test. */
export class ScriptedPeer {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #chunks: Uint8Array[] = [];
  #size = 0;
  #remoteClosed = false;
  #pump: Promise<void>;

  constructor(end: PipeEnd) {
    this.#reader = end.readable.getReader();
    this.#writer = end.writable.getWriter();
    this.#pump = this.#run();
  }

  async #run(): Promise<void> {
    try {
      for (;;) {
        const { value, done } = await this.#reader.read();
        if (done) break;
        this.#chunks.push(value.slice());
        this.#size += value.length;
      }
    } catch {
      // reading was cancelled by reset()
    }
    this.#remoteClosed = true;
  }

  /** Every byte the code under test has written so far, in order. */
  received(): Uint8Array {
    const out = new Uint8Array(this.#size);
    let off = 0;
    for (const c of this.#chunks) {
      out.set(c, off);
      off += c.length;
    }
    return out;
  }

  /** True once the code under test closed its side (the peer read EOF) or reset() ran. */
  get remoteClosed(): boolean {
    return this.#remoteClosed;
  }

  /** Resolves with everything received once the code under test closes its side. */
  async untilClosed(): Promise<Uint8Array> {
    await this.#pump;
    return this.received();
  }

  /** Sends bytes to the code under test. A send after the other side closed is ignored. */
  async send(...chunks: Uint8Array[]): Promise<void> {
    for (const c of chunks) {
      try {
        await this.#writer.write(c);
      } catch {
        return;
      }
    }
  }

  /** Half-closes: the code under test reads EOF after what was sent. */
  async end(): Promise<void> {
    await this.#writer.close().catch(() => {});
  }

  /** Like a TCP reset: stops reading, so the code under test's writes fail with `reason`. */
  async reset(reason: Error = new Error("Connection reset by peer")): Promise<void> {
    await this.#reader.cancel(reason).catch(() => {});
    await this.end();
  }

  /** Releases everything (end of test). */
  async close(): Promise<void> {
    await this.end();
    await this.#reader.cancel().catch(() => {});
    await this.#pump;
  }
}

/** A transport wrapper that records the sizes the code under test asked to read. */
export class SpyTransport implements HandshakeTransport {
  readonly reads: number[] = [];
  closeCalls = 0;
  constructor(readonly inner: StreamTransport) {}
  get peerAddress(): string | undefined {
    return this.inner.peerAddress;
  }
  get closed(): boolean {
    return this.inner.closed;
  }
  readExactly(n: number): Promise<Uint8Array> {
    this.reads.push(n);
    return this.inner.readExactly(n);
  }
  write(bytes: Uint8Array): Promise<void> {
    return this.inner.write(bytes);
  }
  startTls(role: TlsRole, authOnly: boolean): Promise<{ authCN: string }> {
    return this.inner.startTls(role, authOnly);
  }
  close(): void {
    this.closeCalls++;
    this.inner.close();
  }
}

/**
 * A pipe with the code under test's transport on one end (a {@link SpyTransport} over a
 * {@link StreamTransport}) and a {@link ScriptedPeer} on the other.
 */
export function scriptedPair(
  options: { peerAddress?: string; startTls?: TlsStarter } = {},
): { peer: ScriptedPeer; transport: SpyTransport } {
  const [a, b] = memoryPipe();
  const transport = new SpyTransport(
    new StreamTransport({
      ...a,
      peerAddress: options.peerAddress ?? "mem-1:40001",
      startTls: options.startTls,
    }),
  );
  return { peer: new ScriptedPeer(b), transport };
}

/**
 * Puts a scripted listener at `address` ("host:port") of a {@link MemoryNet}: every connection
 * made to it gets a new {@link ScriptedPeer}, passed to `script` and kept in the returned list.
 */
export function scriptedListener(
  net: MemoryNet,
  address: string,
  script: (peer: ScriptedPeer, index: number) => void | Promise<void>,
): ScriptedPeer[] {
  const peers: ScriptedPeer[] = [];
  net.listeners.set(address, (end) => {
    const peer = new ScriptedPeer(end);
    peers.push(peer);
    void script(peer, peers.length - 1);
  });
  return peers;
}

/** A new-session or continuation initial packet (version 2 unless given). */
export function initialPacket(
  self: ActorId,
  peer: ActorId = ActorId.EMPTY,
  nextPacket = 0n,
  version?: bigint,
): Uint8Array {
  return encodeInitialPacket({ selfVirtualId: self, peerVirtualId: peer, nextPacket, version });
}

/** An ExBlock frame around a THandshakeRequest. */
export function requestFrame(request: HandshakeRequest): Uint8Array {
  return encodeExBlock(encodeHandshakeRequest(request));
}

/** An ExBlock frame around a THandshakeReply. */
export function replyFrame(reply: HandshakeReply): Uint8Array {
  return encodeExBlock(encodeHandshakeReply(reply));
}

/** The ExBlock error reply the acceptor sends for `gist`. */
export function errorReplyFrame(gist: string): Uint8Array {
  return replyFrame({ ErrorExplaination: gist });
}

/** An ExBlock frame around raw payload bytes (valid CRC). */
export function rawFrame(payload: Uint8Array): Uint8Array {
  return encodeExBlock(payload);
}

/** A copy of `bytes` with one bit flipped at `index` (default: the last byte). */
export function flipBit(bytes: Uint8Array, index = bytes.length - 1): Uint8Array {
  const out = bytes.slice();
  out[index] ^= 0x01;
  return out;
}

/** An 8-byte ExBlock header announcing `size` payload bytes (checksum field arbitrary). */
export function exBlockHeader(size: number, checksum = 0): Uint8Array {
  const out = new Uint8Array(8);
  const view = new DataView(out.buffer);
  view.setUint32(0, checksum, true);
  view.setUint32(4, size, true);
  return out;
}

/**
 * A minimal protobuf writer for hand-made messages the codecs refuse to produce (a missing
 * required field, a bad wire type). Each call returns one encoded field.
 */
export const pb = {
  /** A varint field (wire type 0). */
  varint(field: number, value: bigint | number): Uint8Array {
    return Uint8Array.from([...varint(BigInt(field << 3)), ...varint(BigInt(value))]);
  },
  /** A length-delimited field (wire type 2): bytes, a string, or a nested message. */
  bytes(field: number, data: Uint8Array | string): Uint8Array {
    const body = typeof data === "string" ? new TextEncoder().encode(data) : data;
    return concat(
      Uint8Array.from([...varint(BigInt((field << 3) | 2)), ...varint(BigInt(body.length))]),
      body,
    );
  },
};

function varint(v: bigint): number[] {
  const out: number[] = [];
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Fixtures of the golden vectors and runs of the code under test against a scripted peer

export const V = Object.fromEntries(vectors.initialPackets.map((v) => [v.name, fromHex(v.hex)]));
export const E = Object.fromEntries(vectors.exBlocks.map((e) => [e.name, fromHex(e.frameHex)]));
/** Virtual ids of the vectors: A on node 1, B on node 2. */
export const A = ActorId.plain(1, 7061644215716937729n);
export const B = ActorId.plain(2, 7061644215716937730n);
/** The address the scripted initiator's connection reports to the incoming side. */
export const PEER_ADDR = "mem-1:40001";

/** A new-session request as node 1 (testSettings(1)) sends it to node 2. */
export function request(over: Partial<HandshakeRequest> = {}): HandshakeRequest {
  return {
    Protocol: 2n,
    ProgramPID: 1001n,
    ProgramStartTime: 5001n,
    Serial: A.localId,
    ReceiverNodeId: 2,
    SenderActorId: A.toString(),
    SenderHostName: "host-1",
    ReceiverHostName: "host-2",
    ClusterUUIDs: { ClusterUUID: "" },
    RequestModernFrame: true,
    RequestAuthOnly: false,
    ...over,
  };
}

/** A Success as node 2 (testSettings(2)) sends it with virtual id B. */
export function success(over: Partial<HandshakeSuccess> = {}): HandshakeSuccess {
  return {
    Protocol: 2n,
    ProgramPID: 1002n,
    ProgramStartTime: 5002n,
    Serial: B.localId,
    SenderActorId: B.toString(),
    ClusterUUIDs: { ClusterUUID: "" },
    StartEncryption: false,
    UseModernFrame: true,
    AuthOnly: false,
    ...over,
  };
}

/** A scripted acceptor that answers V2 and then `reply` (a message or raw bytes). */
export function answers(...reply: Array<HandshakeReply | Uint8Array>) {
  return (peer: ScriptedPeer) =>
    peer.send(V.V2, ...reply.map((r) => r instanceof Uint8Array ? r : replyFrame(r)));
}

/** A resolve that never answers but honours its abort signal. */
export function hangingResolve(seen?: AbortSignal[]) {
  return (_nodeId: number, signal: AbortSignal): Promise<ResolvedAddress | undefined> => {
    seen?.push(signal);
    return new Promise((_, reject) => {
      signal.addEventListener("abort", () => reject(new Error("aborted")), { once: true });
    });
  };
}

// ---------------------------------------------------------------------------------------------
// Outcome helpers

export function failed(o: HandshakeOutcome): { peerNodeId: number; failure: HandshakeFailure } {
  assert.equal(o.kind, "failed", describe(o));
  return o as Extract<HandshakeOutcome, { kind: "failed" }>;
}

export function silent(o: HandshakeOutcome): { peerNodeId: number; reason: string } {
  assert.equal(o.kind, "silent", describe(o));
  return o as Extract<HandshakeOutcome, { kind: "silent" }>;
}

export function done(o: HandshakeOutcome) {
  assert.equal(o.kind, "done", describe(o));
  return (o as Extract<HandshakeOutcome, { kind: "done" }>).done;
}

export function describe(o: HandshakeOutcome): string {
  if (o.kind === "failed") return `failed: ${o.failure.class} ${o.failure.message}`;
  if (o.kind === "silent") return `silent: ${o.reason}`;
  return "done";
}

// ---------------------------------------------------------------------------------------------
// Outgoing runs against a scripted acceptor listening at node 2's address (mem-2:19001)

export interface DialRun {
  outcome: HandshakeOutcome;
  peers: ScriptedPeer[];
  net: MemoryNet;
  node: TestNode;
}

export interface DialOptions {
  settings?: Partial<HandshakeSettings>;
  table?: Map<number, NodeInfo>;
  deadlineMs?: number;
  params?: Partial<OutgoingParams>;
  setup?: (node: TestNode, net: MemoryNet) => void;
  env?: (node: TestNode, peers: ScriptedPeer[]) => HandshakeEnvironment;
}

export async function dial(
  script: ((peer: ScriptedPeer) => void | Promise<void>) | undefined,
  o: DialOptions = {},
): Promise<DialRun> {
  const { net, nodes } = testCluster({ 1: o.settings ?? {} }, o.table ?? testTable(1, 2));
  const node = nodes[1];
  const peers = script ? scriptedListener(net, "mem-2:19001", script) : [];
  o.setup?.(node, net);
  const env = o.env ? o.env(node, peers) : node.env;
  const outcome = await runOutgoingHandshake(node.settings, env, {
    peerNodeId: 2,
    peerHostName: "host-2",
    selfVirtualId: A,
    peerVirtualId: ActorId.EMPTY,
    nextPacket: 0n,
    ...o.params,
  }, { deadlineMs: o.deadlineMs ?? 2000 });
  if (outcome.kind === "done") outcome.transport.close();
  for (const p of peers) await p.untilClosed();
  return { outcome, peers, net, node };
}

/**
 * An outgoing failure: class, explanation, the 4.4 message, no error reply (the outgoing side
 * never sends one: the peer got at most the initial packet and the request), and every
 * connection closed.
 */
export function assertOutgoingFailed(
  r: DialRun,
  cls: FailureClass,
  explanation: string,
  o: { network?: boolean; addr?: string; resolveTimeout?: boolean } = {},
): HandshakeFailure {
  const { peerNodeId, failure } = failed(r.outcome);
  assert.equal(peerNodeId, 2);
  assert.equal(failure.class, cls);
  assert.equal(failure.explanation, explanation);
  assert.equal(failure.network, o.network ?? false);
  assert.equal(failure.errorReplySent, false);
  assert.equal(
    failure.message,
    `outgoing handshake Peer# host-2(${o.addr ?? "mem-2:19001"}) ${
      o.resolveTimeout ? "[resolve timeout] " : ""
    }${explanation}`,
  );
  for (const t of r.net.transports) assert.ok(t.closed, "transport left open");
  for (const p of r.peers) {
    assert.ok(p.remoteClosed, "the peer did not see the connection close");
    assertNoReplySent(p.received());
  }
  return failure;
}

/** What an outgoing side wrote holds an initial packet and at most one request ExBlock. */
export function assertNoReplySent(bytes: Uint8Array): void {
  if (bytes.length <= 52) return;
  const rest = bytes.subarray(52);
  let frame;
  try {
    frame = decodeExBlock(rest);
  } catch {
    return; // not an ExBlock at all (fake TLS bytes): certainly no error reply
  }
  decodeHandshakeRequest(frame.payload); // a request, not a reply
}

// ---------------------------------------------------------------------------------------------
// Incoming runs against a scripted initiator

export interface AcceptRun {
  outcome: HandshakeOutcome;
  written: Uint8Array;
  transport: SpyTransport;
  node: TestNode;
  net: MemoryNet;
}

export interface AcceptOptions {
  self?: number;
  settings?: Partial<HandshakeSettings>;
  table?: Map<number, NodeInfo>;
  deadlineMs?: number;
  /** Half-close after sending the input. */
  end?: boolean;
  setup?: (node: TestNode, net: MemoryNet) => void;
  startTls?: TlsStarter;
  signal?: AbortSignal;
}

export async function accept(input: Uint8Array[], o: AcceptOptions = {}): Promise<AcceptRun> {
  const self = o.self ?? 2;
  const { net, nodes } = testCluster({ [self]: o.settings ?? {} }, o.table ?? testTable(1, 2));
  const node = nodes[self];
  o.setup?.(node, net);
  const { peer, transport } = scriptedPair({ peerAddress: PEER_ADDR, startTls: o.startTls });
  await peer.send(...input);
  if (o.end) await peer.end();
  const outcome = await runIncomingHandshake(node.settings, node.env, transport, {
    deadlineMs: o.deadlineMs ?? 2000,
    signal: o.signal,
  });
  if (outcome.kind === "done") outcome.transport.close();
  const written = await peer.untilClosed();
  return { outcome, written, transport, node, net };
}

/** An incoming rejection with an error reply (4.2 "yes" rows). */
export function assertRejectedWithReply(r: AcceptRun, gist: string, host = "host-1"): void {
  const { peerNodeId, failure } = failed(r.outcome);
  assert.equal(peerNodeId, 1);
  assert.equal(failure.class, "permanent");
  assert.equal(failure.explanation, gist);
  assert.equal(failure.network, false);
  assert.equal(failure.errorReplySent, true);
  assert.equal(failure.message, `incoming handshake Peer# ${host}(${PEER_ADDR}) ${gist}`);
  // The peer received the all-zero answer and then exactly the ExBlock error reply.
  assert.equal(toHex(r.written), toHex(concat(V.V2, errorReplyFrame(gist))));
  assert.equal(
    decodeHandshakeReply(decodeExBlock(r.written.subarray(52)).payload)
      .ErrorExplaination,
    gist,
  );
  assert.ok(r.transport.closed);
}

/** An incoming failure without an error reply. */
export function assertIncomingFailed(
  r: AcceptRun,
  cls: FailureClass,
  gist: string,
  o: { peerNodeId: number; host?: string; network?: boolean; written: Uint8Array },
): HandshakeFailure {
  const { peerNodeId, failure } = failed(r.outcome);
  assert.equal(peerNodeId, o.peerNodeId);
  assert.equal(failure.class, cls);
  assert.equal(failure.explanation, gist);
  assert.equal(failure.network, o.network ?? false);
  assert.equal(failure.errorReplySent, false);
  assert.equal(
    failure.message,
    `incoming handshake Peer# ${o.host ?? "<unknown>"}(${PEER_ADDR}) ${gist}`,
  );
  assert.equal(toHex(r.written), toHex(o.written), "bytes the peer received");
  assert.ok(r.transport.closed);
  return failure;
}
