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
  /** A retry that may have paid its occurrence twice: the attempt that paid it first. */
  duplicate_of: Generated<string | null>
  /** suspected | confirmed | cleared | resolved, or null for every ordinary payment. */
  duplicate_state: Generated<string | null>
  duplicate_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>
  /** The month (`YYYY-MM`) its amount counts toward, when a monthly limit applied as it was sent. */
  spend_month: ColumnType<string | null, string | null | undefined, string | null>
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
  /** The console operator who made the change on the client's behalf, and why. */
  operator: ColumnType<string | null, string | null | undefined, string | null>
  operator_reason: ColumnType<string | null, string | null | undefined, string | null>
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

export interface EngineInstancesTable {
  instance_id: string
  started_at: DefaultedTimestamp
  seen_at: DefaultedTimestamp
}

/** One row: the secret instances sign their messages to each other with when `RP_CLUSTER_SECRET` is unset. */
export interface ClusterSecretTable {
  id: number
  secret: string
  created_at: DefaultedTimestamp
}

export interface PartitionLayoutTable {
  id: number
  partition_count: number
}

export interface PartitionLeasesTable {
  partition: number
  owner: string | null
  epoch: Generated<number>
  expires_at: DefaultedTimestamp
  changed_at: DefaultedTimestamp
}

export interface OperatorsTable {
  login: string
  role: string
  /** `scrypt$N$r$p$salt$key`, salt and key in base64url. */
  password_hash: string
  failed_attempts: ColumnType<number, number | undefined, number>
  locked_until: Timestamp | null
  disabled_at: Timestamp | null
  created_at: DefaultedTimestamp
  updated_at: DefaultedTimestamp
  last_login_at: Timestamp | null
}

export interface OperatorSessionsTable {
  /** SHA-256 of the cookie's token: the token itself is never stored. */
  token_hash: string
  login: string
  csrf_token: string
  created_at: DefaultedTimestamp
  last_seen_at: DefaultedTimestamp
  expires_at: Timestamp
}

export interface AuditLogTable {
  id: Generated<number>
  at: DefaultedTimestamp
  operator: string
  action: string
  target: string
  client_id: string | null
  reason: string | null
  details: Json
}

/** Sign-in attempts per source address (an IPv4 address or an IPv6 /64) in its current window. */
export interface ConsoleSignInThrottleTable {
  source: string
  window_started_at: Timestamp
  attempts: number
}

export interface EngineSettingsTable {
  id: number
  /** An override of the spending limits (LimitSettings as JSON); null: the environment's. */
  limits: ColumnType<unknown, string | null, string | null>
  /** An override of the retry schedule (`PT1H,PT6H,PT24H`); null: the environment's. */
  retry_schedule: string | null
  updated_at: DefaultedTimestamp
  updated_by: string
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
  engine_instances: EngineInstancesTable
  partition_layout: PartitionLayoutTable
  partition_leases: PartitionLeasesTable
  operators: OperatorsTable
  operator_sessions: OperatorSessionsTable
  audit_log: AuditLogTable
  engine_settings: EngineSettingsTable
  cluster_secret: ClusterSecretTable
  console_sign_in_throttle: ConsoleSignInThrottleTable
}
