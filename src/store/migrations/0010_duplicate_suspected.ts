/**
 * Suspected duplicate payments: a retry sent before the hub reported that an earlier attempt of
 * the same occurrence succeeded. The retry's row names the attempt that paid, and the flag's
 * state: `suspected` (its result not known yet), `confirmed` (it succeeded too: the bank reverses
 * it), `cleared` (it moved no money), `resolved` (an operator recorded the reversal).
 */
import { type Kysely, sql } from "kysely"

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not import app types
export const up = async (db: Kysely<any>): Promise<void> => {
  // Nullable without defaults: Postgres adds them without rewriting the table.
  await sql`ALTER TABLE payments ADD COLUMN duplicate_of uuid`.execute(db)
  await sql`ALTER TABLE payments ADD COLUMN duplicate_state text
    CHECK (duplicate_state IN ('suspected', 'confirmed', 'cleared', 'resolved'))`.execute(db)
  await sql`ALTER TABLE payments ADD COLUMN duplicate_at timestamptz`.execute(db)
  // Flags are rare: the console's count and a subscription's flags read this small index only.
  await sql`CREATE INDEX payments_duplicates ON payments (subscription_id, duplicate_state)
    WHERE duplicate_state IS NOT NULL`.execute(db)
}

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not import app types
export const down = async (db: Kysely<any>): Promise<void> => {
  await sql`DROP INDEX IF EXISTS payments_duplicates`.execute(db)
  await sql`ALTER TABLE payments DROP COLUMN duplicate_at`.execute(db)
  await sql`ALTER TABLE payments DROP COLUMN duplicate_state`.execute(db)
  await sql`ALTER TABLE payments DROP COLUMN duplicate_of`.execute(db)
}
