import { Exit, Schema } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { ScheduledState, ScheduledTerms } from "../../src/domain/Subscription.ts"
import { scheduledStateFast, scheduledTermsFast } from "../../src/store/ScheduledRow.ts"

const schemaTerms = Schema.decodeUnknownExit(ScheduledTerms)
const schemaState = Schema.decodeUnknownExit(ScheduledState)

const json = fc.jsonValue({ maxDepth: 2 })
const int = fc.oneof(
  fc.integer({ min: -5, max: 100 }),
  fc.maxSafeInteger(),
  fc.double(),
  fc.constant(2 ** 60),
)
const currency = fc.constantFrom("RUB", "USD", "EUR", "JPY", "XXX", "ZZZ", "rub", "RUBL", "")
const money = fc.record({ value: int, currency })
const text = fc.oneof(fc.constantFrom("2027-01-01", "09:00", "Europe/Moscow"), fc.string({ maxLength: 12 }))
const time = fc.oneof(fc.integer({ min: 0, max: 4_102_444_800_000 }), fc.double())

const schedule = fc.record(
  {
    every: fc.constantFrom("day", "week", "month", "quarter", "year", "fortnight"),
    interval: int,
    dayOfMonth: int,
    dayOfWeek: int,
    time: text,
    timezone: text,
    startDate: text,
    endDate: text,
    maxPayments: int,
  },
  { requiredKeys: ["every", "interval", "time", "timezone", "startDate"] },
)
const terms = fc.record({ amount: money, schedule })

const openAttempt = fc.record(
  {
    paymentId: text,
    occurrence: text,
    attempt: int,
    amount: money,
    sentAt: time,
    timeoutAt: time,
    statusQueries: int,
    nextQueryAt: fc.option(time, { nil: null }),
    spendMonth: text,
  },
  {
    requiredKeys: [
      "paymentId",
      "occurrence",
      "attempt",
      "amount",
      "sentAt",
      "timeoutAt",
      "statusQueries",
      "nextQueryAt",
    ],
  },
)
const state = fc.record(
  {
    cursor: fc.option(fc.record({ index: int, date: text, dueAt: time }), { nil: null }),
    noticeFor: fc.option(text, { nil: null }),
    skip: fc.array(text, { maxLength: 3 }),
    open: fc.array(openAttempt, { maxLength: 3 }),
    retry: fc.option(fc.record({ occurrence: text, attempt: int, at: time, amount: money }), { nil: null }),
    failedInARow: int,
    paid: int,
    lastSettled: fc.option(text, { nil: null }),
    held: fc.constantFrom([], [{ paymentId: "p" }]),
  },
  {
    requiredKeys: ["cursor", "noticeFor", "skip", "open", "retry", "failedInARow", "paid", "lastSettled"],
  },
)

/** `value` with one field somewhere inside it dropped, replaced or added. */
const mutated = (value: fc.Arbitrary<unknown>) =>
  fc.tuple(value, fc.nat(), json, fc.constantFrom("drop", "replace", "add")).map(([v, pick, other, how]) => {
    const copy = structuredClone(v)
    const objects: Array<Record<string, unknown>> = []
    const walk = (node: unknown) => {
      if (typeof node !== "object" || node === null) return
      if (!Array.isArray(node)) objects.push(node as Record<string, unknown>)
      for (const child of Object.values(node)) walk(child)
    }
    walk(copy)
    const target = objects[pick % objects.length]
    if (target === undefined) return copy
    const keys = Object.keys(target)
    const key = keys[pick % Math.max(1, keys.length)] ?? "extra"
    if (how === "drop") delete target[key]
    else if (how === "replace") target[key] = other
    else target[`extra${pick}`] = other
    return copy
  })

/**
 * The fast path never accepts what the Schema refuses, and when it accepts, gives the Schema's
 * value exactly: the same JSON, key order included (the state is compared and stored as JSON).
 */
const agrees = <A>(
  fast: (value: unknown) => A | undefined,
  schema: (value: unknown) => Exit.Exit<A, unknown>,
  value: unknown,
) => {
  const quick = fast(value)
  if (quick === undefined) return
  const slow = schema(value)
  expect(Exit.isSuccess(slow)).toBe(true)
  if (Exit.isSuccess(slow)) {
    expect(quick).toStrictEqual(slow.value)
    expect(JSON.stringify(quick)).toBe(JSON.stringify(slow.value))
  }
}

describe("scheduled row fast path", () => {
  it("agrees with the Schema on terms, valid or not", () => {
    fc.assert(
      fc.property(terms, (value) => agrees(scheduledTermsFast, schemaTerms, value)),
      { numRuns: 2_000 },
    )
    fc.assert(
      fc.property(mutated(terms), (value) => agrees(scheduledTermsFast, schemaTerms, value)),
      { numRuns: 2_000 },
    )
  })

  it("agrees with the Schema on states, valid or not", () => {
    fc.assert(
      fc.property(state, (value) => agrees(scheduledStateFast, schemaState, value)),
      { numRuns: 2_000 },
    )
    fc.assert(
      fc.property(mutated(state), (value) => agrees(scheduledStateFast, schemaState, value)),
      { numRuns: 2_000 },
    )
  })

  it("takes the rows the engine writes, whatever their key order", () => {
    const written = {
      amount: { value: 150_000, currency: "RUB" },
      schedule: {
        every: "month",
        interval: 1,
        dayOfMonth: 1,
        time: "09:00",
        timezone: "Europe/Moscow",
        startDate: "2026-01-01",
      },
    }
    const reordered = { schedule: { ...written.schedule, every: "month" }, amount: written.amount }
    for (const value of [written, reordered]) {
      expect(scheduledTermsFast(value)).toBeDefined()
      agrees(scheduledTermsFast, schemaTerms, value)
    }
    const stateRow = {
      cursor: { index: 12, date: "2027-01-01", dueAt: 1_798_783_200_000 },
      noticeFor: "2027-01-01",
      skip: [],
      open: [
        {
          paymentId: "3f2a",
          occurrence: "2027-01-01",
          attempt: 1,
          amount: { value: 150_000, currency: "RUB" },
          sentAt: 1_798_783_200_000,
          timeoutAt: 1_798_783_500_000,
          statusQueries: 0,
          nextQueryAt: null,
          spendMonth: "2027-01",
        },
      ],
      retry: null,
      failedInARow: 0,
      paid: 11,
      lastSettled: "2026-12-01",
      held: [],
    }
    const withoutHeld: Record<string, unknown> = { ...stateRow }
    delete withoutHeld.held
    const reorderedState = Object.fromEntries(Object.entries(stateRow).reverse())
    for (const value of [stateRow, withoutHeld, reorderedState]) {
      expect(scheduledStateFast(value)).toBeDefined()
      agrees(scheduledStateFast, schemaState, value)
    }
  })

  it("leaves held payments to the Schema", () => {
    expect(
      scheduledStateFast({
        cursor: null,
        noticeFor: null,
        skip: [],
        open: [],
        retry: null,
        failedInARow: 0,
        paid: 0,
        lastSettled: null,
        held: [{ paymentId: "p" }],
      }),
    ).toBeUndefined()
  })
})
