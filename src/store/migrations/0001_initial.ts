/**
 * The first schema. Frozen: later changes go in new numbered migrations.
 *
 * Engine time (`at`, `requested_at`, `result_at`, `next_due_at`) is the time of
 * the tick being processed; `created_at`/`updated_at` are wall-clock audit
 * stamps. Money is `bigint` minor units beside a currency code.
 */
import { type Kysely, sql } from "kysely"

// biome-ignore lint/suspicious/noExplicitAny: migrations are frozen in time and must not import app types
export const up = async (db: Kysely<any>): Promise<void> => {
  await sql`
    CREATE TABLE engine_clock (
      id smallint PRIMARY KEY CHECK (id = 1),
      now timestamptz NOT NULL,
      updated_at timestamptz NOT NULL DEFAULT now()
    )`.execute(db)

  await sql`
    CREATE TABLE templates (
      id uuid PRIMARY KEY,
      client_id text NOT NULL,
      name text NOT NULL,
      provider_id text NOT NULL,
      account text NOT NULL,
      source text NOT NULL,
      fields jsonb NOT NULL DEFAULT '{}',
      created_at timestamptz NOT NULL DEFAULT now(),
      created_channel text NOT NULL,
      created_terminal text,
      deleted_at timestamptz
    )`.execute(db)
  await sql`CREATE INDEX templates_by_client ON templates (client_id, created_at DESC, id) WHERE deleted_at IS NULL`.execute(
    db,
  )

  // `version` is what clients see and pass back as expectedVersion: it moves only
  // when terms or status change. `revision` moves on every write and fences
  // concurrent writers (a payment result must not make a client's update stale).
  // Indexes are few on purpose, and pages keep free space (fillfactor): every
  // payment rewrites its subscription twice, and each index is another write.
  await sql`
    CREATE TABLE subscriptions (
      id uuid PRIMARY KEY,
      client_id text NOT NULL,
      kind text NOT NULL CHECK (kind IN ('scheduled', 'threshold', 'debt', 'reminder')),
      status text NOT NULL CHECK (status IN ('active', 'paused', 'cancelled', 'completed')),
      status_reason text,
      hidden boolean NOT NULL DEFAULT false,
      version integer NOT NULL CHECK (version >= 1),
      revision bigint NOT NULL CHECK (revision >= 1),
      template_id uuid REFERENCES templates (id),
      provider_id text NOT NULL,
      account text NOT NULL,
      source text NOT NULL,
      currency text NOT NULL,
      terms jsonb NOT NULL,
      state jsonb NOT NULL,
      next_due_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      created_channel text NOT NULL,
      created_terminal text
    ) WITH (fillfactor = 70)`.execute(db)
  await sql`CREATE INDEX subscriptions_due ON subscriptions (next_due_at, id) WHERE next_due_at IS NOT NULL`.execute(
    db,
  )
  await sql`CREATE INDEX subscriptions_by_client ON subscriptions (client_id, created_at DESC, id)`.execute(
    db,
  )

  // One row per attempt. The unique key is the database's own guard that an
  // occurrence's attempt is recorded once, whatever the engine believes; it also
  // serves a subscription's history (a few hundred rows, sorted in memory).
  await sql`
    CREATE TABLE payments (
      payment_id uuid PRIMARY KEY,
      subscription_id uuid NOT NULL REFERENCES subscriptions (id),
      client_id text NOT NULL,
      occurrence text NOT NULL,
      attempt integer NOT NULL CHECK (attempt >= 1),
      amount bigint NOT NULL CHECK (amount > 0),
      currency text NOT NULL,
      provider_id text NOT NULL,
      account text NOT NULL,
      source text NOT NULL,
      status text NOT NULL CHECK (status IN ('pending', 'unknown', 'succeeded', 'failed', 'declined')),
      retryable boolean,
      reason text,
      hub_reference text,
      outcome text,
      rule jsonb NOT NULL,
      requested_at timestamptz NOT NULL,
      result_at timestamptz,
      UNIQUE (subscription_id, occurrence, attempt)
    ) WITH (fillfactor = 70)`.execute(db)

  // Every decision that is not a payment attempt: skipped occurrences, lifecycle
  // changes and who made them, retries abandoned, status queries.
  await sql`
    CREATE TABLE decisions (
      id bigserial PRIMARY KEY,
      subscription_id uuid NOT NULL REFERENCES subscriptions (id),
      at timestamptz NOT NULL,
      outcome text NOT NULL,
      reason text,
      occurrence text,
      payment_id uuid,
      details jsonb NOT NULL DEFAULT '{}',
      channel text,
      terminal text,
      recorded_at timestamptz NOT NULL DEFAULT now()
    )`.execute(db)
  await sql`CREATE INDEX decisions_history ON decisions (subscription_id, at DESC, id DESC)`.execute(db)

  // One row per committed state change: the JSON array of every message it
  // causes. Deleted once each message has a JetStream publish ack. Usually
  // nearly empty, so the sweeper's look for old rows needs no index.
  await sql`
    CREATE TABLE outbox (
      id uuid PRIMARY KEY,
      messages text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now()
    )`.execute(db)

  await sql`
    CREATE TABLE inbox (
      consumer text NOT NULL,
      message_id text NOT NULL,
      processed_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (consumer, message_id)
    )`.execute(db)

  await sql`
    CREATE TABLE requests (
      channel text NOT NULL,
      request_id text NOT NULL,
      client_id text NOT NULL,
      operation text NOT NULL,
      request_hash text NOT NULL,
      reply text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (channel, request_id)
    )`.execute(db)
}

// biome-ignore lint/suspicious/noExplicitAny: see up
export const down = async (db: Kysely<any>): Promise<void> => {
  for (const table of [
    "requests",
    "inbox",
    "outbox",
    "decisions",
    "payments",
    "subscriptions",
    "templates",
    "engine_clock",
  ]) {
    await sql`DROP TABLE IF EXISTS ${sql.table(table)}`.execute(db)
  }
}
