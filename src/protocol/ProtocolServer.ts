/**
 * The channel protocol server: core NATS request-reply on `rp.v3.<channel>`,
 * served by a queue group so any engine instance answers any channel.
 *
 * A request goes through these gates in order, and the first that refuses
 * answers; none of them writes anything:
 *   not JSON or not an envelope → BAD_REQUEST
 *   subject and envelope disagree, unknown or disabled channel, missing or
 *   wrong signature, signed `sentAt` outside the replay window, operation
 *   the channel may not use → UNAUTHORIZED (see Channels.ts)
 *   unknown operation → UNKNOWN_OPERATION
 *   body fails its schema → VALIDATION_FAILED (every problem listed)
 * A mutating request whose (channel, requestId) was seen before is answered
 * with the stored reply — only once it has passed every gate above, so a
 * replayed or forged request never reads the idempotency log. Then the operation runs; a domain refusal maps to
 * its code and an unexpected failure to INTERNAL (its transaction rolled back).
 */
import { createHash } from "node:crypto"
import { headers, Match, type Msg } from "@nats-io/transport-node"
import {
  Cause,
  Context,
  Deferred,
  Effect,
  FiberSet,
  Layer,
  Option,
  Schedule,
  Schema,
  Semaphore,
} from "effect"
import { Partitions, partitionOf } from "../actors/Partitions.ts"
import type { DomainError } from "../domain/Errors.ts"
import { isUuid } from "../domain/Ids.ts"
import { issuesOf } from "../domain/Issues.ts"
import { EngineConfig } from "../EngineConfig.ts"
import {
  Metrics,
  NO_OPERATION_LABEL,
  outcomeOfReply,
  UNKNOWN_OPERATION_LABEL,
} from "../observability/Metrics.ts"
import { parseTraceparent, TRACEPARENT_HEADER, traceparentOf } from "../observability/TraceContext.ts"
import { RequestLog } from "../store/RequestLog.ts"
import { InternalAuth } from "../streams/InternalAuth.ts"
import { Nats } from "../streams/Nats.ts"
import { Topology } from "../streams/Topology.ts"
import { SIGNATURE_HEADER } from "./ChannelKeys.ts"
import { Channels, summarizeRegistry } from "./Channels.ts"
import {
  busyReply,
  DEFAULT_MAX_PAYLOAD,
  type ErrorCode,
  errorReply,
  fitReply,
  okReply,
  RequestEnvelope,
} from "./Envelope.ts"
import type { Operation, RequestContext } from "./Operation.ts"
import { makeRetryAdvice } from "./RetryAdvice.ts"
import { subscriptionOperations } from "./SubscriptionOperations.ts"
import { templateOperations } from "./TemplateOperations.ts"

/** Requests larger than this are refused before parsing. */
export const MAX_REQUEST_BYTES = 256 * 1024

const decodeEnvelope = Schema.decodeUnknownEffect(RequestEnvelope)
const utf8 = new TextDecoder("utf-8", { fatal: true })

const codeOf = (error: DomainError): ErrorCode => {
  switch (error._tag) {
    case "ValidationFailed":
      return "VALIDATION_FAILED"
    case "NotFound":
      return "NOT_FOUND"
    case "Conflict":
      return "CONFLICT"
    case "LimitExceeded":
      return "LIMIT_EXCEEDED"
  }
}

const detailsOf = (error: DomainError) =>
  error._tag === "ValidationFailed" || error._tag === "Conflict" ? error.details : []

/** A best-effort request id for replies to requests that failed before their envelope decoded. */
const requestIdOf = (json: unknown): string | null =>
  typeof json === "object" && json !== null && "requestId" in json && typeof json.requestId === "string"
    ? json.requestId
    : null

/** JSON with object keys sorted, so the same request hashes the same whatever order a channel writes keys in. */
export const canonicalJson = (value: unknown): string => {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`
  if (typeof value === "object" && value !== null) {
    const entries = Object.entries(value)
      .filter(([, field]) => field !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    return `{${entries.map(([key, field]) => `${JSON.stringify(key)}:${canonicalJson(field)}`).join(",")}}`
  }
  return JSON.stringify(value) ?? "null"
}

/**
 * Handles one request's bytes (and its `Rp-Signature` and `traceparent` headers, if any) and returns
 * the reply's JSON text. Never fails.
 */
export type RequestHandler = (
  data: Uint8Array,
  subject: string,
  signature?: string | undefined,
  traceparent?: string | undefined,
  /** Sent by another instance to this partition owner: handled here, never forwarded again. */
  forwarded?: boolean,
) => Effect.Effect<string>

/** The subscription a mutating request changes, when its body names one. */
export const targetOf = (body: unknown): string | undefined => {
  if (typeof body !== "object" || body === null) return undefined
  const { subscriptionId, reminderId } = body as { subscriptionId?: unknown; reminderId?: unknown }
  const target = typeof subscriptionId === "string" ? subscriptionId : reminderId
  return typeof target === "string" && isUuid(target) ? target.toLowerCase() : undefined
}

/** Headers a forwarded request carries: the subject it arrived on and its signature. */
export const FORWARDED_SUBJECT_HEADER = "Rp-Forwarded-Subject"

/** A forwarded request unanswered this long is handled where it arrived (the channel is still waiting). */
const FORWARD_TIMEOUT_MS = 5_000

/** The request's one `Rp-Signature` header; several are treated as none, so the request is refused. */
export const signatureOf = (message: Msg): string | undefined => {
  const values = message.headers?.values(SIGNATURE_HEADER, Match.IgnoreCase) ?? []
  return values.length === 1 ? values[0] : undefined
}

/** The protocol's request handler, independent of the transport (tests call it directly too). */
export class ProtocolHandler extends Context.Service<
  ProtocolHandler,
  {
    readonly handle: RequestHandler
    /** The BUSY reply to a request that was not started (and counts it); nothing is written. */
    readonly busy: (data: Uint8Array, retryAfterMs: number) => string
  }
>()("rp/protocol/ProtocolHandler") {
  static readonly layer = Layer.effect(
    ProtocolHandler,
    Effect.gen(function* () {
      const { subjects } = yield* Topology
      const channels = yield* Channels
      const requestLog = yield* RequestLog
      const partitions = yield* Partitions
      const internal = yield* InternalAuth
      const { connection } = yield* Nats

      /**
       * A change to a subscription of another instance's partition is handled by that instance, so its
       * actor runs in one place. Without an answer (a handover, the owner gone) it is handled here: the
       * revision fence orders it with anything the owner does.
       */
      const forwardToOwner = (
        target: string,
        data: Uint8Array,
        subject: string,
        signature: string | undefined,
        traceparent: string | undefined,
      ) =>
        Effect.tryPromise(() => {
          const forwardedHeaders = headers()
          forwardedHeaders.set(FORWARDED_SUBJECT_HEADER, subject)
          if (signature !== undefined) forwardedHeaders.set(SIGNATURE_HEADER, signature)
          if (traceparent !== undefined) forwardedHeaders.set(TRACEPARENT_HEADER, traceparent)
          return internal.request(subjects.partitionRequests(partitionOf(target, partitions.count)), data, {
            timeout: FORWARD_TIMEOUT_MS,
            headers: forwardedHeaders,
          })
        }).pipe(
          Effect.map((reply) => reply.string()),
          Effect.option,
        )

      const metrics = yield* Metrics
      const operations: Readonly<Record<string, Operation>> = {
        ...(yield* templateOperations),
        ...(yield* subscriptionOperations),
      }

      // Read per reply: the server's limit can change when the client reconnects to another server.
      const maxPayload = () => connection.info?.max_payload ?? DEFAULT_MAX_PAYLOAD
      const fitted = (reply: string) => {
        const sent = fitReply(reply, maxPayload())
        return sent === reply
          ? Effect.succeed(reply)
          : Effect.logWarning("reply larger than the NATS max_payload; sent a short one instead").pipe(
              Effect.annotateLogs({ replyBytes: Buffer.byteLength(reply), maxPayload: maxPayload() }),
              Effect.as(sent),
            )
      }

      const handle: RequestHandler = (data, subject, signature, traceparent, forwarded = false) => {
        // Known once the envelope decodes, so that even an INTERNAL reply names its request.
        let knownRequestId: string | null = null
        // A metric label: the operation's name only when it is one of ours, so labels stay bounded.
        let operationLabel = NO_OPERATION_LABEL
        const started = performance.now()
        return Effect.gen(function* () {
          if (data.length > MAX_REQUEST_BYTES) {
            return errorReply(null, "BAD_REQUEST", `request is larger than ${MAX_REQUEST_BYTES} bytes`)
          }
          let json: unknown
          try {
            json = JSON.parse(utf8.decode(data))
          } catch (error) {
            return errorReply(null, "BAD_REQUEST", `request is not UTF-8 JSON: ${(error as Error).message}`)
          }
          const decoded = yield* Effect.result(
            decodeEnvelope(json, { errors: "all", onExcessProperty: "ignore" }),
          )
          if (decoded._tag === "Failure") {
            const details = issuesOf(decoded.failure)
            return errorReply(
              requestIdOf(json),
              "BAD_REQUEST",
              `not a V3 request envelope: ${details.map((issue) => `${issue.path || "(root)"} ${issue.message}`).join("; ")}`,
              details,
            )
          }
          const envelope = decoded.success
          const { requestId } = envelope
          knownRequestId = requestId
          operationLabel = Object.hasOwn(operations, envelope.operation)
            ? envelope.operation
            : UNKNOWN_OPERATION_LABEL
          yield* Effect.annotateCurrentSpan({
            "rp.operation": operationLabel,
            "rp.channel": envelope.channel,
          })
          const subjectChannel = subject.split(".")[subjects.channelTokenIndex]
          if (subjectChannel !== envelope.channel) {
            return errorReply(
              requestId,
              "UNAUTHORIZED",
              `envelope channel "${envelope.channel}" does not match the subject's channel "${subjectChannel}"`,
            )
          }
          const refusal = yield* channels.authorize({
            channel: envelope.channel,
            operation: envelope.operation,
            sentAt: envelope.sentAt,
            data,
            signature,
          })
          if (refusal !== undefined) return errorReply(requestId, "UNAUTHORIZED", refusal.message)
          // Own properties only: "__proto__", "constructor" or "toString" would otherwise find
          // Object.prototype's members and fail as INTERNAL instead of UNKNOWN_OPERATION.
          const operation = Object.hasOwn(operations, envelope.operation)
            ? operations[envelope.operation]
            : undefined
          if (operation === undefined) {
            return errorReply(
              requestId,
              "UNKNOWN_OPERATION",
              `unknown operation "${envelope.operation}"; known: ${Object.keys(operations).join(", ")}`,
            )
          }
          const body = yield* Effect.result(operation.decode(envelope.body))
          if (body._tag === "Failure") {
            return errorReply(requestId, "VALIDATION_FAILED", body.failure.message, body.failure.details)
          }
          const requestHash = createHash("sha256")
            .update(canonicalJson([envelope.operation, envelope.clientId, envelope.body]))
            .digest("base64url")
          const context: RequestContext = {
            channel: envelope.channel,
            terminal: envelope.terminal ?? null,
            clientId: envelope.clientId,
            requestId,
            operation: envelope.operation,
            requestHash,
            by: { channel: envelope.channel, terminal: envelope.terminal ?? null, requestId },
          }
          const answerFromLog = Effect.gen(function* () {
            const stored = yield* requestLog.find(envelope.channel, requestId)
            if (stored === undefined) return undefined
            return stored.requestHash === requestHash
              ? stored.reply
              : errorReply(
                  requestId,
                  "CONFLICT",
                  `requestId "${requestId}" was already used by this channel for a different request`,
                )
          })
          if (operation.mutating) {
            const target = targetOf(envelope.body)
            if (!forwarded && target !== undefined && !partitions.ownsId(target)) {
              const ownersReply = yield* forwardToOwner(target, data, subject, signature, traceparent)
              if (ownersReply._tag === "Some") return ownersReply.value
            }
            const repeat = yield* answerFromLog
            if (repeat !== undefined) return repeat
          }
          const outcome = yield* Effect.result(operation.run(body.success, context))
          if (outcome._tag === "Failure") {
            return errorReply(
              requestId,
              codeOf(outcome.failure),
              outcome.failure.message,
              detailsOf(outcome.failure),
            )
          }
          switch (outcome.success._tag) {
            case "Result":
              return okReply(requestId, outcome.success.result)
            case "Reply":
              return outcome.success.text
            case "AlreadyAnswered":
              return (
                (yield* answerFromLog) ??
                errorReply(
                  requestId,
                  "INTERNAL",
                  "the request was answered concurrently but its reply is missing",
                )
              )
          }
        }).pipe(
          Effect.catchCause((cause) =>
            Effect.logError("request failed unexpectedly; nothing was written").pipe(
              Effect.annotateLogs({ subject, cause: Cause.pretty(cause) }),
              Effect.as(
                errorReply(
                  knownRequestId,
                  "INTERNAL",
                  "the engine failed to handle the request; nothing was written",
                ),
              ),
            ),
          ),
          // Every request runs in a span, the channel's when it sent a traceparent: its trace id
          // goes with the transition to the payment command the request causes.
          Effect.withSpan("rp.protocol.request", {
            kind: "server",
            parent: parseTraceparent(traceparent),
          }),
          Effect.flatMap(fitted),
          Effect.tap((reply) =>
            Effect.sync(() =>
              metrics.requestHandled(
                operationLabel,
                outcomeOfReply(reply),
                (performance.now() - started) / 1_000,
              ),
            ),
          ),
        )
      }

      const busy = (data: Uint8Array, retryAfterMs: number): string => {
        let json: unknown
        try {
          json = data.length > MAX_REQUEST_BYTES ? undefined : JSON.parse(utf8.decode(data))
        } catch {
          json = undefined
        }
        const operation =
          typeof json === "object" && json !== null && "operation" in json ? json.operation : undefined
        metrics.requestHandled(
          typeof operation !== "string"
            ? NO_OPERATION_LABEL
            : Object.hasOwn(operations, operation)
              ? operation
              : UNKNOWN_OPERATION_LABEL,
          "BUSY",
          0,
        )
        return fitReply(busyReply(requestIdOf(json), retryAfterMs), maxPayload())
      }

      return ProtocolHandler.of({ handle, busy })
    }),
  )
}

/** Why the protocol server stopped, in a few words for readiness and the log. */
const reasonOf = (failure: unknown): string => {
  if (typeof failure === "string") return failure
  const error = failure instanceof Error && failure.cause instanceof Error ? failure.cause : failure
  return `it failed: ${error instanceof Error ? error.message : String(error)}`
}

/** How soon a stopped protocol server subscribes again: 100 ms, doubling, at most 2 s apart, for ever. */
const restartSchedule = Schedule.min([Schedule.exponential("100 millis"), Schedule.spaced("2 seconds")])

/**
 * Serves the protocol on NATS until the engine stops.
 *
 * At most `RP_REQUEST_CONCURRENCY` requests are handled at once; up to `RP_REQUEST_QUEUE` more
 * wait, each at most `RP_REQUEST_QUEUE_WAIT`. A request that cannot wait (the queue is full) or
 * waited that long is answered BUSY with a `retryAfterMs` (RetryAdvice.ts), unstarted: the channel sends it again
 * with the same requestId instead of timing out. One request's failure, even to send its reply,
 * is logged and touches no other. The subscription itself is supervised: should it end or fail,
 * the server subscribes again with back-off, and readiness names the protocol until it does.
 */
export const ProtocolServer = Layer.effectDiscard(
  Effect.gen(function* () {
    const config = yield* EngineConfig
    const { connection } = yield* Nats
    const { subjects } = yield* Topology
    const protocol = yield* ProtocolHandler
    const channels = yield* Channels
    const metrics = yield* Metrics

    const handlers = yield* Semaphore.make(config.requestConcurrency)
    let waiting = 0
    const requests = yield* FiberSet.make<void, never>()
    const fork = yield* FiberSet.runtime(requests)<never>()

    const send = (message: Msg, reply: string) =>
      Effect.suspend(() => {
        if (message.reply === undefined || message.reply === "") return Effect.void
        return Effect.try(() => {
          message.respond(reply)
        }).pipe(
          Effect.catch((error) =>
            Effect.logError("could not send a reply; sending a short INTERNAL one instead").pipe(
              Effect.annotateLogs({ subject: message.subject, error: String(error.cause ?? error) }),
              Effect.andThen(
                Effect.try(() => {
                  message.respond(
                    errorReply(null, "INTERNAL", "the engine could not send this request's reply"),
                  )
                }),
              ),
            ),
          ),
        )
      })

    const advice = makeRetryAdvice({
      concurrency: config.requestConcurrency,
      queueWaitMs: config.requestQueueWaitMs,
    })
    const refuseBusy = (message: Msg) =>
      Effect.suspend(() => send(message, protocol.busy(message.data, advice.refused(waiting))))

    const serve = (message: Msg): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (waiting >= config.requestQueue) return refuseBusy(message)
        waiting += 1
        return Effect.gen(function* () {
          const started = yield* Semaphore.takeScoped(handlers, 1).pipe(
            Effect.timeoutOption(config.requestQueueWaitMs),
            Effect.ensuring(Effect.sync(() => (waiting -= 1))),
          )
          if (Option.isNone(started)) return yield* refuseBusy(message)
          const startedAt = performance.now()
          const reply = yield* protocol.handle(
            message.data,
            message.subject,
            signatureOf(message),
            traceparentOf(message.headers),
          )
          advice.finished(performance.now() - startedAt)
          yield* send(message, reply)
        }).pipe(Effect.scoped)
      }).pipe(
        Effect.catchCause((cause) =>
          Cause.hasInterruptsOnly(cause)
            ? Effect.void
            : Effect.logError("a protocol request failed; the server goes on", Cause.pretty(cause)),
        ),
      )

    const started = yield* Deferred.make<void, unknown>()
    /** Subscribes, serves until the subscription ends, and fails saying why. */
    const serveSubscription = Effect.gen(function* () {
      const subscription = yield* Effect.acquireRelease(
        Effect.try(() =>
          connection.subscribe(subjects.channelRequests, {
            queue: config.queueGroup,
            // An error closes the subscription; `closed` below says why.
            callback: (error, message) => {
              if (error === null) fork(serve(message))
            },
          }),
        ),
        (subscription) => Effect.promise(() => subscription.drain().catch(() => undefined)),
      )
      // The server must know about the subscription before the engine says it is ready; otherwise
      // the first request after "engine ready" can still find no responders.
      yield* Effect.tryPromise(() => connection.flush())
      metrics.protocolServing(undefined)
      yield* Deferred.succeed(started, undefined)
      const closed = yield* Effect.promise(() => subscription.closed)
      return yield* Effect.fail(
        closed instanceof Error ? `its subscription failed: ${closed.message}` : "its subscription ended",
      )
    }).pipe(
      Effect.scoped,
      Effect.catchCause((cause) => {
        if (Cause.hasInterruptsOnly(cause)) return Effect.failCause(cause)
        const why = reasonOf(Cause.squash(cause))
        metrics.protocolServing(why)
        return Effect.logError("protocol server stopped; subscribing again", Cause.pretty(cause)).pipe(
          Effect.annotateLogs({ subject: subjects.channelRequests, why }),
          // Only the first subscription fails the start; later ones are retried for ever.
          Effect.andThen(Deferred.failCause(started, cause)),
          Effect.andThen(Effect.fail(why)),
        )
      }),
      Effect.retry(restartSchedule),
    )
    yield* Effect.forkScoped(serveSubscription)
    yield* Deferred.await(started)

    const registry = yield* channels.current
    yield* (registry._tag === "Registered" ? Effect.logInfo : Effect.logWarning)(
      "protocol server ready",
    ).pipe(
      Effect.annotateLogs({
        subject: subjects.channelRequests,
        queueGroup: config.queueGroup,
        requestConcurrency: config.requestConcurrency,
        requestQueue: config.requestQueue,
        requestQueueWaitMs: config.requestQueueWaitMs,
        channels: summarizeRegistry(registry),
      }),
    )
  }),
)
