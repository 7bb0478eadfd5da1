/**
 * The `data` of every event on `rp.event.<type>` and of every notification on
 * `rp.notify.<clientId>`, as Schemas.
 *
 * `TransitionBuilder.event` and `notify` take their payloads typed by these,
 * so a policy cannot publish a payload that drifts from its schema, and
 * docs/events.md is generated from them (`npm run docs:events`), so the
 * documentation cannot drift either. Field descriptions are `annotateKey`
 * annotations; a type's description says when it is published.
 */
import { Schema } from "effect"
import { Money } from "../domain/Money.ts"
import { RuleInputs, Schedule } from "../domain/Subscription.ts"
import { SubscriptionView } from "../domain/SubscriptionView.ts"
import { Timestamp } from "../domain/Timestamp.ts"
import { Actor, type EventType, type NotificationType, PaymentStatus } from "./Messages.ts"

/** `schema` as a struct field described by `description`. */
const field = <S extends Schema.Top>(schema: S, description: string): S["Rebuild"] =>
  schema.annotateKey({ description })

/** An optional struct field described by `description`. */
const optional = <S extends Schema.Top>(schema: S, description: string) =>
  Schema.optionalKey(schema).annotateKey({ description })

/** The annotation describing the open-ended fields of a struct with a rest (docs/events.md lists it). */
export const OTHER_FIELDS = "x-other-fields"

/** `fields`, and more whose names and types vary (a rule's inputs), described in words by `others`. */
const withOthers = <F extends Schema.Struct.Fields>(fields: F, others: string) =>
  Schema.StructWithRest(Schema.Struct(fields), [Schema.Record(Schema.String, Schema.Unknown)]).annotate({
    [OTHER_FIELDS]: others,
  })

// ---- shared types ---------------------------------------------------------------

const MoneyType = Money.annotate({
  identifier: "Money",
  description:
    'An amount: `value` in integer minor units of `currency` (ISO 4217): `{"value": 150000, "currency": "RUB"}` is 1 500.00 RUB.',
})

const Time = Timestamp.annotate({
  identifier: "Timestamp",
  description: "An RFC 3339 timestamp; the engine writes UTC with milliseconds (`2026-12-01T06:00:00.000Z`).",
})

const By = Actor.annotate({
  identifier: "Actor",
  description:
    "Who caused a change: the `channel`, `terminal` and `requestId` of the channel request, or all three null when the engine itself did it. A change an operator made in the console on the client's behalf has `channel` `console` and `operator` (`login`, `reason`).",
})

const View = SubscriptionView.annotate({
  identifier: "SubscriptionView",
  description:
    "The whole subscription, in the shape protocol replies use (docs/protocol.md §11.2), so a consumer never has to call back.",
})

const ScheduleType = Schedule.annotate({
  identifier: "Schedule",
  description:
    "A scheduled autopayment's schedule with every default filled in, as in protocol replies (docs/protocol.md §11.3).",
})

const Rule = RuleInputs.annotate({
  identifier: "RuleInputs",
  description: "A rule and the inputs it decided with: `rule` names it.",
  [OTHER_FIELDS]: "The figures the rule looked at; they differ from rule to rule (listed where it is used).",
})

// ---- payments -------------------------------------------------------------------

const paymentFields = {
  paymentId: field(
    Schema.String,
    "The attempt: the `paymentId` of its `hub.payment.command`, the hub's idempotency key.",
  ),
  occurrence: field(
    Schema.String,
    "What is paid: the date (`YYYY-MM-DD`) for scheduled, the balance event's `eventId` for threshold, the `billId` for debt.",
  ),
  attempt: field(Schema.Int, "The attempt's number for this occurrence, from 1."),
  amount: field(MoneyType, "The attempt's amount."),
  providerId: field(Schema.String, "The payee's provider."),
  account: field(Schema.String, "The payee's account at the provider."),
}

const PaymentRequested = Schema.Struct({
  ...paymentFields,
  source: field(Schema.String, "The payer's account or card token."),
  rule: field(
    Rule,
    "Why the engine paid, as `why` in the history: `schedule` (`occurrence`, `dueAt`, `lateByMs`, `schedule`), `retry` (`occurrence`, `attempt`, `plannedAt`), `threshold` (`rulesText`, `eventId`, `balance`, `threshold`, `readAt`, `topUp`) or `debt` (`rulesText`, `bill`, `limit`); plus `confirmedBy` (an Actor) when the client released a held payment with `payment.confirm`.",
  ),
}).annotate({
  description:
    "A payment command was sent to the hub; a payment released by `payment.confirm` shows here too, its `rule` carrying `confirmedBy`.",
})

const PaymentSucceeded = Schema.Struct({
  ...paymentFields,
  hubReference: field(Schema.NullOr(Schema.String), "The hub's reference for the payment, if it gave one."),
}).annotate({ description: "The hub reported that the attempt succeeded." })

const retryFields = {
  ...paymentFields,
  status: field(PaymentStatus, "The hub's verdict: `failed`."),
  reason: field(Schema.NullOr(Schema.String), "The hub's reason, if it gave one."),
  retryAt: field(Time, "When the next attempt is planned (engine time)."),
  nextAttempt: field(Schema.Int, "The number of the planned attempt."),
}

const PaymentRetryScheduled = Schema.Struct(retryFields).annotate({
  description:
    "Scheduled: an attempt failed with `retryable: true` and another attempt is planned (`RP_RETRY_SCHEDULE`, never past the next occurrence).",
})

const FailedAttempt = Schema.Struct({
  ...paymentFields,
  status: field(PaymentStatus, "The hub's verdict: `failed` or `declined`."),
  retryable: field(Schema.Boolean, "As the hub said."),
  reason: field(Schema.NullOr(Schema.String), "The hub's reason, if it gave one."),
  final: field(
    Schema.Boolean,
    "True when this occurrence will not be paid; false only for a debt bill that failed with `retryable: true`: it is paid again if the provider still lists it at the next poll.",
  ),
  whyNoRetry: field(
    Schema.String,
    'Why no retry follows, in words: "declined payments are final", "the hub marked the failure as not retryable", "the subscription is paused" (or cancelled), "a retry of occurrence <date> is already planned", "retry schedule exhausted", "the next occurrence comes before the next retry"; for threshold, that a top-up is not retried on its own; for debt, "paid again if the provider still reports the bill at the next poll" or "the bill is left to the client".',
  ),
}).annotate({ title: "A failed attempt that no retry follows" })

const AbandonedRetry = Schema.Struct({
  ...paymentFields,
  paymentId: field(
    Schema.String,
    "The last attempt sent, whose failure planned the retry (the planned attempt was never sent).",
  ),
  attempt: field(Schema.Int, "The number of that last attempt (`abandonedRetry.attempt` − 1)."),
  amount: field(MoneyType, "The amount of the planned retry."),
  final: field(Schema.Literal(true), "Always true: the occurrence will not be paid."),
  whyNoRetry: field(
    Schema.String,
    '"the next occurrence came before the retry", "the subscription was paused" or "the subscription was cancelled".',
  ),
  abandonedRetry: field(
    Schema.Struct({
      plannedAt: field(Time, "When the retry was planned for."),
      attempt: field(Schema.Int, "The number the retry would have had."),
    }),
    "The retry that will not be sent, as in the history's `retry_abandoned` decision.",
  ),
}).annotate({
  title: "A planned retry was abandoned",
  description:
    "Scheduled: the next occurrence came due, or the subscription was paused (by a channel or the engine) or cancelled, so a client told that a retry would follow hears the end of it.",
})

const PaymentFailed = Schema.Union([FailedAttempt, AbandonedRetry]).annotate({
  description: "A payment failed and nothing more will be tried for it by a retry plan.",
})

const PaymentDuplicateSuspected = Schema.Struct({
  ...paymentFields,
  paymentId: field(
    Schema.String,
    "The attempt that may have paid the occurrence a second time: a retry sent before the hub reported that an earlier attempt succeeded.",
  ),
  attempt: field(Schema.Int, "That attempt's number."),
  paidBy: field(
    Schema.String,
    "The earlier attempt of the same occurrence that the hub reported succeeded (its `paymentId`).",
  ),
  paidByAttempt: field(Schema.Int, "The number of that earlier attempt."),
  secondStatus: field(
    Schema.Literals(["in_flight", "succeeded"]),
    "`in_flight`: the retry's own result is not known yet; `succeeded`: it succeeded too, so the occurrence was paid twice.",
  ),
  whatToDo: field(
    Schema.String,
    "In words: once the retry's result is known, a retry that succeeded is reversed by the bank; the console flags it on the subscription until an operator marks it resolved.",
  ),
}).annotate({
  description:
    "A success of one attempt was reported after a later attempt (a retry) of the same occurrence was already sent: that retry may pay the occurrence twice. Published once per retry; the console keeps the flag (suspected, confirmed when the retry also succeeded, cleared when it moved no money).",
})

const RetryPlanned = Schema.Struct({
  ...retryFields,
  final: field(Schema.Literal(false), "Always false: another attempt is planned."),
}).annotate({ title: "A failed attempt with a retry planned" })

const occurrenceField = field(Schema.String, "The occurrence not paid, as in `payment.requested`.")

const ScheduledSkip = withOthers(
  {
    occurrence: occurrenceField,
    reason: field(
      Schema.String,
      "`missed`, `paused`, `skip_next`, `max_payments_reached` or `max_payments_in_flight`.",
    ),
    dueAt: field(Time, "When the occurrence was due."),
  },
  "The inputs of the rule that skipped it: `statusReason` (paused); `rule`, or `lateByMs` and `catchUpWindowMs` (missed); `maxPayments`, `paid` and `inFlight` (max payments).",
).annotate({ title: "Scheduled: a due occurrence was not paid" })

const ThresholdSkip = withOthers(
  {
    occurrence: occurrenceField,
    reason: field(
      Schema.String,
      "`paused`, `cancelled`, `completed`, `top_up_in_flight`, `cooldown` or `awaiting_confirmation`.",
    ),
    eventId: field(Schema.String, "The balance event."),
    balance: field(MoneyType, "The balance it reported."),
    threshold: field(MoneyType, "The subscription's threshold."),
    readAt: field(Time, "When the provider read the balance."),
  },
  "The inputs of the rule that skipped it: `statusReason` (paused); `inFlight` (`paymentId`, `sentAt`); `cooldown` and `cooldownUntil`; `heldPaymentId` and `heldFor` (awaiting confirmation).",
).annotate({ title: "Threshold: a low balance reading did not pay a top-up" })

const DebtSkip = withOthers(
  {
    occurrence: occurrenceField,
    reason: field(Schema.String, "`paused`, `cancelled`, `completed`, `failed_before` or `nothing_to_pay`."),
    bill: field(
      Schema.Struct({
        billId: field(Schema.String, "The provider's bill id."),
        amount: field(MoneyType, "What the provider asks."),
        dueDate: field(Schema.NullOr(Schema.String), "The bill's due date, if the provider gave one."),
        queryId: field(Schema.String, "The debt query the bill was listed in."),
      }),
      "The bill as the provider listed it.",
    ),
  },
  "The inputs of the rule that skipped it: `statusReason` (paused); `lastAttempt` and `lastStatus` (failed before); `limit` (currency mismatch).",
).annotate({
  title: "Debt: a listed bill was not paid",
  description:
    "A bill already paid or being paid (`already_paid`, `payment_in_flight`) publishes no event, only a history entry.",
})

const PaymentSkipped = Schema.Union([ScheduledSkip, ThresholdSkip, DebtSkip]).annotate({
  description:
    "Something that could have been paid was not, with the rule and its inputs (as the history's `skipped` decision).",
})

const heldFields = {
  paymentId: field(Schema.String, "The id the payment will be sent under if the client confirms it."),
  occurrence: field(Schema.String, "What it pays, as in `payment.requested`."),
  amount: field(MoneyType, "The amount held."),
  reason: field(Schema.String, "`over_debt_limit`, `over_payment_cap` or `over_monthly_cap`."),
  limit: field(
    Rule,
    "The limit and the figures compared: `over_payment_cap`: `cap`, `amount`; `over_monthly_cap`: `month` (`YYYY-MM`), `timeZone`, `cap`, `spentThisMonth` (before this payment), `amount`; `over_debt_limit`: `limit`, `amount`.",
  ),
  providerId: field(Schema.String, "The payee's provider."),
  account: field(Schema.String, "The payee's account at the provider."),
  howToRelease: field(
    Schema.String,
    "What the client does to pay it anyway (`payment.confirm` with this `paymentId`).",
  ),
}

const DebtOverLimit = Schema.Struct({
  ...heldFields,
  reason: field(Schema.String, "`over_debt_limit`."),
}).annotate({
  description:
    "Debt: a bill above the subscription's `limit` was held for the client; nothing was paid until `payment.confirm` or a raised `limit`.",
})

const LimitExceeded = Schema.Struct({
  ...heldFields,
  reason: field(Schema.String, "`over_payment_cap` or `over_monthly_cap`."),
}).annotate({
  description:
    "A payment of any kind was held because it is above the bank's per-payment cap for its kind (`over_payment_cap`) or would take the client's autopayments this month above the monthly cap (`over_monthly_cap`); nothing was paid. Announced once per hold; no event is published for it.",
})

// ---- lifecycle --------------------------------------------------------------------

const lifecycleFields = {
  by: field(By, "Who made the change."),
  subscription: field(View, "The subscription after the change."),
}

const SubscriptionCreated = Schema.Struct({
  ...lifecycleFields,
  fromReminder: optional(Schema.Literal(true), "Present when the client accepted a reminder's offer."),
}).annotate({
  description:
    "A subscription was created: by a channel, by the engine as a hidden reminder after a one-off payment (kind `reminder`, `by.channel` the payment's channel), or from an accepted reminder (`fromReminder`).",
})

const change = <S extends Schema.Top>(schema: S) =>
  Schema.Struct({ from: field(schema, "Before."), to: field(schema, "After.") })

/** The terms a `subscription.update` changed, each as `{from, to}`. */
export const TermChanges = Schema.Struct({
  amount: optional(change(MoneyType), "The amount of each payment (scheduled, threshold)."),
  schedule: optional(change(ScheduleType), "The schedule (scheduled)."),
  threshold: optional(change(MoneyType), "The balance below which a top-up is paid (threshold)."),
  cooldown: optional(change(Schema.String), "The cooldown, an ISO 8601 duration (threshold)."),
  limit: optional(change(MoneyType), "The largest bill paid without asking (debt)."),
  pollEvery: optional(change(Schema.String), "How often the provider is asked, an ISO 8601 duration (debt)."),
})
export type TermChanges = typeof TermChanges.Type

const TermsUpdated = Schema.Struct({
  change: field(Schema.Literal("terms"), "What changed."),
  changes: field(TermChanges, "Each term that changed, as `{from, to}`."),
  ...lifecycleFields,
}).annotate({ title: "Terms changed (`subscription.update`)" })

const SkipMarked = Schema.Struct({
  change: field(Schema.Literal("skipNext"), "What changed."),
  occurrence: field(Schema.String, "The occurrence that will be skipped."),
  ...lifecycleFields,
}).annotate({ title: "An occurrence was marked by `subscription.skipNext`" })

const SubscriptionUpdated = Schema.Union([TermsUpdated, SkipMarked]).annotate({
  description: "A channel changed the subscription's terms, or marked its next occurrence to be skipped.",
})

const failureFields = {
  failedOccurrencesInARow: field(Schema.Int, "Occurrences in a row that ended in a final failure."),
  lastFailedOccurrence: field(Schema.String, "The last of them."),
}

const SubscriptionPaused = Schema.Union([
  Schema.Struct({
    reason: field(Schema.Literal("client_request"), "Why."),
    ...lifecycleFields,
  }).annotate({ title: "A channel paused it" }),
  Schema.Struct({
    reason: field(Schema.Literal("consecutive_failures"), "Why."),
    ...failureFields,
    ...lifecycleFields,
  }).annotate({
    title: "The engine paused it",
    description: "After `RP_AUTO_PAUSE_AFTER` occurrences in a row failed; `by` is the engine.",
  }),
]).annotate({ description: "The subscription was paused." })

const SubscriptionResumed = Schema.Struct(lifecycleFields).annotate({
  description: "A channel resumed the subscription; nothing skipped while it was paused is paid.",
})

const SubscriptionCancelled = Schema.Struct({
  reason: field(Schema.Literal("client_request"), "Why."),
  ...lifecycleFields,
}).annotate({ description: "A channel cancelled the subscription; cancelling is final." })

const SubscriptionCompleted = Schema.Struct({
  reason: field(Schema.Literals(["schedule_ended", "max_payments_reached"]), "Why."),
  ...lifecycleFields,
}).annotate({
  description:
    "Scheduled: the schedule ended or `maxPayments` was reached, with nothing in flight, planned or held; `by` is the engine.",
})

// ---- reminders --------------------------------------------------------------------

const offerFields = {
  reminderId: field(Schema.String, "The reminder (a hidden subscription; its id is the `subscriptionId`)."),
  providerId: field(Schema.String, "The payee's provider."),
  account: field(Schema.String, "The payee's account at the provider."),
  source: field(Schema.String, "What the one-off payment was paid from."),
  lastAmount: field(MoneyType, "What the last one-off payment paid."),
  lastPaidAt: field(Time, "When it was paid."),
  lastPaymentId: field(Schema.String, "The hub's `paymentId` of that payment."),
  howToAnswer: field(Schema.String, "What the client can do: `reminder.accept` or `reminder.decline`."),
}

const offerCount = {
  offer: field(Schema.Int, "Which offer this is, from 1."),
  of: field(Schema.Int, "How many offers are made at most."),
}

const ReminderOffered = Schema.Struct({ ...offerFields, ...offerCount }).annotate({
  description:
    "A reminder's period passed after a one-off payment to a periodic provider: the client is offered to make it an autopayment (again one period later while unanswered, three times at most).",
})

const ReminderAccepted = Schema.Struct({
  ...offerFields,
  ...lifecycleFields,
  subscription: field(View, "The scheduled autopayment the reminder became (same id)."),
}).annotate({
  description:
    "The client accepted a reminder: it became a visible scheduled autopayment of the same id, with a saved template (a `subscription.created` with `fromReminder` follows).",
})

const ReminderDeclined = Schema.Struct({
  ...offerFields,
  by: field(By, "Who declined."),
}).annotate({ description: "The client declined a reminder: no more reminders for that payee." })

// ---- notifications only -------------------------------------------------------------

const PaymentUpcoming = Schema.Struct({
  occurrence: field(Schema.String, "The date of the occurrence."),
  dueAt: field(Time, "When it is due."),
  amount: field(MoneyType, "What it will pay."),
  providerId: field(Schema.String, "The payee's provider."),
  account: field(Schema.String, "The payee's account at the provider."),
  source: field(Schema.String, "What it will be paid from."),
}).annotate({
  description:
    "Scheduled: once per occurrence, at the first tick inside `RP_NOTICE_LEAD` (24 h) before it is due, while active; sent again, corrected, after its amount or due time changes (show the latest one for an occurrence).",
})

const PaymentFailedNotice = Schema.Union([RetryPlanned, FailedAttempt, AbandonedRetry]).annotate({
  description:
    "A payment failed: `final: false` when a retry is planned (or a debt bill may be paid at the next poll), `final: true` when the occurrence will not be paid. The same `paymentId` can have both: de-duplicate on `notificationId`.",
})

const SubscriptionPausedNotice = Schema.Struct({
  reason: field(Schema.Literal("consecutive_failures"), "Why."),
  ...failureFields,
}).annotate({
  description:
    "The engine paused the subscription after consecutive failed occurrences (a pause the client asked for is not notified).",
})

// ---- registries -------------------------------------------------------------------

/** The Schema of each event type's `data`; its description says when the event is published. */
export const eventDataSchemas = {
  "subscription.created": SubscriptionCreated,
  "subscription.updated": SubscriptionUpdated,
  "subscription.paused": SubscriptionPaused,
  "subscription.resumed": SubscriptionResumed,
  "subscription.cancelled": SubscriptionCancelled,
  "subscription.completed": SubscriptionCompleted,
  "payment.requested": PaymentRequested,
  "payment.succeeded": PaymentSucceeded,
  "payment.failed": PaymentFailed,
  "payment.retry_scheduled": PaymentRetryScheduled,
  "payment.skipped": PaymentSkipped,
  "payment.duplicate_suspected": PaymentDuplicateSuspected,
  "debt.over_limit": DebtOverLimit,
  "reminder.offered": ReminderOffered,
  "reminder.accepted": ReminderAccepted,
  "reminder.declined": ReminderDeclined,
} as const satisfies { readonly [T in EventType]: Schema.Top }

/** The Schema of each notification type's `data`; its description says when it is sent. */
export const notificationDataSchemas = {
  "payment.upcoming": PaymentUpcoming,
  "payment.succeeded": PaymentSucceeded.annotate({
    description: "The hub reported that an attempt succeeded (as the `payment.succeeded` event).",
  }),
  "payment.failed": PaymentFailedNotice,
  "debt.over_limit": DebtOverLimit,
  "limit.exceeded": LimitExceeded,
  "reminder.offer": ReminderOffered.annotate({
    description:
      "A reminder's period passed: the client is offered to make the one-off payment automatic (as the `reminder.offered` event).",
  }),
  "subscription.paused": SubscriptionPausedNotice,
} as const satisfies { readonly [T in NotificationType]: Schema.Top }

/** The `data` of an event of type `T`. */
export type EventData<T extends EventType> = (typeof eventDataSchemas)[T]["Type"]

/** The `data` of a notification of type `T`. */
export type NotificationData<T extends NotificationType> = (typeof notificationDataSchemas)[T]["Type"]

/** The `subscription.*` events a policy announces once the subscription's new state is known. */
export type LifecycleEventType = Exclude<Extract<EventType, `subscription.${string}`>, "subscription.created">

/** A lifecycle event waiting for the new subscription: its `data` without the `subscription` member. */
export type PendingLifecycleEvent<T extends LifecycleEventType = LifecycleEventType> = {
  readonly [K in T]: {
    readonly type: K
    readonly data: WithoutSubscription<EventData<K>>
  }
}[T]

/** Each member of the union `D` without its `subscription` field. */
type WithoutSubscription<D> = D extends unknown ? Omit<D, "subscription"> : never

/** `T` with its fields writable, to build a payload field by field. */
export type Draft<T> = { -readonly [K in keyof T]: T[K] }

/** The named types payloads share, documented once (their identifiers are their names in docs/events.md). */
export const sharedTypes: ReadonlyArray<Schema.Top> = [MoneyType, Time, By, View, ScheduleType, Rule]
