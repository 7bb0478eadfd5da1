/**
 * A subscription as channels and other hub services see it: in protocol
 * replies and inside lifecycle events, so a consumer never has to call back.
 */
import { Schema } from "effect"
import { Money } from "./Money.ts"
import { heldPayments, Kind, Schedule, Status, type Subscription } from "./Subscription.ts"
import * as Timestamp from "./Timestamp.ts"

/** The public form of a subscription. */
export const SubscriptionView = Schema.Struct({
  subscriptionId: Schema.String,
  clientId: Schema.String,
  kind: Kind,
  status: Status,
  statusReason: Schema.NullOr(Schema.String),
  version: Schema.Int,
  hidden: Schema.Boolean,
  templateId: Schema.NullOr(Schema.String),
  payee: Schema.Struct({ providerId: Schema.String, account: Schema.String, source: Schema.String }),
  /** scheduled and threshold: what each payment pays. */
  amount: Schema.optionalKey(Money),
  /** scheduled */
  schedule: Schema.optionalKey(Schedule),
  nextOccurrence: Schema.NullOr(Schema.Struct({ date: Schema.String, dueAt: Schema.String })),
  skippedOccurrences: Schema.Array(Schema.String),
  /** threshold */
  threshold: Schema.optionalKey(Money),
  cooldown: Schema.optionalKey(Schema.String),
  lastBalance: Schema.optionalKey(Schema.NullOr(Money)),
  cooldownUntil: Schema.optionalKey(Schema.NullOr(Schema.String)),
  /** reminder: the one-off payment it offers to repeat */
  remindAfter: Schema.optionalKey(Schema.String),
  lastPayment: Schema.optionalKey(
    Schema.Struct({ paymentId: Schema.String, amount: Money, source: Schema.String, paidAt: Schema.String }),
  ),
  offersMade: Schema.optionalKey(Schema.Int),
  nextOfferAt: Schema.optionalKey(Schema.NullOr(Schema.String)),
  /** debt */
  limit: Schema.optionalKey(Money),
  pollEvery: Schema.optionalKey(Schema.String),
  nextPollAt: Schema.optionalKey(Schema.NullOr(Schema.String)),
  paymentsMade: Schema.Int,
  failedInARow: Schema.Int,
  /** Payments a limit holds back until the client confirms them (`payment.confirm`). */
  heldPayments: Schema.Array(
    Schema.Struct({
      paymentId: Schema.String,
      occurrence: Schema.String,
      amount: Money,
      reason: Schema.String,
      heldAt: Schema.String,
      limit: Schema.Record(Schema.String, Schema.Unknown),
    }),
  ),
  createdAt: Schema.String,
  createdBy: Schema.Struct({ channel: Schema.String, terminal: Schema.NullOr(Schema.String) }),
})
export type SubscriptionView = typeof SubscriptionView.Type

const live = (subscription: Subscription): boolean =>
  subscription.status !== "cancelled" && subscription.status !== "completed"

const orNullTime = (millis: number | null): string | null =>
  millis === null ? null : Timestamp.format(millis)

/** The fields only one kind has. */
const kindFields = (subscription: Subscription) => {
  switch (subscription.kind) {
    case "scheduled": {
      const { state, terms } = subscription
      return {
        amount: terms.amount,
        schedule: terms.schedule,
        nextOccurrence:
          state.cursor === null || !live(subscription)
            ? null
            : { date: state.cursor.date, dueAt: Timestamp.format(state.cursor.dueAt) },
        skippedOccurrences: state.skip,
        paymentsMade: state.paid,
        failedInARow: state.failedInARow,
      }
    }
    case "threshold": {
      const { state, terms } = subscription
      return {
        amount: terms.amount,
        threshold: terms.threshold,
        cooldown: terms.cooldown,
        lastBalance: state.lastBalance,
        cooldownUntil: orNullTime(state.cooldownUntil),
        nextOccurrence: null,
        skippedOccurrences: [],
        paymentsMade: state.paid,
        failedInARow: 0,
      }
    }
    case "reminder": {
      const { state, terms } = subscription
      return {
        remindAfter: terms.remindAfter,
        lastPayment: {
          paymentId: state.lastPayment.paymentId,
          amount: state.lastPayment.amount,
          source: state.lastPayment.source,
          paidAt: Timestamp.format(state.lastPayment.at),
        },
        offersMade: state.offers,
        nextOfferAt: live(subscription) ? orNullTime(state.nextOfferAt) : null,
        nextOccurrence: null,
        skippedOccurrences: [],
        paymentsMade: 0,
        failedInARow: 0,
      }
    }
    case "debt": {
      const { state, terms } = subscription
      return {
        limit: terms.limit,
        pollEvery: terms.pollEvery,
        nextPollAt: live(subscription) ? Timestamp.format(state.nextPollAt) : null,
        nextOccurrence: null,
        skippedOccurrences: [],
        paymentsMade: state.paid,
        failedInARow: 0,
      }
    }
  }
}

/** The public form of `subscription`. */
export const toView = (subscription: Subscription): SubscriptionView => ({
  subscriptionId: subscription.id,
  clientId: subscription.clientId,
  kind: subscription.kind,
  status: subscription.status,
  statusReason: subscription.statusReason,
  version: subscription.version,
  hidden: subscription.hidden,
  templateId: subscription.templateId,
  payee: subscription.payee,
  ...kindFields(subscription),
  heldPayments: heldPayments(subscription).map((held) => ({
    paymentId: held.paymentId,
    occurrence: held.occurrence,
    amount: held.amount,
    reason: held.reason,
    heldAt: Timestamp.format(held.heldAt),
    limit: held.limit,
  })),
  createdAt: Timestamp.format(subscription.createdAt),
  createdBy: { channel: subscription.createdChannel, terminal: subscription.createdTerminal },
})
