/**
 * RFC 3339 timestamps on the wire, epoch milliseconds inside.
 *
 * The contract requires an explicit offset on every timestamp, so a
 * "2026-12-01T10:00:00" without one is refused rather than guessed.
 */
import { Schema } from "effect"

const rfc3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/

/** Epoch milliseconds of an RFC 3339 timestamp with offset, or undefined when it is not one. */
export const parseTimestamp = (text: string): number | undefined => {
  const match = rfc3339.exec(text)
  if (match === null) return undefined
  const [, year, month, day, hour, minute, second] = match.map(Number)
  if (
    month === undefined ||
    day === undefined ||
    year === undefined ||
    hour === undefined ||
    minute === undefined ||
    second === undefined ||
    month < 1 ||
    month > 12 ||
    day < 1 ||
    day > new Date(Date.UTC(year, month, 0)).getUTCDate() ||
    hour > 23 ||
    minute > 59 ||
    second > 59
  ) {
    return undefined
  }
  const millis = Date.parse(text)
  return Number.isNaN(millis) ? undefined : millis
}

/** An RFC 3339 timestamp with an explicit offset, kept as text. */
export const Timestamp = Schema.String.check(
  Schema.makeFilter((text: string) =>
    parseTimestamp(text) === undefined
      ? `must be an RFC 3339 timestamp with offset such as "2026-12-01T10:00:00+03:00", got ${JSON.stringify(text)}`
      : undefined,
  ),
)

/** The first instant RFC 3339 can write: 0000-01-01T00:00:00.000Z. */
export const FIRST_INSTANT = -62_167_219_200_000
/** The last instant RFC 3339 can write (a four-digit year): 9999-12-31T23:59:59.999Z. */
export const LAST_INSTANT = 253_402_300_799_999

/**
 * `millis` after `at`, but never past `LAST_INSTANT`: a time that far out means "never", and
 * beyond it neither RFC 3339, JavaScript dates nor Postgres can hold it.
 */
export const after = (at: number, millis: number): number => Math.min(at + millis, LAST_INSTANT)

/** Milliseconds of a timestamp already validated by `Timestamp`. */
export const millisOf = (text: string): number => {
  const millis = parseTimestamp(text)
  if (millis === undefined) throw new Error(`invalid timestamp: ${text}`)
  return millis
}

// The last two times formatted: a burst formats the same tick (and the same due time) for every
// payment, several times each, and toISOString is most of the cost of building a message.
let recentMillis = Number.NaN
let recentText = ""
let olderMillis = Number.NaN
let olderText = ""

/**
 * The engine's own timestamps: UTC, millisecond precision, `Z` offset. Total: a time outside what
 * RFC 3339 can write (a row stored by an older version may hold one) is written as the nearest
 * end, `0000-01-01T00:00:00.000Z` or `9999-12-31T23:59:59.999Z`.
 */
export const format = (millis: number): string => {
  if (millis === recentMillis) return recentText
  if (!(millis >= FIRST_INSTANT && millis <= LAST_INSTANT)) {
    return new Date(millis < FIRST_INSTANT ? FIRST_INSTANT : LAST_INSTANT).toISOString()
  }
  if (millis === olderMillis) {
    olderMillis = recentMillis
    recentMillis = millis
    const text = olderText
    olderText = recentText
    recentText = text
    return text
  }
  const text = new Date(millis).toISOString()
  olderMillis = recentMillis
  olderText = recentText
  recentMillis = millis
  recentText = text
  return text
}
