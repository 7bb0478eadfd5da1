import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { compare, reasonOf, resultMismatch } from "../../src/actors/Matching.ts"
import { hubResult, rub } from "./policyHarness.ts"

const PAYMENT_ID = "6b1f2a3c-4d5e-4f60-8a7b-9c0d1e2f3a4b"
const SUBSCRIPTION_ID = "0b8f6a52-3c1e-4d7a-9f11-2a4b6c8d0e1f"
const sent = {
  paymentId: PAYMENT_ID,
  subscriptionId: SUBSCRIPTION_ID,
  occurrence: "2027-01-01",
  attempt: 2,
  amount: rub(150_000),
}
const bare = hubResult(PAYMENT_ID, "succeeded", false, Date.parse("2027-01-01T06:00:00Z"))

describe("resultMismatch", () => {
  it("finds nothing in the contract's bare result, nor in one repeating the command exactly", () => {
    expect(resultMismatch(sent, bare)).toBeUndefined()
    expect(
      resultMismatch(sent, {
        ...bare,
        subscriptionId: SUBSCRIPTION_ID.toUpperCase(),
        occurrence: "2027-01-01",
        attempt: 2,
        amount: rub(150_000),
      }),
    ).toBeUndefined()
  })

  it("names the amount and currency a result repeats differently", () => {
    const mismatch = resultMismatch(sent, { ...bare, amount: { value: 1_500, currency: "USD" } })
    expect(mismatch?.disagreements).toEqual([
      { field: "amount.value", expected: "150000", received: "1500" },
      { field: "amount.currency", expected: "RUB", received: "USD" },
    ])
    expect(reasonOf("result", mismatch ?? { _tag: "Mismatch", against: "", disagreements: [] })).toBe(
      `result does not match the payment it names (${PAYMENT_ID}): ` +
        `amount.value is "1500", expected "150000"; amount.currency is "USD", expected "RUB"`,
    )
  })

  it("names another subscription, occurrence or attempt", () => {
    const mismatch = resultMismatch(sent, {
      ...bare,
      subscriptionId: "11111111-2222-4333-8444-555555555555",
      occurrence: "2027-02-01",
      attempt: 1,
    })
    expect(mismatch?.disagreements.map((d) => d.field)).toEqual(["subscriptionId", "occurrence", "attempt"])
  })

  it("a carried field that differs is always found; fields not carried are never", () => {
    fc.assert(
      fc.property(
        fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined }),
        fc.option(fc.constantFrom("RUB", "USD"), { nil: undefined }),
        (attempt, currency) => {
          const result = {
            ...bare,
            ...(attempt === undefined ? {} : { attempt }),
            ...(currency === undefined ? {} : { amount: { value: 150_000, currency } }),
          }
          const wrong =
            (attempt !== undefined && attempt !== 2) || (currency !== undefined && currency !== "RUB")
          expect(resultMismatch(sent, result) !== undefined).toBe(wrong)
        },
      ),
    )
  })
})

describe("compare", () => {
  it("skips what the message does not carry and keeps the order of the checks", () => {
    expect(
      compare("x", [
        ["a", "1", undefined],
        ["b", "2", "3"],
        ["c", "4", "4"],
        ["d", "5", "6"],
      ])?.disagreements.map((d) => d.field),
    ).toEqual(["b", "d"])
    expect(compare("x", [["a", "1", "1"]])).toBeUndefined()
  })
})
