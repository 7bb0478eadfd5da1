/**
 * The channel registry: which channels may talk to the engine, what each may
 * do, and the Ed25519 key each must sign with (none: unsigned).
 *
 * Every engine instance keeps the registry in memory. A trigger notifies
 * `rp_channels` on any change, however it was made (the CLI or plain SQL),
 * so instances reload at once; they also reload on a timer in case a
 * notification is missed.
 */
import { type Kysely, sql } from "kysely"

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not import app types
export const up = async (db: Kysely<any>): Promise<void> => {
  await sql`
    CREATE TABLE channels (
      id text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$'),
      display_name text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
      operations text[] NOT NULL,
      public_key text,
      disabled_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      key_rotated_at timestamptz
    )`.execute(db)

  await sql`
    CREATE FUNCTION rp_channels_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_notify('rp_channels', '');
      RETURN NULL;
    END $$`.execute(db)

  await sql`
    CREATE TRIGGER channels_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON channels
    FOR EACH STATEMENT EXECUTE FUNCTION rp_channels_changed()`.execute(db)
}

// biome-ignore lint/suspicious/noExplicitAny: see up
export const down = async (db: Kysely<any>): Promise<void> => {
  await sql`DROP TABLE IF EXISTS channels`.execute(db)
  await sql`DROP FUNCTION IF EXISTS rp_channels_changed()`.execute(db)
}
