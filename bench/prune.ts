/**
 * `npx tsx bench/prune.ts`: the retention pruner's rate on a large request log.
 *
 * Creates a database, migrates it, fills `requests` with PRUNE_ROWS (default
 * 1,000,000) rows spread evenly over the last 60 days (replies of ~400 bytes,
 * like a real subscription reply), times building the age index the 0015
 * migration adds, then prunes everything older than 30 days (half the table)
 * with RP_PRUNE_BATCH rows per statement (default 1,000) and no pause, and
 * prints the rate, the slowest statement and the time a write to the table
 * waited while pruning ran beside it. Drops the database at the end.
 */
import { randomBytes } from "node:crypto"
import { Effect } from "effect"
import { sql } from "kysely"
import pg from "pg"
import { makeKysely, migrateToLatest } from "../src/store/Database.ts"
import { deleteExpiredBatch, requestLogTable } from "../src/store/Retention.ts"

const server = process.env.BENCH_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432"
const rows = Number(process.env.PRUNE_ROWS ?? 1_000_000)
const batchSize = Number(process.env.RP_PRUNE_BATCH ?? 1_000)
const DAY = 24 * 3_600_000

const name = `rp_prune_${randomBytes(4).toString("hex")}`
const admin = new pg.Client({ connectionString: `${server}/postgres` })
await admin.connect()
await admin.query(`CREATE DATABASE ${name}`)
const db = makeKysely(`${server}/${name}`, 4)
try {
  await Effect.runPromise(migrateToLatest(db))
  await sql`DROP INDEX requests_created_at`.execute(db)
  let started = performance.now()
  await sql`
    INSERT INTO requests (channel, request_id, client_id, operation, request_hash, reply, created_at)
    SELECT 'mobile', 'req-' || i, 'client-' || (i % 50000), 'subscription.create', md5(i::text),
           repeat('x', 400), now() - (i::float8 / ${rows} * interval '60 days')
    FROM generate_series(1, ${rows}) AS i`.execute(db)
  await sql`VACUUM ANALYZE requests`.execute(db)
  const fillSeconds = (performance.now() - started) / 1000
  started = performance.now()
  await sql`CREATE INDEX requests_created_at ON requests (created_at)`.execute(db)
  const indexSeconds = (performance.now() - started) / 1000

  // A writer beside the pruner: one insert at a time, as requests arrive.
  let pruning = true
  let slowestWriteMs = 0
  let writes = 0
  const writer = (async () => {
    while (pruning) {
      const begun = performance.now()
      await sql`
        INSERT INTO requests (channel, request_id, client_id, operation, request_hash, reply)
        VALUES ('mobile', ${`live-${writes}`}, 'client-live', 'template.create', 'h', '{}')`.execute(db)
      slowestWriteMs = Math.max(slowestWriteMs, performance.now() - begun)
      writes++
    }
  })()

  started = performance.now()
  let deleted = 0
  let statements = 0
  let slowestStatementMs = 0
  for (;;) {
    const begun = performance.now()
    const count = await deleteExpiredBatch(db, requestLogTable, 30 * DAY, batchSize)
    slowestStatementMs = Math.max(slowestStatementMs, performance.now() - begun)
    statements++
    deleted += count
    if (count < batchSize) break
  }
  const pruneSeconds = (performance.now() - started) / 1000
  pruning = false
  await writer
  const left = await sql<{ count: string }>`SELECT count(*) AS count FROM requests`.execute(db)
  const report = {
    rows,
    batchSize,
    fillSeconds: Number(fillSeconds.toFixed(1)),
    indexBuildSeconds: Number(indexSeconds.toFixed(2)),
    deleted,
    statements,
    pruneSeconds: Number(pruneSeconds.toFixed(1)),
    rowsPerSecond: Math.round(deleted / pruneSeconds),
    meanStatementMs: Number(((pruneSeconds * 1000) / statements).toFixed(1)),
    slowestStatementMs: Number(slowestStatementMs.toFixed(1)),
    writesBeside: writes,
    slowestWriteMs: Number(slowestWriteMs.toFixed(1)),
    left: Number(left.rows[0]?.count),
  }
  console.table(Object.entries(report).map(([figure, value]) => ({ figure, value })))
  console.log(JSON.stringify(report))
} finally {
  await db.destroy()
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  await admin.end()
}
