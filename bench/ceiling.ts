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
 * written, JetStream acks collected on one inbox (src/streams/JetStreamPublisher.ts).
 *
 * With `contract`, the same dispatcher also does what the contract asks of
 * every payment beyond the command, still without actors or an engine: the
 * `payment.requested` event with the command; at the result, the
 * subscription row updated beside the payment, `payment.succeeded` and the
 * customer's notification; and every batch's messages written to the outbox
 * in the same transaction as its rows, and the outbox row deleted once they
 * are acknowledged. That is the engine-free cost of the contract's work on
 * this machine: what the engine adds beyond it is its own.
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
import { outboxText, type PublishableMessage } from "../src/streams/OutboxPublisher.ts"
import { makeTopology, streamDefinitions, type TopologyService } from "../src/streams/Topology.ts"
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
import { startNodeProcess } from "./processes.ts"
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
  /** Messages JetStream acknowledged: 1 per payment, or 4 with the contract (command, event, event, notification). */
  readonly messagesPublished: number
}

/** Where and how much to run. */
export interface CeilingOptions {
  readonly database: string
  readonly expected: number
  readonly naming: Naming
  readonly cwd: string
  readonly logDirectory: string
  /** Also the contract's events, notification, outbox and subscription update (see the top). */
  readonly contract?: boolean
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
/** A pool or one checked-out client (for statements that share a transaction). */
type Queryable = Pick<pg.PoolClient, "query">

const recordAttempts = (
  pool: Queryable,
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

// A result is recorded on its payment only while that payment is still pending: a repeated result
// changes nothing. $1-$6 of both forms below.
const settlePayments = `
  UPDATE payments AS p
  SET status = r.status, retryable = r.retryable, reason = r.reason, hub_reference = r.hub_reference,
    outcome = r.status, result_at = $6
  FROM unnest($1::uuid[], $2::text[], $3::boolean[], $4::text[], $5::text[])
    AS r(payment_id, status, retryable, reason, hub_reference)
  WHERE p.payment_id = r.payment_id AND p.status = 'pending'`

const resultParameters = (results: ReadonlyArray<PaymentResult>, now: Date) => [
  results.map((result) => result.paymentId),
  results.map((result) => result.status),
  results.map((result) => result.retryable),
  results.map((result) => result.reason ?? null),
  results.map((result) => result.hubReference ?? null),
  now,
]

const recordResults = async (pool: pg.Pool, results: ReadonlyArray<PaymentResult>, now: Date) => {
  const outcome = await pool.query(settlePayments, resultParameters(results, now))
  return outcome.rowCount ?? 0
}

interface SettledPayment {
  readonly payment_id: string
  readonly subscription_id: string
  readonly client_id: string
  readonly occurrence: string
  readonly amount: string
  readonly currency: string
  readonly provider_id: string
  readonly account: string
  readonly status: string
  readonly hub_reference: string | null
}

// The contract's form: the result recorded, and the subscription row moved on (its paid count, its next
// wake at the next month's notice) in the same statement.
const settleResults = async (client: Queryable, results: ReadonlyArray<PaymentResult>, now: Date) => {
  const settled = await client.query<SettledPayment>(
    `WITH settled AS (${settlePayments}
       RETURNING p.payment_id, p.subscription_id, p.client_id, p.occurrence, p.amount::text AS amount,
         p.currency, p.provider_id, p.account, p.status, p.hub_reference
     ), moved AS (
       UPDATE subscriptions AS s
       SET next_due_at = $7, revision = s.revision + 1, updated_at = now(),
         state = jsonb_set(s.state, '{paid}', to_jsonb(COALESCE((s.state->>'paid')::int, 0) + 1))
       FROM settled WHERE s.id = settled.subscription_id
     )
     SELECT * FROM settled`,
    [...resultParameters(results, now), new Date(now.getTime() + 29 * 24 * 3_600_000)],
  )
  return settled.rows
}

/** Runs `work` in one transaction on a client of its own. */
const inTransaction = async <A>(pool: pg.Pool, work: (client: Queryable) => Promise<A>): Promise<A> => {
  const client = await pool.connect()
  try {
    await client.query("BEGIN")
    const result = await work(client)
    await client.query("COMMIT")
    return result
  } catch (error) {
    await client.query("ROLLBACK").catch(() => undefined)
    throw error
  } finally {
    client.release()
  }
}

const insertOutbox = (client: Queryable, id: string, messages: ReadonlyArray<PublishableMessage>) =>
  client.query("INSERT INTO outbox (id, messages, message_count) VALUES ($1, $2, $3)", [
    id,
    outboxText(messages),
    messages.length,
  ])

const requestedEvent = (command: PaymentCommand, eventId: string) =>
  JSON.stringify({
    eventId,
    type: "payment.requested",
    at: burstAt,
    subscriptionId: command.subscriptionId,
    clientId: command.clientId,
    kind: "scheduled",
    data: {
      paymentId: command.paymentId,
      occurrence: command.occurrence,
      attempt: 1,
      amount: command.amount,
      providerId: command.providerId,
      account: command.account,
      source: command.source,
      rule: { rule: "schedule", occurrence: command.occurrence, dueAt: burstAt, lateByMs: 0 },
    },
  })

const outcomeData = (payment: SettledPayment) => ({
  paymentId: payment.payment_id,
  occurrence: payment.occurrence,
  attempt: 1,
  amount: { value: Number(payment.amount), currency: payment.currency },
  providerId: payment.provider_id,
  account: payment.account,
  hubReference: payment.hub_reference,
})

/** The outcome's event and the customer's notification, as the contract has them. */
const outcomeMessages = (payment: SettledPayment, topology: TopologyService): Array<PublishableMessage> => {
  const type = payment.status === "succeeded" ? "payment.succeeded" : "payment.failed"
  const eventId = randomUUID()
  const notificationId = randomUUID()
  const data = outcomeData(payment)
  return [
    {
      subject: topology.subjects.event(type),
      msgId: eventId,
      payload: JSON.stringify({
        eventId,
        type,
        at: burstAt,
        subscriptionId: payment.subscription_id,
        clientId: payment.client_id,
        kind: "scheduled",
        data,
      }),
    },
    {
      subject: topology.subjects.notify(payment.client_id),
      msgId: notificationId,
      payload: JSON.stringify({
        notificationId,
        clientId: payment.client_id,
        type,
        subscriptionId: payment.subscription_id,
        paymentId: payment.payment_id,
        at: burstAt,
        data,
      }),
    },
  ]
}

/** Messages committed together: `acknowledged` runs once JetStream has acknowledged all of them. */
interface CommittedBatch {
  remaining: number
  readonly acknowledged: () => Promise<unknown>
}

interface Queued {
  readonly message: PublishableMessage
  readonly batch: CommittedBatch | undefined
}

/**
 * Publishes committed messages in the background, a bounded number awaiting
 * their JetStream ack, so the next batch is written while this one goes out.
 */
class MessagePublisher {
  private queue: Array<Queued> = []
  private head = 0
  private inFlight = 0
  // Every writer waiting for room: the dispatch's writers side by side and, with the contract, the results.
  private readonly roomWaiters: Array<() => void> = []
  private idle: (() => void) | undefined
  private failure: unknown
  private readonly afterAcks = new Set<Promise<unknown>>()
  published = 0

  constructor(private readonly publisher: JetStreamPublisher) {}

  /**
   * Queues a committed batch; waits while too many messages are queued or unacknowledged.
   * `acknowledged` (the outbox row's delete) runs once every message of the batch is acknowledged.
   */
  async add(
    messages: ReadonlyArray<PublishableMessage>,
    acknowledged?: () => Promise<unknown>,
  ): Promise<void> {
    const batch = acknowledged === undefined ? undefined : { remaining: messages.length, acknowledged }
    for (const message of messages) this.queue.push({ message, batch })
    this.pump()
    while (this.waiting() + this.inFlight > commandsQueued && this.failure === undefined) {
      await new Promise<void>((resolve) => {
        this.roomWaiters.push(resolve)
      })
    }
    if (this.failure !== undefined) throw this.failure
  }

  /** Resolves once every queued message has been acknowledged and every batch's follow-up has run. */
  async flushed(): Promise<void> {
    if (this.waiting() + this.inFlight > 0 && this.failure === undefined) {
      await new Promise<void>((resolve) => {
        this.idle = resolve
      })
    }
    await Promise.all(this.afterAcks)
    if (this.failure !== undefined) throw this.failure
  }

  private waiting(): number {
    return this.queue.length - this.head
  }

  private acknowledged(batch: CommittedBatch | undefined): void {
    if (batch === undefined) return
    batch.remaining -= 1
    if (batch.remaining > 0) return
    const followUp: Promise<unknown> = batch
      .acknowledged()
      .catch((error: unknown) => {
        this.failure ??= error
      })
      .finally(() => this.afterAcks.delete(followUp))
    this.afterAcks.add(followUp)
  }

  private pump(): void {
    while (this.inFlight < commandsInFlight && this.head < this.queue.length) {
      const { message, batch } = this.queue[this.head] as Queued
      this.head += 1
      this.inFlight += 1
      this.publisher.send(message.subject, message.payload, message.msgId, (error) => {
        if (error === undefined) {
          this.published += 1
          this.acknowledged(batch)
        } else this.failure ??= error
        this.inFlight -= 1
        this.pump()
        // Each re-checks whether there is room now.
        for (const wake of this.roomWaiters.splice(0)) wake()
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
  const contract = options.contract === true
  const phase = contract ? "contract ceiling" : "ceiling"
  // noAsyncTraces: otherwise every request (pulls included) builds Error objects just for stack traces.
  const connection = await connect({ servers: natsUrl, name: "bench-ceiling", noAsyncTraces: true })
  const jsm = await jetstreamManager(connection)
  const js = jetstream(connection, { timeout: 30_000 })
  const pool = openBenchPool(options.database, 6)
  const hub = startNodeProcess("ceiling fake hub", "fakes/run-fake-hub.ts", {
    cwd: options.cwd,
    env: { ...process.env, ...namingEnvironment(options.naming) },
    logPath: join(options.logDirectory, "ceiling-fake-hub.log"),
  })
  try {
    const streamsNeeded = contract
      ? [topology.streams.hubPayments, topology.streams.events]
      : [topology.streams.hubPayments]
    for (const definition of streamDefinitions(topology, defaultSettings.duplicateWindowMs, 1)) {
      if (streamsNeeded.includes(definition.name)) await jsm.streams.add(definition)
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
        if (contract) {
          const outboxId = randomUUID()
          const { settledCount, outgoing } = await inTransaction(pool, async (client) => {
            const settled = await settleResults(client, decoded, now)
            const outcomes = settled.flatMap((payment) => outcomeMessages(payment, topology))
            if (outcomes.length > 0) await insertOutbox(client, outboxId, outcomes)
            return { settledCount: settled.length, outgoing: outcomes }
          })
          written += settledCount
          lastWriteAt = performance.now()
          for (const message of messages) message.ack()
          await publisher.add(outgoing, () => pool.query("DELETE FROM outbox WHERE id = $1", [outboxId]))
          continue
        }
        written += await recordResults(pool, decoded, now)
        lastWriteAt = performance.now()
        for (const message of messages) message.ack()
      }
    }
    const jetStreamPublisher = new JetStreamPublisher(connection)
    const publisher = new MessagePublisher(jetStreamPublisher)
    const writing = writeResults()

    const writeAndPublish = async (rows: ReadonlyArray<DueRow>) => {
      const paymentIds = rows.map(() => randomUUID())
      const commands: Array<PaymentCommand> = rows.map((row, index) => ({
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
      }))
      const commandMessage = (command: PaymentCommand): PublishableMessage => ({
        subject: topology.subjects.hubCommand,
        msgId: `command:${command.paymentId}`,
        payload: JSON.stringify(command),
      })
      if (!contract) {
        await recordAttempts(pool, rows, paymentIds, now)
        await publisher.add(commands.map(commandMessage))
        return
      }
      const messages = commands.flatMap((command): Array<PublishableMessage> => {
        const eventId = randomUUID()
        return [
          commandMessage(command),
          {
            subject: topology.subjects.event("payment.requested"),
            msgId: eventId,
            payload: requestedEvent(command, eventId),
          },
        ]
      })
      const outboxId = randomUUID()
      await inTransaction(pool, async (client) => {
        await recordAttempts(client, rows, paymentIds, now)
        await insertOutbox(client, outboxId, messages)
      })
      await publisher.add(messages, () => pool.query("DELETE FROM outbox WHERE id = $1", [outboxId]))
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
          `${phase} stalled: ${written} of ${options.expected} results written, ${publisher.published} messages published, no progress for ${stallLimitMs / 1_000} s; fake hub output:\n${hub.tail(20)}`,
        )
      }
      if (performance.now() - lastProgress >= progressEveryMs) {
        lastProgress = performance.now()
        const elapsed = secondsSince(started)
        progress(
          phase,
          `${elapsed.toFixed(1)}s  published ${count(publisher.published)}  results ${count(written)}/${count(options.expected)}  ${count(written / elapsed)}/s`,
        )
      }
    }
    const [commandsPublishedSeconds] = await done
    // The last results' events and notifications, in the contract's form, are part of the work.
    await publisher.flushed()
    const budget = cpuBudget(budgetAtStart, cpuSnapshot(budgetProcesses), options.expected)
    await resultMessages.close()
    jetStreamPublisher.close()
    if (undecodable > 0) progress(phase, `${undecodable} undecodable results were terminated`)
    const seconds = (lastWriteAt - started) / 1_000
    return {
      payments: written,
      seconds,
      perSec: written / seconds,
      commandsPublishedSeconds,
      cpuBudget: budget,
      messagesPublished: publisher.published,
    }
  } finally {
    await hub.stop(10_000)
    await deleteStreamsOf(jsm, options.naming)
    await connection.drain().catch(() => undefined)
    await pool.end()
  }
}
