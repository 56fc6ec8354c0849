/**
 * Network namespaces for tests (Linux, root): a "switch" namespace holding a bridge, and one
 * namespace per node joined to it by a veth pair, with addresses in a private /24. Nothing is
 * connected to the host's interfaces and no namespace has a default route, so traffic cannot
 * leave them. Also: child processes run inside a namespace, speaking JSON lines.
 * @module
 */

/** Prefix of every namespace these helpers create: `ic5-<pid>-<tag>-<sw|nN>`. */
export const NETNS_PREFIX = "ic5-";
const NAME_RE = /^ic5-(\d+)-[0-9a-f]+-(sw|n\d+)$/;

/** Runs `ip` with `args`; resolves with its exit status and stderr. */
export async function ip(args: string[]): Promise<{ ok: boolean; stdout: string; stderr: string }> {
  const r = await new Deno.Command("ip", { args, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  return { ok: r.success, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr).trim() };
}

async function ipOrThrow(args: string[]): Promise<string> {
  const r = await ip(args);
  if (!r.ok) throw new Error(`ip ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

/** Names of the existing network namespaces. */
export async function listNetns(): Promise<string[]> {
  const r = await ip(["netns", "list"]);
  if (!r.ok) return [];
  return r.stdout.split("\n").map((l) => l.trim().split(" ")[0]).filter(Boolean);
}

/** A run's namespaces younger than this are never taken for stale (they may be being set up). */
const STALE_AFTER_MS = 60_000;

/**
 * Deletes namespaces of ours left by a run that crashed: a set (one run's `ic5-<pid>-<tag>-*`)
 * is stale when it is older than a minute and no process runs in any of its namespaces (a live
 * run always has its node processes in them; those of a crashed run exit when their stdin
 * closes). Sets of a concurrent run are left alone. Returns the names deleted.
 *
 * (Whether the creating process is alive cannot be asked: reading `/proc/<pid>` needs
 * `--allow-all` in Deno 2, and `Deno.kill(pid, 0)` the full run permission.)
 */
export async function removeStaleNetns(): Promise<string[]> {
  const sets = new Map<string, string[]>();
  for (const name of await listNetns()) {
    if (!NAME_RE.test(name)) continue;
    const tag = name.slice(0, name.lastIndexOf("-"));
    sets.set(tag, [...(sets.get(tag) ?? []), name]);
  }
  const removed: string[] = [];
  for (const names of sets.values()) {
    if (!(await stale(names))) continue;
    for (const name of names) {
      if ((await ip(["netns", "del", name])).ok) removed.push(name);
    }
  }
  return removed;
}

async function stale(names: string[]): Promise<boolean> {
  for (const name of names) {
    let created: number;
    try {
      created = Deno.statSync(`/run/netns/${name}`).mtime?.getTime() ?? 0;
    } catch {
      created = 0;
    }
    if (Date.now() - created < STALE_AFTER_MS) return false;
    const pids = await ip(["netns", "pids", name]);
    if (!pids.ok || pids.stdout.trim() !== "") return false;
  }
  return true;
}

/**
 * Why namespace tests cannot run here, or null when they can: not Linux, not root, no
 * permission to run `ip`, or `ip netns add` fails.
 */
export async function netnsSkipReason(): Promise<string | null> {
  if (Deno.build.os !== "linux") return `needs Linux, this is ${Deno.build.os}`;
  try {
    const uid = Deno.uid();
    if (uid !== 0) return `needs root, running as uid ${uid}`;
  } catch (e) {
    return `cannot read the uid (${e instanceof Error ? e.message : e}); needs --allow-sys`;
  }
  const run = await Deno.permissions.query({ name: "run", command: "ip" });
  if (run.state !== "granted") return "needs --allow-run=ip";
  const probe = `${NETNS_PREFIX}${Deno.pid}-${randomTag()}-sw`;
  try {
    const r = await ip(["netns", "add", probe]);
    if (!r.ok) return `"ip netns add" fails: ${r.stderr || "no message"}`;
  } catch (e) {
    return `cannot run ip: ${e instanceof Error ? e.message : e}`;
  }
  await ip(["netns", "del", probe]);
  return null;
}

function randomTag(): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(3)),
    (b) => b.toString(16).padStart(2, "0"),
  )
    .join("");
}

/**
 * A switch namespace with bridge `br0` and `n` node namespaces; node `i` (1-based) has `eth0`
 * with `<subnet>.<i>/24`, plugged into the bridge through port `p<i>` of the switch.
 */
export class StarNetwork {
  readonly tag = `${NETNS_PREFIX}${Deno.pid}-${randomTag()}`;
  readonly switchNs = `${this.tag}-sw`;
  readonly #created: string[] = [];

  constructor(readonly n: number, readonly subnet: string) {}

  /** The namespace of node `i`. */
  nodeNs(i: number): string {
    return `${this.tag}-n${i}`;
  }

  /** The address of node `i`. */
  address(i: number): string {
    return `${this.subnet}.${i}`;
  }

  /** Every namespace name this network uses. */
  get names(): string[] {
    return [this.switchNs, ...Array.from({ length: this.n }, (_, k) => this.nodeNs(k + 1))];
  }

  async create(): Promise<void> {
    for (const name of this.names) {
      await ipOrThrow(["netns", "add", name]);
      this.#created.push(name);
      await ipOrThrow(["-n", name, "link", "set", "lo", "up"]);
    }
    const sw = this.switchNs;
    await ipOrThrow(["-n", sw, "link", "add", "br0", "type", "bridge"]);
    await ipOrThrow(["-n", sw, "link", "set", "br0", "up"]);
    for (let i = 1; i <= this.n; i++) {
      const ns = this.nodeNs(i);
      await ipOrThrow([
        "-n",
        sw,
        "link",
        "add",
        `p${i}`,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        ns,
      ]);
      await ipOrThrow(["-n", sw, "link", "set", `p${i}`, "master", "br0"]);
      await ipOrThrow(["-n", sw, "link", "set", `p${i}`, "up"]);
      await ipOrThrow(["-n", ns, "addr", "add", `${this.address(i)}/24`, "dev", "eth0"]);
      await ipOrThrow(["-n", ns, "link", "set", "eth0", "up"]);
    }
  }

  /** Takes node `i`'s link down (its switch port) or brings it up again. */
  async link(i: number, up: boolean): Promise<void> {
    await ipOrThrow(["-n", this.switchNs, "link", "set", `p${i}`, up ? "up" : "down"]);
  }

  /** Deletes every namespace created (the veths and the bridge go with them). */
  async destroy(): Promise<string[]> {
    const failed: string[] = [];
    for (const name of this.#created.splice(0).reverse()) {
      const r = await ip(["netns", "del", name]);
      if (!r.ok) failed.push(`${name}: ${r.stderr}`);
    }
    return failed;
  }
}

/** A JSON-lines child process run inside a namespace with `ip netns exec`. */
export class NsProcess {
  /** Every JSON line the child printed, in order. */
  readonly events: Record<string, unknown>[] = [];
  readonly #child: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #pumps: Promise<void>;
  readonly #listeners = new Set<() => void>();
  #stderr = "";
  #exited = false;
  #nextId = 1;
  readonly status: Promise<Deno.CommandStatus>;

  constructor(readonly label: string, ns: string, argv: string[], cwd: string) {
    this.#child = new Deno.Command("ip", {
      args: ["netns", "exec", ns, ...argv],
      cwd,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#stdin = this.#child.stdin.getWriter();
    this.status = this.#child.status.then((s) => {
      this.#exited = true;
      this.#notify();
      return s;
    });
    this.#pumps = Promise.all([this.#readStdout(), this.#readStderr()]).then(() => {});
  }

  get pid(): number {
    return this.#child.pid;
  }

  get exited(): boolean {
    return this.#exited;
  }

  /** The last lines of the child's stderr, for failure messages. */
  get stderrTail(): string {
    return this.#stderr.slice(-4000);
  }

  #notify(): void {
    for (const l of [...this.#listeners]) l();
  }

  async #readStdout(): Promise<void> {
    let pending = "";
    for await (const text of this.#child.stdout.pipeThrough(new TextDecoderStream())) {
      pending += text;
      let nl: number;
      while ((nl = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (!line.trim()) continue;
        try {
          this.events.push(JSON.parse(line));
        } catch {
          this.events.push({ event: "garbage", line });
        }
      }
      this.#notify();
    }
  }

  async #readStderr(): Promise<void> {
    for await (const text of this.#child.stderr.pipeThrough(new TextDecoderStream())) {
      this.#stderr = (this.#stderr + text).slice(-16000);
    }
  }

  /** Sends one command line; ignored once the child has gone. */
  async send(cmd: Record<string, unknown>): Promise<void> {
    if (this.#exited) return;
    try {
      await this.#stdin.write(new TextEncoder().encode(JSON.stringify(cmd) + "\n"));
    } catch {
      // the child is gone; its status says how
    }
  }

  /** Resolves with the first event from index `from` on that satisfies `pred`. */
  waitEvent(
    pred: (e: Record<string, unknown>) => boolean,
    timeoutMs: number,
    from = 0,
  ): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      let i = from;
      const check = () => {
        for (; i < this.events.length; i++) {
          if (pred(this.events[i])) {
            done();
            resolve(this.events[i]);
            return;
          }
        }
        if (this.#exited) {
          done();
          reject(new Error(`${this.label} exited; stderr:\n${this.stderrTail}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.label}: no such event within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.#listeners.delete(check);
      };
      this.#listeners.add(check);
      check();
    });
  }

  /** Sends `cmd` with a fresh id and resolves with the child's answer (the event with it). */
  async request(
    cmd: Record<string, unknown>,
    timeoutMs = 10_000,
  ): Promise<Record<string, unknown>> {
    const id = this.#nextId++;
    const from = this.events.length;
    const answer = this.waitEvent((e) => e.id === id, timeoutMs, from);
    await this.send({ ...cmd, id });
    return await answer;
  }

  /** Kills the child at once (SIGKILL). */
  kill(): void {
    if (this.#exited) return;
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }

  /**
   * Ends the child: sends `quit` and closes its stdin, then kills it if it has not exited after
   * `graceMs`. Always waits for the exit and the end of its output.
   */
  async stop(graceMs = 3000): Promise<Deno.CommandStatus> {
    await this.send({ cmd: "quit" });
    try {
      await this.#stdin.close();
    } catch {
      // already closed
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<void>((r) => timer = setTimeout(r, graceMs));
    await Promise.race([this.status, late]);
    clearTimeout(timer);
    this.kill();
    const status = await this.status;
    await this.#pumps;
    return status;
  }
}
