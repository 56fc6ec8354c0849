/**
 * Faults across hosts (Linux, root). Topology: six network namespaces `ic5-<pid>-<tag>-*`, a
 * switch (`-sw`, bridge `br0`) and five nodes (`-n1`..`-n5`), node i with `eth0` =
 * 10.77.0.i/24 on a veth pair whose other end `pi` is a port of the bridge. No namespace is
 * connected to the host or has a default route. Each node is its own process
 * (tests/_helpers/mesh_node.ts, started with `ip netns exec`) that keeps a session with every
 * peer, resumes broken connections, and runs an acknowledged, numbered data stream each way on
 * every session (see that file).
 *
 * 1. Full mesh: all five dial all others at once; every pair ends with one session whose ids both
 *    ends agree on, data flowing both ways, each end knowing the other's program (PID).
 * 2. Kill and restart: node 3 is SIGKILLed and started again; every peer gets a new session with
 *    it whose program info is the new process's (another PID and start time); no other pair is
 *    touched.
 * 3. Link down/up (node 5's switch port), held down until both ends of each of its pairs saw the
 *    connection break and a handshake fail: each pair either continued (same virtual ids, a
 *    continuation on both ends) or got a new session, and then only where the rules end the
 *    session: a PERMANENT failure on one end (spec 6.3; here "No route to host" once the
 *    neighbour entry is gone) or the session forgotten.
 * 4. The same for node 2, which also forgets its session with node 1 meanwhile: 1-2 must become a
 *    new session (a continuation from 1 gets Nak, SESSION_MISMATCH, spec 6.3).
 * 5. Drain, then account: every message written by a surviving process was acknowledged (and so
 *    received, checked against the receiver's count) or reported as not delivered when its
 *    session ended; receivers saw every stream strictly in order with the right contents (checked
 *    live, so the killed process's streams count too); nothing silently lost, nothing twice.
 *
 * Waits are bounded (a hang becomes a failure) but nothing asserts on time. The namespaces and
 * child processes are removed in `finally`; a crashed run's namespaces (older than a minute,
 * no process inside) are removed at the start of the next. Elsewhere (not Linux, not root, no
 * `--allow-run=ip`, `ip netns add` failing) the test is ignored and the reason printed.
 * Set IC_MESH_TRACE=1 to print every event of the nodes, IC_MESH_LOG=debug to add the library's
 * log records.
 */
import assert from "node:assert/strict";
import { bytesUpTo } from "./_helpers/mesh_frames.ts";
import {
  listNetns,
  netnsSkipReason,
  NsProcess,
  removeStaleNetns,
  StarNetwork,
} from "./_helpers/netns.ts";

const N = 5;
const SUBNET = "10.77.0";
const PORT = 19001;
/** Bound on each wait for a condition (not a timing assertion: it only turns a hang into a failure). */
const WAIT_MS = 20_000;
const ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname);

const skipReason = await netnsSkipReason();
if (skipReason) console.log(`mesh_netns_test: skipped: ${skipReason}`);

type Event = Record<string, unknown>;

interface PeerState {
  self: string;
  peerVid: string;
  direction: string;
  program: { pid: string; startTime: string } | null;
  healthy: boolean;
  broken: boolean;
  written: number;
  acked: number;
  rxHigh: number;
}

interface NodeState {
  nodeId: number;
  drained: boolean;
  peers: Record<string, PeerState | null>;
}

interface StreamReport {
  peer: number;
  self: string;
  peerVid: string;
  written: number;
  acked: number;
  unconfirmed: number;
  resent: number;
  undelivered: number;
  ended: boolean;
  txBytes: number;
  rxHigh: number;
  rxBytes: number;
  duplicates: number;
  violations: number;
  connections: number;
}

const ids = Array.from({ length: N }, (_, k) => k + 1);
const pairs: [number, number][] = ids.flatMap((a) =>
  ids.filter((b) => b > a).map((b) => [a, b] as [number, number])
);

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `problem` until it returns null; throws with the last problem after `WAIT_MS`. */
async function waitFor(what: string, problem: () => Promise<string | null>): Promise<void> {
  const start = Date.now();
  let last: string | null = "not checked yet";
  while (Date.now() - start < WAIT_MS) {
    last = await problem();
    if (last === null) return;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}: ${last}`);
}

class Mesh {
  readonly net = new StarNetwork(N, SUBNET);
  /** The current process of each node. */
  readonly procs = new Map<number, NsProcess>();
  /** Every process started, killed ones included. */
  readonly all: NsProcess[] = [];

  start(id: number): NsProcess {
    const nodes = ids.map((i) => ({
      nodeId: i,
      host: `node-${i}`,
      port: PORT,
      address: this.net.address(i),
    }));
    const config = {
      nodeId: id,
      listen: { host: this.net.address(id), port: PORT },
      nodes,
      handshakeTimeoutMs: 500,
    };
    const argv = [
      Deno.execPath(),
      "run",
      "--quiet",
      "--cached-only",
      "--no-prompt",
      `--allow-net=${ids.map((i) => this.net.address(i)).join(",")}`,
      `--allow-read=${ROOT}`,
      "--allow-env",
      "--allow-sys",
      "tests/_helpers/mesh_node.ts",
      JSON.stringify({ config, workers: 2, logLevel: Deno.env.get("IC_MESH_LOG") }),
    ];
    const p = new NsProcess(`node ${id}`, this.net.nodeNs(id), argv, ROOT);
    this.procs.set(id, p);
    this.all.push(p);
    return p;
  }

  async ready(p: NsProcess): Promise<number> {
    const e = await p.waitEvent((e) => e.event === "ready", WAIT_MS);
    return e.pid as number;
  }

  async states(): Promise<Map<number, NodeState>> {
    const entries = await Promise.all(
      ids.map(async (i) => [i, await this.procs.get(i)!.request({ cmd: "state" })] as const),
    );
    return new Map(entries.map(([i, e]) => [i, e as unknown as NodeState]));
  }

  /** Marks: the event count of every current process, to look at what came after. */
  marks(): Map<NsProcess, number> {
    return new Map([...this.procs.values()].map((p) => [p, p.events.length]));
  }

  /** Events of node `id`'s current process since `marks`. */
  since(marks: Map<NsProcess, number>, id: number): Event[] {
    const p = this.procs.get(id)!;
    return p.events.slice(marks.get(p) ?? 0);
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.all.map((p) => p.stop()));
  }
}

/** Null when every node has a healthy session with every other and both ends agree on the ids. */
function meshProblem(st: Map<number, NodeState>): string | null {
  for (const [a, b] of pairs) {
    const x = st.get(a)!.peers[b];
    const y = st.get(b)!.peers[a];
    if (!x || !y) return `no session between ${a} and ${b} (${!x ? a : b} has none)`;
    if (!x.healthy || !y.healthy) return `session ${a}-${b} not healthy yet`;
    if (x.self !== y.peerVid || x.peerVid !== y.self) {
      return `nodes ${a} and ${b} disagree: ${x.self}<->${x.peerVid} vs ${y.peerVid}<->${y.self}`;
    }
  }
  return null;
}

/** Virtual ids of every pair, as node `a` (the lower id) sees them. */
function vids(st: Map<number, NodeState>): Map<string, string> {
  return new Map(pairs.map(([a, b]) => {
    const x = st.get(a)!.peers[b]!;
    return [`${a}-${b}`, `${x.self}<->${x.peerVid}`];
  }));
}

/** Null once every stream acknowledged at least `k` more messages than in `base`. */
function progressProblem(
  st: Map<number, NodeState>,
  base: Map<number, NodeState> | undefined,
  k: number,
): string | null {
  for (const a of ids) {
    for (const b of ids) {
      if (a === b) continue;
      const x = st.get(a)!.peers[b]!;
      const old = base?.get(a)?.peers[b];
      const from = old && old.self === x.self ? old.acked : 0;
      if (x.acked < from + k) return `stream ${a}->${b} acknowledged ${x.acked - from} of ${k}`;
    }
  }
  return null;
}

function handshakes(events: Event[], peer: number): Event[] {
  return events.filter((e) => e.event === "handshake" && e.peerNodeId === peer);
}

/** What became of the session `a`-`b` across a fault. */
interface PairOutcome {
  pair: string;
  outcome: "continuation" | "new session";
  why?: string;
}

/**
 * Classifies pair `a`-`b` across a fault from the ids before and after and the handshake
 * events of both ends, and checks the rules: the same ids only by continuations seen on both
 * ends; new ids only after a permanent failure, a SESSION_MISMATCH or a forgotten session.
 */
function checkPair(
  a: number,
  b: number,
  before: Map<string, string>,
  after: Map<string, string>,
  evA: Event[],
  evB: Event[],
  forgotten: boolean,
): PairOutcome {
  const key = `${a}-${b}`;
  const hA = handshakes(evA, b);
  const hB = handshakes(evB, a);
  const okCont = (h: Event[]) => h.some((e) => e.ok === true && e.continuation === true);
  if (before.get(key) === after.get(key)) {
    assert.ok(!forgotten, `pair ${key}: the session was forgotten, yet the ids are unchanged`);
    assert.ok(
      okCont(hA) && okCont(hB),
      `pair ${key}: same ids, but no continuation on both ends: ${JSON.stringify([hA, hB])}`,
    );
    return { pair: key, outcome: "continuation" };
  }
  // The root cause must be one the rules end a session for: a permanent failure on either end
  // (it terminates the session there) or the session forgotten. A SESSION_MISMATCH alone is only
  // the other end saying it no longer has the session.
  const causes = [...hA, ...hB]
    .filter((e) => e.ok === false && e.failure === "permanent")
    .map((e) => `permanent: ${e.explanation}`);
  if (forgotten) causes.unshift("forgotten");
  assert.ok(
    causes.length > 0,
    `pair ${key}: new ids ${after.get(key)} without a cause in the rules: ${
      JSON.stringify([hA, hB])
    }`,
  );
  const mismatch = [...hA, ...hB].some((e) => e.failure === "session_mismatch");
  const why = `${causes[0]}${mismatch ? ", then SESSION_MISMATCH" : ""}`;
  const created = (h: Event[]) => h.some((e) => e.ok === true && e.continuation === false);
  assert.ok(created(hA) && created(hB), `pair ${key}: new ids but no new-session handshake`);
  return { pair: key, outcome: "new session", why };
}

function assertSameElsewhere(
  faulted: number,
  before: Map<string, string>,
  after: Map<string, string>,
): void {
  for (const [a, b] of pairs) {
    if (a === faulted || b === faulted) continue;
    assert.equal(
      after.get(`${a}-${b}`),
      before.get(`${a}-${b}`),
      `pair ${a}-${b} should not be affected by a fault of node ${faulted}`,
    );
  }
}

/** Waits until both ends of every pair of `node` saw the connection break or lost the session. */
async function waitBroken(mesh: Mesh, node: number): Promise<void> {
  await waitFor(`the connections of node ${node} to break`, async () => {
    const st = await mesh.states();
    for (const other of ids) {
      if (other === node) continue;
      for (const [x, y] of [[node, other], [other, node]]) {
        const s = st.get(x)!.peers[y];
        if (s && !s.broken) return `node ${x} still has a working connection to ${y}`;
      }
    }
    return null;
  });
}

/** Waits until every pair of `node` had at least one failed handshake on one of its ends. */
async function waitFailedAttempts(
  mesh: Mesh,
  node: number,
  marks: Map<NsProcess, number>,
): Promise<void> {
  await waitFor(`failed handshakes of node ${node} during the fault`, () => {
    for (const other of ids) {
      if (other === node) continue;
      const failed = [
        ...handshakes(mesh.since(marks, node), other),
        ...handshakes(mesh.since(marks, other), node),
      ].some((e) => e.ok === false);
      if (!failed) return Promise.resolve(`no failed handshake yet between ${node} and ${other}`);
    }
    return Promise.resolve(null);
  });
}

Deno.test({
  name: `five nodes in network namespaces: mesh, restart, link faults, nothing silently lost${
    skipReason ? ` (skipped: ${skipReason})` : ""
  }`,
  ignore: skipReason !== null,
  async fn() {
    const stale = await removeStaleNetns();
    if (stale.length > 0) console.log(`removed stale namespaces: ${stale.join(", ")}`);
    const mesh = new Mesh();
    const figures: Record<string, unknown> = {};
    try {
      await mesh.net.create();
      const programs = new Map<number, number>();
      for (const id of ids) mesh.start(id);
      for (const id of ids) programs.set(id, await mesh.ready(mesh.procs.get(id)!));

      // 1. A full mesh forms: every node dials every other at once (simultaneous dials).
      await Promise.all([...mesh.procs.values()].map((p) => p.send({ cmd: "mesh" })));
      let st: Map<number, NodeState> = new Map();
      await waitFor("the full mesh", async () => meshProblem(st = await mesh.states()));
      await waitFor(
        "data on every stream",
        async () => progressProblem(st = await mesh.states(), undefined, 20),
      );
      const v1 = vids(st);
      for (const a of ids) {
        for (const b of ids) {
          if (a === b) continue;
          assert.equal(
            st.get(a)!.peers[b]!.program?.pid,
            String(programs.get(b)),
            `node ${a} knows node ${b}'s program`,
          );
        }
      }
      const oldProgram3 = st.get(1)!.peers[3]!.program!;

      // 2. Node 3 is killed (SIGKILL: no goodbye) and started again: a new process.
      let marks = mesh.marks();
      const old3 = mesh.procs.get(3)!;
      old3.kill();
      await old3.status;
      for (const id of ids) {
        if (id === 3) continue;
        await mesh.procs.get(id)!.waitEvent(
          (e) => e.event === "broken" && e.peer === 3,
          WAIT_MS,
          marks.get(mesh.procs.get(id)!),
        );
      }
      const new3 = mesh.start(3);
      programs.set(3, await mesh.ready(new3));
      marks.set(new3, 0);
      await new3.send({ cmd: "mesh" });
      await waitFor(
        "the mesh with the restarted node 3",
        async () => meshProblem(st = await mesh.states()),
      );
      const base2 = st;
      await waitFor(
        "data after the restart",
        async () => progressProblem(st = await mesh.states(), base2, 20),
      );
      const v2 = vids(st);
      assertSameElsewhere(3, v1, v2);
      for (const id of ids) {
        if (id === 3) continue;
        const key = id < 3 ? `${id}-3` : `3-${id}`;
        assert.notEqual(v2.get(key), v1.get(key), `pair ${key}: a new session after the restart`);
        const p = st.get(id)!.peers[3]!.program!;
        assert.equal(p.pid, String(programs.get(3)), `node ${id} sees the new process of node 3`);
        assert.notEqual(p.pid, oldProgram3.pid, `node ${id}: another pid than before`);
        assert.notEqual(p.startTime, oldProgram3.startTime, `node ${id}: another start time`);
        const created = mesh.since(marks, id).filter((e) => e.event === "session" && e.peer === 3);
        assert.ok(created.length >= 1, `node ${id} announced a new session with node 3`);
      }

      // 3. Node 5's link goes down until every connection of node 5 broke and each pair had a
      //    failed attempt, then up: continuations (same ids) or new sessions by the rules.
      marks = mesh.marks();
      await mesh.net.link(5, false);
      await waitBroken(mesh, 5);
      await waitFailedAttempts(mesh, 5, marks);
      await mesh.net.link(5, true);
      await waitFor(
        "the mesh after node 5's link came back",
        async () => meshProblem(st = await mesh.states()),
      );
      const base3 = st;
      await waitFor(
        "data after node 5's link fault",
        async () => progressProblem(st = await mesh.states(), base3, 20),
      );
      const v3 = vids(st);
      assertSameElsewhere(5, v2, v3);
      const fault3 = ids.filter((id) => id !== 5).map((id) =>
        checkPair(id, 5, v2, v3, mesh.since(marks, id), mesh.since(marks, 5), false)
      );
      for (const id of ids) {
        if (id === 5) continue;
        assert.equal(st.get(id)!.peers[5]!.program?.pid, String(programs.get(5)));
      }

      // 4. Node 2's link goes down and node 2 forgets its session with node 1 meanwhile: the
      //    rules give 1-2 a new session (a continuation from 1 gets Nak), the others continue
      //    unless a permanent failure ended them.
      marks = mesh.marks();
      await mesh.net.link(2, false);
      await waitBroken(mesh, 2);
      const forgot = await mesh.procs.get(2)!.request({ cmd: "forget", peer: 1 });
      assert.equal(forgot.had, true, "node 2 had a session with node 1 to forget");
      await waitFailedAttempts(mesh, 2, marks);
      await mesh.net.link(2, true);
      await waitFor(
        "the mesh after node 2's link came back",
        async () => meshProblem(st = await mesh.states()),
      );
      const base4 = st;
      await waitFor(
        "data after node 2's link fault",
        async () => progressProblem(st = await mesh.states(), base4, 20),
      );
      const v4 = vids(st);
      assertSameElsewhere(2, v3, v4);
      const fault4 = ids.filter((id) => id !== 2).map((id) =>
        id < 2
          ? checkPair(id, 2, v3, v4, mesh.since(marks, id), mesh.since(marks, 2), id === 1)
          : checkPair(2, id, v3, v4, mesh.since(marks, 2), mesh.since(marks, id), false)
      );
      assert.notEqual(v4.get("1-2"), v3.get("1-2"), "the forgotten session 1-2 was replaced");
      assert.equal(st.get(1)!.peers[2]!.program?.pid, String(programs.get(2)), "same node 2");

      // 5. Drain: no new messages; every stream must end fully acknowledged.
      await Promise.all([...mesh.procs.values()].map((p) => p.request({ cmd: "drain" })));
      await waitFor("every stream drained", async () => {
        st = await mesh.states();
        const mp = meshProblem(st);
        if (mp) return mp;
        const not = ids.filter((i) => !st.get(i)!.drained);
        return not.length ? `nodes ${not.join(", ")} still have unacknowledged messages` : null;
      });
      const reports = new Map<number, StreamReport[]>();
      for (const id of ids) {
        const r = await mesh.procs.get(id)!.request({ cmd: "report" });
        reports.set(id, r.streams as StreamReport[]);
      }

      // Bad events from any process, the killed one included.
      const bad = mesh.all.flatMap((p) =>
        p.events.filter((e) => ["violation", "error", "garbage"].includes(e.event as string))
          .map((e) => `${p.label}: ${JSON.stringify(e)}`)
      );
      assert.deepEqual(bad, [], "no order violation, wrong contents or internal error");

      // The accounting: every message a live sender wrote was acknowledged (received in order)
      // or reported as not delivered when its session ended; acknowledged means received.
      const receivers = new Map<string, { to: number; s: StreamReport }>();
      for (const [id, list] of reports) {
        for (const s of list) receivers.set(`${s.peerVid}>${s.self}`, { to: id, s });
      }
      let written = 0, acked = 0, undelivered = 0, receivedThoughReported = 0, unconfirmed = 0;
      let resent = 0, lost = 0, delivered = 0, deliveredBytes = 0, duplicates = 0, oneSided = 0;
      const lostDetail: string[] = [];
      for (const [id, list] of reports) {
        for (const s of list) {
          written += s.written;
          acked += s.acked;
          undelivered += s.undelivered;
          unconfirmed += s.unconfirmed;
          resent += s.resent;
          const open = s.written - s.acked - s.undelivered;
          if (open !== 0) {
            lost += open;
            lostDetail.push(
              `${id}->${s.peer} ${s.self}: ${open} neither acknowledged nor reported`,
            );
          }
          const r = receivers.get(`${s.self}>${s.peerVid}`);
          if (!r && s.written === 0 && s.rxHigh === 0) {
            // A one-sided session: the peer's end of its handshake had already been dropped
            // (tie-break, or a stale request that still replaced the session, spec 6.2 rule 5).
            // No HELLO ever came, so nothing was written on it.
            oneSided++;
            continue;
          }
          if (!r) {
            // The receiver was the killed process: what it acknowledged, it had received.
            assert.ok(s.peer === 3 && s.ended, `stream ${id}->${s.peer} ${s.self} has no receiver`);
            delivered += s.acked;
            deliveredBytes += bytesUpTo(id, s.peer, s.acked);
            continue;
          }
          assert.ok(r.s.rxHigh <= s.written, `${id}->${s.peer}: received more than written`);
          if (s.acked > r.s.rxHigh) {
            lost += s.acked - r.s.rxHigh;
            lostDetail.push(
              `${id}->${s.peer} ${s.self}: acknowledged ${s.acked}, received ${r.s.rxHigh}`,
            );
          }
          if (s.ended) receivedThoughReported += r.s.rxHigh - s.acked;
        }
      }
      // What every live receiver got in order, from live and killed senders alike.
      const senders = new Set(
        [...reports.values()].flatMap((list) => list.map((s) => `${s.self}>${s.peerVid}`)),
      );
      let fromKilled = 0;
      for (const { s } of receivers.values()) {
        delivered += s.rxHigh;
        deliveredBytes += s.rxBytes;
        duplicates += s.duplicates;
        if (senders.has(`${s.peerVid}>${s.self}`) || (s.written === 0 && s.rxHigh === 0)) continue;
        assert.equal(s.peer, 3, `stream to ${s.self} from ${s.peerVid} has no sender`);
        fromKilled += s.rxHigh;
      }
      const hs = mesh.all.flatMap((p) => p.events.filter((e) => e.event === "handshake"));
      const outgoingOk = hs.filter((e) => e.ok === true && e.direction === "outgoing");
      Object.assign(figures, {
        faults: {
          processKilledAndRestarted: 1,
          linksDownAndUp: 2,
          sessionsForgotten: 1,
          connectionBreaksSeen: mesh.all.reduce(
            (n, p) => n + p.events.filter((e) => e.event === "broken").length,
            0,
          ),
        },
        sessionsFormed: outgoingOk.filter((e) => e.continuation === false).length,
        oneSidedSessions: oneSided,
        continuations: outgoingOk.filter((e) => e.continuation === true).length,
        failedHandshakes: {
          transient: hs.filter((e) => e.failure === "transient").length,
          permanent: hs.filter((e) => e.failure === "permanent").length,
          session_mismatch: hs.filter((e) => e.failure === "session_mismatch").length,
          // Timed out while queued for a pool slot or while the proxy held the reply.
          stalledInQueueOrHold: hs.filter((e) =>
            /State# (Queued|AskProxy)/.test(String(e.explanation ?? ""))
          ).length,
        },
        linkFault5: fault3,
        linkFault2WithForget: fault4,
        messages: {
          writtenBySurvivingProcesses: written,
          deliveredInOrder: delivered,
          acknowledged: acked,
          receivedFromTheKilledProcess: fromKilled,
          unacknowledgedWhenAConnectionBroke: unconfirmed,
          resentOnContinuedConnections: resent,
          reportedUndelivered: undelivered,
          reportedUndeliveredButReceived: receivedThoughReported,
          duplicates,
          lost,
        },
        bytesDelivered: deliveredBytes,
      });
      console.log(`mesh figures: ${JSON.stringify(figures)}`);
      assert.deepEqual(lostDetail, [], "no message silently lost");
      assert.equal(lost, 0);
      assert.equal(duplicates, 0, "no message received twice");
      assert.equal(written, acked + undelivered, "every message delivered or reported");
    } catch (e) {
      for (const p of mesh.all) {
        if (p.stderrTail) console.log(`--- ${p.label} (pid ${p.pid}) stderr:\n${p.stderrTail}`);
      }
      throw e;
    } finally {
      await mesh.stopAll();
      if (Deno.env.get("IC_MESH_TRACE")) {
        for (const p of mesh.all) {
          for (const e of p.events) {
            if (e.event !== "state" && e.event !== "report") {
              console.log(p.label, JSON.stringify(e));
            }
          }
        }
      }
      const failed = await mesh.net.destroy();
      if (failed.length > 0) console.log(`could not delete: ${failed.join("; ")}`);
    }
    const left = (await listNetns()).filter((n) => n.startsWith(mesh.net.tag));
    assert.deepEqual(left, [], "every namespace of the test is gone");
  },
});
