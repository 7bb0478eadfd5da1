/**
 * A subscription as channels and other hub services see it: in protocol
 * replies and inside lifecycle events, so a consumer never has to call back.
 */
import { Schema } from "effect"
import { Money } from "./Money.ts"
import { Kind, Schedule, Status, type Subscription } from "./Subscription.ts"
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
  amount: Money,
  schedule: Schedule,
  nextOccurrence: Schema.NullOr(Schema.Struct({ date: Schema.String, dueAt: Schema.String })),
  skippedOccurrences: Schema.Array(Schema.String),
  paymentsMade: Schema.Int,
  failedInARow: Schema.Int,
  createdAt: Schema.String,
  createdBy: Schema.Struct({ channel: Schema.String, terminal: Schema.NullOr(Schema.String) }),
})
export type SubscriptionView = typeof SubscriptionView.Type

/** The public form of `subscription`. */
export const toView = (subscription: Subscription): SubscriptionView => {
  const { state, terms } = subscription
  return {
    subscriptionId: subscription.id,
    clientId: subscription.clientId,
    kind: subscription.kind,
    status: subscription.status,
    statusReason: subscription.statusReason,
    version: subscription.version,
    hidden: subscription.hidden,
    templateId: subscription.templateId,
    payee: subscription.payee,
    amount: terms.amount,
    schedule: terms.schedule,
    nextOccurrence:
      state.cursor === null || subscription.status === "cancelled" || subscription.status === "completed"
        ? null
        : { date: state.cursor.date, dueAt: Timestamp.format(state.cursor.dueAt) },
    skippedOccurrences: state.skip,
    paymentsMade: state.paid,
    failedInARow: state.failedInARow,
    createdAt: Timestamp.format(subscription.createdAt),
    createdBy: { channel: subscription.createdChannel, terminal: subscription.createdTerminal },
  }
}
