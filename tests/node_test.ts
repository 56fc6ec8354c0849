import assert from "node:assert/strict";
import type { Session } from "../lib/node/node.ts";
import type { NodeConfig } from "../lib/node/config.ts";
import { continuationOn, readText, startCluster } from "./_helpers/cluster.ts";

function cluster(ids: number[], extra: (id: number) => Partial<NodeConfig> = () => ({})) {
  return startCluster(ids, extra);
}

Deno.test("two nodes on loopback: a plain session carries data both ways", async () => {
  const [a, b] = await cluster([1, 2]);
  await using _a = a;
  await using _b = b;
  const incoming = new Promise<Session>((r) => b.onSession(r));
  const s1 = await a.connect(2);
  const s2 = await incoming;
  assert.equal(s2.direction, "incoming");
  assert.ok(s1.selfVirtualId.equals(s2.peerVirtualId));
  assert.ok(s1.peerVirtualId.equals(s2.selfVirtualId));
  assert.equal(s1.program?.pid, BigInt(Deno.pid));
  const w1 = s1.writable.getWriter();
  await w1.write(new TextEncoder().encode("hello from 1"));
  assert.equal(await readText(s2, 12), "hello from 1");
  const w2 = s2.writable.getWriter();
  await w2.write(new TextEncoder().encode("hi from 2"));
  assert.equal(await readText(s1, 9), "hi from 2");
  w1.releaseLock();
  w2.releaseLock();
});

Deno.test("continuation after the link drops: Ack keeps the virtual ids", async () => {
  const [a, b] = await cluster([1, 2]);
  await using _a = a;
  await using _b = b;
  const s1 = await a.connect(2);
  const ids = [s1.selfVirtualId.toString(), s1.peerVirtualId.toString()];
  const resumedOn2 = continuationOn(b);
  const again = await s1.resume();
  await resumedOn2;
  assert.equal(again, s1);
  assert.deepEqual([again.selfVirtualId.toString(), again.peerVirtualId.toString()], ids);
  const s2 = b.session(1)!;
  const w = again.writable.getWriter();
  await w.write(new TextEncoder().encode("after resume"));
  w.releaseLock();
  assert.equal(await readText(s2, 12), "after resume");
});

Deno.test("continuation Nak after the peer forgot the session: SESSION_MISMATCH then a new session", async () => {
  const [a, b] = await cluster([1, 2]);
  await using _a = a;
  await using _b = b;
  const events: string[] = [];
  a.onHandshake((e) =>
    events.push(e.ok ? `ok${e.continuation ? " continuation" : ""}` : e.failure)
  );
  const onB = new Promise<Session>((r) => b.onSession(r));
  const s1 = await a.connect(2);
  (await onB).close(); // node 2 forgets the session
  const s = await s1.resume();
  assert.notEqual(s, s1);
  assert.ok(!s.selfVirtualId.equals(s1.selfVirtualId));
  assert.deepEqual(events, ["ok", "session_mismatch", "ok"]);
});

Deno.test("a ClusterUUID mismatch fails PERMANENT and backs off", async () => {
  const [a, b] = await cluster([1, 2], (id) => ({ clusterUUID: `c${id}`, acceptUUID: [`c${id}`] }));
  await using _a = a;
  await using _b = b;
  await assert.rejects(a.connect(2), (e: Error & { failure?: string; explanation?: string }) => {
    assert.equal(e.failure, "permanent");
    assert.equal(e.explanation, "error from peer: Peer ClusterUUID# c1 mismatch, AcceptUUID# [c2]");
    return true;
  });
  // In the error state: the next connect fails at once with the same explanation.
  await assert.rejects(a.connect(2), /ClusterUUID# c1 mismatch/);
});

Deno.test("simultaneous dial on loopback, 10 rounds: one session survives, the one node 1 dialed", async () => {
  for (let round = 0; round < 10; round++) {
    const [a, b] = await cluster([1, 2]);
    try {
      const [s1, s2] = await Promise.all([a.connect(2), b.connect(1)]);
      assert.ok(s1.selfVirtualId.equals(s2.peerVirtualId), `round ${round}: ids agree`);
      assert.ok(s1.peerVirtualId.equals(s2.selfVirtualId), `round ${round}: ids agree`);
      assert.equal(s1.direction, "outgoing", `round ${round}: node 1 dialed the survivor`);
      assert.equal(s2.direction, "incoming", `round ${round}: node 2 accepted the survivor`);
      assert.equal(a.session(2), s1);
      assert.equal(b.session(1), s2);
      // The survivor carries data: neither node is stuck.
      const w = s1.writable.getWriter();
      await w.write(new TextEncoder().encode("ok"));
      w.releaseLock();
      assert.equal(await readText(s2, 2), "ok");
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  }
});

Deno.test("a write after the session closed rejects naming the peer's address", async () => {
  const [a, b] = await cluster([1, 2]);
  await using _a = a;
  await using _b = b;
  const s1 = await a.connect(2);
  const w = s1.writable.getWriter();
  s1.close();
  assert.equal(s1.closed, true);
  const port = b.listenAddress!.port;
  await assert.rejects(
    w.write(new TextEncoder().encode("late")),
    (e: Error) => e.message === `connection to 127.0.0.1:${port} is closed`,
  );
});
