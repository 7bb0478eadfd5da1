/**
 * The rules of a debt autopayment ("pay my utility bills, up to my limit"),
 * as a pure function from (subscription, message, engine time) to a
 * transition. Contract section 3.6:
 * - every `pollEvery` (tick time) the provider is asked once what the account
 *   owes; a query unanswered within the query timeout is recorded as lost and
 *   the next poll asks again; there is never more than one query open;
 * - each bill in the answer is handled on its own: paid once, ever, for
 *   exactly its amount, when `amount <= limit`; above the limit it is held,
 *   the client is told (`debt.over_limit`) and `payment.confirm` pays it once;
 * - a bill already paid (or being paid) is never paid again; one whose last
 *   attempt failed as retryable is paid again when the provider still reports
 *   it at a later poll; one declined or failed for good is left to the client;
 * - an error answer is recorded and nothing is paid;
 * - an answer naming another provider or account than the query's, or a bill
 *   in another currency than the limit's, is refused whole: nothing is paid
 *   and the query stays open for the right answer.
 */
import type { Result } from "effect"
import { conflict } from "../domain/Errors.ts"
import { newId } from "../domain/Ids.ts"
import * as IsoDuration from "../domain/IsoDuration.ts"
import * as Money from "../domain/Money.ts"
import type {
  DebtState,
  DebtSubscription,
  DebtTerms,
  HeldPayment,
  OpenAttempt,
  OpenQuery,
  Status,
} from "../domain/Subscription.ts"
import * as Timestamp from "../domain/Timestamp.ts"
import type { Draft, TermChanges } from "../streams/Events.ts"
import type { Bill, DebtResponse, PaymentResult } from "../streams/Messages.ts"
import { creation, firstRow, type NewSubscription } from "./Creation.ts"
import type {
  ActorInput,
  BalanceReading,
  BillRecord,
  DebtAnswer,
  PolicySettings,
  UpdateCommand,
} from "./Inputs.ts"
import { type LimitCheck, unlimited } from "./Limits.ts"
import { type Check, compare, type Mismatch, reasonOf } from "./Matching.ts"
import { EventDrivenRun, earliest, type PolicyRefusal } from "./PaymentRun.ts"
import type { Transition } from "./Transition.ts"

/** Handles one message for a debt subscription at engine time `now`. */
export const decide = (
  subscription: DebtSubscription,
  input: ActorInput,
  now: number,
  settings: PolicySettings,
  limits: LimitCheck = unlimited(subscription),
): Result.Result<Transition, PolicyRefusal> => new DebtRun(subscription, now, settings, limits).run(input)

/** What a debt answer must agree with: the query as sent, and the currency its subscription pays in. */
export interface AnsweredQuery {
  readonly providerId: string
  readonly account: string
  /** The limit's currency: every bill must be in it. */
  readonly currency: string
}

/**
 * A debt answer against the query it answers: the same provider and account, and every bill in the
 * limit's currency (a bill in another currency would be compared with the limit, and paid, as if it
 * were in the limit's).
 */
export const answerMismatch = (query: AnsweredQuery, response: DebtResponse): Mismatch | undefined =>
  compare(`the debt query it answers (queryId ${response.queryId})`, [
    ["providerId", query.providerId, response.providerId],
    ["account", query.account, response.account],
    ...(response.debts ?? []).map(
      (bill): Check => [
        `bill ${JSON.stringify(bill.billId)} amount.currency`,
        query.currency,
        bill.amount.currency,
      ],
    ),
  ])

/** When a live debt subscription next needs its actor. */
export const nextDueAt = (status: Status, state: DebtState): number | null => {
  const polling = status === "active" && state.query === null ? state.nextPollAt : null
  const statusChecks = state.open.map((attempt) => attempt.nextQueryAt ?? attempt.timeoutAt)
  return earliest(polling, state.query?.timeoutAt ?? null, ...statusChecks)
}

class DebtRun extends EventDrivenRun<DebtSubscription> {
  terms: DebtTerms
  nextPollAt: number
  query: OpenQuery | null
  paid: number
  unansweredQueries: number

  constructor(base: DebtSubscription, now: number, settings: PolicySettings, limits: LimitCheck) {
    super(base, now, settings, limits)
    this.terms = base.terms
    const state = base.state
    this.nextPollAt = state.nextPollAt
    this.query = state.query
    this.paid = state.paid
    this.unansweredQueries = state.unansweredQueries
  }

  override wake(statusReplies: ReadonlyMap<string, unknown>): void {
    this.applyStatusReplies(statusReplies)
    if (this.query !== null && this.query.timeoutAt <= this.now) {
      this.unansweredQueries += 1
      this.builder.decide("query_unanswered", {
        reason: "no answer within the query timeout",
        details: {
          queryId: this.query.queryId,
          sentAt: Timestamp.format(this.query.sentAt),
          timeoutAt: Timestamp.format(this.query.timeoutAt),
          unansweredInARow: this.unansweredQueries,
          nextPollAt: Timestamp.format(Math.max(this.nextPollAt, this.now)),
        },
      })
      this.query = null
    }
    this.pollIfDue()
  }

  pollIfDue(): void {
    if (this.status !== "active" || this.query !== null || this.nextPollAt > this.now) return
    const queryId = newId()
    this.query = { queryId, sentAt: this.now, timeoutAt: this.now + this.settings.debtQueryTimeoutMs }
    // After downtime the missed polls are not made up: one query now, the next a period later.
    this.nextPollAt = Timestamp.after(this.now, IsoDuration.millisOf(this.terms.pollEvery))
    this.builder.queryDebts(queryId)
    this.builder.decide("queried", {
      details: {
        queryId,
        providerId: this.base.payee.providerId,
        account: this.base.payee.account,
        answerBy: Timestamp.format(this.query.timeoutAt),
      },
    })
  }

  answer(response: DebtResponse, bills: ReadonlyMap<string, BillRecord>): void {
    if (this.query === null || this.query.queryId !== response.queryId) {
      this.builder.decide("ignored", {
        reason: "answer_to_another_query",
        details: {
          queryId: response.queryId,
          openQueryId: this.query?.queryId ?? null,
          rule: "only the answer to the open query is used; a late answer's bills come again at the next poll",
        },
      })
      return
    }
    const queryId = this.query.queryId
    this.query = null
    this.unansweredQueries = 0
    if (response.error !== undefined) {
      this.builder.decide("provider_error", {
        reason: response.error.code,
        details: { queryId, error: response.error, answeredAt: response.at },
      })
      return
    }
    const debts = response.debts ?? []
    const reported = new Set(debts.map((bill) => bill.billId))
    // A held bill that the provider no longer reports was settled some other way. This holds whatever
    // held it (the debt limit or a cap): every held payment of a debt subscription is a bill, and
    // confirming one no longer owed would pay it twice.
    for (const held of [...this.held]) {
      if (reported.has(held.occurrence)) continue
      this.held = this.held.filter((candidate) => candidate !== held)
      this.builder.decide("hold_dropped", {
        reason: "bill_no_longer_reported",
        occurrence: held.occurrence,
        paymentId: held.paymentId,
        details: { queryId, amount: held.amount },
      })
    }
    this.builder.decide("answered", {
      details: { queryId, bills: debts.length, answeredAt: response.at },
    })
    const seen = new Set<string>()
    for (const bill of debts) {
      // The same bill twice in one answer is one bill.
      if (seen.has(bill.billId)) continue
      seen.add(bill.billId)
      this.handleBill(bill, bills.get(bill.billId), queryId)
    }
  }

  handleBill(bill: Bill, record: BillRecord | undefined, queryId: string): void {
    const found = { billId: bill.billId, amount: bill.amount, dueDate: bill.dueDate ?? null, queryId }
    const skip = (reason: string, details: Readonly<Record<string, unknown>> = {}) => {
      this.builder.decide("skipped", {
        reason,
        occurrence: bill.billId,
        details: { bill: found, ...details },
      })
      // A bill paid or being paid is not an occurrence left unpaid: history says so, the hub is not told again.
      if (reason !== "already_paid" && reason !== "payment_in_flight") {
        this.builder.event("payment.skipped", this.base, {
          occurrence: bill.billId,
          reason,
          bill: found,
          ...details,
        })
      }
    }
    // What was done about this bill before, by this subscription or another on the same account.
    const earlier =
      record === undefined
        ? undefined
        : record.status === "failed" && record.retryable === true
          ? ({ payAgain: record.attempt + 1 } as const)
          : ({
              reason:
                record.status === "succeeded"
                  ? "already_paid"
                  : record.status === "pending" || record.status === "unknown"
                    ? "payment_in_flight"
                    : "failed_before",
              details: { lastAttempt: record.attempt, lastStatus: record.status },
            } as const)
    if (earlier !== undefined && "reason" in earlier && earlier.reason !== "failed_before") {
      // Paid (or being paid) by another payment: a hold for it would pay it twice once confirmed.
      this.dropHold(bill.billId, "bill_paid_elsewhere", { queryId, ...earlier.details })
      skip(earlier.reason, earlier.details)
      return
    }
    const held = this.held.find((candidate) => candidate.occurrence === bill.billId)
    if (held !== undefined) {
      // Already waiting for the client; they were told once.
      if (Money.equals(held.amount, bill.amount)) return
      // The provider now asks another amount (paid in part elsewhere, re-billed, or nothing): confirming
      // the hold would pay the old one, so it is dropped first and the bill judged afresh as reported.
      this.dropHold(bill.billId, "bill_amount_changed", {
        queryId,
        heldAmount: held.amount,
        reportedAmount: bill.amount,
      })
    }
    if (bill.amount.value <= 0) {
      skip("nothing_to_pay")
      return
    }
    const inFlight = this.open.find((attempt) => attempt.occurrence === bill.billId)
    if (inFlight !== undefined) {
      skip("payment_in_flight", { paymentId: inFlight.paymentId })
      return
    }
    if (earlier !== undefined && "reason" in earlier) {
      skip(earlier.reason, earlier.details)
      return
    }
    // Paused after the query went out: the answer is recorded but pays nothing and holds nothing
    // (contract 4); the next poll after resume finds the bill again.
    if (this.status !== "active") {
      skip(this.status, { statusReason: this.statusReason })
      return
    }
    const attempt = earlier?.payAgain ?? 1
    const rule = {
      rule: "debt",
      rulesText: "a bill up to the limit is paid once, for exactly its amount",
      bill: found,
      limit: this.terms.limit,
    }
    if (Money.compare(bill.amount, this.terms.limit) > 0) {
      this.hold(bill.billId, attempt, bill.amount, rule, {
        reason: "over_debt_limit",
        limit: {
          rule: "a bill above the subscription's limit waits for the client",
          limit: this.terms.limit,
          amount: bill.amount,
        },
      })
      return
    }
    this.pay(bill.billId, attempt, bill.amount, rule)
  }

  /** Drops the hold on `billId`, if there is one, saying why. */
  dropHold(billId: string, reason: string, details: Readonly<Record<string, unknown>>): void {
    const held = this.held.find((candidate) => candidate.occurrence === billId)
    if (held === undefined) return
    this.held = this.held.filter((candidate) => candidate !== held)
    this.builder.decide("hold_dropped", { reason, occurrence: billId, paymentId: held.paymentId, details })
  }

  /**
   * Before a confirmation, a raised limit or a resume may pay a held bill, holds on bills another
   * payment has paid (or is paying) since are dropped: confirming one would pay the bill twice.
   */
  override run(input: ActorInput) {
    const bills = "bills" in input && input._tag !== "DebtResponse" ? input.bills : undefined
    for (const [billId, record] of bills ?? []) {
      if (record.status === "succeeded" || record.status === "pending" || record.status === "unknown") {
        this.dropHold(billId, "bill_paid_elsewhere", {
          lastAttempt: record.attempt,
          lastStatus: record.status,
        })
      }
    }
    return super.run(input)
  }

  /** After the limit was raised, bills held over the old one that fit the new one are paid (through the caps). */
  releaseBillsWithinLimit(): void {
    for (const held of [...this.held]) {
      if (held.reason !== "over_debt_limit" || Money.compare(held.amount, this.terms.limit) > 0) continue
      this.held = this.held.filter((candidate) => candidate !== held)
      this.builder.decide("hold_dropped", {
        reason: "limit_raised",
        occurrence: held.occurrence,
        paymentId: held.paymentId,
        details: { amount: held.amount, limit: this.terms.limit },
      })
      this.pay(held.occurrence, held.attempt, held.amount, { ...held.rule, limit: this.terms.limit })
    }
  }

  protected override announceHold(held: HeldPayment): void {
    if (held.reason !== "over_debt_limit") {
      super.announceHold(held)
      return
    }
    const data = this.heldData(held)
    this.builder.notify("debt.over_limit", data, held.paymentId)
    this.builder.event("debt.over_limit", this.base, data)
  }

  applyResult(attempt: OpenAttempt, result: PaymentResult): void {
    if (result.status === "succeeded") {
      this.recordSuccess(attempt, result)
      this.paid += 1
      return
    }
    const payableAgain = result.status === "failed" && result.retryable
    this.recordFinalFailure(
      attempt,
      result,
      payableAgain
        ? "paid again if the provider still reports the bill at the next poll"
        : "the bill is left to the client",
      !payableAgain,
    )
  }

  /**
   * A bill payment reported failed was paid: counted. Its bill's record now reads paid, so a
   * later poll finds it `already_paid` and never pays it again.
   */
  protected occurrencePaidLate(): void {
    this.paid += 1
  }

  update(command: UpdateCommand): PolicyRefusal | undefined {
    const refusal = this.checkUpdate(command, [
      ["limit", command.limit],
      ["amount", command.amount],
    ])
    if (refusal !== undefined) return refusal
    const changes: Draft<TermChanges> = {}
    if (command.limit !== undefined && !Money.equals(command.limit, this.terms.limit)) {
      changes.limit = { from: this.terms.limit, to: command.limit }
      this.terms = { ...this.terms, limit: command.limit }
    }
    if (command.pollEvery !== undefined && command.pollEvery !== this.terms.pollEvery) {
      changes.pollEvery = { from: this.terms.pollEvery, to: command.pollEvery }
      this.terms = { ...this.terms, pollEvery: command.pollEvery }
      // A shorter period takes effect now, not after the poll planned under the old one.
      const soonest = Timestamp.after(this.now, IsoDuration.millisOf(command.pollEvery))
      if (this.query === null && soonest < this.nextPollAt) this.nextPollAt = soonest
    }
    if (changes.limit !== undefined && this.status === "active") this.releaseBillsWithinLimit()
    this.version += 1
    this.builder.decide("updated", { by: command.by, details: changes })
    this.lifecycleEvents.push({
      type: "subscription.updated",
      data: { change: "terms", changes, by: command.by },
    })
    return undefined
  }

  protected statusChanged(): void {
    // Resumed: polls continue from now, the ones missed while paused are not made up; a limit
    // raised while paused releases what it now covers.
    if (this.status === "active" && this.nextPollAt < this.now) this.nextPollAt = this.now
    if (this.status === "active") this.releaseBillsWithinLimit()
    if (this.status === "cancelled") this.query = null
  }

  protected own(input: BalanceReading | DebtAnswer): PolicyRefusal | undefined {
    if (input._tag !== "DebtResponse") return conflict("a debt subscription does not take balance events")
    // The router checked the answer against its query; this is the second line, against the terms.
    const { payee } = this.base
    const query = {
      providerId: payee.providerId,
      account: payee.account,
      currency: this.terms.limit.currency,
    }
    const mismatch = answerMismatch(query, input.response)
    if (mismatch !== undefined) return conflict(reasonOf("debt answer", mismatch))
    this.answer(input.response, input.bills)
    return undefined
  }

  protected outcome() {
    const state: DebtState = {
      nextPollAt: this.nextPollAt,
      query: this.query,
      open: this.open,
      held: this.held,
      paid: this.paid,
      unansweredQueries: this.unansweredQueries,
    }
    const due = this.status === "cancelled" ? earliest(this.nextStatusCheck()) : nextDueAt(this.status, state)
    return { state, nextDueAt: due }
  }
}

/** What a new debt subscription is made of. */
export type NewDebt = NewSubscription<DebtTerms>

/** The first row of a debt subscription: the first poll is due at once. */
export const create = (input: NewDebt, now: number): Transition<DebtSubscription> => {
  const state: DebtState = { nextPollAt: now, query: null, open: [], held: [], paid: 0, unansweredQueries: 0 }
  const subscription: DebtSubscription = {
    ...firstRow(input, input.terms.limit.currency, nextDueAt("active", state)),
    kind: "debt",
    terms: input.terms,
    state,
  }
  return creation(subscription, input.by, now, { terms: input.terms })
}
