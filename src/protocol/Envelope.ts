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
  "BUSY",
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
    /** BUSY only: wait this long, then send the same request (same requestId) again. */
    retryAfterMs: Schema.optionalKey(Schema.Int),
  }),
})

/** Any reply. */
export const ReplyEnvelope = Schema.Union([OkReply, ErrorReply])
export type ReplyEnvelope = typeof ReplyEnvelope.Type

/** The JSON text of a successful reply. */
export const okReply = (requestId: string | null, result: unknown): string =>
  JSON.stringify({ v: 3, requestId, status: "ok", result })

/** At most this many `details` entries are sent; one more entry says how many were left out. */
export const MAX_DETAILS = 50
/** A longer error message, detail path or detail message is cut here (they can echo the request). */
const MAX_MESSAGE_CHARS = 1_000
const MAX_PATH_CHARS = 200
const MAX_DETAIL_MESSAGE_CHARS = 300

const cut = (text: string, max: number): string =>
  text.length <= max ? text : `${text.slice(0, max)}… (${text.length - max} more characters)`

/**
 * The details a reply carries: one entry per path (several problems at one path are joined),
 * the first `MAX_DETAILS` paths, then one entry saying how many more there were. A request
 * with thousands of bad keys then still gets a reply of a few kilobytes.
 */
export const capDetails = (details: ReadonlyArray<FieldIssue>): Array<FieldIssue> => {
  const byPath = new Map<string, Array<string>>()
  for (const { path, message } of details) {
    const messages = byPath.get(path)
    if (messages === undefined) byPath.set(path, [message])
    else if (!messages.includes(message)) messages.push(message)
  }
  const capped: Array<FieldIssue> = []
  for (const [path, messages] of byPath) {
    if (capped.length === MAX_DETAILS) break
    capped.push({
      path: cut(path, MAX_PATH_CHARS),
      message: cut(messages.join("; "), MAX_DETAIL_MESSAGE_CHARS),
    })
  }
  const more = byPath.size - capped.length
  if (more > 0) capped.push({ path: "(more)", message: `${more} more paths with problems are not listed` })
  return capped
}

/** The JSON text of an error reply. */
export const errorReply = (
  requestId: string | null,
  code: ErrorCode,
  message: string,
  details: ReadonlyArray<FieldIssue> = [],
): string =>
  JSON.stringify({
    v: 3,
    requestId,
    status: "error",
    error: { code, message: cut(message, MAX_MESSAGE_CHARS), details: capDetails(details) },
  })

/** The JSON text of a BUSY reply: the request was not started, nothing was written; retry it later. */
export const busyReply = (requestId: string | null, retryAfterMs: number): string =>
  JSON.stringify({
    v: 3,
    requestId,
    status: "error",
    error: {
      code: "BUSY",
      message: `the engine is busy and did not start this request; nothing was written. Send it again (same requestId) after ${retryAfterMs} ms`,
      details: [],
      retryAfterMs,
    },
  })

/** NATS's default max_payload, for when the connection has not told us the server's. */
export const DEFAULT_MAX_PAYLOAD = 1024 * 1024

/**
 * The reply itself when it fits in `maxBytes`, else a short error naming the same request and,
 * for an error, the same code (its details dropped), so a reply can always be sent.
 */
export const fitReply = (reply: string, maxBytes: number): string => {
  // UTF-8 takes at most 3 bytes per UTF-16 code unit: most replies need no counting.
  if (reply.length * 3 <= maxBytes || Buffer.byteLength(reply) <= maxBytes) return reply
  let requestId: string | null = null
  let code: ErrorCode = "INTERNAL"
  try {
    const parsed = JSON.parse(reply) as { requestId?: unknown; error?: { code?: unknown } }
    if (typeof parsed.requestId === "string") requestId = parsed.requestId
    const parsedCode = parsed.error?.code
    if (Schema.is(ErrorCode)(parsedCode)) code = parsedCode
  } catch {
    // Not ours to read: the short INTERNAL reply stands.
  }
  const message =
    code === "INTERNAL"
      ? `the reply (${Buffer.byteLength(reply)} bytes) is larger than the NATS server accepts (${maxBytes} bytes) and was not sent`
      : `the request was refused; the full reply is larger than the NATS server accepts (${maxBytes} bytes), so its details are left out`
  const short = JSON.stringify({ v: 3, requestId, status: "error", error: { code, message, details: [] } })
  return Buffer.byteLength(short) <= maxBytes
    ? short
    : JSON.stringify({ v: 3, requestId: null, status: "error", error: { code, message, details: [] } })
}
