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
import { type HandshakeEvent, InterconnectNode, type Session } from "./lib/node/node.ts";
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

async function startNode(configPath: string | undefined): Promise<InterconnectNode> {
  if (!configPath) throw new UsageError("--config FILE is required");
  const config: NodeConfig = await loadConfigFile(configPath);
  const node = InterconnectNode.start(config);
  await node.ready();
  return node;
}

async function listen(args: string[]): Promise<number> {
  const o = parse("listen", args);
  if (o.help) return help("listen");
  await setupLogging(logLevel(o["log-level"]!));
  const node = await startNode(o.config);
  const addr = node.listenAddress;
  if (!addr) {
    await node.close();
    throw new ConfigError("listen", "is required for the listen command");
  }
  node.onHandshake((e) => console.log(o.json ? handshakeLine(e) : humanLine(e)));
  console.log(
    o.json
      ? listeningLine(node.nodeId, addr.hostname, addr.port)
      : `node ${node.nodeId} listening on ${addr.hostname}:${addr.port}`,
  );
  const stop = Promise.withResolvers<void>();
  const onSignal = () => stop.resolve();
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  await stop.promise;
  Deno.removeSignalListener("SIGINT", onSignal);
  Deno.removeSignalListener("SIGTERM", onSignal);
  await node.close();
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
  await setupLogging(level);
  const node = await startNode(o.config);
  try {
    if (peer === node.nodeId || !node.config.nodes.some((n) => n.nodeId === peer)) {
      throw new UsageError(
        `--peer: ${peer} is ${peer === node.nodeId ? "this node" : "not in the config's nodes"}`,
      );
    }
    const print = (e: HandshakeEvent) => console.log(o.json ? handshakeLine(e) : humanLine(e));
    const first = await oneHandshake(node, peer, () => node.connect(peer));
    print(first.event);
    if (!first.event.ok || !first.session) return 1;
    if (!o.resume) return 0;
    const second = await oneHandshake(node, peer, () => first.session!.resume());
    print(second.event);
    return second.event.ok && second.event.continuation ? 0 : 1;
  } finally {
    await node.close();
  }
}

/** Runs `start` and returns the event of the first outgoing handshake it caused. */
async function oneHandshake(
  node: InterconnectNode,
  peer: number,
  start: () => Promise<Session>,
): Promise<{ event: HandshakeEvent; session?: Session }> {
  const event = new Promise<HandshakeEvent>((resolve) => {
    const off = node.onHandshake((e) => {
      if (e.direction === "outgoing" && e.peerNodeId === peer) {
        off();
        resolve(e);
      }
    });
  });
  let session: Session | undefined;
  try {
    session = await start();
  } catch {
    // The failure is in the event.
  }
  return { event: await event, session };
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
      console.error(`error: ${e.message}`);
      return 2;
    }
    if (e instanceof TlsError && e.code === "bad_credentials") {
      console.error(`error: tls: ${e.message}`);
      return 2;
    }
    throw e;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
