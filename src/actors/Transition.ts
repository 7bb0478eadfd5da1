/**
 * A transition: everything one message does to one subscription, described
 * as data. The actor's policy builds it without touching any I/O; the group
 * committer writes all of it — the new subscription row, payment records,
 * decisions and the outbox of messages it causes — in one transaction.
 */
import { newId } from "../domain/Ids.ts"
import type { Money } from "../domain/Money.ts"
import type { Subscription } from "../domain/Subscription.ts"
import type { Template } from "../domain/Template.ts"
import * as Timestamp from "../domain/Timestamp.ts"
import type { EventData, NotificationData } from "../streams/Events.ts"
import type {
  Actor,
  DebtQuery,
  EngineEvent,
  EventType,
  Notification,
  NotificationType,
  PaymentCommand,
  ThresholdWatch,
} from "../streams/Messages.ts"
import type { SpendRecord } from "./Limits.ts"

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
  /** The client's monthly spend this payment adds to, when a monthly limit applies. */
  readonly spend: SpendRecord | null
  /** The kind of autopayment paying it (a debt payment claims its bill). */
  readonly kind: string
}

/** A debt query sent to a provider: recorded so its answer can be routed back by `queryId`. */
export interface DebtQueryRecord {
  readonly queryId: string
  readonly subscriptionId: string
  readonly providerId: string
  readonly account: string
  readonly sentAt: number
}

/** An amount counted toward (or given back from) one month of the client's spend. */
export interface SpendChange {
  readonly month: string
  readonly amount: Money
}

/** What happened to an attempt: the hub's verdict and what the engine made of it. */
export interface PaymentOutcomeRecord {
  readonly paymentId: string
  readonly status: "succeeded" | "failed" | "declined" | "unknown"
  readonly retryable: boolean | null
  readonly reason: string | null
  readonly hubReference: string | null
  /** paid | retry_scheduled | failed | awaiting_status | duplicate (a second success of its occurrence) */
  readonly outcome: string
  readonly resultAt: number
  /** A failed or declined attempt moved no money: what it counted toward the client's month is given back. */
  readonly spendRelease: SpendChange | null
  /**
   * A success reported after the attempt was recorded failed: what the failure gave back is
   * counted again, in the same month. Never refused by the cap: the money has moved.
   */
  readonly spendRestore?: SpendChange
}

/**
 * A payment that may have paid an occurrence a second time: the bank checks it and reverses it.
 * `suspected` while it is in flight after an earlier attempt of its occurrence succeeded,
 * `confirmed` when it succeeded too, `cleared` when it moved no money after all.
 */
export interface DuplicateFlag {
  /** The attempt that should not have paid (a retry). */
  readonly paymentId: string
  /** The earlier attempt of the same occurrence that succeeded. */
  readonly duplicateOf: string
  readonly state: "suspected" | "confirmed" | "cleared"
  readonly at: number
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
  /** The console operator who made the change on the client's behalf, and the reason given. */
  readonly operator: string | null
  readonly operatorReason: string | null
}

/** A message the transition causes, before it is given a subject. */
export type Outgoing =
  | { readonly _tag: "Command"; readonly command: PaymentCommand }
  | { readonly _tag: "Event"; readonly event: EngineEvent }
  | { readonly _tag: "Notification"; readonly notification: Notification }
  | {
      readonly _tag: "Provider"
      readonly providerId: string
      readonly topic: "threshold.watch" | "threshold.unwatch" | "debt.query"
      /** The de-duplication id: the same request to a provider is never published twice. */
      readonly msgId: string
      readonly body: ThresholdWatch | DebtQuery
    }

/** Everything one message did to one subscription. */
export interface Transition<S extends Subscription = Subscription> {
  readonly subscription: S
  /** False when nothing needs writing (a duplicate result, a wake with nothing due). */
  readonly changed: boolean
  readonly payments: ReadonlyArray<PaymentRecord>
  readonly outcomes: ReadonlyArray<PaymentOutcomeRecord>
  readonly decisions: ReadonlyArray<DecisionRecord>
  readonly outgoing: ReadonlyArray<Outgoing>
  readonly queries: ReadonlyArray<DebtQueryRecord>
  /** Templates saved with the change (a reminder taken up saves its payment as one). */
  readonly templates: ReadonlyArray<Template>
  /** Payments flagged (or cleared) as a possible second payment of their occurrence. */
  readonly duplicates: ReadonlyArray<DuplicateFlag>
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
  readonly queries: Array<DebtQueryRecord> = []
  readonly templates: Array<Template> = []
  readonly duplicates: Array<DuplicateFlag> = []
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
      operator: fields.by?.operator?.login ?? null,
      operatorReason: fields.by?.operator?.reason ?? null,
    })
  }

  /** Publishes a lifecycle or outcome event for the hub; `data` is checked against its type's schema. */
  event<T extends EventType>(type: T, subscription: Subscription, data: EventData<T>): void {
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

  /** Tells the customer something; `data` is checked against its type's schema. */
  notify<T extends NotificationType>(
    type: T,
    data: NotificationData<T>,
    paymentId: string | undefined = undefined,
  ): void {
    const notificationId = newId()
    const { clientId, id: subscriptionId } = this.base
    const at = Timestamp.format(this.now)
    // Two literals rather than a conditional spread (V8's slow generic path); the keys keep their order.
    this.outgoing.push({
      _tag: "Notification",
      notification:
        paymentId === undefined
          ? { notificationId, clientId, type, subscriptionId, at, data }
          : { notificationId, clientId, type, subscriptionId, paymentId, at, data },
    })
  }

  /** Records a payment attempt and the command that asks the hub to make it. */
  requestPayment(record: PaymentRecord): void {
    this.payments.push(record)
    this.outgoing.push({
      _tag: "Command",
      command: {
        paymentId: record.paymentId,
        subscriptionId: record.subscriptionId,
        clientId: record.clientId,
        kind: record.kind,
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

  /** Tells a provider to start or stop reporting the balance of the watched account. */
  watch(topic: "threshold.watch" | "threshold.unwatch", threshold: Money, by: string): void {
    const { payee } = this.base
    this.outgoing.push({
      _tag: "Provider",
      providerId: payee.providerId,
      topic,
      // One per change of watch: `by` names the change (the subscription version it came with).
      msgId: `${topic}:${this.base.id}:${by}`,
      body: {
        subscriptionId: this.base.id,
        providerId: payee.providerId,
        account: payee.account,
        threshold,
        at: Timestamp.format(this.now),
      },
    })
  }

  /** Records a debt query and publishes it to the provider. */
  queryDebts(queryId: string): void {
    const { payee } = this.base
    this.queries.push({
      queryId,
      subscriptionId: this.base.id,
      providerId: payee.providerId,
      account: payee.account,
      sentAt: this.now,
    })
    this.outgoing.push({
      _tag: "Provider",
      providerId: payee.providerId,
      topic: "debt.query",
      msgId: `debt.query:${queryId}`,
      body: {
        queryId,
        providerId: payee.providerId,
        account: payee.account,
        subscriptionId: this.base.id,
        at: Timestamp.format(this.now),
      },
    })
  }

  /** Records what became of an attempt. */
  recordOutcome(record: PaymentOutcomeRecord): void {
    this.outcomes.push(record)
  }

  /** Flags a payment as a possible second payment of its occurrence, or updates its flag. */
  flagDuplicate(paymentId: string, duplicateOf: string, state: DuplicateFlag["state"]): void {
    this.duplicates.push({ paymentId, duplicateOf, state, at: this.now })
  }

  /** The finished transition, with `subscription` as the new state. */
  build<S extends Subscription>(subscription: S): Transition<S> {
    const changed =
      subscription !== this.base ||
      this.payments.length > 0 ||
      this.outcomes.length > 0 ||
      this.decisions.length > 0 ||
      this.outgoing.length > 0 ||
      this.queries.length > 0 ||
      this.templates.length > 0 ||
      this.duplicates.length > 0
    return {
      subscription,
      changed,
      payments: this.payments,
      outcomes: this.outcomes,
      decisions: this.decisions,
      outgoing: this.outgoing,
      queries: this.queries,
      templates: this.templates,
      duplicates: this.duplicates,
    }
  }
}
