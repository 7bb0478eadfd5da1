/**
 * The month a payment's amount counts toward the client's monthly spend, when a monthly limit
 * applied as it was sent (null otherwise). A failure gives the amount back to that month; a
 * success reported after the failure counts it there again, and only then.
 */
import { type Kysely, sql } from "kysely"

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not import app types
export const up = async (db: Kysely<any>): Promise<void> => {
  // Nullable without a default: Postgres adds it without rewriting the table.
  await sql`ALTER TABLE payments ADD COLUMN spend_month text`.execute(db)
}

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not import app types
export const down = async (db: Kysely<any>): Promise<void> => {
  await sql`ALTER TABLE payments DROP COLUMN spend_month`.execute(db)
}
