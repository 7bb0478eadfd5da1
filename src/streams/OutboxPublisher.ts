/**
 * Publishes what the outbox holds, then forgets it.
 *
 * An outbox row holds every message one committed transaction caused (a
 * group commit's row can hold a thousand). Fast path: the committer hands
 * over the row it just wrote and its messages are published at once, many in
 * flight. Slow path: a sweeper re-reads rows that have sat in the table too
 * long (the process crashed, NATS was away, the in-memory queue was full) and
 * publishes them again, whole. Either way a message carries its stable
 * `Nats-Msg-Id`, so a second publish inside the stream's duplicate window is
 * dropped by JetStream, and a row is deleted only after every one of its
 * messages was acknowledged; when only some were, the row is cut down to the
 * rest.
 */
import { Context, Effect, Layer, Queue, Schedule, Schema } from "effect"
import { sql } from "kysely"
import { EngineConfig } from "../EngineConfig.ts"
import { Metrics } from "../observability/Metrics.ts"
import { Database } from "../store/Database.ts"
import { Dependencies } from "./Dependencies.ts"
import { type AckCallback, JetStreamPublisher } from "./JetStreamPublisher.ts"
import { Nats } from "./Nats.ts"
import { makeTopology } from "./Topology.ts"

/** A message in an outbox row, addressed and identified. */
export interface PublishableMessage {
  readonly subject: string
  readonly msgId: string
  /** The message's JSON text, serialized once when the transition is committed. */
  readonly payload: string
  /** W3C trace context, only on messages a traced channel request caused. */
  readonly traceparent?: string
}

/** The trace context column of an outbox row: `{ msgId: traceparent }`, or null when no message has one. */
export const traceContextText = (messages: ReadonlyArray<PublishableMessage>): string | null => {
  let traced: Record<string, string> | null = null
  for (const message of messages) {
    if (message.traceparent === undefined) continue
    traced ??= {}
    traced[message.msgId] = message.traceparent
  }
  return traced === null ? null : JSON.stringify(traced)
}

/** The outbox row's text: the messages as a JSON array, each body embedded as it is (not re-escaped). */
export const outboxText = (messages: ReadonlyArray<PublishableMessage>): string =>
  `[${messages
    .map(
      (message) =>
        `{"subject":${JSON.stringify(message.subject)},"msgId":${JSON.stringify(message.msgId)},"body":${message.payload}}`,
    )
    .join(",")}]`

/** One outbox row: the messages one committed transaction caused, in the order they must go out. */
export interface OutboxRow {
  readonly id: string
  readonly messages: ReadonlyArray<PublishableMessage>
}

const StoredMessages = Schema.fromJsonString(
  Schema.Array(Schema.Struct({ subject: Schema.String, msgId: Schema.String, body: Schema.Unknown })),
)
const decodeStored = Schema.decodeUnknownSync(StoredMessages)
const decodeStoredMessages = (
  text: string,
  traceContext: Readonly<Record<string, string>> | null,
): ReadonlyArray<PublishableMessage> =>
  decodeStored(text).map((message) => {
    const traceparent = traceContext?.[message.msgId]
    const stored = { subject: message.subject, msgId: message.msgId, payload: JSON.stringify(message.body) }
    return typeof traceparent === "string" ? { ...stored, traceparent } : stored
  })

/** Rows one publish worker takes at a time (each may hold a group commit's worth of messages). */
const rowsPerTake = 8
/** Messages waiting for a publish worker, at most; the table holds the rest until a sweep. */
const maxQueuedMessages = 100_000
/** Messages one sweep loads, about: a single row larger than this is still loaded alone. */
const sweepMessageBudget = 10_000
/** Rows one sweep considers. */
const sweepRowLimit = 1_000

/** Counters for progress lines and benchmarks. */
export interface OutboxStats {
  readonly published: number
  readonly duplicates: number
  readonly failures: number
}

/** The outbox publisher. */
export class OutboxPublisher extends Context.Service<
  OutboxPublisher,
  {
    /** Hands freshly committed rows to the publisher (never blocks: the table is the backstop). */
    readonly enqueue: (rows: ReadonlyArray<OutboxRow>) => Effect.Effect<void>
    /** Rows still waiting in the table (for drain checks). */
    readonly backlog: Effect.Effect<number>
    readonly stats: Effect.Effect<OutboxStats>
  }
>()("rp/streams/OutboxPublisher") {
  static readonly layer = Layer.effect(
    OutboxPublisher,
    Effect.gen(function* () {
      const config = yield* EngineConfig
      const { db, use } = yield* Database
      const { connection } = yield* Nats
      const metrics = yield* Metrics
      const dependencies = yield* Dependencies
      // Topology is built beside this layer, not under it; the names are a pure function of the config.
      const { hubCommand } = makeTopology(config.naming).subjects
      const publisher = yield* Effect.acquireRelease(
        Effect.sync(() => new JetStreamPublisher(connection)),
        // On shutdown, publishes already sent get a few seconds to be acknowledged; whatever is
        // still open stays in the table and goes out at the next start.
        (publisher) =>
          Effect.promise(() => publisher.drained(5_000)).pipe(
            Effect.andThen(Effect.sync(() => publisher.close())),
          ),
      )
      const queue = yield* Queue.unbounded<OutboxRow>()
      // Bounded by messages, not rows: past this, rows wait in the table for the sweeper.
      let queuedMessages = 0
      const known = new Set<string>()
      const publishedNotDeleted = new Set<string>()
      const counters = { published: 0, duplicates: 0, failures: 0 }

      /** Keeps only `left` of a row whose other messages are acknowledged; the row stays either way. */
      const shrink = (row: OutboxRow, left: ReadonlyArray<PublishableMessage>) =>
        sql`UPDATE outbox SET messages = ${outboxText(left)}, message_count = ${left.length}, trace_context = ${traceContextText(left)}::jsonb WHERE id = ${row.id}`
          .execute(db)
          .catch(() => undefined)

      /**
       * Publishes a row's messages, all in flight at once; resolves when each has its ack or its
       * failure. Sent in order on one connection, so a command still reaches its stream before the
       * events about it; repeats of anything published before are dropped by message id.
       */
      const publishRow = (row: OutboxRow) =>
        new Promise<{ readonly row: OutboxRow; readonly ok: boolean; readonly error?: unknown }>(
          (resolve) => {
            const { messages } = row
            let pending = messages.length
            let failed: Array<boolean> | undefined
            let error: unknown
            const finish = () => {
              if (failed === undefined) return resolve({ row, ok: true })
              counters.failures += 1
              const left = messages.filter((_, index) => failed?.[index] === true)
              // A row can hold a whole batch: what was acknowledged is not sent again and again
              // (past the duplicate window that would store repeats) while one message keeps failing.
              if (left.length < messages.length)
                void shrink(row, left).then(() => resolve({ row, ok: false, error }))
              else resolve({ row, ok: false, error })
            }
            if (pending === 0) return finish()
            messages.forEach((message, index) => {
              const done: AckCallback = (failure, ack) => {
                if (ack !== undefined) {
                  if (ack.duplicate) counters.duplicates += 1
                  else {
                    counters.published += 1
                    if (message.subject === hubCommand) metrics.commandsPublished(1)
                  }
                } else {
                  failed ??= []
                  failed[index] = true
                  error = failure
                }
                pending -= 1
                if (pending === 0) finish()
              }
              publisher.send(message.subject, message.payload, message.msgId, done, message.traceparent)
            })
          },
        )

      const publishRows = (rows: ReadonlyArray<OutboxRow>) =>
        Effect.promise(async () => {
          const settled = await Promise.all(rows.map(publishRow))
          const done = settled.filter((entry) => entry.ok).map((entry) => entry.row.id)
          const failed = settled.filter((entry) => !entry.ok)
          try {
            if (done.length > 0) await sql`DELETE FROM outbox WHERE id = ANY(${done}::uuid[])`.execute(db)
          } catch {
            // Published but still in the table (Postgres is away): they stay known, so no sweep
            // publishes them again, and their delete is retried. Republished after a long outage
            // they would be stored twice, once the streams' duplicate window had passed.
            for (const id of done) publishedNotDeleted.add(id)
            return failed
          }
          for (const id of done) known.delete(id)
          return failed
        })

      const worker = Effect.forever(
        Effect.gen(function* () {
          const rows = yield* Queue.takeBetween(queue, 1, rowsPerTake)
          for (const row of rows) queuedMessages -= row.messages.length
          const failed = yield* publishRows(rows).pipe(
            Effect.catchCause((cause) =>
              Effect.logError("outbox publish batch failed", cause).pipe(
                Effect.as(rows.map((row) => ({ row, error: cause }))),
              ),
            ),
          )
          if (failed.length > 0) {
            yield* Effect.logWarning(
              "outbox publish failed; the rows stay in the table and will be retried",
            ).pipe(Effect.annotateLogs({ rows: failed.length, error: String(failed[0]?.error) }))
            // Leave them to the sweeper, which retries at its own pace.
            for (const entry of failed) known.delete(entry.row.id)
          }
        }),
      )

      /**
       * Republishes rows older than `minimumAgeMs` that the fast path does not hold, oldest
       * first, loading at most about `sweepMessageBudget` messages; true when more may be left.
       */
      /** Deletes the rows published before whose delete failed; they are known until it succeeds. */
      const deletePublished = Effect.suspend(() => {
        if (publishedNotDeleted.size === 0) return Effect.void
        const ids = [...publishedNotDeleted]
        return use((runner) => runner.deleteFrom("outbox").where("id", "in", ids).execute()).pipe(
          Effect.andThen(
            Effect.sync(() => {
              for (const id of ids) {
                publishedNotDeleted.delete(id)
                known.delete(id)
              }
            }),
          ),
        )
      })

      const sweep = (minimumAgeMs: number) =>
        Effect.gen(function* () {
          yield* deletePublished
          // Sizes first: one row may hold a whole batch's messages, so what is loaded is chosen by them.
          const candidates = yield* use((runner) =>
            runner
              .selectFrom("outbox")
              .select(["id", "message_count"])
              .where("created_at", "<", sql<Date>`now() - ${`${minimumAgeMs} milliseconds`}::interval`)
              .orderBy("created_at")
              .orderBy("id")
              .limit(sweepRowLimit)
              .execute(),
          )
          const chosen: Array<string> = []
          let messages = 0
          let more = candidates.length === sweepRowLimit
          for (const candidate of candidates) {
            if (known.has(candidate.id)) continue
            if (chosen.length > 0 && messages + candidate.message_count > sweepMessageBudget) {
              more = true
              break
            }
            chosen.push(candidate.id)
            messages += candidate.message_count
          }
          if (chosen.length === 0) return false
          const rows = yield* use((runner) =>
            runner
              .selectFrom("outbox")
              .select(["id", "messages", "trace_context"])
              .where("id", "in", chosen)
              .execute(),
          )
          const stale = rows.map((row) => ({
            id: row.id,
            messages: decodeStoredMessages(row.messages, row.trace_context),
          }))
          for (const row of stale) known.add(row.id)
          yield* Effect.logInfo("republishing outbox rows").pipe(
            Effect.annotateLogs({ rows: stale.length, messages }),
          )
          const failed = yield* publishRows(stale)
          for (const entry of failed) known.delete(entry.row.id)
          return more && failed.length === 0
        })

      /** Sweeps again at once while a sweep left rows behind (a backlog after a crash or an outage). */
      const sweepAll = (minimumAgeMs: number): Effect.Effect<void> =>
        sweep(minimumAgeMs).pipe(Effect.flatMap((more) => (more ? sweepAll(minimumAgeMs) : Effect.void)))

      for (let index = 0; index < config.publishWorkers; index++) yield* Effect.forkScoped(worker)
      // While Postgres or NATS is away a sweep can only fail (or pile copies into the client's
      // reconnect buffer): the rows wait in the table, and sweeping resumes once both answer.
      const sweepSafely = (minimumAgeMs: number) =>
        Effect.suspend(() =>
          dependencies.down().size > 0
            ? Effect.void
            : sweepAll(minimumAgeMs).pipe(
                Effect.catchCause((cause) => Effect.logError("outbox sweep failed", cause)),
              ),
        )
      // The first sweep takes everything: whatever is there was left by a previous run.
      yield* Effect.forkScoped(
        sweepSafely(0).pipe(
          Effect.andThen(
            Effect.repeat(
              sweepSafely(config.outboxSweepAgeMs),
              Schedule.spaced(config.outboxSweepIntervalMs),
            ),
          ),
        ),
      )
      yield* Effect.logInfo("outbox publisher ready").pipe(
        Effect.annotateLogs({ workers: config.publishWorkers }),
      )

      return OutboxPublisher.of({
        enqueue: (rows) =>
          Effect.sync(() => {
            for (const row of rows) {
              if (queuedMessages + row.messages.length > maxQueuedMessages) continue
              known.add(row.id)
              queuedMessages += row.messages.length
              Queue.offerUnsafe(queue, row)
            }
          }),
        backlog: use((runner) =>
          runner
            .selectFrom("outbox")
            .select(sql<number>`count(*)::int`.as("count"))
            .executeTakeFirstOrThrow(),
        ).pipe(Effect.map((row) => row.count)),
        stats: Effect.sync(() => ({ ...counters })),
      })
    }),
  )
}
