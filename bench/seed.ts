/**
 * Seeds a fresh benchmark database: N clients, each with one template and one
 * subscription. For the month-start burst the subscriptions are monthly
 * scheduled ones, all due at the same instant; for the threshold bench they
 * are threshold ones, each watching its own account. Rows go in with
 * `unnest` batches so 100,000 take seconds; the row contents follow what
 * `insertSubscription` writes.
 */
import { randomUUID } from "node:crypto"
import { resolve } from "node:path"
import { pathToFileURL } from "node:url"
import { Effect } from "effect"
import { Kysely, type Migration, PostgresDialect } from "kysely"
import pg from "pg"
import { nextDueAt } from "../src/actors/ScheduledPolicy.ts"
import {
  initialScheduledState,
  initialThresholdState,
  type ScheduledTerms,
  type ThresholdTerms,
} from "../src/domain/Subscription.ts"
import { defaultSettings } from "../src/EngineConfig.ts"
import { ensureDatabaseExists, migrateToLatest } from "../src/store/Database.ts"
import { migrations } from "../src/store/migrations/index.ts"
import type { Tables } from "../src/store/Tables.ts"

/** Engine time when the subscriptions were created: two days before the burst. */
export const seedNow = Date.parse("2026-12-30T00:00:00.000Z")

/** The instant every seeded subscription is due: 1 January 2027, 09:00 in Moscow. */
export const burstAt = "2027-01-01T06:00:00.000Z"

/** What every seeded subscription pays, and when. */
export const benchTerms: ScheduledTerms = {
  amount: { value: 150_000, currency: "RUB" },
  schedule: {
    every: "month",
    interval: 1,
    dayOfMonth: 1,
    time: "09:00",
    timezone: "Europe/Moscow",
    startDate: "2027-01-01",
  },
}

/** The provider every seeded template pays. */
export const benchProviderId = "bench-mobile"

const rowsPerBatch = 5_000

/** The server the bench databases live on; DATABASE_URL's database part is ignored. */
export const postgresServerUrl = (): string => {
  const url = new URL(process.env.BENCH_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/postgres")
  url.pathname = "/"
  return url.toString()
}

/** The connection URL of one bench database. */
export const databaseUrlFor = (database: string): string => new URL(database, postgresServerUrl()).toString()

/** A small connection pool on one bench database; the caller ends it. */
export const openBenchPool = (database: string, maxConnections: number): pg.Pool => {
  const pool = new pg.Pool({ connectionString: databaseUrlFor(database), max: maxConnections })
  // An idle connection closed by the server (a database dropped on interrupt) must not crash the bench.
  pool.on("error", () => undefined)
  return pool
}

/** What seeding did and how long it took. */
export interface SeedReport {
  readonly database: string
  readonly subscriptions: number
  readonly seconds: number
  readonly nextDueAt: string
}

const padded = (index: number) => String(index).padStart(7, "0")

/** The payee account of the `index`-th seeded subscription (threshold events name it too). */
export const benchAccount = (index: number): string => `+7900${padded(index)}`

/** What one kind of seeded subscription looks like; every row gets the same terms and state. */
interface SeedSpec {
  readonly kind: "scheduled" | "threshold"
  readonly terms: string
  readonly state: string
  readonly currency: string
  readonly nextDueAt: Date | null
  readonly providerOf: (index: number) => string
}

/**
 * The migrations the engine under test expects: `bench:ab` runs older builds, which refuse a database
 * that ran migrations they do not know, so it bundles each build's own (BENCH_MIGRATIONS_ENTRY).
 */
const benchMigrations = async (): Promise<Record<string, Migration>> => {
  const entry = process.env.BENCH_MIGRATIONS_ENTRY
  if (entry === undefined || entry === "") return migrations
  const bundle = (await import(pathToFileURL(resolve(entry)).href)) as {
    migrations: Record<string, Migration>
  }
  return bundle.migrations
}

/**
 * Creates `database`, migrates it with the engine's migrations and inserts
 * `count` clients, each with one template and one subscription as `spec`
 * says; returns the seconds it took.
 */
const seedSubscriptions = async (database: string, count: number, spec: SeedSpec): Promise<number> => {
  const started = performance.now()
  await Effect.runPromise(ensureDatabaseExists(databaseUrlFor(database)))
  if (process.env.BENCH_LOG_STATEMENTS === "1") {
    // Every statement's duration in the server log, for finding where Postgres spends its time.
    const admin = openBenchPool("postgres", 1)
    await admin.query(`ALTER DATABASE "${database}" SET log_min_duration_statement = 0`)
    await admin.end()
  }
  const pool = openBenchPool(database, 4)
  // Kysely only for the engine's own migrations; destroying it ends the pool.
  const db = new Kysely<Tables>({ dialect: new PostgresDialect({ pool }) })
  try {
    await Effect.runPromise(migrateToLatest(db, await benchMigrations()))
    const createdAt = new Date(seedNow)
    for (let first = 0; first < count; first += rowsPerBatch) {
      const size = Math.min(rowsPerBatch, count - first)
      const subscriptionIds: Array<string> = []
      const templateIds: Array<string> = []
      const clientIds: Array<string> = []
      const providerIds: Array<string> = []
      const accounts: Array<string> = []
      const sources: Array<string> = []
      for (let index = first; index < first + size; index += 1) {
        subscriptionIds.push(randomUUID())
        templateIds.push(randomUUID())
        clientIds.push(`bench-client-${padded(index)}`)
        providerIds.push(spec.providerOf(index))
        accounts.push(benchAccount(index))
        sources.push(`card-token-${padded(index)}`)
      }
      await pool.query(
        `INSERT INTO templates (id, client_id, name, provider_id, account, source, created_at, created_channel)
         SELECT t.id, t.client_id, 'Mobile ' || t.account, t.provider_id, t.account, t.source, $6, 'bench'
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[])
           AS t(id, client_id, provider_id, account, source)`,
        [templateIds, clientIds, providerIds, accounts, sources, createdAt],
      )
      await pool.query(
        `INSERT INTO subscriptions (id, client_id, kind, status, hidden, version, revision, template_id,
           provider_id, account, source, currency, terms, state, next_due_at, created_at, updated_at, created_channel)
         SELECT s.id, s.client_id, $7, 'active', false, 1, 1, s.template_id,
           s.provider_id, s.account, s.source, $8, $9::jsonb, $10::jsonb, $11, $12, $12, 'bench'
         FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::text[])
           AS s(id, client_id, template_id, provider_id, account, source)`,
        [
          subscriptionIds,
          clientIds,
          templateIds,
          providerIds,
          accounts,
          sources,
          spec.kind,
          spec.currency,
          spec.terms,
          spec.state,
          spec.nextDueAt,
          createdAt,
        ],
      )
    }
    await pool.query(
      "INSERT INTO engine_clock (id, now) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET now = EXCLUDED.now",
      [createdAt],
    )
    // Fresh statistics, so the planner sees 100k rows and not an empty table.
    await pool.query("ANALYZE")
    return (performance.now() - started) / 1_000
  } finally {
    await db.destroy()
  }
}

/** Creates `database`, migrates it with the engine's migrations and seeds `count` due subscriptions. */
export const seedBenchDatabase = async (database: string, count: number): Promise<SeedReport> => {
  const state = initialScheduledState(benchTerms, seedNow)
  const dueAt = nextDueAt("active", state, defaultSettings)
  if (dueAt === null) throw new Error("bench terms have no next due time: the seed is wrong")
  const seconds = await seedSubscriptions(database, count, {
    kind: "scheduled",
    terms: JSON.stringify(benchTerms),
    state: JSON.stringify(state),
    currency: benchTerms.amount.currency,
    nextDueAt: new Date(dueAt),
    providerOf: () => benchProviderId,
  })
  return { database, subscriptions: count, seconds, nextDueAt: new Date(dueAt).toISOString() }
}

/** Terms of every seeded threshold subscription: top up 500.00 RUB when the balance is under 100.00. */
export const thresholdBenchTerms: ThresholdTerms = {
  amount: { value: 50_000, currency: "RUB" },
  threshold: { value: 10_000, currency: "RUB" },
  cooldown: "PT1H",
}

/** The provider of the `index`-th seeded threshold subscription, one of `providers`. */
export const thresholdProviderOf = (index: number, providers: number): string =>
  `bench-mobile-${index % providers}`

/**
 * Creates `database`, migrates it and seeds `count` active threshold
 * subscriptions spread over `providers` providers: subscription i watches
 * `benchAccount(i)` at `thresholdProviderOf(i)`. Nothing is due by time.
 */
export const seedThresholdDatabase = async (
  database: string,
  count: number,
  providers: number,
): Promise<number> =>
  seedSubscriptions(database, count, {
    kind: "threshold",
    terms: JSON.stringify(thresholdBenchTerms),
    state: JSON.stringify(initialThresholdState),
    currency: thresholdBenchTerms.amount.currency,
    nextDueAt: null,
    providerOf: (index) => thresholdProviderOf(index, providers),
  })

/** Drops a bench database, closing any connection still open on it. */
export const dropBenchDatabase = async (database: string): Promise<void> => {
  const client = new pg.Client({ connectionString: databaseUrlFor("postgres") })
  await client.connect()
  try {
    await client.query(`DROP DATABASE IF EXISTS "${database.replaceAll('"', '""')}" WITH (FORCE)`)
  } finally {
    await client.end()
  }
}
