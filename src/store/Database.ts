/**
 * The Postgres connection pool and the Kysely instance over it, as a scoped
 * service: the pool is created when the engine starts (never at module load)
 * and ended when its scope closes.
 *
 * Infrastructure failures (connection lost, constraint violated by a bug)
 * become defects here: callers see only domain errors, and whoever runs a
 * unit of work decides whether to retry it, nak it or crash.
 */
import { Context, Effect, Layer, Redacted } from "effect"
import { Kysely, type Migration, Migrator, PostgresDialect, type Transaction } from "kysely"
import pg from "pg"
import { EngineConfig } from "../EngineConfig.ts"
import { migrations } from "./migrations/index.ts"
import type { Tables } from "./Tables.ts"

const INT8_OID = 20

// int8 arrives as text; numbers beyond 2^53 would silently round, which for money is a defect.
const parseInt8 = (text: string): number => {
  const value = Number(text)
  if (!Number.isSafeInteger(value))
    throw new RangeError(`int8 value ${text} is outside the safe integer range`)
  return value
}

const typeParsers = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === INT8_OID
      ? parseInt8
      : pg.types.getTypeParser(oid, format ?? "text")) as typeof pg.types.getTypeParser,
}

/** A Kysely instance over a new pool, with the engine's type parsing (int8 as safe numbers). */
export const makeKysely = (url: string, poolSize: number): Kysely<Tables> => {
  const pool = new pg.Pool({ connectionString: url, max: poolSize, types: typeParsers })
  // An idle connection the server closes (a restart, a terminated backend, a dropped test database)
  // is an 'error' on the pool: without a listener Node would crash the process. The pool discards
  // that connection and opens a new one on the next query; a query that was running fails on its own.
  pool.on("error", (error) => {
    console.warn(
      `postgres: an idle connection was closed by the server (${error.message}); it will be replaced`,
    )
  })
  // The pool listens only to idle connections: one checked out (a transaction between two statements,
  // a query just finished) that the server closes emits 'error' on the client itself, and with no
  // listener that crashed the process (fault scenario 4: terminated backends mid-burst). Ignoring it
  // here is safe: the connection is marked unusable, its current or next query fails (a defect the
  // caller retries), and the pool discards it when it is released instead of handing it out again.
  pool.on("connect", (client) => {
    client.on("error", () => undefined)
  })
  return new Kysely<Tables>({ dialect: new PostgresDialect({ pool }) })
}

/** The database, ready to use: migrated, pooled. */
export interface DatabaseService {
  readonly db: Kysely<Tables>
  /** Runs a query function; a rejected promise becomes a defect. */
  readonly use: <A>(run: (db: Kysely<Tables>) => Promise<A>) => Effect.Effect<A>
  /** Runs `run` in one transaction; a rejected promise rolls back and becomes a defect. */
  readonly transaction: <A>(run: (trx: Transaction<Tables>) => Promise<A>) => Effect.Effect<A>
}

/** Creates the target database when it does not exist yet (safe when several instances race). */
export const ensureDatabaseExists = (url: string): Effect.Effect<void> =>
  Effect.promise(async () => {
    const target = new URL(url)
    const name = decodeURIComponent(target.pathname.replace(/^\//, ""))
    if (name === "") return
    const maintenance = new URL(url)
    maintenance.pathname = "/postgres"
    const client = new pg.Client({ connectionString: maintenance.toString() })
    await client.connect()
    try {
      const existing = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name])
      if (existing.rowCount === 0) {
        await client
          .query(`CREATE DATABASE "${name.replaceAll('"', '""')}"`)
          .catch((error: { code?: string }) => {
            // 42P04: created by a concurrent instance; 23505: the same race seen through pg_database's unique index.
            if (error.code !== "42P04" && error.code !== "23505") throw error
          })
      }
    } finally {
      await client.end()
    }
  })

/** Brings the schema to the latest migration under Kysely's advisory lock. */
export const migrateToLatest = (
  db: Kysely<Tables>,
  migrationSet: Record<string, Migration> = migrations,
): Effect.Effect<ReadonlyArray<string>> =>
  Effect.promise(async () => {
    const migrator = new Migrator({
      db,
      provider: { getMigrations: async () => migrationSet },
      migrationTableName: "rp_migrations",
      migrationLockTableName: "rp_migrations_lock",
      // Migrations are numbered when written and may land in another order (each one stands alone),
      // so a database that ran 0005 before 0004 existed still takes 0004 instead of refusing to start.
      allowUnorderedMigrations: true,
    })
    const { error, results } = await migrator.migrateToLatest()
    if (error !== undefined) throw error
    return (results ?? [])
      .filter((result) => result.status === "Success")
      .map((result) => result.migrationName)
  })

/** The engine's database service. */
export class Database extends Context.Service<Database, DatabaseService>()("rp/store/Database") {
  /** Creates the database if missing, opens the pool and migrates it. */
  static readonly layer = Layer.effect(
    Database,
    Effect.gen(function* () {
      const config = yield* EngineConfig
      const url = Redacted.value(config.databaseUrl)
      yield* ensureDatabaseExists(url)
      const db = yield* Effect.acquireRelease(
        Effect.sync(() => makeKysely(url, config.dbPoolSize)),
        (db) => Effect.promise(() => db.destroy()),
      )
      const applied = yield* migrateToLatest(db)
      yield* Effect.logInfo("database ready").pipe(
        Effect.annotateLogs({ migrationsApplied: applied.length, pool: config.dbPoolSize }),
      )
      return Database.of({
        db,
        use: (run) => Effect.promise(() => run(db)),
        transaction: (run) => Effect.promise(() => db.transaction().execute(run)),
      })
    }),
  )
}
