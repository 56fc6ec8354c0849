/**
 * The short run of the fuzzer (`scripts/fuzz_lib.ts`, the full run is `deno task fuzz`): about
 * ten thousand cases over every wire decoder, `ActorId.parse` and the incoming handshake, from a
 * fixed seed (or `IC_TEST_SEED`). Any failure is printed with its case number and input.
 */
import assert from "node:assert/strict";
import { runFuzz } from "../scripts/fuzz_lib.ts";
import { testSeed } from "./_helpers/random.ts";

const CASES = 10_000;

Deno.test(`fuzz, short run: ${CASES} cases over the decoders and the incoming handshake, no failure`, async () => {
  const seed = testSeed(0xf022);
  const report = await runFuzz({ cases: CASES, seed });
  console.log(
    `fuzz seed ${report.seed} (rerun with IC_TEST_SEED=${report.seed}): ${report.cases} cases ` +
      `(${report.decoderCases} decoder inputs, ${report.textCases} texts, ` +
      `${report.incomingCases} incoming handshakes) in ${report.elapsedMs.toFixed(0)} ms`,
  );
  for (const f of report.failures) {
    console.log(`FAIL ${f.target} case ${f.case}: ${f.error}\n  ${f.input}`);
  }
  assert.equal(report.cases, CASES);
  assert.deepEqual(report.failures, []);
  // The incoming cases reached past the framing: successes, and refusals by the later checks.
  assert.ok((report.outcomes["done"] ?? 0) > 0, JSON.stringify(report.outcomes));
  assert.ok(Object.keys(report.outcomes).length >= 10, JSON.stringify(report.outcomes));
});
