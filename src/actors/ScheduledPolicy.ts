/**
 * The rules of a scheduled autopayment, as a pure function from (subscription,
 * message, engine time) to a transition. No I/O, no clock, no randomness:
 * everything it decides is visible in the transition it returns, which is
 * what makes "one payment per occurrence" checkable in tests.
 *
 * The rules (contract section 3):
 * - an occurrence is due at its date and time in the subscription's zone;
 * - after downtime only the most recent due occurrence is paid, and only if it
 *   is at most `catchUpWindow` late; older ones are skipped as `missed`;
 * - `payment.upcoming` goes out `noticeLead` ahead of each occurrence;
 * - a retryable failure is retried on `retrySchedule`, never at or past the
 *   next occurrence, and never once any attempt of the occurrence is known to
 *   have succeeded; three failed occurrences in a row pause the subscription;
 * - paused: due occurrences are recorded as skipped, resume does not backfill;
 * - cancelled: nothing new is sent, results of attempts in flight are recorded;
 * - no result within `resultTimeout`: the outcome is unknown, the engine asks
 *   the hub and never sends a new attempt until the hub says `failed` and
 *   `retryable`.
 */
import { Result } from "effect"
import * as Calendar from "../domain/Calendar.ts"
import { conflict, invalidField } from "../domain/Errors.ts"
import { paymentIdFor } from "../domain/Ids.ts"
import * as Money from "../domain/Money.ts"
import {
  advanceCursor,
  type Cursor,
  firstCursorAfter,
  initialScheduledState,
  isFinal,
  normalizeSchedule,
  type OpenAttempt,
  type RetryPlan,
  type ScheduledState,
  type ScheduledSubscription,
  type ScheduledTerms,
  type Status,
} from "../domain/Subscription.ts"
import { toView } from "../domain/SubscriptionView.ts"
import * as Timestamp from "../domain/Timestamp.ts"
import type { Draft, PendingLifecycleEvent, TermChanges } from "../streams/Events.ts"
import type { Actor, PaymentResult } from "../streams/Messages.ts"
import { creation, firstRow, type NewSubscription } from "./Creation.ts"
import type { ActorInput, LifecycleCommand, PolicySettings, UpdateCommand } from "./Inputs.ts"
import { notForKind } from "./Inputs.ts"
import { type LimitCheck, unlimited } from "./Limits.ts"
import { PaymentRun, type PolicyRefusal } from "./PaymentRun.ts"
import { engineActor, type Transition } from "./Transition.ts"

/** The outcome of handling one message: a transition, or a refusal that writes nothing. */
export type PolicyResult = Result.Result<Transition<ScheduledSubscription>, PolicyRefusal>

/** Handles one message for a scheduled subscription at engine time `now`. */
export const decide = (
  subscription: ScheduledSubscription,
  input: ActorInput,
  now: number,
  settings: PolicySettings,
  limits: LimitCheck = unlimited(subscription),
): PolicyResult => {
  const run = new ScheduledRun(subscription, now, settings, limits)
  switch (input._tag) {
    case "Wake":
      run.wake(input.statusReplies)
      break
    case "HubResult":
      if (run.hubResult(input.result, input.recordedStatus, input.settled)) run.completeIfDone()
      break
    case "Confirm": {
      const refusal = run.confirm(input.paymentId, input.by)
      if (refusal !== undefined) return Result.fail(refusal)
      break
    }
    case "ThresholdEvent":
    case "DebtResponse":
    case "PaymentCompleted":
    case "AcceptReminder":
    case "DeclineReminder":
      return Result.fail(notForKind("scheduled", input))
    case "Update": {
      const refusal = run.update(input)
      if (refusal !== undefined) return Result.fail(refusal)
      break
    }
    default: {
      const refusal = run.lifecycle(input)
      if (refusal !== undefined) return Result.fail(refusal)
    }
  }
  return Result.succeed(run.finish())
}

/** The next time the subscription needs its actor woken, or null when nothing is ahead. */
export const nextDueAt = (
  status: Status,
  state: ScheduledState,
  settings: PolicySettings,
  maxPayments: number | undefined = undefined,
): number | null => {
  const candidates: Array<number> = []
  const live = status === "active" || status === "paused"
  if (live && state.cursor !== null) {
    candidates.push(state.cursor.dueAt)
    if (
      status === "active" &&
      state.noticeFor !== state.cursor.date &&
      !state.skip.includes(state.cursor.date) &&
      // Fix: sendNoticeIfDue withholds the notice while maxPayments is taken up by payments made
      // and in flight; waking for it then would change nothing and leave the subscription due at
      // the same instant, so the scheduler would wake it on every tick (found by the liveness
      // property: maxPayments 1, daily, the notice window of day 2 opens as day 1 is sent). A
      // result that frees the slot recomputes this, and the next wake sends the notice.
      !maxPaymentsTaken(state, maxPayments)
    ) {
      candidates.push(state.cursor.dueAt - settings.noticeLeadMs)
    }
  }
  if (state.retry !== null) candidates.push(state.retry.at)
  for (const attempt of state.open) candidates.push(attempt.nextQueryAt ?? attempt.timeoutAt)
  return candidates.length === 0 ? null : Math.min(...candidates)
}

/** Distinct occurrences with an attempt in flight or a retry planned. */
const occurrencesInFlight = (open: ReadonlyArray<OpenAttempt>, retry: RetryPlan | null): number => {
  const occurrences = new Set(open.map((attempt) => attempt.occurrence))
  if (retry !== null) occurrences.add(retry.occurrence)
  return occurrences.size
}

/** True when payments made plus occurrences in flight already reach `maxPayments`. */
const maxPaymentsTaken = (state: ScheduledState, maxPayments: number | undefined): boolean =>
  maxPayments !== undefined && state.paid + occurrencesInFlight(state.open, state.retry) >= maxPayments

type LifecycleEventType =
  | "subscription.paused"
  | "subscription.resumed"
  | "subscription.cancelled"
  | "subscription.updated"
  | "subscription.completed"

class ScheduledRun extends PaymentRun<ScheduledSubscription> {
  terms: ScheduledTerms
  cursor: Cursor | null
  noticeFor: string | null
  skip: Array<string>
  retry: RetryPlan | null
  failedInARow: number
  paid: number
  lastSettled: string | null

  constructor(base: ScheduledSubscription, now: number, settings: PolicySettings, limits: LimitCheck) {
    super(base, now, settings, limits)
    this.terms = base.terms
    const state = base.state
    this.cursor = state.cursor
    this.noticeFor = state.noticeFor
    this.skip = [...state.skip]
    this.retry = state.retry
    this.failedInARow = state.failedInARow
    this.paid = state.paid
    this.lastSettled = state.lastSettled
  }

  // ---- time -------------------------------------------------------------

  wake(statusReplies: ReadonlyMap<string, unknown>): void {
    this.applyStatusReplies(statusReplies)
    // Fix: a retry is never sent past the next occurrence (contract 3.3). When a late wake finds
    // both the retry time and the next occurrence passed (downtime, or a schedule change that
    // moved the next occurrence ahead of the retry), processDueOccurrences abandons the retry
    // instead of the old code sending attempt n+1 and the next occurrence together.
    const nextOccurrenceDue = this.cursor !== null && this.cursor.dueAt <= this.now
    if (this.retry !== null && this.retry.at <= this.now && !nextOccurrenceDue) this.sendRetry(this.retry)
    this.processDueOccurrences()
    this.sendNoticeIfDue()
    this.completeIfDone()
  }

  processDueOccurrences(): void {
    const due: Array<Cursor> = []
    while (this.cursor !== null && this.cursor.dueAt <= this.now) {
      due.push(this.cursor)
      this.cursor = advanceCursor(this.terms.schedule, this.cursor)
    }
    if (due.length === 0) return
    if (this.retry !== null) {
      // The next occurrence has arrived: the old one stops retrying and counts as failed.
      const occurrence = this.retry.occurrence
      this.abandonRetry("next_occurrence_due")
      this.countFailedOccurrence(occurrence)
    }
    due.forEach((occurrence, position) => {
      this.handleDueOccurrence(occurrence, position === due.length - 1)
      if (this.lastSettled === null || occurrence.date > this.lastSettled) this.lastSettled = occurrence.date
      // Fix: a skip request for an occurrence that passed for another reason (paused) is spent
      // too; it used to stay in `skip` and show as a pending skip of a past date.
      this.dropSkip(occurrence.date)
    })
  }

  handleDueOccurrence(occurrence: Cursor, latest: boolean): void {
    if (this.status !== "active" && this.status !== "paused") return
    const dueAt = Timestamp.format(occurrence.dueAt)
    const lateBy = this.now - occurrence.dueAt
    const skip = this.reasonNotToPay(occurrence, latest, lateBy)
    if (skip !== null) {
      this.skipOccurrence(occurrence, skip.reason, { dueAt, ...skip.details })
      return
    }
    const { schedule } = this.terms
    this.pay(occurrence.date, 1, this.terms.amount, {
      rule: "schedule",
      occurrence: occurrence.date,
      dueAt,
      lateByMs: lateBy,
      schedule: `every ${schedule.interval} ${schedule.every} at ${schedule.time} ${schedule.timezone}`,
    })
  }

  /** Why a due occurrence is not paid, with the inputs of that rule; null when it is paid. */
  reasonNotToPay(
    occurrence: Cursor,
    latest: boolean,
    lateBy: number,
  ): { readonly reason: string; readonly details: Readonly<Record<string, unknown>> } | null {
    if (this.status === "paused") return { reason: "paused", details: { statusReason: this.statusReason } }
    const skipIndex = this.skip.indexOf(occurrence.date)
    if (skipIndex >= 0) {
      this.skip.splice(skipIndex, 1)
      return { reason: "skip_next", details: {} }
    }
    if (!latest)
      return { reason: "missed", details: { rule: "after downtime only the most recent occurrence is paid" } }
    if (lateBy > this.settings.catchUpWindowMs) {
      return {
        reason: "missed",
        details: { lateByMs: lateBy, catchUpWindowMs: this.settings.catchUpWindowMs },
      }
    }
    const maxPayments = this.terms.schedule.maxPayments
    if (maxPayments !== undefined && this.paid + this.occurrencesInFlight() >= maxPayments) {
      const reason = this.paid >= maxPayments ? "max_payments_reached" : "max_payments_in_flight"
      return { reason, details: { maxPayments, paid: this.paid, inFlight: this.occurrencesInFlight() } }
    }
    return null
  }

  skipOccurrence(
    occurrence: Cursor,
    reason: string,
    details: { readonly dueAt: string } & Readonly<Record<string, unknown>>,
  ): void {
    this.builder.decide("skipped", { reason, occurrence: occurrence.date, details })
    this.builder.event("payment.skipped", this.base, { occurrence: occurrence.date, reason, ...details })
  }

  sendNoticeIfDue(): void {
    const next = this.cursor
    if (this.status !== "active" || next === null || this.noticeFor === next.date) return
    if (this.skip.includes(next.date)) return
    if (this.now < next.dueAt - this.settings.noticeLeadMs || this.now >= next.dueAt) return
    const maxPayments = this.terms.schedule.maxPayments
    if (maxPayments !== undefined && this.paid + this.occurrencesInFlight() >= maxPayments) return
    this.noticeFor = next.date
    const data = {
      occurrence: next.date,
      dueAt: Timestamp.format(next.dueAt),
      amount: this.terms.amount,
      providerId: this.base.payee.providerId,
      account: this.base.payee.account,
      source: this.base.payee.source,
    }
    this.builder.notify("payment.upcoming", data)
    this.builder.decide("notice_sent", { occurrence: next.date, details: data })
  }

  // ---- payments ---------------------------------------------------------

  sendRetry(retry: RetryPlan): void {
    this.retry = null
    this.pay(retry.occurrence, retry.attempt, retry.amount, {
      rule: "retry",
      occurrence: retry.occurrence,
      attempt: retry.attempt,
      plannedAt: Timestamp.format(retry.at),
    })
  }

  applyResult(attempt: OpenAttempt, result: PaymentResult): void {
    if (result.status === "succeeded") {
      this.recordSuccess(attempt, result)
      this.paid += 1
      this.failedInARow = 0
      return
    }
    const retryAt = this.retryTimeFor(attempt, result)
    if (retryAt === null) {
      this.recordFinalFailure(attempt, result, this.whyNoRetry(attempt, result))
      this.countFailedOccurrence(attempt.occurrence)
      return
    }
    const { payment, recorded } = this.settle(attempt, result)
    this.retry = {
      occurrence: attempt.occurrence,
      attempt: attempt.attempt + 1,
      at: retryAt,
      amount: attempt.amount,
    }
    this.builder.recordOutcome({ ...recorded, outcome: "retry_scheduled" })
    const data = {
      ...payment,
      status: result.status,
      reason: result.reason ?? null,
      retryAt: Timestamp.format(retryAt),
      nextAttempt: attempt.attempt + 1,
    }
    this.builder.event("payment.retry_scheduled", this.base, data)
    this.builder.notify("payment.failed", { ...data, final: false }, attempt.paymentId)
  }

  /** A retry planned for the occurrence is cancelled: it would pay it twice. */
  protected occurrencePaidLate(occurrence: string, paidBy: string): void {
    const retry = this.retry
    if (retry !== null && retry.occurrence === occurrence) {
      this.retry = null
      this.builder.decide("retry_cancelled", {
        reason: "earlier_attempt_succeeded",
        occurrence,
        paymentId: paidBy,
        details: { plannedAt: Timestamp.format(retry.at), attempt: retry.attempt, paidBy },
      })
    }
    this.paid += 1
    this.failedInARow = 0
  }

  /** When a failed attempt may be tried again, or null when it may not. */
  retryTimeFor(attempt: OpenAttempt, result: PaymentResult): number | null {
    if (result.status !== "failed" || !result.retryable) return null
    if (this.status !== "active" || this.retry !== null) return null
    const delay = this.settings.retryScheduleMs[attempt.attempt - 1]
    if (delay === undefined) return null
    const at = this.now + delay
    const nextOccurrenceAt = this.nextOccurrenceAfter(attempt.occurrence)
    return nextOccurrenceAt !== null && at >= nextOccurrenceAt ? null : at
  }

  whyNoRetry(attempt: OpenAttempt, result: PaymentResult): string {
    if (result.status === "declined") return "declined payments are final"
    if (!result.retryable) return "the hub marked the failure as not retryable"
    if (this.status !== "active") return `the subscription is ${this.status}`
    if (this.retry !== null) return `a retry of occurrence ${this.retry.occurrence} is already planned`
    if (this.settings.retryScheduleMs[attempt.attempt - 1] === undefined) return "retry schedule exhausted"
    return "the next occurrence comes before the next retry"
  }

  /** Due time of the occurrence after `occurrence`: the cursor if it is the latest started, else already past. */
  nextOccurrenceAfter(occurrence: string): number | null {
    if (occurrence === this.lastSettled) return this.cursor?.dueAt ?? null
    return this.now
  }

  countFailedOccurrence(occurrence: string): void {
    this.failedInARow += 1
    if (this.status !== "active" || this.failedInARow < this.settings.autoPauseAfterFailures) return
    this.status = "paused"
    this.statusReason = "consecutive_failures"
    this.version += 1
    this.abandonRetry("paused")
    const details = { failedOccurrencesInARow: this.failedInARow, lastFailedOccurrence: occurrence }
    this.builder.decide("paused", { reason: "consecutive_failures", details })
    this.lifecycleEvents.push({
      type: "subscription.paused",
      data: { reason: "consecutive_failures", ...details, by: engineActor },
    })
    this.builder.notify("subscription.paused", { reason: "consecutive_failures", ...details })
  }

  occurrencesInFlight(): number {
    return occurrencesInFlight(this.open, this.retry)
  }

  completeIfDone(): void {
    // A payment held for the client's confirmation keeps the subscription open until confirmed or cancelled.
    if (isFinal(this.status) || this.open.length > 0 || this.retry !== null || this.held.length > 0) return
    const maxPayments = this.terms.schedule.maxPayments
    const reachedMax = maxPayments !== undefined && this.paid >= maxPayments
    if (this.cursor !== null && !reachedMax) return
    const reason = reachedMax ? "max_payments_reached" : "schedule_ended"
    this.status = "completed"
    this.statusReason = reason
    this.version += 1
    this.cursor = null
    this.builder.decide("completed", { reason, details: { paymentsMade: this.paid } })
    this.lifecycleEvents.push({ type: "subscription.completed", data: { reason, by: engineActor } })
  }

  // ---- commands ---------------------------------------------------------

  lifecycle(command: LifecycleCommand): PolicyRefusal | undefined {
    switch (command._tag) {
      case "Pause":
        return this.pause(command.by)
      case "Resume":
        return this.resume(command.by)
      case "Cancel":
        return this.cancel(command.by)
      case "SkipNext":
        return this.skipNext(command.by)
    }
  }

  pause(by: Actor): PolicyRefusal | undefined {
    if (this.status !== "active") return conflict(`cannot pause a subscription that is ${this.status}`)
    this.status = "paused"
    this.statusReason = "client_request"
    this.version += 1
    this.abandonRetry("paused")
    this.builder.decide("paused", { reason: "client_request", by })
    this.lifecycleEvents.push({ type: "subscription.paused", data: { reason: "client_request", by } })
    return undefined
  }

  resume(by: Actor): PolicyRefusal | undefined {
    if (this.status !== "paused") return conflict(`cannot resume a subscription that is ${this.status}`)
    this.status = "active"
    this.statusReason = null
    this.version += 1
    this.failedInARow = 0
    // No backfill: anything that fell due while paused stays skipped.
    while (this.cursor !== null && this.cursor.dueAt <= this.now) {
      this.skipOccurrence(this.cursor, "paused", {
        dueAt: Timestamp.format(this.cursor.dueAt),
        statusReason: this.base.statusReason,
      })
      if (this.lastSettled === null || this.cursor.date > this.lastSettled)
        this.lastSettled = this.cursor.date
      this.dropSkip(this.cursor.date) // Fix: as in processDueOccurrences.
      this.cursor = advanceCursor(this.terms.schedule, this.cursor)
    }
    this.builder.decide("resumed", { by })
    this.lifecycleEvents.push({ type: "subscription.resumed", data: { by } })
    this.sendNoticeIfDue()
    this.completeIfDone()
    return undefined
  }

  cancel(by: Actor): PolicyRefusal | undefined {
    if (isFinal(this.status)) return conflict(`cannot cancel a subscription that is ${this.status}`)
    this.status = "cancelled"
    this.statusReason = "client_request"
    this.version += 1
    this.abandonRetry("cancelled")
    this.cursor = null
    this.builder.decide("cancelled", {
      reason: "client_request",
      by,
      details: {
        attemptsInFlight: this.open.map((attempt) => attempt.paymentId),
        heldPaymentsDropped: this.held.map((held) => held.paymentId),
      },
    })
    this.held = []
    this.lifecycleEvents.push({ type: "subscription.cancelled", data: { reason: "client_request", by } })
    return undefined
  }

  skipNext(by: Actor): PolicyRefusal | undefined {
    if (isFinal(this.status))
      return conflict(`cannot skip an occurrence of a subscription that is ${this.status}`)
    let candidate = this.cursor
    while (candidate !== null && this.skip.includes(candidate.date)) {
      candidate = advanceCursor(this.terms.schedule, candidate)
    }
    if (candidate === null) return conflict("the schedule has no upcoming occurrence left to skip")
    this.skip.push(candidate.date)
    this.version += 1
    this.builder.decide("skip_requested", {
      occurrence: candidate.date,
      by,
      details: { dueAt: Timestamp.format(candidate.dueAt) },
    })
    this.lifecycleEvents.push({
      type: "subscription.updated",
      data: { change: "skipNext", occurrence: candidate.date, by },
    })
    return undefined
  }

  update(command: UpdateCommand): PolicyRefusal | undefined {
    if (isFinal(this.status)) return conflict(`cannot update a subscription that is ${this.status}`)
    if (command.expectedVersion !== this.version) {
      return conflict(
        `expectedVersion ${command.expectedVersion} is stale: the subscription is at version ${this.version}`,
      )
    }
    if (command.amount !== undefined && command.amount.currency !== this.base.currency) {
      return invalidField(
        "body.amount.currency",
        `must stay ${this.base.currency}: the currency of a subscription cannot change`,
      )
    }
    const changes: Draft<TermChanges> = {}
    if (command.schedule !== undefined) {
      const schedule = normalizeSchedule(command.schedule)
      const cursor = firstCursorAfter(schedule, this.now, this.lastSettled)
      if (cursor === null) {
        return invalidField(
          "body.schedule",
          `has no occurrence after the engine's current time ${Timestamp.format(this.now)}${this.lastSettled === null ? "" : ` and after ${this.lastSettled}, the last occurrence already handled`} (check startDate and endDate)`,
        )
      }
      changes.schedule = { from: this.terms.schedule, to: schedule }
      this.terms = { ...this.terms, schedule }
      // Skip marks name dates of the old schedule; they do not carry over to the new one.
      this.skip = []
      // A notice that named another date or time no longer holds: the new one is announced.
      if (cursor.dueAt !== this.cursor?.dueAt) this.noticeFor = null
      this.cursor = cursor
    }
    if (command.amount !== undefined && !Money.equals(command.amount, this.terms.amount)) {
      changes.amount = { from: this.terms.amount, to: command.amount }
      this.terms = { ...this.terms, amount: command.amount }
      // A notice already sent named the old amount: the customer gets a corrected one.
      this.noticeFor = null
    }
    this.version += 1
    this.builder.decide("updated", { by: command.by, details: changes })
    this.lifecycleEvents.push({
      type: "subscription.updated",
      data: { change: "terms", changes, by: command.by },
    })
    if (this.status === "active") this.sendNoticeIfDue()
    this.completeIfDone()
    return undefined
  }

  /** Drops a planned retry: its occurrence has failed for good, and everyone told "will retry" hears so. */
  abandonRetry(reason: "next_occurrence_due" | "paused" | "cancelled"): void {
    const retry = this.retry
    if (retry === null) return
    this.retry = null
    const details = { plannedAt: Timestamp.format(retry.at), attempt: retry.attempt }
    this.builder.decide("retry_abandoned", { reason, occurrence: retry.occurrence, details })
    // The attempt whose failure planned this retry: what consumers have been tracking.
    const lastAttemptId = paymentIdFor(this.base.id, retry.occurrence, retry.attempt - 1)
    const data = {
      paymentId: lastAttemptId,
      occurrence: retry.occurrence,
      attempt: retry.attempt - 1,
      amount: retry.amount,
      providerId: this.base.payee.providerId,
      account: this.base.payee.account,
      final: true as const,
      whyNoRetry:
        reason === "next_occurrence_due"
          ? "the next occurrence came before the retry"
          : `the subscription was ${reason}`,
      abandonedRetry: details,
    }
    this.builder.event("payment.failed", this.base, data)
    this.builder.notify("payment.failed", data, lastAttemptId)
  }

  dropSkip(date: string): void {
    if (this.skip.includes(date)) this.skip = this.skip.filter((skipped) => skipped !== date)
  }

  // ---- result -----------------------------------------------------------

  readonly lifecycleEvents: Array<PendingLifecycleEvent<LifecycleEventType>> = []

  finish(): Transition<ScheduledSubscription> {
    const state: ScheduledState = {
      cursor: this.cursor,
      noticeFor: this.noticeFor,
      skip: this.skip,
      open: this.open,
      retry: this.retry,
      failedInARow: this.failedInARow,
      paid: this.paid,
      lastSettled: this.lastSettled,
      held: this.held,
    }
    const due = nextDueAt(this.status, state, this.settings, this.terms.schedule.maxPayments)
    const touched =
      this.builder.payments.length > 0 ||
      this.builder.outcomes.length > 0 ||
      this.builder.decisions.length > 0 ||
      this.builder.outgoing.length > 0 ||
      this.version !== this.base.version ||
      // A stored due time computed under other settings is corrected on the next look.
      due !== this.base.nextDueAt ||
      !sameState(state, this.base.state)
    if (!touched) return this.builder.build(this.base)
    const next: ScheduledSubscription = {
      ...this.base,
      status: this.status,
      statusReason: this.statusReason,
      version: this.version,
      terms: this.terms,
      state,
      nextDueAt: due,
    }
    // Lifecycle events carry the subscription as it now is, so consumers need no call back.
    for (const { type, data } of this.lifecycleEvents) {
      this.builder.event(type, next, { ...data, subscription: toView(next) })
    }
    return this.builder.build(next)
  }
}

const sameState = (a: ScheduledState, b: ScheduledState): boolean => JSON.stringify(a) === JSON.stringify(b)

/** The next `count` occurrences as the engine will treat them (for `subscription.preview`). */
export const previewOccurrences = (
  subscription: ScheduledSubscription,
  count: number,
): ReadonlyArray<{
  date: string
  dueAt: number
  amount: Money.Money
  willPay: boolean
  reason: string | null
}> => {
  const { state, terms } = subscription
  if (isFinal(subscription.status) || state.cursor === null) return []
  const from = Calendar.occurrenceAt(terms.schedule, state.cursor.index)
  const occurrences = Calendar.nextOccurrences(terms.schedule, from, count)
  const maxPayments = terms.schedule.maxPayments
  let expectedPaid =
    state.paid +
    new Set([
      ...state.open.map((attempt) => attempt.occurrence),
      ...(state.retry === null ? [] : [state.retry.occurrence]),
    ]).size
  return occurrences.map((occurrence) => {
    let reason: string | null = null
    if (subscription.status === "paused") reason = "paused"
    else if (state.skip.includes(occurrence.date)) reason = "skip_next"
    else if (maxPayments !== undefined && expectedPaid >= maxPayments) reason = "max_payments_reached"
    if (reason === null) expectedPaid += 1
    return {
      date: occurrence.date,
      dueAt: occurrence.dueAt,
      amount: terms.amount,
      willPay: reason === null,
      reason,
    }
  })
}

/** What a new scheduled subscription is made of. */
export type NewScheduled = NewSubscription<ScheduledTerms>

/** The first row of a scheduled subscription at engine time `now`, with its `created` decision and event. */
export const create = (
  input: NewScheduled,
  now: number,
  settings: PolicySettings,
): Transition<ScheduledSubscription> => {
  const state = initialScheduledState(input.terms, now)
  const due = nextDueAt("active", state, settings, input.terms.schedule.maxPayments)
  const subscription: ScheduledSubscription = {
    ...firstRow(input, input.terms.amount.currency, due),
    kind: "scheduled",
    terms: input.terms,
    state,
  }
  return creation(subscription, input.by, now, {
    terms: input.terms,
    firstOccurrence: state.cursor?.date ?? null,
  })
}
