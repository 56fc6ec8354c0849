import assert from "node:assert/strict";
import type { HandshakeEvent } from "../lib/node/node.ts";
import { startCluster } from "./_helpers/cluster.ts";

// Found by the multi-host test: with bounded pools, a queued dial counted as "outgoing in
// flight" made the tie-break hold incoming answers, and the held answers occupied the incoming
// slots the peers' own handshakes needed, so every handshake stalled until the deadline.
Deno.test("crossing dials with small pools: no handshake waits for the deadline, a full mesh forms", async () => {
  for (let round = 0; round < 4; round++) {
    const nodes = await startCluster([1, 2, 3, 4, 5], () => ({}), { workers: 2 });
    const byId = new Map(nodes.map((n) => [n.nodeId, n]));
    const events: HandshakeEvent[] = [];
    for (const n of nodes) n.onHandshake((e) => events.push(e));
    try {
      const dials: Promise<unknown>[] = [1, 2, 4, 5].map((p) => byId.get(3)!.connect(p));
      dials.push(byId.get(4)!.connect(3), byId.get(5)!.connect(3));
      await new Promise((r) => setTimeout(r, 10));
      dials.push(byId.get(1)!.connect(3), byId.get(2)!.connect(3));
      const results = await Promise.allSettled(dials);
      const timedOut = events.filter((e) => !e.ok && /timed out/.test(e.explanation));
      assert.deepEqual(timedOut, [], `round ${round}: no handshake may stall until the deadline`);
      for (const [i, r] of results.entries()) {
        assert.equal(r.status, "fulfilled", `round ${round}: dial ${i} got a session`);
      }
      for (const p of [1, 2, 4, 5]) {
        const a = byId.get(3)!.session(p);
        const b = byId.get(p)!.session(3);
        assert.ok(a && b, `round ${round}: nodes 3 and ${p} both have the session`);
        assert.ok(a.selfVirtualId.equals(b.peerVirtualId), `round ${round}: ids agree (3-${p})`);
      }
    } finally {
      await Promise.all(nodes.map((n) => n.close()));
    }
  }
});
