/**
 * What every kind of autopayment does with money, in one place: send an
 * attempt (or hold it when a limit says no), release a held one when the
 * client confirms, follow up attempts whose result is overdue (contract 10),
 * and recognise results about attempts already settled.
 *
 * A kind's policy extends this with its own rules for *when* to pay and what
 * a result means for it (a retry plan, a cooldown, a bill settled).
 */
import { Result } from "effect"
import { type Conflict, conflict, invalidField, type ValidationFailed } from "../domain/Errors.ts"
import { paymentIdFor } from "../domain/Ids.ts"
import type * as Money from "../domain/Money.ts"
import {
  type DebtSubscription,
  type HeldPayment,
  heldPayments,
  type OpenAttempt,
  type RuleInputs,
  type Subscription,
  type ThresholdSubscription,
} from "../domain/Subscription.ts"
import { toView } from "../domain/SubscriptionView.ts"
import * as Timestamp from "../domain/Timestamp.ts"
import type { EventData, PendingLifecycleEvent } from "../streams/Events.ts"
import type { Actor, PaymentResult } from "../streams/Messages.ts"
import {
  type ActorInput,
  type BalanceReading,
  type DebtAnswer,
  type LifecycleCommand,
  notForKind,
  type PolicySettings,
  type SettledPayment,
  type UpdateCommand,
} from "./Inputs.ts"
import type { LimitBreach, LimitCheck } from "./Limits.ts"
import { type Transition, TransitionBuilder } from "./Transition.ts"

/** What a policy may refuse a command with. */
export type PolicyRefusal = Conflict | ValidationFailed

/** How a payment the policy wanted to make ended up. */
export type PayOutcome = "sent" | "held"

export abstract class PaymentRun<S extends Subscription> {
  readonly builder: TransitionBuilder
  status: S["status"]
  statusReason: string | null
  version: number
  open: Array<OpenAttempt>
  held: Array<HeldPayment>

  constructor(
    readonly base: S,
    readonly now: number,
    readonly settings: PolicySettings,
    readonly limits: LimitCheck,
  ) {
    this.builder = new TransitionBuilder(base, now)
    this.status = base.status
    this.statusReason = base.statusReason
    this.version = base.version
    this.open = [...base.state.open]
    this.held = [...heldPayments(base)]
  }

  /** What a settled attempt's result means for this kind. */
  abstract applyResult(attempt: OpenAttempt, result: PaymentResult): void

  /** How a held payment is announced: a debt bill over its limit is told differently from a cap. */
  protected announceHold(held: HeldPayment): void {
    const data = this.heldData(held)
    this.builder.notify("limit.exceeded", data, held.paymentId)
  }

  protected heldData(held: HeldPayment): EventData<"debt.over_limit"> {
    return {
      paymentId: held.paymentId,
      occurrence: held.occurrence,
      amount: held.amount,
      reason: held.reason,
      limit: held.limit,
      providerId: this.base.payee.providerId,
      account: this.base.payee.account,
      howToRelease: "payment.confirm with this paymentId sends it once",
    }
  }

  /** Pays `amount` for `occurrence` unless a limit holds it back. */
  pay(occurrence: string, attempt: number, amount: Money.Money, rule: RuleInputs): PayOutcome {
    const breach = this.limits.admit(amount, this.now)
    if (breach !== null) {
      this.hold(occurrence, attempt, amount, rule, breach)
      return "held"
    }
    this.sendAttempt(occurrence, attempt, amount, rule, true)
    return "sent"
  }

  /** Keeps a payment back until the client confirms it. */
  hold(
    occurrence: string,
    attempt: number,
    amount: Money.Money,
    rule: RuleInputs,
    breach: LimitBreach,
  ): void {
    const held: HeldPayment = {
      paymentId: paymentIdFor(this.base.id, occurrence, attempt),
      occurrence,
      attempt,
      amount,
      reason: breach.reason,
      heldAt: this.now,
      rule,
      limit: breach.limit,
    }
    this.held.push(held)
    this.builder.decide("held", {
      reason: breach.reason,
      occurrence,
      paymentId: held.paymentId,
      details: { amount, rule, limit: breach.limit },
    })
    this.announceHold(held)
  }

  /** The client releases a held payment: it is sent once, past the limit that held it. */
  confirm(paymentId: string, by: Actor) {
    const held = this.held.find((candidate) => candidate.paymentId === paymentId.toLowerCase())
    if (held === undefined) {
      return conflict(`payment ${paymentId} is not waiting for confirmation on this subscription`)
    }
    // Paused means nothing goes out (contract 4): the client resumes first, then confirms.
    if (this.status !== "active") {
      return conflict(`cannot confirm a payment of a subscription that is ${this.status}`)
    }
    this.held = this.held.filter((candidate) => candidate !== held)
    this.version += 1
    this.builder.decide("confirmed", {
      occurrence: held.occurrence,
      paymentId: held.paymentId,
      by,
      details: { amount: held.amount, heldFor: held.reason, limit: held.limit },
    })
    this.sendAttempt(held.occurrence, held.attempt, held.amount, { ...held.rule, confirmedBy: by }, false)
    return undefined
  }

  /** Records an attempt and publishes its command (the limits already passed or were waived). */
  sendAttempt(
    occurrence: string,
    attempt: number,
    amount: Money.Money,
    rule: RuleInputs,
    limitChecked: boolean,
  ): void {
    const paymentId = paymentIdFor(this.base.id, occurrence, attempt)
    const payment = {
      paymentId,
      occurrence,
      attempt,
      amount,
      providerId: this.base.payee.providerId,
      account: this.base.payee.account,
      source: this.base.payee.source,
      rule,
    }
    const spend = this.limits.spendOf(amount, this.now, limitChecked)
    this.builder.requestPayment({
      ...payment,
      subscriptionId: this.base.id,
      clientId: this.base.clientId,
      requestedAt: this.now,
      spend,
      kind: this.base.kind,
    })
    const sentAt = this.now
    const timeoutAt = this.now + this.settings.resultTimeoutMs
    // Two literals rather than a conditional spread, which V8 runs through its slow generic path.
    this.open.push(
      spend === null
        ? { paymentId, occurrence, attempt, amount, sentAt, timeoutAt, statusQueries: 0, nextQueryAt: null }
        : {
            paymentId,
            occurrence,
            attempt,
            amount,
            sentAt,
            timeoutAt,
            statusQueries: 0,
            nextQueryAt: null,
            spendMonth: spend.month,
          },
    )
    this.builder.event("payment.requested", this.base, payment)
  }

  /** Applies the hub's answers about overdue attempts; still unknown means ask again later, never resend. */
  applyStatusReplies(statusReplies: ReadonlyMap<string, unknown>): void {
    for (const attempt of [...this.open]) {
      if ((attempt.nextQueryAt ?? attempt.timeoutAt) > this.now) continue
      const reply = statusReplies.get(attempt.paymentId)
      if (isResult(reply)) {
        this.applyVerdict(attempt, reply)
        continue
      }
      const queries = attempt.statusQueries + 1
      const backoff = this.settings.statusQueryBackoffMs
      const delay = backoff[Math.min(queries - 1, backoff.length - 1)] ?? 3_600_000
      this.replaceOpen(attempt, { ...attempt, statusQueries: queries, nextQueryAt: this.now + delay })
      if (attempt.statusQueries === 0) {
        this.builder.recordOutcome({
          paymentId: attempt.paymentId,
          status: "unknown",
          retryable: null,
          reason: "no result within the result timeout",
          hubReference: null,
          outcome: "awaiting_status",
          resultAt: this.now,
          spendRelease: null,
        })
        this.builder.decide("result_overdue", {
          occurrence: attempt.occurrence,
          paymentId: attempt.paymentId,
          details: {
            sentAt: Timestamp.format(attempt.sentAt),
            timeoutAt: Timestamp.format(attempt.timeoutAt),
            hubAnswer: reply === "unreachable" ? "unreachable" : "unknown",
            nextQueryAt: Timestamp.format(this.now + delay),
          },
        })
      }
    }
  }

  /**
   * A hub result: applied to its open attempt. About a settled one, a success reported after a
   * failure stands (money moved); any other contradiction is recorded for support.
   */
  hubResult(result: PaymentResult, recordedStatus: string | null, settled?: SettledPayment): boolean {
    const attempt = this.open.find((candidate) => candidate.paymentId === result.paymentId)
    if (attempt !== undefined) {
      this.applyVerdict(attempt, result)
      return true
    }
    if (
      settled !== undefined &&
      result.status === "succeeded" &&
      (recordedStatus === "failed" || recordedStatus === "declined")
    ) {
      this.lateSuccess(result, recordedStatus, settled)
      return true
    }
    // Already settled: a redelivery is silent, a contradiction is recorded for support. Only a
    // final recorded status can be contradicted: "pending" or "unknown" was read before an
    // earlier copy of this result was applied.
    const final =
      recordedStatus === "succeeded" || recordedStatus === "failed" || recordedStatus === "declined"
    if (final && recordedStatus !== result.status) {
      this.builder.decide("result_conflict", {
        paymentId: result.paymentId,
        details: { recorded: recordedStatus, received: result.status, receivedAt: result.at },
      })
    }
    return false
  }

  /** An open attempt's verdict: by the kind's rules, unless an earlier attempt of its occurrence already paid it. */
  applyVerdict(attempt: OpenAttempt, result: PaymentResult): void {
    if (attempt.earlierSucceeded === undefined) this.applyResult(attempt, result)
    else this.settleSuspectedDuplicate(attempt, attempt.earlierSucceeded, result)
  }

  /**
   * What the kind does once an occurrence it gave up on or planned to retry turns out paid: drop
   * a planned retry (saying why) and count the occurrence as paid, as a success would have.
   */
  protected abstract occurrencePaidLate(occurrence: string, paidBy: string): void

  /**
   * The hub reports that an attempt recorded as failed succeeded: the success stands, the
   * occurrence counts as paid, and no further attempt of it is ever sent. A later attempt
   * already sent (or already paid) may have paid it twice: it is flagged for the bank.
   */
  lateSuccess(result: PaymentResult, recordedStatus: string, settled: SettledPayment): void {
    const { occurrence, attempt, amount, occurrencePaidBy, spendMonth } = settled
    const paymentId = result.paymentId
    const recorded = {
      paymentId,
      status: "succeeded" as const,
      retryable: result.retryable,
      reason: result.reason ?? null,
      hubReference: result.hubReference ?? null,
      outcome: occurrencePaidBy === null ? "paid" : "duplicate",
      resultAt: this.now,
      spendRelease: null,
    }
    // Its failure gave its amount back to the month it was counted in: the money moved after all,
    // so it counts there again (a second payment of the occurrence included).
    this.builder.recordOutcome(
      spendMonth === null ? recorded : { ...recorded, spendRestore: { month: spendMonth, amount } },
    )
    this.builder.decide("late_success", {
      occurrence,
      paymentId,
      details: {
        recorded: recordedStatus,
        received: result.status,
        receivedAt: result.at,
        rule: "a success reported after a failure stands: the occurrence is paid and no further attempt of it is sent",
      },
    })
    for (const held of this.held.filter((candidate) => candidate.occurrence === occurrence)) {
      this.held = this.held.filter((candidate) => candidate !== held)
      this.builder.decide("hold_dropped", {
        reason: "earlier_attempt_succeeded",
        occurrence,
        paymentId: held.paymentId,
        details: { paidBy: paymentId },
      })
    }
    if (occurrencePaidBy !== null) {
      // Another attempt was recorded as paid already: whichever came later is the one to reverse.
      const late = { paymentId, attempt }
      const [first, second] =
        late.attempt < occurrencePaidBy.attempt ? [late, occurrencePaidBy] : [occurrencePaidBy, late]
      this.raiseDuplicate(occurrence, amount, second, first, "succeeded")
      return
    }
    const data = {
      ...this.paymentFacts(paymentId, occurrence, attempt, amount),
      hubReference: result.hubReference ?? null,
    }
    this.builder.event("payment.succeeded", this.base, data)
    this.builder.notify("payment.succeeded", data, paymentId)
    for (const inFlight of this.open) {
      if (inFlight.occurrence !== occurrence || inFlight.earlierSucceeded !== undefined) continue
      this.replaceOpen(inFlight, { ...inFlight, earlierSucceeded: paymentId })
      this.raiseDuplicate(occurrence, inFlight.amount, inFlight, { paymentId, attempt }, "in_flight")
    }
    this.occurrencePaidLate(occurrence, paymentId)
  }

  /** Flags `second` as a possible second payment of `occurrence`, already paid by `first`. */
  raiseDuplicate(
    occurrence: string,
    amount: Money.Money,
    second: { readonly paymentId: string; readonly attempt: number },
    first: { readonly paymentId: string; readonly attempt: number },
    secondStatus: "in_flight" | "succeeded",
  ): void {
    const data = {
      ...this.paymentFacts(second.paymentId, occurrence, second.attempt, amount),
      paidBy: first.paymentId,
      paidByAttempt: first.attempt,
      secondStatus,
      whatToDo:
        secondStatus === "succeeded"
          ? "both attempts succeeded: the bank reverses this payment, then an operator marks the flag resolved in the console"
          : "if this attempt succeeds too, the bank reverses it; if it fails, the flag clears itself",
    }
    this.builder.decide("duplicate_suspected", { occurrence, paymentId: second.paymentId, details: data })
    this.builder.event("payment.duplicate_suspected", this.base, data)
    this.builder.flagDuplicate(
      second.paymentId,
      first.paymentId,
      secondStatus === "succeeded" ? "confirmed" : "suspected",
    )
  }

  /**
   * The verdict of an attempt sent before an earlier one of its occurrence was known to have
   * succeeded: a success is a second payment to reverse (the occurrence is not counted again,
   * nor announced again), anything else moved no money and clears the flag.
   */
  settleSuspectedDuplicate(attempt: OpenAttempt, paidBy: string, result: PaymentResult): void {
    const { recorded } = this.settle(attempt, result)
    const confirmed = result.status === "succeeded"
    this.builder.recordOutcome({ ...recorded, outcome: confirmed ? "duplicate" : "failed" })
    this.builder.decide(confirmed ? "duplicate_confirmed" : "duplicate_cleared", {
      occurrence: attempt.occurrence,
      paymentId: attempt.paymentId,
      details: {
        paidBy,
        status: result.status,
        reason: result.reason ?? null,
        hubReference: result.hubReference ?? null,
        rule: confirmed
          ? "both attempts of this occurrence succeeded: the bank reverses this one"
          : "this attempt moved no money: the occurrence was paid once",
      },
    })
    this.builder.flagDuplicate(attempt.paymentId, paidBy, confirmed ? "confirmed" : "cleared")
  }

  /** What every payment outcome event says about the payment: which attempt, how much, to whom. */
  paymentFacts(paymentId: string, occurrence: string, attempt: number, amount: Money.Money) {
    return {
      paymentId,
      occurrence,
      attempt,
      amount,
      providerId: this.base.payee.providerId,
      account: this.base.payee.account,
    }
  }

  /** Removes `attempt` from the open ones and returns what is recorded about it. */
  settle(attempt: OpenAttempt, result: PaymentResult) {
    this.open = this.open.filter((candidate) => candidate.paymentId !== attempt.paymentId)
    return {
      payment: this.paymentFacts(attempt.paymentId, attempt.occurrence, attempt.attempt, attempt.amount),
      recorded: {
        paymentId: attempt.paymentId,
        status: result.status,
        retryable: result.retryable,
        reason: result.reason ?? null,
        hubReference: result.hubReference ?? null,
        resultAt: this.now,
        spendRelease:
          result.status !== "succeeded" && attempt.spendMonth !== undefined
            ? { month: attempt.spendMonth, amount: attempt.amount }
            : null,
      },
    }
  }

  /** Records a success: the outcome, the event and the customer's notification. */
  recordSuccess(attempt: OpenAttempt, result: PaymentResult): void {
    const { payment, recorded } = this.settle(attempt, result)
    this.builder.recordOutcome({ ...recorded, outcome: "paid" })
    const data = { ...payment, hubReference: result.hubReference ?? null }
    this.builder.event("payment.succeeded", this.base, data)
    this.builder.notify("payment.succeeded", data, attempt.paymentId)
  }

  /**
   * Records a failure that no retry plan of this subscription follows up. `final` is false when
   * the occurrence may still be paid another way (a debt bill found again at the next poll).
   */
  recordFinalFailure(attempt: OpenAttempt, result: PaymentResult, whyNoRetry: string, final = true): void {
    const { payment, recorded } = this.settle(attempt, result)
    this.builder.recordOutcome({ ...recorded, outcome: "failed" })
    const data = {
      ...payment,
      status: result.status,
      retryable: result.retryable,
      reason: result.reason ?? null,
      final,
      whyNoRetry,
    }
    this.builder.event("payment.failed", this.base, data)
    this.builder.notify("payment.failed", data, attempt.paymentId)
  }

  replaceOpen(previous: OpenAttempt, next: OpenAttempt): void {
    this.open = this.open.map((attempt) => (attempt === previous ? next : attempt))
  }

  /** When the actor must look again for overdue results, or null. */
  nextStatusCheck(): number | null {
    let next: number | null = null
    for (const attempt of this.open) {
      const at = attempt.nextQueryAt ?? attempt.timeoutAt
      if (next === null || at < next) next = at
    }
    return next
  }
}

const isResult = (reply: unknown): reply is PaymentResult =>
  typeof reply === "object" && reply !== null && "paymentId" in reply && "status" in reply

/** The earliest of the given times, ignoring nulls; null when there is none. */
export const earliest = (...times: ReadonlyArray<number | null>): number | null => {
  let best: number | null = null
  for (const time of times) if (time !== null && (best === null || time < best)) best = time
  return best
}

type LifecycleEventType =
  | "subscription.paused"
  | "subscription.resumed"
  | "subscription.cancelled"
  | "subscription.updated"

/**
 * The lifecycle shared by the kinds that react to events rather than a
 * calendar (threshold, debt): pause, resume and cancel, each recorded with who
 * asked, and the lifecycle events published once the new state is known.
 */
export abstract class EventDrivenRun<
  S extends ThresholdSubscription | DebtSubscription,
> extends PaymentRun<S> {
  readonly lifecycleEvents: Array<PendingLifecycleEvent<LifecycleEventType>> = []

  /** The kind's terms as they stand after this message. */
  abstract terms: S["terms"]

  /** Called after the status changed, so the kind can tell its provider (watch, unwatch). */
  protected abstract statusChanged(from: S["status"]): void

  /** Handles the message only this kind takes (a balance reading, a debt answer). */
  protected abstract own(input: BalanceReading | DebtAnswer): PolicyRefusal | undefined

  abstract update(command: UpdateCommand): PolicyRefusal | undefined

  /** The kind's state after this message, and when its actor must next be woken. */
  protected abstract outcome(): { readonly state: S["state"]; readonly nextDueAt: number | null }

  /** Time has come: by default, only overdue results to ask the hub about. */
  wake(statusReplies: ReadonlyMap<string, unknown>): void {
    this.applyStatusReplies(statusReplies)
  }

  /** Handles one message; a refusal writes nothing. */
  run(input: ActorInput): Result.Result<Transition<S>, PolicyRefusal> {
    let refusal: PolicyRefusal | undefined
    switch (input._tag) {
      case "Wake":
        this.wake(input.statusReplies)
        break
      case "HubResult":
        this.hubResult(input.result, input.recordedStatus, input.settled)
        break
      case "Confirm":
        refusal = this.confirm(input.paymentId, input.by)
        break
      case "Update":
        refusal = this.update(input)
        break
      case "ThresholdEvent":
      case "DebtResponse":
        refusal = this.own(input)
        break
      case "PaymentCompleted":
      case "AcceptReminder":
      case "DeclineReminder":
        refusal = notForKind(this.base.kind, input)
        break
      default:
        refusal = this.lifecycle(input)
    }
    return refusal === undefined ? Result.succeed(this.finish()) : Result.fail(refusal)
  }

  lifecycle(command: LifecycleCommand): PolicyRefusal | undefined {
    const from = this.status
    switch (command._tag) {
      case "Pause":
        if (from !== "active") return conflict(`cannot pause a subscription that is ${from}`)
        this.status = "paused"
        this.statusReason = "client_request"
        this.builder.decide("paused", { reason: "client_request", by: command.by })
        this.lifecycleEvents.push({
          type: "subscription.paused",
          data: { reason: "client_request", by: command.by },
        })
        break
      case "Resume":
        if (from !== "paused") return conflict(`cannot resume a subscription that is ${from}`)
        this.status = "active"
        this.statusReason = null
        this.builder.decide("resumed", { by: command.by })
        this.lifecycleEvents.push({ type: "subscription.resumed", data: { by: command.by } })
        break
      case "Cancel":
        if (from === "cancelled" || from === "completed")
          return conflict(`cannot cancel a subscription that is ${from}`)
        this.status = "cancelled"
        this.statusReason = "client_request"
        this.builder.decide("cancelled", {
          reason: "client_request",
          by: command.by,
          details: {
            attemptsInFlight: this.open.map((attempt) => attempt.paymentId),
            heldPaymentsDropped: this.held.map((held) => held.paymentId),
          },
        })
        this.held = []
        this.lifecycleEvents.push({
          type: "subscription.cancelled",
          data: { reason: "client_request", by: command.by },
        })
        break
      case "SkipNext":
        return conflict(`skipNext applies to scheduled autopayments, not ${this.base.kind} ones`)
    }
    this.version += 1
    this.statusChanged(from)
    return undefined
  }

  /** Refuses an update that cannot apply; checks the version and the currency of every amount. */
  checkUpdate(command: UpdateCommand, amounts: ReadonlyArray<readonly [string, Money.Money | undefined]>) {
    if (this.status === "cancelled" || this.status === "completed")
      return conflict(`cannot update a subscription that is ${this.status}`)
    if (command.expectedVersion !== this.version) {
      return conflict(
        `expectedVersion ${command.expectedVersion} is stale: the subscription is at version ${this.version}`,
      )
    }
    if (command.schedule !== undefined)
      return invalidField(
        "body.schedule",
        `only scheduled autopayments have a schedule, this one is ${this.base.kind}`,
      )
    for (const [path, amount] of amounts) {
      if (amount !== undefined && amount.currency !== this.base.currency)
        return invalidField(
          `body.${path}.currency`,
          `must stay ${this.base.currency}: the currency of a subscription cannot change`,
        )
    }
    return undefined
  }

  /**
   * The transition: the row is rewritten only when something changed, and lifecycle events carry
   * the new row so their consumers need no call back.
   */
  finish(): Transition<S> {
    const { state, nextDueAt } = this.outcome()
    const touched =
      this.builder.payments.length > 0 ||
      this.builder.outcomes.length > 0 ||
      this.builder.decisions.length > 0 ||
      this.builder.outgoing.length > 0 ||
      this.version !== this.base.version ||
      nextDueAt !== this.base.nextDueAt ||
      JSON.stringify(state) !== JSON.stringify(this.base.state)
    if (!touched) return this.builder.build(this.base)
    // The kind's terms and state belong to its own kind: the spread keeps them together.
    const next = {
      ...this.base,
      status: this.status,
      statusReason: this.statusReason,
      version: this.version,
      terms: this.terms,
      state,
      nextDueAt,
    } as S
    for (const { type, data } of this.lifecycleEvents) {
      this.builder.event(type, next, { ...data, subscription: toView(next) })
    }
    return this.builder.build(next)
  }
}
