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
import { type BenchProcess, cpuSeconds, memoryMb, startTsProcess } from "./processes.ts"
import { burstAt, databaseUrlFor, openBenchPool } from "./seed.ts"

/** What the engine run measured. */
export interface EngineReport {
  /** Seconds from the tick until the last result was recorded. */
  readonly seconds: number
  readonly paymentsPerSec: number
  /** Seconds from the tick until every result was recorded and the outbox was empty. */
  readonly drainSeconds: number
  readonly peakRssMb: number | null
  /** CPU time the engine process used from the tick until the drain, per payment, in µs. */
  readonly cpuUsPerPayment: number | null
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
}

// BENCH_ENGINE_ENTRY runs another build of the engine (e.g. a bundle, for readable CPU profiles).
const engineEntry = process.env.BENCH_ENGINE_ENTRY ?? "src/main.ts"
// The heap limit `npm start` gives the engine (package.json), so the bench measures the engine as it runs.
const engineNodeArgs = ["--max-old-space-size=384"]
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
}

/** The engine and a fake hub, both started and ready. */
export interface EngineProcesses {
  readonly engine: BenchProcess
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
  const hub = startTsProcess("fake hub", "fakes/run-fake-hub.ts", {
    cwd: options.cwd,
    env: environment,
    logPath: join(options.logDirectory, `${options.logName}-fake-hub.log`),
  })
  const launched = performance.now()
  const engine = startTsProcess("engine", engineEntry, {
    cwd: options.cwd,
    env: {
      ...environment,
      DATABASE_URL: databaseUrlFor(options.database),
      RP_CLOCK: "off",
      RP_HTTP_PORT: "0",
    },
    logPath: join(options.logDirectory, `${options.logName}.log`),
    nodeArgs: engineNodeArgs,
  })
  const stop = async () => {
    const engineExit = await engine.stop(stopGraceMs)
    await hub.stop(stopGraceMs)
    return { engineExit, hubCommands: hubCommandsFrom(hub) }
  }
  try {
    await Promise.all([
      engine.waitForLine("engine ready", readyTimeoutMs),
      hub.waitForLine("fake hub ready", readyTimeoutMs),
    ])
  } catch (error) {
    await stop()
    throw error
  }
  const startupSeconds = secondsSince(launched)
  progress(
    options.phase,
    `engine ready after ${startupSeconds.toFixed(1)}s (pid ${engine.pid}), log ${engine.logPath}`,
  )
  return { engine, hub, startupSeconds, stop }
}

/** Runs the engine on a seeded database until every payment has a result; stops it and deletes its streams. */
export const runEngine = async (options: EngineRunOptions): Promise<EngineReport> => {
  const connection = await connect({ servers: natsUrl, name: "bench-engine-run" })
  const pool = openBenchPool(options.database, 1)
  let processes: EngineProcesses | undefined
  try {
    processes = await startEngineProcesses({ ...options, logName: "engine", phase: "engine" })
    const { engine, startupSeconds } = processes

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
    const cpuAtTick = cpuSeconds(engine.pid)
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
      if (!engine.running()) {
        throw new Error(
          `the engine exited (${await engine.exited}) during the run; last output:\n${engine.tail(30)}`,
        )
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
          `the engine stalled: ${recorded} of ${options.expected} results recorded, ${outbox} outbox rows, no progress for ${stallLimitMs / 1_000} s; see ${engine.logPath}`,
        )
      }
      if (performance.now() - lastProgress >= progressEveryMs || drainSeconds !== undefined) {
        lastProgress = performance.now()
        progress(
          "engine",
          `${elapsed.toFixed(1)}s  results ${count(recorded)}/${count(options.expected)}  ${count(recorded / elapsed)}/s  outbox ${outbox < 0 ? "-" : count(outbox)}  rss ${count(memoryMb(engine.pid, "VmRSS") ?? 0)} MB`,
        )
      }
    }
    const seconds = recordedSeconds ?? drainSeconds
    const peakRssMb = memoryMb(engine.pid, "VmHWM") ?? null
    const cpuAtDrain = cpuSeconds(engine.pid)
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
