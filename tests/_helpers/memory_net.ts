/**
 * An in-memory network of handshake nodes for tests: each node has settings, a node table, a
 * tiny proxy (fresh virtual ids, a session table for continuations) and a listener that runs
 * the incoming procedure on every connection. Dialing goes through in-memory pipes.
 */
import { ActorId } from "../../lib/wire/actor_id.ts";
import { memoryPipe, type PipeEnd } from "../../lib/io/memory_pipe.ts";
import type { HandshakeRequest } from "../../lib/wire/messages.ts";
import {
  runIncomingHandshake,
  type RunOptions,
  runOutgoingHandshake,
} from "../../lib/handshake/handshake.ts";
import { StreamTransport, type TlsStarter } from "../../lib/handshake/stream_transport.ts";
import type {
  ContinuationAsk,
  ContinuationDecision,
  HandshakeDone,
  HandshakeEnvironment,
  HandshakeOutcome,
  HandshakeSettings,
  NewSessionDecision,
  NodeInfo,
  ResolvedAddress,
  SessionParams,
} from "../../lib/handshake/types.ts";

/** Settings with test defaults: node N is `host-N`, everything off. */
export function testSettings(
  nodeId: number,
  overrides: Partial<HandshakeSettings> = {},
): HandshakeSettings {
  return {
    selfNodeId: nodeId,
    selfHostName: `host-${nodeId}`,
    programPid: BigInt(1000 + nodeId),
    programStartTime: BigInt(5000 + nodeId),
    clusterUUID: "",
    acceptUUID: [],
    acceptedVersionTags: [],
    cookie: "",
    scopeId: [0n, 0n],
    encryption: "disabled",
    tlsAuthOnly: false,
    ballastSize: 0,
    handshakeTimeoutMs: 1000,
    ...overrides,
  };
}

/**
 * A stand-in for TLS over a pipe: each side writes a 12-byte record naming its role and node
 * and reads the peer's. Two servers or two clients fail, as real TLS would. The "CN" is
 * `node-<peer id>`. Real TLS is tested in tls_test.ts and the node tests.
 */
export function fakeTls(selfNodeId: number): TlsStarter {
  return async (conn, role, authOnly) => {
    const rec = new Uint8Array(12);
    rec.set(new TextEncoder().encode("TLS"));
    rec[3] = role === "server" ? 1 : 2;
    new DataView(rec.buffer).setUint32(4, selfNodeId, true);
    rec[8] = authOnly ? 1 : 0;
    await conn.write(rec);
    const peer = await conn.readExactly(12);
    if (new TextDecoder().decode(peer.subarray(0, 3)) !== "TLS") {
      throw new Error("SSL error: wrong version number");
    }
    if (peer[3] === rec[3]) throw new Error(`SSL error: both sides are TLS ${role}s`);
    return { authCN: `node-${new DataView(peer.buffer, peer.byteOffset).getUint32(4, true)}` };
  };
}

/** A session as the tiny proxy keeps it. */
export interface TestSession {
  self: ActorId;
  peer: ActorId;
  nextPacket: bigint;
  params: SessionParams;
}

let counter = 0;
/** A fresh virtual id for `nodeId`: (0x62000000 << 32 | counter), like the spec's vectors. */
export function freshVirtualId(nodeId: number): ActorId {
  return ActorId.plain(nodeId, (0x62000000n << 32n) | BigInt(++counter));
}

/** An in-memory network. */
export class MemoryNet {
  readonly listeners = new Map<string, (end: PipeEnd) => void>();
  /** Every dialed transport, and those accepted by the default listener (see acceptWith). */
  readonly transports: StreamTransport[] = [];

  async connect(address: ResolvedAddress, tls?: TlsStarter): Promise<StreamTransport> {
    await Promise.resolve();
    const key = `${address.address}:${address.port}`;
    const listener = this.listeners.get(key);
    if (!listener) throw new Error("Connection refused");
    const [a, b] = memoryPipe();
    listener(b);
    const t = new StreamTransport({ ...a, peerAddress: key, startTls: tls });
    this.transports.push(t);
    return t;
  }
}

/** One node of a {@link MemoryNet}. */
export class TestNode {
  readonly incoming: Promise<HandshakeOutcome>[] = [];
  readonly sessions = new Map<number, TestSession>();
  /** Override the proxy's new-session decision. */
  newSessionDecision?: (peer: number, req: HandshakeRequest) => Promise<NewSessionDecision>;
  /** Override the proxy's continuation decision. */
  continuationDecision?: (ask: ContinuationAsk) => Promise<ContinuationDecision>;
  /** Override resolve (e.g. to hang or fail). */
  resolveOverride?: (nodeId: number, signal: AbortSignal) => Promise<ResolvedAddress | undefined>;
  readonly env: HandshakeEnvironment;
  readonly requests: HandshakeRequest[] = [];

  constructor(
    readonly net: MemoryNet,
    readonly settings: HandshakeSettings,
    readonly table: Map<number, NodeInfo>,
    readonly runOptions: RunOptions = {},
  ) {
    this.env = {
      resolve: (nodeId, signal) => {
        if (this.resolveOverride) return this.resolveOverride(nodeId, signal);
        const info = table.get(nodeId);
        return Promise.resolve(
          info ? { address: info.address ?? info.host, port: info.port } : undefined,
        );
      },
      nodeInfo: (nodeId) => Promise.resolve(table.get(nodeId)),
      connect: (address) => net.connect(address, fakeTls(settings.selfNodeId)),
      continuation: (ask) => {
        if (this.continuationDecision) return this.continuationDecision(ask);
        const s = this.sessions.get(ask.self.nodeId);
        if (s && s.self.equals(ask.peer) && s.peer.equals(ask.self)) {
          return Promise.resolve({
            kind: "ack",
            self: s.self,
            nextPacket: s.nextPacket,
            params: s.params,
          });
        }
        return Promise.resolve({ kind: "nak" });
      },
      newSession: (peer, req) => {
        this.requests.push(req);
        if (this.newSessionDecision) return this.newSessionDecision(peer, req);
        return Promise.resolve({ kind: "ok", selfVirtualId: freshVirtualId(settings.selfNodeId) });
      },
    };
    this.acceptWith((t) => runIncomingHandshake(this.settings, this.env, t, this.runOptions), {
      recordInNet: true,
    });
  }

  /**
   * Makes this node accept connections on its table address, running `run` on each accepted
   * transport (the i-th one gets `i`); outcomes land in {@link TestNode.incoming}, and with
   * `remember` finished sessions are kept for continuations. With `recordInNet` the accepted
   * transports are also listed in {@link MemoryNet.transports} (the default listener does that);
   * otherwise that list holds only dialed ones. Returns the accepted transports.
   */
  acceptWith(
    run: (transport: StreamTransport, i: number) => Promise<HandshakeOutcome>,
    { remember = true, recordInNet = false }: { remember?: boolean; recordInNet?: boolean } = {},
  ): StreamTransport[] {
    const accepted: StreamTransport[] = [];
    const own = this.table.get(this.settings.selfNodeId);
    if (!own) return accepted;
    this.net.listeners.set(`${own.address ?? own.host}:${own.port}`, (end) => {
      const t = new StreamTransport({
        ...end,
        peerAddress: "memory",
        startTls: fakeTls(this.settings.selfNodeId),
      });
      if (recordInNet) this.net.transports.push(t);
      const i = accepted.push(t) - 1;
      this.incoming.push(
        run(t, i).then((o) => {
          if (remember && o.kind === "done") this.remember(o.done);
          return o;
        }),
      );
    });
    return accepted;
  }

  /** Keeps a finished handshake's session so continuations can be acknowledged. */
  remember(done: HandshakeDone): void {
    this.sessions.set(done.peerNodeId, {
      self: done.selfVirtualId,
      peer: done.peerVirtualId,
      nextPacket: 0n,
      params: done.params,
    });
  }

  /** Runs an outgoing new-session handshake to `peer`. */
  async dial(peer: number, options: RunOptions = this.runOptions): Promise<HandshakeOutcome> {
    const info = this.table.get(peer);
    const outcome = await runOutgoingHandshake(this.settings, this.env, {
      peerNodeId: peer,
      peerHostName: info?.host ?? "",
      selfVirtualId: freshVirtualId(this.settings.selfNodeId),
      peerVirtualId: ActorId.EMPTY,
      nextPacket: 0n,
    }, options);
    if (outcome.kind === "done") this.remember(outcome.done);
    return outcome;
  }

  /** Runs an outgoing continuation of the remembered session with `peer`. */
  resume(peer: number, nextPacket = 0n): Promise<HandshakeOutcome> {
    const s = this.sessions.get(peer);
    if (!s) throw new Error(`no session with ${peer}`);
    return runOutgoingHandshake(this.settings, this.env, {
      peerNodeId: peer,
      peerHostName: this.table.get(peer)?.host ?? "",
      selfVirtualId: s.self,
      peerVirtualId: s.peer,
      nextPacket,
      sessionParams: s.params,
    }, this.runOptions);
  }

  /** The outcome of the i-th incoming handshake (0-based), once it finishes. */
  async incomingOutcome(i = 0): Promise<HandshakeOutcome> {
    for (let tries = 0; this.incoming.length <= i; tries++) {
      if (tries > 2000) throw new Error(`no incoming handshake #${i}`);
      await new Promise((r) => setTimeout(r, 1));
    }
    return await this.incoming[i];
  }
}

/** A node table where node N is `host-N` at the in-memory address `mem-N:19001`. */
export function testTable(...nodeIds: number[]): Map<number, NodeInfo> {
  return new Map(
    nodeIds.map((n) => [n, { nodeId: n, host: `host-${n}`, address: `mem-${n}`, port: 19001 }]),
  );
}

/** Builds a net and nodes with a shared table; overrides per node id. */
export function testCluster(
  overrides: Record<number, Partial<HandshakeSettings>>,
  table?: Map<number, NodeInfo>,
): { net: MemoryNet; nodes: Record<number, TestNode> } {
  const ids = Object.keys(overrides).map(Number);
  const t = table ?? testTable(...ids);
  const net = new MemoryNet();
  const nodes: Record<number, TestNode> = {};
  for (const id of ids) nodes[id] = new TestNode(net, testSettings(id, overrides[id]), t);
  return { net, nodes };
}
