/**
 * The `ic-handshake` command line: probe or serve an interconnect port from `deno run`.
 *
 * ```sh
 * deno task ic demo
 * deno task ic listen --config node1.json --json
 * deno task ic connect --config node2.json --peer 1 --json --resume
 * ```
 *
 * Exit codes: 0 success; 1 a handshake failed; 2 bad usage or a bad config (one line on
 * stderr naming the problem).
 * @module
 */
import { parseArgs } from "node:util";
import type { LogLevel } from "@logtape/logtape";
import { loadConfigFile } from "./lib/cli/config_file.ts";
import { renderTable, runDemo } from "./lib/cli/demo.ts";
import { handshakeLine, listeningLine } from "./lib/cli/lines.ts";
import { LOG_LEVELS, setupLogging } from "./lib/cli/logging.ts";
import { ConfigError, type NodeConfig } from "./lib/node/config.ts";
import {
  HandshakeError,
  type HandshakeEvent,
  InterconnectNode,
  type Session,
} from "./lib/node/node.ts";
import { TlsError } from "./lib/tls/errors.ts";

const HELP: Record<string, string> = {
  main: `usage: deno task ic <command> [options]

commands:
  demo      start three nodes on loopback and show handshakes in every mode
  listen    start a node from a config file and accept handshakes until SIGINT/SIGTERM
  connect   start a node from a config file and run one handshake to a peer

Run "deno task ic <command> --help" for a command's options.
`,
  demo: `usage: deno task ic demo [--log-level LEVEL]

Starts three nodes on 127.0.0.1 with certificates made in memory (nothing is written to disk)
and runs handshakes: plain, TLS with the dialer as TLS server and as TLS client, AuthOnly, a
continuation, and two rejected peers. Prints one table row per handshake.
`,
  listen: `usage: deno task ic listen --config FILE [--json] [--log-level LEVEL]

Starts the node described by FILE and accepts handshakes on its "listen" address until SIGINT
or SIGTERM, then closes cleanly and exits 0.
  --json        stdout carries one JSON object per line: first {"event":"listening",...},
                then one {"event":"handshake",...} per finished handshake
  --log-level   trace, debug, info, warning (default), error or fatal; logs go to stderr
`,
  connect:
    `usage: deno task ic connect --config FILE --peer NODE_ID [--json] [--resume] [--log-level LEVEL]

Starts the node described by FILE (listening too when it has "listen", so that a peer's cookie
check can reach it), runs one outgoing new-session handshake to NODE_ID and prints its result.
  --resume      after a successful new session, close its connection and run a continuation
                handshake on a new one (same virtual ids); exit 0 only if both succeed
  --json        print each handshake as one JSON line
  --log-level   as for listen
Exit codes: 0 success, 1 handshake failure, 2 bad usage or config.
`,
};

class UsageError extends Error {}

function parse(command: string, args: string[]) {
  try {
    return parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        config: { type: "string" },
        peer: { type: "string" },
        json: { type: "boolean", default: false },
        resume: { type: "boolean", default: false },
        "log-level": { type: "string", default: "warning" },
        help: { type: "boolean", short: "h", default: false },
      },
    }).values;
  } catch (e) {
    throw new UsageError(`${command}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

function logLevel(value: string): LogLevel {
  if (!(LOG_LEVELS as readonly string[]).includes(value)) {
    throw new UsageError(
      `--log-level: ${JSON.stringify(value)} is not one of ${LOG_LEVELS.join(", ")}`,
    );
  }
  return value as LogLevel;
}

function humanLine(e: HandshakeEvent): string {
  const kind = e.continuation ? "continuation" : "new session";
  if (!e.ok) {
    return `${e.direction} ${kind} with node ${e.peerNodeId}: ${e.failure.toUpperCase()} ${e.explanation}`;
  }
  const p = e.session.params;
  const flags = [
    p.encryption ? "encrypted" : "plain",
    p.authOnly ? "authOnly" : "",
    p.authCN ? `CN=${p.authCN}` : "",
  ].filter(Boolean).join(" ");
  return `${e.direction} ${kind} with node ${e.peerNodeId}: ok ${e.session.selfVirtualId} <-> ${e.session.peerVirtualId} (${flags}, ${
    e.durationMs.toFixed(2)
  } ms)`;
}

function loadConfig(configPath: string | undefined): Promise<NodeConfig> {
  if (!configPath) throw new UsageError("--config FILE is required");
  return loadConfigFile(configPath);
}

async function startNode(config: NodeConfig): Promise<InterconnectNode> {
  let node: InterconnectNode;
  try {
    node = InterconnectNode.start(config);
  } catch (e) {
    if (e instanceof ConfigError || e instanceof TlsError || !config.listen) throw e;
    // Binding failed (address in use, unknown host, no such interface): a config problem.
    const { host, port } = config.listen;
    throw new ConfigError(
      "listen",
      `cannot listen on ${JSON.stringify(host)} port ${port}: ${
        e instanceof Error ? e.message : e
      }`,
    );
  }
  await node.ready();
  return node;
}

async function listen(args: string[]): Promise<number> {
  const o = parse("listen", args);
  if (o.help) return help("listen");
  const level = logLevel(o["log-level"]!);
  const config = await loadConfig(o.config);
  if (!config.listen) throw new ConfigError("listen", "is required for the listen command");
  await setupLogging(level);
  // Catch the signals before "listening" is printed: a supervisor may stop us right after it.
  const stop = Promise.withResolvers<void>();
  const onSignal = () => stop.resolve();
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    const node = await startNode(config);
    try {
      const addr = node.listenAddress!;
      node.onHandshake((e) => console.log(o.json ? handshakeLine(e) : humanLine(e)));
      console.log(
        o.json
          ? listeningLine(node.nodeId, addr.hostname, addr.port)
          : `node ${node.nodeId} listening on ${addr.hostname}:${addr.port}`,
      );
      await stop.promise;
    } finally {
      await node.close();
    }
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
  return 0;
}

async function connect(args: string[]): Promise<number> {
  const o = parse("connect", args);
  if (o.help) return help("connect");
  const level = logLevel(o["log-level"]!);
  if (o.peer === undefined || !/^[0-9]+$/.test(o.peer)) {
    throw new UsageError(`--peer: ${JSON.stringify(o.peer ?? "")} is not a node id`);
  }
  const peer = Number(o.peer);
  const config = await loadConfig(o.config);
  if (peer === config.nodeId || !config.nodes.some((n) => n.nodeId === peer)) {
    throw new UsageError(
      `--peer: ${o.peer} is ${peer === config.nodeId ? "this node" : "not in the config's nodes"}`,
    );
  }
  await setupLogging(level);
  const node = await startNode(config);
  try {
    const print = (e: HandshakeEvent) => console.log(o.json ? handshakeLine(e) : humanLine(e));
    const first = await oneHandshake(node, peer, false, () => node.connect(peer));
    print(first.event);
    if (!first.event.ok || !first.session) return 1;
    if (!o.resume) return 0;
    const second = await oneHandshake(node, peer, true, () => first.session!.resume());
    print(second.event);
    return second.event.ok && second.event.continuation ? 0 : 1;
  } finally {
    await node.close();
  }
}

/**
 * Runs `start` and returns the event of the first outgoing handshake it caused. The node
 * announces a handshake before it settles the caller's promise; when `start` settles without
 * any announcement (it failed before dialing, or a queued request expired), the event is made
 * from its result so that the caller never waits for an event that will not come.
 */
async function oneHandshake(
  node: InterconnectNode,
  peer: number,
  continuation: boolean,
  start: () => Promise<Session>,
): Promise<{ event: HandshakeEvent; session?: Session }> {
  let event: HandshakeEvent | undefined;
  const off = node.onHandshake((e) => {
    if (!event && e.direction === "outgoing" && e.peerNodeId === peer) event = e;
  });
  const started = performance.now();
  let session: Session | undefined;
  let error: unknown;
  try {
    session = await start();
  } catch (e) {
    error = e;
  } finally {
    off();
  }
  const durationMs = performance.now() - started;
  if (!event) {
    event = session
      ? {
        direction: "outgoing",
        ok: true,
        peerNodeId: peer,
        continuation,
        durationMs,
        session,
        program: continuation ? null : session.program,
      }
      : {
        direction: "outgoing",
        ok: false,
        peerNodeId: peer,
        continuation,
        durationMs,
        failure: error instanceof HandshakeError ? error.failure : "transient",
        explanation: error instanceof HandshakeError
          ? error.explanation
          : error instanceof Error
          ? error.message
          : String(error),
      };
  }
  return { event, session };
}

async function demo(args: string[]): Promise<number> {
  const o = parse("demo", args);
  if (o.help) return help("demo");
  await setupLogging(logLevel(o["log-level"]!));
  console.log("Starting nodes 1, 2 and 3 on 127.0.0.1 (certificates made in memory)...\n");
  console.log(renderTable(await runDemo()));
  return 0;
}

function help(command: string): number {
  console.log(HELP[command]);
  return 0;
}

/** The contract is one line on stderr: line breaks inside a message are shown escaped. */
function oneLine(message: string): string {
  return message.replace(/\r?\n|\r/g, "\\n");
}

/** Runs the CLI with `args`; resolves with the exit code. */
export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  try {
    switch (command) {
      case "demo":
        return await demo(rest);
      case "listen":
        return await listen(rest);
      case "connect":
        return await connect(rest);
      case undefined:
      case "help":
      case "--help":
      case "-h":
        return help("main");
      default:
        throw new UsageError(`unknown command ${JSON.stringify(command)}; try --help`);
    }
  } catch (e) {
    if (e instanceof UsageError || e instanceof ConfigError) {
      console.error(`error: ${oneLine(e.message)}`);
      return 2;
    }
    if (e instanceof TlsError && e.code === "bad_credentials") {
      console.error(`error: tls: ${oneLine(e.message)}`);
      return 2;
    }
    throw e;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
