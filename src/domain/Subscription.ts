/**
 * Subscriptions: their terms as customers state them, and the runtime state
 * the actor keeps between messages.
 *
 * Terms are stored as they arrived (normalised with defaults), so what a
 * channel shows is what the customer agreed to. The runtime state is the
 * actor's memory, stored beside the terms in one row and decoded with its
 * Schema whenever it is read back.
 */
import { Schema } from "effect"
import * as Calendar from "./Calendar.ts"
import { Money, PositiveMoney } from "./Money.ts"

/** What kind of autopayment a subscription is. */
export const Kind = Schema.Literals(["scheduled", "threshold", "debt", "reminder"])
export type Kind = typeof Kind.Type

/** Lifecycle status; `cancelled` and `completed` are final. */
export const Status = Schema.Literals(["active", "paused", "cancelled", "completed"])
export type Status = typeof Status.Type

/** True for statuses no operation can leave. */
export const isFinal = (status: Status): boolean => status === "cancelled" || status === "completed"

/** The default zone of a schedule when the channel sends none. */
export const DEFAULT_TIMEZONE = "Europe/Moscow"

const checked = <T>(predicate: (value: T) => boolean, message: (value: T) => string) =>
  Schema.makeFilter((value: T) => (predicate(value) ? undefined : message(value)))

const LocalDate = Schema.String.check(
  checked(
    Calendar.isValidLocalDate,
    (text) => `must be a real calendar date YYYY-MM-DD, got ${JSON.stringify(text)}`,
  ),
)
const LocalTime = Schema.String.check(
  checked(
    Calendar.isValidLocalTime,
    (text) => `must be a time of day HH:MM (00:00-23:59), got ${JSON.stringify(text)}`,
  ),
)
const TimeZone = Schema.String.check(
  checked(
    Calendar.isValidTimeZone,
    (text) => `must be an IANA time zone such as "Europe/Moscow", got ${JSON.stringify(text)}`,
  ),
)
const intBetween = (min: number, max: number) =>
  Schema.Int.check(Schema.isBetween({ minimum: min, maximum: max }))

/** A schedule as a channel sends it; optional fields take the contract's defaults. */
export const ScheduleInput = Schema.Struct({
  every: Schema.Literals(["day", "week", "month", "quarter", "year"]),
  interval: Schema.optionalKey(intBetween(1, 1_000)),
  dayOfMonth: Schema.optionalKey(intBetween(1, 31)),
  dayOfWeek: Schema.optionalKey(intBetween(1, 7)),
  time: LocalTime,
  timezone: Schema.optionalKey(TimeZone),
  startDate: LocalDate,
  endDate: Schema.optionalKey(LocalDate),
  maxPayments: Schema.optionalKey(intBetween(1, 100_000)),
}).check(
  Schema.makeFilter((schedule) => {
    const issues: Array<Schema.FilterIssue> = []
    const monthly = schedule.every === "month" || schedule.every === "quarter" || schedule.every === "year"
    if (schedule.dayOfMonth !== undefined && !monthly) {
      issues.push({
        path: ["dayOfMonth"],
        issue: `only applies when every is month, quarter or year, not ${schedule.every}`,
      })
    }
    if (schedule.dayOfWeek !== undefined && schedule.every !== "week") {
      issues.push({ path: ["dayOfWeek"], issue: `only applies when every is week, not ${schedule.every}` })
    }
    if (schedule.endDate !== undefined && schedule.endDate < schedule.startDate) {
      issues.push({ path: ["endDate"], issue: `must not be before startDate ${schedule.startDate}` })
    }
    return issues
  }),
)
export type ScheduleInput = typeof ScheduleInput.Type

/** A schedule with every default filled in: what is stored and shown back. */
export const Schedule = Schema.Struct({
  every: Schema.Literals(["day", "week", "month", "quarter", "year"]),
  interval: Schema.Int,
  dayOfMonth: Schema.optionalKey(Schema.Int),
  dayOfWeek: Schema.optionalKey(Schema.Int),
  time: Schema.String,
  timezone: Schema.String,
  startDate: Schema.String,
  endDate: Schema.optionalKey(Schema.String),
  maxPayments: Schema.optionalKey(Schema.Int),
})
export type Schedule = typeof Schedule.Type

/** Fills the contract's defaults into a schedule input. */
export const normalizeSchedule = (input: ScheduleInput): Schedule => ({
  ...input,
  interval: input.interval ?? 1,
  timezone: input.timezone ?? DEFAULT_TIMEZONE,
})

/** The calendar rule of a stored schedule. */
export const ruleOf = (schedule: Schedule): Calendar.ScheduleRule => schedule

/** Terms of a scheduled autopayment: a fixed amount on a schedule. */
export const ScheduledTerms = Schema.Struct({
  amount: PositiveMoney,
  schedule: Schedule,
})
export type ScheduledTerms = typeof ScheduledTerms.Type

/** The next occurrence the actor has not dealt with yet. */
export const Cursor = Schema.Struct({
  index: Schema.Int,
  date: Schema.String,
  dueAt: Schema.Number,
})
export type Cursor = typeof Cursor.Type

/** A command sent to the hub whose result has not been recorded yet. */
export const OpenAttempt = Schema.Struct({
  paymentId: Schema.String,
  occurrence: Schema.String,
  attempt: Schema.Int,
  amount: Money,
  sentAt: Schema.Number,
  /** When silence becomes an unknown outcome and the engine starts asking the hub. */
  timeoutAt: Schema.Number,
  statusQueries: Schema.Int,
  nextQueryAt: Schema.NullOr(Schema.Number),
})
export type OpenAttempt = typeof OpenAttempt.Type

/** A new attempt planned after a retryable failure. */
export const RetryPlan = Schema.Struct({
  occurrence: Schema.String,
  attempt: Schema.Int,
  at: Schema.Number,
  amount: Money,
})
export type RetryPlan = typeof RetryPlan.Type

/** Everything a scheduled subscription's actor remembers between messages. */
export const ScheduledState = Schema.Struct({
  cursor: Schema.NullOr(Cursor),
  noticeFor: Schema.NullOr(Schema.String),
  skip: Schema.Array(Schema.String),
  open: Schema.Array(OpenAttempt),
  retry: Schema.NullOr(RetryPlan),
  failedInARow: Schema.Int,
  paid: Schema.Int,
  /** The latest occurrence date already settled: a changed schedule never revisits it. */
  lastSettled: Schema.NullOr(Schema.String),
})
export type ScheduledState = typeof ScheduledState.Type

/** Who a subscription pays: copied from the template when the subscription is made. */
export interface Payee {
  readonly providerId: string
  readonly account: string
  readonly source: string
}

/** A subscription as the actor holds it in memory. */
export interface Subscription {
  readonly id: string
  readonly clientId: string
  readonly kind: Kind
  readonly status: Status
  readonly statusReason: string | null
  readonly hidden: boolean
  readonly version: number
  readonly revision: number
  readonly templateId: string | null
  readonly payee: Payee
  readonly currency: string
  readonly terms: ScheduledTerms
  readonly state: ScheduledState
  readonly nextDueAt: number | null
  readonly createdAt: number
  readonly createdChannel: string
  readonly createdTerminal: string | null
}

/** The state of a scheduled subscription that has just been created at engine time `now`. */
export const initialScheduledState = (terms: ScheduledTerms, now: number): ScheduledState => ({
  cursor: firstCursorAfter(terms.schedule, now, null),
  noticeFor: null,
  skip: [],
  open: [],
  retry: null,
  failedInARow: 0,
  paid: 0,
  lastSettled: null,
})

/**
 * The first occurrence due after `now` and dated after `lastSettled`: creating
 * or re-scheduling never pays for an occurrence that lies in the past, nor one
 * already settled under the old schedule.
 */
export const firstCursorAfter = (
  schedule: Schedule,
  now: number,
  lastSettled: string | null,
): Cursor | null => {
  const rule = ruleOf(schedule)
  let next = Calendar.firstOccurrenceAfter(rule, now)
  if (next !== undefined && lastSettled !== null && next.date <= lastSettled) {
    next = Calendar.firstOccurrenceAfterDate(rule, lastSettled)
  }
  return next === undefined ? null : { index: next.index, date: next.date, dueAt: next.dueAt }
}

/** The occurrence after `cursor` in the series, or null when the series ends. */
export const advanceCursor = (schedule: Schedule, cursor: Cursor): Cursor | null => {
  const next = Calendar.occurrenceAt(ruleOf(schedule), cursor.index + 1)
  return next === undefined ? null : { index: next.index, date: next.date, dueAt: next.dueAt }
}
