/**
 * A fast path for decoding the terms and state of scheduled rows, the rows a
 * month-start sweep reads by the hundred thousand.
 *
 * Each function accepts only what the kind's Schema accepts, in the shape the
 * engine writes, and returns exactly what the Schema would (same keys, same
 * order); anything else — a held payment, a missing field, an unexpected
 * type — gives `undefined`, and the caller decodes with the Schema, which
 * alone decides and reports. Stricter than the Schema is harmless; looser
 * would not be: `test/store/ScheduledRow.test.ts` checks both directions
 * against the Schema on generated and mutated values.
 */
import { isKnownCurrency, type Money } from "../domain/Money.ts"
import type {
  Cursor,
  OpenAttempt,
  RetryPlan,
  Schedule,
  ScheduledState,
  ScheduledTerms,
} from "../domain/Subscription.ts"

type Fields = Readonly<Record<string, unknown>>

const isObject = (value: unknown): value is Fields =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const isInt = (value: unknown): value is number => typeof value === "number" && Number.isSafeInteger(value)

const isFiniteNumber = (value: unknown): value is number =>
  typeof value === "number" && Number.isFinite(value)

const isNullableString = (value: unknown): value is string | null =>
  value === null || typeof value === "string"

const currencyPattern = /^[A-Z]{3}$/

const money = (value: unknown, positive: boolean): Money | undefined => {
  if (!isObject(value)) return undefined
  const { value: units, currency } = value
  if (!isInt(units) || (positive && units <= 0)) return undefined
  if (typeof currency !== "string" || !currencyPattern.test(currency) || !isKnownCurrency(currency))
    return undefined
  return { value: units, currency }
}

const everies: ReadonlySet<unknown> = new Set(["day", "week", "month", "quarter", "year"])

/** An optional integer field: absent, or present and an integer (never present and undefined). */
const optionalInt = (fields: Fields, key: string): "absent" | "ok" | "bad" =>
  !Object.hasOwn(fields, key) ? "absent" : isInt(fields[key]) ? "ok" : "bad"

const optionalString = (fields: Fields, key: string): "absent" | "ok" | "bad" =>
  !Object.hasOwn(fields, key) ? "absent" : typeof fields[key] === "string" ? "ok" : "bad"

const schedule = (value: unknown): Schedule | undefined => {
  if (!isObject(value)) return undefined
  const { every, interval, time, timezone, startDate } = value
  if (!everies.has(every) || !isInt(interval)) return undefined
  if (typeof time !== "string" || typeof timezone !== "string" || typeof startDate !== "string")
    return undefined
  const dayOfMonth = optionalInt(value, "dayOfMonth")
  const dayOfWeek = optionalInt(value, "dayOfWeek")
  const endDate = optionalString(value, "endDate")
  const maxPayments = optionalInt(value, "maxPayments")
  if (dayOfMonth === "bad" || dayOfWeek === "bad" || endDate === "bad" || maxPayments === "bad")
    return undefined
  // Keys in the Schema's order, the optional ones only when present.
  const result: Record<string, unknown> = { every, interval }
  if (dayOfMonth === "ok") result.dayOfMonth = value.dayOfMonth
  if (dayOfWeek === "ok") result.dayOfWeek = value.dayOfWeek
  result.time = time
  result.timezone = timezone
  result.startDate = startDate
  if (endDate === "ok") result.endDate = value.endDate
  if (maxPayments === "ok") result.maxPayments = value.maxPayments
  return result as Schedule
}

/** The terms of a scheduled row as `Schema.decodeUnknownSync(ScheduledTerms)` gives them, or undefined. */
export const scheduledTermsFast = (value: unknown): ScheduledTerms | undefined => {
  if (!isObject(value)) return undefined
  const amount = money(value.amount, true)
  if (amount === undefined) return undefined
  const decoded = schedule(value.schedule)
  return decoded === undefined ? undefined : { amount, schedule: decoded }
}

const cursor = (value: unknown): Cursor | null | undefined => {
  if (value === null) return null
  if (!isObject(value)) return undefined
  const { index, date, dueAt } = value
  if (!isInt(index) || typeof date !== "string" || !isFiniteNumber(dueAt)) return undefined
  return { index, date, dueAt }
}

const openAttempt = (value: unknown): OpenAttempt | undefined => {
  if (!isObject(value)) return undefined
  const { paymentId, occurrence, attempt, sentAt, timeoutAt, statusQueries, nextQueryAt } = value
  if (typeof paymentId !== "string" || typeof occurrence !== "string" || !isInt(attempt)) return undefined
  if (!isFiniteNumber(sentAt) || !isFiniteNumber(timeoutAt) || !isInt(statusQueries)) return undefined
  if (nextQueryAt !== null && !isFiniteNumber(nextQueryAt)) return undefined
  const amount = money(value.amount, false)
  if (amount === undefined) return undefined
  const spendMonth = optionalString(value, "spendMonth")
  if (spendMonth === "bad") return undefined
  const base = { paymentId, occurrence, attempt, amount, sentAt, timeoutAt, statusQueries, nextQueryAt }
  return spendMonth === "ok" ? { ...base, spendMonth: value.spendMonth as string } : base
}

const retryPlan = (value: unknown): RetryPlan | null | undefined => {
  if (value === null) return null
  if (!isObject(value)) return undefined
  const { occurrence, attempt, at } = value
  if (typeof occurrence !== "string" || !isInt(attempt) || !isFiniteNumber(at)) return undefined
  const amount = money(value.amount, false)
  return amount === undefined ? undefined : { occurrence, attempt, at, amount }
}

/**
 * The state of a scheduled row as `Schema.decodeUnknownSync(ScheduledState)` gives it, or undefined
 * (also whenever a payment is held: rare, and left to the Schema).
 */
export const scheduledStateFast = (value: unknown): ScheduledState | undefined => {
  if (!isObject(value)) return undefined
  const { noticeFor, skip, open, failedInARow, paid, lastSettled } = value
  if (!isNullableString(noticeFor) || !isNullableString(lastSettled)) return undefined
  if (!isInt(failedInARow) || !isInt(paid)) return undefined
  if (!Array.isArray(skip) || !skip.every((date) => typeof date === "string")) return undefined
  if (!Array.isArray(open)) return undefined
  const decodedCursor = cursor(value.cursor)
  if (decodedCursor === undefined) return undefined
  const decodedOpen: Array<OpenAttempt> = []
  for (const attempt of open) {
    const decoded = openAttempt(attempt)
    if (decoded === undefined) return undefined
    decodedOpen.push(decoded)
  }
  const retry = retryPlan(value.retry)
  if (retry === undefined) return undefined
  const state = {
    cursor: decodedCursor,
    noticeFor,
    skip: [...skip] as Array<string>,
    open: decodedOpen,
    retry,
    failedInARow,
    paid,
    lastSettled,
  }
  if (!Object.hasOwn(value, "held")) return state
  const { held } = value
  return Array.isArray(held) && held.length === 0 ? { ...state, held: [] } : undefined
}
