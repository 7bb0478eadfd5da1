/**
 * Retention of the two tables that only ever grow: the request log
 * (idempotency of channel requests) and the inbox (inbound messages already
 * processed). A background fiber deletes what is older than its retention in
 * small batches through the age index, pausing between batches, so no
 * statement holds locks for long or competes with the write path for more
 * than a moment. Several instances may prune at once: a batch skips the rows
 * another has locked, so they share the work instead of waiting on each other.
 *
 * Retention is about storage, so ages are measured on the database's wall
 * clock (`now()`, the same clock that stamped the rows), not on engine time,
 * which drives the business rules and may be far from the wall clock in tests
 * and catch-ups.
 */
import { Duration, Effect, Layer, Schedule } from "effect"
import { type Kysely, sql } from "kysely"
import { EngineConfig } from "../EngineConfig.ts"
import { Database } from "./Database.ts"
import type { Tables } from "./Tables.ts"

/** A table kept for a limited time, and the column that says how old a row is. */
export interface RetainedTable {
  readonly table: "requests" | "inbox"
  readonly stampedAt: "created_at" | "processed_at"
}

export const requestLogTable: RetainedTable = { table: "requests", stampedAt: "created_at" }
export const inboxTable: RetainedTable = { table: "inbox", stampedAt: "processed_at" }

/**
 * Deletes at most `batchSize` rows of `target` older than `retentionMs`, oldest first, skipping rows
 * another transaction holds; returns how many it deleted.
 */
export const deleteExpiredBatch = async (
  db: Kysely<Tables>,
  target: RetainedTable,
  retentionMs: number,
  batchSize: number,
): Promise<number> => {
  const table = sql.table(target.table)
  const stampedAt = sql.ref(target.stampedAt)
  // The inner select walks the age index from its oldest end and stops after `batchSize` rows;
  // the delete then reaches exactly those rows by their physical address (a TID scan).
  const result = await sql`
    DELETE FROM ${table} WHERE ctid = ANY(ARRAY(
      SELECT ctid FROM ${table}
      WHERE ${stampedAt} < now() - make_interval(secs => ${retentionMs / 1000})
      ORDER BY ${stampedAt}
      LIMIT ${batchSize}
      FOR UPDATE SKIP LOCKED))`.execute(db)
  return Number(result.numAffectedRows ?? 0)
}

/** Prunes `target` batch by batch until a batch comes back short; returns the total deleted. */
export const pruneExpired = (
  use: <A>(run: (db: Kysely<Tables>) => Promise<A>) => Effect.Effect<A>,
  target: RetainedTable,
  retentionMs: number,
  batchSize: number,
  pauseMs: number,
): Effect.Effect<number> =>
  Effect.gen(function* () {
    let total = 0
    for (;;) {
      const deleted = yield* use((db) => deleteExpiredBatch(db, target, retentionMs, batchSize))
      total += deleted
      if (deleted < batchSize) return total
      yield* Effect.sleep(Duration.millis(pauseMs))
    }
  })

/** The background pruner of the request log and the inbox; runs while the engine does. */
export const RetentionPruner = Layer.effectDiscard(
  Effect.gen(function* () {
    const config = yield* EngineConfig
    const { use } = yield* Database
    const targets: ReadonlyArray<readonly [RetainedTable, number]> = [
      [requestLogTable, config.requestLogRetentionMs],
      [inboxTable, config.inboxRetentionMs],
    ]
    const round = Effect.forEach(
      targets,
      ([target, retentionMs]) =>
        pruneExpired(use, target, retentionMs, config.pruneBatchSize, config.prunePauseMs).pipe(
          Effect.tap((deleted) =>
            deleted > 0
              ? Effect.logInfo("expired rows pruned").pipe(
                  Effect.annotateLogs({ table: target.table, deleted }),
                )
              : Effect.void,
          ),
          // A failed round (database away) is tried again at the next one; nothing is lost by waiting.
          Effect.catchCause((cause) =>
            Effect.logWarning("pruning expired rows failed", cause).pipe(
              Effect.annotateLogs({ table: target.table }),
            ),
          ),
        ),
      { discard: true },
    )
    yield* Effect.forkScoped(Effect.repeat(round, Schedule.spaced(Duration.millis(config.pruneIntervalMs))))
  }),
)
