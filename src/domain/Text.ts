/**
 * Free text that may be stored and shown: not blank, bounded, and without
 * control characters (Postgres cannot store NUL at all, and the rest break
 * receipts, logs and terminal displays).
 */
import { Schema } from "effect"

const controlCharacter = /\p{Cc}/u
// In a `u` regex a surrogate pair is one astral code point, so \p{Cs} matches only unpaired halves.
const unpairedSurrogate = /\p{Cs}/u

/** True when `text` has a control character. */
export const hasControlCharacter = (text: string): boolean => controlCharacter.test(text)

/**
 * True when `text` has an unpaired UTF-16 surrogate. JSON can carry one (`"\ud800"`), but UTF-8
 * cannot: the Postgres driver would store U+FFFD instead (so a repeated request id would no longer
 * match its stored one) and json/jsonb columns refuse the escape outright.
 */
export const hasUnpairedSurrogate = (text: string): boolean => unpairedSurrogate.test(text)

/** Non-blank text of at most `max` characters with no control characters. */
export const Text = (max: number) =>
  Schema.String.check(
    Schema.makeFilter((text: string) =>
      text.trim().length === 0
        ? "must not be empty"
        : text.length > max
          ? `must be at most ${max} characters`
          : hasControlCharacter(text)
            ? "must not contain control characters"
            : hasUnpairedSurrogate(text)
              ? "must be well-formed Unicode (no unpaired surrogates)"
              : undefined,
    ),
  )

/** Like `Text`, but may be empty (optional labels, reasons). */
export const OptionalText = (max: number) =>
  Schema.String.check(
    Schema.makeFilter((text: string) =>
      text.length > max
        ? `must be at most ${max} characters`
        : hasControlCharacter(text)
          ? "must not contain control characters"
          : hasUnpairedSurrogate(text)
            ? "must be well-formed Unicode (no unpaired surrogates)"
            : undefined,
    ),
  )
