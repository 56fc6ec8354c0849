import assert from "node:assert/strict";
import { ErrorBackoff } from "../lib/proxy/backoff.ts";
import { type HandshakeHandle, PeerProxy, type ProxyStep } from "../lib/proxy/peer_proxy.ts";
import { VirtualIdAllocator } from "../lib/proxy/virtual_id.ts";
import { ActorId } from "../lib/wire/actor_id.ts";
import type { HandshakeFailure } from "../lib/handshake/failure.ts";
import type {
  ContinuationDecision,
  HandshakeDone,
  NewSessionDecision,
  SessionParams,
} from "../lib/handshake/types.ts";
import type { HandshakeRequest } from "../lib/wire/messages.ts";

const PARAMS: SessionParams = {
  encryption: false,
  useModernFrame: true,
  authOnly: false,
  authCN: "",
  peerScopeId: [0n, 0n],
};

class Handle implements HandshakeHandle {
  poisoned: string | undefined;
  constructor(readonly direction: "incoming" | "outgoing") {}
  poison(reason: string) {
    this.poisoned = reason;
  }
}

function proxy(self: number, peer: number, clock = () => 1_700_000_000) {
  const terminated: string[] = [];
  const p = new PeerProxy(self, peer, `host-${peer}`, new VirtualIdAllocator(clock), {
    terminateSession: (r) => terminated.push(r),
  });
  return { p, terminated };
}

function request(peer: number, serial: bigint, extra: Partial<HandshakeRequest> = {}) {
  return {
    Protocol: 2n,
    ProgramPID: 77n,
    ProgramStartTime: 88n,
    Serial: serial,
    ReceiverNodeId: 1,
    SenderActorId: `[${peer}:${serial}:0]`,
    SenderHostName: `host-${peer}`,
    ...extra,
  };
}

function doneOf(self: ActorId, peer: ActorId, program = true): HandshakeDone {
  return {
    peerNodeId: peer.nodeId,
    selfVirtualId: self,
    peerVirtualId: peer,
    nextPacketFromPeer: 0n,
    programInfo: program ? { pid: 1n, startTime: 2n, serial: peer.localId } : null,
    params: PARAMS,
    peerHostName: "x",
  };
}

function failure(cls: HandshakeFailure["class"], explanation = "x"): HandshakeFailure {
  return { class: cls, explanation, message: explanation, network: false, errorReplySent: false };
}

async function settled<T>(p: Promise<T>): Promise<T | "pending"> {
  return await Promise.race([p, new Promise<"pending">((r) => setTimeout(() => r("pending"), 5))]);
}

Deno.test("virtual ids: LocalId is unix seconds << 32 | counter and strictly increasing", () => {
  let now = 1_700_000_000;
  const ids = new VirtualIdAllocator(() => now);
  const a = ids.nextLocalId();
  assert.equal(a, (1_700_000_000n << 32n) | 1n);
  const b = ids.nextLocalId();
  assert.equal(b, a + 1n);
  now -= 100; // the clock goes back: ids must still grow
  const c = ids.nextLocalId();
  assert.ok(c > b);
  const v = ids.next(5);
  assert.equal(v.nodeId, 5);
  assert.equal(v.hint, 0);
  assert.equal(v.poolId, 0);
  assert.ok(v.localId > c);
});

Deno.test("backoff: 10 ms, x4, capped at 10 s by default, reset after success", () => {
  const b = new ErrorBackoff();
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7].map(() => b.next()), [
    10,
    40,
    160,
    640,
    2560,
    10000,
    10000,
  ]);
  b.reset();
  assert.equal(b.next(), 10);
  const newer = new ErrorBackoff({ maxMs: 1000 });
  assert.deepEqual([1, 2, 3, 4, 5].map(() => newer.next()), [10, 40, 160, 640, 1000]);
  assert.throws(() => new ErrorBackoff({ firstMs: 0 }), RangeError);
});

Deno.test("tie-break: the lower node holds its answer while its own outgoing handshake runs", async () => {
  const { p } = proxy(1, 2);
  const out = new Handle("outgoing");
  p.startOutgoing(out, true);
  const inc = new Handle("incoming");
  const answer = p.newSession(inc, request(2, 500n));
  assert.equal(await settled(answer), "pending");
  // Our outgoing handshake succeeds: the held incoming one is dropped.
  const step = p.done(out, doneOf(ActorId.plain(1, 10n), ActorId.plain(2, 20n)));
  assert.equal(step.kind, "session_created");
  assert.deepEqual(await answer, { kind: "poison", reason: "dropped by tie-break" });
  assert.ok(inc.poisoned);
});

Deno.test("tie-break: a held answer is released when the own outgoing handshake fails", async () => {
  const { p } = proxy(1, 2);
  const out = new Handle("outgoing");
  p.startOutgoing(out, true);
  const inc = new Handle("incoming");
  const answer = p.newSession(inc, request(2, 500n));
  assert.equal(p.fail(out, failure("transient")).kind, "none");
  const decision = await answer as Extract<NewSessionDecision, { kind: "ok" }>;
  assert.equal(decision.kind, "ok");
  assert.equal(decision.selfVirtualId.nodeId, 1);
  assert.equal(inc.poisoned, undefined);
});

Deno.test("tie-break: the higher node answers at once and its Done drops its own outgoing", async () => {
  const { p } = proxy(2, 1);
  const out = new Handle("outgoing");
  p.startOutgoing(out, true);
  const inc = new Handle("incoming");
  const decision = await p.newSession(inc, request(1, 500n, { SenderHostName: "host-1" }));
  assert.equal(decision.kind, "ok");
  const self = (decision as Extract<NewSessionDecision, { kind: "ok" }>).selfVirtualId;
  const step = p.done(inc, doneOf(self, ActorId.plain(1, 500n)));
  assert.equal(step.kind, "session_created");
  assert.ok(out.poisoned);
  // A late Done from the dropped outgoing handshake is ignored.
  assert.equal(p.done(out, doneOf(ActorId.plain(2, 9n), ActorId.plain(1, 9n))).kind, "none");
});

Deno.test("tie-break: the crossing dial's request arriving after the own outgoing won is too old", async () => {
  // Node 2 dialed with Serial 500, then answered node 1's dial with a fresh Serial 600. Node 1's
  // outgoing handshake wins first; node 2's request reaches node 1's proxy only afterwards.
  const { p, terminated } = proxy(1, 2);
  const out = new Handle("outgoing");
  p.startOutgoing(out, true);
  const self = ActorId.plain(1, 400n);
  const peer = ActorId.plain(2, 600n);
  const won = p.done(out, {
    ...doneOf(self, peer),
    programInfo: { pid: 77n, startTime: 88n, serial: 600n },
  });
  assert.equal(won.kind, "session_created");
  const late = await p.newSession(
    new Handle("incoming"),
    request(2, 500n, { ReceiverNodeId: 1, SenderHostName: "host-2" }),
  );
  assert.deepEqual(late, { kind: "poison", reason: "too old serial" });
  assert.deepEqual(terminated, [], "the session just made is not terminated");
  assert.ok(p.session?.selfVirtualId.equals(self));
  // A genuinely newer request from the same program still replaces the session (rule 5).
  const newer = await p.newSession(
    new Handle("incoming"),
    request(2, 700n, { ReceiverNodeId: 1, SenderHostName: "host-2" }),
  );
  assert.equal(newer.kind, "ok");
  assert.deepEqual(terminated, ["NewSession"]);
});

Deno.test("continuation: Ack only for matching ids, with the session's serial and params", async () => {
  const { p, terminated } = proxy(2, 1);
  const self = ActorId.plain(2, 20n);
  const peer = ActorId.plain(1, 10n);
  const h0 = new Handle("incoming");
  await p.newSession(h0, request(1, 10n, { SenderHostName: "host-1" }));
  p.done(h0, doneOf(self, peer));
  p.session!.lastInputSerial = 17n;
  const ack = await p.continuation(new Handle("incoming"), { self: peer, peer: self, counter: 5n });
  assert.deepEqual(ack, { kind: "ack", self, nextPacket: 17n, params: PARAMS });
  assert.deepEqual(terminated, ["NewSession"]); // the session drops its old socket
  const wrong = await p.continuation(new Handle("incoming"), {
    self: ActorId.plain(1, 11n),
    peer: self,
    counter: 0n,
  });
  assert.deepEqual<ContinuationDecision>(wrong, { kind: "nak" });
  const fresh = proxy(2, 1).p;
  assert.deepEqual(
    await fresh.continuation(new Handle("incoming"), { self: peer, peer: self, counter: 0n }),
    { kind: "nak" },
  );
});

Deno.test("incoming rule 1: the same program with an older Serial is poisoned (too old)", async () => {
  const { p } = proxy(2, 1);
  const opts = { SenderHostName: "host-1" };
  assert.equal((await p.newSession(new Handle("incoming"), request(1, 100n, opts))).kind, "ok");
  const old = await p.newSession(new Handle("incoming"), request(1, 50n, opts));
  assert.deepEqual(old, { kind: "poison", reason: "too old serial" });
  // A restarted peer (another PID) may start again with a lower serial.
  const restarted = await p.newSession(
    new Handle("incoming"),
    request(1, 5n, { ...opts, ProgramPID: 78n }),
  );
  assert.equal(restarted.kind, "ok");
});

Deno.test("incoming rule 2: SenderHostName unlike the node table gives ReplyError host name mismatch", async () => {
  const { p } = proxy(2, 1);
  const d = await p.newSession(new Handle("incoming"), request(1, 1n, { SenderHostName: "evil" }));
  assert.deepEqual(d, { kind: "error", explanation: "host name mismatch" });
});

Deno.test("incoming rule 3: a Serial below the in-flight continuation's is a duplicate, equal is poisoned", async () => {
  const { p } = proxy(2, 1);
  const self = ActorId.plain(2, 20n);
  const peer = ActorId.plain(1, 1000n);
  const h0 = new Handle("incoming");
  await p.newSession(h0, request(1, 1000n, { SenderHostName: "host-1" }));
  p.done(h0, doneOf(self, peer));
  await p.continuation(new Handle("incoming"), { self: peer, peer: self, counter: 0n });
  const opts = { SenderHostName: "host-1", ProgramPID: 5n };
  assert.deepEqual(await p.newSession(new Handle("incoming"), request(1, 999n, opts)), {
    kind: "error",
    explanation: "duplicate serial",
  });
  assert.equal(
    (await p.newSession(new Handle("incoming"), request(1, 1000n, opts))).kind,
    "poison",
  );
});

Deno.test("incoming rules 4-5: a new request drops the previous incoming handshake and the session", async () => {
  const { p, terminated } = proxy(2, 1);
  const opts = { SenderHostName: "host-1" };
  const h0 = new Handle("incoming");
  const d0 = await p.newSession(h0, request(1, 10n, opts)) as Extract<
    NewSessionDecision,
    { kind: "ok" }
  >;
  p.done(h0, doneOf(d0.selfVirtualId, ActorId.plain(1, 10n)));
  const h1 = new Handle("incoming");
  await p.newSession(h1, request(1, 20n, opts));
  const h2 = new Handle("incoming");
  const d2 = await p.newSession(h2, request(1, 30n, opts)) as Extract<
    NewSessionDecision,
    { kind: "ok" }
  >;
  assert.ok(h1.poisoned);
  assert.deepEqual(terminated, ["NewSession"]);
  assert.equal(p.session, undefined);
  assert.ok(d2.selfVirtualId.localId > d0.selfVirtualId.localId);
});

Deno.test("Done of a continuation without a session is the continuation race", () => {
  const { p } = proxy(1, 2);
  const out = new Handle("outgoing");
  p.startOutgoing(out, false);
  const step = p.done(out, doneOf(ActorId.plain(1, 1n), ActorId.plain(2, 2n), false));
  assert.equal(step.kind, "hold_by_error");
  assert.equal(
    (step as Extract<ProxyStep, { kind: "hold_by_error" }>).explanation,
    "Session continuation race",
  );
});

Deno.test("failure classes: transient resumes a session, mismatch redials, permanent backs off", () => {
  const { p, terminated } = proxy(1, 2);
  const first = new Handle("outgoing");
  p.startOutgoing(first, true);
  p.done(first, doneOf(ActorId.plain(1, 1n), ActorId.plain(2, 2n)));
  const resume = new Handle("outgoing");
  p.startOutgoing(resume, false);
  assert.equal(p.fail(resume, failure("transient")).kind, "dial_resume");
  const again = new Handle("outgoing");
  p.startOutgoing(again, false);
  assert.equal(p.fail(again, failure("session_mismatch")).kind, "dial_new");
  const sleeps: number[] = [];
  for (let i = 0; i < 4; i++) {
    const h = new Handle("outgoing");
    p.startOutgoing(h, i > 0);
    const step = p.fail(h, failure("permanent", "Incompatible protocol 7"));
    assert.equal(step.kind, "hold_by_error");
    sleeps.push((step as Extract<ProxyStep, { kind: "hold_by_error" }>).sleepMs);
    p.wake();
  }
  assert.deepEqual(sleeps, [10, 40, 160, 640]);
  assert.deepEqual(terminated, ["HandshakeFailPermanent"]);
  const ok = new Handle("outgoing");
  p.startOutgoing(ok, true);
  p.done(ok, doneOf(ActorId.plain(1, 5n), ActorId.plain(2, 6n)));
  const h = new Handle("outgoing");
  p.startOutgoing(h, false);
  const step = p.fail(h, failure("permanent")) as Extract<ProxyStep, { kind: "hold_by_error" }>;
  assert.equal(step.sleepMs, 10); // reset by the success
  assert.equal(p.fail(new Handle("outgoing"), failure("permanent")).kind, "none"); // obsolete
});
