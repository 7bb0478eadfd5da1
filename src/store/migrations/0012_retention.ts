/**
 * Age indexes for the request log and the inbox, so the retention pruner
 * (src/store/Retention.ts) finds its oldest rows by walking an index instead
 * of scanning the table. Plain CREATE INDEX (migrations run in a transaction,
 * where CONCURRENTLY is not allowed) blocks writes to the table while it is
 * built: about a second per million rows on the reference machine.
 */
import { type Kysely, sql } from "kysely"

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not import app types
export const up = async (db: Kysely<any>): Promise<void> => {
  await sql`CREATE INDEX IF NOT EXISTS requests_created_at ON requests (created_at)`.execute(db)
  await sql`CREATE INDEX IF NOT EXISTS inbox_processed_at ON inbox (processed_at)`.execute(db)
}

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not import app types
export const down = async (db: Kysely<any>): Promise<void> => {
  await sql`DROP INDEX IF EXISTS requests_created_at`.execute(db)
  await sql`DROP INDEX IF EXISTS inbox_processed_at`.execute(db)
}
