/**
 * The console's sign-in throttle per source address: how many sign-ins an
 * address (an IPv4 address, or an IPv6 /64) has tried in its current window,
 * in Postgres so that every engine instance counts the same attempts.
 * Successful sign-ins are taken back off the count; rows of past windows are
 * swept by the sign-ins themselves.
 */
import { type Kysely, sql } from "kysely"

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not import app types
export const up = async (db: Kysely<any>): Promise<void> => {
  await sql`
    CREATE TABLE console_sign_in_throttle (
      source text PRIMARY KEY,
      window_started_at timestamptz NOT NULL,
      attempts integer NOT NULL
    )`.execute(db)
  await sql`CREATE INDEX console_sign_in_throttle_by_window ON console_sign_in_throttle (window_started_at)`.execute(
    db,
  )
}

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not import app types
export const down = async (db: Kysely<any>): Promise<void> => {
  await sql`DROP TABLE console_sign_in_throttle`.execute(db)
}
