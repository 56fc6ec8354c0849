/**
 * The fuzzer behind `deno task fuzz` and `tests/fuzz_short_test.ts`. Three targets, mixed in one
 * deterministic stream of cases from a seed:
 *
 * - **decoders**: every byte decoder of `lib/wire` (with the oracles of the wire fuzz tests) on
 *   random bytes and mutations of the golden vectors: each must return a value or throw a
 *   {@link WireError}, nothing else;
 * - **actor-id texts**: `ActorId.parse` on random texts: never throws, and succeeds exactly on
 *   `[u32:u64:u32]`;
 * - **incoming handshakes**: `runIncomingHandshake` over an in-memory pipe whose far end sends
 *   a hostile stream (random bytes, mutated initial packets, requests with random fields,
 *   mutated payloads re-framed with a correct CRC, continuations, fake TLS records), under one
 *   of several node configurations. It must end in a typed outcome (done, silent, or failed
 *   with a failure class and never an internal error), close its transport unless done, and
 *   not hang on a stream that ended. Cookie checks dial a second in-memory node, whose
 *   handshakes are held to the same rules.
 *
 * An unhandled promise rejection during a run is a failure too.
 * @module
 */
import { ActorId, WireError } from "../lib/wire/mod.ts";
import { encodeExBlock } from "../lib/wire/exblock.ts";
import { encodeHandshakeRequest, type HandshakeRequest } from "../lib/wire/messages.ts";
import { encodeInitialPacket } from "../lib/wire/initial_packet.ts";
import { runIncomingHandshake } from "../lib/handshake/handshake.ts";
import { StreamTransport } from "../lib/handshake/stream_transport.ts";
import type { EncryptionMode, HandshakeOutcome } from "../lib/handshake/types.ts";
import { memoryPipe } from "../lib/io/memory_pipe.ts";
import { Rng } from "../tests/_helpers/random.ts";
import { fromHex, toHex, vectors } from "../tests/_helpers/vectors.ts";
import { fakeTls, testCluster, type TestNode } from "../tests/_helpers/memory_net.ts";
import {
  DECODERS,
  mutate,
  nextInput,
  nextText,
  PARSE_OK,
  PAYLOAD_MUTATORS,
} from "../tests/_helpers/wire_mutators.ts";

/** What to run. */
export interface FuzzOptions {
  /** Total cases over all targets. */
  readonly cases: number;
  /** The seed of the case stream (a u32). */
  readonly seed: number;
  /** Every n-th case is an incoming handshake (default 16). */
  readonly incomingEvery?: number;
  /** Every n-th case (of the rest) is an actor-id text (default 10). */
  readonly textEvery?: number;
  /** Called every `progressEvery` cases (default 100 000) with the cases done so far. */
  readonly onProgress?: (done: number) => void;
  readonly progressEvery?: number;
  /** Stop after this many failures (default 20). */
  readonly maxFailures?: number;
}

/** One failing case, with what reproduces it. */
export interface FuzzFailure {
  readonly target: "decoder" | "text" | "incoming" | "unhandled";
  /** The case number in the stream of `seed`. */
  readonly case: number;
  readonly error: string;
  /** The input, as hex (bytes, or the chunks joined by `|`) or JSON (texts). */
  readonly input: string;
}

/** What a run did. */
export interface FuzzReport {
  readonly seed: number;
  readonly cases: number;
  readonly decoderCases: number;
  /** Decoder calls: each decoder case runs every decoder. */
  readonly decoderCalls: number;
  readonly textCases: number;
  readonly incomingCases: number;
  /** Incoming outcomes by kind and gist, for a view of what the cases reached. */
  readonly outcomes: Readonly<Record<string, number>>;
  readonly failures: readonly FuzzFailure[];
  readonly elapsedMs: number;
}

function errorText(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

// ---------------------------------------------------------------------------------------------
// Decoders and texts

function decoderCase(input: Uint8Array): string | undefined {
  for (const [name, decode] of DECODERS) {
    try {
      decode(input);
    } catch (e) {
      if (!(e instanceof WireError)) return `${name} threw ${errorText(e)}`;
    }
  }
  return undefined;
}

function textCase(text: string): string | undefined {
  try {
    const { id, ok } = ActorId.parse(text);
    if (!(id instanceof ActorId)) return "ActorId.parse returned no ActorId";
    const m = PARSE_OK.exec(text);
    const fits = m !== null && BigInt(m[1]) <= 0xffffffffn && BigInt(m[2]) < 1n << 64n &&
      BigInt(m[3]) <= 0xffffffffn;
    if (ok !== fits) return `ActorId.parse said ok=${ok}, expected ${fits}`;
    return undefined;
  } catch (e) {
    return `ActorId.parse threw ${errorText(e)}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Incoming handshakes

const V = Object.fromEntries(vectors.initialPackets.map((v) => [v.name, fromHex(v.hex)]));
/** The vectors' virtual ids: A on node 1, B on node 2 (the node under test). */
const A = ActorId.plain(1, 7061644215716937729n);
const B = ActorId.plain(2, 7061644215716937730n);

interface Config {
  readonly name: string;
  readonly node: TestNode;
  readonly cookieNode: TestNode;
}

/** Node 2 under test in a few configurations; node 1 answers cookie checks. */
function configs(): Config[] {
  const variants: Array<[string, Record<string, unknown>]> = [
    ["plain", {}],
    ["optional", { encryption: "optional" as EncryptionMode }],
    ["required", { encryption: "required" as EncryptionMode, tlsAuthOnly: true }],
    ["cookie", { cookie: "c00kie" }],
    ["uuid+tags", {
      clusterUUID: "u2",
      acceptUUID: ["u1", "u2"],
      versionTag: "v2",
      acceptedVersionTags: ["v1", "v2"],
    }],
  ];
  return variants.map(([name, over]) => {
    const { nodes } = testCluster({ 1: { cookie: "c00kie" }, 2: over });
    const node = nodes[2];
    // A session with node 1 that the continuation vector V3 (Self A, Peer B) resumes.
    node.sessions.set(1, {
      self: B,
      peer: A,
      nextPacket: 17n,
      params: {
        encryption: name === "required",
        useModernFrame: true,
        authOnly: false,
        authCN: "",
        peerScopeId: [0n, 0n],
      },
    });
    return { name, node, cookieNode: nodes[1] };
  });
}

const HOSTS = ["host-1", "host-2", "host-3", "", "host-1\0x", "h".repeat(300)];

function u64(rng: Rng): bigint {
  return rng.u64();
}

/** A request with each field valid, absent, or odd, at random. */
function randomRequest(rng: Rng, self: ActorId): HandshakeRequest {
  const pick = <T>(...xs: T[]) => rng.pick(xs);
  const maybe = <T>(p: number, v: () => T): T | undefined => rng.chance(p) ? v() : undefined;
  const odd = (p: number) => rng.chance(p);
  const r: HandshakeRequest = {
    Protocol: odd(0.05) ? pick(3n, 0n) : 2n,
    ProgramPID: u64(rng),
    ProgramStartTime: u64(rng),
    Serial: odd(0.2) ? u64(rng) : self.localId,
    ReceiverNodeId: odd(0.15) ? pick(1, 0, 0xfffff, rng.u32()) : 2,
    SenderActorId: odd(0.15)
      ? pick("", "[0:0:0]", "garbage", `[${rng.u32()}:${u64(rng)}:${rng.u32()}]`)
      : self.toString(),
    SenderHostName: odd(0.15) ? maybe(0.5, () => pick(...HOSTS)) : `host-${self.nodeId}`,
    ReceiverHostName: odd(0.15) ? maybe(0.5, () => pick(...HOSTS)) : "host-2",
    UUID: maybe(0.2, () => pick("u1", "u2", "x")),
    ClusterUUIDs: maybe(0.8, () => ({
      ClusterUUID: pick("", "u1", "u1", "u3"),
      AcceptUUID: rng.chance(0.5) ? [pick("u2", "x")] : undefined,
    })),
    VersionTag: maybe(0.3, () => pick("v1", "v2", "v9")),
    AcceptedVersionTags: maybe(0.3, () => [pick("v1", "v2", "v9")]),
    RequireEncryption: maybe(0.6, () => rng.chance(0.5)),
    ClientScopeId: maybe(0.2, () => ({ X1: u64(rng), X2: u64(rng) })),
    Cookie: maybe(0.15, () => pick("c00kie", "wrong", "")),
    DoCheckCookie: maybe(0.05, () => true),
    RequestModernFrame: maybe(0.9, () => rng.chance(0.9)),
    RequestAuthOnly: maybe(0.7, () => rng.chance(0.3)),
    Ballast: maybe(0.05, () => rng.bytes(rng.int(2000))),
  };
  return r;
}

function selfId(rng: Rng): ActorId {
  const node = rng.pick([1, 1, 1, 3, 7, 0xfffff]);
  return rng.chance(0.05)
    ? ActorId.service(node, "cookie check")
    : ActorId.plain(node, u64(rng) || 1n);
}

/** The fake TLS record of `memory_net.ts` as the peer (node `peer`) would send it. */
function fakeTlsRecord(rng: Rng, peer: number): Uint8Array {
  const rec = new Uint8Array(12);
  rec.set(new TextEncoder().encode(rng.chance(0.9) ? "TLS" : "XYZ"));
  rec[3] = rng.chance(0.8) ? 2 : 1; // node 1 is the client towards node 2
  new DataView(rec.buffer).setUint32(4, peer, true);
  rec[8] = rng.chance(0.5) ? 1 : 0;
  return rec;
}

/** A hostile stream: the chunks the peer sends, and whether it then ends its side. */
function incomingInput(rng: Rng): { chunks: Uint8Array[]; end: boolean } {
  const chunks: Uint8Array[] = [];
  const kind = rng.int(100);
  const self = selfId(rng);
  const packet = () =>
    encodeInitialPacket({
      selfVirtualId: self,
      peerVirtualId: ActorId.EMPTY,
      nextPacket: rng.chance(0.9) ? 0n : u64(rng),
    });
  if (kind < 8) {
    chunks.push(rng.bytes(rng.int(200)));
  } else if (kind < 20) {
    chunks.push(mutate(rng, rng.pick(Object.values(V))));
    if (rng.chance(0.5)) chunks.push(nextInput(rng));
  } else if (kind < 65) {
    const request = encodeHandshakeRequest(randomRequest(rng, self));
    const payload = rng.chance(0.3) ? mutate(rng, request, PAYLOAD_MUTATORS) : request;
    chunks.push(packet(), encodeExBlock(payload.length > 1 << 20 ? request : payload));
  } else if (kind < 80) {
    chunks.push(packet(), nextInput(rng));
  } else if (kind < 92) {
    // Continuation: V3 (resumes the known session), or another id pair.
    chunks.push(
      rng.chance(0.6) ? V.V3 : encodeInitialPacket({
        selfVirtualId: self,
        peerVirtualId: rng.chance(0.5) ? B : ActorId.plain(2, u64(rng)),
        nextPacket: u64(rng),
      }),
    );
  } else {
    // A whole frame that is valid, then trailing garbage.
    chunks.push(
      packet(),
      encodeExBlock(encodeHandshakeRequest(randomRequest(rng, self))),
      rng.bytes(rng.int(64)),
    );
  }
  if (rng.chance(0.5)) chunks.push(fakeTlsRecord(rng, self.nodeId));
  // Split the stream at random points, as TCP may.
  if (rng.chance(0.3)) {
    const all = concat(chunks);
    chunks.length = 0;
    let at = 0;
    while (at < all.length) {
      const n = rng.range(1, Math.max(1, all.length - at));
      chunks.push(all.subarray(at, at + n));
      at += n;
    }
  }
  return { chunks, end: rng.chance(0.95) };
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Why an outcome breaks the rules, if it does. */
function judge(o: HandshakeOutcome, ended: boolean): string | undefined {
  if (o === null || typeof o !== "object") return `not an outcome: ${String(o)}`;
  switch (o.kind) {
    case "done":
    case "silent":
      return undefined;
    case "failed": {
      const f = o.failure;
      if (!["transient", "permanent", "session_mismatch"].includes(f.class)) {
        return `failure class ${f.class}`;
      }
      if (/internal error/.test(f.explanation)) return `internal error: ${f.explanation}`;
      if (!f.message.endsWith(f.explanation)) return `message ${f.message} lacks the explanation`;
      if (ended && f.explanation.startsWith("Handshake timed out")) {
        return `hung on a stream that had ended: ${f.explanation}`;
      }
      return undefined;
    }
    default:
      return `unknown outcome kind ${(o as { kind: unknown }).kind}`;
  }
}

/** A gist of an outcome for the tally. */
function gist(o: HandshakeOutcome): string {
  if (o.kind !== "failed") return o.kind;
  return `failed ${o.failure.class} ${o.failure.explanation.split("#")[0].slice(0, 48).trim()}`;
}

async function incomingCase(
  config: Config,
  input: { chunks: Uint8Array[]; end: boolean },
  tally: Map<string, number>,
): Promise<string | undefined> {
  const [near, far] = memoryPipe();
  const transport = new StreamTransport({
    ...near,
    peerAddress: "fuzz:1",
    startTls: fakeTls(config.node.settings.selfNodeId),
  });
  const writer = far.writable.getWriter();
  const reader = far.readable.getReader();
  // Drain what the code under test writes, as a peer's socket would.
  const drain = (async () => {
    try {
      while (!(await reader.read()).done);
    } catch {
      // cancelled below
    }
  })();
  const feed = (async () => {
    try {
      for (const c of input.chunks) await writer.write(c);
      if (input.end) await writer.close();
    } catch {
      // the code under test closed its side first
    }
  })();
  let problem: string | undefined;
  try {
    const outcome = await runIncomingHandshake(
      config.node.settings,
      config.node.env,
      transport,
      { deadlineMs: input.end ? 2000 : 3 },
    );
    problem = judge(outcome, input.end);
    tally.set(gist(outcome), (tally.get(gist(outcome)) ?? 0) + 1);
    if (outcome.kind === "done") outcome.transport.close();
    else if (!transport.closed) problem ??= `transport left open after ${gist(outcome)}`;
  } catch (e) {
    problem = `runIncomingHandshake rejected: ${errorText(e)}`;
  }
  transport.close();
  await writer.abort().catch(() => {});
  await reader.cancel().catch(() => {});
  await Promise.all([feed, drain]);
  // The cookie checks this case made: node 1 answered them with its own incoming handshakes.
  const side = config.cookieNode.incoming.splice(0);
  for (const o of await Promise.allSettled(side)) {
    if (o.status === "rejected") problem ??= `cookie-check side rejected: ${errorText(o.reason)}`;
    else problem ??= judge(o.value, false);
  }
  config.node.requests.length = 0;
  config.cookieNode.requests.length = 0;
  return problem;
}

// ---------------------------------------------------------------------------------------------

/** Runs `options.cases` cases from `options.seed`; resolves with the report, never rejects. */
export async function runFuzz(options: FuzzOptions): Promise<FuzzReport> {
  const started = performance.now();
  const seed = options.seed >>> 0;
  const rng = new Rng(seed);
  const incomingEvery = options.incomingEvery ?? 16;
  const textEvery = options.textEvery ?? 10;
  const progressEvery = options.progressEvery ?? 100_000;
  const maxFailures = options.maxFailures ?? 20;
  const failures: FuzzFailure[] = [];
  const tally = new Map<string, number>();
  const counts = { decoder: 0, text: 0, incoming: 0 };
  let current = 0;
  const onUnhandled = (e: PromiseRejectionEvent) => {
    e.preventDefault();
    failures.push({
      target: "unhandled",
      case: current,
      error: `unhandled rejection: ${errorText(e.reason)}`,
      input: "",
    });
  };
  globalThis.addEventListener("unhandledrejection", onUnhandled);
  const setups = configs();
  try {
    for (let i = 0; i < options.cases && failures.length < maxFailures; i++) {
      current = i;
      if (i % incomingEvery === 0) {
        counts.incoming++;
        const config = rng.pick(setups);
        const input = incomingInput(rng);
        const problem = await incomingCase(config, input, tally);
        if (problem) {
          failures.push({
            target: "incoming",
            case: i,
            error: `[${config.name}${input.end ? "" : ", left open"}] ${problem}`,
            input: input.chunks.map(toHex).join("|"),
          });
        }
      } else if (i % textEvery === 1) {
        counts.text++;
        const text = nextText(rng);
        const problem = textCase(text);
        if (problem) {
          failures.push({ target: "text", case: i, error: problem, input: JSON.stringify(text) });
        }
      } else {
        counts.decoder++;
        const input = nextInput(rng);
        const problem = decoderCase(input);
        if (problem) {
          failures.push({ target: "decoder", case: i, error: problem, input: toHex(input) });
        }
      }
      if ((i + 1) % progressEvery === 0) options.onProgress?.(i + 1);
    }
    // Let late rejections of the last case surface.
    await new Promise((r) => setTimeout(r, 0));
  } finally {
    globalThis.removeEventListener("unhandledrejection", onUnhandled);
  }
  const cases = counts.decoder + counts.text + counts.incoming;
  return {
    seed,
    cases,
    decoderCases: counts.decoder,
    decoderCalls: counts.decoder * DECODERS.length,
    textCases: counts.text,
    incomingCases: counts.incoming,
    outcomes: Object.fromEntries([...tally].sort((a, b) => b[1] - a[1])),
    failures,
    elapsedMs: performance.now() - started,
  };
}
