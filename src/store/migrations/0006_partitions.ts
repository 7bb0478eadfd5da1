/**
 * Partitions and their leases, for running several engine instances.
 *
 * - `engine_instances`: every instance's heartbeat; the live ones share the partitions.
 * - `partition_layout`: how many partitions there are. Every instance must agree, so the first one
 *   to start writes it and the others check it.
 * - `partition_leases`: which instance owns each partition until when. The epoch grows with every
 *   change of owner, so a takeover is visible in the row and in logs.
 */
import { type Kysely, sql } from "kysely"

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not import app types
export const up = async (db: Kysely<any>): Promise<void> => {
  await sql`
    CREATE TABLE engine_instances (
      instance_id text PRIMARY KEY,
      started_at timestamptz NOT NULL DEFAULT now(),
      seen_at timestamptz NOT NULL DEFAULT now()
    )`.execute(db)
  await sql`
    CREATE TABLE partition_layout (
      id smallint PRIMARY KEY CHECK (id = 1),
      partition_count integer NOT NULL CHECK (partition_count BETWEEN 1 AND 4096)
    )`.execute(db)
  await sql`
    CREATE TABLE partition_leases (
      partition integer PRIMARY KEY,
      owner text,
      epoch bigint NOT NULL DEFAULT 0,
      expires_at timestamptz NOT NULL DEFAULT '-infinity',
      changed_at timestamptz NOT NULL DEFAULT now()
    )`.execute(db)
}
