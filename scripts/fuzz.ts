/**
 * `deno task fuzz [--cases N] [--seed S]`: drives every wire decoder, `ActorId.parse` and the
 * incoming handshake with random and mutated inputs (see `fuzz_lib.ts`). Prints the cases run,
 * the failures found, the seed and the time; exits 1 on any failure (each printed with what
 * reproduces it: the case number under the seed, and the input), 2 on bad arguments.
 * Defaults: one million cases, a seed from the clock.
 * @module
 */
import { runFuzz } from "./fuzz_lib.ts";

function usage(message: string): never {
  console.error(`${message}\nusage: deno task fuzz [--cases N] [--seed S]`);
  Deno.exit(2);
}

function parseArgs(args: string[]): { cases: number; seed: number } {
  let cases = 1_000_000;
  let seed = (Date.now() ^ (performance.now() * 1000)) >>> 0;
  for (let i = 0; i < args.length; i++) {
    const [flag, inline] = args[i].split("=", 2);
    const value = inline ?? args[++i];
    const n = Number(value);
    if (value === undefined || value === "" || !Number.isInteger(n) || n < 0) {
      usage(`${flag} needs a non-negative integer, got ${JSON.stringify(value)}`);
    }
    if (flag === "--cases") cases = n;
    else if (flag === "--seed") {
      if (n > 0xffffffff) usage(`--seed must fit in 32 bits, got ${value}`);
      seed = n;
    } else usage(`unknown argument ${JSON.stringify(args[i])}`);
  }
  return { cases, seed };
}

if (import.meta.main) {
  const { cases, seed } = parseArgs(Deno.args);
  console.log(`fuzz: ${cases} cases, seed ${seed}`);
  const report = await runFuzz({
    cases,
    seed,
    maxFailures: 50,
    onProgress: (done) =>
      console.log(`  ${done} cases (${(performance.now() / 1000).toFixed(0)} s since start)`),
  });
  console.log(
    `fuzz: ${report.cases} cases run (${report.decoderCases} decoder inputs = ` +
      `${report.decoderCalls} decoder calls, ${report.textCases} actor-id texts, ` +
      `${report.incomingCases} incoming handshakes), ${report.failures.length} failures, ` +
      `seed ${report.seed}, ${(report.elapsedMs / 1000).toFixed(1)} s`,
  );
  console.log("incoming outcomes:");
  for (const [what, n] of Object.entries(report.outcomes)) console.log(`  ${n}\t${what}`);
  for (const f of report.failures) {
    console.log(`FAIL ${f.target} case ${f.case} (seed ${report.seed}): ${f.error}`);
    if (f.input) {
      console.log(`  input: ${f.input.length > 4000 ? `${f.input.slice(0, 4000)}…` : f.input}`);
    }
  }
  if (report.failures.length > 0) {
    console.log(
      `reproduce: deno task fuzz --seed ${report.seed} --cases ${report.failures[0].case + 1}`,
    );
    Deno.exit(1);
  }
}
