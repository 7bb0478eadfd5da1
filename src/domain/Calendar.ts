/**
 * Calendar rules of scheduled autopayments: which local dates a schedule hits
 * and the UTC instant each one is due.
 *
 * The calendar part is integer arithmetic on day numbers (days since
 * 1970-01-01) and month numbers (year * 12 + month - 1), so an occurrence is
 * computed directly from its index. Only the local-time-to-instant step asks
 * `Intl` for zone offsets, with one cached formatter per zone and a memo of
 * days on which a zone's offset is steady, so most conversions cost a map
 * lookup. The module is pure: the same rule and index always give the same
 * occurrence; the memos are invisible to callers.
 */

/** The calendar unit a schedule repeats in. */
export type Frequency = "day" | "week" | "month" | "quarter" | "year"

/** When a scheduled autopayment is due, as the customer set it up. */
export interface ScheduleRule {
  readonly every: Frequency
  /** Whole number >= 1 of `every` units between occurrences. */
  readonly interval: number
  /** 1..31 for month, quarter and year rules; defaults to the start date's day; clamped to short months. */
  readonly dayOfMonth?: number
  /** ISO weekday 1 (Monday)..7 for week rules; defaults to the start date's weekday. */
  readonly dayOfWeek?: number
  /** "HH:MM" wall-clock time in `timezone`. */
  readonly time: string
  /** IANA zone name, e.g. "Europe/Moscow". */
  readonly timezone: string
  /** "YYYY-MM-DD" local date: no occurrence before it. */
  readonly startDate: string
  /** "YYYY-MM-DD" local date, inclusive: no occurrence after it. */
  readonly endDate?: string
}

/** One due payment of a schedule, identified by its local date. */
export interface Occurrence {
  /** 0-based position in the series. */
  readonly index: number
  /** Local "YYYY-MM-DD" in the rule's zone: the occurrence's identity. */
  readonly date: string
  /** UTC epoch milliseconds at which it is due. */
  readonly dueAt: number
}

const MINUTE_MS = 60_000
const DAY_MS = 86_400_000
// Further out the text form would need a fifth year digit and string order would break.
const LAST_YEAR = 9999
// Everything the ECMAScript Date model (and so Intl) can represent.
const MAX_INSTANT = 8.64e15

const floorDiv = (a: number, b: number): number => Math.floor(a / b)

const isLeapYear = (year: number): boolean => (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0

/** Days in `month` (1..12) of `year`, leap years included. */
export const daysInMonth = (year: number, month: number): number =>
  month === 2 ? (isLeapYear(year) ? 29 : 28) : 30 + ((month + (month >> 3)) & 1)

// Howard Hinnant's days_from_civil: proleptic Gregorian, exact for any year.
const dayNumber = (year: number, month: number, day: number): number => {
  const y = month <= 2 ? year - 1 : year
  const era = floorDiv(y, 400)
  const yearOfEra = y - era * 400
  const dayOfYear = floorDiv(153 * ((month + 9) % 12) + 2, 5) + day - 1
  const dayOfEra = yearOfEra * 365 + floorDiv(yearOfEra, 4) - floorDiv(yearOfEra, 100) + dayOfYear
  return era * 146_097 + dayOfEra - 719_468
}

interface Civil {
  readonly year: number
  readonly month: number
  readonly day: number
}

// The inverse of dayNumber (Hinnant's civil_from_days).
const civil = (days: number): Civil => {
  const z = days + 719_468
  const era = floorDiv(z, 146_097)
  const dayOfEra = z - era * 146_097
  const yearOfEra = floorDiv(
    dayOfEra - floorDiv(dayOfEra, 1460) + floorDiv(dayOfEra, 36_524) - floorDiv(dayOfEra, 146_096),
    365,
  )
  const dayOfYear = dayOfEra - (365 * yearOfEra + floorDiv(yearOfEra, 4) - floorDiv(yearOfEra, 100))
  const shifted = floorDiv(5 * dayOfYear + 2, 153)
  const month = shifted < 10 ? shifted + 3 : shifted - 9
  return {
    year: yearOfEra + era * 400 + (month <= 2 ? 1 : 0),
    month,
    day: dayOfYear - floorDiv(153 * shifted + 2, 5) + 1,
  }
}

const FIRST_DAY = dayNumber(0, 1, 1)
const LAST_DAY = dayNumber(LAST_YEAR, 12, 31)

const pad2 = (n: number): string => (n < 10 ? `0${n}` : `${n}`)

// Years before 0 only come from instants outside any schedule; they keep a sign rather than garble.
const formatCivil = (year: number, month: number, day: number): string =>
  `${year < 0 ? "-" : ""}${String(Math.abs(year)).padStart(4, "0")}-${pad2(month)}-${pad2(day)}`

const formatDay = (days: number): string => {
  const { year, month, day } = civil(days)
  return formatCivil(year, month, day)
}

// Reads a fixed-width run of ASCII digits; NaN if any other character is there.
const digits = (text: string, from: number, to: number): number => {
  let value = 0
  for (let i = from; i < to; i++) {
    const code = text.charCodeAt(i) - 48
    if (code < 0 || code > 9) return Number.NaN
    value = value * 10 + code
  }
  return value
}

// Day number of a strict YYYY-MM-DD real date, or undefined.
const parseDate = (text: string): number | undefined => {
  if (text.length !== 10 || text.charCodeAt(4) !== 45 || text.charCodeAt(7) !== 45) return undefined
  const year = digits(text, 0, 4)
  const month = digits(text, 5, 7)
  const day = digits(text, 8, 10)
  // NaN fails every comparison, so malformed digits fall through to undefined.
  const real = year >= 0 && month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth(year, month)
  return real ? dayNumber(year, month, day) : undefined
}

// Minutes after local midnight for a strict HH:MM, or undefined.
const parseTime = (text: string): number | undefined => {
  if (text.length !== 5 || text.charCodeAt(2) !== 58) return undefined
  const hours = digits(text, 0, 2)
  const minutes = digits(text, 3, 5)
  if (!(hours <= 23 && minutes <= 59)) return undefined
  return hours * 60 + minutes
}

const weekdayOf = (days: number): number => ((((days + 3) % 7) + 7) % 7) + 1

/** True for a strict "YYYY-MM-DD" that is a real Gregorian date. */
export const isValidLocalDate = (s: string): boolean => parseDate(s) !== undefined

/** True for a strict "HH:MM" between 00:00 and 23:59. */
export const isValidLocalTime = (s: string): boolean => parseTime(s) !== undefined

const requireDate = (text: string): number => {
  const days = parseDate(text)
  if (days === undefined) throw new RangeError(`not a YYYY-MM-DD calendar date: ${JSON.stringify(text)}`)
  return days
}

/** The date `days` days after `date` (before it when negative); throws RangeError on bad input. */
export const addDays = (date: string, days: number): string => {
  const result = requireDate(date) + days
  if (!Number.isSafeInteger(days) || result < FIRST_DAY || result > LAST_DAY) {
    throw new RangeError(`cannot add ${days} days to ${date}`)
  }
  return formatDay(result)
}

/** ISO weekday of `date`: 1 = Monday .. 7 = Sunday; throws RangeError on a bad date. */
export const isoWeekday = (date: string): number => weekdayOf(requireDate(date))

// IANA names are slash-separated words; this shuts out the "+03:00" style offsets some engines accept.
const zoneNamePattern = /^[A-Za-z][A-Za-z0-9_+-]*(?:\/[A-Za-z0-9_+-]+)*$/

// One formatter per zone plus a memo of UTC days around which the zone's offset does not change.
interface Zone {
  readonly formatter: Intl.DateTimeFormat
  readonly steady: Map<number, number | null>
}

const zones = new Map<string, Zone>()

// Only accepted names are cached, so junk passed to isValidTimeZone cannot grow the map.
const zoneFor = (name: string): Zone | undefined => {
  const cached = zones.get(name)
  if (cached !== undefined || !zoneNamePattern.test(name)) return cached
  let formatter: Intl.DateTimeFormat
  try {
    formatter = new Intl.DateTimeFormat("en-US", {
      timeZone: name,
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
    })
  } catch {
    return undefined
  }
  const zone: Zone = { formatter, steady: new Map() }
  zones.set(name, zone)
  return zone
}

const requireZone = (name: string): Zone => {
  const zone = zoneFor(name)
  if (zone === undefined) throw new RangeError(`not an IANA time zone: ${JSON.stringify(name)}`)
  return zone
}

/** True when `tz` is an IANA zone name the runtime knows ("Europe/Moscow"); offsets like "+03:00" are not. */
export const isValidTimeZone = (tz: string): boolean => zoneFor(tz) !== undefined

// format() then a regex is about three times cheaper than formatToParts.
const fieldsPattern = /(\d+)\D+(\d+)\D+\d+\D+(\d+)\D+(\d+)\D+(\d+)/

// Milliseconds to add to a UTC instant to get the zone's wall clock there; one Intl call.
const offsetAt = (formatter: Intl.DateTimeFormat, instant: number): number => {
  const second = Math.floor(instant / 1000) * 1000
  const match = fieldsPattern.exec(formatter.format(second))
  if (match === null) throw new RangeError(`unexpected Intl output at ${instant}`)
  const month = Number(match[1])
  const day = Number(match[2])
  // Older ICU builds print midnight as 24 even under h23; it still belongs to the printed day.
  const clock = ((Number(match[3]) % 24) * 60 + Number(match[4])) * 60 + Number(match[5])
  // The printed year drops the era before year 1, so take the UTC year and correct it at a new year.
  const { year } = civil(floorDiv(second, DAY_MS))
  const offset = dayNumber(year, month, day) * DAY_MS + clock * 1000 - second
  if (offset > 180 * DAY_MS) return dayNumber(year - 1, month, day) * DAY_MS + clock * 1000 - second
  if (offset < -180 * DAY_MS) return dayNumber(year + 1, month, day) * DAY_MS + clock * 1000 - second
  return offset
}

// Enough for centuries of days per zone; past it the memo starts over rather than growing without bound.
const STEADY_LIMIT = 100_000
// The memo probes a day either side of the one asked about, and Intl stops at MAX_INSTANT.
const STEADY_REACH = MAX_INSTANT - 3 * DAY_MS

// The zone's offset if it is the same throughout UTC days `day - 1` to `day + 1`, else undefined.
// Real zones never change offset and change it back within three days, so equal ends mean no change.
const steadyOffset = (zone: Zone, day: number): number | undefined => {
  const known = zone.steady.get(day)
  if (known !== undefined) return known ?? undefined
  if (zone.steady.size >= STEADY_LIMIT) zone.steady.clear()
  const first = offsetAt(zone.formatter, (day - 1) * DAY_MS)
  const steady = first === offsetAt(zone.formatter, (day + 2) * DAY_MS) ? first : null
  zone.steady.set(day, steady)
  return steady ?? undefined
}

const offsetOf = (zone: Zone, instant: number): number =>
  (Math.abs(instant) < STEADY_REACH ? steadyOffset(zone, floorDiv(instant, DAY_MS)) : undefined) ??
  offsetAt(zone.formatter, instant)

// `wall` is a local wall-clock reading written as if it were UTC milliseconds.
const wallToInstant = (zone: Zone, wall: number): number => {
  // Offsets stay within a day, so the instant lies within a day of `wall` and a steady offset there is exact.
  const steady = Math.abs(wall) < STEADY_REACH ? steadyOffset(zone, floorDiv(wall, DAY_MS)) : undefined
  if (steady !== undefined) return wall - steady
  // A day either side is beyond any single transition's reach but closer than the next transition.
  const before = offsetAt(zone.formatter, wall - DAY_MS)
  const after = offsetAt(zone.formatter, wall + DAY_MS)
  const early = wall - before
  if (before === after) return early
  // In an overlap both readings are real and this one is earlier; in a gap neither is real and
  // keeping the pre-transition offset moves the time forward by the size of the gap.
  if (offsetAt(zone.formatter, early) === before) return early
  const late = wall - after
  return offsetAt(zone.formatter, late) === after ? late : early
}

const localWall = (instant: number, timezone: string): number =>
  instant + offsetOf(requireZone(timezone), instant)

/** The UTC instant of a local date and time in `timezone`: gap times move forward, overlaps take the earlier instant. */
export const localDateTimeToInstant = (date: string, time: string, timezone: string): number => {
  const minutes = parseTime(time)
  if (minutes === undefined) throw new RangeError(`not an HH:MM time: ${JSON.stringify(time)}`)
  return wallToInstant(requireZone(timezone), requireDate(date) * DAY_MS + minutes * MINUTE_MS)
}

/** The local "YYYY-MM-DD" in `timezone` at a UTC instant. */
export const instantToLocalDate = (instantMs: number, timezone: string): string =>
  formatDay(floorDiv(localWall(instantMs, timezone), DAY_MS))

/** The local "HH:MM" in `timezone` at a UTC instant. */
export const instantToLocalTime = (instantMs: number, timezone: string): string => {
  const wall = localWall(instantMs, timezone)
  const minutes = floorDiv(wall - floorDiv(wall, DAY_MS) * DAY_MS, MINUTE_MS)
  return `${pad2(Math.floor(minutes / 60))}:${pad2(minutes % 60)}`
}

// A rule reduced to numbers once: occurrence k is `anchor + k * step` in days or in months.
interface Series {
  readonly byMonth: boolean
  readonly anchor: number
  readonly step: number
  readonly dayOfMonth: number
  readonly lastDay: number
  readonly minuteOfDay: number
  readonly zone: Zone
}

const inRange = (value: number | undefined, min: number, max: number): value is number =>
  value !== undefined && Number.isInteger(value) && value >= min && value <= max

const monthsPerStep: Readonly<Record<Frequency, number>> = { day: 0, week: 0, month: 1, quarter: 3, year: 12 }

// Rules are validated before they get here; one that slips through anyway is an empty series, never a throw or a loop.
const buildSeries = (rule: ScheduleRule): Series | undefined => {
  const zone = zoneFor(rule.timezone)
  const minuteOfDay = parseTime(rule.time)
  const start = parseDate(rule.startDate)
  const end = rule.endDate === undefined ? LAST_DAY : parseDate(rule.endDate)
  const { interval } = rule
  if (zone === undefined || minuteOfDay === undefined || start === undefined || end === undefined) {
    return undefined
  }
  if (!Number.isSafeInteger(interval) || interval < 1) return undefined
  const lastDay = Math.min(end, LAST_DAY)
  switch (rule.every) {
    case "day":
      return { byMonth: false, anchor: start, step: interval, dayOfMonth: 0, lastDay, minuteOfDay, zone }
    case "week": {
      const dayOfWeek = rule.dayOfWeek ?? weekdayOf(start)
      if (!inRange(dayOfWeek, 1, 7)) return undefined
      const anchor = start + ((dayOfWeek - weekdayOf(start) + 7) % 7)
      return { byMonth: false, anchor, step: 7 * interval, dayOfMonth: 0, lastDay, minuteOfDay, zone }
    }
    case "month":
    case "quarter":
    case "year": {
      const { year, month, day } = civil(start)
      const dayOfMonth = rule.dayOfMonth ?? day
      if (!inRange(dayOfMonth, 1, 31)) return undefined
      const startMonth = year * 12 + month - 1
      const fits = Math.min(dayOfMonth, daysInMonth(year, month)) >= day
      const anchor = fits ? startMonth : startMonth + (rule.every === "year" ? 12 : 1)
      const step = monthsPerStep[rule.every] * interval
      return { byMonth: true, anchor, step, dayOfMonth, lastDay, minuteOfDay, zone }
    }
    default:
      return undefined
  }
}

// Rules are immutable values, and the same rule object is asked about again and again in the hot path.
const seriesCache = new WeakMap<ScheduleRule, Series | null>()

const seriesOf = (rule: ScheduleRule): Series | undefined => {
  const cached = seriesCache.get(rule)
  if (cached !== undefined) return cached ?? undefined
  const series = buildSeries(rule)
  seriesCache.set(rule, series ?? null)
  return series
}

const occurrenceOf = (series: Series, index: number): Occurrence | undefined => {
  let days: number
  let date: string
  if (series.byMonth) {
    const monthNumber = series.anchor + index * series.step
    const year = floorDiv(monthNumber, 12)
    if (year > LAST_YEAR) return undefined
    const month = monthNumber - year * 12 + 1
    const day = Math.min(series.dayOfMonth, daysInMonth(year, month))
    days = dayNumber(year, month, day)
    if (days > series.lastDay) return undefined
    date = formatCivil(year, month, day)
  } else {
    days = series.anchor + index * series.step
    if (days > series.lastDay) return undefined
    date = formatDay(days)
  }
  return { index, date, dueAt: wallToInstant(series.zone, days * DAY_MS + series.minuteOfDay * MINUTE_MS) }
}

// The smallest index whose date is on or after `days`; it may lie past the end of the series.
const firstIndexFrom = (series: Series, days: number): number => {
  if (!series.byMonth) return Math.max(0, Math.ceil((days - series.anchor) / series.step))
  const { year, month, day } = civil(days)
  const monthNumber = year * 12 + month - 1
  const index = Math.max(0, Math.ceil((monthNumber - series.anchor) / series.step))
  const sameMonth = series.anchor + index * series.step === monthNumber
  return sameMonth && Math.min(series.dayOfMonth, daysInMonth(year, month)) < day ? index + 1 : index
}

/** Occurrence number `index` (0-based) of the rule, or undefined past the end or for an invalid index. */
export const occurrenceAt = (rule: ScheduleRule, index: number): Occurrence | undefined => {
  if (!Number.isSafeInteger(index) || index < 0) return undefined
  const series = seriesOf(rule)
  return series === undefined ? undefined : occurrenceOf(series, index)
}

/** The first occurrence due strictly after `instantMs`, found by arithmetic rather than a scan. */
export const firstOccurrenceAfter = (rule: ScheduleRule, instantMs: number): Occurrence | undefined => {
  const series = seriesOf(rule)
  if (series === undefined || Number.isNaN(instantMs)) return undefined
  const instant = Math.min(Math.max(instantMs, -MAX_INSTANT), MAX_INSTANT)
  const today = floorDiv(instant + offsetOf(series.zone, instant), DAY_MS)
  // An occurrence two local days back is due at least ~22 wall-clock hours before `instant`,
  // more than any gap shift or overlap, so yesterday is the earliest candidate.
  let index = firstIndexFrom(series, today - 1)
  for (;;) {
    const occurrence = occurrenceOf(series, index)
    if (occurrence === undefined || occurrence.dueAt > instant) return occurrence
    index++
  }
}

/** The first occurrence whose local date is after `localDate`; undefined when none is or the date is invalid. */
export const firstOccurrenceAfterDate = (rule: ScheduleRule, localDate: string): Occurrence | undefined => {
  const series = seriesOf(rule)
  const days = parseDate(localDate)
  if (series === undefined || days === undefined) return undefined
  return occurrenceOf(series, firstIndexFrom(series, days + 1))
}

/** Up to `count` consecutive occurrences starting with `from` itself; fewer when the series ends. */
export const nextOccurrences = (
  rule: ScheduleRule,
  from: Occurrence | undefined,
  count: number,
): ReadonlyArray<Occurrence> => {
  const series = seriesOf(rule)
  const result: Array<Occurrence> = []
  if (series === undefined || from === undefined || !Number.isSafeInteger(from.index) || from.index < 0) {
    return result
  }
  for (let index = from.index; result.length < count; index++) {
    const occurrence = occurrenceOf(series, index)
    if (occurrence === undefined) break
    result.push(occurrence)
  }
  return result
}
