/**
 * `npm run fuzz`: the protocol fuzz suite's long run against a real engine (ProtocolFuzz.ts).
 *
 * Environment: FUZZ_RUNS (default 20,000 requests, shared out over the families by weight);
 * FUZZ_SEED (default: the time; printed, so a run can be repeated); FUZZ_FAMILIES (comma-separated,
 * default all); FUZZ_TIMEOUT_MS (how long a request waits for its reply, default 3,000);
 * FUZZ_MODE: `collect` (default) runs every request and reports each broken invariant with the
 * smallest request that broke it; `assert` stops each family at its first failure and shrinks it
 * with fast-check to a minimal request (reported with the seed and path to replay it).
 * Prints a summary table; exits 1 when any invariant was broken.
 */
import fc from "fast-check"
import { FuzzRequest, families, familyProperty, knownCases, openFuzzWorld } from "./ProtocolFuzz.ts"

/** Shares of the run: the envelope and body families are the widest, the others target known edges. */
const weights: Readonly<Record<string, number>> = {
  envelope: 0.25,
  body: 0.35,
  "unknown-keys": 0.08,
  text: 0.08,
  duration: 0.08,
  size: 0.06,
  bytes: 0.1,
}

const runs = Number(process.env.FUZZ_RUNS ?? 20_000)
const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31)
const mode = process.env.FUZZ_MODE === "assert" ? "assert" : "collect"
const timeoutMs = Number(process.env.FUZZ_TIMEOUT_MS ?? 3_000)
const chosen = (process.env.FUZZ_FAMILIES ?? Object.keys(families).join(","))
  .split(",")
  .map((family) => family.trim())
  .filter((family) => family in families)

const started = performance.now()
const { world, session } = await openFuzzWorld("fuzz_long", timeoutMs)
const reports: Array<string> = []
try {
  const served = await session.servedOperations()
  console.log(`fuzz: seed ${seed}, ${runs} requests, mode ${mode}, operations: ${served.join(", ")}`)
  for (const family of chosen) {
    const numRuns = Math.max(1, Math.round(runs * (weights[family] ?? 0.1)))
    const familyStarted = performance.now()
    if (mode === "collect") {
      const arbitrary = families[family] ?? fc.constant(new FuzzRequest(family, "none", {}))
      const result = await fc.check(
        fc.asyncProperty(arbitrary, async (request) => {
          await session.check(request)
        }),
        { seed, numRuns, examples: (knownCases[family] ?? []).map((request) => [request]) },
      )
      // Invariant failures are tallied, not thrown: a throw here is the suite itself failing.
      if (result.failed)
        reports.push(`## ${family}: the run itself failed\n${fc.defaultReportMessage(result) ?? ""}`)
    } else {
      const result = await fc.check(familyProperty(session, family), {
        seed,
        numRuns,
        examples: (knownCases[family] ?? []).map((request) => [request]),
      })
      if (result.failed) reports.push(`## ${family}\n${fc.defaultReportMessage(result) ?? ""}`)
    }
    console.log(
      `fuzz: ${family}: ${numRuns} requests in ${((performance.now() - familyStarted) / 1000).toFixed(1)} s`,
    )
  }
  const answering = await session.answering()
  const { tally } = session
  const seconds = (performance.now() - started) / 1000
  const failures = [...tally.failures.values()].reduce((sum, failure) => sum + failure.count, 0)
  const rows: Array<[string, string]> = [
    ["seed", String(seed)],
    ["requests sent (fuzzed)", tally.requests.toLocaleString("en")],
    ["messages sent (with follow-ups and probes)", tally.messages.toLocaleString("en")],
    ...[...tally.families].map(([family, count]): [string, string] => [
      `  family ${family}`,
      count.toLocaleString("en"),
    ]),
    ...[...tally.codes]
      .sort((a, b) => b[1] - a[1])
      .map(([code, count]): [string, string] => [`  replies ${code}`, count.toLocaleString("en")]),
    ["max reply bytes", tally.maxReplyBytes.toLocaleString("en")],
    ["server max_payload", session.maxPayload.toLocaleString("en")],
    ["invariant failures", failures.toLocaleString("en")],
    ...[...tally.failures].map(([kind, failure]): [string, string] => [
      `  ${kind}`,
      failure.count.toLocaleString("en"),
    ]),
    ["engine restarts (stopped answering)", String(tally.engineRestarts)],
    ["engine answering at the end", answering ? "yes" : "NO"],
    ["duration", `${seconds.toFixed(0)} s (${(tally.requests / seconds).toFixed(0)} requests/s)`],
  ]
  console.log("\n| figure | value |\n| --- | --- |")
  for (const [figure, value] of rows) console.log(`| ${figure} | ${value} |`)
  if (tally.failures.size > 0) {
    console.log("\nSmallest request that broke each invariant:")
    for (const [kind, failure] of tally.failures)
      console.log(`\n* ${kind} (${failure.count}x)\n      ${failure.example}`)
  }
  for (const report of reports) console.log(`\n${report}`)
  console.log(`\nrepeat with: FUZZ_SEED=${seed} FUZZ_RUNS=${runs} FUZZ_MODE=${mode} npm run fuzz`)
  process.exitCode = failures > 0 || reports.length > 0 || !answering ? 1 : 0
} finally {
  await session.close()
  await world.dispose()
}
