/**
 * The ranges of every duration, date and count a channel, an operator or
 * the environment can set. One place, so the protocol, the console, the
 * command line and the configuration accept exactly the same values, and
 * docs/protocol.md and README.md describe these numbers.
 *
 * The ranges are the bank's: wide enough for any real autopayment, narrow
 * enough that no value can push an engine time past what RFC 3339, the
 * database and JavaScript dates can hold, or make the engine ask a provider
 * on every tick.
 */
import { Schema } from "effect"
import type { FieldIssue } from "./Errors.ts"
import * as IsoDuration from "./IsoDuration.ts"

/** The shortest and the longest value of one duration setting, as written and in milliseconds. */
export interface DurationRange {
  readonly min: string
  readonly max: string
  readonly minMillis: number
  readonly maxMillis: number
}

const durationRange = (min: string, max: string): DurationRange => ({
  min,
  max,
  minMillis: IsoDuration.millisOf(min),
  maxMillis: IsoDuration.millisOf(max),
})

/** Threshold `cooldown`: after a successful top-up, no new one for this long. */
export const cooldown = durationRange("PT1M", "P366D")
/** Debt `pollEvery`: how often the provider is asked what the account owes. */
export const pollEvery = durationRange("PT1H", "P92D")
/** A provider's `remindAfter`: how long after a one-off payment the client is offered to repeat it. */
export const remindAfter = durationRange("P1D", "P366D")
/** Each delay of the retry schedule (`RP_RETRY_SCHEDULE` and the console's override). */
export const retryDelay = durationRange("PT1M", "P30D")
/** How many retries the retry schedule may plan. */
export const RETRY_SCHEDULE_MAX_STEPS = 20

/** Why `text` is not a duration within `range`, or undefined when it is. */
export const durationProblem = (text: string, range: DurationRange): string | undefined => {
  const millis = IsoDuration.parseMillis(text)
  if (millis === undefined) {
    return `must be an ISO 8601 duration in weeks, days, hours, minutes or seconds (e.g. "PT1H", "P1D"), got ${JSON.stringify(text)}`
  }
  return millis < range.minMillis || millis > range.maxMillis
    ? `must be between ${range.min} and ${range.max}, got ${JSON.stringify(text)}`
    : undefined
}

/** An ISO 8601 duration string within `range` (the wire form stays a string). */
export const durationWithin = (range: DurationRange) =>
  Schema.String.check(Schema.makeFilter((text: string) => durationProblem(text, range)))

/**
 * The retry schedule's delays in milliseconds from comma-separated ISO 8601 durations, or why
 * `text` is not one: 1-20 delays, each within `retryDelay`.
 */
export const parseRetrySchedule = (text: string): ReadonlyArray<number> | string => {
  const parts = text.split(",").map((part) => part.trim())
  if (parts.length > RETRY_SCHEDULE_MAX_STEPS) {
    return `has ${parts.length} delays, more than the ${RETRY_SCHEDULE_MAX_STEPS} allowed`
  }
  const delays: Array<number> = []
  for (const [index, part] of parts.entries()) {
    const problem = durationProblem(part, retryDelay)
    if (problem !== undefined) return `delay ${index + 1} ${problem}`
    delays.push(IsoDuration.millisOf(part))
  }
  return delays
}

/** Schedule units, as in `ScheduleInput.every`. */
export type Frequency = "day" | "week" | "month" | "quarter" | "year"

/** The largest `interval` of each unit: at most five years between two occurrences. */
export const SCHEDULE_INTERVAL_MAX: Readonly<Record<Frequency, number>> = {
  day: 1826,
  week: 260,
  month: 60,
  quarter: 20,
  year: 5,
}

/** The largest `maxPayments`: a daily autopayment for over 27 years. */
export const MAX_PAYMENTS_MAX = 10_000

/** No schedule starts or ends before this date. */
export const FIRST_SCHEDULE_DATE = "2000-01-01"
/** A schedule starts at most this many years after the engine's current date. */
export const START_DATE_YEARS_AHEAD = 5
/** A schedule ends at most this many years after the engine's current date. */
export const END_DATE_YEARS_AHEAD = 50

/** `date` (YYYY-MM-DD) moved `years` years on; 29 February becomes 28 February; never past 9999-12-31. */
export const yearsAfter = (date: string, years: number): string => {
  // A local date just past the last instant may have five year digits: the year is all but "-MM-DD".
  const year = Number(date.slice(0, -6)) + years
  if (!(year <= 9999)) return "9999-12-31"
  const monthDay = date.slice(-5) === "02-29" ? "02-28" : date.slice(-5)
  return `${String(year).padStart(4, "0")}-${monthDay}`
}

/**
 * The schedule's dates measured against `today` (the engine's current date in the schedule's
 * zone): problems as field paths under `path`, none when the dates are in range. Dates must
 * already be real dates (the schema checks that first).
 */
export const scheduleDateIssues = (
  schedule: { readonly startDate: string; readonly endDate?: string | undefined },
  today: string,
  path: string,
): Array<FieldIssue> => {
  const issues: Array<FieldIssue> = []
  const latestStart = yearsAfter(today, START_DATE_YEARS_AHEAD)
  if (schedule.startDate > latestStart) {
    issues.push({
      path: `${path}.startDate`,
      message: `must be at most ${START_DATE_YEARS_AHEAD} years after the engine's current date ${today} (${latestStart} at the latest), got ${schedule.startDate}`,
    })
  }
  const latestEnd = yearsAfter(today, END_DATE_YEARS_AHEAD)
  if (schedule.endDate !== undefined && schedule.endDate > latestEnd) {
    issues.push({
      path: `${path}.endDate`,
      message: `must be at most ${END_DATE_YEARS_AHEAD} years after the engine's current date ${today} (${latestEnd} at the latest), got ${schedule.endDate}`,
    })
  }
  return issues
}
