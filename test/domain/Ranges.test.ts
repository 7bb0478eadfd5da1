import { Schema } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import * as IsoDuration from "../../src/domain/IsoDuration.ts"
import * as Ranges from "../../src/domain/Ranges.ts"
import {
  type DebtSubscription,
  type ReminderSubscription,
  ScheduleInput,
  type ThresholdSubscription,
} from "../../src/domain/Subscription.ts"
import { toView } from "../../src/domain/SubscriptionView.ts"
import * as Timestamp from "../../src/domain/Timestamp.ts"

const DAY = 86_400_000
const durationRanges: ReadonlyArray<[string, Ranges.DurationRange]> = [
  ["cooldown", Ranges.cooldown],
  ["pollEvery", Ranges.pollEvery],
  ["remindAfter", Ranges.remindAfter],
  ["retryDelay", Ranges.retryDelay],
]

// Whole seconds, around and inside a range: the ends, one second either side, and anything between.
const millisAround = (range: Ranges.DurationRange) =>
  fc.oneof(
    fc.constantFrom(
      range.minMillis - 1_000,
      range.minMillis,
      range.maxMillis,
      range.maxMillis + 1_000,
      range.maxMillis + DAY,
    ),
    fc.integer({ min: 1, max: Math.ceil((range.maxMillis * 2) / 1_000) }).map((seconds) => seconds * 1_000),
  )

describe("duration ranges", () => {
  it("are well-formed: each end is a duration and the shortest is shorter than the longest", () => {
    for (const [name, range] of durationRanges) {
      expect([name, IsoDuration.parseMillis(range.min), IsoDuration.parseMillis(range.max)]).toEqual([
        name,
        range.minMillis,
        range.maxMillis,
      ])
      expect(range.minMillis).toBeGreaterThan(0)
      expect(range.minMillis).toBeLessThan(range.maxMillis)
    }
  })

  it("accept a duration exactly when it lies between the two ends", () => {
    for (const [, range] of durationRanges) {
      fc.assert(
        fc.property(millisAround(range), (millis) => {
          const text = IsoDuration.formatMillis(millis)
          const inside = millis >= range.minMillis && millis <= range.maxMillis
          expect(Ranges.durationProblem(text, range) === undefined).toBe(inside)
          expect(Schema.is(Ranges.durationWithin(range))(text)).toBe(inside)
        }),
      )
    }
  })

  it("refuse the reported cases with a message naming the range", () => {
    expect(Ranges.durationProblem("P14800000W", Ranges.cooldown)).toBe(
      'must be between PT1M and P366D, got "P14800000W"',
    )
    expect(Ranges.durationProblem("PT0.001S", Ranges.pollEvery)).toBe(
      'must be between PT1H and P92D, got "PT0.001S"',
    )
    expect(Ranges.durationProblem("P1M", Ranges.remindAfter)).toContain("must be an ISO 8601 duration")
    expect(Ranges.durationProblem("PT0S", Ranges.retryDelay)).toContain("must be between")
  })
})

describe("the retry schedule", () => {
  it("takes 1 to 20 delays, each within the retry delay range", () => {
    fc.assert(
      fc.property(fc.array(millisAround(Ranges.retryDelay), { minLength: 1, maxLength: 24 }), (delays) => {
        const parsed = Ranges.parseRetrySchedule(delays.map(IsoDuration.formatMillis).join(", "))
        const fine =
          delays.length <= Ranges.RETRY_SCHEDULE_MAX_STEPS &&
          delays.every((ms) => ms >= Ranges.retryDelay.minMillis && ms <= Ranges.retryDelay.maxMillis)
        expect(parsed).toEqual(fine ? delays : expect.any(String))
      }),
    )
    expect(Ranges.parseRetrySchedule("PT1H,,PT2H")).toContain("delay 2")
  })
})

const decodeSchedule = Schema.decodeUnknownResult(ScheduleInput)

describe("schedule ranges", () => {
  const frequencies = ["day", "week", "month", "quarter", "year"] as const

  it("take an interval up to five years' worth of the unit, and no more", () => {
    fc.assert(
      fc.property(fc.constantFrom(...frequencies), fc.integer({ min: -2, max: 2_000 }), (every, interval) => {
        const decoded = decodeSchedule({ every, interval, time: "09:00", startDate: "2027-01-01" })
        const inside = interval >= 1 && interval <= Ranges.SCHEDULE_INTERVAL_MAX[every]
        expect([every, interval, decoded._tag]).toEqual([every, interval, inside ? "Success" : "Failure"])
      }),
    )
  })

  it("take maxPayments from 1 to 10 000 and dates from 2000-01-01", () => {
    fc.assert(
      fc.property(fc.integer({ min: -1, max: 20_000 }), (maxPayments) => {
        const decoded = decodeSchedule({ every: "day", maxPayments, time: "09:00", startDate: "2027-01-01" })
        expect(decoded._tag).toBe(
          maxPayments >= 1 && maxPayments <= Ranges.MAX_PAYMENTS_MAX ? "Success" : "Failure",
        )
      }),
    )
    const dated = (startDate: string, endDate?: string) =>
      decodeSchedule({
        every: "day",
        time: "09:00",
        startDate,
        ...(endDate === undefined ? {} : { endDate }),
      })._tag
    expect([dated("2000-01-01"), dated("1999-12-31"), dated("2000-01-01", "1999-12-31")]).toEqual([
      "Success",
      "Failure",
      "Failure",
    ])
  })

  it("measure start and end dates against the engine's current date", () => {
    const days = fc.integer({ min: 0, max: 80 * 366 })
    fc.assert(
      fc.property(days, days, days, (todayDays, startAhead, endAhead) => {
        const dayText = (n: number) => new Date(Date.UTC(2000, 0, 1) + n * DAY).toISOString().slice(0, 10)
        const today = dayText(todayDays)
        const startDate = dayText(todayDays + (startAhead % (7 * 366)))
        const endDate = dayText(todayDays + endAhead)
        const paths = Ranges.scheduleDateIssues({ startDate, endDate }, today, "body.schedule").map(
          (i) => i.path,
        )
        const latestStart = Ranges.yearsAfter(today, Ranges.START_DATE_YEARS_AHEAD)
        const latestEnd = Ranges.yearsAfter(today, Ranges.END_DATE_YEARS_AHEAD)
        expect(paths).toEqual([
          ...(startDate > latestStart ? ["body.schedule.startDate"] : []),
          ...(endDate > latestEnd ? ["body.schedule.endDate"] : []),
        ])
      }),
    )
    expect(Ranges.yearsAfter("2028-02-29", 5)).toBe("2033-02-28")
    expect(Ranges.yearsAfter("9990-06-01", 50)).toBe("9999-12-31")
    expect(Ranges.yearsAfter("10000-01-01", 5)).toBe("9999-12-31")
  })
})

describe("reading stored values back never throws", () => {
  const anyTime = fc.oneof(
    fc.double(),
    fc.constantFrom(
      Timestamp.LAST_INSTANT,
      Timestamp.LAST_INSTANT + 1,
      Timestamp.FIRST_INSTANT - 1,
      8.64e15,
      8.64e15 + 1,
      Number.MAX_SAFE_INTEGER,
    ),
    fc.integer(),
  )

  it("formats any number as an RFC 3339 timestamp, clamped to years 0000-9999", () => {
    fc.assert(
      fc.property(anyTime, (millis) => {
        const text = Timestamp.format(millis)
        expect(Timestamp.parseTimestamp(text)).toBe(
          Number.isNaN(millis)
            ? Timestamp.LAST_INSTANT
            : // Dates keep whole milliseconds, cut toward zero (and -0 reads back as 0).
              Math.trunc(Math.min(Math.max(millis, Timestamp.FIRST_INSTANT), Timestamp.LAST_INSTANT)) + 0,
        )
      }),
    )
    expect(Timestamp.format(Date.parse("2027-01-10T10:00:00Z") + 14_800_000 * 7 * DAY)).toBe(
      "9999-12-31T23:59:59.999Z",
    )
  })

  it("never plans past the last timestamp", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: Timestamp.LAST_INSTANT }), fc.maxSafeNat(), (at, millis) => {
        const later = Timestamp.after(at, millis)
        expect(later).toBe(Math.min(at + millis, Timestamp.LAST_INSTANT))
        expect(Timestamp.parseTimestamp(Timestamp.format(later))).toBe(later)
      }),
    )
  })

  const common = {
    id: "00000000-0000-4000-8000-000000000001",
    clientId: "client-1",
    status: "active" as const,
    statusReason: null,
    hidden: false,
    version: 1,
    revision: 1,
    templateId: null,
    payee: { providerId: "p", account: "a", source: "s" },
    currency: "RUB",
    nextDueAt: null,
    createdChannel: "mobile",
    createdTerminal: null,
  }
  const rub = (value: number) => ({ value, currency: "RUB" })
  const held = (heldAt: number) => ({
    paymentId: "pay-1",
    occurrence: "occ-1",
    attempt: 1,
    amount: rub(1),
    reason: "over_debt_limit",
    heldAt,
    rule: { rule: "debt" },
    limit: { rule: "limit" },
  })

  it("shows every kind whatever times its stored state holds", () => {
    fc.assert(
      fc.property(
        anyTime,
        anyTime,
        anyTime,
        fc.constantFrom("active", "paused", "cancelled"),
        (a, b, c, status) => {
          const threshold: ThresholdSubscription = {
            ...common,
            status,
            createdAt: a,
            kind: "threshold",
            terms: { amount: rub(1), threshold: rub(0), cooldown: "P14800000W" },
            state: {
              newestEventAt: b,
              recentEventIds: [],
              lastBalance: null,
              open: [],
              cooldownUntil: c,
              paid: 1,
              held: [held(b)],
            },
          }
          const debt: DebtSubscription = {
            ...common,
            status,
            createdAt: c,
            kind: "debt",
            terms: { limit: rub(1), pollEvery: "P14800000W" },
            state: { nextPollAt: a, query: null, open: [], held: [held(c)], paid: 0, unansweredQueries: 0 },
          }
          const reminder: ReminderSubscription = {
            ...common,
            status,
            createdAt: b,
            kind: "reminder",
            terms: { remindAfter: "P14800000W" },
            state: {
              lastPayment: { paymentId: "one-off", amount: rub(1), source: "s", channel: "mobile", at: c },
              offers: 0,
              nextOfferAt: a,
              open: [],
              held: [],
            },
          }
          for (const subscription of [threshold, debt, reminder]) {
            const view = toView(subscription)
            for (const text of [view.createdAt, view.cooldownUntil, view.nextPollAt, view.nextOfferAt]) {
              if (typeof text === "string") expect(Timestamp.parseTimestamp(text)).toBeDefined()
            }
          }
        },
      ),
    )
  })
})
