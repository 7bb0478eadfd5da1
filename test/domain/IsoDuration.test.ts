import fc from "fast-check"
import { describe, expect, it } from "vitest"
import * as IsoDuration from "../../src/domain/IsoDuration.ts"
import { parseTimestamp } from "../../src/domain/Timestamp.ts"

describe("ISO 8601 durations", () => {
  it.each([
    ["PT1H", 3_600_000],
    ["P1D", 86_400_000],
    ["PT15M", 900_000],
    ["P1W", 604_800_000],
    ["P1DT12H", 129_600_000],
    ["PT0.5S", 500],
  ])("%s is %d ms", (text, millis) => {
    expect(IsoDuration.parseMillis(text)).toBe(millis)
  })

  it.each(["", "P", "PT", "1H", "P1M", "P1Y", "PT-1H", "P1DT", "pt1h"])("refuses %j", (text) => {
    expect(IsoDuration.parseMillis(text)).toBeUndefined()
  })

  it("formats back to a duration of the same length", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 400 * 86_400_000 }), (seconds) => {
        const millis = Math.floor(seconds / 1000) * 1000
        expect(IsoDuration.parseMillis(IsoDuration.formatMillis(millis))).toBe(millis)
      }),
    )
  })
})

describe("RFC 3339 timestamps", () => {
  it("needs an explicit offset and a real date", () => {
    expect(parseTimestamp("2026-12-01T10:00:00+03:00")).toBe(Date.parse("2026-12-01T07:00:00Z"))
    expect(parseTimestamp("2026-12-01T07:00:00.250Z")).toBe(Date.parse("2026-12-01T07:00:00.250Z"))
    for (const text of [
      "2026-12-01T10:00:00",
      "2027-02-30T00:00:00Z",
      "2026-12-01",
      "yesterday",
      "2026-13-01T00:00:00Z",
    ]) {
      expect([text, parseTimestamp(text)]).toEqual([text, undefined])
    }
  })
})
