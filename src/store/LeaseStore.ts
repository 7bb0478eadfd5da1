/**
 * Partition leases in Postgres: instances' heartbeats and who owns which
 * partition until when.
 *
 * Every time here is the database's (`now()`), never an instance's wall
 * clock, so instances whose clocks disagree still agree on who is live and
 * when a lease has run out.
 */
import { Context, Effect, Layer } from "effect"
import { sql } from "kysely"
import { Database } from "./Database.ts"

/** `partitionOf` (domain/Partition.ts) of the `id` column, for queries that keep to some partitions. */
export const partitionSql = (count: number) =>
  sql<number>`((('x' || right(id::text, 7))::bit(28)::int) % ${count}::int)`

/** One partition's lease as the table holds it. */
export interface Lease {
  readonly partition: number
  readonly owner: string | null
  readonly epoch: number
  readonly expiresAt: Date
  /** Whether the lease is in force right now (by the database's clock). */
  readonly held: boolean
}

/** A partition this instance has just taken, and the epoch it took it at. */
export interface Acquired {
  readonly partition: number
  readonly epoch: number
}

export class LeaseStore extends Context.Service<
  LeaseStore,
  {
    /**
     * Creates the leases of `count` partitions if this is the first instance ever; refuses to go on when
     * the database was laid out for another count (two layouts at once would split subscriptions wrongly).
     */
    readonly ensureLayout: (count: number) => Effect.Effect<number>
    /** Records that `instance` is alive and returns every instance seen within `ttlMs`, itself included. */
    readonly heartbeat: (instance: string, ttlMs: number) => Effect.Effect<ReadonlyArray<string>>
    /** Extends the leases `instance` still holds among `partitions`; returns those it still holds. */
    readonly renew: (
      instance: string,
      partitions: ReadonlyArray<number>,
      ttlMs: number,
    ) => Effect.Effect<ReadonlyArray<number>>
    /** Takes those of `partitions` that are free, expired or already its own; a new owner raises the epoch. */
    readonly acquire: (
      instance: string,
      partitions: ReadonlyArray<number>,
      ttlMs: number,
    ) => Effect.Effect<ReadonlyArray<Acquired>>
    /** Gives `partitions` up at once, so the next owner need not wait for them to expire. */
    readonly release: (instance: string, partitions: ReadonlyArray<number>) => Effect.Effect<void>
    /** Says `instance` is gone: its heartbeat is removed and its leases released. */
    readonly leave: (instance: string) => Effect.Effect<void>
    /** Every lease, in partition order. */
    readonly leases: Effect.Effect<ReadonlyArray<Lease>>
  }
>()("rp/store/LeaseStore") {
  static readonly layer = Layer.effect(
    LeaseStore,
    Effect.gen(function* () {
      const { use, transaction } = yield* Database
      const interval = (ms: number) => `${Math.max(1, Math.round(ms))} milliseconds`

      return LeaseStore.of({
        ensureLayout: (count) =>
          transaction(async (trx) => {
            await sql`INSERT INTO partition_layout (id, partition_count) VALUES (1, ${count})
                      ON CONFLICT (id) DO NOTHING`.execute(trx)
            const layout = await trx
              .selectFrom("partition_layout")
              .select("partition_count")
              .where("id", "=", 1)
              .executeTakeFirstOrThrow()
            if (layout.partition_count === count) {
              await sql`INSERT INTO partition_leases (partition)
                        SELECT generate_series(0, ${count - 1}) ON CONFLICT (partition) DO NOTHING`.execute(
                trx,
              )
            }
            return layout.partition_count
          }),
        heartbeat: (instance, ttlMs) =>
          use(async (db) => {
            await sql`INSERT INTO engine_instances (instance_id) VALUES (${instance})
                      ON CONFLICT (instance_id) DO UPDATE SET seen_at = now()`.execute(db)
            const live = await sql<{ instance_id: string }>`
              SELECT instance_id FROM engine_instances
              WHERE seen_at > now() - ${interval(ttlMs)}::interval
              ORDER BY instance_id`.execute(db)
            return live.rows.map((row) => row.instance_id)
          }),
        renew: (instance, partitions, ttlMs) =>
          partitions.length === 0
            ? Effect.succeed([])
            : use(async (db) => {
                const renewed = await sql<{ partition: number }>`
                  UPDATE partition_leases SET expires_at = now() + ${interval(ttlMs)}::interval
                  WHERE owner = ${instance} AND partition = ANY(${[...partitions]}::int[])
                  RETURNING partition`.execute(db)
                return renewed.rows.map((row) => row.partition)
              }),
        acquire: (instance, partitions, ttlMs) =>
          partitions.length === 0
            ? Effect.succeed([])
            : use(async (db) => {
                const taken = await sql<{ partition: number; epoch: string | number }>`
                  UPDATE partition_leases
                  SET epoch = CASE WHEN owner IS DISTINCT FROM ${instance} THEN epoch + 1 ELSE epoch END,
                      owner = ${instance},
                      expires_at = now() + ${interval(ttlMs)}::interval,
                      changed_at = now()
                  WHERE partition = ANY(${[...partitions]}::int[])
                    AND (owner IS NULL OR owner = ${instance} OR expires_at < now())
                  RETURNING partition, epoch`.execute(db)
                return taken.rows.map((row) => ({ partition: row.partition, epoch: Number(row.epoch) }))
              }),
        release: (instance, partitions) =>
          partitions.length === 0
            ? Effect.void
            : use((db) =>
                sql`UPDATE partition_leases SET owner = NULL, expires_at = '-infinity', changed_at = now()
                    WHERE owner = ${instance} AND partition = ANY(${[...partitions]}::int[])`.execute(db),
              ).pipe(Effect.asVoid),
        leave: (instance) =>
          transaction(async (trx) => {
            await sql`UPDATE partition_leases SET owner = NULL, expires_at = '-infinity', changed_at = now()
                      WHERE owner = ${instance}`.execute(trx)
            await sql`DELETE FROM engine_instances WHERE instance_id = ${instance}`.execute(trx)
          }),
        leases: use(async (db) => {
          const rows = await sql<{
            partition: number
            owner: string | null
            epoch: string | number
            expires_at: Date
            held: boolean
          }>`SELECT partition, owner, epoch, expires_at, (owner IS NOT NULL AND expires_at > now()) AS held
             FROM partition_leases ORDER BY partition`.execute(db)
          return rows.rows.map((row) => ({
            partition: row.partition,
            owner: row.owner,
            epoch: Number(row.epoch),
            expiresAt: row.expires_at,
            held: row.held,
          }))
        }),
      })
    }),
  )
}
