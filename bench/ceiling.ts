/**
 * The raw ceiling: the month-start burst done by hand, without the engine,
 * on this machine, against the same fake hub process.
 *
 * It does the work any engine must do for a due subscription and nothing
 * else: read the due rows in keyset batches, record one pending payment per
 * subscription and move its `next_due_at` in one transaction per batch,
 * publish the commands to JetStream (many in flight), and record the hub's
 * results in batches. No actors, no outbox table, no events, no
 * notifications, and results update only the payment row: what the engine
 * adds on top is what the ratio measures.
 *
 * It is built the way a fast hand-written dispatcher would be: batch
 * transactions side by side (BENCH_CEILING_WRITERS, default 3 like the
 * engine's commit workers), commands published while the next batch is
 * written, JetStream acks collected on one inbox (fakes/JetStreamPublisher.ts).
 */
import { randomUUID } from "node:crypto"
import { join } from "node:path"
import { AckPolicy, DeliverPolicy, type JsMsg, jetstream, jetstreamManager } from "@nats-io/jetstream"
import { connect, nanos } from "@nats-io/transport-node"
import { Schema } from "effect"
import type pg from "pg"
import { defaultSettings, type Naming } from "../src/EngineConfig.ts"
import { JetStreamPublisher } from "../src/streams/JetStreamPublisher.ts"
import { type PaymentCommand, PaymentResult } from "../src/streams/Messages.ts"
import { makeTopology, streamDefinitions } from "../src/streams/Topology.ts"
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
import { startTsProcess } from "./processes.ts"
import { burstAt, openBenchPool } from "./seed.ts"

/** What the ceiling run measured. */
export interface CeilingReport {
  readonly payments: number
  readonly seconds: number
  readonly perSec: number
  /** When the last command had been acknowledged by JetStream, from the start. */
  readonly commandsPublishedSeconds: number
  /** Every process's CPU for the run, per payment: the dispatcher (this process), hub, Postgres, NATS. */
  readonly cpuBudget: CpuBudget
}

/** Where and how much to run. */
export interface CeilingOptions {
  readonly database: string
  readonly expected: number
  readonly naming: Naming
  readonly cwd: string
  readonly logDirectory: string
}

const selectBatchSize = 1_000
const concurrentWrites = Number(process.env.BENCH_CEILING_WRITERS ?? 3)
const commandsInFlight = 4_000
// Committed but not yet acknowledged: room for the next batch to be written meanwhile.
const commandsQueued = commandsInFlight + (concurrentWrites + 1) * selectBatchSize
const resultBatchMax = 5_000
const stallLimitMs = 60_000
const progressEveryMs = 2_000
const resultsConsumer = "ceiling-results"

const decodeResult = Schema.decodeUnknownSync(PaymentResult)

interface DueRow {
  readonly id: string
  readonly client_id: string
  readonly provider_id: string
  readonly account: string
  readonly source: string
  readonly currency: string
  readonly amount: string
  readonly occurrence: string
  readonly due_at: Date
}

const selectDue = (pool: pg.Pool, now: Date, after: DueRow | undefined) =>
  pool.query<DueRow>(
    `SELECT id, client_id, provider_id, account, source, currency,
       terms->'amount'->>'value' AS amount, state->'cursor'->>'date' AS occurrence, next_due_at AS due_at
     FROM subscriptions
     WHERE next_due_at <= $1 AND (next_due_at, id) > ($2, $3::uuid)
     ORDER BY next_due_at, id
     LIMIT ${selectBatchSize}`,
    [now, after?.due_at ?? new Date(0), after?.id ?? "00000000-0000-0000-0000-000000000000"],
  )

// One statement, so one transaction: the payments and the subscriptions' new due times commit together.
const recordAttempts = (
  pool: pg.Pool,
  rows: ReadonlyArray<DueRow>,
  paymentIds: ReadonlyArray<string>,
  now: Date,
) =>
  pool.query(
    `WITH recorded AS (
       INSERT INTO payments (payment_id, subscription_id, client_id, occurrence, attempt, amount, currency,
         provider_id, account, source, status, rule, requested_at)
       SELECT p.payment_id, p.subscription_id, p.client_id, p.occurrence, 1, p.amount, p.currency,
         p.provider_id, p.account, p.source, 'pending', '{"rule":"scheduled"}'::jsonb, $10
       FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[],
         $8::text[], $9::text[])
         AS p(payment_id, subscription_id, client_id, occurrence, amount, currency, provider_id, account, source)
       RETURNING subscription_id
     )
     UPDATE subscriptions SET next_due_at = $11, revision = revision + 1, updated_at = now()
     WHERE id IN (SELECT subscription_id FROM recorded)`,
    [
      paymentIds,
      rows.map((row) => row.id),
      rows.map((row) => row.client_id),
      rows.map((row) => row.occurrence),
      rows.map((row) => row.amount),
      rows.map((row) => row.currency),
      rows.map((row) => row.provider_id),
      rows.map((row) => row.account),
      rows.map((row) => row.source),
      now,
      // An open attempt makes the subscription due again when its result times out.
      new Date(now.getTime() + defaultSettings.resultTimeoutMs),
    ],
  )

const recordResults = async (pool: pg.Pool, results: ReadonlyArray<PaymentResult>, now: Date) => {
  const outcome = await pool.query(
    `UPDATE payments AS p
     SET status = r.status, retryable = r.retryable, reason = r.reason, hub_reference = r.hub_reference,
       outcome = r.status, result_at = $6
     FROM unnest($1::uuid[], $2::text[], $3::boolean[], $4::text[], $5::text[])
       AS r(payment_id, status, retryable, reason, hub_reference)
     WHERE p.payment_id = r.payment_id AND p.status = 'pending'`,
    [
      results.map((result) => result.paymentId),
      results.map((result) => result.status),
      results.map((result) => result.retryable),
      results.map((result) => result.reason ?? null),
      results.map((result) => result.hubReference ?? null),
      now,
    ],
  )
  return outcome.rowCount ?? 0
}

/**
 * Publishes committed commands in the background, a bounded number awaiting
 * their JetStream ack, so the next batch is written while this one goes out.
 */
class CommandPublisher {
  private queue: Array<PaymentCommand> = []
  private head = 0
  private inFlight = 0
  private roomFreed: (() => void) | undefined
  private idle: (() => void) | undefined
  private failure: unknown
  published = 0

  constructor(
    private readonly publisher: JetStreamPublisher,
    private readonly subject: string,
  ) {}

  /** Queues a committed batch; waits while too many commands are queued or unacknowledged. */
  async add(commands: ReadonlyArray<PaymentCommand>): Promise<void> {
    this.queue.push(...commands)
    this.pump()
    while (this.waiting() + this.inFlight > commandsQueued && this.failure === undefined) {
      await new Promise<void>((resolve) => {
        this.roomFreed = resolve
      })
    }
    if (this.failure !== undefined) throw this.failure
  }

  /** Resolves once every queued command has been acknowledged. */
  async flushed(): Promise<void> {
    if (this.waiting() + this.inFlight > 0 && this.failure === undefined) {
      await new Promise<void>((resolve) => {
        this.idle = resolve
      })
    }
    if (this.failure !== undefined) throw this.failure
  }

  private waiting(): number {
    return this.queue.length - this.head
  }

  private pump(): void {
    while (this.inFlight < commandsInFlight && this.head < this.queue.length) {
      const command = this.queue[this.head] as PaymentCommand
      this.head += 1
      this.inFlight += 1
      this.publisher
        .publish(this.subject, JSON.stringify(command), `command:${command.paymentId}`)
        .then(
          () => {
            this.published += 1
          },
          (error: unknown) => {
            this.failure ??= error
          },
        )
        .finally(() => {
          this.inFlight -= 1
          this.pump()
          const wake = this.roomFreed
          this.roomFreed = undefined
          wake?.()
          if ((this.inFlight === 0 && this.waiting() === 0) || this.failure !== undefined) this.idle?.()
        })
    }
    // Drop the published prefix now and then instead of shifting one element at a time.
    if (this.head > 10_000) {
      this.queue = this.queue.slice(this.head)
      this.head = 0
    }
  }
}

/** Runs the ceiling against a seeded database; creates and deletes its own stream and fake hub. */
export const runCeiling = async (options: CeilingOptions): Promise<CeilingReport> => {
  const topology = makeTopology(options.naming)
  // noAsyncTraces: otherwise every request (pulls included) builds Error objects just for stack traces.
  const connection = await connect({ servers: natsUrl, name: "bench-ceiling", noAsyncTraces: true })
  const jsm = await jetstreamManager(connection)
  const js = jetstream(connection, { timeout: 30_000 })
  const pool = openBenchPool(options.database, 6)
  const hub = startTsProcess("ceiling fake hub", "fakes/run-fake-hub.ts", {
    cwd: options.cwd,
    env: { ...process.env, ...namingEnvironment(options.naming) },
    logPath: join(options.logDirectory, "ceiling-fake-hub.log"),
  })
  try {
    for (const definition of streamDefinitions(topology, defaultSettings.duplicateWindowMs, 1)) {
      if (definition.name === topology.streams.hubPayments) await jsm.streams.add(definition)
    }
    await jsm.consumers.add(topology.streams.hubPayments, {
      durable_name: resultsConsumer,
      filter_subject: topology.subjects.hubResult,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: nanos(60_000),
      max_ack_pending: 20_000,
    })
    await hub.waitForLine("fake hub ready", 60_000)

    const now = new Date(burstAt)
    const results = await js.consumers.get(topology.streams.hubPayments, resultsConsumer)
    const pending: Array<JsMsg> = []
    let resultArrived: (() => void) | undefined
    let written = 0
    let lastWriteAt = 0
    let undecodable = 0
    // A callback rather than the iterator: a pull batch is taken in one synchronous pass.
    const resultMessages = await results.consume({
      max_messages: 2_000,
      callback: (message) => {
        pending.push(message)
        const wake = resultArrived
        resultArrived = undefined
        wake?.()
      },
    })

    const started = performance.now()
    // The dispatcher is this very process.
    const budgetProcesses = { dispatcher: process.pid, hub: hub.pid }
    const budgetAtStart = cpuSnapshot(budgetProcesses)
    const writeResults = async () => {
      while (written < options.expected) {
        if (pending.length === 0) {
          await new Promise<void>((resolve) => {
            resultArrived = resolve
          })
          continue
        }
        const messages = pending.splice(0, resultBatchMax)
        const decoded: Array<PaymentResult> = []
        for (const message of messages) {
          try {
            decoded.push(decodeResult(message.json<unknown>()))
          } catch {
            undecodable += 1
            message.term()
          }
        }
        written += await recordResults(pool, decoded, now)
        lastWriteAt = performance.now()
        for (const message of messages) message.ack()
      }
    }
    const writing = writeResults()

    const jetStreamPublisher = new JetStreamPublisher(connection)
    const publisher = new CommandPublisher(jetStreamPublisher, topology.subjects.hubCommand)
    const writeAndPublish = async (rows: ReadonlyArray<DueRow>) => {
      const paymentIds = rows.map(() => randomUUID())
      await recordAttempts(pool, rows, paymentIds, now)
      await publisher.add(
        rows.map((row, index) => ({
          paymentId: paymentIds[index] ?? randomUUID(),
          subscriptionId: row.id,
          clientId: row.client_id,
          kind: "scheduled",
          occurrence: row.occurrence,
          attempt: 1,
          providerId: row.provider_id,
          account: row.account,
          source: row.source,
          amount: { value: Number(row.amount), currency: row.currency },
          requestedAt: burstAt,
        })),
      )
    }
    const dispatch = async () => {
      // Pages are read in keyset order, one at a time; their transactions run side by side.
      const writes = new Set<Promise<void>>()
      let writeFailure: unknown
      let batch = await selectDue(pool, now, undefined)
      while (batch.rows.length > 0 && writeFailure === undefined) {
        const rows = batch.rows
        const nextBatch = selectDue(pool, now, rows[rows.length - 1])
        // Awaited below; this only keeps a failure from surfacing as an unhandled rejection first.
        nextBatch.catch(() => undefined)
        const write: Promise<void> = writeAndPublish(rows)
          .catch((error: unknown) => {
            writeFailure ??= error
          })
          .finally(() => writes.delete(write))
        writes.add(write)
        if (writes.size >= concurrentWrites) await Promise.race(writes)
        batch = await nextBatch
      }
      await Promise.all(writes)
      if (writeFailure !== undefined) throw writeFailure
      await publisher.flushed()
      return secondsSince(started)
    }
    const dispatching = dispatch()

    let lastProgress = performance.now()
    let lastWritten = 0
    let lastChange = performance.now()
    const done = Promise.all([dispatching, writing])
    let finished = false
    void done.then(
      () => {
        finished = true
      },
      () => {
        finished = true
      },
    )
    while (!finished) {
      await Promise.race([done, sleep(100)])
      if (written !== lastWritten) {
        lastWritten = written
        lastChange = performance.now()
      } else if (!finished && performance.now() - lastChange > stallLimitMs) {
        throw new Error(
          `ceiling stalled: ${written} of ${options.expected} results written, ${publisher.published} commands published, no progress for ${stallLimitMs / 1_000} s; fake hub output:\n${hub.tail(20)}`,
        )
      }
      if (performance.now() - lastProgress >= progressEveryMs) {
        lastProgress = performance.now()
        const elapsed = secondsSince(started)
        progress(
          "ceiling",
          `${elapsed.toFixed(1)}s  commands ${count(publisher.published)}  results ${count(written)}/${count(options.expected)}  ${count(written / elapsed)}/s`,
        )
      }
    }
    const [commandsPublishedSeconds] = await done
    const budget = cpuBudget(budgetAtStart, cpuSnapshot(budgetProcesses), options.expected)
    await resultMessages.close()
    jetStreamPublisher.close()
    if (undecodable > 0) progress("ceiling", `${undecodable} undecodable results were terminated`)
    const seconds = (lastWriteAt - started) / 1_000
    return {
      payments: written,
      seconds,
      perSec: written / seconds,
      commandsPublishedSeconds,
      cpuBudget: budget,
    }
  } finally {
    await hub.stop(10_000)
    await deleteStreamsOf(jsm, options.naming)
    await connection.drain().catch(() => undefined)
    await pool.end()
  }
}
