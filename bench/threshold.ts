/**
 * The threshold phase: the real engine and a fake hub, each in its own
 * process, on a database of threshold subscriptions; the bench plays the
 * providers, publishing balance events to RP_PROVIDERS, and watches
 * `hub.payment.command` with a plain subscription to see each below-threshold
 * event turn into its command (matched on `occurrence` = eventId).
 *
 * The first half of the events goes out at a steady rate (latency), the
 * second half as fast as JetStream takes them (throughput). The phases do
 * not overlap: the flat-out half starts once every steady command was seen.
 */
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { type JetStreamManager, jetstreamManager } from "@nats-io/jetstream"
import { connect, type NatsConnection, type Subscription } from "@nats-io/transport-node"
import { Schema } from "effect"
import type { Naming } from "../src/EngineConfig.ts"
import { JetStreamPublisher } from "../src/streams/JetStreamPublisher.ts"
import { PaymentCommand } from "../src/streams/Messages.ts"
import { makeTopology, type TopologyService } from "../src/streams/Topology.ts"
import { count, deleteStreamsOf, natsUrl, progress, secondsSince, sleep } from "./common.ts"
import { type EngineProcesses, startEngineProcesses } from "./engine-run.ts"
import { memoryMb } from "./processes.ts"
import { openBenchPool } from "./seed.ts"
import { isBelowThreshold, publishEvents, type ThresholdEvents } from "./threshold-events.ts"

/** What the threshold run measured. */
export interface ThresholdReport {
  readonly steadyEvents: number
  readonly steadyRate: number
  /** The rate the bench actually published at in the steady half. */
  readonly steadySentPerSec: number
  readonly steadyCommands: number
  /** Publish to command seen, over every below-threshold event of the steady half; null when too many are missing. */
  readonly p50Ms: number | null
  readonly p99Ms: number | null
  readonly maxMs: number | null
  readonly flatOutEvents: number
  readonly flatOutCommands: number
  /** Seconds from the first flat-out publish until the last flat-out command was seen. */
  readonly flatOutSeconds: number
  /** Flat-out commands seen per second over `flatOutSeconds`. */
  readonly flatOutPerSec: number
  /** Flat-out events per second, until the engine's threshold-event consumer had acknowledged all of them. */
  readonly flatOutEventsPerSec: number | null
  /** Seconds the bench took to publish the flat-out half (all acknowledged by JetStream). */
  readonly flatOutPublishSeconds: number
  /** Commands expected (one per below-threshold event) but never seen. */
  readonly missingCommands: number
  /** A second command for an event already seen. */
  readonly duplicateCommands: number
  /** Commands for no below-threshold event of this run (or not decodable). */
  readonly unexpectedCommands: number
  readonly paymentRows: number
  readonly peakRssMb: number | null
  readonly startupSeconds: number
  readonly hubCommands: number | null
  readonly engineExit: string
}

/** Where and how much to run. */
export interface ThresholdOptions {
  /** A database seeded with `seedThresholdDatabase`, one subscription per event. */
  readonly database: string
  /** The events, addressed with `naming`. */
  readonly events: ThresholdEvents
  readonly naming: Naming
  readonly steadyRate: number
  readonly inFlight: number
  readonly cwd: string
  readonly logDirectory: string
}

const pollEveryMs = 200
const progressEveryMs = 2_000
const stallLimitMs = Number(process.env.BENCH_STALL_SECONDS ?? 120) * 1_000
// An engine that handles threshold events at all answers the first one well within this.
const firstCommandLimitMs = 30_000
// How long after the last command the engine may take to acknowledge the remaining (above-threshold) events.
const ackWaitMs = 30_000
// Latency figures are given only when at most this share of the commands is missing.
const missingTolerance = 0.01

const decodeCommand = Schema.decodeUnknownSync(PaymentCommand)

/** Commands below-threshold events `[from, to)` must yield. */
const belowThresholdIn = (from: number, to: number): number => Math.ceil(to / 2) - Math.ceil(from / 2)

/** Sees every payment command the engine publishes, as the hub would, and notes when each arrived. */
class CommandWatcher {
  /** `performance.now()` when the command for event i was seen; 0 while not seen. */
  readonly seenAt: Float64Array
  /** Commands seen for events before `split`, and from `split` on. */
  readonly seen: [number, number] = [0, 0]
  duplicates = 0
  unexpected = 0
  lastSeenAt = 0
  private readonly subscription: Subscription

  constructor(
    connection: NatsConnection,
    subject: string,
    private readonly events: ThresholdEvents,
    private readonly split: number,
  ) {
    this.seenAt = new Float64Array(events.count)
    this.subscription = connection.subscribe(subject, {
      callback: (error, message) => {
        if (error === null) this.receive(message.json<unknown>())
      },
    })
  }

  close(): void {
    this.subscription.unsubscribe()
  }

  private receive(body: unknown): void {
    const now = performance.now()
    let index: number | undefined
    try {
      const command = decodeCommand(body)
      index = command.kind === "threshold" ? this.events.indexOf(command.occurrence) : undefined
    } catch {
      index = undefined
    }
    if (index === undefined || !isBelowThreshold(index)) {
      this.unexpected += 1
      return
    }
    if (this.seenAt[index] !== 0) {
      this.duplicates += 1
      return
    }
    this.seenAt[index] = now
    this.lastSeenAt = now
    if (index < this.split) this.seen[0] += 1
    else this.seen[1] += 1
  }
}

/** Publish-to-command latencies in ms for the below-threshold events in `[from, to)`; missing ones are Infinity. */
const latencies = (sentAt: Float64Array, seenAt: Float64Array, from: number, to: number): Array<number> => {
  const result: Array<number> = []
  for (let index = from; index < to; index += 1) {
    if (!isBelowThreshold(index)) continue
    const seen = seenAt[index] ?? 0
    result.push(seen === 0 ? Number.POSITIVE_INFINITY : seen - (sentAt[index] ?? 0))
  }
  return result.sort((a, b) => a - b)
}

/** One line per below-threshold steady event, in publish order: when it went out (s) and its latency (ms). */
const writeLatencies = (path: string, sentAt: Float64Array, seenAt: Float64Array, to: number): void => {
  const lines = ["sentSeconds,latencyMs"]
  const first = sentAt[0] ?? 0
  for (let index = 0; index < to; index += 1) {
    if (!isBelowThreshold(index)) continue
    const sent = sentAt[index] ?? 0
    const seen = seenAt[index] ?? 0
    lines.push(`${((sent - first) / 1_000).toFixed(3)},${seen === 0 ? "" : (seen - sent).toFixed(1)}`)
  }
  writeFileSync(path, `${lines.join("\n")}\n`)
}

/** Nearest-rank percentile of sorted values; null when it falls on a missing one. */
const percentile = (sorted: ReadonlyArray<number>, share: number): number | null => {
  const value = sorted[Math.max(0, Math.ceil(share * sorted.length) - 1)]
  return value === undefined || !Number.isFinite(value) ? null : value
}

/** Events the engine's threshold-event consumer has acknowledged. */
const acknowledgedByEngine = async (jsm: JetStreamManager, topology: TopologyService): Promise<number> => {
  const info = await jsm.consumers.info(topology.streams.providers, topology.consumers.thresholdEvents)
  return info.delivered.consumer_seq - info.num_ack_pending - info.num_redelivered
}

/** Runs both halves against the engine; stops it and deletes the run's streams. */
export const runThreshold = async (options: ThresholdOptions): Promise<ThresholdReport> => {
  const { events } = options
  const total = events.count
  const split = Math.floor(total / 2)
  const topology = makeTopology(options.naming)
  const connection = await connect({ servers: natsUrl, name: "bench-threshold", noAsyncTraces: true })
  const jsm = await jetstreamManager(connection)
  const pool = openBenchPool(options.database, 1)
  const publisher = new JetStreamPublisher(connection)
  let processes: EngineProcesses | undefined
  let watcher: CommandWatcher | undefined
  let watching = true
  try {
    processes = await startEngineProcesses({
      database: options.database,
      naming: options.naming,
      cwd: options.cwd,
      logDirectory: options.logDirectory,
      logName: "threshold-engine",
      phase: "threshold",
    })
    const { engine } = processes
    const commands = new CommandWatcher(connection, topology.subjects.hubCommand, events, split)
    watcher = commands
    // The subscription is in place on the server before the first event goes out.
    await connection.flush()

    // A background loop: the engine's acknowledged count, a dead engine, and a progress line now and then.
    let stage = "steady"
    let acknowledged: number | null = null
    let allAcknowledgedAt: number | undefined
    const watchStarted = performance.now()
    const watch = (async () => {
      let lastProgress = performance.now()
      while (watching && engine.running()) {
        await sleep(pollEveryMs)
        acknowledged = await acknowledgedByEngine(jsm, topology).catch(() => acknowledged)
        if (acknowledged !== null && acknowledged >= total) allAcknowledgedAt ??= performance.now()
        if (performance.now() - lastProgress >= progressEveryMs) {
          lastProgress = performance.now()
          progress(
            "threshold",
            `${stage} ${secondsSince(watchStarted).toFixed(1)}s  commands ${count(commands.seen[0])}+${count(commands.seen[1])}  events acked by engine ${acknowledged === null ? "-" : count(acknowledged)}/${count(total)}  rss ${count(memoryMb(engine.pid, "VmRSS") ?? 0)} MB`,
          )
        }
      }
    })()

    /** Resolves once phase `phase` has all its commands, or once they stop coming (some then missing). */
    const awaitCommands = async (phase: 0 | 1, expected: number): Promise<void> => {
      let last = -1
      let lastChange = performance.now()
      while (commands.seen[phase] < expected) {
        await sleep(50)
        if (!engine.running()) {
          throw new Error(
            `the engine exited (${await engine.exited}) during the run; last output:\n${engine.tail(30)}`,
          )
        }
        const seen = commands.seen[phase]
        if (seen !== last) {
          last = seen
          lastChange = performance.now()
        } else if (seen === 0 && performance.now() - lastChange > firstCommandLimitMs) {
          throw new Error(
            `no payment command within ${firstCommandLimitMs / 1_000} s of the ${stage} events (engine acknowledged ${acknowledged ?? "none"} of them): does this engine act on threshold events? See ${engine.logPath}`,
          )
        } else if (performance.now() - lastChange > stallLimitMs) {
          progress("threshold", `${stage}: commands stopped at ${seen} of ${expected}; going on without them`)
          return
        }
      }
    }

    const sentAt = new Float64Array(total)
    const steady = await publishEvents(
      publisher,
      events,
      { from: 0, to: split, perSec: options.steadyRate, inFlight: options.inFlight },
      sentAt,
    )
    const steadySentPerSec = split / steady.sendSeconds
    progress(
      "threshold",
      `steady: ${count(split)} events published in ${steady.sendSeconds.toFixed(1)}s (${count(steadySentPerSec)}/s)`,
    )
    const steadyExpected = belowThresholdIn(0, split)
    await awaitCommands(0, steadyExpected)
    const steadyLatencies = latencies(sentAt, commands.seenAt, 0, split)
    // For looking at how latency moves over the run (spikes, drift): not part of the summary.
    writeLatencies(
      join(options.logDirectory, "threshold-steady-latencies.csv"),
      sentAt,
      commands.seenAt,
      split,
    )
    const steadyCommands = commands.seen[0]
    const latencyKnown = steadyExpected - steadyCommands <= steadyExpected * missingTolerance
    const p50Ms = latencyKnown ? percentile(steadyLatencies, 0.5) : null
    const p99Ms = latencyKnown ? percentile(steadyLatencies, 0.99) : null
    const maxMs = latencyKnown ? percentile(steadyLatencies, 1) : null
    progress(
      "threshold",
      `steady: ${count(steadyCommands)}/${count(steadyExpected)} commands, p50 ${p50Ms?.toFixed(1) ?? "-"} ms, p99 ${p99Ms?.toFixed(1) ?? "-"} ms, max ${maxMs?.toFixed(1) ?? "-"} ms`,
    )

    stage = "flat-out"
    const flatOutExpected = belowThresholdIn(split, total)
    const flatOut = await publishEvents(publisher, events, {
      from: split,
      to: total,
      perSec: null,
      inFlight: options.inFlight,
    })
    progress(
      "threshold",
      `flat-out: ${count(total - split)} events published in ${flatOut.ackedSeconds.toFixed(1)}s (${count((total - split) / flatOut.ackedSeconds)}/s)`,
    )
    await awaitCommands(1, flatOutExpected)
    const flatOutCommands = commands.seen[1]
    const flatOutSeconds = (commands.lastSeenAt - flatOut.startedAt) / 1_000
    const ackDeadline = performance.now() + ackWaitMs
    while (allAcknowledgedAt === undefined && performance.now() < ackDeadline && engine.running()) {
      await sleep(pollEveryMs)
    }
    watching = false
    await watch
    const flatOutEventsPerSec =
      allAcknowledgedAt === undefined
        ? null
        : (total - split) / ((allAcknowledgedAt - flatOut.startedAt) / 1_000)
    progress(
      "threshold",
      `flat-out: ${count(flatOutCommands)}/${count(flatOutExpected)} commands in ${flatOutSeconds.toFixed(2)}s (${count(flatOutCommands / flatOutSeconds)} commands/s; ${flatOutEventsPerSec === null ? "events not all acknowledged" : `${count(flatOutEventsPerSec)} events/s`})`,
    )

    const peakRssMb = memoryMb(engine.pid, "VmHWM") ?? null
    const { rows } = await pool.query<{ payments: number }>("SELECT count(*)::int AS payments FROM payments")
    const { engineExit, hubCommands } = await processes.stop()
    return {
      steadyEvents: split,
      steadyRate: options.steadyRate,
      steadySentPerSec,
      steadyCommands,
      p50Ms,
      p99Ms,
      maxMs,
      flatOutEvents: total - split,
      flatOutCommands,
      flatOutSeconds,
      flatOutPerSec: flatOutCommands / flatOutSeconds,
      flatOutEventsPerSec,
      flatOutPublishSeconds: flatOut.ackedSeconds,
      missingCommands: steadyExpected - steadyCommands + flatOutExpected - flatOutCommands,
      duplicateCommands: commands.duplicates,
      unexpectedCommands: commands.unexpected,
      paymentRows: rows[0]?.payments ?? 0,
      peakRssMb,
      startupSeconds: processes.startupSeconds,
      hubCommands,
      engineExit,
    }
  } finally {
    watching = false
    watcher?.close()
    publisher.close()
    await processes?.stop()
    // Only now that nothing uses them: streams named with this run's own prefix.
    await deleteStreamsOf(jsm, options.naming)
    await connection.drain().catch(() => undefined)
    await pool.end()
  }
}
