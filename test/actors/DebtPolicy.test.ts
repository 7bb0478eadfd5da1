import { Result } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { answerMismatch, nextDueAt } from "../../src/actors/DebtPolicy.ts"
import type { ActorInput, BillRecord } from "../../src/actors/Inputs.ts"
import { type LimitSettings, noLimitSettings } from "../../src/actors/Limits.ts"
import { attemptsAwaitingStatus } from "../../src/actors/Policy.ts"
import { paymentIdFor } from "../../src/domain/Ids.ts"
import type { DebtSubscription } from "../../src/domain/Subscription.ts"
import * as Timestamp from "../../src/domain/Timestamp.ts"
import type {
  Bill,
  DebtQuery,
  DebtResponse,
  PaymentStatus,
  PaymentStatusReply,
} from "../../src/streams/Messages.ts"
import {
  bill,
  DEBT_ID,
  DEBT_PAYEE,
  DebtHarness,
  type DebtHarness as Harness,
  providerMessages,
  refusal,
} from "./eventHarness.ts"
import {
  at,
  client,
  commands,
  DAY,
  decisions,
  events,
  eventTypes,
  HOUR,
  hubResult,
  MINUTE,
  notifications,
  notificationTypes,
  onlyCommand,
  policySettings,
  rub,
} from "./policyHarness.ts"

const pid = (billId: string, attempt = 1) => paymentIdFor(DEBT_ID, billId, attempt)

const T0 = at("2027-01-10T00:00:00Z")

/** A harness that has asked its first question at T0 and waits for the answer. */
const polled = (options: Parameters<typeof DebtHarness.create>[0] = {}): Harness => {
  const harness = DebtHarness.create(options)
  harness.wake(T0)
  return harness
}

/** Polls again when the next poll is due (the open query was answered) and answers with `debts`. */
const pollAndAnswer = (harness: Harness, debts: ReadonlyArray<Bill>) => {
  const asked = harness.wake(Math.max(harness.state.nextPollAt, harness.now))
  expect(asked.queries).toHaveLength(1)
  return harness.answer(debts)
}

const decisionsOf = (transition: Parameters<typeof decisions>[0]) =>
  transition.decisions.map((d) => [d.outcome, d.reason, d.occurrence])

describe("create", () => {
  it("starts active at version 1 with the first poll due at once", () => {
    const harness = DebtHarness.create()
    const { created, subscription } = harness
    expect(subscription).toMatchObject({
      id: DEBT_ID,
      kind: "debt",
      status: "active",
      version: 1,
      currency: "RUB",
      terms: { limit: rub(300_000), pollEvery: "P1D" },
      nextDueAt: T0,
    })
    expect(subscription.state).toEqual({
      nextPollAt: T0,
      query: null,
      open: [],
      held: [],
      paid: 0,
      unansweredQueries: 0,
    })
    expect(decisions(created).map((d) => [d.outcome, d.channel])).toEqual([["created", "internet"]])
    expect(eventTypes(created)).toEqual(["subscription.created"])
    expect(providerMessages(created)).toEqual([])
    expect(created.queries).toEqual([])
  })
})

describe("polling", () => {
  it("the first wake sends one query and records it", () => {
    const harness = DebtHarness.create()
    const asked = harness.wake(T0)
    const [query] = asked.queries
    expect(asked.queries).toEqual([
      {
        queryId: expect.any(String),
        subscriptionId: DEBT_ID,
        providerId: "vodokanal",
        account: "ls-0042",
        sentAt: T0,
      },
    ])
    const queryId = query?.queryId ?? ""
    expect(providerMessages(asked)).toEqual([
      {
        _tag: "Provider",
        providerId: "vodokanal",
        topic: "debt.query",
        msgId: `debt.query:${queryId}`,
        body: {
          queryId,
          providerId: "vodokanal",
          account: "ls-0042",
          subscriptionId: DEBT_ID,
          at: Timestamp.format(T0),
        } satisfies DebtQuery,
      },
    ])
    expect(decisions(asked).map((d) => [d.outcome, d.details])).toEqual([
      [
        "queried",
        { queryId, providerId: "vodokanal", account: "ls-0042", answerBy: Timestamp.format(T0 + HOUR) },
      ],
    ])
    expect(harness.state).toMatchObject({
      query: { queryId, sentAt: T0, timeoutAt: T0 + HOUR },
      nextPollAt: T0 + DAY,
    })
    // While the query is open the actor next looks at its timeout.
    expect(harness.subscription.nextDueAt).toBe(T0 + HOUR)
    expect(commands(asked)).toEqual([])
  })

  it("never sends a second query while one is open, even when the next poll is due", () => {
    const harness = polled({
      pollEvery: "PT1H",
      settings: { ...policySettings, debtQueryTimeoutMs: 2 * DAY },
    })
    const first = harness.openQueryId
    for (const when of [T0, T0 + 30 * MINUTE, T0 + 3 * HOUR, T0 + DAY]) {
      const again = harness.wake(when)
      expect(again.queries).toEqual([])
      expect(again.changed).toBe(false)
    }
    expect(harness.openQueryId).toBe(first)
  })

  it("a query unanswered in time is recorded; the next poll asks again", () => {
    const harness = polled()
    const first = harness.openQueryId
    const lost = harness.wake(T0 + HOUR)
    expect(lost.queries).toEqual([])
    expect(decisions(lost).map((d) => [d.outcome, d.details])).toEqual([
      [
        "query_unanswered",
        {
          queryId: first,
          sentAt: Timestamp.format(T0),
          timeoutAt: Timestamp.format(T0 + HOUR),
          unansweredInARow: 1,
          nextPollAt: Timestamp.format(T0 + DAY),
        },
      ],
    ])
    expect(harness.state).toMatchObject({ query: null, unansweredQueries: 1 })
    expect(harness.subscription.nextDueAt).toBe(T0 + DAY)
    expect(harness.wake(T0 + 2 * HOUR).changed).toBe(false)

    const second = harness.wake(T0 + DAY)
    expect(second.queries).toHaveLength(1)
    expect(harness.openQueryId).not.toBe(first)
    harness.wake(T0 + DAY + HOUR)
    expect(harness.state.unansweredQueries).toBe(2)
    // An answer in time starts the count again.
    harness.wake(T0 + 2 * DAY)
    harness.answer([])
    expect(harness.state.unansweredQueries).toBe(0)
  })

  it("with a poll period shorter than the timeout, the lost query is replaced at its timeout, never piled up", () => {
    const harness = polled({ pollEvery: "PT30M" })
    expect(harness.wake(T0 + 30 * MINUTE).queries).toEqual([])
    const replaced = harness.wake(T0 + HOUR)
    expect(decisions(replaced).map((d) => d.outcome)).toEqual(["query_unanswered", "queried"])
    expect(replaced.queries).toHaveLength(1)
    expect(harness.state.query?.sentAt).toBe(T0 + HOUR)
  })

  it("after downtime the missed polls are not made up: one query, the next a period later", () => {
    const harness = DebtHarness.create()
    const late = harness.wake(T0 + 5 * DAY + 7 * HOUR)
    expect(late.queries).toHaveLength(1)
    expect(harness.state.nextPollAt).toBe(T0 + 6 * DAY + 7 * HOUR)
  })

  it("the answer to the open query schedules the next poll; a wake before it does nothing", () => {
    const harness = polled()
    harness.answer([], { at: T0 + 10 * MINUTE })
    expect(harness.state.query).toBeNull()
    expect(harness.subscription.nextDueAt).toBe(T0 + DAY)
    expect(harness.wake(T0 + DAY - 1).changed).toBe(false)
    expect(harness.wake(T0 + DAY).queries).toHaveLength(1)
  })

  it("pausing stops the polls; resume polls at once without making up the missed ones", () => {
    const harness = polled()
    harness.answer([])
    Result.getOrThrow(harness.pause(T0 + HOUR))
    expect(harness.subscription.nextDueAt).toBeNull()
    expect(harness.wake(T0 + 3 * DAY).queries).toEqual([])
    Result.getOrThrow(harness.resume(T0 + 3 * DAY + HOUR))
    expect(harness.subscription.nextDueAt).toBe(T0 + 3 * DAY + HOUR)
    const asked = harness.wakeWhenDue()
    expect(asked.queries).toHaveLength(1)
    expect(harness.state.nextPollAt).toBe(T0 + 4 * DAY + HOUR)
  })

  it("a query open when paused still times out", () => {
    const harness = polled()
    harness.pause(T0 + MINUTE)
    expect(harness.subscription.nextDueAt).toBe(T0 + HOUR)
    const lost = harness.wakeWhenDue()
    expect(decisions(lost).map((d) => d.outcome)).toEqual(["query_unanswered"])
    expect(lost.queries).toEqual([])
    expect(harness.subscription.nextDueAt).toBeNull()
  })

  it("the stored next due time always follows the state", () => {
    const harness = polled()
    harness.answer([bill("b-1", 1_000)])
    expect(harness.subscription.nextDueAt).toBe(nextDueAt("active", harness.state))
    expect(harness.subscription.nextDueAt).toBe(T0 + 15 * MINUTE)
  })
})

describe("answers that do not match their query", () => {
  it("an answer naming another provider and account is refused whole; the right answer is then paid once", () => {
    const harness = polled()
    const open = harness.openQueryId
    const before = harness.subscription
    const refused = refusal(
      harness.sendAnswer([bill("b-1", 1_000)], { providerId: "util-1", account: "acct-other" }),
    )
    expect(refused.message).toBe(
      `debt answer does not match the debt query it answers (queryId ${open}): ` +
        `providerId is "util-1", expected "${DEBT_PAYEE.providerId}"; ` +
        `account is "acct-other", expected "${DEBT_PAYEE.account}"`,
    )
    // Nothing moved: the row is the one before, and the query is still open for the right answer.
    expect(harness.subscription).toBe(before)
    expect(harness.openQueryId).toBe(open)
    expect(onlyCommand(harness.answer([bill("b-1", 1_000)]))).toMatchObject({
      occurrence: "b-1",
      amount: rub(1_000),
    })
  })

  it("an answer with a bill in another currency than the limit's is refused whole, the other bills too", () => {
    const harness = polled()
    const before = harness.subscription
    const refused = refusal(harness.sendAnswer([bill("b-rub", 1_000), bill("b-usd", 1_000, "USD")]))
    expect(refused.message).toContain(`bill "b-usd" amount.currency is "USD", expected "RUB"`)
    expect(refused.message).not.toContain("b-rub")
    expect(harness.subscription).toBe(before)
    expect(commands(harness.answer([bill("b-rub", 1_000)])).map((c) => c.occurrence)).toEqual(["b-rub"])
  })

  it("a mismatched answer to a query no longer open is refused too, not recorded as ignored", () => {
    const harness = polled()
    const lost = harness.openQueryId
    harness.wake(T0 + HOUR)
    const before = harness.subscription
    refusal(harness.sendAnswer([], { queryId: lost, account: "acct-other" }))
    expect(harness.subscription).toBe(before)
  })
})

describe("answerMismatch", () => {
  const query = { providerId: "isp-1", account: "acct-fast", currency: "RUB" }
  const response = (overrides: Partial<DebtResponse> = {}): DebtResponse => ({
    queryId: "q-1",
    providerId: "isp-1",
    account: "acct-fast",
    debts: [bill("b-1", 1_000)],
    at: "2027-01-10T00:00:00Z",
    ...overrides,
  })

  it("finds nothing in an answer about the query's provider and account, in the limit's currency", () => {
    expect(answerMismatch(query, response())).toBeUndefined()
    expect(answerMismatch(query, response({ debts: [] }))).toBeUndefined()
    const { debts: _, ...bare } = response()
    expect(answerMismatch(query, { ...bare, error: { code: "DOWN", message: "" } })).toBeUndefined()
  })

  it("names each field that disagrees, each bill by its id", () => {
    expect(
      answerMismatch(
        query,
        response({ providerId: "util-1", debts: [bill("b-1", 1_000), bill("b-2", 5, "EUR")] }),
      ),
    ).toEqual({
      _tag: "Mismatch",
      against: "the debt query it answers (queryId q-1)",
      disagreements: [
        { field: "providerId", expected: "isp-1", received: "util-1" },
        { field: 'bill "b-2" amount.currency', expected: "RUB", received: "EUR" },
      ],
    })
  })

  it("agrees exactly when provider, account and every bill's currency are the query's", () => {
    const value = fc.constantFrom("isp-1", "util-1", "acct-fast", "acct-other")
    const currency = fc.constantFrom("RUB", "USD")
    fc.assert(
      fc.property(value, value, fc.array(currency, { maxLength: 4 }), (providerId, account, currencies) => {
        const debts = currencies.map((c, index) => bill(`b-${index}`, 100, c))
        const agrees =
          providerId === "isp-1" && account === "acct-fast" && currencies.every((c) => c === "RUB")
        expect(answerMismatch(query, response({ providerId, account, debts })) === undefined).toBe(agrees)
      }),
    )
  })
})

describe("answers", () => {
  it("an answer to another query is recorded as ignored and pays nothing", () => {
    const harness = polled()
    const open = harness.openQueryId
    const stray = harness.answer([bill("b-1", 1_000)], { queryId: "someone-else" })
    expect(commands(stray)).toEqual([])
    expect(decisionsOf(stray)).toEqual([["ignored", "answer_to_another_query", null]])
    expect(decisions(stray)[0]?.details).toMatchObject({ queryId: "someone-else", openQueryId: open })
    expect(harness.openQueryId).toBe(open)
  })

  it("a late answer to a query that timed out is ignored; its bills come again at the next poll", () => {
    const harness = polled()
    const lost = harness.openQueryId
    harness.wake(T0 + HOUR)
    const late = harness.answer([bill("b-1", 1_000)], { queryId: lost, at: T0 + 2 * HOUR })
    expect(commands(late)).toEqual([])
    expect(decisionsOf(late)).toEqual([["ignored", "answer_to_another_query", null]])
    expect(decisions(late)[0]?.details).toMatchObject({ openQueryId: null })
    expect(onlyCommand(pollAndAnswer(harness, [bill("b-1", 1_000)])).occurrence).toBe("b-1")
  })

  it("a second copy of an answer already used is ignored", () => {
    const harness = polled()
    const queryId = harness.openQueryId
    harness.answer([bill("b-1", 1_000)])
    const copy = harness.answer([bill("b-1", 1_000)], { queryId })
    expect(commands(copy)).toEqual([])
    expect(decisionsOf(copy)).toEqual([["ignored", "answer_to_another_query", null]])
  })

  it("an error answer is recorded and nothing is paid", () => {
    const harness = polled()
    const queryId = harness.openQueryId
    const failed = harness.answerError("ACCOUNT_LOCKED", "the account is locked", { at: T0 + MINUTE })
    expect(commands(failed)).toEqual([])
    expect(failed.payments).toEqual([])
    expect(decisionsOf(failed)).toEqual([["provider_error", "ACCOUNT_LOCKED", null]])
    expect(decisions(failed)[0]?.details).toEqual({
      queryId,
      error: { code: "ACCOUNT_LOCKED", message: "the account is locked" },
      answeredAt: Timestamp.format(T0 + MINUTE),
    })
    expect(harness.state).toMatchObject({ query: null, unansweredQueries: 0, nextPollAt: T0 + DAY })
    expect(harness.subscription.nextDueAt).toBe(T0 + DAY)
  })

  it("an empty answer is recorded and pays nothing", () => {
    const harness = polled()
    const empty = harness.answer([])
    expect(commands(empty)).toEqual([])
    expect(decisions(empty).map((d) => [d.outcome, d.details.bills])).toEqual([["answered", 0]])
  })

  it("pays each bill up to the limit once, for exactly its amount; holds the one above it", () => {
    const harness = polled()
    const answered = harness.answer([
      bill("b-low", 12_345),
      bill("b-equal", 300_000),
      bill("b-over", 300_001),
    ])
    expect(commands(answered).map((c) => [c.occurrence, c.attempt, c.paymentId, c.amount])).toEqual([
      ["b-low", 1, pid("b-low"), rub(12_345)],
      ["b-equal", 1, pid("b-equal"), rub(300_000)],
    ])
    expect(commands(answered)[0]).toMatchObject({
      kind: "debt",
      subscriptionId: DEBT_ID,
      clientId: "client-7",
      providerId: "vodokanal",
      account: "ls-0042",
      source: DEBT_PAYEE.source,
    })
    expect(answered.payments[0]?.rule).toMatchObject({
      rule: "debt",
      bill: { billId: "b-low", amount: rub(12_345), queryId: expect.any(String) },
      limit: rub(300_000),
    })
    expect(decisionsOf(answered)).toEqual([
      ["answered", null, null],
      ["held", "over_debt_limit", "b-over"],
    ])
    // Above the limit: the client is told with debt.over_limit (notification and event), nothing is paid.
    const over = notifications(answered, "debt.over_limit")
    expect(over).toEqual([
      expect.objectContaining({
        paymentId: pid("b-over"),
        data: expect.objectContaining({
          paymentId: pid("b-over"),
          occurrence: "b-over",
          amount: rub(300_001),
          reason: "over_debt_limit",
          limit: expect.objectContaining({ limit: rub(300_000), amount: rub(300_001) }),
        }),
      }),
    ])
    expect(events(answered, "debt.over_limit").map((e) => e.data.occurrence)).toEqual(["b-over"])
    expect(notifications(answered, "limit.exceeded")).toEqual([])
    expect(harness.state.held.map((h) => [h.paymentId, h.occurrence, h.attempt, h.amount])).toEqual([
      [pid("b-over"), "b-over", 1, rub(300_001)],
    ])
    expect(harness.state.open.map((a) => a.occurrence)).toEqual(["b-low", "b-equal"])
  })

  it("the same bill twice in one answer is paid once", () => {
    const harness = polled()
    const answered = harness.answer([
      bill("b-1", 1_000),
      bill("b-1", 1_000),
      bill("b-2", 2_000),
      bill("b-1", 1_000),
    ])
    expect(commands(answered).map((c) => c.occurrence)).toEqual(["b-1", "b-2"])
  })

  it("a bill for nothing is recorded as skipped", () => {
    const harness = polled()
    const answered = harness.answer([bill("b-zero", 0), bill("b-credit", -500)])
    expect(commands(answered)).toEqual([])
    expect(decisionsOf(answered)).toEqual([
      ["answered", null, null],
      ["skipped", "nothing_to_pay", "b-zero"],
      ["skipped", "nothing_to_pay", "b-credit"],
    ])
  })

  it("a bill already paid is never paid again", () => {
    const harness = polled()
    harness.answer([bill("b-1", 1_000)])
    harness.result(pid("b-1"), "succeeded")
    expect(harness.state.paid).toBe(1)
    const again = pollAndAnswer(harness, [bill("b-1", 1_000)])
    expect(commands(again)).toEqual([])
    expect(decisionsOf(again)).toContainEqual(["skipped", "already_paid", "b-1"])
    expect(decisions(again, "skipped")[0]?.details).toMatchObject({ lastAttempt: 1, lastStatus: "succeeded" })
  })

  it("a bill whose payment is in flight is not paid again, whether the actor or the store knows it", () => {
    const harness = polled({ pollEvery: "PT10M" })
    harness.answer([bill("b-1", 1_000)], { at: T0 + MINUTE })
    const inFlight = pollAndAnswer(harness, [bill("b-1", 1_000)])
    expect(commands(inFlight)).toEqual([])
    expect(decisionsOf(inFlight)).toContainEqual(["skipped", "payment_in_flight", "b-1"])

    // The store says pending or unknown (an attempt no longer open here): still not paid again.
    for (const status of ["pending", "unknown"]) {
      const fresh = polled()
      const input: ActorInput = {
        _tag: "DebtResponse",
        response: {
          queryId: fresh.openQueryId,
          providerId: DEBT_PAYEE.providerId,
          account: DEBT_PAYEE.account,
          debts: [bill("b-1", 1_000)],
          at: Timestamp.format(T0),
        },
        bills: new Map<string, BillRecord>([["b-1", { attempt: 1, status, retryable: null }]]),
      }
      const transition = fresh.accept(input)
      expect(commands(transition)).toEqual([])
      expect(decisionsOf(transition)).toContainEqual(["skipped", "payment_in_flight", "b-1"])
    }
  })

  it("a retryable failure is paid again as the next attempt when a later answer still lists the bill", () => {
    const harness = polled()
    harness.answer([bill("b-1", 1_000)])
    const failed = harness.result(pid("b-1"), "failed", { retryable: true, reason: "hub busy" })
    expect(commands(failed)).toEqual([])
    expect(failed.outcomes.map((o) => [o.status, o.retryable, o.outcome])).toEqual([
      ["failed", true, "failed"],
    ])
    expect(events(failed, "payment.failed")[0]?.data).toMatchObject({
      whyNoRetry: "paid again if the provider still reports the bill at the next poll",
    })
    // Nothing is retried on its own before the next poll.
    expect(harness.subscription.nextDueAt).toBe(T0 + DAY)

    const second = onlyCommand(pollAndAnswer(harness, [bill("b-1", 1_000)]))
    expect(second).toMatchObject({
      occurrence: "b-1",
      attempt: 2,
      paymentId: pid("b-1", 2),
      amount: rub(1_000),
    })
    harness.result(pid("b-1", 2), "failed", { retryable: true })
    expect(onlyCommand(pollAndAnswer(harness, [bill("b-1", 1_000)])).attempt).toBe(3)
    harness.result(pid("b-1", 3), "succeeded")
    expect(commands(pollAndAnswer(harness, [bill("b-1", 1_000)]))).toEqual([])
  })

  it("a success reported after a retryable failure pays the bill: no further attempt at the next poll", () => {
    const harness = polled()
    harness.answer([bill("b-1", 1_000)])
    harness.result(pid("b-1"), "failed", { retryable: true })
    const late = harness.result(pid("b-1"), "succeeded", { at: T0 + HOUR })
    expect(late.outcomes.map((o) => [o.paymentId, o.status, o.outcome])).toEqual([
      [pid("b-1"), "succeeded", "paid"],
    ])
    expect(decisionsOf(late)).toEqual([["late_success", null, "b-1"]])
    expect(eventTypes(late)).toEqual(["payment.succeeded"])
    expect(harness.state.paid).toBe(1)
    // The provider has not caught up yet and still lists the bill.
    const again = pollAndAnswer(harness, [bill("b-1", 1_000)])
    expect(commands(again)).toEqual([])
    expect(decisionsOf(again)).toContainEqual(["skipped", "already_paid", "b-1"])
  })

  it("a late success while the bill's next attempt is in flight flags that attempt; its failure clears it", () => {
    const harness = polled()
    harness.answer([bill("b-1", 1_000)])
    harness.result(pid("b-1"), "failed", { retryable: true })
    expect(onlyCommand(pollAndAnswer(harness, [bill("b-1", 1_000)])).attempt).toBe(2)
    const late = harness.result(pid("b-1"), "succeeded")
    expect(events(late, "payment.duplicate_suspected").map((e) => e.data)).toEqual([
      expect.objectContaining({ paymentId: pid("b-1", 2), paidBy: pid("b-1"), secondStatus: "in_flight" }),
    ])
    expect(late.duplicates.map((d) => [d.paymentId, d.duplicateOf, d.state])).toEqual([
      [pid("b-1", 2), pid("b-1"), "suspected"],
    ])
    const second = harness.result(pid("b-1", 2), "failed", { retryable: true })
    expect(second.duplicates.map((d) => d.state)).toEqual(["cleared"])
    expect(eventTypes(second)).toEqual([])
    expect(harness.state.paid).toBe(1)
    expect(commands(pollAndAnswer(harness, [bill("b-1", 1_000)]))).toEqual([])
  })

  it.each([
    ["declined", "declined" as const, false],
    ["failed for good", "failed" as const, false],
  ])("a bill %s is left to the client", (_, status, retryable) => {
    const harness = polled()
    harness.answer([bill("b-1", 1_000)])
    const failed = harness.result(pid("b-1"), status, { retryable })
    expect(events(failed, "payment.failed")[0]?.data).toMatchObject({
      whyNoRetry: "the bill is left to the client",
    })
    const again = pollAndAnswer(harness, [bill("b-1", 1_000)])
    expect(commands(again)).toEqual([])
    expect(decisionsOf(again)).toContainEqual(["skipped", "failed_before", "b-1"])
    expect(decisions(again, "skipped")[0]?.details).toMatchObject({ lastAttempt: 1, lastStatus: status })
  })

  it("several bills in one answer are each handled on their own", () => {
    const harness = polled()
    harness.answer([bill("b-paid", 1_000), bill("b-declined", 2_000), bill("b-retry", 3_000)])
    harness.result(pid("b-paid"), "succeeded")
    harness.result(pid("b-declined"), "declined")
    harness.result(pid("b-retry"), "failed", { retryable: true })
    const mixed = pollAndAnswer(harness, [
      bill("b-paid", 1_000),
      bill("b-declined", 2_000),
      bill("b-retry", 3_000),
      bill("b-new", 4_000),
      bill("b-big", 400_000),
    ])
    expect(commands(mixed).map((c) => [c.occurrence, c.attempt])).toEqual([
      ["b-retry", 2],
      ["b-new", 1],
    ])
    expect(decisionsOf(mixed)).toEqual([
      ["answered", null, null],
      ["skipped", "already_paid", "b-paid"],
      ["skipped", "failed_before", "b-declined"],
      ["held", "over_debt_limit", "b-big"],
    ])
  })

  it("a later limit applies to the next answer", () => {
    const harness = polled()
    Result.getOrThrow(harness.update({ limit: rub(500) }))
    const answered = harness.answer([bill("b-1", 1_000)])
    expect(decisionsOf(answered)).toContainEqual(["held", "over_debt_limit", "b-1"])
  })

  it("an answer that arrives while paused pays nothing", () => {
    const harness = polled()
    harness.pause(T0 + MINUTE)
    const answered = harness.answer([bill("b-1", 1_000), bill("b-over", 900_000)], { at: T0 + 2 * MINUTE })
    expect(commands(answered)).toEqual([])
    expect(harness.state.held).toEqual([])
    expect(decisionsOf(answered)).toEqual([
      ["answered", null, null],
      ["skipped", "paused", "b-1"],
      ["skipped", "paused", "b-over"],
    ])
    // After resume the next poll finds them again and pays.
    harness.resume(T0 + HOUR)
    expect(commands(pollAndAnswer(harness, [bill("b-1", 1_000)]))).toHaveLength(1)
  })
})

describe("held bills", () => {
  const heldOver = () => {
    const harness = polled()
    harness.answer([bill("b-big", 450_000)])
    return harness
  }

  it("confirm pays a bill above the limit exactly once", () => {
    const harness = heldOver()
    const confirmed = Result.getOrThrow(harness.confirm(pid("b-big"), T0 + HOUR))
    expect(commands(confirmed)).toEqual([
      expect.objectContaining({
        paymentId: pid("b-big"),
        occurrence: "b-big",
        attempt: 1,
        amount: rub(450_000),
      }),
    ])
    expect(confirmed.payments[0]?.rule).toMatchObject({ rule: "debt", confirmedBy: client })
    expect(decisions(confirmed).map((d) => [d.outcome, d.details.heldFor])).toEqual([
      ["confirmed", "over_debt_limit"],
    ])
    expect(harness.subscription.version).toBe(2)
    expect(harness.state.held).toEqual([])
    expect(refusal(harness.confirm(pid("b-big")))).toMatchObject({ _tag: "Conflict" })

    // Listed again while it is being paid, and after: never a second payment.
    expect(commands(pollAndAnswer(harness, [bill("b-big", 450_000)]))).toEqual([])
    harness.result(pid("b-big"), "succeeded")
    expect(commands(pollAndAnswer(harness, [bill("b-big", 450_000)]))).toEqual([])
    expect(harness.transitions.flatMap(commands).map((c) => c.paymentId)).toEqual([pid("b-big")])
  })

  it("a held bill still listed waits quietly: the client was told once", () => {
    const harness = heldOver()
    const again = pollAndAnswer(harness, [bill("b-big", 450_000)])
    expect(commands(again)).toEqual([])
    expect(notificationTypes(again)).toEqual([])
    expect(decisionsOf(again)).toEqual([["answered", null, null]])
    expect(harness.state.held).toHaveLength(1)
  })

  it("a held bill listed at a lower amount is no longer held at the old one: it is paid as now owed", () => {
    const harness = heldOver()
    const lower = pollAndAnswer(harness, [bill("b-big", 200_000)])
    expect(decisionsOf(lower)).toEqual([
      ["answered", null, null],
      ["hold_dropped", "bill_amount_changed", "b-big"],
    ])
    expect(decisions(lower, "hold_dropped")[0]?.details).toMatchObject({
      heldAmount: rub(450_000),
      reportedAmount: rub(200_000),
    })
    expect(commands(lower).map((c) => [c.paymentId, c.amount])).toEqual([[pid("b-big"), rub(200_000)]])
    expect(harness.state.held).toEqual([])
    expect(refusal(harness.confirm(pid("b-big")))._tag).toBe("Conflict")
  })

  it("a held bill listed at another amount above the limit is held again at that amount, and told again", () => {
    const harness = heldOver()
    const higher = pollAndAnswer(harness, [bill("b-big", 500_000)])
    expect(commands(higher)).toEqual([])
    expect(decisionsOf(higher)).toEqual([
      ["answered", null, null],
      ["hold_dropped", "bill_amount_changed", "b-big"],
      ["held", "over_debt_limit", "b-big"],
    ])
    expect(notifications(higher, "debt.over_limit").map((n) => n.data.amount)).toEqual([rub(500_000)])
    const confirmed = Result.getOrThrow(harness.confirm(pid("b-big")))
    expect(commands(confirmed).map((c) => c.amount)).toEqual([rub(500_000)])
  })

  it("a held bill listed with nothing left to pay is dropped", () => {
    const harness = heldOver()
    const settled = pollAndAnswer(harness, [bill("b-big", 0)])
    expect(decisionsOf(settled)).toEqual([
      ["answered", null, null],
      ["hold_dropped", "bill_amount_changed", "b-big"],
      ["skipped", "nothing_to_pay", "b-big"],
    ])
    expect(harness.state.held).toEqual([])
  })

  it("a held bill the provider no longer lists is dropped and can no longer be confirmed", () => {
    const harness = heldOver()
    const gone = pollAndAnswer(harness, [])
    expect(decisionsOf(gone)).toEqual([
      ["hold_dropped", "bill_no_longer_reported", "b-big"],
      ["answered", null, null],
    ])
    expect(harness.state.held).toEqual([])
    expect(refusal(harness.confirm(pid("b-big")))).toMatchObject({ _tag: "Conflict" })
  })

  it("an error answer drops no held bill", () => {
    const harness = heldOver()
    harness.wake(T0 + DAY)
    harness.answerError("DOWN", "maintenance")
    expect(harness.state.held).toHaveLength(1)
  })

  it("cancel drops held bills and the open query; a late answer is ignored", () => {
    const harness = heldOver()
    harness.wake(T0 + DAY)
    const queryId = harness.openQueryId
    const cancelled = Result.getOrThrow(harness.cancel(T0 + DAY + MINUTE))
    expect(decisions(cancelled)[0]?.details).toMatchObject({ heldPaymentsDropped: [pid("b-big")] })
    expect(harness.state).toMatchObject({ held: [], query: null })
    expect(harness.subscription.nextDueAt).toBeNull()
    expect(refusal(harness.confirm(pid("b-big")))._tag).toBe("Conflict")
    const late = harness.answer([bill("b-big", 450_000), bill("b-2", 1_000)], { queryId })
    expect(commands(late)).toEqual([])
    expect(harness.wake(T0 + 5 * DAY).queries).toEqual([])
  })

  it("a bill held by a per-payment cap is told as limit.exceeded, and dropped when no longer listed", () => {
    const limits: LimitSettings = {
      ...noLimitSettings,
      paymentMax: { ...noLimitSettings.paymentMax, debt: { RUB: 100_000 } },
    }
    const harness = polled({ limits })
    const answered = harness.answer([bill("b-1", 150_000)])
    expect(decisionsOf(answered)).toContainEqual(["held", "over_payment_cap", "b-1"])
    expect(notificationTypes(answered)).toEqual(["limit.exceeded"])
    expect(events(answered, "debt.over_limit")).toEqual([])
    // Settled some other way: confirming it now would pay a bill no longer owed.
    const gone = pollAndAnswer(harness, [])
    expect(decisionsOf(gone)).toContainEqual(["hold_dropped", "bill_no_longer_reported", "b-1"])
    expect(harness.state.held).toEqual([])
  })
})

describe("unknown outcome (contract 10)", () => {
  it("an overdue payment is asked about, never resent, and blocks the bill until its outcome is known", () => {
    const harness = polled()
    harness.answer([bill("b-1", 1_000)])
    const id = pid("b-1")
    expect(attemptsAwaitingStatus(harness.subscription, T0 + 15 * MINUTE).map((a) => a.paymentId)).toEqual([
      id,
    ])
    const overdue = harness.wake(T0 + 15 * MINUTE, { [id]: { status: "unknown" } })
    expect(commands(overdue)).toEqual([])
    expect(overdue.outcomes.map((o) => [o.status, o.outcome])).toEqual([["unknown", "awaiting_status"]])
    expect(harness.payments.get(id)?.status).toBe("unknown")
    for (let round = 0; round < 5; round++) harness.wakeWhenDue({ [id]: "unreachable" })
    // The next poll finds the bill still listed: it is in flight, not paid again.
    harness.wake(T0 + DAY, { [id]: { status: "unknown" } })
    const listed = harness.answer([bill("b-1", 1_000)])
    expect(commands(listed)).toEqual([])
    expect(decisionsOf(listed)).toContainEqual(["skipped", "payment_in_flight", "b-1"])
    // The hub learns it failed, retryably: the next poll pays attempt 2.
    harness.wakeWhenDue({ [id]: hubResult(id, "failed", true, harness.now) })
    expect(harness.state.open).toEqual([])
    expect(onlyCommand(pollAndAnswer(harness, [bill("b-1", 1_000)])).attempt).toBe(2)
    expect(harness.transitions.flatMap(commands).map((c) => c.paymentId)).toEqual([id, pid("b-1", 2)])
  })
})

describe("lifecycle and update", () => {
  it.each([
    ["pause a paused", ["Pause", "Pause"]],
    ["resume an active", ["Resume"]],
    ["cancel a cancelled", ["Cancel", "Cancel"]],
    ["resume a cancelled", ["Cancel", "Resume"]],
    ["skip the next occurrence of", ["SkipNext"]],
  ] as const)("refuses to %s subscription", (_, sequence) => {
    const harness = DebtHarness.create()
    const tags = [...sequence]
    const last = tags.pop() as (typeof sequence)[number]
    for (const tag of tags) harness.accept({ _tag: tag, by: client })
    const before = harness.subscription
    expect(harness.refuse({ _tag: last, by: client })._tag).toBe("Conflict")
    expect(harness.subscription).toBe(before)
  })

  it("refuses a balance event", () => {
    const harness = DebtHarness.create()
    const input: ActorInput = {
      _tag: "ThresholdEvent",
      event: { eventId: "e", providerId: "p", account: "a", balance: rub(1), at: Timestamp.format(T0) },
    }
    expect(harness.refuse(input)._tag).toBe("Conflict")
  })

  it("lifecycle changes are recorded and published with the new subscription", () => {
    const harness = DebtHarness.create()
    const paused = Result.getOrThrow(harness.pause(T0))
    expect(harness.subscription).toMatchObject({ status: "paused", version: 2 })
    expect(eventTypes(paused)).toEqual(["subscription.paused"])
    expect(events(paused)[0]?.data).toMatchObject({ subscription: { status: "paused", version: 2 } })
    expect(providerMessages(paused)).toEqual([])
  })

  it("update changes the limit and the poll period; refuses a stale version or another currency", () => {
    const harness = DebtHarness.create()
    const updated = Result.getOrThrow(harness.update({ limit: rub(5_000), pollEvery: "PT12H" }))
    expect(harness.subscription).toMatchObject({
      version: 2,
      terms: { limit: rub(5_000), pollEvery: "PT12H" },
    })
    expect(decisions(updated)[0]?.details).toEqual({
      limit: { from: rub(300_000), to: rub(5_000) },
      pollEvery: { from: "P1D", to: "PT12H" },
    })
    expect(eventTypes(updated)).toEqual(["subscription.updated"])
    harness.wake(T0)
    expect(harness.state.nextPollAt).toBe(T0 + 12 * HOUR)

    expect(refusal(harness.update({ limit: rub(1) }, { expectedVersion: 1 }))._tag).toBe("Conflict")
    expect(refusal(harness.update({ limit: { value: 1, currency: "USD" } }))).toMatchObject({
      _tag: "ValidationFailed",
      details: [{ path: "body.limit.currency" }],
    })
    harness.cancel()
    expect(refusal(harness.update({ limit: rub(1) }))._tag).toBe("Conflict")
  })
})

describe("monthly limit", () => {
  it("checks two bills of one answer together: the second that no longer fits is held", () => {
    const limits: LimitSettings = { ...noLimitSettings, monthlyMax: { RUB: 100_000 }, clientTimeZone: "UTC" }
    const harness = polled({ limits, spent: { "2027-01": 30_000 } })
    const answered = harness.answer([bill("b-1", 50_000), bill("b-2", 30_000), bill("b-3", 20_000)])
    expect(harness.steps.at(-1)?.limits.reading).toEqual({ month: "2027-01", spent: 30_000 })
    expect(commands(answered).map((c) => c.occurrence)).toEqual(["b-1", "b-3"])
    expect(answered.payments.map((p) => p.spend)).toEqual([
      { month: "2027-01", checked: true },
      { month: "2027-01", checked: true },
    ])
    expect(decisionsOf(answered)).toContainEqual(["held", "over_monthly_cap", "b-2"])
    expect(decisions(answered, "held")[0]?.details.limit).toMatchObject({
      spentThisMonth: rub(80_000),
      cap: rub(100_000),
      amount: rub(30_000),
    })
    expect(notificationTypes(answered)).toEqual(["limit.exceeded"])
    expect(harness.spent.get("2027-01")).toBe(100_000)
  })
})

// ---- properties ---------------------------------------------------------------

/** The bills a provider may report, some above the limit of 300 000; two change amount between answers. */
const BILLS: ReadonlyArray<Bill> = [
  bill("b-0", 1_000),
  bill("b-1", 120_000),
  bill("b-2", 300_000),
  bill("b-3", 300_001),
  bill("b-4", 900_000),
  bill("b-5", 50_000),
  bill("b-3", 250_000),
  bill("b-4", 0),
]

type ReplyChoice = "unknown" | "unreachable" | { status: PaymentStatus; retryable: boolean }

type Action =
  | { readonly _tag: "Wake"; readonly advance: number; readonly reply: ReplyChoice }
  | {
      readonly _tag: "Answer"
      readonly bills: ReadonlyArray<number>
      readonly kind: "open" | "stale" | "error"
    }
  | {
      readonly _tag: "Result"
      readonly pick: number
      readonly status: PaymentStatus
      readonly retryable: boolean
    }
  | { readonly _tag: "Confirm"; readonly pick: number }
  | { readonly _tag: "Lifecycle"; readonly command: "Pause" | "Resume" | "Cancel" }
  | { readonly _tag: "Update"; readonly limit: number }

const action: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      _tag: fc.constant("Wake" as const),
      advance: fc.oneof(fc.integer({ min: 0, max: 2 * HOUR }), fc.integer({ min: 0, max: 2 * DAY })),
      reply: fc.oneof(
        fc.constantFrom<ReplyChoice>("unknown", "unreachable"),
        fc.record({
          status: fc.constantFrom<PaymentStatus>("succeeded", "failed", "declined"),
          retryable: fc.boolean(),
        }),
      ),
    }),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      _tag: fc.constant("Answer" as const),
      bills: fc.array(fc.nat({ max: BILLS.length - 1 }), { maxLength: 6 }),
      kind: fc.constantFrom(
        "open" as const,
        "open" as const,
        "open" as const,
        "stale" as const,
        "error" as const,
      ),
    }),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      _tag: fc.constant("Result" as const),
      pick: fc.nat(),
      status: fc.constantFrom<PaymentStatus>("succeeded", "failed", "failed", "declined"),
      retryable: fc.constantFrom(true, true, false),
    }),
  },
  { weight: 2, arbitrary: fc.record({ _tag: fc.constant("Confirm" as const), pick: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("Lifecycle" as const),
      command: fc.constantFrom<"Pause" | "Resume" | "Cancel">(
        "Pause",
        "Pause",
        "Resume",
        "Resume",
        "Resume",
        "Cancel",
      ),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("Update" as const),
      limit: fc.constantFrom(100_000, 300_000, 1_000_000),
    }),
  },
)

const runScenario = (cap: number | null, actions: ReadonlyArray<Action>): Harness => {
  const limits: LimitSettings =
    cap === null ? noLimitSettings : { ...noLimitSettings, monthlyMax: { RUB: cap }, clientTimeZone: "UTC" }
  const harness = DebtHarness.create({ limits })
  const sent: Array<string> = []
  const answered: Array<string> = []
  for (const step of actions) {
    switch (step._tag) {
      case "Wake": {
        const now = harness.now + step.advance
        const replies: Record<string, PaymentStatusReply | "unreachable"> = {}
        for (const attempt of attemptsAwaitingStatus(harness.subscription, now)) {
          const reply = step.reply
          replies[attempt.paymentId] =
            reply === "unreachable"
              ? "unreachable"
              : reply === "unknown"
                ? { status: "unknown" }
                : hubResult(attempt.paymentId, reply.status, reply.retryable, now)
        }
        harness.wake(now, replies)
        break
      }
      case "Answer": {
        // An answer to the open query needs one: poll first if none is open.
        if (
          step.kind !== "stale" &&
          harness.state.query === null &&
          harness.subscription.status === "active"
        ) {
          harness.wake(Math.max(harness.now, harness.state.nextPollAt))
        }
        const open = harness.state.query?.queryId
        const queryId =
          step.kind === "stale" || open === undefined ? (answered.at(-1) ?? "never-asked") : open
        if (open !== undefined && step.kind !== "stale") answered.push(open)
        const debts = step.bills.map((index) => BILLS[index] as Bill)
        if (step.kind === "error") harness.answerError("DOWN", "try later", { queryId })
        else harness.answer(debts, { queryId })
        break
      }
      case "Result": {
        const open = harness.state.open.map((attempt) => attempt.paymentId)
        const candidates = open.length > 0 && step.pick % 4 !== 0 ? open : sent
        const paymentId = candidates[step.pick % Math.max(candidates.length, 1)]
        if (paymentId !== undefined) harness.result(paymentId, step.status, { retryable: step.retryable })
        break
      }
      case "Confirm": {
        const held = harness.state.held.map((payment) => payment.paymentId)
        const candidates = held.length > 0 ? held : sent
        const paymentId = candidates[step.pick % Math.max(candidates.length, 1)]
        if (paymentId !== undefined) harness.confirm(paymentId)
        break
      }
      case "Lifecycle":
        harness.send({ _tag: step.command, by: client })
        break
      case "Update":
        harness.update({ limit: rub(step.limit) })
        break
    }
    for (const command of commands(harness.transitions.at(-1) ?? harness.created))
      sent.push(command.paymentId)
  }
  return harness
}

const checkInvariants = (harness: Harness, cap: number | null): void => {
  /** The first definite outcome of each payment. */
  const verdict = new Map<string, { status: string; retryable: boolean | null }>()
  const billOf = new Map<string, string>()
  const succeededBills = new Set<string>()
  const sent = new Set<string>()
  const spentByMonth = new Map<string, number>()
  for (const step of harness.steps) {
    if (Result.isFailure(step.result)) continue
    const transition = step.result.success
    const before: DebtSubscription = step.before
    const after = transition.subscription as DebtSubscription
    // Never more than one query: a new one only when none is open, or the open one just timed out.
    expect(transition.queries.length).toBeLessThanOrEqual(1)
    if (transition.queries.length === 1) {
      expect(step.input._tag).toBe("Wake")
      expect(before.status).toBe("active")
      if (before.state.query !== null) expect(before.state.query.timeoutAt).toBeLessThanOrEqual(step.now)
      expect(before.state.nextPollAt).toBeLessThanOrEqual(step.now)
    }
    for (const command of commands(transition)) {
      const bill = command.occurrence
      expect(command.paymentId).toBe(paymentIdFor(DEBT_ID, bill, command.attempt))
      expect(sent.has(command.paymentId)).toBe(false)
      sent.add(command.paymentId)
      billOf.set(command.paymentId, bill)
      // Exactly the bill's amount as now reported (or as held); never while another attempt for it is
      // open; never after a success.
      const asked =
        step.input._tag === "DebtResponse"
          ? step.input.response.debts?.find((debt) => debt.billId === bill)?.amount
          : before.state.held.find((held) => held.paymentId === command.paymentId)?.amount
      expect(command.amount).toEqual(asked)
      expect(before.state.open.some((attempt) => attempt.occurrence === bill)).toBe(false)
      expect(succeededBills.has(bill)).toBe(false)
      // Attempt n+1 only after attempt n definitely failed with retryable: true.
      if (command.attempt > 1) {
        expect(verdict.get(paymentIdFor(DEBT_ID, bill, command.attempt - 1))).toEqual({
          status: "failed",
          retryable: true,
        })
      }
      if (step.input._tag === "DebtResponse") {
        expect(before.status).toBe("active")
        expect(step.input.response.queryId).toBe(before.state.query?.queryId)
        // Without the client's word, only up to the limit, and within the month's cap.
        expect(command.amount.value).toBeLessThanOrEqual(before.terms.limit.value)
        const month = command.requestedAt.slice(0, 7)
        const spent = (spentByMonth.get(month) ?? 0) + command.amount.value
        if (cap !== null) expect(spent).toBeLessThanOrEqual(cap)
      } else if (step.input._tag === "Update") {
        // A raised limit releases a held bill that now fits it: within the new limit and the month's cap.
        expect(before.state.held.map((held) => held.paymentId)).toContain(command.paymentId)
        expect(command.amount.value).toBeLessThanOrEqual(
          (transition.subscription as DebtSubscription).terms.limit.value,
        )
        const month = command.requestedAt.slice(0, 7)
        if (cap !== null)
          expect((spentByMonth.get(month) ?? 0) + command.amount.value).toBeLessThanOrEqual(cap)
      } else {
        expect(step.input._tag).toBe("Confirm")
        expect(before.state.held.map((held) => held.paymentId)).toContain(command.paymentId)
      }
      const month = command.requestedAt.slice(0, 7)
      spentByMonth.set(month, (spentByMonth.get(month) ?? 0) + command.amount.value)
    }
    for (const outcome of transition.outcomes) {
      expect(sent.has(outcome.paymentId)).toBe(true)
      // The month as the committer keeps it: a failure gives back, a late success counts again.
      const { spendRelease: release, spendRestore: restore } = outcome
      if (release !== null)
        spentByMonth.set(
          release.month,
          Math.max(0, (spentByMonth.get(release.month) ?? 0) - release.amount.value),
        )
      if (restore !== undefined)
        spentByMonth.set(restore.month, (spentByMonth.get(restore.month) ?? 0) + restore.amount.value)
      if (outcome.status === "unknown") continue
      const first = verdict.get(outcome.paymentId)
      // A verdict is given once, except a success reported after a failure.
      if (first !== undefined) expect([first.status, outcome.status]).toEqual([first.status, "succeeded"])
      if (first !== undefined) expect(first.status).not.toBe("succeeded")
      if (first === undefined)
        verdict.set(outcome.paymentId, { status: outcome.status, retryable: outcome.retryable })
      if (outcome.status === "succeeded") {
        const bill = billOf.get(outcome.paymentId) ?? ""
        // A second success for a bill was already in flight: it is flagged for the bank to reverse.
        if (succeededBills.has(bill)) {
          expect(outcome.outcome).toBe("duplicate")
          expect(transition.duplicates.map((flag) => flag.state)).toContain("confirmed")
        }
        succeededBills.add(bill)
      }
    }
    // A hold always names the amount the provider last asked for that bill.
    const response = step.input._tag === "DebtResponse" ? step.input.response : null
    if (response !== null && response.queryId === before.state.query?.queryId) {
      for (const held of after.state.held) {
        const reported = response.debts?.find((debt) => debt.billId === held.occurrence)
        if (reported !== undefined) expect(held.amount).toEqual(reported.amount)
      }
    }
    // A bill is either held or in flight, never both, and held once.
    const heldBills = after.state.held.map((held) => held.occurrence)
    expect(new Set(heldBills).size).toBe(heldBills.length)
    for (const bill of heldBills) expect(after.state.open.some((a) => a.occurrence === bill)).toBe(false)
    // The stored next due time is what the state says it is, and a wake never leaves it due at once.
    if (after.status !== "cancelled") expect(after.nextDueAt).toBe(nextDueAt(after.status, after.state))
    if (step.input._tag === "Wake" && after.nextDueAt !== null)
      expect(after.nextDueAt).toBeGreaterThan(step.now)
  }
}

describe("properties", () => {
  it("whatever arrives, one query at a time, and each bill paid at most once except a retry after a retryable failure", () => {
    fc.assert(
      fc.property(
        fc.option(fc.constantFrom(200_000, 500_000), { nil: null }),
        fc.array(action, { minLength: 10, maxLength: 80 }),
        (cap, actions) => checkInvariants(runScenario(cap, actions), cap),
      ),
      { seed: 3_600_006, numRuns: 200 },
    )
  })
})
