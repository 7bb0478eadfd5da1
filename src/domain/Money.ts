/**
 * Money: an integer amount of minor units with an ISO 4217 currency.
 *
 * Every amount the engine reads, stores, compares or sums goes through this
 * module, so there is exactly one place where overflow, sign and currency
 * mismatches are decided. Floats never appear: JSON carries integers, Postgres
 * stores `bigint`, and arithmetic refuses to leave the safe-integer range.
 */
import { Schema } from "effect"

const knownCurrencies: ReadonlySet<string> = new Set(Intl.supportedValuesOf("currency"))

/** True for an ISO 4217 alphabetic code the runtime knows (e.g. "RUB", "USD"). */
export const isKnownCurrency = (code: string): boolean => knownCurrencies.has(code)

/** An ISO 4217 alphabetic currency code. */
export const Currency = Schema.String.check(
  Schema.makeFilter((code: string) =>
    /^[A-Z]{3}$/.test(code) && isKnownCurrency(code)
      ? undefined
      : `must be a known ISO 4217 alphabetic currency code, got ${JSON.stringify(code)}`,
  ),
)

/** An integer count of minor units that JSON and JavaScript numbers both carry exactly. */
export const MinorUnits = Schema.Number.check(
  Schema.makeFilter((value: number) =>
    Number.isSafeInteger(value)
      ? undefined
      : "must be an integer number of minor units (no fractions, no floats)",
  ),
)

/** Money as it appears on the wire and in the domain: `{ value, currency }`. */
export const Money = Schema.Struct({
  value: MinorUnits,
  currency: Currency,
})
export type Money = typeof Money.Type

/** Money that must be strictly positive: what a payment or a top-up moves. */
export const PositiveMoney = Money.check(
  Schema.makeFilter((money: Money) =>
    money.value > 0 ? undefined : { path: ["value"], issue: "must be greater than 0" },
  ),
)

/** Money that may be zero but never negative: thresholds and limits. */
export const NonNegativeMoney = Money.check(
  Schema.makeFilter((money: Money) =>
    money.value >= 0 ? undefined : { path: ["value"], issue: "must not be negative" },
  ),
)

/** Thrown (as a defect) when code tries to mix currencies or leave the safe range: a programming error. */
export class MoneyArithmeticError extends Error {
  override readonly name = "MoneyArithmeticError"
}

/** Builds a Money value, checking the invariants the schema checks. */
export const make = (value: number, currency: string): Money => {
  if (!Number.isSafeInteger(value)) throw new MoneyArithmeticError(`not a safe integer amount: ${value}`)
  return { value, currency }
}

const sameCurrency = (a: Money, b: Money): void => {
  if (a.currency !== b.currency) {
    throw new MoneyArithmeticError(`currency mismatch: ${a.currency} and ${b.currency}`)
  }
}

/** Sum of two amounts of one currency. */
export const add = (a: Money, b: Money): Money => {
  sameCurrency(a, b)
  return make(a.value + b.value, a.currency)
}

/** Difference of two amounts of one currency. */
export const subtract = (a: Money, b: Money): Money => {
  sameCurrency(a, b)
  return make(a.value - b.value, a.currency)
}

/** -1, 0 or 1 as `a` is less than, equal to or greater than `b` (same currency only). */
export const compare = (a: Money, b: Money): -1 | 0 | 1 => {
  sameCurrency(a, b)
  return a.value < b.value ? -1 : a.value > b.value ? 1 : 0
}

/** True when both amounts are equal in value and currency. */
export const equals = (a: Money, b: Money): boolean => a.currency === b.currency && a.value === b.value

/** How many minor-unit digits a currency has (RUB 2, JPY 0, BHD 3). */
export const minorDigits = (currency: string): number =>
  new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions().maximumFractionDigits ?? 2

/** Human-readable amount for logs and demo output, e.g. "1500.00 RUB". Never parsed back. */
export const format = (money: Money): string => {
  const digits = minorDigits(money.currency)
  const sign = money.value < 0 ? "-" : ""
  const units = Math.abs(money.value)
    .toString()
    .padStart(digits + 1, "0")
  const whole = digits === 0 ? units : units.slice(0, -digits)
  const fraction = digits === 0 ? "" : `.${units.slice(-digits)}`
  return `${sign}${whole}${fraction} ${money.currency}`
}
