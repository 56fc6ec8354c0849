/**
 * Log lines of the handshake actor (spec 8) through LogTape: ICH01/ICH02 at debug, ICH04 on
 * success, ICH07 single-line dumps of every ExBlock sent and received, ICH03 for non-network
 * failures, the "network-related error" line with its per-actor 15 s mute rule, ICH06, ICH08.
 * YDB's NOTICE maps to LogTape's "info" (LogTape has no NOTICE level).
 */
import assert from "node:assert/strict";
import { configure, type LogLevel, type LogRecord, reset } from "@logtape/logtape";
import { runIncomingHandshake } from "../lib/handshake/handshake.ts";
import { testCluster, testTable } from "./_helpers/memory_net.ts";
import {
  accept,
  answers,
  dial,
  done,
  failed,
  request,
  requestFrame,
  scriptedPair,
  silent,
  success,
  V,
} from "./_helpers/scripted_peer.ts";

interface Line {
  level: LogLevel;
  text: string;
}

/** Runs `f` with LogTape sending every handshake record (debug and up) to a list. */
async function withLogs(f: (lines: () => Line[]) => Promise<void>): Promise<void> {
  const records: LogRecord[] = [];
  await configure({
    sinks: { memory: (r) => records.push(r) },
    loggers: [
      { category: ["ic-handshake"], lowestLevel: "debug", sinks: ["memory"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: [] },
    ],
  });
  try {
    await f(() => records.map((r) => ({ level: r.level, text: r.message.map(String).join("") })));
  } finally {
    await reset();
  }
}

function having(lines: Line[], code: string): Line[] {
  return lines.filter((l) => l.text.includes(code));
}

const NETWORK = "network-related error occured on handshake: ";

Deno.test("log: a new session logs ICH01/ICH02 at debug, ICH05 at debug, ICH04 at info on both sides, and no failure lines", async () => {
  await withLogs(async (lines) => {
    const { nodes } = testCluster({ 1: {}, 2: {} });
    done(await nodes[1].dial(2));
    done(await nodes[2].incomingOutcome());
    const all = lines();
    assert.deepEqual(having(all, "ICH01").map((l) => l.level), ["debug"]);
    assert.match(having(all, "ICH01")[0].text, /^Handshake \[node 2\] ICH01 starting outgoing/);
    assert.deepEqual(having(all, "ICH02").map((l) => l.level), ["debug"]);
    assert.deepEqual(having(all, "ICH05").map((l) => l.level), ["debug"]);
    assert.match(having(all, "ICH05")[0].text, /connected to peer mem-2:19001/);
    assert.deepEqual(having(all, "ICH04").map((l) => l.level), ["info", "info"]);
    assert.equal(having(all, "ICH03").length, 0);
    assert.equal(having(all, NETWORK).length, 0);
  });
});

Deno.test("log: ICH07 is one debug line per ExBlock sent and received, with the single-line text dump", async () => {
  await withLogs(async (lines) => {
    const { nodes } = testCluster({ 1: {}, 2: {} });
    const d = done(await nodes[1].dial(2));
    done(await nodes[2].incomingOutcome());
    const dumps = having(lines(), "ICH07");
    assert.equal(dumps.length, 4, dumps.map((l) => l.text).join("\n"));
    for (const l of dumps) {
      assert.equal(l.level, "debug");
      assert.doesNotMatch(l.text, /[\r\n]/, "one line");
    }
    const [sentReq, recvReq, sentRep, recvRep] = [
      "SendExBlock ExRequest ",
      "ReceiveExBlock ExRequest ",
      "SendExBlock ExReply ",
      "ReceiveExBlock ExReply ",
    ].map((what) => {
      const found = dumps.filter((l) => l.text.includes(`ICH07 ${what}`));
      assert.equal(found.length, 1, what);
      return found[0].text;
    });
    const self = `SenderActorId: "${d.selfVirtualId}"`;
    const peer = `SenderActorId: "${d.peerVirtualId}"`;
    assert.match(self, /^SenderActorId: "\[1:\d+:0\]"$/);
    for (const t of [sentReq, recvReq]) {
      assert.ok(t.includes(self), t);
      assert.ok(t.includes('ReceiverHostName: "host-2"'), t);
      // Nested messages print with single braces (LogTape's escaping is undone).
      assert.ok(t.includes('ClusterUUIDs { ClusterUUID: "" }'), t);
    }
    for (const t of [sentRep, recvRep]) {
      assert.ok(t.includes(`Success { Protocol: 2 `), t);
      assert.ok(t.includes(peer), t);
      assert.ok(t.includes("StartEncryption: false"), t);
    }
    // Both sides dump the same message text.
    assert.equal(sentReq.split("ExRequest ")[1], recvReq.split("ExRequest ")[1]);
    assert.equal(sentRep.split("ExReply ")[1], recvRep.split("ExReply ")[1]);
  });
});

Deno.test("log: a non-network failure logs ICH03 with the formatted message, and no network line", async () => {
  await withLogs(async (lines) => {
    const inc = await accept([V.V1, requestFrame(request({ ReceiverHostName: "host-b" }))]);
    failed(inc.outcome);
    const out = await dial(answers({ ErrorExplaination: "duplicate serial" }));
    failed(out.outcome);
    const ich03 = having(lines(), "ICH03");
    assert.deepEqual(ich03.map((l) => l.level), ["info", "info"]);
    assert.equal(
      ich03[0].text,
      "Handshake [node 1] ICH03 handshake failed, explanation# incoming handshake" +
        " Peer# host-1(mem-1:40001) ReceiverHostName# host-b mismatch, expected# host-2",
    );
    assert.equal(
      ich03[1].text,
      "Handshake [node 2] ICH03 handshake failed, explanation# outgoing handshake" +
        " Peer# host-2(mem-2:19001) error from peer: duplicate serial",
    );
    assert.equal(having(lines(), NETWORK).length, 0);
  });
});

Deno.test("log: the first network error of each handshake is logged at info (the mute clock is per actor), without ICH03", async () => {
  await withLogs(async (lines) => {
    // Two separate handshakes, both refused at connect (nobody listens at mem-2:19001).
    for (let i = 0; i < 2; i++) failed((await dial(undefined)).outcome);
    const net = having(lines(), NETWORK);
    assert.deepEqual(net.map((l) => l.level), ["info", "info"]);
    for (const l of net) {
      assert.equal(
        l.text,
        `Handshake [node 2] ${NETWORK}outgoing handshake Peer# host-2(mem-2:19001)` +
          " Connection failed: Connection refused",
      );
    }
    assert.equal(having(lines(), "ICH03").length, 0);
  });
});

Deno.test("log: a second network error inside one handshake within 15 s is logged at debug (mute rule)", async () => {
  await withLogs(async (lines) => {
    // Cookie connect-back refused (network error 1), then the error reply cannot be written
    // because the initiator reset the main connection meanwhile (network error 2).
    const { nodes } = testCluster({ 2: {} }, testTable(1, 2));
    const node = nodes[2];
    const { peer, transport } = scriptedPair({ peerAddress: "mem-1:40001" });
    node.env.connect = async () => {
      await peer.reset(new Error("Connection reset by peer"));
      throw new Error("Connection refused");
    };
    await peer.send(V.V1, requestFrame(request({ Cookie: "c1" })));
    const outcome = await runIncomingHandshake(node.settings, node.env, transport, {
      deadlineMs: 2000,
    });
    await peer.untilClosed();
    const f = failed(outcome).failure;
    assert.equal(f.class, "transient");
    assert.equal(f.errorReplySent, false);
    assert.match(f.explanation, /^Socket error# Connection reset by peer state# SendExReply /);
    const net = having(lines(), NETWORK);
    assert.deepEqual(net.map((l) => l.level), ["info", "debug"]);
    assert.ok(net[0].text.endsWith("Connection failed: Connection refused"), net[0].text);
    assert.ok(net[1].text.includes("Socket error# Connection reset by peer"), net[1].text);
  });
});

Deno.test("log: a continuation Nak logs ICH08 at info (NOTICE)", async () => {
  await withLogs(async (lines) => {
    const r = await accept([V.V3]);
    silent(r.outcome);
    const ich08 = having(lines(), "ICH08");
    assert.equal(ich08.length, 1);
    assert.equal(ich08[0].level, "info");
    assert.match(ich08[0].text, /^Handshake \[node 1\] ICH08 /);
    assert.equal(having(lines(), "ICH03").length, 0, "a Nak is no failure");
  });
});

Deno.test("log: a peer without VersionTag is accepted with ICH06 at warning, on both sides", async () => {
  await withLogs(async (lines) => {
    const r = await accept([V.V1, requestFrame(request())], {
      settings: { versionTag: "v2", acceptedVersionTags: ["v2"] },
    });
    done(r.outcome);
    // The outgoing side: a Success without VersionTag.
    const out = await dial(answers({ Success: success() }), {
      settings: { versionTag: "v1", acceptedVersionTags: ["v1"] },
    });
    done(out.outcome);
    const ich06 = having(lines(), "ICH06");
    assert.deepEqual(ich06.map((l) => l.level), ["warning", "warning"]);
    assert.match(ich06[0].text, /^Handshake \[node 1\] ICH06 peer did not report VersionTag/);
    assert.match(ich06[1].text, /^Handshake \[node 2\] ICH06 peer did not report VersionTag/);
  });
});

Deno.test("log: an ended handshake logs nothing more (closing the socket at the deadline is not a second failure)", async () => {
  // lib/handshake/handshake.ts: run() closes the transport when the deadline wins, the still
  // running body then sees EOF and calls fail() again, which logs a spurious
  // "network-related error ... Socket error# connection unexpectedly closed" line (at debug,
  // thanks to the mute rule) for a handshake that already ended "Handshake timed out".
  await withLogs(async (lines) => {
    const r = await dial(() => {}, { deadlineMs: 50 });
    assert.equal(
      failed(r.outcome).failure.explanation,
      "Handshake timed out, State# ReceiveResponse",
    );
    await new Promise((resolve) => setTimeout(resolve, 10));
    const net = having(lines(), NETWORK);
    assert.deepEqual(
      net.map((l) => l.text.slice(l.text.indexOf("Peer# "))),
      ["Peer# host-2(mem-2:19001) Handshake timed out, State# ReceiveResponse"],
    );
  });
});
