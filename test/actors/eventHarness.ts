/**
 * A driver for the event-driven policies (threshold, debt), in the spirit of
 * `policyHarness.ts`: it creates a subscription with the kind's `create` and
 * feeds it messages one at a time at a given engine time, applying every
 * successful transition as the real actor does.
 *
 * It also plays the parts of the store the actor reads before deciding: the
 * latest attempt recorded for each payment (hub results carry a realistic
 * `recordedStatus`, debt answers a realistic bill record) and the client's
 * monthly spend (the limits are built from it exactly as the actor builds
 * them, and every committed payment adds to it).
 */
import { Result } from "effect"
import * as DebtPolicy from "../../src/actors/DebtPolicy.ts"
import type {
  ActorInput,
  BillRecord,
  PolicySettings,
  SettledPayment,
  UpdateCommand,
} from "../../src/actors/Inputs.ts"
import {
  LimitCheck,
  type LimitSettings,
  monthOf,
  noLimitSettings,
  tracksMonthlySpend,
} from "../../src/actors/Limits.ts"
import type { PolicyRefusal } from "../../src/actors/PaymentRun.ts"
import { mayPay } from "../../src/actors/Policy.ts"
import * as ThresholdPolicy from "../../src/actors/ThresholdPolicy.ts"
import type { Transition } from "../../src/actors/Transition.ts"
import type { Money } from "../../src/domain/Money.ts"
import type { DebtSubscription, ThresholdSubscription } from "../../src/domain/Subscription.ts"
import * as Timestamp from "../../src/domain/Timestamp.ts"
import type {
  Bill,
  DebtResponse,
  PaymentStatus,
  ThresholdEvent,
  ThresholdWatch,
} from "../../src/streams/Messages.ts"
import { applySpend, at, client, hubResult, MessageDriver, policySettings, rub } from "./policyHarness.ts"

export const THRESHOLD_ID = "5d1e2c3b-4a59-4687-9a8b-7c6d5e4f3a21"
export const DEBT_ID = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"

type Live = ThresholdSubscription | DebtSubscription
type When = number | string | undefined
type Decide<S extends Live> = (
  subscription: S,
  input: ActorInput,
  now: number,
  settings: PolicySettings,
  limits: LimitCheck,
) => Result.Result<Transition, PolicyRefusal>

/** One message handled by the harness and what became of it. */
export interface EventStep<S extends Live> {
  readonly input: ActorInput
  readonly now: number
  readonly before: S
  readonly limits: LimitCheck
  readonly result: Result.Result<Transition, PolicyRefusal>
}

/** What the payment store holds about one attempt. */
export interface PaymentRow {
  readonly paymentId: string
  readonly occurrence: string
  readonly attempt: number
  readonly amount: Money
  /** The month its spend was counted in, when a monthly limit applied. */
  readonly spendMonth: string | null
  status: string
  retryable: boolean | null
}

export interface EventHarnessOptions {
  /** Engine time of creation; defaults to 2027-01-10T00:00:00Z. */
  readonly createdAt?: string | number
  readonly settings?: PolicySettings
  readonly limits?: LimitSettings
  /** The client's spend already recorded, by month (`YYYY-MM`), in the subscription's currency. */
  readonly spent?: Readonly<Record<string, number>>
}

const DEFAULT_CREATED_AT = "2027-01-10T00:00:00Z"

const timeOf = (when: string | number | undefined, fallback: number): number =>
  when === undefined ? fallback : typeof when === "number" ? when : at(when)

export class EventHarness<S extends Live> extends MessageDriver {
  subscription: S
  now: number
  readonly settings: PolicySettings
  readonly limitSettings: LimitSettings
  readonly steps: Array<EventStep<S>> = []
  /** The payment store: every attempt recorded so far, by payment id. */
  readonly payments = new Map<string, PaymentRow>()
  /** The client's recorded monthly spend, by month, as the group committer keeps it. */
  readonly spent: Map<string, number>

  constructor(
    private readonly decideWith: Decide<S>,
    readonly created: Transition,
    now: number,
    options: EventHarnessOptions,
  ) {
    super()
    this.subscription = created.subscription as S
    this.now = now
    this.settings = options.settings ?? policySettings
    this.limitSettings = options.limits ?? noLimitSettings
    this.spent = new Map(Object.entries(options.spent ?? {}))
  }

  get state(): S["state"] {
    return this.subscription.state
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

  private moveTo(when: When): number {
    const target = timeOf(when, this.now)
    if (target < this.now) {
      throw new Error(
        `engine time cannot go back from ${Timestamp.format(this.now)} to ${Timestamp.format(target)}`,
      )
    }
    this.now = target
    return target
  }

  /** Hands `input` to the policy at `when` and commits the transition if there is one. */
  send(input: ActorInput, when: When = undefined): Result.Result<Transition, PolicyRefusal> {
    const now = this.moveTo(when)
    const before = this.subscription
    const limits = this.limitsFor(input, now)
    const result = this.decideWith(before, input, now, this.settings, limits)
    this.steps.push({ input, now, before, limits, result })
    if (Result.isSuccess(result)) this.commit(result.success, before)
    return result
  }

  private commit(transition: Transition, before: S): void {
    if (transition.changed) {
      this.subscription = { ...(transition.subscription as S), revision: before.revision + 1 }
    }
    for (const payment of transition.payments) {
      this.payments.set(payment.paymentId, {
        paymentId: payment.paymentId,
        occurrence: payment.occurrence,
        attempt: payment.attempt,
        amount: payment.amount,
        spendMonth: payment.spend?.month ?? null,
        status: "pending",
        retryable: null,
      })
    }
    applySpend(this.spent, transition)
    for (const outcome of transition.outcomes) {
      const row = this.payments.get(outcome.paymentId)
      if (row === undefined) throw new Error(`an outcome for a payment never recorded: ${outcome.paymentId}`)
      row.status = outcome.status
      row.retryable = outcome.retryable
    }
  }

  /** Like `send`, but the policy must accept the message. */
  accept(input: ActorInput, when: When = undefined): Transition {
    const result = this.send(input, when)
    if (Result.isFailure(result)) {
      throw new Error(`expected ${input._tag} to be accepted, refused: ${result.failure.message}`)
    }
    return result.success
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
          timeOf(options.at, this.now),
          options.reason,
        ),
        recordedStatus: this.payments.get(paymentId)?.status ?? null,
        ...this.settledFields(paymentId),
      },
      options.at,
    )
  }

  /** What the actor reads about a payment that is no longer open, as SubscriptionActors does. */
  settledFields(paymentId: string): { settled?: SettledPayment } {
    const row = this.payments.get(paymentId)
    if (row === undefined || this.state.open.some((attempt) => attempt.paymentId === paymentId)) return {}
    const paid = [...this.payments.values()]
      .filter(
        (other) =>
          other.paymentId !== paymentId &&
          other.occurrence === row.occurrence &&
          other.status === "succeeded",
      )
      .sort((a, b) => a.attempt - b.attempt)[0]
    return {
      settled: {
        occurrence: row.occurrence,
        attempt: row.attempt,
        amount: row.amount,
        spendMonth: row.spendMonth,
        occurrencePaidBy: paid === undefined ? null : { paymentId: paid.paymentId, attempt: paid.attempt },
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

  confirm(paymentId: string, when: When = undefined) {
    return this.send({ _tag: "Confirm", by: client, paymentId }, when)
  }

  update(
    change: Omit<UpdateCommand, "_tag" | "by" | "expectedVersion" | "amount" | "schedule"> & {
      readonly amount?: Money
    },
    options: { readonly expectedVersion?: number; readonly at?: When } = {},
  ) {
    const input: UpdateCommand = {
      amount: undefined,
      schedule: undefined,
      ...change,
      _tag: "Update",
      by: client,
      expectedVersion: options.expectedVersion ?? this.subscription.version,
    }
    return this.send(input, options.at)
  }

  /** Every transition so far, creation included. */
  get transitions(): ReadonlyArray<Transition> {
    return [
      this.created,
      ...this.steps.flatMap((step) => (Result.isSuccess(step.result) ? [step.result.success] : [])),
    ]
  }
}

// ---- threshold ----------------------------------------------------------------

export const THRESHOLD_PAYEE = { providerId: "mts", account: "+79001234567", source: "card-tok-7" }

export interface ThresholdOptions extends EventHarnessOptions {
  /** Top-up, in RUB minor units; default 50 000 (500.00 RUB). */
  readonly amount?: number
  /** Threshold, in RUB minor units; default 10 000 (100.00 RUB). */
  readonly threshold?: number
  readonly cooldown?: string
}

/** A reading's time, currency, and (for a misbehaving provider) the provider and account it names. */
export interface ReadingOptions {
  readonly readAt?: When
  readonly at?: When
  readonly currency?: string
  readonly providerId?: string
  readonly account?: string
}

export class ThresholdHarness extends EventHarness<ThresholdSubscription> {
  static create(options: ThresholdOptions = {}): ThresholdHarness {
    const now = timeOf(options.createdAt, at(DEFAULT_CREATED_AT))
    const created = ThresholdPolicy.create(
      {
        id: THRESHOLD_ID,
        clientId: "client-7",
        templateId: "template-7",
        payee: THRESHOLD_PAYEE,
        terms: {
          amount: rub(options.amount ?? 50_000),
          threshold: rub(options.threshold ?? 10_000),
          cooldown: options.cooldown ?? "PT1H",
        },
        by: { channel: "mobile", terminal: "device-42", requestId: "req-create" },
        createdAt: now,
      },
      now,
    )
    return new ThresholdHarness(ThresholdPolicy.decide, created, now, options)
  }

  /**
   * A balance event `eventId` reporting `balance` (RUB minor units unless `currency`), read by
   * the provider at `readAt` (default: the engine time it is handled at).
   */
  reading(eventId: string, balance: number, options: ReadingOptions = {}): Transition {
    return this.accept(this.readingInput(eventId, balance, options), options.at)
  }

  /** Like `reading`, but the policy may refuse it (a reading about another account, say). */
  sendReading(eventId: string, balance: number, options: ReadingOptions = {}) {
    return this.send(this.readingInput(eventId, balance, options), options.at)
  }

  private readingInput(eventId: string, balance: number, options: ReadingOptions): ActorInput {
    const now = timeOf(options.at, this.now)
    const event: ThresholdEvent = {
      eventId,
      providerId: options.providerId ?? THRESHOLD_PAYEE.providerId,
      account: options.account ?? THRESHOLD_PAYEE.account,
      balance: { value: balance, currency: options.currency ?? "RUB" },
      at: Timestamp.format(timeOf(options.readAt, now)),
    }
    return { _tag: "ThresholdEvent", event }
  }
}

// ---- debt ---------------------------------------------------------------------

export const DEBT_PAYEE = { providerId: "vodokanal", account: "ls-0042", source: "card-tok-9" }

export interface DebtOptions extends EventHarnessOptions {
  /** Limit, in RUB minor units; default 300 000 (3 000.00 RUB). */
  readonly limit?: number
  readonly pollEvery?: string
}

export const bill = (billId: string, value: number, currency = "RUB"): Bill => ({
  billId,
  amount: { value, currency },
})

/** Which query an answer is to, when, and (for a misbehaving provider) the provider and account it names. */
export interface AnswerOptions {
  readonly queryId?: string
  readonly at?: When
  readonly providerId?: string
  readonly account?: string
}

export class DebtHarness extends EventHarness<DebtSubscription> {
  static create(options: DebtOptions = {}): DebtHarness {
    const now = timeOf(options.createdAt, at(DEFAULT_CREATED_AT))
    const created = DebtPolicy.create(
      {
        id: DEBT_ID,
        clientId: "client-7",
        templateId: "template-9",
        payee: DEBT_PAYEE,
        terms: { limit: rub(options.limit ?? 300_000), pollEvery: options.pollEvery ?? "P1D" },
        by: { channel: "internet", terminal: null, requestId: "req-create" },
        createdAt: now,
      },
      now,
    )
    return new DebtHarness(DebtPolicy.decide, created, now, options)
  }

  /** The id of the query waiting for its answer (fails loudly when none is open). */
  get openQueryId(): string {
    const query = this.state.query
    if (query === null) throw new Error("no debt query is open")
    return query.queryId
  }

  /** What the payment store says about each bill: its latest attempt, as the actor reads it. */
  billRecords(billIds: ReadonlyArray<string>): ReadonlyMap<string, BillRecord> {
    const records = new Map<string, BillRecord>()
    for (const row of this.payments.values()) {
      if (!billIds.includes(row.occurrence)) continue
      const known = records.get(row.occurrence)
      if (known !== undefined && known.attempt > row.attempt) continue
      records.set(row.occurrence, { attempt: row.attempt, status: row.status, retryable: row.retryable })
    }
    // As PaymentStore.latestAttempts: any attempt of a bill that succeeded makes it paid.
    for (const row of this.payments.values()) {
      const known = records.get(row.occurrence)
      if (known !== undefined && row.status === "succeeded")
        records.set(row.occurrence, { ...known, status: "succeeded" })
    }
    return records
  }

  /** The provider's answer listing `debts`, to the open query unless `queryId` says otherwise. */
  answer(debts: ReadonlyArray<Bill>, options: AnswerOptions = {}): Transition {
    return this.respond({ debts }, options)
  }

  /** Like `answer`, but the policy may refuse it (an answer about another account, say). */
  sendAnswer(debts: ReadonlyArray<Bill>, options: AnswerOptions = {}) {
    return this.send(this.answerInput({ debts }, options), options.at)
  }

  /** The provider's error answer. */
  answerError(code: string, message: string, options: AnswerOptions = {}): Transition {
    return this.respond({ error: { code, message } }, options)
  }

  private respond(body: Pick<DebtResponse, "debts" | "error">, options: AnswerOptions): Transition {
    return this.accept(this.answerInput(body, options), options.at)
  }

  private answerInput(body: Pick<DebtResponse, "debts" | "error">, options: AnswerOptions): ActorInput {
    const now = timeOf(options.at, this.now)
    const response: DebtResponse = {
      queryId: options.queryId ?? this.openQueryId,
      providerId: options.providerId ?? DEBT_PAYEE.providerId,
      account: options.account ?? DEBT_PAYEE.account,
      ...body,
      at: Timestamp.format(now),
    }
    const billIds = (body.debts ?? []).map((debt) => debt.billId)
    return { _tag: "DebtResponse", response, bills: this.billRecords(billIds) }
  }
}

// ---- reading transitions ------------------------------------------------------

/** The messages a transition sends to providers (watch, unwatch, debt query). */
export const providerMessages = (transition: Transition) =>
  transition.outgoing.flatMap((message) => (message._tag === "Provider" ? [message] : []))

/** The watch and unwatch requests of a transition, with their bodies typed. */
export const watchMessages = (transition: Transition) =>
  providerMessages(transition).flatMap((message) =>
    message.topic === "debt.query"
      ? []
      : [{ topic: message.topic, msgId: message.msgId, body: message.body as ThresholdWatch }],
  )

/** The refusal of a message the policy must have refused (fails loudly when it was accepted). */
export const refusal = (result: Result.Result<Transition, PolicyRefusal>): PolicyRefusal => {
  if (Result.isSuccess(result)) throw new Error("expected the message to be refused, it was accepted")
  return result.failure
}
