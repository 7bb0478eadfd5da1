/**
 * Domain errors: the refusals a caller can act on. Each maps to one protocol
 * error code; infrastructure failures are never among them (they are defects,
 * answered as INTERNAL with nothing written).
 */
import { Schema } from "effect"

/** One problem with a request field: where it is and what is wrong. */
export const FieldIssue = Schema.Struct({ path: Schema.String, message: Schema.String })
export type FieldIssue = typeof FieldIssue.Type

/** The request is well-formed but its content breaks a rule. */
export class ValidationFailed extends Schema.TaggedError<ValidationFailed>()("ValidationFailed", {
  message: Schema.String,
  details: Schema.Array(FieldIssue),
}) {}

/** The resource does not exist, or belongs to another client (the two are indistinguishable by design). */
export class NotFound extends Schema.TaggedError<NotFound>()("NotFound", {
  message: Schema.String,
}) {}

/** A stale expectedVersion, or a transition the current state does not allow. */
export class Conflict extends Schema.TaggedError<Conflict>()("Conflict", {
  message: Schema.String,
  details: Schema.Array(FieldIssue),
}) {}

/** A configured limit refuses the operation. */
export class LimitExceeded extends Schema.TaggedError<LimitExceeded>()("LimitExceeded", {
  message: Schema.String,
}) {}

/** Everything a domain operation may refuse with. */
export type DomainError = ValidationFailed | NotFound | Conflict | LimitExceeded

/** A conflict with no field details. */
export const conflict = (message: string): Conflict => new Conflict({ message, details: [] })

/** A validation failure on one field. */
export const invalidField = (path: string, message: string): ValidationFailed =>
  new ValidationFailed({ message: `${path} ${message}`, details: [{ path, message }] })
