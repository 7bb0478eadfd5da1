/**
 * The engine phase: the real engine and a fake hub, each in its own process,
 * on a seeded database; one tick makes every subscription due at once, and
 * Postgres tells us when the last result is recorded and the outbox is empty.
 */
import { existsSync } from "node:fs"
import { join } from "node:path"
import { jetstream, jetstreamManager } from "@nats-io/jetstream"
import { connect } from "@nats-io/transport-node"
import type { Naming } from "../src/EngineConfig.ts"
import { makeTopology } from "../src/streams/Topology.ts"
import {
  count,
  deleteStreamsOf,
  namingEnvironment,
  natsUrl,
  progress,
  secondsSince,
  sleep,
} from "./common.ts"
import { type CpuBudget, cpuBudget, cpuSnapshot } from "./cpu-budget.ts"
import { type BenchProcess, cpuSeconds, memoryMb, startNodeProcess } from "./processes.ts"
import { burstAt, databaseUrlFor, openBenchPool } from "./seed.ts"

/** What the engine run measured. */
export interface EngineReport {
  /** Seconds from the tick until the last result was recorded. */
  readonly seconds: number
  readonly paymentsPerSec: number
  /** Seconds from the tick until every result was recorded and the outbox was empty. */
  readonly drainSeconds: number
  /** The largest peak resident set of the engine processes. */
  readonly peakRssMb: number | null
  /** CPU time the engine processes used together from the tick until the drain, per payment, in µs. */
  readonly cpuUsPerPayment: number | null
  /** Every process's CPU from the tick until the drain, per payment: engine, hub, Postgres, NATS. */
  readonly cpuBudget: CpuBudget
  readonly startupSeconds: number
  /** Payment rows and how many succeeded: one per subscription when the engine is right. */
  readonly paymentRows: number
  readonly succeeded: number
  /** Commands the fake hub received, duplicates included (from its exit line). */
  readonly hubCommands: number | null
  /** How the engine ended on SIGTERM: "0" when it shut down cleanly, "SIGKILL" when it had to be killed. */
  readonly engineExit: string
}

/** Where and how much to run. */
export interface EngineRunOptions {
  readonly database: string
  readonly expected: number
  readonly naming: Naming
  readonly cwd: string
  readonly logDirectory: string
  /** Engine processes sharing the partitions (default 1). */
  readonly instances?: number
}

// The engine as `npm start` runs it: the bundle `npm run build` writes (bench/main.ts builds it first).
// BENCH_ENGINE_ENTRY runs another build instead (`src/main.ts` runs the sources through tsx).
export const engineEntry = process.env.BENCH_ENGINE_ENTRY ?? "dist/engine.mjs"
// The heap settings `npm start` gives the engine (package.json), so the bench measures the engine as it runs.
const engineNodeArgs = ["--max-old-space-size=384", "--max-semi-space-size=32"]
const readyTimeoutMs = 120_000
const pollEveryMs = 100
const progressEveryMs = 2_000
const stallLimitMs = Number(process.env.BENCH_STALL_SECONDS ?? 120) * 1_000
const stopGraceMs = 30_000

interface Counts {
  readonly recorded: number
  readonly outbox: number
}

const hubCommandsFrom = (hub: BenchProcess): number | null => {
  const match = /commands=(\d+)/.exec(hub.tail(5))
  return match?.[1] === undefined ? null : Number(match[1])
}

/** Where the engine and its fake hub run, and what their logs are called. */
export interface EngineProcessOptions {
  readonly database: string
  readonly naming: Naming
  readonly cwd: string
  readonly logDirectory: string
  /** Log files are `<logName>.log` and `<logName>-fake-hub.log`. */
  readonly logName: string
  /** The progress-line phase. */
  readonly phase: string
  /** Engine processes sharing the partitions (default 1); logs `<logName>-<i>.log` when more than one. */
  readonly instances?: number
}

/** The engine and a fake hub, both started and ready. */
export interface EngineProcesses {
  /** The first engine process (the only one unless `instances` asked for more). */
  readonly engine: BenchProcess
  readonly engines: ReadonlyArray<BenchProcess>
  readonly hub: BenchProcess
  readonly startupSeconds: number
  /** Stops both (the engine first); how the engine exited and how many commands the hub saw. */
  stop(): Promise<{ readonly engineExit: string; readonly hubCommands: number | null }>
}

/**
 * Starts a fake hub and the engine (as `npm start` would, own clock off) on
 * `database`, and waits until both say they are ready; stops both if either
 * does not get there.
 */
export const startEngineProcesses = async (options: EngineProcessOptions): Promise<EngineProcesses> => {
  if (!existsSync(join(options.cwd, engineEntry))) {
    throw new Error(`${engineEntry} does not exist yet: the engine phase cannot run`)
  }
  const environment = { ...process.env, ...namingEnvironment(options.naming) }
  const hub = startNodeProcess("fake hub", "fakes/run-fake-hub.ts", {
    cwd: options.cwd,
    env: environment,
    logPath: join(options.logDirectory, `${options.logName}-fake-hub.log`),
  })
  const launched = performance.now()
  const instances = options.instances ?? 1
  const engines = Array.from({ length: instances }, (_, index) =>
    startNodeProcess(instances === 1 ? "engine" : `engine ${index + 1}`, engineEntry, {
      cwd: options.cwd,
      env: {
        ...environment,
        DATABASE_URL: databaseUrlFor(options.database),
        RP_CLOCK: "off",
        RP_HTTP_PORT: "0",
        ...(instances === 1 ? {} : { RP_INSTANCE_ID: `bench-engine-${index + 1}` }),
      },
      logPath: join(
        options.logDirectory,
        instances === 1 ? `${options.logName}.log` : `${options.logName}-${index + 1}.log`,
      ),
      nodeArgs: engineNodeArgs,
    }),
  )
  const [engine] = engines
  if (engine === undefined) throw new Error("instances must be at least 1")
  const stop = async () => {
    const exits = await Promise.all(engines.map((running) => running.stop(stopGraceMs)))
    await hub.stop(stopGraceMs)
    const unclean = exits.find((exit) => exit !== "0")
    return { engineExit: unclean ?? exits[0] ?? "0", hubCommands: hubCommandsFrom(hub) }
  }
  try {
    await Promise.all([
      ...engines.map((running) => running.waitForLine("engine ready", readyTimeoutMs)),
      hub.waitForLine("fake hub ready", readyTimeoutMs),
    ])
    if (instances > 1) await partitionsShared(options.database, instances)
  } catch (error) {
    await stop()
    throw error
  }
  const startupSeconds = secondsSince(launched)
  progress(
    options.phase,
    `${instances === 1 ? "engine" : `${instances} engines`} ready after ${startupSeconds.toFixed(1)}s (pid ${engines.map((running) => running.pid).join(", ")}), log ${engines.map((running) => running.logPath).join(", ")}`,
  )
  return { engine, engines, hub, startupSeconds, stop }
}

/** Waits until `instances` engines hold partition leases: the burst starts with the work already shared. */
const partitionsShared = async (database: string, instances: number) => {
  const pool = openBenchPool(database, 1)
  try {
    const deadline = performance.now() + readyTimeoutMs
    for (;;) {
      const { rows } = await pool.query<{ owners: number }>(
        "SELECT count(DISTINCT owner)::int AS owners FROM partition_leases WHERE expires_at > now()",
      )
      if ((rows[0]?.owners ?? 0) >= instances) return
      if (performance.now() > deadline)
        throw new Error(`the ${instances} engines did not share the partitions`)
      await sleep(pollEveryMs)
    }
  } finally {
    await pool.end()
  }
}

/** Runs the engine on a seeded database until every payment has a result; stops it and deletes its streams. */
export const runEngine = async (options: EngineRunOptions): Promise<EngineReport> => {
  const connection = await connect({ servers: natsUrl, name: "bench-engine-run" })
  const pool = openBenchPool(options.database, 1)
  let processes: EngineProcesses | undefined
  try {
    const phase = (options.instances ?? 1) === 1 ? "engine" : `engine x${options.instances}`
    processes = await startEngineProcesses({ ...options, logName: phase.replace(" ", "-"), phase })
    const { engines, startupSeconds } = processes
    const totalCpuSeconds = () => {
      const each = engines.map((running) => cpuSeconds(running.pid))
      return each.some((seconds) => seconds === undefined)
        ? undefined
        : each.reduce((sum: number, seconds) => sum + (seconds ?? 0), 0)
    }
    const largestMemoryMb = (field: "VmHWM" | "VmRSS") => {
      const each = engines.map((running) => memoryMb(running.pid, field))
      return each.some((mb) => mb === undefined) ? undefined : Math.max(...each.map((mb) => mb ?? 0))
    }

    // Progress is read from the engine's result consumer (the engine acknowledges a result
    // only once it is committed), not by counting rows: a count over 100,000 payments ten
    // times a second would take a good part of a core from the very Postgres being measured.
    // Completion is then confirmed from the database itself.
    const topology = makeTopology(options.naming)
    const jsm = await jetstreamManager(connection)
    const acknowledgedResults = async (): Promise<number> => {
      const info = await jsm.consumers.info(topology.streams.hubPayments, topology.consumers.hubResults)
      return info.delivered.consumer_seq - info.num_ack_pending - info.num_redelivered
    }
    const counts = async (): Promise<Counts> => {
      const acknowledged = await acknowledgedResults()
      if (acknowledged < options.expected) return { recorded: acknowledged, outbox: -1 }
      const { rows } = await pool.query<Counts>(
        `SELECT (SELECT count(*) FROM payments WHERE status <> 'pending')::int AS recorded,
           (SELECT count(*) FROM outbox)::int AS outbox`,
      )
      return rows[0] ?? { recorded: 0, outbox: 0 }
    }

    const js = jetstream(connection)
    const budgetProcesses = {
      ...Object.fromEntries(
        engines.map((running, index) => [
          engines.length === 1 ? "engine" : `engine ${index + 1}`,
          running.pid,
        ]),
      ),
      hub: processes.hub.pid,
    }
    const budgetAtTick = cpuSnapshot(budgetProcesses)
    const cpuAtTick = totalCpuSeconds()
    const tickAt = performance.now()
    await js.publish(makeTopology(options.naming).subjects.tick, JSON.stringify({ at: burstAt }), {
      msgID: `tick:${burstAt}`,
    })

    let recordedSeconds: number | undefined
    let drainSeconds: number | undefined
    let lastRecorded = -1
    let lastChange = performance.now()
    let lastProgress = performance.now()
    while (drainSeconds === undefined) {
      await sleep(pollEveryMs)
      for (const engine of engines) {
        if (!engine.running()) {
          throw new Error(
            `the engine exited (${await engine.exited}) during the run; last output:\n${engine.tail(30)}`,
          )
        }
      }
      const { recorded, outbox } = await counts()
      const elapsed = secondsSince(tickAt)
      if (recorded >= options.expected && recordedSeconds === undefined) recordedSeconds = elapsed
      if (recorded >= options.expected && outbox === 0) drainSeconds = elapsed
      if (recorded >= options.expected && outbox > 0) await sleep(pollEveryMs * 4)
      if (recorded !== lastRecorded) {
        lastRecorded = recorded
        lastChange = performance.now()
      } else if (performance.now() - lastChange > stallLimitMs) {
        throw new Error(
          `the engine stalled: ${recorded} of ${options.expected} results recorded, ${outbox} outbox rows, no progress for ${stallLimitMs / 1_000} s; see ${engines.map((running) => running.logPath).join(", ")}`,
        )
      }
      if (performance.now() - lastProgress >= progressEveryMs || drainSeconds !== undefined) {
        lastProgress = performance.now()
        progress(
          phase,
          `${elapsed.toFixed(1)}s  results ${count(recorded)}/${count(options.expected)}  ${count(recorded / elapsed)}/s  outbox ${outbox < 0 ? "-" : count(outbox)}  rss ${count(largestMemoryMb("VmRSS") ?? 0)} MB`,
        )
      }
    }
    const seconds = recordedSeconds ?? drainSeconds
    const peakRssMb = largestMemoryMb("VmHWM") ?? null
    const cpuAtDrain = totalCpuSeconds()
    const budget = cpuBudget(budgetAtTick, cpuSnapshot(budgetProcesses), options.expected)
    const cpuUsPerPayment =
      cpuAtTick === undefined || cpuAtDrain === undefined
        ? null
        : ((cpuAtDrain - cpuAtTick) * 1e6) / options.expected
    const { rows } = await pool.query<{ payments: number; succeeded: number }>(
      `SELECT count(*)::int AS payments, (count(*) FILTER (WHERE status = 'succeeded'))::int AS succeeded
       FROM payments`,
    )
    const { engineExit, hubCommands } = await processes.stop()
    return {
      seconds,
      paymentsPerSec: options.expected / seconds,
      drainSeconds,
      peakRssMb,
      cpuUsPerPayment,
      cpuBudget: budget,
      startupSeconds,
      paymentRows: rows[0]?.payments ?? 0,
      succeeded: rows[0]?.succeeded ?? 0,
      hubCommands,
      engineExit,
    }
  } finally {
    await processes?.stop()
    // Only now that nothing uses them: streams named with this run's own prefix.
    await jetstreamManager(connection)
      .then((jsm) => deleteStreamsOf(jsm, options.naming))
      .catch(() => undefined)
    await connection.drain().catch(() => undefined)
    await pool.end()
  }
}
