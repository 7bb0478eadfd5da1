/**
 * The cluster secret engine instances sign their messages to each other
 * with, when `RP_CLUSTER_SECRET` is not set: random bytes the first
 * instance stores (see src/store/ClusterSecret.ts), so every instance on
 * the same database agrees without configuration. Text, like
 * `RP_CLUSTER_SECRET`, so an operator can move from one to the other.
 */
import { type Kysely, sql } from "kysely"

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not import app types
export const up = async (db: Kysely<any>): Promise<void> => {
  await sql`CREATE TABLE cluster_secret (
    id smallint PRIMARY KEY CHECK (id = 1),
    secret text NOT NULL CHECK (length(secret) >= 32),
    created_at timestamptz NOT NULL DEFAULT now()
  )`.execute(db)
}

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not import app types
export const down = async (db: Kysely<any>): Promise<void> => {
  await sql`DROP TABLE cluster_secret`.execute(db)
}
