/**
 * A leaner write path for the month-start burst. Frozen once released.
 *
 * The outbox keeps one row per group-commit transaction instead of one per
 * transition, so a row can hold a thousand messages: `message_count` lets the
 * sweeper bound what it loads by messages rather than by rows. Payment
 * pages keep room for the result's update.
 */
import { type Kysely, sql } from "kysely"

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not import app types
export const up = async (db: Kysely<any>): Promise<void> => {
  await sql`ALTER TABLE outbox ADD COLUMN message_count integer`.execute(db)
  // Rows left by an engine that wrote one row per transition keep working as they are.
  await sql`UPDATE outbox SET message_count = json_array_length(messages::json)`.execute(db)
  await sql`ALTER TABLE outbox ALTER COLUMN message_count SET NOT NULL`.execute(db)
  // A batch's messages are a few hundred kB of JSON, stored out of line. The default pglz made
  // compressing them most of the insert's cost; lz4 is several times cheaper and still shrinks the
  // write. A server built without lz4 stores them uncompressed instead, which is cheaper than pglz too.
  const lz4 = await sql<{ available: boolean }>`
    SELECT 'lz4' = ANY(enumvals) AS available FROM pg_settings WHERE name = 'default_toast_compression'`.execute(
    db,
  )
  if (lz4.rows[0]?.available === true) {
    await sql`ALTER TABLE outbox ALTER COLUMN messages SET COMPRESSION lz4`.execute(db)
  } else {
    await sql`ALTER TABLE outbox ALTER COLUMN messages SET STORAGE EXTERNAL`.execute(db)
  }
  // A payment row is written once and updated once or twice (its result, a status query). With
  // half of each page free the update fits beside the row and is heap-only: no entries in the
  // primary key or the (subscription, occurrence, attempt) index. The table is larger for it.
  await sql`ALTER TABLE payments SET (fillfactor = 50)`.execute(db)
}

// biome-ignore lint/suspicious/noExplicitAny: see up
export const down = async (db: Kysely<any>): Promise<void> => {
  await sql`ALTER TABLE payments SET (fillfactor = 70)`.execute(db)
  await sql`ALTER TABLE outbox DROP COLUMN message_count`.execute(db)
}
