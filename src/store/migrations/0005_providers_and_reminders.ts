/**
 * The provider registry and reminders.
 *
 * - Providers the bank has configured: whether their bills recur (a one-off
 *   payment to them is worth a reminder, and after how long), and whether
 *   they answer debt queries or report balances.
 * - At most one reminder per client and payee: two one-off payments handled
 *   at once (or by two instances) can never create a second one.
 */
import { type Kysely, sql } from "kysely"

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not import app types
export const up = async (db: Kysely<any>): Promise<void> => {
  await sql`
    CREATE TABLE providers (
      provider_id text PRIMARY KEY,
      display_name text NOT NULL,
      periodic boolean NOT NULL DEFAULT false,
      remind_after text NOT NULL DEFAULT 'P30D',
      supports_debt boolean NOT NULL DEFAULT false,
      supports_threshold boolean NOT NULL DEFAULT false,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    )`.execute(db)

  await sql`
    CREATE UNIQUE INDEX subscriptions_one_reminder_per_payee ON subscriptions (client_id, provider_id, account)
    WHERE kind = 'reminder'`.execute(db)
}

// biome-ignore lint/suspicious/noExplicitAny: see up
export const down = async (db: Kysely<any>): Promise<void> => {
  await sql`DROP INDEX IF EXISTS subscriptions_one_reminder_per_payee`.execute(db)
  await sql`DROP TABLE IF EXISTS providers`.execute(db)
}
