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
import * as IsoDuration from "./IsoDuration.ts"
import { Money, NonNegativeMoney, PositiveMoney } from "./Money.ts"
import * as Ranges from "./Ranges.ts"

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

/** A real calendar date, `YYYY-MM-DD`. */
export const LocalDate = Schema.String.check(
  checked(
    Calendar.isValidLocalDate,
    (text) => `must be a real calendar date YYYY-MM-DD, got ${JSON.stringify(text)}`,
  ),
)
/** A schedule's start or end date: a real date, not before `Ranges.FIRST_SCHEDULE_DATE`. */
const ScheduleDate = LocalDate.check(
  checked(
    (text: string) => text >= Ranges.FIRST_SCHEDULE_DATE,
    (text) => `must not be before ${Ranges.FIRST_SCHEDULE_DATE}, got ${text}`,
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

const largestInterval = Math.max(...Object.values(Ranges.SCHEDULE_INTERVAL_MAX))

/**
 * A schedule as a channel sends it; optional fields take the contract's defaults. Dates are
 * also measured against the engine's current date (`Ranges.scheduleDateIssues`), which a
 * schema cannot know.
 */
export const ScheduleInput = Schema.Struct({
  every: Schema.Literals(["day", "week", "month", "quarter", "year"]),
  interval: Schema.optionalKey(intBetween(1, largestInterval)),
  dayOfMonth: Schema.optionalKey(intBetween(1, 31)),
  dayOfWeek: Schema.optionalKey(intBetween(1, 7)),
  time: LocalTime,
  timezone: Schema.optionalKey(TimeZone),
  startDate: ScheduleDate,
  endDate: Schema.optionalKey(ScheduleDate),
  maxPayments: Schema.optionalKey(intBetween(1, Ranges.MAX_PAYMENTS_MAX)),
}).check(
  Schema.makeFilter((schedule) => {
    const issues: Array<Schema.FilterIssue> = []
    const intervalMax = Ranges.SCHEDULE_INTERVAL_MAX[schedule.every]
    if (schedule.interval !== undefined && schedule.interval > intervalMax) {
      issues.push({
        path: ["interval"],
        issue: `must be at most ${intervalMax} when every is ${schedule.every} (at most five years between payments), got ${schedule.interval}`,
      })
    }
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
  /** The client's month (YYYY-MM) this attempt counts toward, when a monthly limit applies. */
  spendMonth: Schema.optionalKey(Schema.String),
  /**
   * An earlier attempt of the same occurrence that the hub reported succeeded after this one was
   * sent: if this one succeeds too, the occurrence was paid twice.
   */
  earlierSucceeded: Schema.optionalKey(Schema.String),
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

/**
 * A rule and the inputs it decided with: `rule` names it, the other fields are the figures it
 * looked at, which differ from rule to rule (why a payment was made, which limit held it back).
 */
export const RuleInputs = Schema.StructWithRest(Schema.Struct({ rule: Schema.String }), [
  Schema.Record(Schema.String, Schema.Unknown),
])
export type RuleInputs = typeof RuleInputs.Type

/**
 * A payment a limit held back: computed in full (its id is the one it will be
 * sent with) but not sent until the client confirms it with `payment.confirm`.
 */
export const HeldPayment = Schema.Struct({
  paymentId: Schema.String,
  occurrence: Schema.String,
  attempt: Schema.Int,
  amount: Money,
  /** over_debt_limit | over_payment_cap | over_monthly_cap */
  reason: Schema.String,
  heldAt: Schema.Number,
  /** The rule that would have paid it, with its inputs. */
  rule: RuleInputs,
  /** The limit it broke, with its inputs. */
  limit: RuleInputs,
})
export type HeldPayment = typeof HeldPayment.Type

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
  /** Payments held by a limit, waiting for the client (absent in rows written before limits existed). */
  held: Schema.optionalKey(Schema.Array(HeldPayment)),
})
export type ScheduledState = typeof ScheduledState.Type

/** Terms of a threshold autopayment: top up by `amount` when the balance falls below `threshold`. */
export const ThresholdTerms = Schema.Struct({
  amount: PositiveMoney,
  threshold: NonNegativeMoney,
  /** ISO 8601; no new top-up this long (tick time) after a successful one. */
  cooldown: IsoDuration.IsoDuration,
})
export type ThresholdTerms = typeof ThresholdTerms.Type

/** The default cooldown of a threshold autopayment. */
export const DEFAULT_COOLDOWN = "PT1H"

/** Everything a threshold subscription's actor remembers between messages. */
export const ThresholdState = Schema.Struct({
  /** The provider's reading time of the newest balance event seen: older ones are stale. */
  newestEventAt: Schema.NullOr(Schema.Number),
  /** Ids of the latest events seen, newest last: a redelivered event is recognised. */
  recentEventIds: Schema.Array(Schema.String),
  lastBalance: Schema.NullOr(Money),
  /** At most one top-up in flight. */
  open: Schema.Array(OpenAttempt),
  /** No new top-up before this engine time (after a success). */
  cooldownUntil: Schema.NullOr(Schema.Number),
  paid: Schema.Int,
  held: Schema.Array(HeldPayment),
})
export type ThresholdState = typeof ThresholdState.Type

/** A threshold subscription nothing has happened to yet. */
export const initialThresholdState: ThresholdState = {
  newestEventAt: null,
  recentEventIds: [],
  lastBalance: null,
  open: [],
  cooldownUntil: null,
  paid: 0,
  held: [],
}

/** Terms of a debt autopayment: ask the provider for bills every `pollEvery`, pay those up to `limit`. */
export const DebtTerms = Schema.Struct({
  limit: PositiveMoney,
  /** ISO 8601, how often the provider is asked. */
  pollEvery: IsoDuration.IsoDuration,
})
export type DebtTerms = typeof DebtTerms.Type

/** The default poll period of a debt autopayment. */
export const DEFAULT_POLL_EVERY = "P1D"

/** A debt query sent to the provider and not answered yet. */
export const OpenQuery = Schema.Struct({
  queryId: Schema.String,
  sentAt: Schema.Number,
  timeoutAt: Schema.Number,
})
export type OpenQuery = typeof OpenQuery.Type

/** Everything a debt subscription's actor remembers between messages. */
export const DebtState = Schema.Struct({
  /** When the provider is asked next (engine time). */
  nextPollAt: Schema.Number,
  /** The query waiting for its answer; a new one is never sent while this is open. */
  query: Schema.NullOr(OpenQuery),
  open: Schema.Array(OpenAttempt),
  held: Schema.Array(HeldPayment),
  paid: Schema.Int,
  /** Queries in a row that got no answer in time, for history and support. */
  unansweredQueries: Schema.Int,
})
export type DebtState = typeof DebtState.Type

/** Terms of a reminder: how long after a one-off payment the client is offered to repeat it. */
export const ReminderTerms = Schema.Struct({
  remindAfter: IsoDuration.IsoDuration,
})
export type ReminderTerms = typeof ReminderTerms.Type

/** The one-off payment a reminder offers to repeat. */
export const RemindedPayment = Schema.Struct({
  paymentId: Schema.String,
  amount: Money,
  source: Schema.String,
  channel: Schema.String,
  at: Schema.Number,
})
export type RemindedPayment = typeof RemindedPayment.Type

/** How many times a reminder is offered without an answer before it stops. */
export const MAX_REMINDER_OFFERS = 3

/** Everything a reminder's actor remembers between messages. */
export const ReminderState = Schema.Struct({
  lastPayment: RemindedPayment,
  /** Offers made since the last one-off payment. */
  offers: Schema.Int,
  nextOfferAt: Schema.NullOr(Schema.Number),
  /** Reminders keep the shape every kind shares: they never pay, so these stay empty. */
  open: Schema.Array(OpenAttempt),
  held: Schema.Array(HeldPayment),
})
export type ReminderState = typeof ReminderState.Type

/** Who a subscription pays: copied from the template when the subscription is made. */
export interface Payee {
  readonly providerId: string
  readonly account: string
  readonly source: string
}

/** What every subscription has, whatever its kind. */
export interface SubscriptionCommon {
  readonly id: string
  readonly clientId: string
  readonly status: Status
  readonly statusReason: string | null
  readonly hidden: boolean
  readonly version: number
  readonly revision: number
  readonly templateId: string | null
  readonly payee: Payee
  readonly currency: string
  readonly nextDueAt: number | null
  readonly createdAt: number
  readonly createdChannel: string
  readonly createdTerminal: string | null
}

/** A scheduled subscription as the actor holds it in memory. */
export interface ScheduledSubscription extends SubscriptionCommon {
  readonly kind: "scheduled"
  readonly terms: ScheduledTerms
  readonly state: ScheduledState
}

/** A threshold subscription as the actor holds it in memory. */
export interface ThresholdSubscription extends SubscriptionCommon {
  readonly kind: "threshold"
  readonly terms: ThresholdTerms
  readonly state: ThresholdState
}

/** A debt subscription as the actor holds it in memory. */
export interface DebtSubscription extends SubscriptionCommon {
  readonly kind: "debt"
  readonly terms: DebtTerms
  readonly state: DebtState
}

/** A hidden reminder, as the actor holds it in memory. */
export interface ReminderSubscription extends SubscriptionCommon {
  readonly kind: "reminder"
  readonly terms: ReminderTerms
  readonly state: ReminderState
}

/** A subscription of any kind; `kind` tells which terms and state it carries. */
export type Subscription =
  | ScheduledSubscription
  | ThresholdSubscription
  | DebtSubscription
  | ReminderSubscription

/** The kinds that run as subscriptions today. */
export type SubscriptionKind = Subscription["kind"]

/** Payments a limit is holding for the client, whatever the kind. */
export const heldPayments = (subscription: Subscription): ReadonlyArray<HeldPayment> =>
  subscription.state.held ?? []

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
  held: [],
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
