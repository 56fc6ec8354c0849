/**
 * The CLI as real subprocesses for tests: `deno run -q -P=cli cli.ts ...` from the repository
 * root, temporary config folders, JSON-line readers and node-table builders.
 *
 * `-q` silences Deno's own notice about permission sets in the config file, so stderr holds
 * only what the CLI writes.
 */
import { fileURLToPath } from "node:url";
import { freePorts } from "./cluster.ts";

/** The repository root (where deno.json and cli.ts are). */
export const REPO_ROOT: string = fileURLToPath(new URL("../../", import.meta.url));
const FIXTURES = new URL("../fixtures/tls/", import.meta.url);

const CLI = ["run", "-q", "-P=cli", "cli.ts"];

/** How a finished CLI process ended and what it printed. */
export interface CliResult {
  code: number;
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI to completion with `args`. */
export async function runCli(args: string[]): Promise<CliResult> {
  const out = await new Deno.Command("deno", {
    args: [...CLI, ...args],
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    signal: out.signal,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}

/** Runs `fn` over `items`, at most `limit` at a time; results in input order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return results;
}

/**
 * A running CLI process whose stdout is read line by line as it comes. Dispose it (`await
 * using`) to kill it if still running and to wait for its end and its pipes.
 */
export class CliProcess implements AsyncDisposable {
  readonly #child: Deno.ChildProcess;
  readonly #lines: string[] = [];
  #stdout = "";
  #ended = false;
  #wake: (() => void)[] = [];
  readonly #reading: Promise<void>;
  readonly #stderr: Promise<string>;
  #status: Deno.CommandStatus | undefined;

  constructor(args: string[]) {
    this.#child = new Deno.Command("deno", {
      args: [...CLI, ...args],
      cwd: REPO_ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#reading = this.#read();
    this.#stderr = new Response(this.#child.stderr).text();
    this.#child.status.then((s) => this.#status = s);
  }

  /** The process id (the CLI's own `Deno.pid`: `deno run` does not fork). */
  get pid(): number {
    return this.#child.pid;
  }

  async #read(): Promise<void> {
    let partial = "";
    try {
      for await (const chunk of this.#child.stdout.pipeThrough(new TextDecoderStream())) {
        this.#stdout += chunk;
        partial += chunk;
        let nl: number;
        while ((nl = partial.indexOf("\n")) >= 0) {
          this.#lines.push(partial.slice(0, nl));
          partial = partial.slice(nl + 1);
        }
        this.#notify();
      }
    } finally {
      this.#ended = true;
      this.#notify();
    }
  }

  #notify(): void {
    for (const w of this.#wake.splice(0)) w();
  }

  /**
   * Line `i` (from 0) of stdout, once printed. Rejects when stdout ends first, with what the
   * process wrote to stderr.
   */
  async line(i: number): Promise<string> {
    while (this.#lines.length <= i) {
      if (this.#ended) {
        await this.#child.status;
        throw new Error(
          `stdout ended after ${this.#lines.length} lines, wanted line ${i}; stderr: ${await this
            .#stderr}`,
        );
      }
      await new Promise<void>((r) => this.#wake.push(r));
    }
    return this.#lines[i];
  }

  /** Line `i` of stdout parsed as a JSON object. */
  async json(i: number): Promise<Record<string, unknown>> {
    return JSON.parse(await this.line(i));
  }

  /** Sends `signal` to the process. */
  kill(signal: Deno.Signal): void {
    this.#child.kill(signal);
  }

  /** Waits for the process to end; returns how it ended and all it printed. */
  async finish(): Promise<CliResult> {
    const status = await this.#child.status;
    await this.#reading;
    return {
      code: status.code,
      signal: status.signal,
      stdout: this.#stdout,
      stderr: await this.#stderr,
    };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.#status) {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // it ended meanwhile
      }
    }
    await this.finish();
  }
}

/** A temporary folder for config files, removed on dispose. */
export class TempDir implements AsyncDisposable {
  private constructor(readonly path: string) {}

  /** Makes a fresh folder with `Deno.makeTempDir`. */
  static async create(): Promise<TempDir> {
    return new TempDir(await Deno.makeTempDir({ prefix: "ic_cli_test_" }));
  }

  /** Writes `content` (objects as JSON) to `name` in the folder; returns the full path. */
  async write(name: string, content: string | object): Promise<string> {
    const path = `${this.path}/${name}`;
    const dir = path.slice(0, path.lastIndexOf("/"));
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeTextFile(
      path,
      typeof content === "string" ? content : JSON.stringify(content, null, 2),
    );
    return path;
  }

  /** Copies TLS fixture files (e.g. `node-1.pem`) into `sub/` of the folder. */
  async copyFixtures(sub: string, names: string[]): Promise<void> {
    await Deno.mkdir(`${this.path}/${sub}`, { recursive: true });
    for (const n of names) {
      await Deno.writeTextFile(
        `${this.path}/${sub}/${n}`,
        await Deno.readTextFile(new URL(n, FIXTURES)),
      );
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Deno.remove(this.path, { recursive: true });
  }
}

/** One node of a config file's table, on loopback. */
export function entry(nodeId: number, port: number): Record<string, unknown> {
  return { nodeId, host: `node-${nodeId}`, port, address: "127.0.0.1" };
}

/** A valid two-node config for node 1 (node 2 at a reserved free port); `extra` overrides. */
export function baseConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
  const [p1, p2] = freePorts(2);
  return { nodeId: 1, nodes: [entry(1, p1), entry(2, p2)], ...extra };
}

/** The `tls` key for node `name` with fixtures copied by {@link TempDir.copyFixtures}. */
export function tlsKey(sub: string, name: string, authOnly?: boolean): Record<string, unknown> {
  return {
    cert: `${sub}/${name}.pem`,
    key: `${sub}/${name}.key`,
    ca: `${sub}/ca.pem`,
    ...(authOnly === undefined ? {} : { authOnly }),
  };
}
