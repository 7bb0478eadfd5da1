/**
 * Free text that may be stored and shown: not blank, bounded, and without
 * control characters (Postgres cannot store NUL at all, and the rest break
 * receipts, logs and terminal displays).
 */
import { Schema } from "effect"

const controlCharacter = /\p{Cc}/u

/** True when `text` has a control character. */
export const hasControlCharacter = (text: string): boolean => controlCharacter.test(text)

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
          : undefined,
    ),
  )
