/**
 * The invariants every fault scenario ends with, checked from what the engine
 * left behind: the database (payments, decisions, subscriptions) and the
 * streams (commands in HUB_PAYMENTS, events and notifications in RP_EVENTS,
 * letters in RP_DLQ). Nothing here asks the engine anything.
 *
 * Contract section 3, as counts that must be zero:
 * - every due occurrence ends in exactly one of paid / failed-final /
 *   skipped-with-reason (`conflicting` when more than one, `lost` when none
 *   and no attempt is in flight or planned);
 * - no occurrence is paid twice, and no second command is sent for it unless
 *   the attempt before failed with `retryable: true` (`duplicates`);
 * - every payment record has its command and every command its record, with
 *   the same subscription, occurrence, attempt and amount;
 * - events and notifications match the records, one each (consumers
 *   de-duplicate on `eventId` / `notificationId`, so a copy of the same
 *   message stored twice is counted apart, in `repeatedMessages`);
 * - nothing is dead-lettered by a fault (`deadLettered`): only messages that
 *   are bad in themselves belong in RP_DLQ.
 */
import { DeliverPolicy } from "@nats-io/jetstream"
import type { World } from "../World.ts"

/** One occurrence the scenario made due: it must end paid, failed for good, or skipped with a reason. */
export interface DueOccurrence {
  readonly subscriptionId: string
  readonly occurrence: string
}

/** What the checks found; every count but `due`, `paid`, `skipped`, `failed` must be zero after a fault. */
export interface InvariantReport {
  readonly due: number
  readonly paid: number
  readonly skipped: number
  readonly failed: number
  /** Due occurrences still waiting for a result or a planned retry: not lost, but not done either. */
  readonly inFlight: number
  /** Occurrences paid twice, or sent again without a retryable failure before. */
  readonly duplicates: number
  /** Due occurrences with no outcome and nothing in flight. */
  readonly lost: number
  /** Due occurrences with more than one outcome (say paid and skipped). */
  readonly conflicting: number
  /** Payments or decisions about an occurrence the scenario did not make due. */
  readonly unexpected: number
  readonly commands: number
  readonly commandsWithoutRecords: number
  readonly recordsWithoutCommands: number
  /** A command and its record disagree on subscription, occurrence, attempt or amount. */
  readonly commandRecordMismatches: number
  /** Missing, extra or doubled events and notifications for the records. */
  readonly eventMismatches: number
  /** The same message (same `Nats-Msg-Id`) stored more than once: harmless to money, but a sign of a missed dedupe. */
  readonly repeatedMessages: number
  /** Letters in RP_DLQ, by the stream they came from. */
  readonly deadLetters: Readonly<Record<string, number>>
  /** Letters in RP_DLQ in all: a fault must not put anything there (only a bad message may). */
  readonly deadLettered: number
  /** The first problems found, in words, for a failing run's output. */
  readonly problems: ReadonlyArray<string>
}

/**
 * True when nothing was lost, doubled, or left without its record, command or event, and the
 * dead-letter stream holds exactly the `expectedDeadLetters` bad messages the scenario sent.
 */
export const holds = (report: InvariantReport, expectedDeadLetters = 0): boolean =>
  report.deadLettered === expectedDeadLetters &&
  report.duplicates === 0 &&
  report.lost === 0 &&
  report.conflicting === 0 &&
  report.unexpected === 0 &&
  report.inFlight === 0 &&
  report.commandsWithoutRecords === 0 &&
  report.recordsWithoutCommands === 0 &&
  report.commandRecordMismatches === 0 &&
  report.eventMismatches === 0 &&
  report.repeatedMessages === 0

/** One message read back from a stream, with its decoded body. */
interface Stored {
  readonly subject: string
  readonly msgId: string | undefined
  readonly json: Record<string, unknown>
}

/**
 * Every message in `stream` up to its last sequence now, through an ordered consumer: one
 * pass over the stream instead of a request per message, so 100k messages take seconds.
 */
export const readStream = async (world: World, stream: string): Promise<Array<Stored>> => {
  const info = await world.jsm.streams.info(stream)
  const last = info.state.last_seq
  if (info.state.messages === 0) return []
  const consumer = await world.js.consumers.get(stream, { deliver_policy: DeliverPolicy.All })
  const found: Array<Stored> = []
  const messages = await consumer.consume({ max_messages: 1_000 })
  try {
    for await (const message of messages) {
      found.push({
        subject: message.subject,
        msgId: message.headers?.get("Nats-Msg-Id") || undefined,
        json: message.json<Record<string, unknown>>(),
      })
      if (message.seq >= last) break
    }
  } finally {
    await messages.close()
  }
  return found
}

interface PaymentRow {
  readonly payment_id: string
  readonly subscription_id: string
  readonly occurrence: string
  readonly attempt: number
  readonly amount: number
  readonly status: string
  readonly retryable: boolean | null
  readonly outcome: string | null
}

const keyOf = (subscriptionId: string, occurrence: string) => `${subscriptionId}/${occurrence}`

const push = <K, V>(map: Map<K, Array<V>>, key: K, value: V) => {
  const list = map.get(key)
  if (list === undefined) map.set(key, [value])
  else list.push(value)
}

const text = (value: unknown): string | undefined => (typeof value === "string" ? value : undefined)

const record = (value: unknown): Record<string, unknown> =>
  typeof value === "object" && value !== null ? (value as Record<string, unknown>) : {}

/** Checks the invariants for `due`, the occurrences the scenario made due, after the world settled. */
export const checkInvariants = async (
  world: World,
  due: ReadonlyArray<DueOccurrence>,
): Promise<InvariantReport> => {
  const { streams, subjects } = world.topology
  const problems: Array<string> = []
  const problem = (what: string) => {
    if (problems.length < 20) problems.push(what)
  }

  const payments: ReadonlyArray<PaymentRow> = await world.db
    .selectFrom("payments")
    .select([
      "payment_id",
      "subscription_id",
      "occurrence",
      "attempt",
      "amount",
      "status",
      "retryable",
      "outcome",
    ])
    .execute()
  const decisions = await world.db
    .selectFrom("decisions")
    .select(["subscription_id", "outcome", "reason", "occurrence", "payment_id"])
    .where("outcome", "in", ["skipped", "retry_abandoned"])
    .execute()
  const subscriptions = await world.db.selectFrom("subscriptions").select(["id", "state"]).execute()
  const [hubMessages, eventMessages] = await Promise.all([
    readStream(world, streams.hubPayments),
    readStream(world, streams.events),
  ])
  const letters = await readStream(world, streams.deadLetters)

  const byOccurrence = new Map<string, Array<PaymentRow>>()
  const byPaymentId = new Map<string, PaymentRow>()
  for (const payment of payments) {
    push(byOccurrence, keyOf(payment.subscription_id, payment.occurrence), payment)
    byPaymentId.set(payment.payment_id, payment)
  }
  const skips = new Map<string, Array<{ reason: string | null }>>()
  const abandoned = new Set<string>()
  for (const decision of decisions) {
    if (decision.occurrence === null) continue
    const key = keyOf(decision.subscription_id, decision.occurrence)
    if (decision.outcome === "skipped") push(skips, key, { reason: decision.reason })
    else abandoned.add(key)
  }
  const plannedRetries = new Set<string>()
  for (const subscription of subscriptions) {
    const occurrence = text(record(record(subscription.state).retry).occurrence)
    if (occurrence !== undefined) plannedRetries.add(keyOf(subscription.id, occurrence))
  }

  // Repeated copies of one message (same Nats-Msg-Id): the stream's duplicate window should drop them.
  let repeatedMessages = 0
  const seenIds = new Set<string>()
  for (const message of [...hubMessages, ...eventMessages]) {
    if (message.msgId === undefined) continue
    const id = `${message.subject}|${message.msgId}`
    if (seenIds.has(id)) repeatedMessages += 1
    else seenIds.add(id)
  }

  // ---- commands and records --------------------------------------------
  const commands = new Map<string, Record<string, unknown>>()
  // subscription/occurrence -> attempt -> the payment ids sent for it
  const commandsByOccurrence = new Map<string, Map<number, Set<string>>>()
  for (const message of hubMessages) {
    if (message.subject !== subjects.hubCommand) continue
    const paymentId = text(message.json.paymentId)?.toLowerCase()
    const subscriptionId = text(message.json.subscriptionId)
    const occurrence = text(message.json.occurrence)
    if (paymentId === undefined || subscriptionId === undefined || occurrence === undefined) {
      problem(`command without paymentId/subscriptionId/occurrence: ${JSON.stringify(message.json)}`)
      continue
    }
    commands.set(paymentId, message.json)
    const key = keyOf(subscriptionId, occurrence)
    const attempt = typeof message.json.attempt === "number" ? message.json.attempt : 0
    const byAttempt = commandsByOccurrence.get(key) ?? new Map<number, Set<string>>()
    commandsByOccurrence.set(key, byAttempt)
    const ids = byAttempt.get(attempt) ?? new Set<string>()
    byAttempt.set(attempt, ids)
    ids.add(paymentId)
  }
  let commandsWithoutRecords = 0
  let commandRecordMismatches = 0
  for (const [paymentId, command] of commands) {
    const payment = byPaymentId.get(paymentId)
    if (payment === undefined) {
      commandsWithoutRecords += 1
      problem(`command ${paymentId} has no payment record`)
      continue
    }
    const amount = record(command.amount).value
    if (
      command.subscriptionId !== payment.subscription_id ||
      command.occurrence !== payment.occurrence ||
      command.attempt !== payment.attempt ||
      amount !== payment.amount
    ) {
      commandRecordMismatches += 1
      problem(`command ${paymentId} disagrees with its record`)
    }
  }
  let recordsWithoutCommands = 0
  for (const payment of payments) {
    if (!commands.has(payment.payment_id)) {
      recordsWithoutCommands += 1
      problem(`payment ${payment.payment_id} (${payment.status}) has no command in ${streams.hubPayments}`)
    }
  }

  // ---- outcomes per due occurrence ---------------------------------------
  const dueKeys = new Set(due.map((occurrence) => keyOf(occurrence.subscriptionId, occurrence.occurrence)))
  let paid = 0
  let skipped = 0
  let failed = 0
  let inFlight = 0
  let lost = 0
  let conflicting = 0
  let duplicates = 0
  for (const key of dueKeys) {
    const attempts = [...(byOccurrence.get(key) ?? [])].sort((a, b) => a.attempt - b.attempt)
    const succeeded = attempts.filter((attempt) => attempt.status === "succeeded").length
    // A later attempt is allowed only after a definite, retryable failure of the one before.
    const unjustified = attempts.some((attempt, index) => {
      if (index === 0) return attempt.attempt !== 1
      const before = attempts[index - 1]
      return (
        before === undefined ||
        before.attempt !== attempt.attempt - 1 ||
        before.status !== "failed" ||
        before.retryable !== true
      )
    })
    // The same from the commands' side: a command for attempt k > 1 needs attempt k - 1 recorded as a
    // retryable failure, and one attempt is one payment id.
    const retryable = new Set(
      attempts.filter((a) => a.status === "failed" && a.retryable === true).map((a) => a.attempt),
    )
    const resent = [...(commandsByOccurrence.get(key) ?? new Map<number, Set<string>>())].some(
      ([attempt, ids]) => ids.size > 1 || attempt < 1 || (attempt > 1 && !retryable.has(attempt - 1)),
    )
    if (succeeded > 1 || unjustified || resent) {
      duplicates += 1
      problem(
        `${key}: ${succeeded} successful payment(s), attempts ${attempts.map((a) => a.attempt).join(",")}`,
      )
    }
    const last = attempts[attempts.length - 1]
    const reasons = skips.get(key) ?? []
    if (reasons.some((skip) => skip.reason === null || skip.reason === ""))
      problem(`${key}: skipped without a reason`)
    const outcomes = [
      succeeded > 0,
      reasons.some((skip) => skip.reason !== null && skip.reason !== ""),
      succeeded === 0 && (last?.outcome === "failed" || abandoned.has(key)),
    ]
    const count = outcomes.filter(Boolean).length
    if (count > 1) {
      conflicting += 1
      problem(`${key}: more than one outcome`)
    }
    if (outcomes[0]) paid += 1
    else if (outcomes[1]) skipped += 1
    else if (outcomes[2]) failed += 1
    else if (last?.status === "pending" || last?.status === "unknown" || plannedRetries.has(key)) {
      inFlight += 1
      problem(`${key}: still in flight (${last?.status ?? "retry planned"})`)
    } else {
      lost += 1
      problem(`${key}: no outcome and nothing in flight (${attempts.length} attempt(s))`)
    }
  }
  let unexpected = 0
  for (const key of new Set([...byOccurrence.keys(), ...skips.keys()])) {
    if (!dueKeys.has(key)) {
      unexpected += 1
      problem(`${key}: payment or skip for an occurrence that was not due`)
    }
  }

  // ---- events and notifications against the records -----------------------
  const eventPrefix = `${world.settings.naming.rpPrefix}.event.`
  const notifyPrefix = `${world.settings.naming.rpPrefix}.notify.`
  // type -> paymentId (or subscription/occurrence for skips) -> distinct message ids
  const events = new Map<string, Map<string, Set<string>>>()
  const note = (type: string, key: string, id: string) => {
    const byKey = events.get(type) ?? new Map<string, Set<string>>()
    events.set(type, byKey)
    const ids = byKey.get(key) ?? new Set<string>()
    byKey.set(key, ids)
    ids.add(id)
  }
  for (const message of eventMessages) {
    const json = message.json
    if (message.subject.startsWith(eventPrefix)) {
      const type = text(json.type) ?? "?"
      if (!type.startsWith("payment.")) continue
      const data = record(json.data)
      const id = text(json.eventId) ?? message.msgId ?? ""
      if (type === "payment.skipped")
        note(`event:${type}`, keyOf(text(json.subscriptionId) ?? "", text(data.occurrence) ?? ""), id)
      else note(`event:${type}`, (text(data.paymentId) ?? "").toLowerCase(), id)
    } else if (message.subject.startsWith(notifyPrefix)) {
      const type = text(json.type) ?? "?"
      if (type === "payment.upcoming") continue
      note(`notify:${type}`, (text(json.paymentId) ?? "").toLowerCase(), text(json.notificationId) ?? "")
    }
  }
  let eventMismatches = 0
  const expectOne = (type: string, key: string, wanted: number) => {
    const found = events.get(type)?.get(key)?.size ?? 0
    events.get(type)?.delete(key)
    if (found !== wanted) {
      eventMismatches += 1
      problem(`${type} for ${key}: ${found}, expected ${wanted}`)
    }
  }
  for (const payment of payments) {
    const id = payment.payment_id
    expectOne("event:payment.requested", id, 1)
    const paidOne = payment.status === "succeeded"
    expectOne("event:payment.succeeded", id, paidOne ? 1 : 0)
    expectOne("notify:payment.succeeded", id, paidOne ? 1 : 0)
    const retried = payment.outcome === "retry_scheduled"
    expectOne("event:payment.retry_scheduled", id, retried ? 1 : 0)
    const key = keyOf(payment.subscription_id, payment.occurrence)
    // A final failure is told once: by the attempt's own result, or when its planned retry is abandoned.
    const finalFailure =
      payment.outcome === "failed" ||
      (retried &&
        abandoned.has(key) &&
        (byOccurrence.get(key) ?? []).every((a) => a.attempt <= payment.attempt))
    expectOne("event:payment.failed", id, finalFailure ? 1 : 0)
    expectOne("notify:payment.failed", id, (finalFailure ? 1 : 0) + (retried ? 1 : 0))
  }
  for (const [key, reasons] of skips) expectOne("event:payment.skipped", key, reasons.length)
  // Whatever is left names a payment or an occurrence the records know nothing about.
  for (const [type, byKey] of events) {
    for (const [key, ids] of byKey) {
      if (ids.size === 0) continue
      eventMismatches += 1
      problem(`${type} for ${key} without a matching record (${ids.size})`)
    }
  }

  const deadLetters: Record<string, number> = {}
  for (const letter of letters) {
    const from = text(letter.json.stream) ?? "?"
    deadLetters[from] = (deadLetters[from] ?? 0) + 1
  }

  return {
    due: dueKeys.size,
    paid,
    skipped,
    failed,
    inFlight,
    duplicates,
    lost,
    conflicting,
    unexpected,
    commands: commands.size,
    commandsWithoutRecords,
    recordsWithoutCommands,
    commandRecordMismatches,
    eventMismatches,
    repeatedMessages,
    deadLetters,
    deadLettered: letters.length,
    problems,
  }
}
