/**
 * Group commit: many actors' transitions written in one transaction.
 *
 * One Postgres transaction per payment caps this machine near 1,200/s on a
 * connection; a few hundred rows per transaction go more than ten times
 * faster. So actors hand their transitions here and wait; a few workers take
 * whatever has queued up and write it with one statement per table.
 *
 * One payment per occurrence does not depend on batching going right:
 * - each transition carries the subscription revision it was computed from,
 *   and the row is updated only if that revision is still current (a lost race
 *   writes nothing and the actor recomputes from the fresh row);
 * - payment rows are unique per (subscription, occurrence, attempt);
 * - the outbox rows holding the commands are in the same transaction as the
 *   payment rows, so neither exists without the other.
 * If a batch fails as a whole, each transition is retried alone so one bad
 * transition cannot hold the others back.
 */
import { Context, Deferred, Duration, Effect, Exit, Layer, Queue, Semaphore, Tracer } from "effect"
import { type Transaction as KyselyTransaction, sql } from "kysely"
import { type LimitSettings, noLimitSettings } from "../actors/Limits.ts"
import { LiveSettings } from "../actors/LiveSettings.ts"
import type { DecisionRecord, Outgoing, PaymentRecord, Transition } from "../actors/Transition.ts"
import { newId } from "../domain/Ids.ts"
import type { Template } from "../domain/Template.ts"
import * as Timestamp from "../domain/Timestamp.ts"
import { EngineConfig } from "../EngineConfig.ts"
import { formatTraceparent } from "../observability/TraceContext.ts"
import {
  OutboxPublisher,
  type OutboxRow,
  outboxText,
  type PublishableMessage,
  traceContextText,
} from "../streams/OutboxPublisher.ts"
import { Topology, type TopologyService } from "../streams/Topology.ts"
import { Database } from "./Database.ts"
import { claimRequest } from "./RequestLog.ts"
import { insertSubscription } from "./SubscriptionStore.ts"
import type { Tables } from "./Tables.ts"
import { insertTemplate } from "./TemplateStore.ts"

/** A protocol request's idempotency record, stored with the change it made. */
export interface RequestRecord {
  readonly channel: string
  readonly requestId: string
  readonly clientId: string
  readonly operation: string
  readonly requestHash: string
  readonly reply: string
}

/** An inbound stream message to mark as processed with the change it caused. */
export interface InboxRecord {
  readonly consumer: string
  readonly messageId: string
  /**
   * The payment a hub result is about. When the transition records that payment's outcome, the
   * payment row (now settled) is the record that the result was applied, and no inbox row is written.
   */
  readonly paymentId?: string
}

/** Whether `inbox` needs a row: not when the transition settles the payment the message is about. */
const needsInboxRow = (inbox: InboxRecord, transition: Transition): boolean =>
  inbox.paymentId === undefined ||
  !transition.outcomes.some((outcome) => outcome.paymentId === inbox.paymentId)

/** One actor's transition, ready to be written. */
export interface CommitRequest {
  readonly transition: Transition
  readonly expectedRevision: number
  /** Whether the terms differ from the stored ones (they are written only then). */
  readonly termsChanged: boolean
  readonly request: RequestRecord | null
  readonly inbox: InboxRecord | null
  /** W3C trace context of the request that caused the transition; its messages carry it. */
  readonly traceparent?: string | undefined
}

/** What became of a commit request. */
export type CommitOutcome =
  | { readonly _tag: "Committed" }
  /** Someone else wrote the subscription first: reload and decide again. */
  | { readonly _tag: "Stale" }
  /** The protocol request was already answered: return the stored reply. */
  | { readonly _tag: "DuplicateRequest" }

/** Gives each outgoing message its subject and de-duplication id. */
export const address = (outgoing: Outgoing, topology: TopologyService): PublishableMessage => {
  switch (outgoing._tag) {
    case "Command":
      return {
        subject: topology.subjects.hubCommand,
        msgId: outgoing.command.paymentId,
        payload: JSON.stringify(outgoing.command),
      }
    case "Event":
      return {
        subject: topology.subjects.event(outgoing.event.type),
        msgId: outgoing.event.eventId,
        payload: JSON.stringify(outgoing.event),
      }
    case "Notification":
      return {
        subject: topology.subjects.notify(outgoing.notification.clientId),
        msgId: outgoing.notification.notificationId,
        payload: JSON.stringify(outgoing.notification),
      }
    case "Provider":
      return {
        subject: topology.subjects.toProvider(outgoing.providerId, outgoing.topic),
        msgId: outgoing.msgId,
        payload: JSON.stringify(outgoing.body),
      }
  }
}

const iso = (millis: number | null): string | null => (millis === null ? null : Timestamp.format(millis))

/**
 * One JSON document per statement: rows travel as a JSON array and Postgres
 * unpacks them with `json_to_recordset`. Far cheaper than the driver's
 * per-element array escaping, and nested objects (state, rules, details) go
 * in as they are instead of as strings inside strings.
 */
const rowsJson = (rows: ReadonlyArray<object>): string => JSON.stringify(rows)

/** Inserts decision rows. */
const insertDecisions = async (
  trx: KyselyTransaction<Tables>,
  decisions: ReadonlyArray<DecisionRecord>,
): Promise<void> => {
  if (decisions.length === 0) return
  const rows = decisions.map((d) => ({
    subscription_id: d.subscriptionId,
    at: iso(d.at),
    outcome: d.outcome,
    reason: d.reason,
    occurrence: d.occurrence,
    payment_id: d.paymentId,
    details: d.details,
    channel: d.channel,
    terminal: d.terminal,
    operator: d.operator,
    operator_reason: d.operatorReason,
  }))
  await sql`
    INSERT INTO decisions (subscription_id, at, outcome, reason, occurrence, payment_id, details, channel, terminal,
      operator, operator_reason)
    SELECT v.subscription_id, v.at, v.outcome, v.reason, v.occurrence, v.payment_id, v.details, v.channel, v.terminal,
      v.operator, v.operator_reason
    FROM json_to_recordset(${rowsJson(rows)}::json) AS v(subscription_id uuid, at timestamptz,
      outcome text, reason text, occurrence text, payment_id uuid, details jsonb, channel text, terminal text,
      operator text, operator_reason text)`.execute(trx)
}

/**
 * Inserts one outbox row holding every message of `transitions`, in order (a command before the
 * events about it); returns the rows for publishing (none when nothing was caused). One row per
 * transaction rather than per transition: a batch's messages go in as one text value, so Postgres
 * writes one row (and later deletes one) where it used to write hundreds.
 */
const insertOutbox = async (
  trx: KyselyTransaction<Tables>,
  transitions: ReadonlyArray<{ readonly transition: Transition; readonly traceparent?: string | undefined }>,
  topology: TopologyService,
): Promise<Array<OutboxRow>> => {
  const messages: Array<PublishableMessage> = []
  for (const { transition, traceparent } of transitions) {
    for (const outgoing of transition.outgoing) {
      const message = address(outgoing, topology)
      messages.push(traceparent === undefined ? message : { ...message, traceparent })
    }
  }
  if (messages.length === 0) return []
  const row: OutboxRow = { id: newId(), messages }
  await sql`
    INSERT INTO outbox (id, messages, message_count, trace_context)
    VALUES (${row.id}, ${outboxText(messages)}, ${messages.length}, ${traceContextText(messages)}::jsonb)`.execute(
    trx,
  )
  return [row]
}

/** Writes a new subscription and everything its creation causes in one transaction. */
export const writeCreation = async (
  trx: KyselyTransaction<Tables>,
  creation: Creation,
  topology: TopologyService,
): Promise<{ readonly outcome: "Created" | "DuplicateRequest"; readonly outbox: Array<OutboxRow> }> => {
  if (creation.request !== null && !(await claimRequest(trx, creation.request))) {
    return { outcome: "DuplicateRequest", outbox: [] }
  }
  if (creation.template !== null) await insertTemplate(trx, creation.template)
  await insertSubscription(trx, creation.transition.subscription)
  await insertDecisions(trx, creation.transition.decisions)
  const outbox = await insertOutbox(trx, [creation], topology)
  return { outcome: "Created", outbox }
}

/** A subscription being created: its first row, the template it brings, and the request that asked. */
export interface Creation {
  readonly transition: Transition
  readonly template: Template | null
  readonly request: RequestRecord | null
  /** W3C trace context of the request creating it; its messages carry it. */
  readonly traceparent?: string | undefined
}

/** Writes a batch; returns each request's outcome in order, plus the outbox rows created. */
export const writeBatch = async (
  trx: KyselyTransaction<Tables>,
  requests: ReadonlyArray<CommitRequest>,
  topology: TopologyService,
  limits: LimitSettings = noLimitSettings,
): Promise<{ outcomes: Array<CommitOutcome>; outbox: Array<OutboxRow> }> => {
  const outcomes: Array<CommitOutcome> = requests.map(() => ({ _tag: "Committed" }))

  // 1. Claim idempotency keys first: a request answered before must have no second effect.
  // Two requests in one batch may carry the same key: only the first may claim it.
  const keyOf = (record: RequestRecord) => `${record.channel}\u0000${record.requestId}`
  const firstWithKey = new Map<string, { index: number; record: RequestRecord }>()
  requests.forEach((request, index) => {
    if (request.request === null) return
    const key = keyOf(request.request)
    // Not a duplicate yet: the first may still lose its revision race and give up its claim.
    // Stale makes the later one decide again, and its next commit finds the stored reply.
    if (firstWithKey.has(key)) outcomes[index] = { _tag: "Stale" }
    else firstWithKey.set(key, { index, record: request.request })
  })
  const claimed = new Set<number>()
  if (firstWithKey.size > 0) {
    const records = [...firstWithKey.values()].map(({ record }) => record)
    const rows = await sql<{ channel: string; request_id: string }>`
      INSERT INTO requests (channel, request_id, client_id, operation, request_hash, reply)
      SELECT * FROM unnest(
        ${records.map((r) => r.channel)}::text[], ${records.map((r) => r.requestId)}::text[],
        ${records.map((r) => r.clientId)}::text[], ${records.map((r) => r.operation)}::text[],
        ${records.map((r) => r.requestHash)}::text[], ${records.map((r) => r.reply)}::text[])
      ON CONFLICT DO NOTHING
      RETURNING channel, request_id`.execute(trx)
    const won = new Set(rows.rows.map((row) => `${row.channel}\u0000${row.request_id}`))
    for (const [key, { index }] of firstWithKey) {
      if (won.has(key)) claimed.add(index)
      else outcomes[index] = { _tag: "DuplicateRequest" }
    }
  }

  // 2. Monthly limits: a transition whose payments no longer fit (another subscription of the same
  // client spent since its actor read the figure) is written not at all, and decided again.
  const spendRows = await lockMonthlySpend(trx, requests, outcomes)
  if (spendRows !== null) {
    requests.forEach((request, index) => {
      if (outcomes[index]?._tag !== "Committed") return
      // Everything one transition adds to a month is judged together, releases included.
      const perMonth = new Map<string, { sum: number; checked: boolean; currency: string }>()
      for (const { key, amount, checked, currency } of spendOf(request)) {
        const entry = perMonth.get(key) ?? { sum: 0, checked: false, currency }
        perMonth.set(key, { sum: entry.sum + amount, checked: entry.checked || checked, currency })
      }
      const fits = [...perMonth].every(([key, { sum, checked, currency }]) => {
        const cap = limits.monthlyMax[currency]
        return !checked || cap === undefined || sum <= 0 || (spendRows.get(key) ?? 0) + sum <= cap
      })
      if (!fits) {
        outcomes[index] = { _tag: "Stale" }
        return
      }
      for (const [key, { sum }] of perMonth) spendRows.set(key, Math.max(0, (spendRows.get(key) ?? 0) + sum))
    })
  }

  // 3. Fence on revision; rows are locked in id order so concurrent batches cannot deadlock.
  const candidates = requests
    .map((request, index) => ({ request, index }))
    .filter(({ index }) => outcomes[index]?._tag === "Committed")
    .sort((a, b) => (a.request.transition.subscription.id < b.request.transition.subscription.id ? -1 : 1))
  const applied = new Set<string>()
  if (candidates.length > 0) {
    // Templates a transition saves (a reminder taken up) must exist before the row points at them.
    for (const { request } of candidates) {
      for (const template of request.transition.templates) await insertTemplate(trx, template)
    }
    const rows = candidates.map(({ request }) => {
      const subscription = request.transition.subscription
      return {
        id: subscription.id,
        expected: request.expectedRevision,
        // A reminder taken up becomes a visible scheduled autopayment with a template of its own.
        kind: subscription.kind,
        hidden: subscription.hidden,
        template_id: subscription.templateId,
        // The payer's source moves with a reminder taken up (the card of the latest one-off payment).
        source: subscription.payee.source,
        currency: subscription.currency,
        status: subscription.status,
        status_reason: subscription.statusReason,
        version: subscription.version,
        // Terms rarely change; when they did not, the stored ones stay (null keeps them).
        terms: request.termsChanged ? subscription.terms : null,
        state: subscription.state,
        next_due_at: iso(subscription.nextDueAt),
      }
    })
    const updated = await sql<{ id: string }>`
      UPDATE subscriptions AS s SET
        status = v.status, status_reason = v.status_reason, version = v.version, revision = v.expected + 1,
        terms = COALESCE(v.terms, s.terms), state = v.state, next_due_at = v.next_due_at, updated_at = now(),
        kind = v.kind, hidden = v.hidden, template_id = v.template_id, source = v.source, currency = v.currency
      FROM json_to_recordset(${rowsJson(rows)}::json) AS v(id uuid, expected bigint, kind text, hidden boolean,
        template_id uuid, source text, currency text, status text, status_reason text, version int, terms jsonb, state jsonb,
        next_due_at timestamptz)
      WHERE s.id = v.id AND s.revision = v.expected
      RETURNING s.id`.execute(trx)
    for (const row of updated.rows) applied.add(row.id)
  }
  const winners: Array<CommitRequest> = []
  const orphanTemplates: Array<string> = []
  for (const { request, index } of candidates) {
    if (applied.has(request.transition.subscription.id)) winners.push(request)
    else {
      outcomes[index] = { _tag: "Stale" }
      orphanTemplates.push(...request.transition.templates.map((template) => template.id))
    }
  }
  // The transition lost its race and will be decided again: its templates go with it.
  if (orphanTemplates.length > 0)
    await sql`DELETE FROM templates WHERE id = ANY(${orphanTemplates}::uuid[])`.execute(trx)
  const staleClaims = requests.flatMap((request, index) =>
    request.request !== null && claimed.has(index) && outcomes[index]?._tag === "Stale"
      ? [request.request]
      : [],
  )
  if (staleClaims.length > 0) {
    // The actor will recompute and claim again with the reply it then gives.
    const keys = staleClaims.map((r) => ({ channel: r.channel, request_id: r.requestId }))
    await sql`
      DELETE FROM requests r USING json_to_recordset(${rowsJson(keys)}::json) AS v(channel text, request_id text)
      WHERE r.channel = v.channel AND r.request_id = v.request_id`.execute(trx)
  }

  // 4. Everything the winning transitions caused.
  await recordMonthlySpend(trx, winners)
  const payments = winners.flatMap(({ transition }) => transition.payments)
  if (payments.length > 0) {
    const rows = payments.map((p) => ({
      payment_id: p.paymentId,
      subscription_id: p.subscriptionId,
      client_id: p.clientId,
      occurrence: p.occurrence,
      attempt: p.attempt,
      amount: p.amount.value,
      currency: p.amount.currency,
      provider_id: p.providerId,
      account: p.account,
      source: p.source,
      rule: p.rule,
      requested_at: iso(p.requestedAt),
      // A late success counts the amount again in this month, after a failure gave it back.
      spend_month: p.spend === null ? null : p.spend.month,
    }))
    await sql`
      INSERT INTO payments (payment_id, subscription_id, client_id, occurrence, attempt, amount, currency,
        provider_id, account, source, status, rule, requested_at, spend_month)
      SELECT v.payment_id, v.subscription_id, v.client_id, v.occurrence, v.attempt, v.amount, v.currency,
        v.provider_id, v.account, v.source, 'pending', v.rule, v.requested_at, v.spend_month
      FROM json_to_recordset(${rowsJson(rows)}::json) AS v(payment_id uuid, subscription_id uuid, client_id text,
        occurrence text, attempt int, amount bigint, currency text, provider_id text, account text, source text,
        rule jsonb, requested_at timestamptz, spend_month text)`.execute(trx)
  }
  await claimBills(
    trx,
    payments.filter((payment) => payment.kind === "debt"),
  )
  const results = winners.flatMap(({ transition }) => transition.outcomes)
  if (results.length > 0) {
    const rows = results.map((r) => ({
      payment_id: r.paymentId,
      status: r.status,
      retryable: r.retryable,
      reason: r.reason,
      hub_reference: r.hubReference,
      outcome: r.outcome,
      result_at: iso(r.resultAt),
    }))
    await sql`
      UPDATE payments AS p SET status = v.status, retryable = v.retryable, reason = v.reason,
        hub_reference = v.hub_reference, outcome = v.outcome, result_at = v.result_at
      FROM json_to_recordset(${rowsJson(rows)}::json) AS v(payment_id uuid, status text, retryable boolean,
        reason text, hub_reference text, outcome text, result_at timestamptz)
      WHERE p.payment_id = v.payment_id`.execute(trx)
  }
  const duplicates = winners.flatMap(({ transition }) => transition.duplicates)
  if (duplicates.length > 0) {
    const rows = duplicates.map((d) => ({
      payment_id: d.paymentId,
      duplicate_of: d.duplicateOf,
      duplicate_state: d.state,
      duplicate_at: iso(d.at),
    }))
    // An operator's `resolved` stands: the engine does not reopen a flag someone closed.
    await sql`
      UPDATE payments AS p SET duplicate_of = v.duplicate_of, duplicate_state = v.duplicate_state,
        duplicate_at = v.duplicate_at
      FROM json_to_recordset(${rowsJson(rows)}::json) AS v(payment_id uuid, duplicate_of uuid,
        duplicate_state text, duplicate_at timestamptz)
      WHERE p.payment_id = v.payment_id AND p.duplicate_state IS DISTINCT FROM 'resolved'`.execute(trx)
  }
  await insertDecisions(
    trx,
    winners.flatMap(({ transition }) => transition.decisions),
  )
  const outbox = await insertOutbox(trx, winners, topology)
  const queries = winners.flatMap(({ transition }) => transition.queries)
  if (queries.length > 0) {
    const rows = queries.map((q) => ({
      query_id: q.queryId,
      subscription_id: q.subscriptionId,
      provider_id: q.providerId,
      account: q.account,
      sent_at: iso(q.sentAt),
    }))
    await sql`
      INSERT INTO debt_queries (query_id, subscription_id, provider_id, account, sent_at)
      SELECT v.query_id, v.subscription_id, v.provider_id, v.account, v.sent_at
      FROM json_to_recordset(${rowsJson(rows)}::json) AS v(query_id uuid, subscription_id uuid, provider_id text,
        account text, sent_at timestamptz)`.execute(trx)
  }
  const inbox = winners.flatMap(({ inbox, transition }) =>
    inbox === null || !needsInboxRow(inbox, transition)
      ? []
      : [{ consumer: inbox.consumer, message_id: inbox.messageId }],
  )
  if (inbox.length > 0) {
    await sql`
      INSERT INTO inbox (consumer, message_id)
      SELECT v.consumer, v.message_id FROM json_to_recordset(${rowsJson(inbox)}::json) AS v(consumer text, message_id text)
      ON CONFLICT DO NOTHING`.execute(trx)
  }
  return { outcomes, outbox }
}

/**
 * Claims each debt payment's bill: the first attempt inserts it, a retry moves it on from the
 * attempt it follows. A bill another payment got to first (a second debt subscription on the same
 * account answering at the same moment) fails the transaction: its actor decides again, reads the
 * bill as paid and pays nothing. Rare by nature, so the simple path is taken.
 */
const claimBills = async (trx: KyselyTransaction<Tables>, payments: ReadonlyArray<PaymentRecord>) => {
  if (payments.length === 0) return
  const rows = payments.map((p) => ({
    provider_id: p.providerId,
    account: p.account,
    bill_id: p.occurrence,
    subscription_id: p.subscriptionId,
    payment_id: p.paymentId,
    attempt: p.attempt,
  }))
  const result = await sql<{ claimed: number }>`
    WITH v AS (
      SELECT * FROM json_to_recordset(${rowsJson(rows)}::json) AS v(provider_id text, account text, bill_id text,
        subscription_id uuid, payment_id uuid, attempt int)
    ), first AS (
      INSERT INTO debt_bills (provider_id, account, bill_id, subscription_id, payment_id, attempt)
      SELECT provider_id, account, bill_id, subscription_id, payment_id, attempt FROM v WHERE attempt = 1
      ON CONFLICT DO NOTHING RETURNING 1
    ), retried AS (
      UPDATE debt_bills b SET subscription_id = v.subscription_id, payment_id = v.payment_id, attempt = v.attempt
      FROM v WHERE v.attempt > 1 AND b.provider_id = v.provider_id AND b.account = v.account
        AND b.bill_id = v.bill_id AND b.attempt = v.attempt - 1
      RETURNING 1
    )
    SELECT ((SELECT count(*) FROM first) + (SELECT count(*) FROM retried))::int AS claimed`.execute(trx)
  const claimed = result.rows[0]?.claimed ?? 0
  if (claimed !== rows.length) {
    throw new Error(
      `${rows.length - claimed} of ${rows.length} debt bills were already claimed by another payment; their subscriptions decide again`,
    )
  }
}

/** One payment's addition to its client's month. */
interface SpendAddition {
  readonly key: string
  readonly clientId: string
  readonly month: string
  readonly currency: string
  readonly amount: number
  readonly checked: boolean
}

const spendKey = (clientId: string, month: string, currency: string) =>
  `${clientId}\u0000${month}\u0000${currency}`

const noSpend: Array<SpendAddition> = []

/**
 * What a transition adds to (payments sent, late successes) and gives back to (attempts failed) its
 * client's months. A late success is not checked against the cap: its money has moved.
 */
const spendOf = (request: CommitRequest): Array<SpendAddition> => {
  // Called twice per transition of every batch; without monthly limits there is never anything.
  let additions = noSpend
  const { transition } = request
  for (const payment of transition.payments) {
    if (payment.spend === null) continue
    if (additions === noSpend) additions = []
    additions.push({
      key: spendKey(payment.clientId, payment.spend.month, payment.amount.currency),
      clientId: payment.clientId,
      month: payment.spend.month,
      currency: payment.amount.currency,
      amount: payment.amount.value,
      checked: payment.spend.checked,
    })
  }
  for (const outcome of transition.outcomes) {
    const { spendRelease, spendRestore } = outcome
    if (spendRelease === null && spendRestore === undefined) continue
    if (additions === noSpend) additions = []
    const clientId = transition.subscription.clientId
    for (const [change, sign] of [
      [spendRelease, -1],
      [spendRestore, 1],
    ] as const) {
      if (change === null || change === undefined) continue
      additions.push({
        key: spendKey(clientId, change.month, change.amount.currency),
        clientId,
        month: change.month,
        currency: change.amount.currency,
        amount: sign * change.amount.value,
        checked: false,
      })
    }
  }
  return additions
}

/**
 * Locks the spend rows every pending payment of the batch adds to (created at zero when
 * missing), in key order so two batches cannot deadlock; returns the current figures, or null
 * when no payment in the batch is subject to a monthly limit.
 */
const lockMonthlySpend = async (
  trx: KyselyTransaction<Tables>,
  requests: ReadonlyArray<CommitRequest>,
  outcomes: ReadonlyArray<CommitOutcome>,
): Promise<Map<string, number> | null> => {
  const keys = new Map<string, SpendAddition>()
  requests.forEach((request, index) => {
    if (outcomes[index]?._tag !== "Committed") return
    for (const addition of spendOf(request)) keys.set(addition.key, addition)
  })
  if (keys.size === 0) return null
  const rows = [...keys.values()]
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
    .map((k) => ({ client_id: k.clientId, month: k.month, currency: k.currency }))
  await sql`
    INSERT INTO client_spend (client_id, month, currency, spent)
    SELECT v.client_id, v.month, v.currency, 0
    FROM json_to_recordset(${rowsJson(rows)}::json) AS v(client_id text, month text, currency text)
    ON CONFLICT DO NOTHING`.execute(trx)
  const locked = await sql<{ client_id: string; month: string; currency: string; spent: number }>`
    SELECT s.client_id, s.month, s.currency, s.spent FROM client_spend s
    JOIN json_to_recordset(${rowsJson(rows)}::json) AS v(client_id text, month text, currency text)
      ON s.client_id = v.client_id AND s.month = v.month AND s.currency = v.currency
    ORDER BY s.client_id, s.month, s.currency
    FOR UPDATE OF s`.execute(trx)
  return new Map(
    locked.rows.map((row) => [spendKey(row.client_id, row.month, row.currency), Number(row.spent)]),
  )
}

/** Adds the winners' payments to their clients' months (rows locked by `lockMonthlySpend`). */
const recordMonthlySpend = async (
  trx: KyselyTransaction<Tables>,
  winners: ReadonlyArray<CommitRequest>,
): Promise<void> => {
  const totals = new Map<string, SpendAddition>()
  for (const winner of winners) {
    for (const addition of spendOf(winner)) {
      const sum = totals.get(addition.key)
      totals.set(
        addition.key,
        sum === undefined ? addition : { ...sum, amount: sum.amount + addition.amount },
      )
    }
  }
  if (totals.size === 0) return
  const rows = [...totals.values()].map((t) => ({
    client_id: t.clientId,
    month: t.month,
    currency: t.currency,
    amount: t.amount,
  }))
  await sql`
    UPDATE client_spend AS s SET spent = GREATEST(0, s.spent + v.amount)
    FROM json_to_recordset(${rowsJson(rows)}::json) AS v(client_id text, month text, currency text, amount bigint)
    WHERE s.client_id = v.client_id AND s.month = v.month AND s.currency = v.currency`.execute(trx)
}

interface Pending {
  readonly request: CommitRequest
  /** Resumes the committing actor (once). */
  readonly done: (outcome: Exit.Exit<CommitOutcome>) => void
}

/** Group-commits actor transitions. */
export class TransitionCommitter extends Context.Service<
  TransitionCommitter,
  {
    /** Writes one transition with whatever else is queued; resolves once it is durable. */
    readonly commit: (request: CommitRequest) => Effect.Effect<CommitOutcome>
    /** Writes a new subscription on its own (creations are rare next to transitions). */
    readonly create: (creation: Creation) => Effect.Effect<"Created" | "DuplicateRequest">
  }
>()("rp/store/TransitionCommitter") {
  static readonly layer = Layer.effect(
    TransitionCommitter,
    Effect.gen(function* () {
      const config = yield* EngineConfig
      const live = yield* LiveSettings
      const { db } = yield* Database
      const topology = yield* Topology
      const publisher = yield* OutboxPublisher
      const queue = yield* Queue.bounded<Pending>(config.commitBatchSize * config.commitWorkers * 4)

      const runBatch = (batch: ReadonlyArray<Pending>) =>
        Effect.tryPromise(() =>
          db.transaction().execute((trx) =>
            writeBatch(
              trx,
              batch.map((pending) => pending.request),
              topology,
              live.current().limits,
            ),
          ),
        )

      const settle = (
        batch: ReadonlyArray<Pending>,
        written: { outcomes: Array<CommitOutcome>; outbox: Array<OutboxRow> },
      ) =>
        Effect.gen(function* () {
          yield* publisher.enqueue(written.outbox)
          for (const [index, pending] of batch.entries()) {
            pending.done(Exit.succeed(written.outcomes[index] ?? { _tag: "Stale" }))
          }
        })

      const commitBatch = (batch: ReadonlyArray<Pending>): Effect.Effect<void> =>
        runBatch(batch).pipe(
          Effect.flatMap((written) => settle(batch, written)),
          Effect.catch((error) =>
            batch.length === 1
              ? Effect.sync(() => {
                  for (const pending of batch) pending.done(Exit.die(error.cause ?? error))
                })
              : Effect.logWarning("group commit failed; retrying its transitions one by one").pipe(
                  Effect.annotateLogs({ batch: batch.length, error: String(error.cause ?? error) }),
                  Effect.andThen(
                    Effect.forEach(batch, (pending) => commitBatch([pending]), { discard: true }),
                  ),
                ),
          ),
        )

      // One dispatcher forms batches; up to `commitWorkers` transactions run at once. A batch is
      // taken only when a worker is free, so while all are busy transitions pile up into the next
      // batch; and while any transaction is in flight, a small batch waits `commitLinger` for
      // company. Alone (a single channel request) a transition is written at once.
      const workers = yield* Semaphore.make(config.commitWorkers)
      let inFlight = 0
      const dispatcher = Effect.forever(
        Effect.gen(function* () {
          yield* workers.take(1)
          const batch: Array<Pending> = [...(yield* Queue.takeBetween(queue, 1, config.commitBatchSize))]
          if (batch.length < config.commitBatchSize && inFlight > 0 && config.commitLingerMs > 0) {
            yield* Effect.sleep(Duration.millis(config.commitLingerMs))
            const waiting = yield* Queue.size(queue)
            if (waiting > 0)
              batch.push(
                ...(yield* Queue.takeN(queue, Math.min(waiting, config.commitBatchSize - batch.length))),
              )
          }
          inFlight += 1
          yield* Effect.forkScoped(
            commitBatch(batch).pipe(
              Effect.ensuring(
                Effect.suspend(() => {
                  inFlight -= 1
                  return workers.release(1)
                }),
              ),
            ),
          )
        }),
      )
      yield* Effect.forkScoped(dispatcher)

      // The queue is full: wait for room (backpressure on the actors).
      const commitWhenRoom = (request: CommitRequest) =>
        Effect.gen(function* () {
          const done = yield* Deferred.make<CommitOutcome>()
          yield* Queue.offer(queue, { request, done: (exit) => Deferred.doneUnsafe(done, exit) })
          return yield* Deferred.await(done)
        })

      return TransitionCommitter.of({
        create: (creation) =>
          // Creations come from channel requests, which run in a span: their messages carry it.
          Effect.serviceOption(Tracer.ParentSpan).pipe(
            Effect.map((span) =>
              span._tag === "Some" && creation.traceparent === undefined
                ? { ...creation, traceparent: formatTraceparent(span.value) }
                : creation,
            ),
            Effect.flatMap((traced) =>
              Effect.promise(() => db.transaction().execute((trx) => writeCreation(trx, traced, topology))),
            ),
            Effect.tap((written) => publisher.enqueue(written.outbox)),
            Effect.map((written) => written.outcome),
          ),
        // A callback rather than a Deferred and a fiber hand-off: one per transition of a burst.
        commit: (request) =>
          Effect.callback<CommitOutcome>((resume) => {
            if (!Queue.offerUnsafe(queue, { request, done: resume })) resume(commitWhenRoom(request))
          }),
      })
    }),
  )
}
