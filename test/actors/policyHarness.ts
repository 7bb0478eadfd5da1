/**
 * A small driver for the scheduled policy: it creates a subscription with
 * `create(...)` and feeds it messages one at a time at a given engine time,
 * applying every successful transition as the real actor does (the new
 * subscription with `revision + 1` when something changed, the old one
 * otherwise). It also keeps what the payment store would know — the status
 * recorded for each payment id — so hub results carry a realistic
 * `recordedStatus`.
 */
import { Result } from "effect"
import type { ActorInput, PolicySettings, SettledPayment, UpdateCommand } from "../../src/actors/Inputs.ts"
import {
  LimitCheck,
  type LimitSettings,
  monthOf,
  noLimitSettings,
  tracksMonthlySpend,
} from "../../src/actors/Limits.ts"
import type { PolicyRefusal } from "../../src/actors/PaymentRun.ts"
import { mayPay } from "../../src/actors/Policy.ts"
import { create, decide, type PolicyResult } from "../../src/actors/ScheduledPolicy.ts"
import type { DecisionRecord, Transition } from "../../src/actors/Transition.ts"
import type { Money } from "../../src/domain/Money.ts"
import {
  normalizeSchedule,
  type ScheduleInput,
  type ScheduledSubscription as Subscription,
} from "../../src/domain/Subscription.ts"
import * as Timestamp from "../../src/domain/Timestamp.ts"
import { defaultSettings } from "../../src/EngineConfig.ts"
import type {
  Actor,
  EngineEvent,
  Notification,
  PaymentCommand,
  PaymentResult,
  PaymentStatus,
  PaymentStatusReply,
} from "../../src/streams/Messages.ts"

export const MINUTE = 60_000
export const HOUR = 60 * MINUTE
export const DAY = 24 * HOUR

/** The policy settings the engine starts with. */
export const policySettings: PolicySettings = defaultSettings

/** Epoch milliseconds of an RFC 3339 timestamp (with offset). */
export const at = (text: string): number => Timestamp.millisOf(text)

/** A channel request as the author of a change. */
export const client: Actor = { channel: "mobile", terminal: "device-42", requestId: "req-1" }

export const SUBSCRIPTION_ID = "0b8f6a52-3c1e-4d7a-9f11-2a4b6c8d0e1f"

export const rub = (value: number) => ({ value, currency: "RUB" })

/** Monthly on the 1st at 09:00 UTC from 2027-01-01, unless overridden. */
export const monthly = (overrides: Partial<ScheduleInput> = {}): ScheduleInput => ({
  every: "month",
  dayOfMonth: 1,
  time: "09:00",
  timezone: "UTC",
  startDate: "2027-01-01",
  ...overrides,
})

/** Daily at 09:00 UTC from 2027-01-01, unless overridden. */
export const daily = (overrides: Partial<ScheduleInput> = {}): ScheduleInput => ({
  every: "day",
  time: "09:00",
  timezone: "UTC",
  startDate: "2027-01-01",
  ...overrides,
})

/** One message handled by the harness and what became of it. */
export interface Step {
  readonly input: ActorInput
  readonly now: number
  readonly before: Subscription
  readonly result: PolicyResult
}

type When = number | string | undefined

export interface HarnessOptions {
  readonly schedule: ScheduleInput
  readonly amount?: number
  /** Engine time of creation; defaults to 2026-12-01T00:00:00Z. */
  readonly createdAt?: string | number
  readonly settings?: PolicySettings
  readonly id?: string
  readonly limits?: LimitSettings
}

/**
 * What the group committer does to a client's monthly spend for one committed transition: each
 * payment sent adds to its month, a failure gives back, a late success counts again.
 */
export const applySpend = (spent: Map<string, number>, transition: Transition): void => {
  const add = (month: string, value: number) => spent.set(month, Math.max(0, (spent.get(month) ?? 0) + value))
  for (const payment of transition.payments) {
    if (payment.spend !== null) add(payment.spend.month, payment.amount.value)
  }
  for (const outcome of transition.outcomes) {
    if (outcome.spendRelease !== null) add(outcome.spendRelease.month, -outcome.spendRelease.amount.value)
    if (outcome.spendRestore !== undefined) add(outcome.spendRestore.month, outcome.spendRestore.amount.value)
  }
}

/**
 * What every policy driver offers on top of its own `send` and `accept`: refusals, wakes, and
 * waking exactly when the subscription is due.
 */
export abstract class MessageDriver {
  abstract subscription: { readonly nextDueAt: number | null }
  abstract now: number
  abstract send(input: ActorInput, when?: When): Result.Result<Transition, PolicyRefusal>
  abstract accept(input: ActorInput, when?: When): Transition

  /** Like `send`, but the policy must refuse the message; the subscription is left as it was. */
  refuse(input: ActorInput, when: When = undefined): PolicyRefusal {
    const result = this.send(input, when)
    if (Result.isSuccess(result)) throw new Error(`expected ${input._tag} to be refused, it was accepted`)
    return result.failure
  }

  wake(when: When = undefined, replies: Readonly<Record<string, PaymentStatusReply | "unreachable">> = {}) {
    return this.accept({ _tag: "Wake", statusReplies: new Map(Object.entries(replies)) }, when)
  }

  /** Wakes at the subscription's own next due time. */
  wakeWhenDue(replies: Readonly<Record<string, PaymentStatusReply | "unreachable">> = {}): Transition {
    const due = this.subscription.nextDueAt
    if (due === null) throw new Error("nothing is due: nextDueAt is null")
    return this.wake(Math.max(due, this.now), replies)
  }
}

export class PolicyHarness extends MessageDriver {
  subscription: Subscription
  now: number
  readonly settings: PolicySettings
  readonly limitSettings: LimitSettings
  /** The client's recorded monthly spend, by month, as the group committer keeps it. */
  readonly spent = new Map<string, number>()
  readonly created: Transition<Subscription>
  readonly steps: Array<Step> = []
  /** What the payment store holds for each payment id: `pending` until an outcome is recorded. */
  readonly recorded = new Map<string, string>()
  /** What each payment paid, as its row holds it. */
  readonly paymentRows = new Map<
    string,
    { occurrence: string; attempt: number; amount: Money; spendMonth: string | null }
  >()

  constructor(options: HarnessOptions) {
    super()
    this.settings = options.settings ?? policySettings
    this.limitSettings = options.limits ?? noLimitSettings
    this.now =
      typeof options.createdAt === "number"
        ? options.createdAt
        : at(options.createdAt ?? "2026-12-01T00:00:00Z")
    this.created = create(
      {
        id: options.id ?? SUBSCRIPTION_ID,
        clientId: "client-7",
        templateId: "template-1",
        payee: { providerId: "isp-1", account: "contract-123", source: "card-tok-1" },
        terms: { amount: rub(options.amount ?? 150_000), schedule: normalizeSchedule(options.schedule) },
        by: { channel: "mobile", terminal: "device-42", requestId: "req-create" },
        createdAt: this.now,
      },
      this.now,
      this.settings,
    )
    this.subscription = this.created.subscription
  }

  static create(options: HarnessOptions): PolicyHarness {
    return new PolicyHarness(options)
  }

  get state() {
    return this.subscription.state
  }

  /** Moves engine time to `when` (never backwards: engine time only grows). */
  private moveTo(when: When): number {
    const target = when === undefined ? this.now : typeof when === "number" ? when : at(when)
    if (target < this.now) {
      throw new Error(
        `engine time cannot go back from ${Timestamp.format(this.now)} to ${Timestamp.format(target)}`,
      )
    }
    this.now = target
    return target
  }

  /** Hands `input` to the policy at `when` and applies the transition if there is one. */
  send(input: ActorInput, when: When = undefined): PolicyResult {
    const now = this.moveTo(when)
    const before = this.subscription
    const result = decide(before, input, now, this.settings, this.limitsFor(input, now))
    this.steps.push({ input, now, before, result })
    if (Result.isSuccess(result)) {
      const transition = result.success
      if (transition.changed) {
        this.subscription = { ...transition.subscription, revision: before.revision + 1 }
      }
      for (const payment of transition.payments) {
        this.recorded.set(payment.paymentId, "pending")
        this.paymentRows.set(payment.paymentId, { ...payment, spendMonth: payment.spend?.month ?? null })
      }
      for (const outcome of transition.outcomes) this.recorded.set(outcome.paymentId, outcome.status)
      applySpend(this.spent, transition)
    }
    return result
  }

  /** The limits the actor would decide `input` with now: the spend is read only when it can matter. */
  limitsFor(input: ActorInput, now: number): LimitCheck {
    const settings = this.limitSettings
    if (!tracksMonthlySpend(settings, this.subscription.currency) || !mayPay(input)) {
      return new LimitCheck(settings, this.subscription, null)
    }
    const month = monthOf(now, settings.clientTimeZone)
    return new LimitCheck(settings, this.subscription, { month, spent: this.spent.get(month) ?? 0 })
  }

  /** Like `send`, but the policy must accept the message. */
  accept(input: ActorInput, when: When = undefined): Transition {
    return ok(this.send(input, when))
  }

  /** The hub's result for `paymentId`, with the recorded status the result router would pass. */
  result(
    paymentId: string,
    status: PaymentStatus,
    options: { readonly retryable?: boolean; readonly reason?: string; readonly at?: When } = {},
  ): Transition {
    return this.accept(
      {
        _tag: "HubResult",
        result: hubResult(
          paymentId,
          status,
          options.retryable ?? false,
          this.nextNow(options.at),
          options.reason,
        ),
        recordedStatus: this.recorded.get(paymentId) ?? null,
        ...this.settledFields(paymentId),
      },
      options.at,
    )
  }

  /** What the actor reads about a payment that is no longer open, as SubscriptionActors does. */
  settledFields(paymentId: string): { settled?: SettledPayment } {
    const row = this.paymentRows.get(paymentId)
    if (row === undefined || this.state.open.some((attempt) => attempt.paymentId === paymentId)) return {}
    const paid = [...this.paymentRows.entries()]
      .filter(
        ([id, other]) =>
          id !== paymentId && other.occurrence === row.occurrence && this.recorded.get(id) === "succeeded",
      )
      .sort(([, a], [, b]) => a.attempt - b.attempt)[0]
    return {
      settled: {
        occurrence: row.occurrence,
        attempt: row.attempt,
        amount: row.amount,
        spendMonth: row.spendMonth,
        occurrencePaidBy: paid === undefined ? null : { paymentId: paid[0], attempt: paid[1].attempt },
      },
    }
  }

  pause(when: When = undefined) {
    return this.send({ _tag: "Pause", by: client }, when)
  }

  resume(when: When = undefined) {
    return this.send({ _tag: "Resume", by: client }, when)
  }

  cancel(when: When = undefined) {
    return this.send({ _tag: "Cancel", by: client }, when)
  }

  skipNext(when: When = undefined) {
    return this.send({ _tag: "SkipNext", by: client }, when)
  }

  update(
    change: { readonly amount?: number; readonly currency?: string; readonly schedule?: ScheduleInput },
    options: { readonly expectedVersion?: number; readonly at?: When } = {},
  ) {
    const input: UpdateCommand = {
      _tag: "Update",
      by: client,
      expectedVersion: options.expectedVersion ?? this.subscription.version,
      amount:
        change.amount === undefined && change.currency === undefined
          ? undefined
          : {
              value: change.amount ?? this.subscription.terms.amount.value,
              currency: change.currency ?? "RUB",
            },
      schedule: change.schedule,
    }
    return this.send(input, options.at)
  }

  private nextNow(when: When): number {
    return when === undefined ? this.now : typeof when === "number" ? when : at(when)
  }

  /** Every transition the policy produced so far, creation included. */
  get transitions(): ReadonlyArray<Transition> {
    return [
      this.created,
      ...this.steps.flatMap((step) => (Result.isSuccess(step.result) ? [step.result.success] : [])),
    ]
  }
}

/** A hub result body. */
export const hubResult = (
  paymentId: string,
  status: PaymentStatus,
  retryable: boolean,
  when: number,
  reason?: string,
): PaymentResult => ({
  paymentId,
  status,
  retryable,
  ...(reason === undefined ? {} : { reason }),
  at: Timestamp.format(when),
})

// ---- reading transitions ----------------------------------------------------

export const commands = (transition: Transition): ReadonlyArray<PaymentCommand> =>
  transition.outgoing.flatMap((message) => (message._tag === "Command" ? [message.command] : []))

export const events = (transition: Transition, type?: string): ReadonlyArray<EngineEvent> =>
  transition.outgoing.flatMap((message) =>
    message._tag === "Event" && (type === undefined || message.event.type === type) ? [message.event] : [],
  )

export const eventTypes = (transition: Transition): ReadonlyArray<string> =>
  events(transition).map((event) => event.type)

export const notifications = (transition: Transition, type?: string): ReadonlyArray<Notification> =>
  transition.outgoing.flatMap((message) =>
    message._tag === "Notification" && (type === undefined || message.notification.type === type)
      ? [message.notification]
      : [],
  )

export const notificationTypes = (transition: Transition): ReadonlyArray<string> =>
  notifications(transition).map((notification) => notification.type)

export const decisions = (transition: Transition, outcome?: string): ReadonlyArray<DecisionRecord> =>
  transition.decisions.filter((decision) => outcome === undefined || decision.outcome === outcome)

/** The transition of an accepted message (fails loudly on a refusal). */
export const ok = (result: PolicyResult): Transition => {
  if (Result.isFailure(result))
    throw new Error(`expected the message to be accepted, refused: ${result.failure.message}`)
  return result.success
}

/** The single command of a transition (fails loudly when there is not exactly one). */
export const onlyCommand = (transition: Transition): PaymentCommand => {
  const sent = commands(transition)
  if (sent.length !== 1) throw new Error(`expected exactly one command, got ${sent.length}`)
  return sent[0] as PaymentCommand
}
