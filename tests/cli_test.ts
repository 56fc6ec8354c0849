/**
 * The command line (issue 5) as real subprocesses: exit codes, config and usage errors, help,
 * `listen` and `connect` interoperating in every mode, the JSON-line contract, signals, demo.
 */
import assert from "node:assert/strict";
import { freePorts } from "./_helpers/cluster.ts";
import {
  baseConfig,
  CliProcess,
  type CliResult,
  entry,
  mapLimit,
  runCli,
  TempDir,
  tlsKey,
} from "./_helpers/cli.ts";

type Json = Record<string, unknown>;

const FIXTURES = ["ca.pem", "node-1.pem", "node-1.key", "node-2.pem", "node-2.key"];
const ROGUE = ["rogue.pem", "rogue.key"];

/** Exit 2 with exactly one line on stderr, which starts with "error: "; nothing on stdout. */
function assertUsageExit(r: CliResult, what: string): string {
  assert.equal(r.code, 2, `${what}: exit code (stderr: ${r.stderr})`);
  assert.equal(r.stdout, "", `${what}: stdout`);
  const lines = r.stderr.split("\n");
  assert.equal(lines.at(-1), "", `${what}: stderr ends with a line break`);
  assert.equal(lines.length, 2, `${what}: one stderr line, got ${JSON.stringify(r.stderr)}`);
  assert.match(lines[0], /^error: \S/, what);
  return lines[0];
}

/** Parses stdout that must be JSON objects, one a line, each with an "event". */
function jsonLines(stdout: string): Json[] {
  assert.ok(stdout.endsWith("\n"), `stdout ends with a line break: ${JSON.stringify(stdout)}`);
  return stdout.slice(0, -1).split("\n").map((line) => {
    const v = JSON.parse(line);
    assert.equal(typeof v, "object", line);
    assert.ok(v !== null && !Array.isArray(v), line);
    assert.equal(typeof v.event, "string", line);
    return v as Json;
  });
}

const U64 = /^(0|[1-9][0-9]{0,19})$/;

function virtualId(v: unknown, nodeId: number): string {
  assert.equal(typeof v, "string");
  const m = /^\[(\d+):(\d+):(\d+)\]$/.exec(v as string);
  assert.ok(m, `virtual id ${v}`);
  assert.equal(Number(m[1]), nodeId, `virtual id ${v} is node ${nodeId}'s`);
  return v as string;
}

interface Expect {
  direction: "incoming" | "outgoing";
  self: number;
  peer: number;
  continuation: boolean;
}

/** A successful handshake line: every field of the contract, no other, with its type. */
function assertOkLine(v: Json, e: Expect): void {
  assert.deepEqual(Object.keys(v).sort(), [
    "continuation",
    "direction",
    "durationMs",
    "event",
    "nextPacketFromPeer",
    "ok",
    "params",
    "peerNodeId",
    "peerVirtualId",
    "program",
    "selfVirtualId",
  ]);
  assert.equal(v.event, "handshake");
  assert.equal(v.direction, e.direction);
  assert.equal(v.ok, true);
  assert.equal(v.peerNodeId, e.peer);
  assert.equal(v.continuation, e.continuation);
  virtualId(v.selfVirtualId, e.self);
  virtualId(v.peerVirtualId, e.peer);
  assert.match(v.nextPacketFromPeer as string, U64);
  const p = v.params as Json;
  assert.deepEqual(Object.keys(p).sort(), [
    "authCN",
    "authOnly",
    "encryption",
    "peerScopeId",
    "useModernFrame",
  ]);
  assert.equal(typeof p.encryption, "boolean");
  assert.equal(typeof p.authOnly, "boolean");
  assert.equal(typeof p.authCN, "string");
  assert.equal(typeof p.useModernFrame, "boolean");
  assert.ok(Array.isArray(p.peerScopeId) && p.peerScopeId.length === 2);
  for (const x of p.peerScopeId as unknown[]) assert.match(x as string, U64);
  if (e.continuation) {
    assert.equal(v.program, null);
  } else {
    const prog = v.program as Json;
    assert.deepEqual(Object.keys(prog).sort(), ["pid", "serial", "startTime"]);
    for (const x of Object.values(prog)) assert.match(x as string, U64);
  }
  assert.equal(typeof v.durationMs, "number");
  assert.ok(Number.isFinite(v.durationMs) && (v.durationMs as number) >= 0);
}

/** A failed handshake line: the contract's fields with their types. */
function assertFailLine(
  v: Json,
  e: { direction: "incoming" | "outgoing"; peer: number; failure: string },
): void {
  for (const k of ["event", "direction", "ok", "peerNodeId", "failure", "explanation"]) {
    assert.ok(k in v, `failure line has ${k}: ${JSON.stringify(v)}`);
  }
  // Beyond the contract the line may say whether it was a continuation and how long it took.
  for (const k of Object.keys(v)) {
    assert.ok(
      ["event", "direction", "ok", "peerNodeId", "failure", "explanation", "continuation"]
        .includes(k) || k === "durationMs",
      `unexpected key ${k}`,
    );
  }
  assert.equal(v.event, "handshake");
  assert.equal(v.direction, e.direction);
  assert.equal(v.ok, false);
  assert.equal(v.peerNodeId, e.peer);
  assert.equal(v.failure, e.failure);
  assert.equal(typeof v.explanation, "string");
  assert.notEqual(v.explanation, "");
}

// -------------------------------------------------------------------------------------------
// Usage, help, config errors

Deno.test("bad usage exits 2 with one stderr line naming the problem", async () => {
  await using dir = await TempDir.create();
  const config = await dir.write("node1.json", baseConfig());
  const noListen = config; // baseConfig has no "listen"
  const cases: [string[], RegExp][] = [
    [["bogus"], /unknown command "bogus"/],
    [["listen"], /--config/],
    [["listen", "--json"], /--config/],
    [["connect", "--peer", "2"], /--config/],
    [["connect", "--config", config], /--peer: ""/],
    [["connect", "--config", config, "--peer", "two"], /--peer: "two"/],
    [["connect", "--config", config, "--peer", "-3"], /--peer/],
    [["connect", "--config", config, "--peer", "1"], /--peer: 1 is this node/],
    [["connect", "--config", config, "--peer", "7"], /--peer: 7 is not in the config's nodes/],
    [["listen", "--config", config, "--bogus"], /bogus/],
    [["connect", "--config", config, "--peer", "2", "extra"], /extra/],
    [["listen", "--config", config, "--log-level", "loud"], /--log-level: "loud"/],
    [["demo", "--log-level", "verbose"], /--log-level: "verbose"/],
    [["listen", "--config", noListen], /^error: listen: is required/],
  ];
  await mapLimit(cases, 4, async ([args, pattern]) => {
    const line = assertUsageExit(await runCli(args), args.join(" "));
    assert.match(line, pattern, args.join(" "));
  });
});

Deno.test("--help on every command exits 0 and prints its usage", async () => {
  const cases: [string[], string][] = [
    [[], "usage: deno task ic <command>"],
    [["--help"], "usage: deno task ic <command>"],
    [["-h"], "usage: deno task ic <command>"],
    [["help"], "usage: deno task ic <command>"],
    [["listen", "--help"], "usage: deno task ic listen --config FILE"],
    [["connect", "--help"], "usage: deno task ic connect --config FILE --peer NODE_ID"],
    [["connect", "-h"], "usage: deno task ic connect --config FILE --peer NODE_ID"],
    [["demo", "--help"], "usage: deno task ic demo"],
  ];
  await mapLimit(cases, 4, async ([args, usage]) => {
    const r = await runCli(args);
    assert.equal(r.code, 0, args.join(" "));
    assert.ok(r.stdout.startsWith(usage), `${args.join(" ")}: ${r.stdout}`);
    assert.equal(r.stderr, "", args.join(" "));
  });
});

Deno.test("config errors exit 2 with one stderr line naming the key and the value", async () => {
  await using dir = await TempDir.create();
  await dir.copyFixtures("tls", [...FIXTURES]);
  await dir.write("tls/notes.txt", "just some text, no PEM here\n");
  await dir.write(
    "tls/garbled.pem",
    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
  );
  const [p1, p2] = freePorts(2);
  const nodes = [entry(1, p1), entry(2, p2)];
  const good = { nodeId: 1, nodes };
  const withTls = (tls: Json) => ({ ...good, encryption: "required", tls });
  const t = tlsKey("tls", "node-1") as Record<string, string>;
  // [what, file content, the key the line must name, the value it must name]
  const cases: [string, string | Json, string, string][] = [
    ["unknown key", { ...good, colour: "blue" }, "colour", '"blue"'],
    ["unknown nested key", { ...good, listen: { host: "x", port: 1, tls: 1 } }, "listen.tls", "1"],
    ["unknown key with a line break", { ...good, "a\nb": 5 }, '"a\\nb"', "5"],
    ["wrong type: nodeId", { ...good, nodeId: "1" }, "nodeId", '"1"'],
    ["wrong type: cookie", { ...good, cookie: 42 }, "cookie", "42"],
    ["wrong type: nodes", { nodeId: 1, nodes: { 1: "a" } }, "nodes", '{"1":"a"}'],
    ["wrong type: listen.host", { ...good, listen: { host: 7, port: 0 } }, "listen.host", "7"],
    ["wrong type: acceptUUID", { ...good, acceptUUID: "u" }, "acceptUUID", '"u"'],
    ["wrong type: tls.authOnly", withTls({ ...t, authOnly: "yes" }), "tls.authOnly", '"yes"'],
    ["wrong type: tls.cert", withTls({ ...t, cert: 3 }), "tls.cert", "3"],
    ["nodeId 0", { ...good, nodeId: 0 }, "nodeId", "0"],
    ["nodeId too big", { ...good, nodeId: 1048576 }, "nodeId", "1048576"],
    ["fractional nodeId", { ...good, nodeId: 1.5 }, "nodeId", "1.5"],
    [
      "listen.port too big",
      { ...good, listen: { host: "127.0.0.1", port: 70000 } },
      "listen.port",
      "70000",
    ],
    [
      "listen.port negative",
      { ...good, listen: { host: "127.0.0.1", port: -1 } },
      "listen.port",
      "-1",
    ],
    ["nodes port 0", { nodeId: 1, nodes: [entry(1, 0)] }, "nodes[0].port", "0"],
    [
      "nodes nodeId too big",
      { nodeId: 1, nodes: [entry(1, p1), entry(2000000, p2)] },
      "nodes[1].nodeId",
      "2000000",
    ],
    ["handshakeTimeoutMs 0", { ...good, handshakeTimeoutMs: 0 }, "handshakeTimeoutMs", "0"],
    ["ballastSize negative", { ...good, ballastSize: -5 }, "ballastSize", "-5"],
    ["bad encryption", { ...good, encryption: "maybe" }, "encryption", '"maybe"'],
    ["scopeId not a pair", { ...good, scopeId: ["1"] }, "scopeId", '["1"]'],
    [
      "scopeId over u64",
      { ...good, scopeId: ["1", "18446744073709551616"] },
      "scopeId[1]",
      '"18446744073709551616"',
    ],
    ["scopeId not decimal", { ...good, scopeId: ["0x10", "1"] }, "scopeId[0]", '"0x10"'],
    ["scopeId numbers", { ...good, scopeId: [1, 2] }, "scopeId[0]", "1"],
    ["encryption required without tls", { ...good, encryption: "required" }, "tls", '"required"'],
    ["encryption optional without tls", { ...good, encryption: "optional" }, "tls", '"optional"'],
    [
      "unreadable cert",
      withTls({ ...t, cert: "tls/missing.pem" }),
      "tls.cert",
      '"tls/missing.pem"',
    ],
    [
      "unreadable key",
      withTls({ ...t, key: "nowhere/node-1.key" }),
      "tls.key",
      '"nowhere/node-1.key"',
    ],
    ["ca is a folder", withTls({ ...t, ca: "tls" }), "tls.ca", '"tls"'],
    ["cert not PEM", withTls({ ...t, cert: "tls/notes.txt" }), "tls.cert", '"tls/notes.txt"'],
    ["key not PEM", withTls({ ...t, key: "tls/notes.txt" }), "tls.key", '"tls/notes.txt"'],
    [
      "key file is a certificate",
      withTls({ ...t, key: "tls/node-1.pem" }),
      "tls.key",
      '"tls/node-1.pem"',
    ],
    ["ca file is a key", withTls({ ...t, ca: "tls/node-1.key" }), "tls.ca", '"tls/node-1.key"'],
    [
      "cert does not parse",
      withTls({ ...t, cert: "tls/garbled.pem" }),
      "tls.cert",
      '"tls/garbled.pem"',
    ],
    ["ca does not parse", withTls({ ...t, ca: "tls/garbled.pem" }), "tls.ca", '"tls/garbled.pem"'],
    [
      "key of another node",
      withTls({ ...t, key: "tls/node-2.key" }),
      "tls.key",
      '"tls/node-2.key"',
    ],
    ["invalid JSON", '{\n  "nodeId": 1,\n  "nodes": [\n', "config", "is not valid JSON"],
    ["not an object", "[1, 2]", "config", "[1,2]"],
    ["nodeId not in nodes", { ...good, nodeId: 3 }, "nodeId", "3"],
    [
      "duplicate node ids",
      { nodeId: 1, nodes: [entry(1, p1), entry(1, p2)] },
      "nodes[1].nodeId",
      "1",
    ],
    [
      "duplicate address and port",
      { nodeId: 1, nodes: [entry(1, p1), { ...entry(2, p1) }] },
      "nodes[1].address",
      `"127.0.0.1" port ${p1}`,
    ],
    [
      "duplicate host and port",
      {
        nodeId: 1,
        nodes: [{ nodeId: 1, host: "h", port: p1 }, { nodeId: 2, host: "h", port: p1 }],
      },
      "nodes[1].resolveHost",
      `"h" port ${p1}`,
    ],
  ];
  await mapLimit(cases, 4, async ([what, content, key, value]) => {
    const path = await dir.write(`${what.replaceAll(/\W+/g, "_")}.json`, content);
    const line = assertUsageExit(await runCli(["connect", "--config", path, "--peer", "2"]), what);
    assert.ok(line.startsWith(`error: ${key}: `), `${what}: names ${key}: ${line}`);
    assert.ok(line.includes(value), `${what}: names ${value}: ${line}`);
  });
  // A config file that cannot be read at all.
  const missing = `${dir.path}/no-such.json`;
  const line = assertUsageExit(await runCli(["listen", "--config", missing]), "missing config");
  assert.ok(line.startsWith("error: config: "), line);
  assert.ok(line.includes(JSON.stringify(missing)), line);
});

Deno.test("listen exits 2 naming the address when it cannot bind", async () => {
  await using dir = await TempDir.create();
  using busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = busy.addr.port;
  const path = await dir.write(
    "busy.json",
    baseConfig({ listen: { host: "127.0.0.1", port } }),
  );
  const line = assertUsageExit(await runCli(["listen", "--config", path, "--json"]), "bind");
  assert.ok(line.startsWith("error: listen: "), line);
  assert.ok(line.includes(`"127.0.0.1" port ${port}`), line);
});

// -------------------------------------------------------------------------------------------
// listen + connect

interface PairOptions {
  /** Node ids of the `listen` and the `connect` process. */
  listenId: number;
  connectId: number;
  /** Extra config keys of each side. */
  listen?: Json;
  connect?: Json;
  /** Give the connect side a "listen" address (at the port the listener's table has). */
  connectListens?: boolean;
  /** Extra arguments of each command. */
  listenArgs?: string[];
  connectArgs?: string[];
  /** Handshake lines the listener must print before it is stopped. */
  listenerHandshakes: number;
  stopWith: Deno.Signal;
}

interface PairResult {
  connect: CliResult;
  /** Every stdout line of the listener, parsed: "listening", then the handshakes. */
  listener: Json[];
  listenerResult: CliResult;
  listenerPid: number;
  connectPid: number;
  listenPort: number;
}

/**
 * Starts `listen` on port 0, writes the connect side's config with the real port from the
 * "listening" line, runs `connect`, waits for the listener's handshake lines, then stops it.
 */
async function pair(o: PairOptions): Promise<PairResult> {
  await using dir = await TempDir.create();
  await dir.copyFixtures("tls", [...FIXTURES, ...ROGUE]);
  // The listener's own entry is never dialed; the connect side's port is where it listens
  // (when it does) and where the listener dials back for the cookie check.
  const [placeholder, connectPort] = freePorts(2);
  const listenConfig = await dir.write("listen.json", {
    nodeId: o.listenId,
    listen: { host: "127.0.0.1", port: 0 },
    nodes: [entry(o.listenId, placeholder), entry(o.connectId, connectPort)],
    ...o.listen,
  });
  await using listener = new CliProcess([
    "listen",
    "--config",
    listenConfig,
    "--json",
    ...(o.listenArgs ?? []),
  ]);
  const listening = await listener.json(0);
  assert.deepEqual(Object.keys(listening).sort(), ["event", "host", "nodeId", "port"]);
  assert.equal(listening.event, "listening");
  assert.equal(listening.nodeId, o.listenId);
  assert.equal(listening.host, "127.0.0.1");
  assert.equal(typeof listening.port, "number");
  assert.notEqual(listening.port, 0, "the real port, not the configured 0");
  const listenPort = listening.port as number;
  const connectConfig = await dir.write("connect.json", {
    nodeId: o.connectId,
    ...(o.connectListens ? { listen: { host: "127.0.0.1", port: connectPort } } : {}),
    nodes: [entry(o.listenId, listenPort), entry(o.connectId, connectPort)],
    ...o.connect,
  });
  await using connector = new CliProcess([
    "connect",
    "--config",
    connectConfig,
    "--peer",
    String(o.listenId),
    ...(o.connectArgs ?? ["--json"]),
  ]);
  const connect = await connector.finish();
  for (let i = 1; i <= o.listenerHandshakes; i++) await listener.line(i);
  listener.kill(o.stopWith);
  const listenerResult = await listener.finish();
  assert.equal(listenerResult.code, 0, `listen exits 0 on ${o.stopWith}: ${listenerResult.stderr}`);
  const lines = jsonLines(listenerResult.stdout);
  assert.equal(lines.length, 1 + o.listenerHandshakes, listenerResult.stdout);
  return {
    connect,
    listener: lines,
    listenerResult,
    listenerPid: listener.pid,
    connectPid: connector.pid,
    listenPort,
  };
}

Deno.test("plain: connect exits 0, both print a complete handshake line, ids and pids match", async () => {
  const scope = ["5", "18446744073709551615"];
  const r = await pair({
    listenId: 2,
    connectId: 1,
    listen: { scopeId: scope },
    listenArgs: ["--log-level", "debug"],
    listenerHandshakes: 1,
    stopWith: "SIGTERM",
  });
  assert.equal(r.connect.code, 0, r.connect.stderr);
  const [out] = jsonLines(r.connect.stdout);
  assert.equal(jsonLines(r.connect.stdout).length, 1);
  assertOkLine(out, { direction: "outgoing", self: 1, peer: 2, continuation: false });
  const inc = r.listener[1];
  assertOkLine(inc, { direction: "incoming", self: 2, peer: 1, continuation: false });
  assert.equal(out.selfVirtualId, inc.peerVirtualId);
  assert.equal(out.peerVirtualId, inc.selfVirtualId);
  // Each side saw the other's process.
  assert.equal((out.program as Json).pid, String(r.listenerPid));
  assert.equal((inc.program as Json).pid, String(r.connectPid));
  const p = out.params as Json;
  assert.deepEqual(p, {
    encryption: false,
    authOnly: false,
    authCN: "",
    useModernFrame: true,
    peerScopeId: scope,
  });
  assert.deepEqual((inc.params as Json).peerScopeId, ["0", "0"]);
  // --log-level debug: logs went to stderr, stdout stayed JSON lines (checked by pair).
  assert.notEqual(r.listenerResult.stderr, "");
});

for (const [listenId, connectId] of [[2, 1], [1, 2]]) {
  Deno.test(`TLS: node ${connectId} dials node ${listenId}, both see the peer's CN`, async () => {
    const r = await pair({
      listenId,
      connectId,
      listen: { encryption: "required", tls: tlsKey("tls", `node-${listenId}`) },
      connect: { encryption: "required", tls: tlsKey("tls", `node-${connectId}`) },
      listenerHandshakes: 1,
      stopWith: "SIGINT",
    });
    assert.equal(r.connect.code, 0, r.connect.stderr);
    const [out] = jsonLines(r.connect.stdout);
    assertOkLine(out, {
      direction: "outgoing",
      self: connectId,
      peer: listenId,
      continuation: false,
    });
    const inc = r.listener[1];
    assertOkLine(inc, {
      direction: "incoming",
      self: listenId,
      peer: connectId,
      continuation: false,
    });
    assert.equal((out.params as Json).encryption, true);
    assert.equal((out.params as Json).authOnly, false);
    assert.equal((out.params as Json).authCN, `node-${listenId}`);
    assert.equal((inc.params as Json).encryption, true);
    assert.equal((inc.params as Json).authCN, `node-${connectId}`);
  });
}

Deno.test("AuthOnly: TLS authenticates both sides, the session is not encrypted", async () => {
  const r = await pair({
    listenId: 2,
    connectId: 1,
    listen: { encryption: "optional", tls: tlsKey("tls", "node-2", true) },
    connect: { encryption: "optional", tls: tlsKey("tls", "node-1", true) },
    listenerHandshakes: 1,
    stopWith: "SIGTERM",
  });
  assert.equal(r.connect.code, 0, r.connect.stderr);
  const [out] = jsonLines(r.connect.stdout);
  assertOkLine(out, { direction: "outgoing", self: 1, peer: 2, continuation: false });
  assertOkLine(r.listener[1], { direction: "incoming", self: 2, peer: 1, continuation: false });
  assert.equal((out.params as Json).authOnly, true);
  assert.equal((out.params as Json).encryption, false);
  assert.equal((out.params as Json).authCN, "node-2");
  assert.equal((r.listener[1].params as Json).authOnly, true);
  assert.equal((r.listener[1].params as Json).authCN, "node-1");
});

Deno.test("--resume: a continuation on a new connection keeps the virtual ids", async () => {
  const r = await pair({
    listenId: 2,
    connectId: 1,
    connectArgs: ["--json", "--resume"],
    listenerHandshakes: 2,
    stopWith: "SIGINT",
  });
  assert.equal(r.connect.code, 0, r.connect.stderr);
  const lines = jsonLines(r.connect.stdout);
  assert.equal(lines.length, 2);
  const [first, second] = lines;
  assertOkLine(first, { direction: "outgoing", self: 1, peer: 2, continuation: false });
  assertOkLine(second, { direction: "outgoing", self: 1, peer: 2, continuation: true });
  assert.equal(second.selfVirtualId, first.selfVirtualId);
  assert.equal(second.peerVirtualId, first.peerVirtualId);
  const [, inNew, inCont] = r.listener;
  assertOkLine(inNew, { direction: "incoming", self: 2, peer: 1, continuation: false });
  assertOkLine(inCont, { direction: "incoming", self: 2, peer: 1, continuation: true });
  assert.equal(inCont.selfVirtualId, first.peerVirtualId);
  assert.equal(inCont.peerVirtualId, first.selfVirtualId);
});

Deno.test("cookies: the listener's connect-back check reaches the listening connect side", async () => {
  const r = await pair({
    listenId: 2,
    connectId: 1,
    listen: { cookie: "cookie-of-2" },
    connect: { cookie: "cookie-of-1" },
    connectListens: true,
    listenerHandshakes: 1,
    stopWith: "SIGTERM",
  });
  assert.equal(r.connect.code, 0, r.connect.stderr);
  assertOkLine(jsonLines(r.connect.stdout)[0], {
    direction: "outgoing",
    self: 1,
    peer: 2,
    continuation: false,
  });
  assertOkLine(r.listener[1], { direction: "incoming", self: 2, peer: 1, continuation: false });
});

Deno.test("cookies: without a listening connect side the check fails, connect exits 1", async () => {
  const r = await pair({
    listenId: 2,
    connectId: 1,
    listen: { cookie: "cookie-of-2" },
    connect: { cookie: "cookie-of-1" },
    connectListens: false,
    listenerHandshakes: 1,
    stopWith: "SIGINT",
  });
  assert.equal(r.connect.code, 1, r.connect.stderr);
  const [out] = jsonLines(r.connect.stdout);
  assertFailLine(out, { direction: "outgoing", peer: 2, failure: "permanent" });
  assert.match(out.explanation as string, /connectivity-checking failed/);
  assertFailLine(r.listener[1], { direction: "incoming", peer: 1, failure: "permanent" });
});

Deno.test("rejected peer: ClusterUUID mismatch exits 1 with a PERMANENT failure line", async () => {
  const r = await pair({
    listenId: 2,
    connectId: 1,
    listen: { clusterUUID: "prod", acceptUUID: ["prod"] },
    connect: { clusterUUID: "other-cluster", acceptUUID: ["other-cluster"] },
    listenerHandshakes: 1,
    stopWith: "SIGTERM",
  });
  assert.equal(r.connect.code, 1, r.connect.stderr);
  const lines = jsonLines(r.connect.stdout);
  assert.equal(lines.length, 1);
  assertFailLine(lines[0], { direction: "outgoing", peer: 2, failure: "permanent" });
  assert.equal(
    lines[0].explanation,
    "error from peer: Peer ClusterUUID# other-cluster mismatch, AcceptUUID# [prod]",
  );
  assertFailLine(r.listener[1], { direction: "incoming", peer: 1, failure: "permanent" });
  assert.match(r.listener[1].explanation as string, /ClusterUUID# other-cluster mismatch/);
});

Deno.test("rejected certificate (unknown CA): exit 1; without --json a human line", async () => {
  const r = await pair({
    listenId: 2,
    connectId: 1,
    listen: { encryption: "required", tls: tlsKey("tls", "node-2") },
    connect: {
      encryption: "required",
      tls: { cert: "tls/rogue.pem", key: "tls/rogue.key", ca: "tls/ca.pem" },
    },
    connectArgs: [],
    listenerHandshakes: 1,
    stopWith: "SIGTERM",
  });
  assert.equal(r.connect.code, 1, r.connect.stderr);
  assert.match(r.connect.stdout, /^outgoing new session with node 2: PERMANENT \S.*\n$/);
  assertFailLine(r.listener[1], { direction: "incoming", peer: 1, failure: "permanent" });
  assert.match(r.listener[1].explanation as string, /certificate/);
});

Deno.test("connect to a node that is not listening exits 1 with a failure line", async () => {
  await using dir = await TempDir.create();
  const path = await dir.write("node1.json", baseConfig());
  const r = await runCli(["connect", "--config", path, "--peer", "2", "--json"]);
  assert.equal(r.code, 1, r.stderr);
  const lines = jsonLines(r.stdout);
  assert.equal(lines.length, 1);
  assertFailLine(lines[0], { direction: "outgoing", peer: 2, failure: lines[0].failure as string });
  assert.ok(["transient", "permanent"].includes(lines[0].failure as string));
  assert.match(lines[0].explanation as string, /Connection failed/);
});

Deno.test("SIGTERM and SIGINT stop an idle listener: exit 0, stdout only the listening line", async () => {
  await using dir = await TempDir.create();
  await Promise.all((["SIGTERM", "SIGINT"] as const).map(async (signal) => {
    const path = await dir.write(
      `${signal}.json`,
      baseConfig({ listen: { host: "127.0.0.1", port: 0 } }),
    );
    await using p = new CliProcess(["listen", "--config", path, "--json"]);
    const first = await p.json(0);
    assert.equal(first.event, "listening");
    p.kill(signal);
    const r = await p.finish();
    assert.equal(r.code, 0, `${signal}: ${r.stderr}`);
    assert.equal(r.signal, null);
    const lines = jsonLines(r.stdout);
    assert.deepEqual(lines, [first]);
  }));
});

Deno.test("listen without --json prints a human line with the bound address", async () => {
  await using dir = await TempDir.create();
  const path = await dir.write("n.json", baseConfig({ listen: { host: "127.0.0.1", port: 0 } }));
  await using p = new CliProcess(["listen", "--config", path]);
  assert.match(await p.line(0), /^node 1 listening on 127\.0\.0\.1:[1-9][0-9]*$/);
  p.kill("SIGTERM");
  assert.equal((await p.finish()).code, 0);
});

// -------------------------------------------------------------------------------------------
// demo

Deno.test("demo exits 0 and prints every scenario, both rejections PERMANENT", async () => {
  const r = await runCli(["demo"]);
  assert.equal(r.code, 0, r.stderr);
  const rows = r.stdout.split("\n");
  const header = rows.findIndex((l) => l.startsWith("scenario"));
  assert.ok(header >= 0, r.stdout);
  const table = rows.slice(header + 1).filter((l) => l.trim() !== "");
  const row = (pattern: RegExp) => {
    const found = table.filter((l) => pattern.test(l));
    assert.equal(found.length, 1, `one row matches ${pattern}:\n${r.stdout}`);
    return found[0];
  };
  assert.match(row(/^new session\s+1 -> 2\s+plain\s/), /\sok\s/);
  assert.match(row(/TLS, dialer is TLS server/), /\sok\s.*encryption CN=node-2/);
  assert.match(row(/TLS, dialer is TLS client/), /\sok\s.*encryption CN=node-1/);
  assert.match(row(/AuthOnly/), /\sok\s.*authOnly/);
  assert.match(row(/^new session\s+1 -> 3/), /\sok\s/);
  assert.match(row(/^continuation\s+1 -> 3/), /\sok\s/);
  assert.match(row(/^rejected peer\s+3 -> 2/), /PERMANENT.*ClusterUUID/);
  assert.match(row(/^rejected peer\s+1 -> 2/), /PERMANENT.*encryption/);
  assert.equal(table.filter((l) => /PERMANENT/.test(l)).length, 2);
  assert.equal(table.length, 8);
});
