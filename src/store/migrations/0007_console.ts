/**
 * The operator console.
 *
 * - Operators: the bank's staff who sign in to the console, each with one
 *   role (viewer, operator, admin) and a scrypt hash of their password. The
 *   failure counter and lock-out time live on the row so every engine
 *   instance enforces the same lock-out.
 * - Sessions: server-side, keyed by a hash of the cookie's token (a leaked
 *   table does not let anyone sign in), with the session's CSRF token.
 * - The audit log: every change made in the console, who made it and why.
 * - Engine settings: an admin's override of the spending limits and of the
 *   retry schedule (null: the environment's value stays in force). A trigger
 *   notifies `rp_engine_settings` so every instance re-reads it at once.
 * - Decisions name the operator and the reason when a change was made in
 *   the console on a client's behalf.
 * - Subscriptions can be found by payee account.
 */
import { type Kysely, sql } from "kysely"

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not import app types
export const up = async (db: Kysely<any>): Promise<void> => {
  await sql`
    CREATE TABLE operators (
      login text PRIMARY KEY CHECK (login ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
      role text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
      password_hash text NOT NULL,
      failed_attempts integer NOT NULL DEFAULT 0,
      locked_until timestamptz,
      disabled_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      last_login_at timestamptz
    )`.execute(db)

  await sql`
    CREATE TABLE operator_sessions (
      token_hash text PRIMARY KEY,
      login text NOT NULL REFERENCES operators (login) ON DELETE CASCADE,
      csrf_token text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      last_seen_at timestamptz NOT NULL DEFAULT now(),
      expires_at timestamptz NOT NULL
    )`.execute(db)
  await sql`CREATE INDEX operator_sessions_by_login ON operator_sessions (login)`.execute(db)

  await sql`
    CREATE TABLE audit_log (
      id bigserial PRIMARY KEY,
      at timestamptz NOT NULL DEFAULT now(),
      operator text NOT NULL,
      action text NOT NULL,
      target text NOT NULL,
      client_id text,
      reason text,
      details jsonb NOT NULL DEFAULT '{}'
    )`.execute(db)
  await sql`CREATE INDEX audit_log_newest ON audit_log (at DESC, id DESC)`.execute(db)

  await sql`
    CREATE TABLE engine_settings (
      id integer PRIMARY KEY CHECK (id = 1),
      limits jsonb,
      retry_schedule text,
      updated_at timestamptz NOT NULL DEFAULT now(),
      updated_by text NOT NULL
    )`.execute(db)
  await sql`
    CREATE FUNCTION rp_engine_settings_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_notify('rp_engine_settings', '');
      RETURN NULL;
    END $$`.execute(db)
  await sql`
    CREATE TRIGGER engine_settings_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON engine_settings
    FOR EACH STATEMENT EXECUTE FUNCTION rp_engine_settings_changed()`.execute(db)

  await sql`ALTER TABLE decisions ADD COLUMN operator text, ADD COLUMN operator_reason text`.execute(db)

  // Support finds a client by the account they pay (a phone number, a contract). The account never
  // changes after creation, so the index does not stand in the way of heap-only updates.
  await sql`CREATE INDEX subscriptions_by_account ON subscriptions (account)`.execute(db)
}

// biome-ignore lint/suspicious/noExplicitAny: see up
export const down = async (db: Kysely<any>): Promise<void> => {
  await sql`ALTER TABLE decisions DROP COLUMN IF EXISTS operator, DROP COLUMN IF EXISTS operator_reason`.execute(
    db,
  )
  await sql`DROP INDEX IF EXISTS subscriptions_by_account`.execute(db)
  await sql`DROP TABLE IF EXISTS engine_settings`.execute(db)
  await sql`DROP FUNCTION IF EXISTS rp_engine_settings_changed()`.execute(db)
  await sql`DROP TABLE IF EXISTS audit_log`.execute(db)
  await sql`DROP TABLE IF EXISTS operator_sessions`.execute(db)
  await sql`DROP TABLE IF EXISTS operators`.execute(db)
}
