/**
 * Row types of the engine's tables, as Kysely sees them.
 *
 * `bigint` columns arrive as JavaScript numbers (see Database.ts: the driver's
 * int8 parser refuses values outside the safe-integer range instead of
 * rounding them). `jsonb` columns are typed `unknown` on purpose: whoever reads
 * one decodes it with its Schema.
 */
import type { ColumnType, Generated } from "kysely"

type Timestamp = ColumnType<Date, Date | string, Date | string>
type DefaultedTimestamp = ColumnType<Date, Date | string | undefined, Date | string>
type Json = ColumnType<unknown, string, string>

export interface EngineClockTable {
  id: number
  now: Timestamp
  updated_at: DefaultedTimestamp
}

export interface TemplatesTable {
  id: string
  client_id: string
  name: string
  provider_id: string
  account: string
  source: string
  fields: Json
  created_at: DefaultedTimestamp
  created_channel: string
  created_terminal: string | null
  deleted_at: Timestamp | null
}

export interface SubscriptionsTable {
  id: string
  client_id: string
  kind: string
  status: string
  status_reason: string | null
  hidden: ColumnType<boolean, boolean | undefined, boolean>
  version: number
  revision: number
  template_id: string | null
  provider_id: string
  account: string
  source: string
  currency: string
  terms: Json
  state: Json
  next_due_at: Timestamp | null
  created_at: DefaultedTimestamp
  updated_at: DefaultedTimestamp
  created_channel: string
  created_terminal: string | null
}

export interface PaymentsTable {
  payment_id: string
  subscription_id: string
  client_id: string
  occurrence: string
  attempt: number
  amount: number
  currency: string
  provider_id: string
  account: string
  source: string
  status: string
  retryable: boolean | null
  reason: string | null
  hub_reference: string | null
  outcome: string | null
  rule: Json
  requested_at: Timestamp
  result_at: Timestamp | null
}

export interface DecisionsTable {
  id: Generated<number>
  subscription_id: string
  at: Timestamp
  outcome: string
  reason: string | null
  occurrence: string | null
  payment_id: string | null
  details: Json
  channel: string | null
  terminal: string | null
  recorded_at: DefaultedTimestamp
}

export interface OutboxTable {
  id: string
  messages: string
  message_count: number
  /** `{ msgId: traceparent }` for the messages a traced request caused; null when none was. */
  trace_context: ColumnType<Record<string, string> | null, string | null | undefined, string | null>
  created_at: DefaultedTimestamp
}

export interface InboxTable {
  consumer: string
  message_id: string
  processed_at: DefaultedTimestamp
}

export interface RequestsTable {
  channel: string
  request_id: string
  client_id: string
  operation: string
  request_hash: string
  reply: string
  created_at: DefaultedTimestamp
}

export interface DebtQueriesTable {
  query_id: string
  subscription_id: string
  provider_id: string
  account: string
  sent_at: Date
}

export interface DebtBillsTable {
  provider_id: string
  account: string
  bill_id: string
  subscription_id: string
  payment_id: string
  attempt: number
}

export interface ClientSpendTable {
  client_id: string
  month: string
  currency: string
  spent: number
}

export interface ProvidersTable {
  provider_id: string
  display_name: string
  periodic: Generated<boolean>
  remind_after: Generated<string>
  supports_debt: Generated<boolean>
  supports_threshold: Generated<boolean>
  created_at: DefaultedTimestamp
  updated_at: DefaultedTimestamp
}

/** The whole database as Kysely's type parameter. */
export interface Tables {
  engine_clock: EngineClockTable
  templates: TemplatesTable
  subscriptions: SubscriptionsTable
  payments: PaymentsTable
  decisions: DecisionsTable
  outbox: OutboxTable
  inbox: InboxTable
  requests: RequestsTable
  debt_queries: DebtQueriesTable
  client_spend: ClientSpendTable
  debt_bills: DebtBillsTable
  providers: ProvidersTable
}
