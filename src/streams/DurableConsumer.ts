/**
 * Running a durable pull consumer: decode, handle, and settle each message.
 *
 * What happens to a message is decided here and only here:
 * - it does not decode → it goes to the dead-letter stream with the reasons,
 *   and is terminated so the stream moves on;
 * - its handler succeeds → ack;
 * - its handler fails → nak with a growing delay, so it comes back later;
 *   after `maxDeliveries` attempts it goes to the dead-letter stream too.
 * Handlers never ack, nak or term themselves.
 */
import type { JsMsg } from "@nats-io/jetstream"
import { Cause, Duration, Effect, Schedule, Schema, Stream } from "effect"
import { issuesOf } from "../domain/Issues.ts"
import { EngineConfig } from "../EngineConfig.ts"
import { DeadLetters } from "./DeadLetters.ts"
import { Nats } from "./Nats.ts"

/** How a consumer should run. */
export interface ConsumerSpec<A, R> {
  readonly stream: string
  readonly consumer: string
  /** How many messages are handled at once (ordering per key is the handler's business). */
  readonly concurrency: number
  /** Messages pulled ahead of handling. */
  readonly prefetch: number
  /** Keep telling the server we are still working, for handlers that may run past ack_wait. */
  readonly heartbeat: boolean
  readonly schema: Schema.Codec<A, unknown>
  readonly handle: (message: A, context: MessageContext) => Effect.Effect<HandlerVerdict, never, R>
}

/** What a handler made of a message it could decode. */
export type HandlerVerdict =
  | { readonly _tag: "Done" }
  /** Well-formed but unusable (e.g. a result for a payment the engine never sent): keep it for people to see. */
  | { readonly _tag: "DeadLetter"; readonly reason: string }

/** The handler dealt with the message. */
export const done: HandlerVerdict = { _tag: "Done" }

/** What a handler may know about the message it handles. */
export interface MessageContext {
  /** A stable id for de-duplication: the publisher's Nats-Msg-Id, or stream and sequence. */
  readonly messageId: string
  readonly subject: string
  readonly deliveries: number
}

const utf8 = new TextDecoder("utf-8", { fatal: true })

/** Runs the consumer until interrupted; restarts the subscription if the server drops it. */
export const runConsumer = <A, R>(spec: ConsumerSpec<A, R>) =>
  Effect.gen(function* () {
    const config = yield* EngineConfig
    const { js } = yield* Nats
    const deadLetters = yield* DeadLetters
    const decode = Schema.decodeUnknownEffect(spec.schema)

    const settle = (message: JsMsg) =>
      Effect.gen(function* () {
        let text: string
        try {
          text = utf8.decode(message.data)
        } catch {
          yield* deadLetters.send(message, spec.consumer, "payload is not valid UTF-8", [])
          return message.term()
        }
        let json: unknown
        try {
          json = JSON.parse(text)
        } catch (error) {
          yield* deadLetters.send(
            message,
            spec.consumer,
            `payload is not JSON: ${(error as Error).message}`,
            [],
          )
          return message.term()
        }
        const decoded = yield* Effect.result(decode(json, { errors: "all", onExcessProperty: "ignore" }))
        if (decoded._tag === "Failure") {
          yield* deadLetters.send(
            message,
            spec.consumer,
            "message does not match its schema",
            issuesOf(decoded.failure),
          )
          return message.term()
        }
        const context: MessageContext = {
          messageId: message.headers?.get("Nats-Msg-Id") || `${message.info.stream}:${message.seq}`,
          subject: message.subject,
          deliveries: message.info.deliveryCount,
        }
        const heartbeat = spec.heartbeat
          ? Effect.repeat(
              Effect.sync(() => message.working()),
              Schedule.spaced(Duration.millis(Math.max(1_000, config.consumerAckWaitMs / 3))),
            )
          : Effect.never
        const handled = yield* Effect.exit(
          Effect.raceFirst(spec.handle(decoded.success, context), Effect.andThen(heartbeat, Effect.never)),
        )
        if (handled._tag === "Success") {
          if (handled.value._tag === "DeadLetter") {
            yield* deadLetters.send(message, spec.consumer, handled.value.reason, [])
            return message.term()
          }
          return message.ack()
        }
        if (Cause.hasInterruptsOnly(handled.cause)) return
        if (message.info.deliveryCount >= config.consumerMaxDeliveries) {
          yield* deadLetters.send(
            message,
            spec.consumer,
            `processing failed ${message.info.deliveryCount} times: ${Cause.pretty(handled.cause).split("\n")[0]}`,
            [],
          )
          return message.term()
        }
        yield* Effect.logWarning("message handling failed; it will be redelivered").pipe(
          Effect.annotateLogs({
            consumer: spec.consumer,
            subject: message.subject,
            deliveries: message.info.deliveryCount,
            cause: Cause.pretty(handled.cause),
          }),
        )
        // Back off: 1 s, 2 s, 4 s ... capped at a minute.
        message.nak(Math.min(60_000, 1_000 * 2 ** (message.info.deliveryCount - 1)))
      })

    const consumeOnce = Effect.gen(function* () {
      const consumer = yield* Effect.promise(() => js.consumers.get(spec.stream, spec.consumer))
      const messages = yield* Effect.acquireRelease(
        Effect.promise(() => consumer.consume({ max_messages: spec.prefetch })),
        (messages) =>
          Effect.promise(() =>
            messages.close().then(
              () => undefined,
              () => undefined,
            ),
          ),
      )
      yield* Stream.fromAsyncIterable(messages, (error) => error).pipe(
        Stream.mapEffect((message) => settle(message), { concurrency: spec.concurrency, unordered: true }),
        Stream.runDrain,
      )
    }).pipe(Effect.scoped)

    yield* Effect.logInfo("consumer running").pipe(
      Effect.annotateLogs({ stream: spec.stream, consumer: spec.consumer, concurrency: spec.concurrency }),
    )
    // The iterator ends when the server or connection goes away: start again after a pause, forever.
    yield* consumeOnce.pipe(
      Effect.catchCause((cause) =>
        Effect.logWarning("consumer stopped; restarting").pipe(
          Effect.annotateLogs({ consumer: spec.consumer, cause: Cause.pretty(cause) }),
        ),
      ),
      Effect.andThen(Effect.sleep(Duration.seconds(1))),
      Effect.forever,
    )
  })
