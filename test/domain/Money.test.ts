import { Schema } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import * as Money from "../../src/domain/Money.ts"

const decodePositive = Schema.decodeUnknownExit(Money.PositiveMoney)

describe("Money", () => {
  it("accepts integer minor units with a known currency", () => {
    expect(decodePositive({ value: 150000, currency: "RUB" })._tag).toBe("Success")
  })

  it.each([
    [{ value: 1.5, currency: "RUB" }],
    [{ value: 0, currency: "RUB" }],
    [{ value: -100, currency: "RUB" }],
    [{ value: 2 ** 53, currency: "RUB" }],
    [{ value: "100", currency: "RUB" }],
    [{ value: 100, currency: "rub" }],
    [{ value: 100, currency: "XYZ" }],
    [{ value: 100 }],
  ])("refuses %j", (input) => {
    expect(decodePositive(input)._tag).toBe("Failure")
  })

  it("adds and compares within one currency, and refuses to mix currencies", () => {
    const rub = (value: number) => Money.make(value, "RUB")
    expect(Money.add(rub(100), rub(250))).toEqual(rub(350))
    expect(Money.compare(rub(100), rub(250))).toBe(-1)
    expect(() => Money.add(rub(1), Money.make(1, "USD"))).toThrow(Money.MoneyArithmeticError)
    expect(() => Money.add(rub(Number.MAX_SAFE_INTEGER), rub(1))).toThrow(Money.MoneyArithmeticError)
  })

  it("keeps addition exact and associative inside the safe range", () => {
    const amount = fc.integer({ min: -(2 ** 40), max: 2 ** 40 }).map((value) => Money.make(value, "RUB"))
    fc.assert(
      fc.property(amount, amount, amount, (a, b, c) => {
        expect(Money.add(Money.add(a, b), c)).toEqual(Money.add(a, Money.add(b, c)))
        expect(Money.subtract(Money.add(a, b), b)).toEqual(a)
      }),
    )
  })

  it("formats with the currency's own minor digits", () => {
    expect(Money.format(Money.make(150000, "RUB"))).toBe("1500.00 RUB")
    expect(Money.format(Money.make(5, "RUB"))).toBe("0.05 RUB")
    expect(Money.format(Money.make(1500, "JPY"))).toBe("1500 JPY")
    expect(Money.format(Money.make(-1234, "BHD"))).toBe("-1.234 BHD")
  })
})
