/** What the console's forms share: reading fields, the optional audit note, and the text rules. */
import { html } from "hono/html"
import { hasControlCharacter, hasUnpairedSurrogate, isBlank } from "../domain/Text.ts"

export type Form = Readonly<Record<string, unknown>>

/** A text field, trimmed and cut to `max` characters; empty when absent or not text. */
export const field = (form: Form, name: string, max = 500): string => {
  const value = form[name]
  return typeof value === "string" ? value.trim().slice(0, max) : ""
}

/** Whether a checkbox was ticked. */
export const checked = (form: Form, name: string) => form[name] === "on"

/** An admin's optional note on a configuration change, kept in the audit log. */
export const noteOf = (form: Form): string | null => {
  const note = field(form, "reason")
  return isBlank(note) ? null : note
}

export const reasonField = html`<label>Note for the audit log (optional)</label><input type="text" name="reason" maxlength="500" placeholder="change request CR-..." />`

/** Fields that hold a whole message rather than text: a dead letter's edited original, JSON over several lines. */
const MESSAGE_FIELDS: ReadonlySet<string> = new Set(["payload"])

/**
 * Why a posted form cannot be taken, or undefined: every text field follows the protocol's text
 * rules (src/domain/Text.ts), so a reason, a note or a name the console stores is one line without
 * control characters, exactly as a channel's would have to be.
 */
export const formTextProblem = (form: Form): string | undefined => {
  for (const [name, value] of Object.entries(form)) {
    if (MESSAGE_FIELDS.has(name)) continue
    for (const text of Array.isArray(value) ? value : [value]) {
      if (typeof text !== "string") continue
      if (hasControlCharacter(text))
        return `the field "${name}" has a control character (a tab, a line break or another invisible control); text is kept on one line, without control characters`
      if (hasUnpairedSurrogate(text))
        return `the field "${name}" is not well-formed Unicode (an unpaired surrogate)`
    }
  }
  return undefined
}
