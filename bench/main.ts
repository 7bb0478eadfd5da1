/**
 * `npm run bench`: the month-start burst.
 *
 * BENCH_N (default 100,000) scheduled subscriptions fall due at one tick and
 * a fake hub in its own process answers every command. The engine's rate is
 * compared, in the same run, with the raw ceiling of this machine for the
 * same work without the engine (bench/ceiling.ts).
 *
 * Environment: BENCH_N; BENCH_ONLY=engine|ceiling to run one phase;
 * BENCH_KEEP=1 to keep the databases; NATS_URL; BENCH_POSTGRES_URL (server
 * only, default postgres://postgres@127.0.0.1:5432); BENCH_NODE_ARGS, node
 * flags for the child processes (profiling); BENCH_CEILING_WRITERS, batch
 * transactions the ceiling runs side by side (default 3); BENCH_STALL_SECONDS,
 * how long the engine may make no progress before the run fails (default 120).
 * Child output goes to .bench-out/<run>/. The last line printed is one JSON
 * object, also written to bench/results/latest.json.
 */
import { mkdirSync, writeFileSync } from "node:fs"
import { availableParallelism, totalmem } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { jetstreamManager } from "@nats-io/jetstream"
import { connect } from "@nats-io/transport-node"
import { type CeilingReport, runCeiling } from "./ceiling.ts"
import { count, deleteStreamsOf, namingFor, natsUrl, progress, rounded } from "./common.ts"
import { type EngineReport, runEngine } from "./engine-run.ts"
import { killStartedProcesses } from "./processes.ts"
import { dropBenchDatabase, type SeedReport, seedBenchDatabase } from "./seed.ts"

const targetShareOfCeiling = 0.5
const targetPaymentsPerSec = 4_000
const targetPeakRssMb = 512

const parseCount = (text: string | undefined, fallback: number): number => {
  if (text === undefined || text === "") return fallback
  const value = Number(text.replaceAll("_", ""))
  if (!Number.isSafeInteger(value) || value < 1)
    throw new Error(`BENCH_N must be a positive integer, got ${text}`)
  return value
}

const n = parseCount(process.env.BENCH_N, 100_000)
const only = process.env.BENCH_ONLY ?? "both"
if (only !== "both" && only !== "engine" && only !== "ceiling") {
  throw new Error(`BENCH_ONLY must be engine or ceiling, got ${only}`)
}
const keepDatabases = process.env.BENCH_KEEP === "1"
const projectRoot = join(dirname(fileURLToPath(import.meta.url)), "..")
const runTag = `b${Date.now()}`
const logDirectory = join(projectRoot, ".bench-out", runTag)
mkdirSync(logDirectory, { recursive: true })

const engineDatabase = `rp_bench_${runTag.slice(1)}`
const ceilingDatabase = `${engineDatabase}_ceiling`
const engineNaming = namingFor(runTag)
const ceilingNaming = namingFor(`${runTag}c`)
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

progress("bench", `n=${count(n)}  run ${runTag}  cpus ${availableParallelism()}  node ${process.version}`)
progress("bench", `child logs in ${logDirectory}`)

let seedSeconds: number | undefined
let engine: EngineReport | undefined
let engineError: string | undefined
let ceiling: CeilingReport | undefined
let ceilingError: string | undefined

try {
  if (only !== "ceiling") {
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
        `${count(engine.paymentsPerSec)} payments/s (${engine.seconds.toFixed(2)}s to the last result), drained in ${engine.drainSeconds.toFixed(2)}s, peak RSS ${engine.peakRssMb?.toFixed(0) ?? "?"} MB, ${count(engine.paymentRows)} payment rows, hub saw ${engine.hubCommands ?? "?"} commands`,
      )
    } catch (error) {
      engineError = errorText(error)
      progress("engine", `FAILED: ${engineError}`)
    }
  }
  if (only !== "engine") {
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
    } catch (error) {
      ceilingError = errorText(error)
      progress("ceiling", `FAILED: ${ceilingError}`)
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
  engineStartupSeconds: engine === undefined ? null : rounded(engine.startupSeconds, 2),
  enginePaymentRows: engine?.paymentRows ?? null,
  engineSucceeded: engine?.succeeded ?? null,
  hubCommands: engine?.hubCommands ?? null,
  engineExit: engine?.engineExit ?? null,
  ceilingSeconds: ceiling === undefined ? null : rounded(ceiling.seconds, 2),
  seedSeconds: seedSeconds === undefined ? null : rounded(seedSeconds, 2),
  ...(engineError === undefined ? {} : { engineError }),
  ...(ceilingError === undefined ? {} : { ceilingError }),
  machine: {
    cpus: availableParallelism(),
    memoryGb: rounded(totalmem() / 2 ** 30, 1),
    node: process.version,
  },
  run: runTag,
  at: new Date().toISOString(),
}

mkdirSync(join(projectRoot, "bench", "results"), { recursive: true })
writeFileSync(join(projectRoot, "bench", "results", "latest.json"), `${JSON.stringify(summary, null, 2)}\n`)
progress(
  "bench",
  `engine ${paymentsPerSec ?? "-"}/s vs ceiling ${ceilingPerSec ?? "-"}/s (${shareOfCeiling === null ? "-" : `${Math.round(shareOfCeiling * 100)}%`}; target >= ${targetShareOfCeiling * 100}% and >= ${count(targetPaymentsPerSec)}/s), drain ${summary.drainSeconds ?? "-"}s, engine peak RSS ${peakRssMb ?? "-"} MB (target <= ${targetPeakRssMb})`,
)
console.log(JSON.stringify(summary))
process.exit(engineError === undefined && ceilingError === undefined ? 0 : 1)
