import { Result } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { noLimitSettings } from "../../src/actors/Limits.ts"
import { attemptsAwaitingStatus } from "../../src/actors/Policy.ts"
import { nextDueAt, previewOccurrences } from "../../src/actors/ScheduledPolicy.ts"
import type { Transition } from "../../src/actors/Transition.ts"
import { paymentIdFor } from "../../src/domain/Ids.ts"
import type { ScheduleInput } from "../../src/domain/Subscription.ts"
import * as Timestamp from "../../src/domain/Timestamp.ts"
import type { PaymentStatus, PaymentStatusReply } from "../../src/streams/Messages.ts"
import {
  at,
  client,
  commands,
  DAY,
  daily,
  decisions,
  events,
  eventTypes,
  HOUR,
  hubResult,
  MINUTE,
  monthly,
  notifications,
  notificationTypes,
  ok,
  onlyCommand,
  PolicyHarness,
  policySettings,
  rub,
  SUBSCRIPTION_ID,
} from "./policyHarness.ts"

const pid = (occurrence: string, attempt = 1) => paymentIdFor(SUBSCRIPTION_ID, occurrence, attempt)

const policySettingsTimeout = () => policySettings.resultTimeoutMs

const JAN = "2027-01-01"
const FEB = "2027-02-01"
const MAR = "2027-03-01"
const APR = "2027-04-01"
const JAN_DUE = at("2027-01-01T09:00:00Z")
const FEB_DUE = at("2027-02-01T09:00:00Z")
const MAR_DUE = at("2027-03-01T09:00:00Z")

const monthlyHarness = (overrides: Partial<ScheduleInput> = {}) =>
  PolicyHarness.create({ schedule: monthly(overrides) })

const dailyHarness = (overrides: Partial<ScheduleInput> = {}) =>
  PolicyHarness.create({ schedule: daily(overrides), createdAt: "2026-12-30T00:00:00Z" })

/** Wakes when due and answers every command with success, until `count` payments were made or nothing is due. */
const payUntil = (harness: PolicyHarness, count: number): ReadonlyArray<string> => {
  const paid: Array<string> = []
  for (
    let guard = 0;
    guard < 200 && paid.length < count && harness.subscription.nextDueAt !== null;
    guard++
  ) {
    for (const command of commands(harness.wakeWhenDue())) {
      harness.result(command.paymentId, "succeeded")
      paid.push(command.occurrence)
    }
  }
  return paid
}

describe("create", () => {
  it("starts active at version 1 with the first occurrence after now and wakes for its notice", () => {
    const harness = monthlyHarness()
    const { subscription } = harness.created
    expect(subscription).toMatchObject({ status: "active", statusReason: null, version: 1, revision: 1 })
    expect(subscription.state).toEqual({
      cursor: { index: 0, date: JAN, dueAt: JAN_DUE },
      noticeFor: null,
      skip: [],
      open: [],
      retry: null,
      failedInARow: 0,
      paid: 0,
      lastSettled: null,
      held: [],
    })
    expect(subscription.nextDueAt).toBe(JAN_DUE - 24 * HOUR)
    expect(decisions(harness.created).map((d) => [d.outcome, d.channel])).toEqual([["created", "mobile"]])
    expect(eventTypes(harness.created)).toEqual(["subscription.created"])
    expect(commands(harness.created)).toEqual([])
  })

  it("never starts with an occurrence that is already past", () => {
    const harness = PolicyHarness.create({
      schedule: monthly({ startDate: "2026-10-01" }),
      createdAt: "2026-12-01T10:00:00Z",
    })
    expect(harness.state.cursor).toEqual({ index: 3, date: JAN, dueAt: JAN_DUE })
  })
})

describe("1. one payment per occurrence", () => {
  it("sends exactly one command at the due time, with the name-based payment id", () => {
    const harness = monthlyHarness()
    const transition = harness.wake(JAN_DUE)
    expect(commands(transition)).toEqual([
      {
        paymentId: pid(JAN, 1),
        subscriptionId: SUBSCRIPTION_ID,
        clientId: "client-7",
        kind: "scheduled",
        occurrence: JAN,
        attempt: 1,
        providerId: "isp-1",
        account: "contract-123",
        source: "card-tok-1",
        amount: rub(150_000),
        requestedAt: "2027-01-01T09:00:00.000Z",
      },
    ])
    expect(transition.payments.map((p) => [p.paymentId, p.occurrence, p.attempt, p.rule.rule])).toEqual([
      [pid(JAN, 1), JAN, 1, "schedule"],
    ])
    expect(eventTypes(transition)).toEqual(["payment.requested"])
    expect(harness.state.cursor).toMatchObject({ date: FEB, dueAt: FEB_DUE })
    expect(harness.state.lastSettled).toBe(JAN)
    expect(harness.state.open.map((a) => a.paymentId)).toEqual([pid(JAN, 1)])
    // The next wake is the result timeout of the attempt in flight.
    expect(harness.subscription.nextDueAt).toBe(JAN_DUE + 15 * MINUTE)
  })

  it("a duplicate tick at the same time or later sends nothing", () => {
    const harness = monthlyHarness()
    harness.wake(JAN_DUE)
    const same = harness.wake(JAN_DUE)
    expect(commands(same)).toEqual([])
    expect(same.changed).toBe(false)
    const later = harness.wake(JAN_DUE + 10 * MINUTE)
    expect(commands(later)).toEqual([])
    expect(later.changed).toBe(false)
    harness.result(pid(JAN), "succeeded")
    for (const when of [JAN_DUE + HOUR, at("2027-01-20T00:00:00Z"), FEB_DUE - 1]) {
      expect(commands(harness.wake(when))).toEqual([])
    }
    expect(harness.transitions.flatMap(commands).map((c) => c.paymentId)).toEqual([pid(JAN, 1)])
  })

  it("records a success and pays the next occurrence as a new attempt 1", () => {
    const harness = monthlyHarness()
    harness.wake(JAN_DUE)
    const paid = harness.result(pid(JAN), "succeeded", { at: JAN_DUE + 2 * MINUTE })
    expect(paid.outcomes).toEqual([
      {
        paymentId: pid(JAN),
        status: "succeeded",
        retryable: false,
        reason: null,
        hubReference: null,
        outcome: "paid",
        resultAt: JAN_DUE + 2 * MINUTE,
        spendRelease: null,
      },
    ])
    expect(eventTypes(paid)).toEqual(["payment.succeeded"])
    expect(notifications(paid, "payment.succeeded").map((n) => n.paymentId)).toEqual([pid(JAN)])
    expect(harness.state).toMatchObject({ paid: 1, open: [], failedInARow: 0 })
    expect(harness.subscription.nextDueAt).toBe(FEB_DUE - 24 * HOUR)
    const february = onlyCommand(harness.wake(FEB_DUE))
    expect(february).toMatchObject({ occurrence: FEB, attempt: 1, paymentId: pid(FEB, 1) })
  })
})

describe("2. payment.upcoming notice", () => {
  it("goes out once inside the lead window and is not repeated", () => {
    const harness = monthlyHarness()
    const early = harness.wake(JAN_DUE - 24 * HOUR - 1)
    expect(early.changed).toBe(false)
    expect(notifications(early)).toEqual([])

    const notice = harness.wake(JAN_DUE - 24 * HOUR)
    expect(notificationTypes(notice)).toEqual(["payment.upcoming"])
    expect(notifications(notice)[0]).toMatchObject({
      clientId: "client-7",
      subscriptionId: SUBSCRIPTION_ID,
      data: { occurrence: JAN, dueAt: "2027-01-01T09:00:00.000Z", amount: rub(150_000) },
    })
    expect(decisions(notice).map((d) => [d.outcome, d.occurrence])).toEqual([["notice_sent", JAN]])
    expect(commands(notice)).toEqual([])
    expect(harness.state.noticeFor).toBe(JAN)
    expect(harness.subscription.nextDueAt).toBe(JAN_DUE)

    const again = harness.wake(JAN_DUE - HOUR)
    expect(again.changed).toBe(false)
    expect(notifications(again)).toEqual([])
    // Paying it does not repeat the notice either.
    expect(notificationTypes(harness.wake(JAN_DUE))).toEqual([])
  })

  it("is not sent when the first wake arrives at or after the due time", () => {
    for (const lateBy of [0, 5 * MINUTE]) {
      const harness = monthlyHarness()
      const transition = harness.wake(JAN_DUE + lateBy)
      expect(commands(transition).map((c) => c.occurrence)).toEqual([JAN])
      expect(notifications(transition, "payment.upcoming")).toEqual([])
    }
  })

  it("for a daily schedule the wake that pays today announces tomorrow", () => {
    const harness = dailyHarness()
    harness.wake("2026-12-31T09:00:00Z")
    const transition = harness.wake("2027-01-01T09:00:00Z")
    expect(commands(transition).map((c) => c.occurrence)).toEqual(["2027-01-01"])
    expect(notifications(transition, "payment.upcoming").map((n) => n.data.occurrence)).toEqual([
      "2027-01-02",
    ])
  })

  it("is not sent for an occurrence that will be skipped, nor while paused", () => {
    const skipping = monthlyHarness()
    skipping.skipNext()
    expect(notifications(skipping.wake(JAN_DUE - HOUR))).toEqual([])
    const paused = monthlyHarness()
    paused.pause()
    expect(paused.subscription.nextDueAt).toBe(JAN_DUE)
    expect(notifications(paused.wake(JAN_DUE - HOUR))).toEqual([])
  })
})

describe("3. calendar through the policy", () => {
  it("monthly on the 31st pays on the last day of shorter months", () => {
    const harness = PolicyHarness.create({
      schedule: monthly({ dayOfMonth: 31, startDate: "2027-01-31" }),
      createdAt: "2027-01-15T00:00:00Z",
    })
    expect(payUntil(harness, 4)).toEqual(["2027-01-31", "2027-02-28", "2027-03-31", "2027-04-30"])
    expect(harness.transitions.flatMap(commands).map((c) => [c.paymentId, c.requestedAt])).toEqual([
      [pid("2027-01-31"), "2027-01-31T09:00:00.000Z"],
      [pid("2027-02-28"), "2027-02-28T09:00:00.000Z"],
      [pid("2027-03-31"), "2027-03-31T09:00:00.000Z"],
      [pid("2027-04-30"), "2027-04-30T09:00:00.000Z"],
    ])
  })

  it("keeps the local time of day across a DST change", () => {
    const harness = PolicyHarness.create({
      schedule: daily({ timezone: "Europe/Berlin", startDate: "2027-03-27" }),
      createdAt: "2027-03-20T00:00:00Z",
    })
    payUntil(harness, 3)
    expect(harness.transitions.flatMap(commands).map((c) => `${c.occurrence} ${c.requestedAt}`)).toEqual([
      "2027-03-27 2027-03-27T08:00:00.000Z",
      "2027-03-28 2027-03-28T07:00:00.000Z",
      "2027-03-29 2027-03-29T07:00:00.000Z",
    ])
  })

  it("reads the time of day in the subscription's zone (Moscow by default)", () => {
    const harness = PolicyHarness.create({
      schedule: { every: "month", dayOfMonth: 1, time: "09:00", startDate: "2027-01-01" },
    })
    expect(harness.state.cursor?.dueAt).toBe(at("2027-01-01T06:00:00Z"))
  })
})

describe("4. downtime and catch-up", () => {
  it("pays only the most recent missed occurrence and records the older ones as missed", () => {
    const harness = monthlyHarness()
    const transition = harness.wake(MAR_DUE + 2 * HOUR)
    expect(commands(transition).map((c) => [c.occurrence, c.attempt])).toEqual([[MAR, 1]])
    expect(decisions(transition, "skipped").map((d) => [d.occurrence, d.reason])).toEqual([
      [JAN, "missed"],
      [FEB, "missed"],
    ])
    expect(events(transition, "payment.skipped").map((e) => [e.data.occurrence, e.data.reason])).toEqual([
      [JAN, "missed"],
      [FEB, "missed"],
    ])
    expect(harness.state.cursor?.date).toBe(APR)
  })

  it("pays nothing when even the most recent one is more than the catch-up window late", () => {
    const harness = monthlyHarness()
    const transition = harness.wake(MAR_DUE + 24 * HOUR + 1)
    expect(commands(transition)).toEqual([])
    expect(decisions(transition, "skipped").map((d) => [d.occurrence, d.reason])).toEqual([
      [JAN, "missed"],
      [FEB, "missed"],
      [MAR, "missed"],
    ])
    expect(decisions(transition, "skipped")[2]?.details).toMatchObject({
      lateByMs: 24 * HOUR + 1,
      catchUpWindowMs: 24 * HOUR,
    })
    expect(events(transition, "payment.skipped")).toHaveLength(3)
    expect(harness.state.cursor?.date).toBe(APR)
  })

  it("still pays an occurrence exactly at the edge of the window", () => {
    const harness = monthlyHarness()
    expect(commands(harness.wake(JAN_DUE + 24 * HOUR)).map((c) => c.occurrence)).toEqual([JAN])
  })

  it("daily: a wake after two days pays today only", () => {
    const harness = dailyHarness()
    const transition = harness.wake("2027-01-03T10:00:00Z")
    expect(commands(transition).map((c) => c.occurrence)).toEqual(["2027-01-03"])
    expect(decisions(transition, "skipped").map((d) => d.occurrence)).toEqual(["2027-01-01", "2027-01-02"])
  })
})

describe("5. retries", () => {
  it("retries a retryable failure after 1 h, 6 h and 24 h with a new attempt each time, then gives up", () => {
    const harness = monthlyHarness()
    harness.wake(JAN_DUE)
    let failedAt = JAN_DUE + MINUTE
    const delays = [HOUR, 6 * HOUR, 24 * HOUR]
    for (const [index, delay] of delays.entries()) {
      const attempt = index + 1
      const failed = harness.result(pid(JAN, attempt), "failed", {
        retryable: true,
        reason: "insufficient funds",
        at: failedAt,
      })
      expect(failed.outcomes.map((o) => [o.paymentId, o.status, o.outcome])).toEqual([
        [pid(JAN, attempt), "failed", "retry_scheduled"],
      ])
      expect(events(failed, "payment.retry_scheduled")[0]?.data).toMatchObject({
        occurrence: JAN,
        nextAttempt: attempt + 1,
        retryAt: Timestamp.format(failedAt + delay),
      })
      expect(notifications(failed, "payment.failed")[0]?.data).toMatchObject({ final: false })
      expect(harness.state.retry).toEqual({
        occurrence: JAN,
        attempt: attempt + 1,
        at: failedAt + delay,
        amount: rub(150_000),
      })
      expect(harness.subscription.nextDueAt).toBe(failedAt + delay)
      expect(commands(harness.wake(failedAt + delay - 1))).toEqual([])
      const retry = onlyCommand(harness.wake(failedAt + delay))
      expect(retry).toMatchObject({
        occurrence: JAN,
        attempt: attempt + 1,
        paymentId: pid(JAN, attempt + 1),
        amount: rub(150_000),
      })
      expect(harness.transitions.at(-1)?.payments[0]?.rule).toMatchObject({
        rule: "retry",
        attempt: attempt + 1,
      })
      failedAt += delay + MINUTE
    }
    const final = harness.result(pid(JAN, 4), "failed", { retryable: true, at: failedAt })
    expect(final.outcomes.map((o) => o.outcome)).toEqual(["failed"])
    expect(events(final, "payment.failed")[0]?.data).toMatchObject({
      final: true,
      whyNoRetry: "retry schedule exhausted",
    })
    expect(notifications(final, "payment.failed")[0]?.data).toMatchObject({ final: true })
    expect(harness.state).toMatchObject({ retry: null, failedInARow: 1 })
    expect(new Set(harness.transitions.flatMap(commands).map((c) => c.paymentId)).size).toBe(4)
  })

  it("never plans a retry at or past the next occurrence", () => {
    const harness = dailyHarness()
    const day = "2027-01-01"
    harness.wake(`${day}T09:00:00Z`)
    harness.result(pid(day, 1), "failed", { retryable: true })
    expect(harness.state.retry?.at).toBe(at(`${day}T10:00:00Z`))
    harness.wake(`${day}T10:00:00Z`)
    harness.result(pid(day, 2), "failed", { retryable: true })
    expect(harness.state.retry?.at).toBe(at(`${day}T16:00:00Z`))
    harness.wake(`${day}T16:00:00Z`)
    // 16:00 + 24 h is past tomorrow's 09:00 occurrence: this failure is final.
    const final = harness.result(pid(day, 3), "failed", { retryable: true })
    expect(final.outcomes.map((o) => o.outcome)).toEqual(["failed"])
    expect(events(final, "payment.failed")[0]?.data).toMatchObject({
      whyNoRetry: "the next occurrence comes before the next retry",
    })
    expect(harness.state.retry).toBeNull()
    const tomorrow = harness.wake("2027-01-02T09:00:00Z")
    expect(commands(tomorrow).map((c) => [c.occurrence, c.attempt])).toEqual([["2027-01-02", 1]])
  })

  it("a retry that would land exactly on the next occurrence is not planned", () => {
    const harness = dailyHarness()
    harness.wake("2027-01-01T09:00:00Z")
    const final = harness.result(pid("2027-01-01"), "failed", { retryable: true, at: "2027-01-02T08:00:00Z" })
    expect(final.outcomes.map((o) => o.outcome)).toEqual(["failed"])
  })

  it("declined and non-retryable failures are final", () => {
    const cases: ReadonlyArray<[PaymentStatus, boolean, string]> = [
      ["declined", true, "declined payments are final"],
      ["declined", false, "declined payments are final"],
      ["failed", false, "the hub marked the failure as not retryable"],
    ]
    for (const [status, retryable, why] of cases) {
      const harness = monthlyHarness()
      harness.wake(JAN_DUE)
      const final = harness.result(pid(JAN), status, { retryable })
      expect(final.outcomes.map((o) => [o.status, o.outcome])).toEqual([[status, "failed"]])
      expect(events(final, "payment.failed")[0]?.data).toMatchObject({ final: true, whyNoRetry: why })
      expect(harness.state).toMatchObject({ retry: null, failedInARow: 1 })
      expect(harness.subscription.nextDueAt).toBe(FEB_DUE - 24 * HOUR)
      expect(commands(harness.wake(FEB_DUE - HOUR))).toEqual([])
    }
  })

  it("abandons a pending retry when the next occurrence comes due first (downtime)", () => {
    const harness = dailyHarness()
    harness.wake("2027-01-01T09:00:00Z")
    harness.result(pid("2027-01-01"), "failed", { retryable: true })
    expect(harness.state.retry?.at).toBe(at("2027-01-01T10:00:00Z"))
    // The engine was down from 09:01 until after the next occurrence.
    const transition = harness.wake("2027-01-02T09:30:00Z")
    expect(commands(transition).map((c) => [c.occurrence, c.attempt])).toEqual([["2027-01-02", 1]])
    expect(decisions(transition, "retry_abandoned").map((d) => [d.occurrence, d.reason])).toEqual([
      ["2027-01-01", "next_occurrence_due"],
    ])
    expect(harness.state.retry).toBeNull()
    expect(harness.state.failedInARow).toBe(1)
  })

  it("tells the hub and the customer that an abandoned retry's occurrence failed for good", () => {
    const harness = dailyHarness()
    harness.wake("2027-01-01T09:00:00Z")
    harness.result(pid("2027-01-01"), "failed", { retryable: true })
    const transition = harness.wake("2027-01-02T09:30:00Z")
    expect(events(transition, "payment.failed").map((event) => event.data)).toEqual([
      expect.objectContaining({
        occurrence: "2027-01-01",
        final: true,
        whyNoRetry: expect.stringContaining("next occurrence"),
      }),
    ])
    expect(notifications(transition, "payment.failed").map((notice) => notice.data.final)).toEqual([true])
  })

  it("names the last failed attempt in the final failure of an abandoned retry", () => {
    const harness = dailyHarness()
    harness.wake("2027-01-01T09:00:00Z")
    harness.result(pid("2027-01-01"), "failed", { retryable: true })
    const transition = harness.wake("2027-01-02T09:30:00Z")
    const [event] = events(transition, "payment.failed")
    expect(event?.data).toMatchObject({ paymentId: pid("2027-01-01"), attempt: 1 })
    expect(notifications(transition, "payment.failed")[0]?.paymentId).toBe(pid("2027-01-01"))
  })

  it("abandons a pending retry when a schedule change brings the next occurrence before it", () => {
    const harness = monthlyHarness()
    harness.wake(JAN_DUE)
    for (const attempt of [1, 2]) {
      harness.result(pid(JAN, attempt), "failed", { retryable: true })
      harness.wakeWhenDue()
    }
    harness.result(pid(JAN, 3), "failed", { retryable: true, at: "2027-01-01T16:00:00Z" })
    expect(harness.state.retry).toMatchObject({ attempt: 4, at: at("2027-01-02T16:00:00Z") })
    // Daily at 09:00 from now on: 2027-01-02 09:00 comes before the retry at 16:00.
    ok(harness.update({ schedule: daily() }, { at: "2027-01-01T17:00:00Z" }))
    expect(harness.state.cursor).toMatchObject({ date: "2027-01-02", dueAt: at("2027-01-02T09:00:00Z") })
    const next = harness.wake("2027-01-02T09:00:00Z")
    expect(decisions(next, "retry_abandoned").map((d) => [d.occurrence, d.reason])).toEqual([
      [JAN, "next_occurrence_due"],
    ])
    expect(commands(next).map((c) => [c.occurrence, c.attempt])).toEqual([["2027-01-02", 1]])
    expect(commands(harness.wake("2027-01-02T16:00:00Z"))).toEqual([])
    expect(harness.transitions.flatMap(commands).filter((c) => c.occurrence === JAN)).toHaveLength(3)
  })

  it("keeps a pending retry that is still ahead of the new next occurrence", () => {
    const harness = monthlyHarness()
    harness.wake(JAN_DUE)
    harness.result(pid(JAN), "failed", { retryable: true, at: JAN_DUE + 10 * MINUTE })
    expect(harness.state.retry?.at).toBe(JAN_DUE + 70 * MINUTE)
    ok(harness.update({ schedule: daily({ time: "09:30" }) }, { at: JAN_DUE + 20 * MINUTE }))
    expect(harness.state.cursor?.date).toBe("2027-01-02")
    expect(onlyCommand(harness.wake(JAN_DUE + 70 * MINUTE))).toMatchObject({ occurrence: JAN, attempt: 2 })
  })
})

describe("6. auto-pause after consecutive failures", () => {
  const failOccurrence = (harness: PolicyHarness, due: number) => {
    const sent = onlyCommand(harness.wake(due))
    return harness.result(sent.paymentId, "failed", { retryable: false })
  }

  it("pauses itself after three failed occurrences in a row and says so", () => {
    const harness = monthlyHarness()
    failOccurrence(harness, JAN_DUE)
    failOccurrence(harness, FEB_DUE)
    expect(harness.subscription).toMatchObject({ status: "active", version: 1 })
    expect(harness.state.failedInARow).toBe(2)
    const third = failOccurrence(harness, MAR_DUE)
    expect(harness.subscription).toMatchObject({
      status: "paused",
      statusReason: "consecutive_failures",
      version: 2,
    })
    expect(decisions(third, "paused").map((d) => [d.reason, d.details.failedOccurrencesInARow])).toEqual([
      ["consecutive_failures", 3],
    ])
    expect(events(third, "subscription.paused")[0]?.data).toMatchObject({
      reason: "consecutive_failures",
      subscription: { status: "paused", version: 2 },
    })
    expect(notificationTypes(third)).toEqual(["payment.failed", "subscription.paused"])
    const april = harness.wake(at("2027-04-01T09:00:00Z"))
    expect(commands(april)).toEqual([])
    expect(decisions(april, "skipped").map((d) => [d.occurrence, d.reason])).toEqual([[APR, "paused"]])
    // The client resumes: the count starts again and May is paid; April is not backfilled.
    ok(harness.resume(at("2027-04-10T00:00:00Z")))
    expect(harness.subscription).toMatchObject({ status: "active", version: 3 })
    expect(harness.state.failedInARow).toBe(0)
    expect(onlyCommand(harness.wake(at("2027-05-01T09:00:00Z"))).occurrence).toBe("2027-05-01")
  })

  it("abandoned retries count as failed occurrences too", () => {
    const harness = dailyHarness()
    for (const day of ["2027-01-01", "2027-01-02"]) {
      harness.wake(`${day}T09:00:00Z`)
      harness.result(pid(day), "failed", { retryable: true })
    }
    // 2027-01-01's retry was abandoned when 2027-01-02 came due during downtime; now 01-02's and 01-03's.
    harness.wake("2027-01-03T09:00:00Z")
    harness.result(pid("2027-01-03"), "failed", { retryable: false })
    expect(harness.subscription).toMatchObject({ status: "paused", statusReason: "consecutive_failures" })
  })

  it("a success in between resets the count", () => {
    const harness = monthlyHarness()
    failOccurrence(harness, JAN_DUE)
    failOccurrence(harness, FEB_DUE)
    harness.result(onlyCommand(harness.wake(MAR_DUE)).paymentId, "succeeded")
    expect(harness.state.failedInARow).toBe(0)
    failOccurrence(harness, at("2027-04-01T09:00:00Z"))
    failOccurrence(harness, at("2027-05-01T09:00:00Z"))
    expect(harness.subscription.status).toBe("active")
    expect(harness.state.failedInARow).toBe(2)
  })

  it("an occurrence that runs out of retries counts once", () => {
    const harness = monthlyHarness()
    harness.wake(JAN_DUE)
    for (let attempt = 1; attempt <= 4; attempt++) {
      harness.result(pid(JAN, attempt), "failed", { retryable: true })
      if (attempt < 4) harness.wakeWhenDue()
    }
    expect(harness.state.failedInARow).toBe(1)
  })
})

describe("7. pause and resume", () => {
  it("skips and records occurrences while paused; resume does not backfill", () => {
    const harness = monthlyHarness()
    const paused = ok(harness.pause(at("2026-12-15T00:00:00Z")))
    expect(harness.subscription).toMatchObject({
      status: "paused",
      statusReason: "client_request",
      version: 2,
    })
    expect(decisions(paused).map((d) => [d.outcome, d.reason, d.channel, d.terminal])).toEqual([
      ["paused", "client_request", "mobile", "device-42"],
    ])
    expect(eventTypes(paused)).toEqual(["subscription.paused"])
    const january = harness.wake(JAN_DUE)
    expect(commands(january)).toEqual([])
    expect(decisions(january, "skipped").map((d) => [d.occurrence, d.reason])).toEqual([[JAN, "paused"]])
    expect(events(january, "payment.skipped").map((e) => e.data.reason)).toEqual(["paused"])

    // February falls due while paused but no wake handled it before the resume.
    const resumed = ok(harness.resume(FEB_DUE + 3 * HOUR))
    expect(harness.subscription).toMatchObject({ status: "active", statusReason: null, version: 3 })
    expect(commands(resumed)).toEqual([])
    expect(decisions(resumed, "skipped").map((d) => [d.occurrence, d.reason])).toEqual([[FEB, "paused"]])
    expect(eventTypes(resumed)).toEqual(["payment.skipped", "subscription.resumed"])
    expect(harness.state.cursor?.date).toBe(MAR)
    expect(commands(harness.wake(FEB_DUE + 4 * HOUR))).toEqual([])
    expect(commands(harness.wake(MAR_DUE)).map((c) => c.occurrence)).toEqual([MAR])
    expect(harness.transitions.flatMap(commands).map((c) => c.occurrence)).toEqual([MAR])
  })

  it("a resume inside the notice window announces the next occurrence", () => {
    const harness = monthlyHarness()
    ok(harness.pause())
    const resumed = ok(harness.resume(JAN_DUE - 2 * HOUR))
    expect(notifications(resumed, "payment.upcoming").map((n) => n.data.occurrence)).toEqual([JAN])
    expect(onlyCommand(harness.wake(JAN_DUE)).occurrence).toBe(JAN)
  })

  it("refuses to pause a paused subscription and to resume an active one", () => {
    const harness = monthlyHarness()
    expect(harness.refuse({ _tag: "Resume", by: client })).toMatchObject({ _tag: "Conflict" })
    harness.pause()
    const before = harness.subscription
    expect(harness.refuse({ _tag: "Pause", by: client })).toMatchObject({ _tag: "Conflict" })
    expect(harness.subscription).toBe(before)
    harness.resume()
    expect(harness.subscription.version).toBe(3)
  })

  it("abandons a pending retry on pause and never sends it", () => {
    const harness = monthlyHarness()
    harness.wake(JAN_DUE)
    harness.result(pid(JAN), "failed", { retryable: true })
    const paused = ok(harness.pause(JAN_DUE + 10 * MINUTE))
    expect(decisions(paused, "retry_abandoned").map((d) => [d.occurrence, d.reason])).toEqual([
      [JAN, "paused"],
    ])
    expect(harness.state.retry).toBeNull()
    harness.resume(JAN_DUE + 20 * MINUTE)
    expect(commands(harness.wake(JAN_DUE + 2 * HOUR))).toEqual([])
  })

  it("an attempt in flight when paused is still recorded, without a retry", () => {
    const harness = monthlyHarness()
    harness.wake(JAN_DUE)
    harness.pause()
    const result = harness.result(pid(JAN), "failed", { retryable: true })
    expect(result.outcomes.map((o) => o.outcome)).toEqual(["failed"])
    expect(harness.state.retry).toBeNull()
  })

  it("leaves no pending skip behind for an occurrence that passed while paused", () => {
    // Passed at a wake while paused.
    const woken = monthlyHarness()
    ok(woken.skipNext())
    ok(woken.pause())
    const january = woken.wake(JAN_DUE)
    expect(decisions(january, "skipped").map((d) => [d.occurrence, d.reason])).toEqual([[JAN, "paused"]])
    expect(woken.state.skip).toEqual([])
    // Passed unwoken and settled by the resume.
    const resumed = monthlyHarness()
    ok(resumed.skipNext())
    ok(resumed.pause())
    ok(resumed.resume(JAN_DUE + HOUR))
    expect(resumed.state).toMatchObject({ skip: [], lastSettled: JAN, cursor: { date: FEB } })
    // Either way the next skip request is for February, and the view shows no stale date.
    ok(resumed.skipNext())
    expect(resumed.state.skip).toEqual([FEB])
  })
})

describe("8. cancel", () => {
  it("is final: nothing is sent afterwards", () => {
    const harness = monthlyHarness()
    const cancelled = ok(harness.cancel())
    expect(harness.subscription).toMatchObject({ status: "cancelled", version: 2, nextDueAt: null })
    expect(eventTypes(cancelled)).toEqual(["subscription.cancelled"])
    const later = harness.wake(JAN_DUE)
    expect(commands(later)).toEqual([])
    expect(later.changed).toBe(false)
    for (const tag of ["Cancel", "Pause", "Resume", "SkipNext"] as const) {
      expect(harness.refuse({ _tag: tag, by: client })).toMatchObject({ _tag: "Conflict" })
    }
    expect(harness.update({ amount: 1 })).toMatchObject({ failure: { _tag: "Conflict" } })
  })

  it("still records the result of an attempt in flight, and never retries it", () => {
    const harness = monthlyHarness()
    harness.wake(JAN_DUE)
    const cancelled = ok(harness.cancel(JAN_DUE + MINUTE))
    expect(decisions(cancelled, "cancelled")[0]?.details).toEqual({
      attemptsInFlight: [pid(JAN)],
      heldPaymentsDropped: [],
    })
    // The attempt is still watched for its result.
    expect(harness.subscription.nextDueAt).toBe(JAN_DUE + 15 * MINUTE)
    const result = harness.result(pid(JAN), "failed", { retryable: true, at: JAN_DUE + 2 * MINUTE })
    expect(result.outcomes.map((o) => [o.paymentId, o.status, o.outcome])).toEqual([
      [pid(JAN), "failed", "failed"],
    ])
    expect(events(result, "payment.failed")[0]?.data).toMatchObject({
      whyNoRetry: "the subscription is cancelled",
    })
    expect(commands(result)).toEqual([])
    expect(harness.state.retry).toBeNull()
    expect(harness.subscription.nextDueAt).toBeNull()
    expect(commands(harness.wake(JAN_DUE + 2 * HOUR))).toEqual([])
  })

  it("records a success that arrives after cancel", () => {
    const harness = monthlyHarness()
    harness.wake(JAN_DUE)
    harness.cancel()
    const result = harness.result(pid(JAN), "succeeded")
    expect(result.outcomes.map((o) => o.outcome)).toEqual(["paid"])
    expect(harness.subscription.status).toBe("cancelled")
  })

  it("abandons a pending retry", () => {
    const harness = monthlyHarness()
    harness.wake(JAN_DUE)
    harness.result(pid(JAN), "failed", { retryable: true })
    const cancelled = ok(harness.cancel())
    expect(decisions(cancelled, "retry_abandoned").map((d) => d.reason)).toEqual(["cancelled"])
    expect(commands(harness.wake(JAN_DUE + 2 * HOUR))).toEqual([])
  })
})

describe("9. skip next", () => {
  it("skips the next occurrence, and a second request skips the one after", () => {
    const harness = monthlyHarness()
    const first = ok(harness.skipNext())
    expect(decisions(first).map((d) => [d.outcome, d.occurrence])).toEqual([["skip_requested", JAN]])
    expect(events(first, "subscription.updated")[0]?.data).toMatchObject({
      change: "skipNext",
      occurrence: JAN,
    })
    expect(harness.subscription.version).toBe(2)
    const second = ok(harness.skipNext())
    expect(decisions(second).map((d) => d.occurrence)).toEqual([FEB])
    expect(harness.subscription.version).toBe(3)
    expect(harness.state.skip).toEqual([JAN, FEB])

    const january = harness.wake(JAN_DUE)
    expect(commands(january)).toEqual([])
    expect(decisions(january, "skipped").map((d) => [d.occurrence, d.reason])).toEqual([[JAN, "skip_next"]])
    expect(events(january, "payment.skipped").map((e) => e.data.reason)).toEqual(["skip_next"])
    expect(commands(harness.wake(FEB_DUE))).toEqual([])
    expect(commands(harness.wake(MAR_DUE)).map((c) => c.occurrence)).toEqual([MAR])
    expect(harness.state.skip).toEqual([])
  })

  it("refuses when nothing is left to skip", () => {
    const harness = monthlyHarness({ endDate: "2027-01-31" })
    ok(harness.skipNext())
    expect(harness.refuse({ _tag: "SkipNext", by: client })).toMatchObject({ _tag: "Conflict" })
    expect(harness.subscription.version).toBe(2)
    // The last occurrence skipped, the schedule is over.
    const end = harness.wake(JAN_DUE)
    expect(commands(end)).toEqual([])
    expect(harness.subscription.status).toBe("completed")
  })
})

describe("10. update", () => {
  it("refuses a stale expectedVersion", () => {
    const harness = monthlyHarness()
    harness.pause()
    const before = harness.subscription
    expect(harness.update({ amount: 99_00 }, { expectedVersion: 1 })).toMatchObject({
      failure: { _tag: "Conflict" },
    })
    expect(harness.subscription).toBe(before)
  })

  it("applies a new amount to the next occurrence but not to a retry of the current one", () => {
    const harness = monthlyHarness()
    harness.wake(JAN_DUE)
    harness.result(pid(JAN), "failed", { retryable: true })
    const updated = ok(harness.update({ amount: 200_000 }, { at: JAN_DUE + 5 * MINUTE }))
    expect(harness.subscription.version).toBe(2)
    expect(decisions(updated, "updated")[0]?.details).toEqual({
      amount: { from: rub(150_000), to: rub(200_000) },
    })
    expect(events(updated, "subscription.updated")[0]?.data).toMatchObject({
      change: "terms",
      subscription: { amount: rub(200_000), version: 2 },
    })
    expect(onlyCommand(harness.wakeWhenDue())).toMatchObject({
      occurrence: JAN,
      attempt: 2,
      amount: rub(150_000),
    })
    harness.result(pid(JAN, 2), "succeeded")
    expect(onlyCommand(harness.wake(FEB_DUE))).toMatchObject({
      occurrence: FEB,
      attempt: 1,
      amount: rub(200_000),
    })
  })

  it("a schedule change never pays again an occurrence already settled", () => {
    const harness = dailyHarness()
    harness.wake("2027-01-01T09:00:00Z")
    harness.result(pid("2027-01-01"), "succeeded")
    const updated = harness.update({ schedule: daily({ time: "18:00" }) }, { at: "2027-01-01T10:00:00Z" })
    expect(decisions(ok(updated), "updated")).toHaveLength(1)
    expect(harness.state.cursor).toMatchObject({ date: "2027-01-02", dueAt: at("2027-01-02T18:00:00Z") })
    expect(commands(harness.wake("2027-01-01T18:00:00Z"))).toEqual([])
    const next = onlyCommand(harness.wake("2027-01-02T18:00:00Z"))
    expect(next.occurrence).toBe("2027-01-02")
  })

  it("a schedule change with a new date re-announces the new next occurrence", () => {
    const harness = monthlyHarness()
    harness.wake(JAN_DUE - 20 * HOUR)
    expect(harness.state.noticeFor).toBe(JAN)
    const updated = ok(harness.update({ schedule: monthly({ dayOfMonth: 2, startDate: "2027-01-02" }) }))
    expect(harness.state.cursor?.date).toBe("2027-01-02")
    expect(notificationTypes(updated)).toEqual([])
    const notice = harness.wake(at("2027-01-01T09:00:00Z"))
    expect(notifications(notice, "payment.upcoming").map((n) => n.data.occurrence)).toEqual(["2027-01-02"])
  })

  it("refuses a schedule with no occurrence left, as create does, and changes nothing", () => {
    const harness = monthlyHarness()
    const before = harness.subscription
    const refused = harness.update({ schedule: monthly({ startDate: "2026-01-01", endDate: "2026-06-01" }) })
    expect(refused).toMatchObject({
      failure: { _tag: "ValidationFailed", details: [{ path: "body.schedule" }] },
    })
    expect(harness.subscription).toBe(before)
  })

  it("sends a corrected notice when the amount changes after the notice went out", () => {
    const harness = monthlyHarness()
    harness.wake(JAN_DUE - 20 * HOUR)
    const updated = ok(harness.update({ amount: 175_000 }, { at: JAN_DUE - 19 * HOUR }))
    expect(notifications(updated, "payment.upcoming").map((notice) => notice.data.amount)).toEqual([
      rub(175_000),
    ])
  })

  it("re-announces an occurrence whose time of day changed", () => {
    const harness = monthlyHarness()
    harness.wake(JAN_DUE - 20 * HOUR)
    const updated = ok(harness.update({ schedule: monthly({ time: "11:00" }) }, { at: JAN_DUE - 19 * HOUR }))
    expect(notifications(updated, "payment.upcoming").map((notice) => notice.data.dueAt)).toEqual([
      "2027-01-01T11:00:00.000Z",
    ])
  })

  it("refuses a currency change", () => {
    const harness = monthlyHarness()
    const refused = harness.update({ amount: 100, currency: "USD" })
    expect(refused).toMatchObject({
      failure: { _tag: "ValidationFailed", details: [{ path: "body.amount.currency" }] },
    })
    expect(harness.subscription.version).toBe(1)
  })
})

describe("11. unknown outcome", () => {
  const sentAt = JAN_DUE
  const timeoutAt = JAN_DUE + 15 * MINUTE

  const silentHarness = () => {
    const harness = monthlyHarness()
    harness.wake(sentAt)
    return harness
  }

  it("asks the hub instead of sending again, records unknown once and backs off", () => {
    const harness = silentHarness()
    expect(attemptsAwaitingStatus(harness.subscription, timeoutAt - 1)).toEqual([])
    expect(attemptsAwaitingStatus(harness.subscription, timeoutAt).map((a) => a.paymentId)).toEqual([
      pid(JAN),
    ])

    const first = harness.wake(timeoutAt, { [pid(JAN)]: { status: "unknown" } })
    expect(commands(first)).toEqual([])
    expect(first.outcomes).toEqual([
      {
        paymentId: pid(JAN),
        status: "unknown",
        retryable: null,
        reason: "no result within the result timeout",
        hubReference: null,
        outcome: "awaiting_status",
        resultAt: timeoutAt,
        spendRelease: null,
      },
    ])
    expect(decisions(first, "result_overdue")[0]?.details).toMatchObject({ hubAnswer: "unknown" })
    expect(harness.state.open[0]).toMatchObject({ statusQueries: 1, nextQueryAt: timeoutAt + MINUTE })
    expect(harness.subscription.nextDueAt).toBe(timeoutAt + MINUTE)

    // Before the next query is due there is nothing to ask.
    expect(attemptsAwaitingStatus(harness.subscription, timeoutAt + 30_000)).toEqual([])

    let now = timeoutAt + MINUTE
    const expectedBackoff = [5 * MINUTE, 15 * MINUTE, HOUR, HOUR]
    for (const [index, backoff] of expectedBackoff.entries()) {
      const reply = index % 2 === 0 ? ("unreachable" as const) : { status: "unknown" as const }
      const again = harness.wake(now, { [pid(JAN)]: reply })
      expect(commands(again)).toEqual([])
      expect(again.outcomes).toEqual([])
      expect(harness.state.open[0]).toMatchObject({ statusQueries: index + 2, nextQueryAt: now + backoff })
      expect(harness.subscription.nextDueAt).toBe(now + backoff)
      now += backoff
    }
    // A wake without any answer (the hub was not asked) is still no reason to resend.
    expect(commands(harness.wake(now))).toEqual([])
    expect(harness.transitions.flatMap(commands)).toHaveLength(1)
  })

  it("an unreachable hub on the first query is recorded as such", () => {
    const harness = silentHarness()
    const first = harness.wake(timeoutAt, { [pid(JAN)]: "unreachable" })
    expect(first.outcomes.map((o) => o.status)).toEqual(["unknown"])
    expect(decisions(first, "result_overdue")[0]?.details).toMatchObject({ hubAnswer: "unreachable" })
  })

  it("a failed retryable status reply allows the retry", () => {
    const harness = silentHarness()
    harness.wake(timeoutAt, { [pid(JAN)]: { status: "unknown" } })
    const queryAt = timeoutAt + MINUTE
    const answered = harness.wake(queryAt, {
      [pid(JAN)]: hubResult(pid(JAN), "failed", true, queryAt - 1, "insufficient funds"),
    })
    expect(commands(answered)).toEqual([])
    expect(answered.outcomes.map((o) => [o.status, o.outcome])).toEqual([["failed", "retry_scheduled"]])
    expect(harness.state.open).toEqual([])
    expect(harness.state.retry).toMatchObject({ attempt: 2, at: queryAt + HOUR })
    expect(onlyCommand(harness.wake(queryAt + HOUR))).toMatchObject({ occurrence: JAN, attempt: 2 })
  })

  it("a failed but non-retryable or declined status reply is final", () => {
    for (const [status, retryable] of [
      ["failed", false],
      ["declined", true],
    ] as const) {
      const harness = silentHarness()
      const answered = harness.wake(timeoutAt, {
        [pid(JAN)]: hubResult(pid(JAN), status, retryable, timeoutAt),
      })
      expect(answered.outcomes.map((o) => o.outcome)).toEqual(["failed"])
      expect(harness.state.retry).toBeNull()
      expect(harness.state.open).toEqual([])
    }
  })

  it("a succeeded status reply settles the payment", () => {
    const harness = silentHarness()
    harness.wake(timeoutAt, { [pid(JAN)]: { status: "unknown" } })
    const settled = harness.wake(timeoutAt + MINUTE, {
      [pid(JAN)]: hubResult(pid(JAN), "succeeded", false, timeoutAt),
    })
    expect(settled.outcomes.map((o) => [o.status, o.outcome])).toEqual([["succeeded", "paid"]])
    expect(eventTypes(settled)).toEqual(["payment.succeeded"])
    expect(harness.state).toMatchObject({ open: [], paid: 1 })
    expect(harness.subscription.nextDueAt).toBe(FEB_DUE - 24 * HOUR)
  })

  it("a late hub result after the outcome was recorded unknown is applied", () => {
    const harness = silentHarness()
    harness.wake(timeoutAt, { [pid(JAN)]: { status: "unknown" } })
    expect(harness.recorded.get(pid(JAN))).toBe("unknown")
    const late = harness.result(pid(JAN), "succeeded", { at: timeoutAt + 30_000 })
    expect(late.outcomes.map((o) => o.outcome)).toEqual(["paid"])
    expect(harness.state.open).toEqual([])
  })
})

describe("12. maxPayments and endDate", () => {
  it("completes after maxPayments successes and never sends more", () => {
    const harness = monthlyHarness({ maxPayments: 3 })
    expect(payUntil(harness, 10)).toEqual([JAN, FEB, MAR])
    expect(harness.subscription).toMatchObject({
      status: "completed",
      statusReason: "max_payments_reached",
      version: 2,
      nextDueAt: null,
    })
    const last = harness.transitions.at(-1)
    expect(last === undefined ? [] : eventTypes(last)).toEqual([
      "payment.succeeded",
      "subscription.completed",
    ])
    expect(commands(harness.wake(at("2027-04-01T09:00:00Z")))).toEqual([])
    expect(harness.transitions.flatMap(commands)).toHaveLength(3)
  })

  it("counts an attempt in flight toward maxPayments and does not spin on a withheld notice", () => {
    const harness = dailyHarness({ maxPayments: 1 })
    const first = harness.wake("2027-01-01T09:00:00Z")
    expect(commands(first).map((c) => c.occurrence)).toEqual(["2027-01-01"])
    // No notice for 2027-01-02: it cannot be paid while 2027-01-01 might still succeed.
    expect(notifications(first, "payment.upcoming")).toEqual([])
    // Before the fix this stayed at 09:00 (the withheld notice) and the scheduler woke it on every tick.
    expect(harness.subscription.nextDueAt).toBe(at("2027-01-01T09:15:00Z"))
    const again = harness.wake("2027-01-01T09:01:00Z")
    expect(again.changed).toBe(false)
    const second = harness.wake("2027-01-02T09:00:00Z", { [pid("2027-01-01")]: { status: "unknown" } })
    expect(commands(second)).toEqual([])
    expect(decisions(second, "skipped").map((d) => [d.occurrence, d.reason])).toEqual([
      ["2027-01-02", "max_payments_in_flight"],
    ])
    harness.result(pid("2027-01-01"), "succeeded")
    expect(harness.subscription).toMatchObject({ status: "completed", statusReason: "max_payments_reached" })
  })

  it("a withheld notice goes out once the payment in flight fails for good", () => {
    const harness = dailyHarness({ maxPayments: 1 })
    harness.wake("2027-01-01T09:00:00Z")
    harness.result(pid("2027-01-01"), "declined", { at: "2027-01-01T09:05:00Z" })
    // The notice window opened at 09:00, so the subscription is due at once.
    expect(harness.subscription.nextDueAt).toBe(at("2027-01-01T09:00:00Z"))
    const notice = harness.wake("2027-01-01T09:06:00Z")
    expect(notifications(notice, "payment.upcoming").map((n) => n.data.occurrence)).toEqual(["2027-01-02"])
    expect(onlyCommand(harness.wake("2027-01-02T09:00:00Z")).occurrence).toBe("2027-01-02")
  })

  it("completes when the last occurrence before endDate settles", () => {
    const harness = monthlyHarness({ endDate: "2027-03-15" })
    harness.result(onlyCommand(harness.wake(JAN_DUE)).paymentId, "succeeded")
    harness.result(onlyCommand(harness.wake(FEB_DUE)).paymentId, "succeeded")
    harness.wake(MAR_DUE)
    expect(harness.state.cursor).toBeNull()
    expect(harness.subscription.status).toBe("active")
    // The last occurrence may still retry: there is no next occurrence to run into.
    harness.result(pid(MAR), "failed", { retryable: true })
    expect(harness.state.retry).toMatchObject({ attempt: 2, at: MAR_DUE + HOUR })
    harness.wakeWhenDue()
    const done = harness.result(pid(MAR, 2), "succeeded")
    expect(harness.subscription).toMatchObject({
      status: "completed",
      statusReason: "schedule_ended",
      version: 2,
    })
    expect(eventTypes(done)).toContain("subscription.completed")
    expect(harness.subscription.nextDueAt).toBeNull()
  })

  it("keeps paying after a failure until maxPayments successes", () => {
    const harness = monthlyHarness({ maxPayments: 2 })
    harness.result(onlyCommand(harness.wake(JAN_DUE)).paymentId, "declined")
    expect(payUntil(harness, 5)).toEqual([FEB, MAR])
    expect(harness.subscription.status).toBe("completed")
  })
})

describe("13. redelivered and contradicting results", () => {
  it("a second identical result changes nothing", () => {
    const harness = monthlyHarness()
    harness.wake(JAN_DUE)
    harness.result(pid(JAN), "succeeded")
    const before = harness.subscription
    const again = harness.result(pid(JAN), "succeeded")
    expect(again.changed).toBe(false)
    expect(again.outcomes).toEqual([])
    expect(again.decisions).toEqual([])
    expect(again.outgoing).toEqual([])
    expect(harness.subscription).toBe(before)
  })

  it("a redelivered retryable failure does not plan a second retry", () => {
    const harness = monthlyHarness()
    harness.wake(JAN_DUE)
    harness.result(pid(JAN), "failed", { retryable: true })
    const retry = harness.state.retry
    const again = harness.result(pid(JAN), "failed", { retryable: true, at: JAN_DUE + 30 * MINUTE })
    expect(again.changed).toBe(false)
    expect(harness.state.retry).toEqual(retry)
  })

  it("a contradicting result for a settled payment is recorded as a conflict and nothing else", () => {
    const harness = monthlyHarness()
    harness.wake(JAN_DUE)
    harness.result(pid(JAN), "succeeded")
    const before = harness.subscription
    const contradiction = harness.result(pid(JAN), "failed", { retryable: true, at: JAN_DUE + HOUR })
    expect(
      decisions(contradiction).map((d) => [d.outcome, d.paymentId, d.details.recorded, d.details.received]),
    ).toEqual([["result_conflict", pid(JAN), "succeeded", "failed"]])
    expect(contradiction.outcomes).toEqual([])
    expect(contradiction.outgoing).toEqual([])
    expect(contradiction.payments).toEqual([])
    expect(harness.subscription.state).toEqual(before.state)
    expect(harness.subscription.version).toBe(before.version)
    expect(harness.recorded.get(pid(JAN))).toBe("succeeded")
  })

  it("a second copy read as pending before the first was applied is not a conflict", () => {
    const harness = monthlyHarness()
    harness.wake(JAN_DUE)
    harness.result(pid(JAN), "succeeded")
    const copy = harness.accept({
      _tag: "HubResult",
      result: { paymentId: pid(JAN), status: "failed", retryable: true, at: "2027-01-01T09:00:01Z" },
      recordedStatus: "pending",
    })
    expect(copy.changed).toBe(false)
    expect(copy.decisions).toEqual([])
  })

  it("a result for a payment this subscription never sent changes nothing", () => {
    const harness = monthlyHarness()
    const stray = harness.result(pid(FEB), "succeeded")
    expect(stray.changed).toBe(false)
  })
})

describe("15. a success reported after a failure", () => {
  /** Attempt 1 of January failed as retryable, so attempt 2 is planned for an hour later. */
  const failedOnce = () => {
    const harness = monthlyHarness()
    harness.wake(JAN_DUE)
    harness.result(pid(JAN), "failed", { retryable: true, at: JAN_DUE + MINUTE })
    expect(harness.state.retry).toMatchObject({ occurrence: JAN, attempt: 2 })
    return harness
  }

  it("cancels the planned retry: the occurrence is paid and no further attempt is ever sent", () => {
    const harness = failedOnce()
    const late = harness.result(pid(JAN), "succeeded", { at: JAN_DUE + 10 * MINUTE })
    expect(late.outcomes.map((o) => [o.paymentId, o.status, o.outcome])).toEqual([
      [pid(JAN), "succeeded", "paid"],
    ])
    expect(decisions(late).map((d) => [d.outcome, d.reason, d.occurrence])).toEqual([
      ["late_success", null, JAN],
      ["retry_cancelled", "earlier_attempt_succeeded", JAN],
    ])
    expect(decisions(late, "retry_cancelled")[0]?.details).toMatchObject({ attempt: 2, paidBy: pid(JAN) })
    expect(events(late, "payment.succeeded")[0]?.data).toMatchObject({ paymentId: pid(JAN), occurrence: JAN })
    expect(notificationTypes(late)).toEqual(["payment.succeeded"])
    expect(harness.state).toMatchObject({ retry: null, paid: 1, failedInARow: 0 })
    // The retry's time passes, and so does the rest of the month: nothing more for January.
    expect(harness.subscription.nextDueAt).toBe(FEB_DUE - DAY)
    for (const when of [JAN_DUE + HOUR, JAN_DUE + 7 * HOUR, JAN_DUE + 2 * DAY]) {
      expect(commands(harness.wake(when))).toEqual([])
    }
    // The subscription moves on: February is paid as usual.
    expect(onlyCommand(harness.wake(FEB_DUE))).toMatchObject({ occurrence: FEB, attempt: 1 })
    expect(eventTypes(late)).not.toContain("payment.duplicate_suspected")
    expect(late.duplicates).toEqual([])
  })

  it("resets the failures in a row of an occurrence that had failed for good", () => {
    const harness = monthlyHarness()
    harness.wake(JAN_DUE)
    harness.result(pid(JAN), "failed", { retryable: false })
    expect(harness.state.failedInARow).toBe(1)
    const late = harness.result(pid(JAN), "succeeded", { at: JAN_DUE + HOUR })
    expect(late.outcomes.map((o) => o.outcome)).toEqual(["paid"])
    expect(harness.state).toMatchObject({ paid: 1, failedInARow: 0, retry: null })
  })

  it("a success learnt from the status query stops the retry the same way", () => {
    const harness = monthlyHarness()
    harness.wake(JAN_DUE)
    const timeout = JAN_DUE + policySettingsTimeout()
    harness.wake(timeout, { [pid(JAN)]: hubResult(pid(JAN), "failed", true, timeout) })
    expect(harness.state.retry).toMatchObject({ attempt: 2 })
    const late = harness.result(pid(JAN), "succeeded", { at: timeout + MINUTE })
    expect(decisions(late, "retry_cancelled")).toHaveLength(1)
    expect(commands(harness.wake(timeout + DAY))).toEqual([])
  })

  describe("with the retry already sent", () => {
    const retrySent = () => {
      const harness = failedOnce()
      expect(onlyCommand(harness.wake(JAN_DUE + MINUTE + HOUR))).toMatchObject({ attempt: 2 })
      return harness
    }

    it("raises payment.duplicate_suspected once and flags the retry", () => {
      const harness = retrySent()
      const late = harness.result(pid(JAN), "succeeded", { at: JAN_DUE + 2 * HOUR })
      expect(events(late, "payment.duplicate_suspected").map((e) => e.data)).toEqual([
        expect.objectContaining({
          paymentId: pid(JAN, 2),
          attempt: 2,
          occurrence: JAN,
          paidBy: pid(JAN),
          paidByAttempt: 1,
          secondStatus: "in_flight",
        }),
      ])
      expect(decisions(late, "duplicate_suspected").map((d) => d.paymentId)).toEqual([pid(JAN, 2)])
      expect(late.duplicates.map((d) => [d.paymentId, d.duplicateOf, d.state])).toEqual([
        [pid(JAN, 2), pid(JAN), "suspected"],
      ])
      expect(events(late, "payment.succeeded").map((e) => e.data.paymentId)).toEqual([pid(JAN)])
      expect(harness.state.paid).toBe(1)
      // A redelivered copy of the late success raises nothing more.
      const again = harness.result(pid(JAN), "succeeded", { at: JAN_DUE + 3 * HOUR })
      expect(again.changed).toBe(false)
    })

    it("when the retry succeeds too, the flag names both payments and the occurrence counts once", () => {
      const harness = retrySent()
      harness.result(pid(JAN), "succeeded", { at: JAN_DUE + 2 * HOUR })
      const second = harness.result(pid(JAN, 2), "succeeded", { at: JAN_DUE + 3 * HOUR })
      expect(second.outcomes.map((o) => [o.paymentId, o.status, o.outcome])).toEqual([
        [pid(JAN, 2), "succeeded", "duplicate"],
      ])
      expect(second.duplicates.map((d) => [d.paymentId, d.duplicateOf, d.state])).toEqual([
        [pid(JAN, 2), pid(JAN), "confirmed"],
      ])
      expect(decisions(second).map((d) => [d.outcome, d.details.paidBy])).toEqual([
        ["duplicate_confirmed", pid(JAN)],
      ])
      expect(eventTypes(second)).toEqual([])
      expect(notificationTypes(second)).toEqual([])
      expect(harness.state).toMatchObject({ paid: 1, failedInARow: 0, open: [] })
    })

    it("when the retry fails, the flag clears and the customer hears nothing more", () => {
      const harness = retrySent()
      harness.result(pid(JAN), "succeeded", { at: JAN_DUE + 2 * HOUR })
      const second = harness.result(pid(JAN, 2), "failed", { retryable: true, at: JAN_DUE + 3 * HOUR })
      expect(second.outcomes.map((o) => o.outcome)).toEqual(["failed"])
      expect(second.duplicates.map((d) => d.state)).toEqual(["cleared"])
      expect(eventTypes(second)).toEqual([])
      expect(notificationTypes(second)).toEqual([])
      expect(harness.state).toMatchObject({ retry: null, paid: 1, failedInARow: 0 })
      expect(commands(harness.wake(JAN_DUE + 2 * DAY))).toEqual([])
    })

    it("a retry's success learnt from the status query confirms the duplicate too", () => {
      const harness = retrySent()
      harness.result(pid(JAN), "succeeded", { at: JAN_DUE + HOUR + 5 * MINUTE })
      const overdue = harness.state.open[0]?.timeoutAt ?? 0
      const answered = harness.wake(overdue, {
        [pid(JAN, 2)]: hubResult(pid(JAN, 2), "succeeded", false, overdue),
      })
      expect(answered.duplicates.map((d) => [d.paymentId, d.state])).toEqual([[pid(JAN, 2), "confirmed"]])
      expect(harness.state.paid).toBe(1)
    })
  })

  it("a late success of an occurrence a retry already paid flags that retry as a confirmed duplicate", () => {
    const harness = failedOnce()
    harness.wake(JAN_DUE + MINUTE + HOUR)
    harness.result(pid(JAN, 2), "succeeded", { at: JAN_DUE + 2 * HOUR })
    const late = harness.result(pid(JAN), "succeeded", { at: JAN_DUE + 3 * HOUR })
    expect(late.outcomes.map((o) => [o.paymentId, o.outcome])).toEqual([[pid(JAN), "duplicate"]])
    expect(late.duplicates.map((d) => [d.paymentId, d.duplicateOf, d.state])).toEqual([
      [pid(JAN, 2), pid(JAN), "confirmed"],
    ])
    expect(events(late, "payment.duplicate_suspected")[0]?.data).toMatchObject({ secondStatus: "succeeded" })
    expect(eventTypes(late)).not.toContain("payment.succeeded")
    expect(harness.state.paid).toBe(1)
  })
})

describe("16. a late success counts toward the monthly cap", () => {
  const CAP = 25_000
  const limits = { ...noLimitSettings, monthlyMax: { RUB: CAP }, clientTimeZone: "UTC" }
  const capped = (startDate = "2027-01-01") =>
    PolicyHarness.create({
      schedule: daily({ startDate }),
      amount: 10_000,
      createdAt: "2026-12-30T00:00:00Z",
      limits,
    })
  const DAY1 = at("2027-01-01T09:00:00Z")
  const DAY2 = at("2027-01-02T09:00:00Z")
  const spentIn = (harness: PolicyHarness, month: string) => harness.spent.get(month) ?? 0

  /** Day 1 is sent and fails as retryable: what it counted is given back. */
  const failedOnce = () => {
    const harness = capped()
    expect(onlyCommand(harness.wake(DAY1))).toMatchObject({ occurrence: JAN, attempt: 1 })
    expect(spentIn(harness, "2027-01")).toBe(10_000)
    const failed = harness.result(pid(JAN), "failed", { retryable: true, at: DAY1 + MINUTE })
    expect(failed.outcomes.map((o) => o.spendRelease)).toEqual([{ month: "2027-01", amount: rub(10_000) }])
    expect(spentIn(harness, "2027-01")).toBe(0)
    return harness
  }

  it("counts the amount again in the month it was given back from, so the cap holds a later payment", () => {
    const harness = failedOnce()
    const late = harness.result(pid(JAN), "succeeded", { at: DAY1 + 10 * MINUTE })
    expect(late.outcomes.map((o) => [o.outcome, o.spendRelease, o.spendRestore])).toEqual([
      ["paid", null, { month: "2027-01", amount: rub(10_000) }],
    ])
    expect(spentIn(harness, "2027-01")).toBe(10_000)
    // Day 2 fits (20 000 of 25 000); day 3 would not, with day 1 counted.
    expect(onlyCommand(harness.wake(DAY2))).toMatchObject({ occurrence: "2027-01-02" })
    const day3 = harness.wake(at("2027-01-03T09:00:00Z"))
    expect(commands(day3)).toEqual([])
    expect(decisions(day3, "held").map((d) => [d.reason, d.occurrence])).toEqual([
      ["over_monthly_cap", "2027-01-03"],
    ])
    expect(decisions(day3, "held")[0]?.details).toMatchObject({
      limit: { spentThisMonth: rub(20_000), cap: rub(CAP) },
    })
  })

  it("counts it in the month the attempt was sent, even when the success is reported in the next", () => {
    const harness = capped("2027-01-31")
    const sentAt = at("2027-01-31T09:00:00Z")
    expect(onlyCommand(harness.wake(sentAt))).toMatchObject({ occurrence: "2027-01-31" })
    harness.result(pid("2027-01-31"), "failed", { retryable: false, at: sentAt + MINUTE })
    const late = harness.result(pid("2027-01-31"), "succeeded", { at: at("2027-02-01T08:00:00Z") })
    expect(late.outcomes[0]?.spendRestore).toEqual({ month: "2027-01", amount: rub(10_000) })
    expect([spentIn(harness, "2027-01"), spentIn(harness, "2027-02")]).toEqual([10_000, 0])
  })

  it("restores nothing for a payment sent without a monthly limit", () => {
    const harness = PolicyHarness.create({ schedule: monthly() })
    harness.wake(JAN_DUE)
    harness.result(pid(JAN), "failed", { retryable: true, at: JAN_DUE + MINUTE })
    const late = harness.result(pid(JAN), "succeeded", { at: JAN_DUE + 10 * MINUTE })
    expect(late.outcomes.map((o) => [o.outcome, o.spendRestore])).toEqual([["paid", undefined]])
  })

  describe("both attempts of an occurrence paid: both count", () => {
    const retrySent = () => {
      const harness = failedOnce()
      expect(onlyCommand(harness.wake(DAY1 + MINUTE + HOUR))).toMatchObject({ attempt: 2 })
      expect(spentIn(harness, "2027-01")).toBe(10_000)
      return harness
    }

    it("the retry in flight succeeds too after the late success", () => {
      const harness = retrySent()
      harness.result(pid(JAN), "succeeded", { at: DAY1 + 2 * HOUR })
      expect(spentIn(harness, "2027-01")).toBe(20_000)
      const second = harness.result(pid(JAN, 2), "succeeded", { at: DAY1 + 3 * HOUR })
      expect(second.duplicates.map((d) => d.state)).toEqual(["confirmed"])
      expect(second.outcomes.map((o) => [o.spendRelease, o.spendRestore])).toEqual([[null, undefined]])
      expect(spentIn(harness, "2027-01")).toBe(20_000)
    })

    it("the retry in flight fails: the cleared flag gives its spend back", () => {
      const harness = retrySent()
      harness.result(pid(JAN), "succeeded", { at: DAY1 + 2 * HOUR })
      const second = harness.result(pid(JAN, 2), "failed", { retryable: true, at: DAY1 + 3 * HOUR })
      expect(second.duplicates.map((d) => d.state)).toEqual(["cleared"])
      expect(second.outcomes[0]?.spendRelease).toEqual({ month: "2027-01", amount: rub(10_000) })
      expect(spentIn(harness, "2027-01")).toBe(10_000)
    })

    it("the retry had succeeded before the late success arrived", () => {
      const harness = retrySent()
      harness.result(pid(JAN, 2), "succeeded", { at: DAY1 + 2 * HOUR })
      expect(spentIn(harness, "2027-01")).toBe(10_000)
      const late = harness.result(pid(JAN), "succeeded", { at: DAY1 + 3 * HOUR })
      expect(late.duplicates.map((d) => [d.paymentId, d.state])).toEqual([[pid(JAN, 2), "confirmed"]])
      expect(spentIn(harness, "2027-01")).toBe(20_000)
    })
  })
})

describe("previewOccurrences", () => {
  it("shows skips and the maxPayments limit ahead", () => {
    const harness = monthlyHarness({ maxPayments: 2 })
    harness.skipNext()
    expect(previewOccurrences(harness.subscription, 4).map((o) => [o.date, o.willPay, o.reason])).toEqual([
      [JAN, false, "skip_next"],
      [FEB, true, null],
      [MAR, true, null],
      [APR, false, "max_payments_reached"],
    ])
    harness.pause()
    expect(previewOccurrences(harness.subscription, 1).map((o) => o.reason)).toEqual(["paused"])
    harness.cancel()
    expect(previewOccurrences(harness.subscription, 3)).toEqual([])
  })
})

// ---- 14. properties -----------------------------------------------------------

type Action =
  | { readonly _tag: "WakeWhenDue"; readonly replies: ReadonlyArray<ReplyChoice> }
  | { readonly _tag: "WakeAfter"; readonly ms: number; readonly replies: ReadonlyArray<ReplyChoice> }
  | {
      readonly _tag: "Result"
      /** `open`: an attempt still in flight; `any`: any payment sent so far (duplicates, late, out of order). */
      readonly target: "open" | "any"
      readonly pick: number
      readonly status: PaymentStatus
      readonly retryable: boolean
      readonly delayMs: number
    }
  | { readonly _tag: "Lifecycle"; readonly command: "Pause" | "Resume" | "Cancel" | "SkipNext" }
  | {
      readonly _tag: "Update"
      readonly amount: number | null
      readonly time: string | null
      readonly stale: boolean
    }

type ReplyChoice = "unknown" | "unreachable" | "absent" | { status: PaymentStatus; retryable: boolean }

const replyChoice: fc.Arbitrary<ReplyChoice> = fc.oneof(
  fc.constantFrom<ReplyChoice>("unknown", "unreachable", "absent"),
  fc.record({
    status: fc.constantFrom<PaymentStatus>("succeeded", "failed", "declined"),
    retryable: fc.boolean(),
  }),
)

const action: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      _tag: fc.constant("WakeWhenDue" as const),
      replies: fc.array(replyChoice, { maxLength: 3 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constant("WakeAfter" as const),
      ms: fc.oneof(fc.integer({ min: 0, max: 2 * HOUR }), fc.integer({ min: 0, max: 3 * DAY })),
      replies: fc.array(replyChoice, { maxLength: 3 }),
    }),
  },
  {
    weight: 8,
    arbitrary: fc.record({
      _tag: fc.constant("Result" as const),
      target: fc.constantFrom("open" as const, "open" as const, "open" as const, "any" as const),
      pick: fc.nat(),
      status: fc.constantFrom<PaymentStatus>("succeeded", "failed", "failed", "declined"),
      retryable: fc.constantFrom(true, true, false),
      delayMs: fc.integer({ min: 0, max: 20 * MINUTE }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("Lifecycle" as const),
      command: fc.constantFrom(
        "Pause" as const,
        "Resume" as const,
        "Resume" as const,
        "SkipNext" as const,
        "Cancel" as const,
      ),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("Update" as const),
      amount: fc.option(fc.integer({ min: 1, max: 500_000 }), { nil: null }),
      time: fc.option(fc.constantFrom("06:00", "09:00", "18:00", "23:30"), { nil: null }),
      stale: fc.boolean(),
    }),
  },
)

const scheduleArb: fc.Arbitrary<ScheduleInput> = fc
  .record({
    every: fc.constantFrom("day" as const, "week" as const, "month" as const),
    maxPayments: fc.option(fc.integer({ min: 1, max: 6 }), { nil: undefined }),
    endDate: fc.option(fc.constantFrom("2027-01-10", "2027-03-01", "2027-06-30"), { nil: undefined }),
    time: fc.constantFrom("00:00", "09:00", "23:59"),
    timezone: fc.constantFrom("UTC", "Europe/Moscow", "Europe/Berlin"),
  })
  .map(({ every, maxPayments, endDate, time, timezone }) => ({
    every,
    time,
    timezone,
    startDate: "2027-01-01",
    ...(every === "month" ? { dayOfMonth: 31 } : {}),
    ...(maxPayments === undefined ? {} : { maxPayments }),
    ...(endDate === undefined ? {} : { endDate }),
  }))

/** Runs `actions` against a fresh subscription; returns the harness with every step it took. */
const runScenario = (schedule: ScheduleInput, actions: ReadonlyArray<Action>): PolicyHarness => {
  const harness = PolicyHarness.create({ schedule, createdAt: "2026-12-31T12:00:00Z" })
  const sent: Array<string> = []
  const remember = (transition: Transition) => {
    for (const command of commands(transition)) sent.push(command.paymentId)
  }
  const replies = (choices: ReadonlyArray<ReplyChoice>, now: number) => {
    const map: Record<string, PaymentStatusReply | "unreachable"> = {}
    attemptsAwaitingStatus(harness.subscription, now).forEach((attempt, index) => {
      const choice = choices.length === 0 ? "unknown" : choices[index % choices.length]
      if (choice === undefined || choice === "absent") return
      if (choice === "unknown") map[attempt.paymentId] = { status: "unknown" }
      else if (choice === "unreachable") map[attempt.paymentId] = "unreachable"
      else map[attempt.paymentId] = hubResult(attempt.paymentId, choice.status, choice.retryable, now)
    })
    return map
  }
  for (const step of actions) {
    switch (step._tag) {
      case "WakeWhenDue": {
        const due = harness.subscription.nextDueAt
        if (due === null) break
        const now = Math.max(due, harness.now)
        remember(harness.wake(now, replies(step.replies, now)))
        break
      }
      case "WakeAfter": {
        const now = harness.now + step.ms
        remember(harness.wake(now, replies(step.replies, now)))
        break
      }
      case "Result": {
        const open = harness.state.open.map((attempt) => attempt.paymentId)
        const candidates = step.target === "open" && open.length > 0 ? open : sent
        if (candidates.length === 0) break
        const paymentId = candidates[step.pick % candidates.length] as string
        remember(
          harness.result(paymentId, step.status, {
            retryable: step.retryable,
            at: harness.now + step.delayMs,
          }),
        )
        break
      }
      case "Lifecycle":
        harness.send({ _tag: step.command, by: client })
        break
      case "Update": {
        const current = harness.subscription.terms.schedule
        harness.update(
          {
            ...(step.amount === null ? {} : { amount: step.amount }),
            ...(step.time === null
              ? {}
              : {
                  schedule: {
                    every: current.every,
                    time: step.time,
                    timezone: current.timezone,
                    startDate: current.startDate,
                    ...(current.dayOfMonth === undefined ? {} : { dayOfMonth: current.dayOfMonth }),
                    ...(current.maxPayments === undefined ? {} : { maxPayments: current.maxPayments }),
                    ...(current.endDate === undefined ? {} : { endDate: current.endDate }),
                  },
                }),
          },
          { expectedVersion: harness.subscription.version - (step.stale ? 1 : 0) },
        )
        break
      }
    }
  }
  return harness
}

const checkInvariants = (harness: PolicyHarness): void => {
  const id = harness.subscription.id
  const seenPaymentIds = new Set<string>()
  /** The first definite (non-unknown) outcome of each payment. */
  const verdict = new Map<string, { status: string; retryable: boolean | null }>()
  const occurrenceOf = new Map<string, string>()
  /** Occurrences the hub has said (in a result or a status answer) one of whose attempts succeeded. */
  const knownPaid = new Set<string>()
  const paidByOccurrence = new Map<string, number>()
  const eventIds = new Set<string>()
  let succeeded = 0

  for (const step of harness.steps) {
    if (Result.isFailure(step.result)) continue
    const transition = step.result.success
    for (const command of commands(transition)) {
      // Payment ids are unique per (occurrence, attempt) and derived from them.
      expect(command.paymentId).toBe(paymentIdFor(id, command.occurrence, command.attempt))
      expect(seenPaymentIds.has(command.paymentId)).toBe(false)
      seenPaymentIds.add(command.paymentId)
      occurrenceOf.set(command.paymentId, command.occurrence)
      // Never a further attempt once any attempt of the occurrence is known to have succeeded.
      expect(knownPaid.has(command.occurrence)).toBe(false)
      // Attempt n+1 only after attempt n definitely failed with retryable: true.
      if (command.attempt > 1) {
        const previous = verdict.get(paymentIdFor(id, command.occurrence, command.attempt - 1))
        expect(previous).toEqual({ status: "failed", retryable: true })
      }
      // Only an active subscription sends anything, and only when woken.
      expect(step.input._tag).toBe("Wake")
      expect(step.before.status).toBe("active")
      // A retry never goes out once the next occurrence is due.
      const next = step.before.state.cursor
      if (command.attempt > 1 && next !== null) expect(step.now).toBeLessThan(next.dueAt)
    }
    for (const outcome of transition.outcomes) {
      expect(seenPaymentIds.has(outcome.paymentId)).toBe(true)
      if (outcome.status === "unknown") continue
      const first = verdict.get(outcome.paymentId)
      // A payment's verdict is given once, except a success reported after a failure.
      if (first !== undefined) expect([first.status, outcome.status]).toContainEqual("succeeded")
      if (first !== undefined) expect(first.status).not.toBe("succeeded")
      if (first === undefined)
        verdict.set(outcome.paymentId, { status: outcome.status, retryable: outcome.retryable })
      if (outcome.status === "succeeded") {
        const key = occurrenceOf.get(outcome.paymentId) ?? outcome.paymentId
        // Counted as paid once per occurrence; a second success is a duplicate flagged for the bank.
        if (outcome.outcome === "paid") {
          paidByOccurrence.set(key, (paidByOccurrence.get(key) ?? 0) + 1)
          expect(paidByOccurrence.get(key)).toBe(1)
          // maxPayments bounds what the engine sends on what it knows; a success reported after
          // a failure pays an occurrence the engine had given up on, beyond its count.
          if (first === undefined) succeeded += 1
        } else {
          expect(outcome.outcome).toBe("duplicate")
          const flagged = transition.duplicates.some(
            (flag) =>
              flag.state === "confirmed" &&
              (flag.paymentId === outcome.paymentId || flag.duplicateOf === outcome.paymentId),
          )
          expect(flagged).toBe(true)
        }
      }
    }
    // What the hub said in this step counts as known from here on.
    const said: Array<[string, string]> = []
    if (step.input._tag === "HubResult") said.push([step.input.result.paymentId, step.input.result.status])
    if (step.input._tag === "Wake") {
      for (const [paymentId, reply] of step.input.statusReplies) {
        if (reply !== "unreachable") said.push([paymentId, reply.status])
      }
    }
    for (const [paymentId, status] of said) {
      const occurrence = occurrenceOf.get(paymentId)
      if (status === "succeeded" && occurrence !== undefined) knownPaid.add(occurrence)
    }
    for (const event of events(transition)) {
      expect(eventIds.has(event.eventId)).toBe(false)
      eventIds.add(event.eventId)
    }
    // Final statuses stay final; a pending skip is always for an occurrence still ahead.
    if (step.before.status === "cancelled" || step.before.status === "completed") {
      expect(transition.subscription.status).toBe(step.before.status)
    }
    const { lastSettled, skip } = transition.subscription.state
    for (const date of skip) if (lastSettled !== null) expect(date > lastSettled).toBe(true)
    // Liveness: a wake never leaves the subscription due again at the same instant.
    if (step.input._tag === "Wake") {
      const due = transition.subscription.nextDueAt
      if (due !== null) expect(due).toBeGreaterThan(step.now)
    }
    // The stored next due time is what the state says it is.
    expect(transition.subscription.nextDueAt).toBe(
      nextDueAt(
        transition.subscription.status,
        transition.subscription.state,
        harness.settings,
        transition.subscription.terms.schedule.maxPayments,
      ),
    )
  }
  const max = harness.subscription.terms.schedule.maxPayments
  if (max !== undefined) expect(succeeded).toBeLessThanOrEqual(max)
}

describe("14. properties", () => {
  it("pays at most once per occurrence, retries only after retryable failures, and never spins", () => {
    fc.assert(
      fc.property(scheduleArb, fc.array(action, { minLength: 10, maxLength: 80 }), (schedule, actions) => {
        checkInvariants(runScenario(schedule, actions))
      }),
      { seed: 20_270_101, numRuns: 150 },
    )
  })

  it("duplicate and out-of-order delivery of every result changes nothing the second time", () => {
    fc.assert(
      fc.property(
        scheduleArb,
        fc.array(action, { minLength: 5, maxLength: 40 }),
        fc.nat(),
        (schedule, actions, pick) => {
          const harness = runScenario(schedule, actions)
          const settled = [...harness.recorded.entries()].filter(
            ([, status]) => status === "succeeded" || status === "failed" || status === "declined",
          )
          if (settled.length === 0) return
          const [paymentId, status] = settled[pick % settled.length] as [string, PaymentStatus]
          const before = harness.subscription
          const again = harness.result(paymentId, status, { retryable: false })
          expect(again.changed).toBe(false)
          expect(harness.subscription).toBe(before)
        },
      ),
      { seed: 4_242, numRuns: 100 },
    )
  })
})
