import assert from "node:assert/strict";
import { runIncomingHandshake, runOutgoingHandshake } from "../lib/handshake/handshake.ts";
import { StreamTransport } from "../lib/handshake/stream_transport.ts";
import type { HandshakeEnvironment, HandshakeOutcome } from "../lib/handshake/types.ts";
import { type HandshakeHandle, PeerProxy, type ProxyStep } from "../lib/proxy/peer_proxy.ts";
import { VirtualIdAllocator } from "../lib/proxy/virtual_id.ts";
import { ActorId } from "../lib/wire/actor_id.ts";
import { fakeTls, MemoryNet, testSettings, testTable } from "./_helpers/memory_net.ts";

/** A handle whose poison aborts the handshake it stands for. */
class Handle implements HandshakeHandle {
  readonly abort = new AbortController();
  constructor(readonly direction: "incoming" | "outgoing") {}
  poison(): void {
    this.abort.abort();
  }
}

/** A node whose incoming and outgoing handshakes go through a real PeerProxy for its one peer. */
class ProxyNode {
  readonly proxy: PeerProxy;
  readonly steps: ProxyStep[] = [];
  readonly running: Promise<HandshakeOutcome>[] = [];
  readonly settings;

  constructor(readonly net: MemoryNet, readonly self: number, readonly peer: number) {
    this.settings = testSettings(self);
    const table = testTable(1, 2);
    this.proxy = new PeerProxy(self, peer, `host-${peer}`, new VirtualIdAllocator());
    const envFor = (h: Handle): HandshakeEnvironment => ({
      resolve: (n) => Promise.resolve({ address: `mem-${n}`, port: 19001 }),
      nodeInfo: (n) => Promise.resolve(table.get(n)),
      connect: (a) => net.connect(a, fakeTls(self)),
      continuation: (ask) => this.proxy.continuation(h, ask),
      newSession: (_, req) => this.proxy.newSession(h, req),
    });
    net.listeners.set(`mem-${self}:19001`, (end) => {
      const h = new Handle("incoming");
      const t = new StreamTransport({ ...end, startTls: fakeTls(self) });
      this.running.push(
        runIncomingHandshake(this.settings, envFor(h), t, { signal: h.abort.signal }).then((o) =>
          this.#settle(h, o)
        ),
      );
    });
    this.envFor = envFor;
  }

  readonly envFor: (h: Handle) => HandshakeEnvironment;

  #settle(h: Handle, o: HandshakeOutcome): HandshakeOutcome {
    if (o.kind === "done") this.steps.push(this.proxy.done(h, o.done));
    else if (o.kind === "failed") this.steps.push(this.proxy.fail(h, o.failure));
    return o;
  }

  dial(): void {
    const h = new Handle("outgoing");
    this.proxy.startOutgoing(h, true);
    const ids = new VirtualIdAllocator();
    this.running.push(
      runOutgoingHandshake(this.settings, this.envFor(h), {
        peerNodeId: this.peer,
        peerHostName: `host-${this.peer}`,
        selfVirtualId: ids.next(this.self),
        peerVirtualId: ActorId.EMPTY,
        nextPacket: 0n,
      }, { signal: h.abort.signal }).then((o) => this.#settle(h, o)),
    );
  }
}

Deno.test("simultaneous dial, 25 rounds: exactly one session survives, the one node 1 dialed", async () => {
  for (let round = 0; round < 25; round++) {
    const net = new MemoryNet();
    const n1 = new ProxyNode(net, 1, 2);
    const n2 = new ProxyNode(net, 2, 1);
    n1.dial();
    n2.dial();
    // Wait until every handshake on both sides has ended (none may hang).
    for (let settledCount = -1; settledCount !== n1.running.length + n2.running.length;) {
      settledCount = n1.running.length + n2.running.length;
      await Promise.all([...n1.running, ...n2.running]);
    }
    const s1 = n1.proxy.session;
    const s2 = n2.proxy.session;
    assert.ok(s1 && s2, `round ${round}: both nodes have a session`);
    assert.ok(s1.selfVirtualId.equals(s2.peerVirtualId), `round ${round}: ids agree`);
    assert.ok(s1.peerVirtualId.equals(s2.selfVirtualId), `round ${round}: ids agree`);
    const created1 = n1.steps.filter((s) => s.kind === "session_created");
    const created2 = n2.steps.filter((s) => s.kind === "session_created");
    assert.equal(created1.length, 1, `round ${round}: one session on node 1`);
    assert.equal(created2.length, 1, `round ${round}: one session on node 2`);
    assert.equal(n1.proxy.outgoing, undefined);
    assert.equal(n1.proxy.incoming, undefined);
    assert.equal(n2.proxy.outgoing, undefined);
    assert.equal(n2.proxy.incoming, undefined);
    // running[0] is node 1's outgoing handshake (pushed by dial() before anything arrived).
    const outcomes1 = await Promise.all(n1.running);
    assert.equal(outcomes1.filter((o) => o.kind === "done").length, 1);
    const winner = outcomes1[0];
    assert.ok(winner.kind === "done", `round ${round}: node 1's outgoing handshake won`);
    assert.ok(winner.done.selfVirtualId.equals(s1.selfVirtualId));
    for (const t of net.transports) t.close();
  }
});
