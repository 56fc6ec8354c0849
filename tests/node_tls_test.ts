import assert from "node:assert/strict";
import type { HandshakeEvent, Session } from "../lib/node/node.ts";
import {
  continuationOn,
  readText,
  startCluster,
  tlsFixture,
  writeText,
} from "./_helpers/cluster.ts";

for (const [dialer, acceptor] of [[1, 2], [2, 1]]) {
  Deno.test(`mutual TLS with node ${dialer} dialing node ${acceptor}: both see the peer CN and data flows`, async () => {
    const [a, b] = await startCluster([1, 2], (id) => ({
      encryption: "required",
      tls: tlsFixture(`node-${id}`),
    }));
    await using _a = a;
    await using _b = b;
    const [from, to] = dialer === 1 ? [a, b] : [b, a];
    const incoming = new Promise<Session>((r) => to.onSession(r));
    const s = await from.connect(acceptor);
    const t = await incoming;
    assert.equal(s.params.encryption, true);
    assert.equal(s.params.authOnly, false);
    assert.equal(s.params.authCN, `node-${acceptor}`);
    assert.equal(t.params.authCN, `node-${dialer}`);
    await writeText(s, "over TLS");
    assert.equal(await readText(t, 8), "over TLS");
    await writeText(t, "and back");
    assert.equal(await readText(s, 8), "and back");
  });
}

Deno.test("AuthOnly on loopback: TLS authenticates, then plain TCP carries the session", async () => {
  const [a, b] = await startCluster([1, 2], (id) => ({
    encryption: "optional",
    tls: tlsFixture(`node-${id}`, true),
  }));
  await using _a = a;
  await using _b = b;
  const incoming = new Promise<Session>((r) => b.onSession(r));
  const s = await a.connect(2);
  const t = await incoming;
  for (const [x, cn] of [[s, "node-2"], [t, "node-1"]] as const) {
    assert.equal(x.params.authOnly, true);
    assert.equal(x.params.encryption, false);
    assert.equal(x.params.authCN, cn);
  }
  await writeText(s, "plain after auth");
  assert.equal(await readText(t, 16), "plain after auth");
  await writeText(t, "reply");
  assert.equal(await readText(s, 5), "reply");
  // A continuation of an AuthOnly session does not repeat TLS and keeps the ids.
  const resumedOn2 = continuationOn(b);
  const again = await s.resume();
  await resumedOn2;
  assert.equal(again, s);
  assert.equal(again.params.authOnly, true);
  await writeText(again, "resumed");
  assert.equal(await readText(b.session(1)!, 7), "resumed");
});

Deno.test("continuation of a TLS session redoes TLS on the new connection", async () => {
  const [a, b] = await startCluster([1, 2], (id) => ({
    encryption: "required",
    tls: tlsFixture(`node-${id}`),
  }));
  await using _a = a;
  await using _b = b;
  const s = await a.connect(2);
  const resumedOn2 = continuationOn(b);
  const again = await s.resume();
  await resumedOn2;
  assert.equal(again, s);
  assert.equal(again.params.encryption, true);
  await writeText(again, "tls again");
  assert.equal(await readText(b.session(1)!, 9), "tls again");
});

for (const rogueNode of [1, 2]) {
  const role = rogueNode === 1 ? "server" : "client";
  Deno.test(`a certificate from an unknown CA is refused when the rogue node is the TLS ${role}`, async () => {
    const [a, b] = await startCluster([1, 2], (id) => ({
      encryption: "required",
      tls: id === rogueNode
        ? { ...tlsFixture(`node-${id}`), ...roguePair() }
        : tlsFixture(`node-${id}`),
    }));
    await using _a = a;
    await using _b = b;
    const events: HandshakeEvent[] = [];
    const honest = rogueNode === 1 ? b : a;
    const honestEvent = new Promise<HandshakeEvent>((r) => honest.onHandshake(r));
    honest.onHandshake((e) => events.push(e));
    await assert.rejects(a.connect(2), (e: Error & { failure?: string }) => {
      assert.equal(e.failure, "permanent");
      return true;
    });
    const e = await honestEvent;
    assert.equal(e.ok, false);
    if (!e.ok) {
      assert.equal(e.failure, "permanent");
      assert.match(e.explanation, /certificate|SSL|TLS|alert/i);
    }
    assert.equal(honest.session(rogueNode), undefined);
    // In TLS 1.3 a client finishes before the server has judged its certificate, so a rogue
    // TLS client may believe it has a session; the server's alert ends it on the first read.
    const rogueSide = rogueNode === 1 ? a : b;
    const stale = rogueSide.session(rogueNode === 1 ? 2 : 1);
    if (stale) {
      const reader = stale.readable.getReader();
      await assert.rejects(
        (async () => {
          const r = await reader.read();
          if (r.done) throw new Error("ended");
        })(),
      );
    }
  });
}

function roguePair() {
  const read = (f: string) =>
    Deno.readTextFileSync(new URL(`./fixtures/tls/${f}`, import.meta.url));
  // Signed by the unknown CA; the rogue node itself trusts the real CA, so only the honest
  // side's verification can refuse it.
  return { cert: read("rogue.pem"), key: read("rogue.key") };
}
