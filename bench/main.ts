/**
 * `npm run bench`: the month-start burst and the threshold events.
 *
 * Month-start burst: BENCH_N (default 100,000) scheduled subscriptions fall
 * due at one tick and a fake hub in its own process answers every command;
 * then the same burst again with two engine processes sharing the partitions,
 * for the speed-up of a second instance on this machine.
 * The engine's rate is compared, in the same run, with the raw ceiling of
 * this machine for the same work without the engine (bench/ceiling.ts), and
 * with the same dispatcher doing everything the contract asks per payment
 * (the contract ceiling: events, notification, outbox, subscription update).
 *
 * Threshold events: BENCH_THRESHOLD_N (default 100,000) threshold
 * subscriptions over 10 providers and as many balance events, half below the
 * threshold; the first half of the events at BENCH_THRESHOLD_RATE (default
 * 2,000/s), the second flat out, beside the raw JetStream publish+consume
 * rate of the same events (bench/threshold.ts, bench/jetstream-raw.ts).
 *
 * Environment: BENCH_N; BENCH_THRESHOLD_N; BENCH_THRESHOLD_RATE (events/s of
 * the steady half); BENCH_ONLY=engine|engine2|ceiling|contract|threshold to run one phase;
 * BENCH_KEEP=1 to keep the databases; NATS_URL; BENCH_POSTGRES_URL (server
 * only, default postgres://postgres@127.0.0.1:5432); BENCH_NODE_ARGS, node
 * flags for the child processes (profiling); BENCH_CEILING_WRITERS, batch
 * transactions the ceiling runs side by side (default 3); BENCH_STALL_SECONDS,
 * how long the engine may make no progress before the run fails (default 120).
 * Child output goes to .bench-out/<run>/. The last line printed is one JSON
 * object (the threshold figures under `threshold`), also written to
 * bench/results/latest.json, which keeps the other benchmark's latest figures
 * when a run leaves it out.
 */
import { execFileSync } from "node:child_process"
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { availableParallelism, totalmem } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { jetstreamManager } from "@nats-io/jetstream"
import { connect } from "@nats-io/transport-node"
import { type CeilingReport, runCeiling } from "./ceiling.ts"
import { count, deleteStreamsOf, namingFor, natsUrl, progress, rounded } from "./common.ts"
import { describeBudget } from "./cpu-budget.ts"
import { type EngineReport, engineEntry, runEngine } from "./engine-run.ts"
import { type RawReport, runRawJetStream } from "./jetstream-raw.ts"
import { killStartedProcesses } from "./processes.ts"
import { dropBenchDatabase, type SeedReport, seedBenchDatabase, seedThresholdDatabase } from "./seed.ts"
import { runThreshold, type ThresholdReport } from "./threshold.ts"
import { thresholdEvents, thresholdProviders } from "./threshold-events.ts"

const targetShareOfCeiling = 0.5
const targetPaymentsPerSec = 4_000
const targetPeakRssMb = 512
const targetThresholdP99Ms = 250
const targetThresholdShareOfRaw = 0.5
// Balance events awaiting their JetStream ack at once, in the threshold and raw phases alike.
const thresholdEventsInFlight = 4_000

const parseCount = (name: string, fallback: number): number => {
  const text = process.env[name]
  if (text === undefined || text === "") return fallback
  const value = Number(text.replaceAll("_", ""))
  if (!Number.isSafeInteger(value) || value < 1)
    throw new Error(`${name} must be a positive integer, got ${text}`)
  return value
}

const n = parseCount("BENCH_N", 100_000)
const thresholdN = parseCount("BENCH_THRESHOLD_N", 100_000)
const thresholdRate = parseCount("BENCH_THRESHOLD_RATE", 2_000)
const phases = ["engine", "engine2", "ceiling", "contract", "threshold"] as const
const only = process.env.BENCH_ONLY ?? ""
if (only !== "" && !phases.some((phase) => phase === only)) {
  throw new Error(`BENCH_ONLY must be one of ${phases.join(", ")}, got ${only}`)
}
/** True when this run includes `phase`: every phase runs unless BENCH_ONLY names one. */
const runs = (phase: (typeof phases)[number]) => only === "" || only === phase
const keepDatabases = process.env.BENCH_KEEP === "1"
const projectRoot = join(dirname(fileURLToPath(import.meta.url)), "..")
const runTag = `b${Date.now()}`
const logDirectory = join(projectRoot, ".bench-out", runTag)
mkdirSync(logDirectory, { recursive: true })

const engineDatabase = `rp_bench_${runTag.slice(1)}`
const ceilingDatabase = `${engineDatabase}_ceiling`
const twoInstancesDatabase = `${engineDatabase}_two`
const twoInstancesNaming = namingFor(`${runTag}e`)
const engineNaming = namingFor(runTag)
const ceilingNaming = namingFor(`${runTag}c`)
const contractDatabase = `${engineDatabase}_contract`
const contractNaming = namingFor(`${runTag}k`)
const thresholdDatabase = `${engineDatabase}_threshold`
const thresholdNaming = namingFor(`${runTag}t`)
const rawNaming = namingFor(`${runTag}r`)
const createdDatabases: Array<string> = []

const cleanUp = async () => {
  if (keepDatabases) {
    if (createdDatabases.length > 0) progress("bench", `kept databases ${createdDatabases.join(", ")}`)
    return
  }
  for (const database of createdDatabases) await dropBenchDatabase(database).catch(() => undefined)
}

process.on("SIGINT", () => {
  killStartedProcesses()
  void (async () => {
    const connection = await connect({ servers: natsUrl })
    const jsm = await jetstreamManager(connection)
    await deleteStreamsOf(jsm, engineNaming)
    await deleteStreamsOf(jsm, ceilingNaming)
    await deleteStreamsOf(jsm, contractNaming)
    await deleteStreamsOf(jsm, twoInstancesNaming)
    await deleteStreamsOf(jsm, thresholdNaming)
    await deleteStreamsOf(jsm, rawNaming)
    await connection.close()
    await cleanUp()
  })().finally(() => process.exit(130))
})

const seed = async (database: string): Promise<SeedReport> => {
  createdDatabases.push(database)
  const report = await seedBenchDatabase(database, n)
  progress(
    "seed",
    `${count(n)} subscriptions in ${database} in ${report.seconds.toFixed(1)}s (${count(n / report.seconds)} rows/s), next due ${report.nextDueAt}, burst at 2027-01-01T06:00:00Z`,
  )
  return report
}

const errorText = (error: unknown) => (error instanceof Error ? error.message : String(error))

progress(
  "bench",
  `n=${count(n)}  threshold n=${count(thresholdN)}  run ${runTag}  cpus ${availableParallelism()}  node ${process.version}`,
)
progress("bench", `child logs in ${logDirectory}`)
if (process.env.BENCH_ENGINE_ENTRY === undefined) {
  // The engine runs from the bundle `npm start` runs, built from the sources as they are now.
  execFileSync("npm", ["run", "-s", "build"], { cwd: projectRoot, stdio: "inherit" })
  progress("bench", `engine built: ${engineEntry}`)
}

let seedSeconds: number | undefined
let engine: EngineReport | undefined
let engineError: string | undefined
let twoInstances: EngineReport | undefined
let twoInstancesError: string | undefined
let ceiling: CeilingReport | undefined
let ceilingError: string | undefined
let contractCeiling: CeilingReport | undefined
let contractError: string | undefined
let raw: RawReport | undefined
let threshold: ThresholdReport | undefined
let thresholdError: string | undefined

try {
  if (runs("engine")) {
    try {
      seedSeconds = (await seed(engineDatabase)).seconds
      engine = await runEngine({
        database: engineDatabase,
        expected: n,
        naming: engineNaming,
        cwd: projectRoot,
        logDirectory,
      })
      progress(
        "engine",
        `${count(engine.paymentsPerSec)} payments/s (${engine.seconds.toFixed(2)}s to the last result), drained in ${engine.drainSeconds.toFixed(2)}s, peak RSS ${engine.peakRssMb?.toFixed(0) ?? "?"} MB, ${engine.cpuUsPerPayment?.toFixed(0) ?? "?"} µs engine CPU per payment, ${count(engine.paymentRows)} payment rows, hub saw ${engine.hubCommands ?? "?"} commands`,
      )
      progress("engine", `CPU per payment: ${describeBudget(engine.cpuBudget)}`)
    } catch (error) {
      engineError = errorText(error)
      progress("engine", `FAILED: ${engineError}`)
    }
  }
  if (runs("engine2")) {
    try {
      await seed(twoInstancesDatabase)
      twoInstances = await runEngine({
        database: twoInstancesDatabase,
        expected: n,
        naming: twoInstancesNaming,
        cwd: projectRoot,
        logDirectory,
        instances: 2,
      })
      progress(
        "engine x2",
        `${count(twoInstances.paymentsPerSec)} payments/s with 2 instances (${twoInstances.seconds.toFixed(2)}s to the last result), drained in ${twoInstances.drainSeconds.toFixed(2)}s, largest peak RSS ${twoInstances.peakRssMb?.toFixed(0) ?? "?"} MB, ${twoInstances.cpuUsPerPayment?.toFixed(0) ?? "?"} µs engine CPU per payment (both), ${count(twoInstances.paymentRows)} payment rows, hub saw ${twoInstances.hubCommands ?? "?"} commands`,
      )
      progress("engine x2", `CPU per payment: ${describeBudget(twoInstances.cpuBudget)}`)
    } catch (error) {
      twoInstancesError = errorText(error)
      progress("engine x2", `FAILED: ${twoInstancesError}`)
    }
  }
  if (runs("ceiling")) {
    try {
      const report = await seed(ceilingDatabase)
      seedSeconds ??= report.seconds
      ceiling = await runCeiling({
        database: ceilingDatabase,
        expected: n,
        naming: ceilingNaming,
        cwd: projectRoot,
        logDirectory,
      })
      progress(
        "ceiling",
        `${count(ceiling.perSec)} payments/s (${ceiling.seconds.toFixed(2)}s; commands all acknowledged after ${ceiling.commandsPublishedSeconds.toFixed(2)}s)`,
      )
      progress("ceiling", `CPU per payment: ${describeBudget(ceiling.cpuBudget)}`)
    } catch (error) {
      ceilingError = errorText(error)
      progress("ceiling", `FAILED: ${ceilingError}`)
    }
  }
  if (runs("contract")) {
    try {
      await seed(contractDatabase)
      contractCeiling = await runCeiling({
        database: contractDatabase,
        expected: n,
        naming: contractNaming,
        cwd: projectRoot,
        logDirectory,
        contract: true,
      })
      progress(
        "contract ceiling",
        `${count(contractCeiling.perSec)} payments/s with the contract's events, notification, outbox and subscription update (${contractCeiling.seconds.toFixed(2)}s; ${count(contractCeiling.messagesPublished)} messages acknowledged)`,
      )
      progress("contract ceiling", `CPU per payment: ${describeBudget(contractCeiling.cpuBudget)}`)
    } catch (error) {
      contractError = errorText(error)
      progress("contract ceiling", `FAILED: ${contractError}`)
    }
  }
  if (runs("threshold")) {
    try {
      // The raw rate first, on a machine with nothing else running.
      raw = await runRawJetStream({
        naming: rawNaming,
        events: thresholdEvents(runTag, rawNaming, thresholdN),
        inFlight: thresholdEventsInFlight,
      })
      progress(
        "threshold",
        `raw JetStream: ${count(raw.perSec)} msgs/s published and consumed (${raw.seconds.toFixed(2)}s; publishes acknowledged after ${raw.publishSeconds.toFixed(2)}s)`,
      )
      createdDatabases.push(thresholdDatabase)
      const seconds = await seedThresholdDatabase(thresholdDatabase, thresholdN, thresholdProviders)
      progress(
        "seed",
        `${count(thresholdN)} threshold subscriptions over ${thresholdProviders} providers in ${thresholdDatabase} in ${seconds.toFixed(1)}s`,
      )
      threshold = await runThreshold({
        database: thresholdDatabase,
        events: thresholdEvents(runTag, thresholdNaming, thresholdN),
        naming: thresholdNaming,
        steadyRate: thresholdRate,
        inFlight: thresholdEventsInFlight,
        cwd: projectRoot,
        logDirectory,
      })
    } catch (error) {
      thresholdError = errorText(error)
      progress("threshold", `FAILED: ${thresholdError}`)
    }
  }
} finally {
  await cleanUp()
}

const paymentsPerSec = engine === undefined ? null : Math.round(engine.paymentsPerSec)
const ceilingPerSec = ceiling === undefined ? null : Math.round(ceiling.perSec)
const shareOfCeiling =
  paymentsPerSec === null || ceilingPerSec === null ? null : rounded(paymentsPerSec / ceilingPerSec, 3)
const peakRssMb = engine?.peakRssMb == null ? null : rounded(engine.peakRssMb, 1)
const contractCeilingPerSec = contractCeiling === undefined ? null : Math.round(contractCeiling.perSec)
const shareOfContractCeiling =
  paymentsPerSec === null || contractCeilingPerSec === null
    ? null
    : rounded(paymentsPerSec / contractCeilingPerSec, 3)
const thresholdPerSec = threshold === undefined ? null : Math.round(threshold.flatOutPerSec)
const rawPerSec = raw === undefined ? null : Math.round(raw.perSec)
const thresholdShareOfRaw =
  thresholdPerSec === null || rawPerSec === null ? null : rounded(thresholdPerSec / rawPerSec, 3)
const roundedOrNull = (value: number | null | undefined, digits: number) =>
  value == null ? null : rounded(value, digits)
const thresholdSummary = !runs("threshold")
  ? null
  : {
      n: thresholdN,
      steadyRate: thresholdRate,
      p50Ms: roundedOrNull(threshold?.p50Ms, 1),
      p99Ms: roundedOrNull(threshold?.p99Ms, 1),
      flatOutPerSec: thresholdPerSec,
      rawPerSec,
      shareOfRaw: thresholdShareOfRaw,
      peakRssMb: roundedOrNull(threshold?.peakRssMb, 1),
      targetsMet: {
        p99Ms:
          threshold === undefined
            ? null
            : threshold.p99Ms !== null && threshold.p99Ms <= targetThresholdP99Ms,
        shareOfRaw: thresholdShareOfRaw === null ? null : thresholdShareOfRaw >= targetThresholdShareOfRaw,
      },
      steadyEvents: threshold?.steadyEvents ?? null,
      steadySentPerSec: roundedOrNull(threshold?.steadySentPerSec, 0),
      maxMs: roundedOrNull(threshold?.maxMs, 1),
      flatOutEvents: threshold?.flatOutEvents ?? null,
      flatOutSeconds: roundedOrNull(threshold?.flatOutSeconds, 2),
      flatOutEventsPerSec: roundedOrNull(threshold?.flatOutEventsPerSec, 0),
      commands: threshold === undefined ? null : threshold.steadyCommands + threshold.flatOutCommands,
      missingCommands: threshold?.missingCommands ?? null,
      duplicateCommands: threshold?.duplicateCommands ?? null,
      unexpectedCommands: threshold?.unexpectedCommands ?? null,
      paymentRows: threshold?.paymentRows ?? null,
      hubCommands: threshold?.hubCommands ?? null,
      engineExit: threshold?.engineExit ?? null,
      rawSeconds: roundedOrNull(raw?.seconds, 2),
      ...(thresholdError === undefined ? {} : { error: thresholdError }),
      run: runTag,
      at: new Date().toISOString(),
    }
const twoInstancesPerSec = twoInstances === undefined ? null : Math.round(twoInstances.paymentsPerSec)
const twoInstancesSummary = !runs("engine2")
  ? null
  : {
      paymentsPerSec: twoInstancesPerSec,
      // Against the one-instance run of the same size in this run (null when that phase did not run).
      speedUp:
        twoInstancesPerSec === null || paymentsPerSec === null
          ? null
          : rounded(twoInstancesPerSec / paymentsPerSec, 2),
      seconds: roundedOrNull(twoInstances?.seconds, 2),
      drainSeconds: roundedOrNull(twoInstances?.drainSeconds, 2),
      largestPeakRssMb: roundedOrNull(twoInstances?.peakRssMb, 1),
      cpuUsPerPayment:
        twoInstances?.cpuUsPerPayment == null ? null : Math.round(twoInstances.cpuUsPerPayment),
      cpuBudget: twoInstances?.cpuBudget ?? null,
      paymentRows: twoInstances?.paymentRows ?? null,
      succeeded: twoInstances?.succeeded ?? null,
      hubCommands: twoInstances?.hubCommands ?? null,
      engineExit: twoInstances?.engineExit ?? null,
      ...(twoInstancesError === undefined ? {} : { error: twoInstancesError }),
    }
const summary = {
  n,
  paymentsPerSec,
  ceilingPerSec,
  drainSeconds: engine === undefined ? null : rounded(engine.drainSeconds, 2),
  peakRssMb,
  shareOfCeiling,
  targetsMet: {
    shareOfCeiling: shareOfCeiling === null ? null : shareOfCeiling >= targetShareOfCeiling,
    paymentsPerSec: paymentsPerSec === null ? null : paymentsPerSec >= targetPaymentsPerSec,
    peakRssMb: peakRssMb === null ? null : peakRssMb <= targetPeakRssMb,
  },
  engineSeconds: engine === undefined ? null : rounded(engine.seconds, 2),
  engineCpuUsPerPayment: engine?.cpuUsPerPayment == null ? null : Math.round(engine.cpuUsPerPayment),
  engineStartupSeconds: engine === undefined ? null : rounded(engine.startupSeconds, 2),
  enginePaymentRows: engine?.paymentRows ?? null,
  engineSucceeded: engine?.succeeded ?? null,
  hubCommands: engine?.hubCommands ?? null,
  engineExit: engine?.engineExit ?? null,
  ceilingSeconds: ceiling === undefined ? null : rounded(ceiling.seconds, 2),
  // The same dispatcher doing all the contract asks per payment (events, notification, outbox,
  // subscription update): the engine-free cost of the contract's work; not a target, a yardstick.
  contractCeilingPerSec,
  shareOfContractCeiling,
  contractCeilingMessages: contractCeiling?.messagesPublished ?? null,
  // CPU µs per payment of every process in each phase: on a machine they all share, the rate is set by the sum.
  cpuUsPerPayment: {
    engine: engine?.cpuBudget ?? null,
    ceiling: ceiling?.cpuBudget ?? null,
    contractCeiling: contractCeiling?.cpuBudget ?? null,
  },
  seedSeconds: seedSeconds === undefined ? null : rounded(seedSeconds, 2),
  ...(engineError === undefined ? {} : { engineError }),
  ...(ceilingError === undefined ? {} : { ceilingError }),
  ...(contractError === undefined ? {} : { contractError }),
  twoInstances: twoInstancesSummary,
  threshold: thresholdSummary,
  machine: {
    cpus: availableParallelism(),
    memoryGb: rounded(totalmem() / 2 ** 30, 1),
    node: process.version,
  },
  run: runTag,
  at: new Date().toISOString(),
}

// The file keeps the latest figures of every benchmark: a run of one phase (BENCH_ONLY) carries the
// other phases' figures over from the file.
const resultsPath = join(projectRoot, "bench", "results", "latest.json")
const previousResults = (): Record<string, unknown> => {
  if (!existsSync(resultsPath)) return {}
  try {
    const parsed: unknown = JSON.parse(readFileSync(resultsPath, "utf8"))
    return typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)
      ? (parsed as Record<string, unknown>)
      : {}
  } catch {
    return {}
  }
}
/** `fresh` with its unmeasured (null) figures taken from `earlier`, one level deep. */
const carryOver = (
  fresh: Record<string, unknown>,
  earlier: Record<string, unknown>,
): Record<string, unknown> =>
  Object.fromEntries(
    Object.entries(fresh).map(([key, value]) => {
      const before = earlier[key]
      if (value === null || value === undefined) return [key, before ?? null]
      const bothObjects =
        typeof value === "object" && !Array.isArray(value) && typeof before === "object" && before !== null
      return [
        key,
        bothObjects ? carryOver(value as Record<string, unknown>, before as Record<string, unknown>) : value,
      ]
    }),
  )
// BENCH_NO_RESULTS=1 (set by bench:ab, whose runs compare builds) leaves the file as it is.
if (process.env.BENCH_NO_RESULTS !== "1") {
  const kept = only === "" ? summary : carryOver(summary, previousResults())
  mkdirSync(dirname(resultsPath), { recursive: true })
  writeFileSync(resultsPath, `${JSON.stringify(kept, null, 2)}\n`)
}
progress(
  "bench",
  `engine ${paymentsPerSec ?? "-"}/s vs ceiling ${ceilingPerSec ?? "-"}/s (${shareOfCeiling === null ? "-" : `${Math.round(shareOfCeiling * 100)}%`}; target >= ${targetShareOfCeiling * 100}% and >= ${count(targetPaymentsPerSec)}/s), drain ${summary.drainSeconds ?? "-"}s, engine peak RSS ${peakRssMb ?? "-"} MB (target <= ${targetPeakRssMb})`,
)
if (twoInstancesSummary !== null) {
  progress(
    "bench",
    `2 instances: ${twoInstancesPerSec ?? "-"}/s, speed-up ${twoInstancesSummary.speedUp ?? "-"}x over 1 instance on ${availableParallelism()} cores (see docs/performance.md)`,
  )
}
if (thresholdSummary !== null) {
  progress(
    "bench",
    `threshold: p50 ${thresholdSummary.p50Ms ?? "-"} ms, p99 ${thresholdSummary.p99Ms ?? "-"} ms at ${count(thresholdRate)} events/s (target <= ${targetThresholdP99Ms}); flat out ${thresholdPerSec ?? "-"} commands/s vs raw ${rawPerSec ?? "-"} msgs/s (${thresholdShareOfRaw === null ? "-" : `${Math.round(thresholdShareOfRaw * 100)}%`}; target >= ${targetThresholdShareOfRaw * 100}%), engine peak RSS ${thresholdSummary.peakRssMb ?? "-"} MB`,
  )
}
console.log(JSON.stringify(summary))
process.exit(
  engineError === undefined &&
    twoInstancesError === undefined &&
    ceilingError === undefined &&
    contractError === undefined &&
    thresholdError === undefined
    ? 0
    : 1,
)
