/** What the console's registry forms share: reading fields and the optional audit note. */
import { html } from "hono/html"

export type Form = Readonly<Record<string, unknown>>

/** A text field, trimmed and cut to `max` characters; empty when absent or not text. */
export const field = (form: Form, name: string, max = 500): string => {
  const value = form[name]
  return typeof value === "string" ? value.trim().slice(0, max) : ""
}

/** Whether a checkbox was ticked. */
export const checked = (form: Form, name: string) => form[name] === "on"

/** An admin's optional note on a configuration change, kept in the audit log. */
export const noteOf = (form: Form): string | null => field(form, "reason") || null

export const reasonField = html`<label>Note for the audit log (optional)</label><input type="text" name="reason" maxlength="500" placeholder="change request CR-..." />`
