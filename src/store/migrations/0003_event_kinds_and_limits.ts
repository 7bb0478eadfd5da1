/**
 * Threshold and debt autopayments, and spending limits.
 *
 * - Threshold events are routed to the subscriptions watching the account
 *   through an index, never a scan: thousands may watch one provider.
 * - Debt queries are recorded so an answer finds its subscription by `queryId`,
 *   and each bill's latest payment attempt so no bill is ever paid twice.
 * - A client's autopayment spend per calendar month and currency, the row the
 *   monthly limit is checked against (locked, in the payment's transaction).
 */
import { type Kysely, sql } from "kysely"

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not import app types
export const up = async (db: Kysely<any>): Promise<void> => {
  // Paused ones are routed too, so a reading that arrives while paused is recorded as skipped.
  await sql`
    CREATE INDEX subscriptions_threshold_watch ON subscriptions (provider_id, account)
    WHERE kind = 'threshold' AND status IN ('active', 'paused')`.execute(db)

  await sql`
    CREATE TABLE debt_queries (
      query_id uuid PRIMARY KEY,
      subscription_id uuid NOT NULL REFERENCES subscriptions (id),
      provider_id text NOT NULL,
      account text NOT NULL,
      sent_at timestamptz NOT NULL
    )`.execute(db)

  // A provider's bill is paid at most once, ever, whichever debt subscription pays it (two on one
  // account, or one cancelled and made again): each bill's latest attempt, claimed with the payment.
  await sql`
    CREATE TABLE debt_bills (
      provider_id text NOT NULL,
      account text NOT NULL,
      bill_id text NOT NULL,
      subscription_id uuid NOT NULL REFERENCES subscriptions (id),
      payment_id uuid NOT NULL,
      attempt integer NOT NULL CHECK (attempt >= 1),
      PRIMARY KEY (provider_id, account, bill_id)
    )`.execute(db)

  await sql`
    CREATE TABLE client_spend (
      client_id text NOT NULL,
      month text NOT NULL CHECK (month ~ '^[0-9]{4}-[0-9]{2}$'),
      currency text NOT NULL,
      spent bigint NOT NULL CHECK (spent >= 0),
      PRIMARY KEY (client_id, month, currency)
    )`.execute(db)
}

// biome-ignore lint/suspicious/noExplicitAny: see up
export const down = async (db: Kysely<any>): Promise<void> => {
  await sql`DROP TABLE IF EXISTS client_spend`.execute(db)
  await sql`DROP TABLE IF EXISTS debt_bills`.execute(db)
  await sql`DROP TABLE IF EXISTS debt_queries`.execute(db)
  await sql`DROP INDEX IF EXISTS subscriptions_threshold_watch`.execute(db)
}
