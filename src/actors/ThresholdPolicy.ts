/**
 * The rules of a threshold autopayment ("top up my phone when the balance
 * falls below X"), as a pure function from (subscription, message, engine
 * time) to a transition. Contract section 3.5:
 * - a provider's balance event below the threshold pays one top-up of
 *   `amount`; its occurrence is the event id;
 * - event ids are de-duplicated, and an event older than the newest one seen
 *   for the account is ignored as stale (providers' streams can reorder);
 * - at most one top-up in flight; after a success no new one until the
 *   cooldown (tick time) has passed; a failed top-up is not retried on its
 *   own: the next event that still reports a low balance pays again;
 * - the provider is asked to watch the account while the subscription is
 *   active, and to stop when it is paused or cancelled;
 * - a reading for another provider or account, or with a balance in another
 *   currency than the threshold's, is refused whole: nothing is recorded.
 */
import type { Result } from "effect"
import { conflict } from "../domain/Errors.ts"
import * as IsoDuration from "../domain/IsoDuration.ts"
import * as Money from "../domain/Money.ts"
import {
  initialThresholdState,
  type OpenAttempt,
  type Status,
  type ThresholdState,
  type ThresholdSubscription,
  type ThresholdTerms,
} from "../domain/Subscription.ts"
import * as Timestamp from "../domain/Timestamp.ts"
import type { Draft, TermChanges } from "../streams/Events.ts"
import type { PaymentResult, ThresholdEvent } from "../streams/Messages.ts"
import { creationBuilder, firstRow, type NewSubscription } from "./Creation.ts"
import type { ActorInput, BalanceReading, DebtAnswer, PolicySettings, UpdateCommand } from "./Inputs.ts"
import { type LimitCheck, unlimited } from "./Limits.ts"
import { compare, type Mismatch, reasonOf } from "./Matching.ts"
import { EventDrivenRun, earliest, type PolicyRefusal } from "./PaymentRun.ts"
import type { Transition } from "./Transition.ts"

/** How many recent event ids a subscription remembers to recognise a redelivered event. */
const REMEMBERED_EVENTS = 32

/** Handles one message for a threshold subscription at engine time `now`. */
export const decide = (
  subscription: ThresholdSubscription,
  input: ActorInput,
  now: number,
  settings: PolicySettings,
  limits: LimitCheck = unlimited(subscription),
): Result.Result<Transition, PolicyRefusal> =>
  new ThresholdRun(subscription, now, settings, limits).run(input)

/** What a balance reading must agree with: the watched account, and the currency of the threshold. */
export interface WatchedAccount {
  readonly subscriptionId: string
  readonly providerId: string
  readonly account: string
  readonly currency: string
}

/** The account a threshold subscription watches. */
export const watchedBy = (subscription: ThresholdSubscription): WatchedAccount => ({
  subscriptionId: subscription.id,
  providerId: subscription.payee.providerId,
  account: subscription.payee.account,
  currency: subscription.terms.threshold.currency,
})

/**
 * A balance reading against a subscription watching the account: the same provider and account, and
 * the balance in the threshold's currency (a balance in another currency cannot be compared with it).
 */
export const readingMismatch = (watched: WatchedAccount, event: ThresholdEvent): Mismatch | undefined =>
  compare(`the subscription watching the account (${watched.subscriptionId})`, [
    ["providerId", watched.providerId, event.providerId],
    ["account", watched.account, event.account],
    ["balance.currency", watched.currency, event.balance.currency],
  ])

class ThresholdRun extends EventDrivenRun<ThresholdSubscription> {
  terms: ThresholdTerms
  newestEventAt: number | null
  recentEventIds: Array<string>
  lastBalance: Money.Money | null
  cooldownUntil: number | null
  paid: number

  constructor(base: ThresholdSubscription, now: number, settings: PolicySettings, limits: LimitCheck) {
    super(base, now, settings, limits)
    this.terms = base.terms
    const state = base.state
    this.newestEventAt = state.newestEventAt
    this.recentEventIds = [...state.recentEventIds]
    this.lastBalance = state.lastBalance
    this.cooldownUntil = state.cooldownUntil
    this.paid = state.paid
  }

  reading(event: ThresholdEvent): void {
    // A redelivered event changes nothing and writes nothing.
    if (this.recentEventIds.includes(event.eventId)) return
    this.remember(event.eventId)
    const readAt = Timestamp.millisOf(event.at)
    const inputs = {
      eventId: event.eventId,
      balance: event.balance,
      threshold: this.terms.threshold,
      readAt: event.at,
    }
    if (this.newestEventAt !== null && readAt < this.newestEventAt) {
      this.builder.decide("ignored", {
        reason: "stale_event",
        occurrence: event.eventId,
        details: { ...inputs, newestSeenAt: Timestamp.format(this.newestEventAt) },
      })
      return
    }
    this.newestEventAt = readAt
    this.lastBalance = event.balance
    // At or above the threshold there is nothing to decide: the reading is kept, not logged.
    if (Money.compare(event.balance, this.terms.threshold) >= 0) return
    const notPaying = this.reasonNotToTopUp()
    if (notPaying !== null) {
      this.builder.decide("skipped", {
        reason: notPaying.reason,
        occurrence: event.eventId,
        details: { ...inputs, ...notPaying.details },
      })
      this.builder.event("payment.skipped", this.base, {
        occurrence: event.eventId,
        reason: notPaying.reason,
        ...inputs,
        ...notPaying.details,
      })
      return
    }
    // A top-up held earlier (say, by last month's cap) is superseded by this one, which the limits admit.
    for (const superseded of this.held) {
      this.builder.decide("hold_dropped", {
        reason: "superseded_by_new_reading",
        occurrence: superseded.occurrence,
        paymentId: superseded.paymentId,
        details: { newReading: event.eventId },
      })
    }
    this.held = []
    this.pay(event.eventId, 1, this.terms.amount, {
      rule: "threshold",
      rulesText: "balance below threshold pays one top-up",
      ...inputs,
      topUp: this.terms.amount,
    })
  }

  reasonNotToTopUp(): {
    readonly reason: string
    readonly details: Readonly<Record<string, unknown>>
  } | null {
    if (this.status !== "active") return { reason: this.status, details: { statusReason: this.statusReason } }
    const inFlight = this.open[0]
    if (inFlight !== undefined) {
      return {
        reason: "top_up_in_flight",
        details: { inFlight: { paymentId: inFlight.paymentId, sentAt: Timestamp.format(inFlight.sentAt) } },
      }
    }
    if (this.cooldownUntil !== null && this.now < this.cooldownUntil) {
      return {
        reason: "cooldown",
        details: { cooldown: this.terms.cooldown, cooldownUntil: Timestamp.format(this.cooldownUntil) },
      }
    }
    const waiting = this.held[0]
    if (waiting !== undefined && this.limits.wouldBreak(this.terms.amount, this.now)) {
      // Still over a limit: the client already has one top-up to confirm; no second hold, no second notice.
      return {
        reason: "awaiting_confirmation",
        details: { heldPaymentId: waiting.paymentId, heldFor: waiting.reason },
      }
    }
    return null
  }

  remember(eventId: string): void {
    this.recentEventIds.push(eventId)
    if (this.recentEventIds.length > REMEMBERED_EVENTS) this.recentEventIds.shift()
  }

  applyResult(attempt: OpenAttempt, result: PaymentResult) {
    if (result.status === "succeeded") {
      this.recordSuccess(attempt, result)
      this.paid += 1
      this.cooldownUntil = Timestamp.after(this.now, IsoDuration.millisOf(this.terms.cooldown))
      return
    }
    this.recordFinalFailure(
      attempt,
      result,
      "a threshold top-up is not retried on its own: the next event reporting a low balance pays again",
    )
  }

  /** A top-up reported failed did top the account up: counted, and the cooldown starts now. */
  protected occurrencePaidLate(): void {
    this.paid += 1
    this.cooldownUntil = this.now + IsoDuration.millisOf(this.terms.cooldown)
  }

  update(command: UpdateCommand): PolicyRefusal | undefined {
    const refusal = this.checkUpdate(command, [
      ["amount", command.amount],
      ["threshold", command.threshold],
    ])
    if (refusal !== undefined) return refusal
    const changes: Draft<TermChanges> = {}
    if (command.amount !== undefined && !Money.equals(command.amount, this.terms.amount)) {
      changes.amount = { from: this.terms.amount, to: command.amount }
      this.terms = { ...this.terms, amount: command.amount }
    }
    const thresholdChanged =
      command.threshold !== undefined && !Money.equals(command.threshold, this.terms.threshold)
    if (command.threshold !== undefined && thresholdChanged) {
      changes.threshold = { from: this.terms.threshold, to: command.threshold }
      this.terms = { ...this.terms, threshold: command.threshold }
    }
    if (command.cooldown !== undefined && command.cooldown !== this.terms.cooldown) {
      changes.cooldown = { from: this.terms.cooldown, to: command.cooldown }
      this.terms = { ...this.terms, cooldown: command.cooldown }
    }
    this.version += 1
    this.builder.decide("updated", { by: command.by, details: changes })
    this.lifecycleEvents.push({
      type: "subscription.updated",
      data: { change: "terms", changes, by: command.by },
    })
    // The provider reports against the threshold it was given: a new one is a new watch.
    if (thresholdChanged && this.status === "active")
      this.builder.watch("threshold.watch", this.terms.threshold, `v${this.version}`)
    return undefined
  }

  protected statusChanged(from: Status): void {
    const watching = (status: Status) => status === "active"
    if (watching(from) === watching(this.status)) return
    this.builder.watch(
      watching(this.status) ? "threshold.watch" : "threshold.unwatch",
      this.terms.threshold,
      `v${this.version}`,
    )
  }

  protected own(input: BalanceReading | DebtAnswer): PolicyRefusal | undefined {
    if (input._tag !== "ThresholdEvent")
      return conflict("a threshold subscription does not take debt answers")
    // The router checked the reading against every watcher; this is the second line.
    const mismatch = readingMismatch(watchedBy(this.base), input.event)
    if (mismatch !== undefined) return conflict(reasonOf("balance reading", mismatch))
    this.reading(input.event)
    return undefined
  }

  protected outcome() {
    const state: ThresholdState = {
      newestEventAt: this.newestEventAt,
      recentEventIds: this.recentEventIds,
      lastBalance: this.lastBalance,
      open: this.open,
      cooldownUntil: this.cooldownUntil,
      paid: this.paid,
      held: this.held,
    }
    return { state, nextDueAt: earliest(this.nextStatusCheck()) }
  }
}

/** What a new threshold subscription is made of. */
export type NewThreshold = NewSubscription<ThresholdTerms>

/** The first row of a threshold subscription, its `created` decision and event, and the provider's watch. */
export const create = (input: NewThreshold, now: number): Transition<ThresholdSubscription> => {
  const subscription: ThresholdSubscription = {
    ...firstRow(input, input.terms.amount.currency, null),
    kind: "threshold",
    terms: input.terms,
    state: initialThresholdState,
  }
  const builder = creationBuilder(subscription, input.by, now, { terms: input.terms })
  builder.watch("threshold.watch", input.terms.threshold, "v1")
  return builder.build(subscription)
}
