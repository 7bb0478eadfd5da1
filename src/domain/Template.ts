/**
 * Payment templates: who is paid (provider and the payee's account there)
 * and from where (the payer's account or card token), saved once by a
 * client and reused by their autopayments.
 */
import { Schema } from "effect"
import { Text, textProblem } from "./Text.ts"

/** Provider ids appear in subjects (`provider.<providerId>.…`), so they are subject-safe tokens. */
export const ProviderId = Schema.String.check(
  Schema.makeFilter((text: string) =>
    /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(text)
      ? undefined
      : "must be 1-64 characters of letters, digits, '-' or '_', starting with a letter or digit",
  ),
)

/** Template fields as a client sends them. */
export const TemplateInput = Schema.Struct({
  name: Text(100),
  providerId: ProviderId,
  account: Text(64),
  source: Text(64),
  fields: Schema.optionalKey(
    // Keys are checked here rather than by the record's key schema, so that a bad key is
    // reported with what is wrong with it instead of as an unexpected property.
    Schema.Record(Schema.String, Text(256)).check(
      Schema.makeFilter((fields: Readonly<Record<string, string>>) => {
        const keys = Object.keys(fields)
        if (keys.length > 32) return "must have at most 32 entries"
        return keys.flatMap((key): Array<Schema.FilterIssue> => {
          const problem = textProblem(key, 64)
          return problem === undefined ? [] : [{ path: [key], issue: `field names ${problem}` }]
        })
      }),
    ),
  ),
})
export type TemplateInput = typeof TemplateInput.Type

/** A stored template. */
export interface Template {
  readonly id: string
  readonly clientId: string
  readonly name: string
  readonly providerId: string
  readonly account: string
  readonly source: string
  readonly fields: Readonly<Record<string, string>>
  readonly createdAt: number
  readonly createdChannel: string
  readonly createdTerminal: string | null
}

/** The public form of a template. */
export const TemplateView = Schema.Struct({
  templateId: Schema.String,
  clientId: Schema.String,
  name: Schema.String,
  providerId: Schema.String,
  account: Schema.String,
  source: Schema.String,
  fields: Schema.Record(Schema.String, Schema.String),
  createdAt: Schema.String,
  createdBy: Schema.Struct({ channel: Schema.String, terminal: Schema.NullOr(Schema.String) }),
})
export type TemplateView = typeof TemplateView.Type

/** The public form of `template`. */
export const toTemplateView = (template: Template): TemplateView => ({
  templateId: template.id,
  clientId: template.clientId,
  name: template.name,
  providerId: template.providerId,
  account: template.account,
  source: template.source,
  fields: template.fields,
  createdAt: new Date(template.createdAt).toISOString(),
  createdBy: { channel: template.createdChannel, terminal: template.createdTerminal },
})
