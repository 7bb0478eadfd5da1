import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  addDays,
  daysInMonth,
  firstOccurrenceAfter,
  firstOccurrenceAfterDate,
  instantToLocalDate,
  instantToLocalTime,
  isoWeekday,
  isValidLocalDate,
  isValidLocalTime,
  isValidTimeZone,
  localDateTimeToInstant,
  nextOccurrences,
  type Occurrence,
  occurrenceAt,
  type ScheduleRule,
} from "../../src/domain/Calendar.ts"

const MINUTE = 60_000
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR

// Oracles below use Date and formatToParts, deliberately not the module's own arithmetic or parsing.
const dayIndex = (date: string): number => Date.parse(`${date}T00:00:00Z`) / DAY
const dateOfIndex = (days: number): string => new Date(days * DAY).toISOString().slice(0, 10)
const lastDayOf = (year: number, month: number): number => new Date(Date.UTC(year, month, 0)).getUTCDate()
const weekdayOf = (date: string): number => ((new Date(`${date}T00:00:00Z`).getUTCDay() + 6) % 7) + 1
const ymd = (date: string): [number, number, number] => [
  Number(date.slice(0, 4)),
  Number(date.slice(5, 7)),
  Number(date.slice(8, 10)),
]

const partsFormatters = new Map<string, Intl.DateTimeFormat>()

// The wall clock (date and HH:MM) that `zone` shows at `instant`.
const wall = (instant: number, zone: string): { date: string; time: string } => {
  let formatter = partsFormatters.get(zone)
  if (formatter === undefined) {
    formatter = new Intl.DateTimeFormat("en-US", {
      timeZone: zone,
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
    })
    partsFormatters.set(zone, formatter)
  }
  const part = Object.fromEntries(formatter.formatToParts(instant).map((p) => [p.type, p.value]))
  return { date: `${part.year}-${part.month}-${part.day}`, time: `${part.hour}:${part.minute}` }
}

// Whether any instant within four hours of `near` shows this local date and time; DST gaps make some never show.
const wallTimeExists = (date: string, time: string, zone: string, near: number): boolean => {
  const start = Math.floor(near / MINUTE) * MINUTE - 4 * HOUR
  for (let t = start; t <= start + 8 * HOUR; t += MINUTE) {
    const seen = wall(t, zone)
    if (seen.date === date && seen.time === time) return true
  }
  return false
}

const defined = <T>(value: T | undefined): T => {
  if (value === undefined) throw new Error("expected a value")
  return value
}

const rule = (fields: Partial<ScheduleRule> & Pick<ScheduleRule, "every" | "startDate">): ScheduleRule => ({
  interval: 1,
  time: "09:00",
  timezone: "Europe/Moscow",
  ...fields,
})

const datesOf = (r: ScheduleRule, count: number): ReadonlyArray<string> =>
  nextOccurrences(r, occurrenceAt(r, 0), count).map((o) => o.date)

const utc = (year: number, month: number, day: number, hour: number, minute: number): number =>
  Date.UTC(year, month - 1, day, hour, minute)

describe("calendar helpers", () => {
  it("knows month lengths", () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12].map((m) => daysInMonth(2027, m))).toEqual([
      31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31,
    ])
    expect(daysInMonth(2028, 2)).toBe(29)
    expect(daysInMonth(2000, 2)).toBe(29)
    expect(daysInMonth(2100, 2)).toBe(28)
  })

  it("adds days across months, leap days and years", () => {
    expect(addDays("2027-02-28", 1)).toBe("2027-03-01")
    expect(addDays("2028-02-28", 1)).toBe("2028-02-29")
    expect(addDays("2027-01-01", -1)).toBe("2026-12-31")
    expect(addDays("2027-01-31", 0)).toBe("2027-01-31")
    expect(addDays("2027-01-01", 365 * 400 + 97)).toBe("2427-01-01")
    expect(() => addDays("2027-02-30", 1)).toThrow(RangeError)
    expect(() => addDays("2027-02-01", 1.5)).toThrow(RangeError)
    expect(() => addDays("9999-12-31", 1)).toThrow(RangeError)
  })

  it("gives ISO weekdays", () => {
    expect(isoWeekday("2027-01-04")).toBe(1)
    expect(isoWeekday("2027-01-01")).toBe(5)
    expect(isoWeekday("2027-01-03")).toBe(7)
    expect(isoWeekday("2000-02-29")).toBe(2)
  })

  it("agrees with Date on month lengths, day offsets and weekdays", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: dayIndex("0001-01-01"), max: dayIndex("9998-12-31") }),
        fc.integer({ min: -40_000, max: 40_000 }),
        (days, offset) => {
          const date = dateOfIndex(days)
          const [year, month] = ymd(date)
          expect(daysInMonth(year, month)).toBe(lastDayOf(year, month))
          expect(isoWeekday(date)).toBe(weekdayOf(date))
          const target = days + offset
          if (target >= dayIndex("0001-01-01") && target <= dayIndex("9999-12-31")) {
            expect(addDays(date, offset)).toBe(dateOfIndex(target))
          }
        },
      ),
      { numRuns: 500 },
    )
  })
})

describe("input predicates", () => {
  it("accepts only strict real dates", () => {
    for (const good of ["2028-02-29", "2000-02-29", "2027-12-31", "2027-01-01"]) {
      expect(isValidLocalDate(good)).toBe(true)
    }
    for (const bad of [
      "2027-02-30",
      "2027-02-29",
      "2100-02-29",
      "2027-13-01",
      "2027-00-10",
      "2027-04-31",
      "2027-01-00",
      "2027-1-01",
      "27-01-01",
      "2027/01/01",
      "2027-01-01T00:00",
      " 2027-01-01",
      "２０２７-01-01",
      "",
    ]) {
      expect(isValidLocalDate(bad)).toBe(false)
    }
  })

  it("accepts only strict HH:MM times", () => {
    for (const good of ["00:00", "09:05", "12:30", "23:59"]) expect(isValidLocalTime(good)).toBe(true)
    for (const bad of ["24:00", "12:60", "9:00", "09:0", "09:00:00", "09-00", "ab:cd", " 9:00", ""]) {
      expect(isValidLocalTime(bad)).toBe(false)
    }
  })

  it("accepts IANA zone names and nothing else", () => {
    for (const good of ["Europe/Moscow", "America/New_York", "Asia/Kathmandu", "Australia/Sydney", "UTC"]) {
      expect(isValidTimeZone(good)).toBe(true)
    }
    for (const bad of [
      "",
      "Mars/Olympus",
      "+03:00",
      "-05:00",
      "+0300",
      "Europe/Moscow ",
      "Europe//Moscow",
      "/UTC",
    ]) {
      expect(isValidTimeZone(bad)).toBe(false)
    }
  })
})

describe("series examples", () => {
  it("clamps the 31st per month and never drifts", () => {
    expect(datesOf(rule({ every: "month", startDate: "2027-01-31" }), 4)).toEqual([
      "2027-01-31",
      "2027-02-28",
      "2027-03-31",
      "2027-04-30",
    ])
    expect(datesOf(rule({ every: "month", startDate: "2028-01-31" }), 3)).toEqual([
      "2028-01-31",
      "2028-02-29",
      "2028-03-31",
    ])
  })

  it("anchors in the next month when the day has passed in the start month", () => {
    expect(datesOf(rule({ every: "month", dayOfMonth: 10, startDate: "2027-01-20" }), 2)).toEqual([
      "2027-02-10",
      "2027-03-10",
    ])
    expect(datesOf(rule({ every: "month", dayOfMonth: 31, startDate: "2027-02-28" }), 2)).toEqual([
      "2027-02-28",
      "2027-03-31",
    ])
    expect(datesOf(rule({ every: "quarter", dayOfMonth: 5, startDate: "2027-01-06" }), 2)).toEqual([
      "2027-02-05",
      "2027-05-05",
    ])
  })

  it("runs quarterly on the 30th", () => {
    expect(datesOf(rule({ every: "quarter", dayOfMonth: 30, startDate: "2026-11-15" }), 6)).toEqual([
      "2026-11-30",
      "2027-02-28",
      "2027-05-30",
      "2027-08-30",
      "2027-11-30",
      "2028-02-29",
    ])
  })

  it("runs yearly on Feb 29 and falls back to Feb 28", () => {
    expect(datesOf(rule({ every: "year", startDate: "2028-02-29" }), 5)).toEqual([
      "2028-02-29",
      "2029-02-28",
      "2030-02-28",
      "2031-02-28",
      "2032-02-29",
    ])
    expect(datesOf(rule({ every: "year", interval: 2, dayOfMonth: 5, startDate: "2027-03-10" }), 2)).toEqual([
      "2028-03-05",
      "2030-03-05",
    ])
  })

  it("runs every second Wednesday", () => {
    expect(datesOf(rule({ every: "week", interval: 2, dayOfWeek: 3, startDate: "2027-01-01" }), 3)).toEqual([
      "2027-01-06",
      "2027-01-20",
      "2027-02-03",
    ])
    expect(datesOf(rule({ every: "week", startDate: "2027-01-01" }), 2)).toEqual(["2027-01-01", "2027-01-08"])
  })

  it("runs every third day", () => {
    expect(datesOf(rule({ every: "day", interval: 3, startDate: "2027-02-26" }), 3)).toEqual([
      "2027-02-26",
      "2027-03-01",
      "2027-03-04",
    ])
  })

  it("stops at the inclusive end date", () => {
    const r = rule({ every: "month", startDate: "2027-01-15", endDate: "2027-04-15" })
    expect(datesOf(r, 10)).toEqual(["2027-01-15", "2027-02-15", "2027-03-15", "2027-04-15"])
    expect(occurrenceAt(r, 4)).toBeUndefined()
    expect(datesOf({ ...r, endDate: "2027-04-14" }, 10)).toHaveLength(3)
    expect(firstOccurrenceAfter(r, utc(2027, 4, 15, 6, 0))).toBeUndefined()
    expect(firstOccurrenceAfterDate(r, "2027-04-15")).toBeUndefined()
  })

  it("returns nothing, without throwing, for rules that never occur", () => {
    const empty: ReadonlyArray<ScheduleRule> = [
      rule({ every: "day", startDate: "2027-05-02", endDate: "2027-05-01" }),
      rule({ every: "week", dayOfWeek: 1, startDate: "2027-01-01", endDate: "2027-01-03" }),
      rule({ every: "month", dayOfMonth: 10, startDate: "2027-01-20", endDate: "2027-02-09" }),
      rule({ every: "day", interval: 0, startDate: "2027-01-01" }),
      rule({ every: "day", interval: 1.5, startDate: "2027-01-01" }),
      rule({ every: "month", dayOfMonth: 32, startDate: "2027-01-01" }),
      rule({ every: "week", dayOfWeek: 8, startDate: "2027-01-01" }),
      rule({ every: "day", timezone: "Mars/Olympus", startDate: "2027-01-01" }),
      rule({ every: "day", time: "25:00", startDate: "2027-01-01" }),
      rule({ every: "day", startDate: "2027-02-30" }),
    ]
    for (const r of empty) {
      expect(occurrenceAt(r, 0)).toBeUndefined()
      expect(firstOccurrenceAfter(r, 0)).toBeUndefined()
      expect(firstOccurrenceAfterDate(r, "2000-01-01")).toBeUndefined()
      expect(nextOccurrences(r, { index: 0, date: "2027-01-01", dueAt: 0 }, 5)).toEqual([])
    }
  })

  it("lists occurrences from a given one", () => {
    const r = rule({ every: "day", startDate: "2027-01-01" })
    const third = defined(occurrenceAt(r, 3))
    expect(nextOccurrences(r, third, 2).map((o) => o.date)).toEqual(["2027-01-04", "2027-01-05"])
    expect(nextOccurrences(r, third, 0)).toEqual([])
    expect(nextOccurrences(r, undefined, 3)).toEqual([])
    expect(occurrenceAt(r, -1)).toBeUndefined()
    expect(occurrenceAt(r, 0.5)).toBeUndefined()
  })
})

describe("finding occurrences", () => {
  const monthly = rule({ every: "month", startDate: "2000-01-31" })

  it("jumps straight to an instant decades after the start", () => {
    expect(firstOccurrenceAfter(monthly, utc(2045, 6, 15, 12, 0))).toEqual({
      index: 545,
      date: "2045-06-30",
      dueAt: utc(2045, 6, 30, 6, 0),
    })
    expect(firstOccurrenceAfter(monthly, utc(2045, 6, 30, 6, 0) - 1)?.index).toBe(545)
    expect(firstOccurrenceAfter(monthly, utc(2045, 6, 30, 6, 0))?.date).toBe("2045-07-31")
    expect(firstOccurrenceAfter(monthly, utc(1990, 1, 1, 0, 0))?.index).toBe(0)
    expect(firstOccurrenceAfter(monthly, Number.NaN)).toBeUndefined()
    const daily = rule({ every: "day", timezone: "America/New_York", time: "23:30", startDate: "2000-01-01" })
    expect(firstOccurrenceAfter(daily, utc(2059, 7, 1, 3, 29))).toEqual({
      index: dayIndex("2059-06-30") - dayIndex("2000-01-01"),
      date: "2059-06-30",
      dueAt: utc(2059, 7, 1, 3, 30),
    })
  })

  it("finds the first occurrence after a local date", () => {
    expect(firstOccurrenceAfterDate(monthly, "2027-02-27")?.date).toBe("2027-02-28")
    expect(firstOccurrenceAfterDate(monthly, "2027-02-28")?.date).toBe("2027-03-31")
    expect(firstOccurrenceAfterDate(monthly, "1999-12-31")?.index).toBe(0)
    expect(firstOccurrenceAfterDate(monthly, "2027-02-30")).toBeUndefined()
  })
})

describe("time zones", () => {
  it("moves a New York spring-forward gap time forward by the gap", () => {
    const r = rule({ every: "day", time: "02:30", timezone: "America/New_York", startDate: "2027-03-13" })
    const [before, gap, after] = nextOccurrences(r, occurrenceAt(r, 0), 3)
    expect(before?.dueAt).toBe(utc(2027, 3, 13, 7, 30))
    expect(gap).toEqual({ index: 1, date: "2027-03-14", dueAt: utc(2027, 3, 14, 7, 30) })
    expect(instantToLocalTime(defined(gap).dueAt, "America/New_York")).toBe("03:30")
    expect(after?.dueAt).toBe(utc(2027, 3, 15, 6, 30))
    expect(localDateTimeToInstant("2027-03-14", "02:00", "America/New_York")).toBe(utc(2027, 3, 14, 7, 0))
    expect(localDateTimeToInstant("2027-03-14", "01:59", "America/New_York")).toBe(utc(2027, 3, 14, 6, 59))
    expect(localDateTimeToInstant("2027-03-14", "03:00", "America/New_York")).toBe(utc(2027, 3, 14, 7, 0))
  })

  it("takes the earlier instant in a New York fall-back overlap", () => {
    expect(localDateTimeToInstant("2027-11-07", "01:30", "America/New_York")).toBe(utc(2027, 11, 7, 5, 30))
    expect(localDateTimeToInstant("2027-11-07", "01:00", "America/New_York")).toBe(utc(2027, 11, 7, 5, 0))
    expect(localDateTimeToInstant("2027-11-07", "00:59", "America/New_York")).toBe(utc(2027, 11, 7, 4, 59))
    expect(localDateTimeToInstant("2027-11-07", "02:00", "America/New_York")).toBe(utc(2027, 11, 7, 7, 0))
    const r = rule({ every: "week", time: "01:30", timezone: "America/New_York", startDate: "2027-11-07" })
    expect(occurrenceAt(r, 0)?.dueAt).toBe(utc(2027, 11, 7, 5, 30))
  })

  it("handles London's transitions", () => {
    expect(localDateTimeToInstant("2027-03-28", "01:30", "Europe/London")).toBe(utc(2027, 3, 28, 1, 30))
    expect(instantToLocalTime(utc(2027, 3, 28, 1, 30), "Europe/London")).toBe("02:30")
    expect(localDateTimeToInstant("2027-10-31", "01:30", "Europe/London")).toBe(utc(2027, 10, 31, 0, 30))
    expect(localDateTimeToInstant("2027-07-01", "09:00", "Europe/London")).toBe(utc(2027, 7, 1, 8, 0))
  })

  it("handles Sydney's southern-hemisphere daylight saving", () => {
    const r = rule({ every: "day", time: "02:30", timezone: "Australia/Sydney", startDate: "2027-10-02" })
    expect(nextOccurrences(r, occurrenceAt(r, 0), 3).map((o) => o.dueAt)).toEqual([
      utc(2027, 10, 1, 16, 30),
      utc(2027, 10, 2, 16, 30),
      utc(2027, 10, 3, 15, 30),
    ])
    expect(instantToLocalTime(utc(2027, 10, 2, 16, 30), "Australia/Sydney")).toBe("03:30")
    expect(localDateTimeToInstant("2027-04-04", "02:30", "Australia/Sydney")).toBe(utc(2027, 4, 3, 15, 30))
    expect(localDateTimeToInstant("2027-07-01", "09:00", "Australia/Sydney")).toBe(utc(2027, 6, 30, 23, 0))
    expect(localDateTimeToInstant("2027-12-01", "09:00", "Australia/Sydney")).toBe(utc(2027, 11, 30, 22, 0))
  })

  it("keeps Moscow at UTC+3 all year", () => {
    const r = rule({ every: "month", startDate: "2027-01-15" })
    for (const o of nextOccurrences(r, occurrenceAt(r, 0), 12)) {
      const [year, month, day] = ymd(o.date)
      expect(o.dueAt).toBe(utc(year, month, day, 6, 0))
    }
  })

  it("handles quarter-hour and half-hour offsets", () => {
    expect(localDateTimeToInstant("2027-06-01", "09:00", "Asia/Kathmandu")).toBe(utc(2027, 6, 1, 3, 15))
    expect(instantToLocalTime(utc(2027, 6, 1, 0, 0), "Asia/Kathmandu")).toBe("05:45")
    expect(instantToLocalDate(utc(2027, 6, 1, 18, 15), "Asia/Kathmandu")).toBe("2027-06-02")
    expect(localDateTimeToInstant("2027-06-01", "09:00", "Asia/Kolkata")).toBe(utc(2027, 6, 1, 3, 30))
  })

  it("reads local dates and times at instants", () => {
    expect(instantToLocalDate(utc(2027, 1, 1, 2, 0), "America/New_York")).toBe("2026-12-31")
    expect(instantToLocalTime(utc(2027, 1, 1, 2, 0), "America/New_York")).toBe("21:00")
    expect(instantToLocalTime(utc(2027, 1, 1, 2, 0) + 59_999, "America/New_York")).toBe("21:00")
    expect(instantToLocalDate(utc(2027, 1, 1, 0, 0), "UTC")).toBe("2027-01-01")
  })

  it("refuses malformed input to conversions", () => {
    expect(() => localDateTimeToInstant("2027-02-30", "09:00", "UTC")).toThrow(RangeError)
    expect(() => localDateTimeToInstant("2027-02-01", "9:00", "UTC")).toThrow(RangeError)
    expect(() => localDateTimeToInstant("2027-02-01", "09:00", "Mars/Olympus")).toThrow(RangeError)
    expect(() => instantToLocalDate(0, "+03:00")).toThrow(RangeError)
  })
})

const zones = [
  "America/New_York",
  "Europe/London",
  "Australia/Sydney",
  "Australia/Lord_Howe",
  "America/Sao_Paulo",
  "America/Santiago",
  "Europe/Moscow",
  "Asia/Kolkata",
  "Asia/Kathmandu",
  "UTC",
]

const pad = (n: number): string => String(n).padStart(2, "0")

// Early-morning hours are weighted up because that is where DST transitions sit.
const timeArb = fc
  .tuple(
    fc.oneof(fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 3 })),
    fc.integer({ min: 0, max: 59 }),
  )
  .map(([h, m]) => `${pad(h)}:${pad(m)}`)

// Half the dates fall in months with DST transitions so gaps and overlaps actually come up.
const dateArb = fc.oneof(
  fc.integer({ min: dayIndex("2000-01-01"), max: dayIndex("2060-12-31") }).map(dateOfIndex),
  fc
    .tuple(
      fc.integer({ min: 2000, max: 2060 }),
      fc.constantFrom(3, 4, 9, 10, 11),
      fc.integer({ min: 1, max: 31 }),
    )
    .map(([y, m, d]) => `${y}-${pad(m)}-${pad(Math.min(d, lastDayOf(y, m)))}`),
)

const ruleArb: fc.Arbitrary<ScheduleRule> = fc
  .record({
    every: fc.constantFrom<ScheduleRule["every"]>("day", "week", "month", "quarter", "year"),
    interval: fc.integer({ min: 1, max: 12 }),
    dayOfMonth: fc.option(fc.integer({ min: 1, max: 31 }), { nil: undefined }),
    dayOfWeek: fc.option(fc.integer({ min: 1, max: 7 }), { nil: undefined }),
    time: timeArb,
    timezone: fc.constantFrom(...zones),
    startDate: dateArb,
    endAfter: fc.option(fc.integer({ min: -10, max: 3000 }), { nil: undefined }),
  })
  .map(({ dayOfMonth, dayOfWeek, endAfter, ...base }) => {
    const monthly = base.every !== "day" && base.every !== "week"
    return {
      ...base,
      ...(monthly && dayOfMonth !== undefined ? { dayOfMonth } : {}),
      ...(base.every === "week" && dayOfWeek !== undefined ? { dayOfWeek } : {}),
      ...(endAfter !== undefined ? { endDate: dateOfIndex(dayIndex(base.startDate) + endAfter) } : {}),
    }
  })

const monthNumber = (date: string): number => {
  const [year, month] = ymd(date)
  return year * 12 + month - 1
}

// Every occurrence of `r` up to index `limit`, read one by one.
const scan = (r: ScheduleRule, limit: number): ReadonlyArray<Occurrence> => {
  const found: Array<Occurrence> = []
  for (let i = 0; i <= limit; i++) {
    const o = occurrenceAt(r, i)
    if (o === undefined) break
    found.push(o)
  }
  return found
}

// Checks every calendar and clock rule on the first `count` occurrences of `r`.
const checkSeries = (r: ScheduleRule, count: number): void => {
  const list = nextOccurrences(r, occurrenceAt(r, 0), count)
  if (r.endDate === undefined) expect(list).toHaveLength(count)
  if (list.length < count) expect(occurrenceAt(r, list.length)).toBeUndefined()
  const start = dayIndex(r.startDate)
  list.forEach((o, i) => {
    expect(o.index).toBe(i)
    expect(occurrenceAt(r, i)).toEqual(o)
    expect(o.date >= r.startDate).toBe(true)
    if (r.endDate !== undefined) expect(o.date <= r.endDate).toBe(true)
    const previous = list[i - 1]
    if (previous !== undefined) {
      expect(o.date > previous.date).toBe(true)
      expect(o.dueAt).toBeGreaterThan(previous.dueAt)
    }
    expect(instantToLocalDate(o.dueAt, r.timezone)).toBe(o.date)
    const seen = wall(o.dueAt, r.timezone)
    expect(seen.date).toBe(o.date)
    if (seen.time !== r.time) {
      // Only a time the clock skips may be moved, and only forward.
      expect(seen.time > r.time).toBe(true)
      expect(wallTimeExists(o.date, r.time, r.timezone, o.dueAt)).toBe(false)
    }
    expect(instantToLocalTime(o.dueAt, r.timezone)).toBe(seen.time)
    switch (r.every) {
      case "day":
        expect(dayIndex(o.date)).toBe(start + i * r.interval)
        break
      case "week": {
        const weekday = r.dayOfWeek ?? weekdayOf(r.startDate)
        expect(weekdayOf(o.date)).toBe(weekday)
        if (previous === undefined) expect(dayIndex(o.date) - start).toBeLessThan(7)
        else expect(dayIndex(o.date) - dayIndex(previous.date)).toBe(7 * r.interval)
        break
      }
      default: {
        const [year, month, day] = ymd(o.date)
        const [startYear, startMonth, startDay] = ymd(r.startDate)
        const wanted = r.dayOfMonth ?? startDay
        expect(day).toBe(Math.min(wanted, lastDayOf(year, month)))
        const step = (r.every === "month" ? 1 : r.every === "quarter" ? 3 : 12) * r.interval
        if (previous === undefined) {
          const fits = Math.min(wanted, lastDayOf(startYear, startMonth)) >= startDay
          const skip = fits ? 0 : r.every === "year" ? 12 : 1
          expect(monthNumber(o.date)).toBe(monthNumber(r.startDate) + skip)
        } else {
          expect(monthNumber(o.date) - monthNumber(previous.date)).toBe(step)
        }
      }
    }
  })
}

describe("properties", () => {
  it("builds series that follow the calendar rules", () => {
    fc.assert(
      fc.property(ruleArb, (r) => checkSeries(r, 24)),
      { numRuns: 300 },
    )
  })

  it("finds the first occurrence after an instant like a brute-force scan", () => {
    fc.assert(
      fc.property(
        ruleArb,
        fc.integer({ min: 0, max: 30 }),
        fc.oneof(fc.constant(0), fc.integer({ min: -3 * DAY, max: 3 * DAY })),
        (r, k, delta) => {
          const near = occurrenceAt(r, k)?.dueAt ?? localDateTimeToInstant(r.startDate, r.time, r.timezone)
          const t = near + delta
          const expected = scan(r, k + 40).find((o) => o.dueAt > t)
          expect(firstOccurrenceAfter(r, t)).toEqual(expected)
        },
      ),
      { numRuns: 300 },
    )
  })

  it("finds the first occurrence after an instant decades later", () => {
    fc.assert(
      fc.property(ruleArb, fc.integer({ min: -DAY, max: 45 * 365 * DAY }), (r, later) => {
        const t = localDateTimeToInstant(r.startDate, r.time, r.timezone) + later
        const found = firstOccurrenceAfter(r, t)
        if (found === undefined) {
          // Only an ended series runs out, and then nothing from the day before `t` on is still due.
          expect(r.endDate).toBeDefined()
          const from = firstOccurrenceAfterDate(r, addDays(instantToLocalDate(t, r.timezone), -2))
          for (const o of nextOccurrences(r, from, 5)) expect(o.dueAt).toBeLessThanOrEqual(t)
        } else {
          expect(found).toEqual(occurrenceAt(r, found.index))
          expect(found.dueAt).toBeGreaterThan(t)
          if (found.index > 0) expect(defined(occurrenceAt(r, found.index - 1)).dueAt).toBeLessThanOrEqual(t)
        }
      }),
      { numRuns: 300 },
    )
  })

  it("finds the first occurrence after a local date like a brute-force scan", () => {
    fc.assert(
      fc.property(
        ruleArb,
        fc.integer({ min: 0, max: 30 }),
        fc.integer({ min: -40, max: 40 }),
        (r, k, shift) => {
          const base = occurrenceAt(r, k)?.date ?? r.startDate
          const localDate = dateOfIndex(dayIndex(base) + shift)
          const expected = scan(r, k + 41).find((o) => o.date > localDate)
          expect(firstOccurrenceAfterDate(r, localDate)).toEqual(expected)
        },
      ),
      { numRuns: 300 },
    )
  })

  it("round-trips local date-times through instants", () => {
    fc.assert(
      fc.property(dateArb, timeArb, fc.constantFrom(...zones), (date, time, zone) => {
        const t = localDateTimeToInstant(date, time, zone)
        const seen = wall(t, zone)
        expect(instantToLocalDate(t, zone)).toBe(seen.date)
        expect(instantToLocalTime(t, zone)).toBe(seen.time)
        if (seen.date === date && seen.time === time) {
          // In an overlap the earlier reading wins, so no earlier instant may show the same wall time.
          for (let back = 15 * MINUTE; back <= 3 * HOUR; back += 15 * MINUTE) {
            expect(wall(t - back, zone)).not.toEqual(seen)
          }
        } else {
          expect(seen.date).toBe(date)
          expect(seen.time > time).toBe(true)
          expect(wallTimeExists(date, time, zone, t)).toBe(false)
        }
      }),
      { numRuns: 400 },
    )
  })

  it("round-trips instants through local date-times", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: Date.UTC(2000, 0, 1), max: Date.UTC(2060, 11, 31) }),
        fc.constantFrom(...zones),
        (instant, zone) => {
          const date = instantToLocalDate(instant, zone)
          const time = instantToLocalTime(instant, zone)
          expect({ date, time }).toEqual(wall(instant, zone))
          const minute = Math.floor(instant / MINUTE) * MINUTE
          const back = localDateTimeToInstant(date, time, zone)
          // Equal, or the earlier twin of an overlapped wall time.
          expect(back).toBeLessThanOrEqual(minute)
          expect(minute - back).toBeLessThanOrEqual(3 * HOUR)
          expect(wall(back, zone)).toEqual({ date, time })
        },
      ),
      { numRuns: 400 },
    )
  })
})

interface Transition {
  readonly at: number
  readonly before: number
  readonly after: number
}

// The zone's UTC offset at an instant, read off the oracle's wall clock (offsets are whole minutes here).
const offsetAt = (instant: number, zone: string): number => {
  const seen = wall(instant, zone)
  return Date.parse(`${seen.date}T${seen.time}:00Z`) - Math.floor(instant / MINUTE) * MINUTE
}

const transitionCache = new Map<string, ReadonlyArray<Transition>>()

// Every offset change of `zone` in `year`: weekly probes, then bisection down to the first minute of the new offset.
const transitionsIn = (zone: string, year: number): ReadonlyArray<Transition> => {
  const key = `${zone} ${year}`
  const cached = transitionCache.get(key)
  if (cached !== undefined) return cached
  const found: Array<Transition> = []
  const end = Date.UTC(year + 1, 0, 1)
  let from = Date.UTC(year, 0, 1)
  let before = offsetAt(from, zone)
  while (from < end) {
    const to = from + 7 * DAY
    const after = offsetAt(to, zone)
    if (after !== before) {
      let low = from
      let high = to
      while (high - low > MINUTE) {
        const middle = low + Math.floor((high - low) / 2 / MINUTE) * MINUTE
        if (offsetAt(middle, zone) === before) low = middle
        else high = middle
      }
      found.push({ at: high, before, after })
      before = after
    }
    from = to
  }
  transitionCache.set(key, found)
  return found
}

const dstZones = [
  "America/New_York",
  "Europe/London",
  "Australia/Sydney",
  "Australia/Lord_Howe",
  "America/Santiago",
  "America/Sao_Paulo",
]

// A wall-clock reading within two and a half hours of a real offset change, with the instant it must map to.
const nearTransitionArb = fc
  .record({
    zone: fc.constantFrom(...dstZones),
    year: fc.integer({ min: 2000, max: 2060 }),
    pick: fc.nat(),
    shift: fc.integer({ min: -150, max: 150 }),
  })
  .map(({ zone, year, pick, shift }) => {
    const transitions = transitionsIn(zone, year)
    const transition = transitions[pick % Math.max(1, transitions.length)]
    if (transition === undefined) return undefined
    const reading = transition.at + transition.before + shift * MINUTE
    const minutes = Math.floor((reading % DAY) / MINUTE)
    // Valid under the old offset: it happened before the change. Else valid under the new one. Else a gap.
    const early = reading - transition.before
    const late = reading - transition.after
    const expected = early < transition.at ? early : late >= transition.at ? late : early
    return {
      zone,
      date: dateOfIndex(Math.floor(reading / DAY)),
      time: `${pad(Math.floor(minutes / 60))}:${pad(minutes % 60)}`,
      expected,
    }
  })
  .filter((near) => near !== undefined)

describe("around DST transitions", () => {
  it("maps wall-clock times to the instant the gap and overlap rules demand", () => {
    fc.assert(
      fc.property(nearTransitionArb, ({ zone, date, time, expected }) => {
        expect(localDateTimeToInstant(date, time, zone)).toBe(expected)
        const r: ScheduleRule = {
          every: "day",
          interval: 1,
          time,
          timezone: zone,
          startDate: addDays(date, -2),
        }
        expect(occurrenceAt(r, 2)).toEqual({ index: 2, date, dueAt: expected })
        expect(firstOccurrenceAfter(r, expected - 1)?.index).toBe(2)
        expect(firstOccurrenceAfter(r, expected)?.index).toBe(3)
        checkSeries(r, 5)
      }),
      { numRuns: 200 },
    )
  })
})
