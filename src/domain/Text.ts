/**
 * Free text that may be stored and shown: not blank, bounded, and without
 * control characters (Postgres cannot store NUL at all, and the rest break
 * receipts, logs and terminal displays). The protocol and the console apply
 * the same rules, through `textProblem`.
 */
import { Schema } from "effect"

const controlCharacter = /\p{Cc}/u
// In a `u` regex a surrogate pair is one astral code point, so \p{Cs} matches only unpaired halves.
const unpairedSurrogate = /\p{Cs}/u
/**
 * Text that shows nothing: white space, format characters (U+200B-U+200F, U+2060, U+FEFF, bidi
 * marks...), the other default-ignorable code points (Hangul fillers, variation selectors) and the
 * blank braille pattern. A name made only of these looks empty wherever it is shown.
 */
const invisibleOnly = /^[\s\p{Cf}\p{Default_Ignorable_Code_Point}\u2800]*$/u

/** True when `text` has a control character (TAB, LF and CR included, and the C1 controls). */
export const hasControlCharacter = (text: string): boolean => controlCharacter.test(text)

/**
 * True when `text` has an unpaired UTF-16 surrogate. JSON can carry one (`"\ud800"`), but UTF-8
 * cannot: the Postgres driver would store U+FFFD instead (so a repeated request id would no longer
 * match its stored one) and json/jsonb columns refuse the escape outright.
 */
export const hasUnpairedSurrogate = (text: string): boolean => unpairedSurrogate.test(text)

/** True when `text` is empty or shows nothing (only white space and invisible characters). */
export const isBlank = (text: string): boolean => invisibleOnly.test(text)

/** Why `text` cannot be stored as free text of at most `max` characters, or undefined. */
export const textProblem = (
  text: string,
  max: number,
  options: { readonly optional?: boolean } = {},
): string | undefined =>
  options.optional !== true && isBlank(text)
    ? "must not be empty"
    : text.length > max
      ? `must be at most ${max} characters`
      : hasControlCharacter(text)
        ? "must not contain control characters"
        : hasUnpairedSurrogate(text)
          ? "must be well-formed Unicode (no unpaired surrogates)"
          : undefined

/** Non-blank text of at most `max` characters with no control characters. */
export const Text = (max: number) =>
  Schema.String.check(Schema.makeFilter((text: string) => textProblem(text, max)))

/** Like `Text`, but may be empty (optional labels, reasons). */
export const OptionalText = (max: number) =>
  Schema.String.check(Schema.makeFilter((text: string) => textProblem(text, max, { optional: true })))
