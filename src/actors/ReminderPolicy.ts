/**
 * The rules of a reminder (contract 3.8), as a pure function from
 * (subscription, message, engine time) to a transition.
 *
 * A reminder is a hidden subscription the engine makes after a one-off
 * payment to a provider whose bills recur. It never pays. After its period
 * it offers the client to repeat the payment or make it automatic; without an
 * answer it offers again one period later, three times at most, then stops.
 * A new one-off payment to the same payee starts the period again (and wakes
 * a reminder that had stopped). Accepting turns the reminder itself into a
 * visible scheduled autopayment, with a template saved from the payment, in
 * one transaction. Declining stops reminders for that payee for good.
 */
import { Result } from "effect"
import { conflict, invalidField } from "../domain/Errors.ts"
import * as IsoDuration from "../domain/IsoDuration.ts"
import {
  initialScheduledState,
  MAX_REMINDER_OFFERS,
  normalizeSchedule,
  type ReminderState,
  type ReminderSubscription,
  type ReminderTerms,
  type ScheduledSubscription,
  type ScheduledTerms,
} from "../domain/Subscription.ts"
import { toView } from "../domain/SubscriptionView.ts"
import * as Timestamp from "../domain/Timestamp.ts"
import type { HubPaymentCompleted } from "../streams/Messages.ts"
import { creation, firstRow, type NewSubscription } from "./Creation.ts"
import { type AcceptReminder, type ActorInput, notForKind, type PolicySettings } from "./Inputs.ts"
import { compare, reasonOf } from "./Matching.ts"
import type { PolicyRefusal } from "./PaymentRun.ts"
import * as ScheduledPolicy from "./ScheduledPolicy.ts"
import { type Transition, TransitionBuilder } from "./Transition.ts"

/** Handles one message for a reminder at engine time `now`. */
export const decide = (
  subscription: ReminderSubscription,
  input: ActorInput,
  now: number,
  settings: PolicySettings,
): Result.Result<Transition, PolicyRefusal> => {
  const run = new ReminderRun(subscription, now)
  switch (input._tag) {
    case "Wake":
      if (input.autopaymentToPayee === true) run.stop("autopayment_exists")
      else run.wake()
      return Result.succeed(run.finish())
    case "PaymentCompleted": {
      const mismatch = paymentMismatch(subscription, input.payment)
      if (mismatch !== undefined) return Result.fail(conflict(reasonOf("one-off payment", mismatch)))
      run.paymentCompleted(input.payment)
      return Result.succeed(run.finish())
    }
    case "DeclineReminder": {
      const refusal = run.decline(input.by)
      return refusal === undefined ? Result.succeed(run.finish()) : Result.fail(refusal)
    }
    case "AcceptReminder":
      return run.accept(input, settings)
    case "HubResult":
      // A reminder never pays, so no result can be about it: nothing to record.
      return Result.succeed(run.finish())
    default:
      return Result.fail(
        input._tag === "Pause" ||
          input._tag === "Resume" ||
          input._tag === "Cancel" ||
          input._tag === "Update"
          ? conflict("a reminder is answered with reminder.accept or reminder.decline")
          : notForKind("reminder", input),
      )
  }
}

/**
 * A one-off payment handed to a reminder must be the client's payment to the reminder's payee: the
 * router finds the reminder by exactly these, so a disagreement means it went astray.
 */
export const paymentMismatch = (reminder: ReminderSubscription, payment: HubPaymentCompleted) =>
  compare(`the reminder it was handed to (${reminder.id})`, [
    ["clientId", reminder.clientId, payment.clientId],
    ["providerId", reminder.payee.providerId, payment.providerId],
    ["account", reminder.payee.account, payment.account],
  ])

/** The payee and payment a reminder offers to repeat: what an offer and its event carry. */
const offerData = (reminder: ReminderSubscription, state: ReminderState) => ({
  reminderId: reminder.id,
  providerId: reminder.payee.providerId,
  account: reminder.payee.account,
  source: state.lastPayment.source,
  lastAmount: state.lastPayment.amount,
  lastPaidAt: Timestamp.format(state.lastPayment.at),
  lastPaymentId: state.lastPayment.paymentId,
  howToAnswer: "reminder.accept with a schedule (and optionally an amount), or reminder.decline",
})

class ReminderRun {
  readonly builder: TransitionBuilder
  status: ReminderSubscription["status"]
  statusReason: string | null
  version: number
  state: ReminderState

  constructor(
    readonly base: ReminderSubscription,
    readonly now: number,
  ) {
    this.builder = new TransitionBuilder(base, now)
    this.status = base.status
    this.statusReason = base.statusReason
    this.version = base.version
    this.state = base.state
  }

  get period(): number {
    return IsoDuration.millisOf(this.base.terms.remindAfter)
  }

  wake(): void {
    const { nextOfferAt } = this.state
    if (this.status !== "active" || nextOfferAt === null || nextOfferAt > this.now) return
    const offers = this.state.offers + 1
    const last = offers >= MAX_REMINDER_OFFERS
    this.state = { ...this.state, offers, nextOfferAt: last ? null : Timestamp.after(this.now, this.period) }
    const data = { ...offerData(this.base, this.state), offer: offers, of: MAX_REMINDER_OFFERS }
    this.builder.notify("reminder.offer", data)
    this.builder.event("reminder.offered", this.base, data)
    this.builder.decide("offered", { details: data })
    if (last) {
      // Three offers unanswered: stop asking. A new one-off payment to the payee starts again.
      this.status = "completed"
      this.statusReason = "no_answer"
      this.builder.decide("stopped", { reason: "no_answer", details: { offers } })
    }
  }

  /** The client pays the payee automatically by now: nothing left to offer. */
  stop(reason: "autopayment_exists"): void {
    if (this.status !== "active") return
    this.status = "completed"
    this.statusReason = reason
    this.state = { ...this.state, nextOfferAt: null }
    this.builder.decide("stopped", { reason, details: { offers: this.state.offers } })
  }

  paymentCompleted(payment: HubPaymentCompleted): void {
    const at = Timestamp.millisOf(payment.at)
    const { lastPayment } = this.state
    // A redelivery, or an older payment than the one already known: nothing changes.
    if (payment.paymentId === lastPayment.paymentId || at < lastPayment.at) return
    if (this.status === "cancelled") {
      // Declined for good: the payment is noted, no reminder starts again.
      this.builder.decide("ignored", {
        reason: "declined",
        details: { paymentId: payment.paymentId, rule: "a declined payee is not reminded again" },
      })
      return
    }
    const restarted = this.status === "completed"
    this.status = "active"
    this.statusReason = null
    this.state = {
      ...this.state,
      lastPayment: {
        paymentId: payment.paymentId,
        amount: payment.amount,
        source: payment.source,
        channel: payment.channel,
        at,
      },
      offers: 0,
      nextOfferAt: Timestamp.after(at, this.period),
    }
    this.builder.decide("restarted", {
      reason: restarted ? "new_payment_after_stop" : "new_payment",
      details: {
        paymentId: payment.paymentId,
        amount: payment.amount,
        nextOfferAt: Timestamp.format(Timestamp.after(at, this.period)),
      },
    })
  }

  decline(by: AcceptReminder["by"]): PolicyRefusal | undefined {
    if (this.status === "cancelled") return conflict("this reminder was already declined")
    this.status = "cancelled"
    this.statusReason = "declined"
    this.version += 1
    this.state = { ...this.state, nextOfferAt: null }
    const data = { ...offerData(this.base, this.state), by }
    this.builder.decide("declined", { by, details: data })
    this.builder.event("reminder.declined", this.base, data)
    return undefined
  }

  /** The reminder becomes a visible scheduled autopayment of the same id, paying what the one-off payment paid. */
  accept(command: AcceptReminder, settings: PolicySettings): Result.Result<Transition, PolicyRefusal> {
    if (this.status === "cancelled") {
      return Result.fail(
        conflict("this reminder was declined; a new autopayment is made with subscription.create"),
      )
    }
    if (command.autopaymentToPayee === true) {
      return Result.fail(conflict("the client already pays this payee automatically"))
    }
    const amount = command.amount ?? this.state.lastPayment.amount
    if (amount.currency !== this.state.lastPayment.amount.currency) {
      return Result.fail(
        invalidField(
          "body.amount.currency",
          `must be ${this.state.lastPayment.amount.currency}, as the payment was`,
        ),
      )
    }
    const terms: ScheduledTerms = { amount, schedule: normalizeSchedule(command.schedule) }
    const state = initialScheduledState(terms, this.now)
    if (state.cursor === null) {
      return Result.fail(
        invalidField(
          "body.schedule",
          `has no occurrence after the engine's current time ${Timestamp.format(this.now)} (check startDate and endDate)`,
        ),
      )
    }
    // The autopayment pays from where the latest one-off payment came from (the one just offered).
    const payee = { ...this.base.payee, source: this.state.lastPayment.source }
    const template = {
      ...command.template,
      name:
        command.template.name === ""
          ? `${payee.providerId} ${payee.account}`.slice(0, 100)
          : command.template.name,
      ...payee,
    }
    const scheduled: ScheduledSubscription = {
      ...this.base,
      kind: "scheduled",
      status: "active",
      statusReason: null,
      hidden: false,
      version: this.version + 1,
      templateId: template.id,
      payee,
      terms,
      state,
      nextDueAt: ScheduledPolicy.nextDueAt("active", state, settings, terms.schedule.maxPayments),
    }
    this.builder.templates.push(template)
    const view = toView(scheduled)
    this.builder.decide("accepted", {
      by: command.by,
      details: { templateId: template.id, terms, firstOccurrence: state.cursor.date },
    })
    this.builder.event("reminder.accepted", scheduled, {
      ...offerData(this.base, this.state),
      by: command.by,
      subscription: view,
    })
    this.builder.event("subscription.created", scheduled, {
      by: command.by,
      subscription: view,
      fromReminder: true,
    })
    return Result.succeed(this.builder.build(scheduled))
  }

  finish(): Transition {
    const nextDueAt = this.status === "active" ? this.state.nextOfferAt : null
    const touched =
      this.builder.decisions.length > 0 ||
      this.builder.outgoing.length > 0 ||
      this.version !== this.base.version ||
      this.status !== this.base.status ||
      nextDueAt !== this.base.nextDueAt ||
      JSON.stringify(this.state) !== JSON.stringify(this.base.state)
    if (!touched) return this.builder.build(this.base)
    return this.builder.build({
      ...this.base,
      status: this.status,
      statusReason: this.statusReason,
      version: this.version,
      state: this.state,
      nextDueAt,
    })
  }
}

/** What a new reminder is made of: the one-off payment and the provider's period. */
export interface NewReminder extends Omit<NewSubscription<ReminderTerms>, "templateId"> {
  readonly payment: HubPaymentCompleted
}

/** A hidden reminder for a one-off payment, due one period after it. */
export const create = (input: NewReminder, now: number): Transition<ReminderSubscription> => {
  const at = Timestamp.millisOf(input.payment.at)
  const nextOfferAt = Timestamp.after(at, IsoDuration.millisOf(input.terms.remindAfter))
  const reminder: ReminderSubscription = {
    ...firstRow({ ...input, templateId: "" }, input.payment.amount.currency, nextOfferAt),
    templateId: null,
    hidden: true,
    kind: "reminder",
    terms: input.terms,
    state: {
      lastPayment: {
        paymentId: input.payment.paymentId,
        amount: input.payment.amount,
        source: input.payment.source,
        channel: input.payment.channel,
        at,
      },
      offers: 0,
      nextOfferAt,
      open: [],
      held: [],
    },
  }
  return creation(reminder, input.by, now, {
    paymentId: input.payment.paymentId,
    remindAfter: input.terms.remindAfter,
    nextOfferAt: Timestamp.format(nextOfferAt),
  })
}
