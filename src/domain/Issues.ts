/**
 * Turning Schema decode failures into the `details` list of the protocol and
 * the dead-letter stream: every problem, each with its field path.
 */
import { type Schema, SchemaIssue } from "effect"
import type { FieldIssue } from "./Errors.ts"

const formatIssue = SchemaIssue.makeFormatterStandardSchemaV1()

/** Every field problem of a decode failure, as a dotted path and a message. */
export const issuesOf = (error: Schema.SchemaError): Array<FieldIssue> =>
  formatIssue(error.issue).issues.map((issue) => ({
    path: (issue.path ?? [])
      .map((segment) => String(typeof segment === "object" ? segment.key : segment))
      .join("."),
    message: issue.message,
  }))
