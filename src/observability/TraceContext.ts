/**
 * W3C trace context (`traceparent`) on NATS messages: read from a channel's
 * request, written on the payment command the request caused, so a trace
 * follows a payment from the channel through the engine to the hub.
 */
import { Match, type MsgHdrs } from "@nats-io/transport-node"
import { Tracer } from "effect"

/** The header name, as W3C Trace Context spells it. */
export const TRACEPARENT_HEADER = "traceparent"

const traceparentPattern = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/

const allZeros = /^0+$/

/** The span a valid `traceparent` names, as a parent for the engine's own spans; undefined when invalid. */
export const parseTraceparent = (header: string | undefined): Tracer.ExternalSpan | undefined => {
  if (header === undefined) return undefined
  const match = traceparentPattern.exec(header.trim().toLowerCase())
  if (match === null) return undefined
  const [, version, traceId, spanId, flags, rest] = match
  // Version ff is forbidden; version 00 has exactly four fields (later versions may add more).
  if (version === "ff" || (version === "00" && rest !== undefined)) return undefined
  if (traceId === undefined || spanId === undefined || flags === undefined) return undefined
  if (allZeros.test(traceId) || allZeros.test(spanId)) return undefined
  return Tracer.externalSpan({ traceId, spanId, sampled: (Number.parseInt(flags, 16) & 1) === 1 })
}

/** The `traceparent` naming `span` as the parent of whatever receives it. */
export const formatTraceparent = (span: Tracer.AnySpan): string =>
  `00-${span.traceId}-${span.spanId}-${span.sampled ? "01" : "00"}`

/** The one `traceparent` header of a message; several or none mean none. */
export const traceparentOf = (headers: MsgHdrs | undefined): string | undefined => {
  const values = headers?.values(TRACEPARENT_HEADER, Match.IgnoreCase) ?? []
  return values.length === 1 ? values[0] : undefined
}
