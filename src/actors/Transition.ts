/**
 * A transition: everything one message does to one subscription, described
 * as data. The actor's policy builds it without touching any I/O; the group
 * committer writes all of it — the new subscription row, payment records,
 * decisions and the outbox of messages it causes — in one transaction.
 */
import { newId } from "../domain/Ids.ts"
import type { Money } from "../domain/Money.ts"
import type { Subscription } from "../domain/Subscription.ts"
import * as Timestamp from "../domain/Timestamp.ts"
import type {
  Actor,
  EngineEvent,
  EventType,
  Notification,
  NotificationType,
  PaymentCommand,
} from "../streams/Messages.ts"

/** A new payment attempt, recorded before its command can be published. */
export interface PaymentRecord {
  readonly paymentId: string
  readonly subscriptionId: string
  readonly clientId: string
  readonly occurrence: string
  readonly attempt: number
  readonly amount: Money
  readonly providerId: string
  readonly account: string
  readonly source: string
  /** Why the engine paid: the rule and its inputs. */
  readonly rule: Readonly<Record<string, unknown>>
  readonly requestedAt: number
}

/** What happened to an attempt: the hub's verdict and what the engine made of it. */
export interface PaymentOutcomeRecord {
  readonly paymentId: string
  readonly status: "succeeded" | "failed" | "declined" | "unknown"
  readonly retryable: boolean | null
  readonly reason: string | null
  readonly hubReference: string | null
  /** paid | retry_scheduled | failed | awaiting_status */
  readonly outcome: string
  readonly resultAt: number
}

/** A decision that is not a payment attempt (skips, lifecycle changes, anomalies). */
export interface DecisionRecord {
  readonly subscriptionId: string
  readonly at: number
  readonly outcome: string
  readonly reason: string | null
  readonly occurrence: string | null
  readonly paymentId: string | null
  readonly details: Readonly<Record<string, unknown>>
  readonly channel: string | null
  readonly terminal: string | null
}

/** A message the transition causes, before it is given a subject. */
export type Outgoing =
  | { readonly _tag: "Command"; readonly command: PaymentCommand }
  | { readonly _tag: "Event"; readonly event: EngineEvent }
  | { readonly _tag: "Notification"; readonly notification: Notification }

/** Everything one message did to one subscription. */
export interface Transition {
  readonly subscription: Subscription
  /** False when nothing needs writing (a duplicate result, a wake with nothing due). */
  readonly changed: boolean
  readonly payments: ReadonlyArray<PaymentRecord>
  readonly outcomes: ReadonlyArray<PaymentOutcomeRecord>
  readonly decisions: ReadonlyArray<DecisionRecord>
  readonly outgoing: ReadonlyArray<Outgoing>
}

/** The engine itself, as the author of a change. */
export const engineActor: Actor = { channel: null, terminal: null, requestId: null }

/**
 * Accumulates a transition while a policy works through one message.
 *
 * Events and notifications get random ids: they are fixed the moment the
 * transition is committed (the outbox row holds them), and a transition that
 * was never committed never published anything, so nothing needs to be
 * recomputed identically. Payment ids, which the hub keys on, are name-based.
 */
export class TransitionBuilder {
  readonly payments: Array<PaymentRecord> = []
  readonly outcomes: Array<PaymentOutcomeRecord> = []
  readonly decisions: Array<DecisionRecord> = []
  readonly outgoing: Array<Outgoing> = []
  constructor(
    readonly base: Subscription,
    readonly now: number,
  ) {}

  /** Records a decision. */
  decide(
    outcome: string,
    fields: {
      readonly reason?: string | null
      readonly occurrence?: string | null
      readonly paymentId?: string | null
      readonly details?: Readonly<Record<string, unknown>>
      readonly by?: Actor
    } = {},
  ): void {
    this.decisions.push({
      subscriptionId: this.base.id,
      at: this.now,
      outcome,
      reason: fields.reason ?? null,
      occurrence: fields.occurrence ?? null,
      paymentId: fields.paymentId ?? null,
      details: fields.details ?? {},
      channel: fields.by?.channel ?? null,
      terminal: fields.by?.terminal ?? null,
    })
  }

  /** Publishes a lifecycle or outcome event for the hub. */
  event(type: EventType, subscription: Subscription, data: Readonly<Record<string, unknown>>): void {
    this.outgoing.push({
      _tag: "Event",
      event: {
        eventId: newId(),
        type,
        at: Timestamp.format(this.now),
        subscriptionId: subscription.id,
        clientId: subscription.clientId,
        kind: subscription.kind,
        data,
      },
    })
  }

  /** Tells the customer something. */
  notify(
    type: NotificationType,
    data: Readonly<Record<string, unknown>>,
    paymentId: string | undefined = undefined,
  ): void {
    this.outgoing.push({
      _tag: "Notification",
      notification: {
        notificationId: newId(),
        clientId: this.base.clientId,
        type,
        subscriptionId: this.base.id,
        ...(paymentId === undefined ? {} : { paymentId }),
        at: Timestamp.format(this.now),
        data,
      },
    })
  }

  /** Records a payment attempt and the command that asks the hub to make it. */
  requestPayment(record: PaymentRecord, kind: string): void {
    this.payments.push(record)
    this.outgoing.push({
      _tag: "Command",
      command: {
        paymentId: record.paymentId,
        subscriptionId: record.subscriptionId,
        clientId: record.clientId,
        kind,
        occurrence: record.occurrence,
        attempt: record.attempt,
        providerId: record.providerId,
        account: record.account,
        source: record.source,
        amount: record.amount,
        requestedAt: Timestamp.format(record.requestedAt),
      },
    })
  }

  /** Records what became of an attempt. */
  recordOutcome(record: PaymentOutcomeRecord): void {
    this.outcomes.push(record)
  }

  /** The finished transition, with `subscription` as the new state. */
  build(subscription: Subscription): Transition {
    const changed =
      subscription !== this.base ||
      this.payments.length > 0 ||
      this.outcomes.length > 0 ||
      this.decisions.length > 0 ||
      this.outgoing.length > 0
    return {
      subscription,
      changed,
      payments: this.payments,
      outcomes: this.outcomes,
      decisions: this.decisions,
      outgoing: this.outgoing,
    }
  }
}
