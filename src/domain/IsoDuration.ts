/**
 * ISO 8601 durations (`PT1H`, `P1D`, `PT15M`, `P1DT12H`) as exact milliseconds.
 *
 * Only fixed-length units are accepted (weeks, days, hours, minutes, seconds):
 * a cooldown or a retry delay must mean the same length every time, and "one
 * month" does not. Days are 24 hours of tick time.
 */
import { Schema } from "effect"

const pattern = /^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d{1,3})?)S)?)?$/

const SECOND = 1000
const MINUTE = 60 * SECOND
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR

/** Milliseconds in the duration, or undefined if the text is not a supported ISO 8601 duration. */
export const parseMillis = (text: string): number | undefined => {
  const match = pattern.exec(text)
  if (match === null || text === "P" || text.endsWith("T")) return undefined
  const [, weeks, days, hours, minutes, seconds] = match
  const millis =
    Number(weeks ?? 0) * 7 * DAY +
    Number(days ?? 0) * DAY +
    Number(hours ?? 0) * HOUR +
    Number(minutes ?? 0) * MINUTE +
    Math.round(Number(seconds ?? 0) * SECOND)
  return Number.isSafeInteger(millis) ? millis : undefined
}

/** Formats milliseconds back to the shortest ISO 8601 duration with fixed-length units. */
export const formatMillis = (millis: number): string => {
  if (millis === 0) return "PT0S"
  let rest = millis
  const days = Math.floor(rest / DAY)
  rest -= days * DAY
  const hours = Math.floor(rest / HOUR)
  rest -= hours * HOUR
  const minutes = Math.floor(rest / MINUTE)
  rest -= minutes * MINUTE
  const seconds = rest / SECOND
  const date = days > 0 ? `${days}D` : ""
  const time = `${hours > 0 ? `${hours}H` : ""}${minutes > 0 ? `${minutes}M` : ""}${seconds > 0 ? `${seconds}S` : ""}`
  return `P${date}${time === "" ? "" : `T${time}`}`
}

/** A positive ISO 8601 duration string (the wire form stays a string). */
export const IsoDuration = Schema.String.check(
  Schema.makeFilter((text: string) => {
    const millis = parseMillis(text)
    if (millis === undefined) {
      return `must be an ISO 8601 duration in weeks, days, hours, minutes or seconds (e.g. "PT1H", "P1D"), got ${JSON.stringify(text)}`
    }
    return millis > 0 ? undefined : "must be longer than zero"
  }),
)

/** Parses a duration that was already validated; a programming error otherwise. */
export const millisOf = (text: string): number => {
  const millis = parseMillis(text)
  if (millis === undefined) throw new Error(`invalid ISO 8601 duration: ${text}`)
  return millis
}
