/**
 * Summarises V8 CPU profiles (`.cpuprofile`, as written by `deno run --cpu-prof`, one per
 * isolate: the main one and each worker's) by self time: per category and per function.
 *
 * ```sh
 * deno task bench:handshake --cases plain --concurrency 16 --seconds 3 --profile /tmp/prof
 * deno run --allow-read bench/profile_summary.ts /tmp/prof/plain-listener [top]
 * ```
 * @module
 */

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** The category of a function, from where it lives. */
export function category(frame: CallFrame): string {
  const { url, functionName } = frame;
  if (functionName === "(idle)" || functionName === "op_worker_maybe_wait_for_debugger") {
    return "idle";
  }
  if (functionName === "(garbage collector)") return "GC";
  if (functionName === "(program)") return "V8/native (program)";
  if (url.includes("@bufbuild/protobuf") || url.includes("/proto/gen/")) return "protobuf";
  if (url.includes("@logtape")) return "logging (LogTape)";
  if (url.includes("/lib/wire/crc32c")) return "CRC32C";
  if (url.includes("/lib/wire/")) return "wire codecs";
  if (url.includes("/lib/worker/")) return "worker messages (lib/worker)";
  if (url.includes("/lib/handshake/")) return "handshake logic";
  if (url.includes("/lib/tls/")) return "TLS glue (lib/tls)";
  if (url.includes("/lib/io/")) return "buffered reader";
  if (url.includes("/lib/node/") || url.includes("/lib/proxy/")) return "coordinator (node, proxy)";
  if (url.includes("/bench/")) return "bench driver";
  if (url.includes("ext:deno_node") || url.startsWith("node:")) {
    return "node compat (node:tls, streams)";
  }
  if (url.includes("ext:deno_web/06_streams") || url.includes("streams")) return "Web streams";
  if (url.includes("ext:deno_web") && url.includes("message_port")) return "postMessage";
  if (url.includes("ext:runtime") && url.includes("worker")) return "postMessage";
  if (url.includes("ext:deno_net")) return "Deno net";
  if (url.includes("ext:core") || url.includes("ext:deno_")) return "Deno runtime (other)";
  if (url === "") return `native: ${functionName || "(anonymous)"}`;
  return "other JS";
}

/** Self time per category and per function of one or more profiles, ms. */
export function summarise(profiles: Profile[]) {
  const byCategory = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let total = 0;
  for (const p of profiles) {
    const nodes = new Map(p.nodes.map((n) => [n.id, n]));
    for (let i = 0; i < p.samples.length; i++) {
      const node = nodes.get(p.samples[i]);
      if (!node) continue;
      const ms = (p.timeDeltas[i] ?? 0) / 1000;
      const cat = category(node.callFrame);
      byCategory.set(cat, (byCategory.get(cat) ?? 0) + ms);
      const where = node.callFrame.url.replace(/^.*\/(lib|bench|workers|node_modules)\//, "$1/");
      const key = `${node.callFrame.functionName || "(anonymous)"} ${where}:${
        node.callFrame.lineNumber + 1
      }`;
      byFunction.set(key, (byFunction.get(key) ?? 0) + ms);
      if (cat !== "idle") total += ms;
    }
  }
  return { byCategory, byFunction, total };
}

/** Total (self + callees) time per function of `lib/` and `bench/`, ms, over `profiles`. */
export function inclusive(profiles: Profile[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const p of profiles) {
    const nodes = new Map(p.nodes.map((n) => [n.id, n]));
    const parent = new Map<number, number>();
    for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    for (let i = 0; i < p.samples.length; i++) {
      const ms = (p.timeDeltas[i] ?? 0) / 1000;
      const seen = new Set<string>();
      for (let id: number | undefined = p.samples[i]; id !== undefined; id = parent.get(id)) {
        const f = nodes.get(id)!.callFrame;
        if (category(f) === "idle") break;
        if (!/\/(lib|bench)\//.test(f.url)) continue;
        const key = `${f.functionName || "(anonymous)"} ${
          f.url.replace(/^.*\/(lib|bench)\//, "$1/")
        }:${f.lineNumber + 1}`;
        if (seen.has(key)) continue;
        seen.add(key);
        out.set(key, (out.get(key) ?? 0) + ms);
      }
    }
  }
  return out;
}

if (import.meta.main) {
  const dir = Deno.args[0];
  const top = Number(Deno.args[1] ?? 25);
  const groups = new Map<string, Profile[]>();
  for (const e of Deno.readDirSync(dir)) {
    if (!e.name.endsWith(".cpuprofile")) continue;
    const group = e.name.includes(".worker-") ? "workers" : "main";
    const list = groups.get(group) ?? [];
    list.push(JSON.parse(Deno.readTextFileSync(`${dir}/${e.name}`)));
    groups.set(group, list);
  }
  for (const [group, profiles] of groups) {
    const { byCategory, byFunction, total } = summarise(profiles);
    console.log(`\n== ${dir} ${group} (${profiles.length} profiles), busy ${total.toFixed(0)} ms`);
    for (const [k, v] of [...byCategory].sort((a, b) => b[1] - a[1])) {
      if (k === "idle") continue;
      console.log(
        `  ${(100 * v / total).toFixed(1).padStart(5)}%  ${v.toFixed(0).padStart(6)} ms  ${k}`,
      );
    }
    console.log("  -- top functions (self) --");
    const fns = [...byFunction].filter(([k]) => !k.startsWith("(idle)")).sort((a, b) =>
      b[1] - a[1]
    );
    for (const [k, v] of fns.slice(0, top)) {
      console.log(
        `  ${(100 * v / total).toFixed(1).padStart(5)}%  ${v.toFixed(0).padStart(6)} ms  ${k}`,
      );
    }
    console.log("  -- top functions of lib/ and bench/ (self + callees) --");
    const inc = [...inclusive(profiles)].sort((a, b) => b[1] - a[1]);
    for (const [k, v] of inc.slice(0, top)) {
      console.log(
        `  ${(100 * v / total).toFixed(1).padStart(5)}%  ${v.toFixed(0).padStart(6)} ms  ${k}`,
      );
    }
  }
}
