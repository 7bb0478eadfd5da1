/** The protocol's text rules, which the console applies too. */
import { Schema } from "effect"
import { describe, expect, it } from "vitest"
import { isBlank, Text, textProblem } from "../../src/domain/Text.ts"

describe("text rules", () => {
  it("count text that shows nothing as blank", () => {
    for (const blank of [
      "",
      "   ",
      "\u200b",
      "\u200b\u200c\u200d",
      "\u2060\ufeff",
      " \u200b\u00a0",
      "\u3164",
      "\u2800",
    ])
      expect([JSON.stringify(blank), isBlank(blank)]).toEqual([JSON.stringify(blank), true])
    for (const text of ["a", "\u200ba", "e\u0301", "\u202eabc", "🏠", "x\u200d"])
      expect([JSON.stringify(text), isBlank(text)]).toEqual([JSON.stringify(text), false])
  })

  it("refuse blank, too long, control characters (TAB, LF, CR, C1) and unpaired surrogates", () => {
    expect(textProblem("\u200b\u200b", 10)).toBe("must not be empty")
    expect(textProblem("\u200b\u200b", 10, { optional: true })).toBeUndefined()
    expect(textProblem("abcdef", 5)).toBe("must be at most 5 characters")
    for (const control of ["\t", "\n", "\r", "\u0000", "\u001b", "\u007f", "\u0085", "\u009b"])
      expect([JSON.stringify(control), textProblem(`a${control}b`, 10)]).toEqual([
        JSON.stringify(control),
        "must not contain control characters",
      ])
    expect(textProblem("a\ud800", 10)).toBe("must be well-formed Unicode (no unpaired surrogates)")
    expect(textProblem("Квартплата 🏠 \u200fשכירות\u200f", 100)).toBeUndefined()
    expect(Schema.is(Text(10))("\u200b\u2060")).toBe(false)
    expect(Schema.is(Text(10))("rent")).toBe(true)
  })
})
