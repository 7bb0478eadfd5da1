/**
 * The shape of every message on the engine's streams, as Schemas.
 *
 * Inbound messages are decoded with these before anything else looks at
 * them; outbound ones are built as these types so the documentation in
 * docs/streams.md and the code cannot disagree.
 */
import { Schema } from "effect"
import { Money, PositiveMoney } from "../domain/Money.ts"
import { LocalDate } from "../domain/Subscription.ts"
import { OptionalText, Text } from "../domain/Text.ts"
import { Timestamp } from "../domain/Timestamp.ts"
import { ClientId } from "../protocol/Envelope.ts"

const Id = Text(200)

/** `rp.tick`: the clock. */
export const Tick = Schema.Struct({ at: Timestamp })
export type Tick = typeof Tick.Type

/** `hub.payment.command`: the engine asks the hub to move money. */
export const PaymentCommand = Schema.Struct({
  paymentId: Id,
  subscriptionId: Id,
  clientId: Id,
  kind: Schema.String,
  occurrence: Schema.String,
  attempt: Schema.Int,
  providerId: Schema.String,
  account: Schema.String,
  source: Schema.String,
  amount: Money,
  requestedAt: Timestamp,
})
export type PaymentCommand = typeof PaymentCommand.Type

/** The hub's verdict on one payment attempt. */
export const PaymentStatus = Schema.Literals(["succeeded", "failed", "declined"])
export type PaymentStatus = typeof PaymentStatus.Type

/**
 * `hub.payment.result`: the outcome of a command. The contract's result names its payment by
 * `paymentId` alone; a hub may also repeat the command's subscription, occurrence, attempt and
 * amount, and those must then be the command's (checked before the result is used).
 */
export const PaymentResult = Schema.Struct({
  paymentId: Id,
  status: PaymentStatus,
  retryable: Schema.Boolean,
  reason: Schema.optionalKey(OptionalText(2_000)),
  hubReference: Schema.optionalKey(OptionalText(200)),
  subscriptionId: Schema.optionalKey(Id),
  occurrence: Schema.optionalKey(Id),
  attempt: Schema.optionalKey(Schema.Int),
  amount: Schema.optionalKey(Money),
  at: Timestamp,
})
export type PaymentResult = typeof PaymentResult.Type

/** The hub's answer on `hub.payment.status`: a result, or "don't know yet". */
export const PaymentStatusReply = Schema.Union([
  PaymentResult,
  Schema.Struct({ status: Schema.Literal("unknown") }),
])
export type PaymentStatusReply = typeof PaymentStatusReply.Type

/** The request the engine sends on `hub.payment.status`. */
export const PaymentStatusQuery = Schema.Struct({ paymentId: Id })

/** `provider.<providerId>.threshold.event`: a provider reports an account's balance. */
export const ThresholdEvent = Schema.Struct({
  eventId: Id,
  providerId: Id,
  account: Id,
  balance: Money,
  at: Timestamp,
})
export type ThresholdEvent = typeof ThresholdEvent.Type

/** `provider.<providerId>.threshold.watch|unwatch`: the engine asks a provider to (stop) report(ing) an account. */
export interface ThresholdWatch {
  readonly subscriptionId: string
  readonly providerId: string
  readonly account: string
  readonly threshold: Money
  readonly at: string
}

/** `provider.<providerId>.debt.query`: the engine asks a provider what an account owes. */
export interface DebtQuery {
  readonly queryId: string
  readonly providerId: string
  readonly account: string
  readonly subscriptionId: string
  readonly at: string
}

/** One bill in a provider's answer. */
export const Bill = Schema.Struct({
  billId: Id,
  amount: Money,
  // A date, as the contract says: free text here reached the decisions' jsonb, which refuses NUL.
  dueDate: Schema.optionalKey(LocalDate),
  description: Schema.optionalKey(OptionalText(500)),
})
export type Bill = typeof Bill.Type

/** `provider.<providerId>.debt.response`: the provider's answer to a debt query: bills, or an error. */
export const DebtResponse = Schema.Struct({
  queryId: Id,
  providerId: Id,
  account: Id,
  debts: Schema.optionalKey(Schema.Array(Bill).check(Schema.isMaxLength(100))),
  error: Schema.optionalKey(Schema.Struct({ code: Text(100), message: OptionalText(2_000) })),
  at: Timestamp,
}).check(
  Schema.makeFilter((response) =>
    (response.debts === undefined) === (response.error === undefined)
      ? { path: ["debts"], issue: "give exactly one of debts (possibly empty) or error" }
      : undefined,
  ),
)
export type DebtResponse = typeof DebtResponse.Type

/** `hub.payment.completed`: a one-off payment completed anywhere in the hub (feeds reminders). */
export const HubPaymentCompleted = Schema.Struct({
  paymentId: Id,
  // The protocol's client id rule: a reminder's notifications go to rp.notify.<clientId>, so an id
  // with a dot, a space or a wildcard would make a subject the outbox can never publish to.
  clientId: ClientId,
  channel: Id,
  providerId: Id,
  account: Id,
  source: Id,
  // A completed payment moved money: a reminder offering to repeat zero or less makes no sense.
  amount: PositiveMoney,
  at: Timestamp,
})
export type HubPaymentCompleted = typeof HubPaymentCompleted.Type

/** A bank operator who made a change in the console on the client's behalf, and the reason they gave. */
export const OperatorActor = Schema.Struct({ login: Schema.String, reason: Schema.String })

/**
 * Who caused a change: a channel request, or the engine itself when both are null. A change made
 * in the operator console has channel `console` and names the operator.
 */
export const Actor = Schema.Struct({
  channel: Schema.NullOr(Schema.String),
  terminal: Schema.NullOr(Schema.String),
  requestId: Schema.NullOr(Schema.String),
  operator: Schema.optionalKey(OperatorActor),
})
export type Actor = typeof Actor.Type

/** Event types published on `rp.event.<type>`. */
export const EventType = Schema.Literals([
  "subscription.created",
  "subscription.updated",
  "subscription.paused",
  "subscription.resumed",
  "subscription.cancelled",
  "subscription.completed",
  "payment.requested",
  "payment.succeeded",
  "payment.failed",
  "payment.retry_scheduled",
  "payment.skipped",
  "payment.duplicate_suspected",
  "debt.over_limit",
  "reminder.offered",
  "reminder.accepted",
  "reminder.declined",
])
export type EventType = typeof EventType.Type

/** `rp.event.<type>`: one lifecycle or outcome event for other hub services. */
export const EngineEvent = Schema.Struct({
  eventId: Id,
  type: EventType,
  at: Timestamp,
  subscriptionId: Id,
  clientId: Id,
  kind: Schema.String,
  data: Schema.Record(Schema.String, Schema.Unknown),
})
export type EngineEvent = typeof EngineEvent.Type

/** Notification types published on `rp.notify.<clientId>`. */
export const NotificationType = Schema.Literals([
  "payment.upcoming",
  "payment.succeeded",
  "payment.failed",
  "debt.over_limit",
  "limit.exceeded",
  "reminder.offer",
  "subscription.paused",
])
export type NotificationType = typeof NotificationType.Type

/** `rp.notify.<clientId>`: something the customer should be told. */
export const Notification = Schema.Struct({
  notificationId: Id,
  clientId: Id,
  type: NotificationType,
  subscriptionId: Schema.optionalKey(Id),
  paymentId: Schema.optionalKey(Id),
  at: Timestamp,
  data: Schema.Record(Schema.String, Schema.Unknown),
})
export type Notification = typeof Notification.Type

/** `rp.dlq.<stream>`: a message the engine could not use, kept with the reason. */
export const DeadLetter = Schema.Struct({
  stream: Schema.String,
  consumer: Schema.String,
  subject: Schema.String,
  streamSequence: Schema.Int,
  deliveries: Schema.Int,
  reason: Schema.String,
  details: Schema.Array(Schema.Struct({ path: Schema.String, message: Schema.String })),
  /** The original bytes, base64, exactly as received; empty when too large to copy (see `dataOmitted`). */
  data: Schema.String,
  /** Set when the original did not fit in a letter: its size and SHA-256; it stays in its stream at `streamSequence`. */
  dataOmitted: Schema.optionalKey(Schema.Struct({ bytes: Schema.Int, sha256: Schema.String })),
  headers: Schema.Record(Schema.String, Schema.Array(Schema.String)),
  receivedAt: Timestamp,
})
export type DeadLetter = typeof DeadLetter.Type
