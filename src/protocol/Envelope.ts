/**
 * The V3 request and reply envelopes of the channel protocol, and its error
 * codes. See docs/protocol.md for the full description with examples.
 */
import { Schema } from "effect"
import type { FieldIssue } from "../domain/Errors.ts"
import { OptionalText, Text } from "../domain/Text.ts"
import { Timestamp } from "../domain/Timestamp.ts"

/** Client ids end up in subjects (`rp.notify.<clientId>`), so they are restricted to subject-safe characters. */
export const ClientId = Schema.String.check(
  Schema.makeFilter((text: string) =>
    /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/.test(text)
      ? undefined
      : "must be 1-128 characters of letters, digits, '-' or '_', starting with a letter or digit",
  ),
)

/** A request as a channel sends it on `rp.v3.<channel>`. */
export const RequestEnvelope = Schema.Struct({
  v: Schema.Literal(3),
  requestId: Text(128),
  channel: Text(64),
  terminal: Schema.optionalKey(OptionalText(128)),
  clientId: ClientId,
  sentAt: Timestamp,
  operation: Text(64),
  body: Schema.Unknown,
})
export type RequestEnvelope = typeof RequestEnvelope.Type

/** Every error code a reply may carry. */
export const ErrorCode = Schema.Literals([
  "BAD_REQUEST",
  "VALIDATION_FAILED",
  "UNAUTHORIZED",
  "NOT_FOUND",
  "CONFLICT",
  "LIMIT_EXCEEDED",
  "UNKNOWN_OPERATION",
  "INTERNAL",
])
export type ErrorCode = typeof ErrorCode.Type

/** A successful reply. */
export const OkReply = Schema.Struct({
  v: Schema.Literal(3),
  requestId: Schema.NullOr(Schema.String),
  status: Schema.Literal("ok"),
  result: Schema.Unknown,
})

/** A refused request. */
export const ErrorReply = Schema.Struct({
  v: Schema.Literal(3),
  requestId: Schema.NullOr(Schema.String),
  status: Schema.Literal("error"),
  error: Schema.Struct({
    code: ErrorCode,
    message: Schema.String,
    details: Schema.Array(Schema.Struct({ path: Schema.String, message: Schema.String })),
  }),
})

/** Any reply. */
export const ReplyEnvelope = Schema.Union([OkReply, ErrorReply])
export type ReplyEnvelope = typeof ReplyEnvelope.Type

/** The JSON text of a successful reply. */
export const okReply = (requestId: string | null, result: unknown): string =>
  JSON.stringify({ v: 3, requestId, status: "ok", result })

/** The JSON text of an error reply. */
export const errorReply = (
  requestId: string | null,
  code: ErrorCode,
  message: string,
  details: ReadonlyArray<FieldIssue> = [],
): string => JSON.stringify({ v: 3, requestId, status: "error", error: { code, message, details } })
