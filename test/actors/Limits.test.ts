import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  LimitCheck,
  type LimitSettings,
  monthOf,
  noLimitSettings,
  tracksMonthlySpend,
  unlimited,
} from "../../src/actors/Limits.ts"
import { at, rub } from "./policyHarness.ts"

const usd = (value: number) => ({ value, currency: "USD" })

const settings = (overrides: Partial<LimitSettings> = {}): LimitSettings => ({
  ...noLimitSettings,
  ...overrides,
})

const NOW = at("2027-01-15T12:00:00Z")

describe("monthOf", () => {
  it("counts the month in the client's zone around midnight", () => {
    // Moscow is UTC+3 all year: its February starts at 21:00 UTC on 31 January.
    expect(monthOf(at("2027-01-31T20:59:59.999Z"), "Europe/Moscow")).toBe("2027-01")
    expect(monthOf(at("2027-01-31T21:00:00Z"), "Europe/Moscow")).toBe("2027-02")
    expect(monthOf(at("2027-01-31T21:00:00Z"), "UTC")).toBe("2027-01")
    // West of Greenwich the month ends later than in UTC.
    expect(monthOf(at("2027-03-01T04:59:59Z"), "America/New_York")).toBe("2027-02")
    expect(monthOf(at("2027-03-01T05:00:00Z"), "America/New_York")).toBe("2027-03")
    // And the year with it.
    expect(monthOf(at("2026-12-31T21:00:00Z"), "Europe/Moscow")).toBe("2027-01")
    expect(monthOf(at("2026-12-31T21:00:00Z"), "UTC")).toBe("2026-12")
  })

  it("follows a zone's change of offset (DST)", () => {
    // Berlin: UTC+2 in summer, so 1 November starts at 23:00 UTC on 31 October (CET, +1, from 31 Oct 03:00).
    expect(monthOf(at("2027-10-31T22:59:59Z"), "Europe/Berlin")).toBe("2027-10")
    expect(monthOf(at("2027-10-31T23:00:00Z"), "Europe/Berlin")).toBe("2027-11")
    // 1 April starts at 22:00 UTC on 31 March (CEST, +2, since 28 March).
    expect(monthOf(at("2027-03-31T21:59:59Z"), "Europe/Berlin")).toBe("2027-03")
    expect(monthOf(at("2027-03-31T22:00:00Z"), "Europe/Berlin")).toBe("2027-04")
  })
})

describe("tracksMonthlySpend", () => {
  it("is true only for a currency with a monthly cap", () => {
    const limits = settings({
      monthlyMax: { RUB: 1_000_000 },
      paymentMax: { scheduled: { USD: 1 }, threshold: { USD: 1 }, debt: { USD: 1 } },
    })
    expect(tracksMonthlySpend(limits, "RUB")).toBe(true)
    expect(tracksMonthlySpend(limits, "USD")).toBe(false)
    expect(tracksMonthlySpend(noLimitSettings, "RUB")).toBe(false)
  })
})

describe("per-payment cap", () => {
  const limits = settings({
    paymentMax: { scheduled: { RUB: 1_000_000 }, threshold: { RUB: 50_000, USD: 10_000 }, debt: {} },
  })

  it("holds a payment above the cap of its kind and currency; one equal to the cap passes", () => {
    const check = new LimitCheck(limits, { kind: "threshold", currency: "RUB" }, null)
    expect(check.admit(rub(50_000), NOW)).toBeNull()
    expect(check.admit(rub(50_001), NOW)).toEqual({
      reason: "over_payment_cap",
      limit: {
        rule: "one threshold payment may not exceed the cap",
        cap: rub(50_000),
        amount: rub(50_001),
      },
    })
    expect(check.admit(usd(10_001), NOW)?.limit).toMatchObject({ cap: usd(10_000) })
    expect(check.admit(usd(10_000), NOW)).toBeNull()
  })

  it("the cap of one kind does not apply to another; a kind without a cap is not capped", () => {
    expect(
      new LimitCheck(limits, { kind: "scheduled", currency: "RUB" }, null).admit(rub(60_000), NOW),
    ).toBeNull()
    expect(
      new LimitCheck(limits, { kind: "scheduled", currency: "RUB" }, null).admit(rub(1_000_001), NOW)?.reason,
    ).toBe("over_payment_cap")
    expect(
      new LimitCheck(limits, { kind: "debt", currency: "RUB" }, null).admit(rub(10 ** 12), NOW),
    ).toBeNull()
  })

  it("a currency without a cap is not capped", () => {
    const check = new LimitCheck(limits, { kind: "threshold", currency: "EUR" }, null)
    expect(check.admit({ value: 10 ** 12, currency: "EUR" }, NOW)).toBeNull()
  })
})

describe("monthly cap", () => {
  const limits = settings({ monthlyMax: { RUB: 100_000 }, clientTimeZone: "Europe/Moscow" })
  const subscription = { kind: "debt", currency: "RUB" } as const

  it("adds the payment to what the client spent this month, as read before deciding", () => {
    const check = new LimitCheck(limits, subscription, { month: "2027-01", spent: 70_000 })
    expect(check.admit(rub(30_000), NOW)).toBeNull()
    expect(check.admit(rub(1), NOW)).toEqual({
      reason: "over_monthly_cap",
      limit: {
        rule: "a client's autopayments in one calendar month may not exceed the cap",
        month: "2027-01",
        timeZone: "Europe/Moscow",
        cap: rub(100_000),
        spentThisMonth: rub(100_000),
        amount: rub(1),
      },
    })
  })

  it("two payments in one decision are checked together; one that is held does not count", () => {
    const check = new LimitCheck(limits, subscription, { month: "2027-01", spent: 20_000 })
    expect(check.admit(rub(50_000), NOW)).toBeNull()
    const held = check.admit(rub(40_000), NOW)
    expect(held?.reason).toBe("over_monthly_cap")
    expect(held?.limit).toMatchObject({ spentThisMonth: rub(70_000), amount: rub(40_000) })
    // The held one was not counted: a smaller one still fits exactly.
    expect(check.admit(rub(30_000), NOW)).toBeNull()
    expect(check.admit(rub(1), NOW)?.limit).toMatchObject({ spentThisMonth: rub(100_000) })
  })

  it("a payment over the per-payment cap is held for that and not counted toward the month", () => {
    const both = settings({
      monthlyMax: { RUB: 100_000 },
      paymentMax: { ...noLimitSettings.paymentMax, debt: { RUB: 60_000 } },
    })
    const check = new LimitCheck(both, subscription, { month: "2027-01", spent: 0 })
    expect(check.admit(rub(70_000), NOW)?.reason).toBe("over_payment_cap")
    expect(check.admit(rub(60_000), NOW)).toBeNull()
    expect(check.admit(rub(40_000), NOW)).toBeNull()
  })

  it("a reading of another month is not this month's spend", () => {
    const check = new LimitCheck(limits, subscription, { month: "2026-12", spent: 100_000 })
    expect(check.admit(rub(100_000), NOW)).toBeNull()
  })

  it("the month is the client's: just after midnight in Moscow a February reading applies", () => {
    const lateJanuaryUtc = at("2027-01-31T22:00:00Z")
    const february = { month: "2027-02", spent: 90_000 }
    const moscow = new LimitCheck(limits, subscription, february)
    expect(moscow.admit(rub(20_000), lateJanuaryUtc)?.limit).toMatchObject({ month: "2027-02" })
    const utc = new LimitCheck({ ...limits, clientTimeZone: "UTC" }, subscription, february)
    expect(utc.admit(rub(20_000), lateJanuaryUtc)).toBeNull()
  })

  it("without a reading the month starts from nothing (the commit re-checks under lock)", () => {
    const check = new LimitCheck(limits, subscription, null)
    expect(check.admit(rub(100_000), NOW)).toBeNull()
    expect(check.admit(rub(1), NOW)?.reason).toBe("over_monthly_cap")
  })

  it("a cap in another currency does not apply", () => {
    const check = new LimitCheck(settings({ monthlyMax: { USD: 1 } }), subscription, null)
    expect(check.admit(rub(10 ** 9), NOW)).toBeNull()
    expect(check.admit(rub(10 ** 9), NOW)).toBeNull()
  })

  it("never lets the month go over the cap, and admits whatever still fits", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 200_000 }),
        fc.array(fc.integer({ min: 1, max: 60_000 }), { maxLength: 20 }),
        (spent, amounts) => {
          const check = new LimitCheck(limits, subscription, { month: "2027-01", spent })
          let total = spent
          for (const value of amounts) {
            const fits = total + value <= 100_000
            expect(check.admit(rub(value), NOW) === null).toBe(fits)
            if (fits) total += value
          }
        },
      ),
      { seed: 77, numRuns: 300 },
    )
  })
})

describe("spendOf", () => {
  it("is recorded only when a monthly cap applies to the currency", () => {
    const capsOnly = settings({
      paymentMax: { scheduled: { RUB: 1 }, threshold: { RUB: 1 }, debt: { RUB: 1 } },
    })
    expect(
      new LimitCheck(capsOnly, { kind: "debt", currency: "RUB" }, null).spendOf(rub(5), NOW, true),
    ).toBeNull()
    expect(unlimited({ kind: "scheduled", currency: "RUB" }).spendOf(rub(5), NOW, true)).toBeNull()
    const usdCap = settings({ monthlyMax: { USD: 100 } })
    expect(
      new LimitCheck(usdCap, { kind: "debt", currency: "RUB" }, null).spendOf(rub(5), NOW, true),
    ).toBeNull()
  })

  it("names the client's month and whether the cap was checked", () => {
    const limits = settings({ monthlyMax: { RUB: 100 }, clientTimeZone: "Europe/Moscow" })
    const check = new LimitCheck(limits, { kind: "threshold", currency: "RUB" }, null)
    expect(check.spendOf(rub(5), NOW, true)).toEqual({ month: "2027-01", checked: true })
    expect(check.spendOf(rub(5), at("2027-01-31T21:30:00Z"), false)).toEqual({
      month: "2027-02",
      checked: false,
    })
  })
})

describe("unlimited", () => {
  it("admits anything and records no spend", () => {
    const check = unlimited({ kind: "debt", currency: "RUB" })
    for (let index = 0; index < 3; index++) expect(check.admit(rub(Number.MAX_SAFE_INTEGER), NOW)).toBeNull()
    expect(check.reading).toBeNull()
  })
})
