/**
 * Trace context on outbox rows: the W3C `traceparent` of each message that
 * was caused by a traced channel request, keyed by the message's id, so that
 * a row republished after a crash still carries it. Null for the rows of the
 * month-start burst and everything else no request caused.
 */
import { type Kysely, sql } from "kysely"

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not import app types
export const up = async (db: Kysely<any>): Promise<void> => {
  // Nullable without a default: Postgres adds it without rewriting the table.
  await sql`ALTER TABLE outbox ADD COLUMN trace_context jsonb`.execute(db)
}

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not import app types
export const down = async (db: Kysely<any>): Promise<void> => {
  await sql`ALTER TABLE outbox DROP COLUMN trace_context`.execute(db)
}
