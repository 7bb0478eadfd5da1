/**
 * Running a durable pull consumer: decode, handle, and settle each message.
 *
 * What happens to a message is decided here and only here:
 * - it does not decode → it goes to the dead-letter stream with the reasons,
 *   and is terminated so the stream moves on;
 * - its handler settles it as done → ack;
 * - its handler settles it as unusable → dead-letter stream, terminated;
 * - its handler fails because Postgres or NATS does not answer (see
 *   Dependencies.ts) → nak, redelivered once the consumer resumes; this never
 *   counts toward dead-lettering, however long the outage;
 * - its handler fails while Postgres and NATS answer → nak with a growing
 *   delay; after `maxDeliveries` such failures it goes to the dead-letter
 *   stream too.
 * Handlers never ack, nak or term themselves.
 *
 * The server's delivery count cannot tell the two kinds of failure apart, so
 * this process counts a message's failures while the infrastructure answered
 * itself, in memory (another instance, or this one after a restart, starts
 * again from zero: a bad message may get a few more attempts, never fewer).
 *
 * While a dependency is down the consumer stops pulling: the subscription is
 * closed, what is being handled finishes (and is nak'd if it fails), and
 * pulling starts again once a probe finds the dependency back.
 *
 * Messages are decoded as they arrive and handed to the handler in batches:
 * everything that arrived in one turn of the event loop goes to one handler
 * run, so a burst of results costs one fiber and one database lookup per
 * batch, not per message. How many messages are unsettled at once is bounded
 * by the server (the consumer's max_ack_pending).
 */
import type { JsMsg } from "@nats-io/jetstream"
import { Cause, Duration, Effect, Exit, FiberSet, Schedule, Schema } from "effect"
import { issuesOf } from "../domain/Issues.ts"
import { EngineConfig } from "../EngineConfig.ts"
import { Metrics } from "../observability/Metrics.ts"
import { DeadLetters } from "./DeadLetters.ts"
import { Dependencies } from "./Dependencies.ts"
import { Nats } from "./Nats.ts"

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

/** One decoded message, and how to report what became of it (exactly once, now or later). */
export interface Delivery<A> {
  readonly message: A
  readonly context: MessageContext
  readonly settle: (outcome: Exit.Exit<HandlerVerdict, unknown>) => void
}

/** How a consumer should run. */
export interface ConsumerSpec<A, R> {
  readonly stream: string
  readonly consumer: string
  /** Messages pulled ahead of handling. */
  readonly prefetch: number
  /**
   * For handlers that may run past the consumer's ack_wait: keep telling the server we are still
   * working, every third of this ack wait. Undefined: no heartbeat.
   */
  readonly heartbeatAckWaitMs?: number
  readonly schema: Schema.Codec<A, unknown>
  /**
   * Handles a batch and completes once every delivery is settled. If the run fails, the
   * deliveries it did not settle are settled with that failure.
   */
  readonly handle: (batch: ReadonlyArray<Delivery<A>>) => Effect.Effect<void, never, R>
}

const utf8 = new TextDecoder("utf-8", { fatal: true })

/** A message failed because a dependency did not answer: it comes back this soon once pulling resumes. */
const infrastructureRetryMs = 1_000
/** Messages whose failures are remembered at once, per consumer: the oldest are forgotten past this. */
const rememberedFailures = 10_000
/** How long a pausing consumer lets its in-flight handlers finish before it stops them. */
const pauseDrainMs = 10_000

/** Resolves when the promise settles, or after `ms`, whichever comes first; never rejects. */
const settledWithin = (promise: Promise<unknown>, ms: number): Promise<void> =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms)
    promise.then(
      () => {
        clearTimeout(timer)
        resolve()
      },
      () => {
        clearTimeout(timer)
        resolve()
      },
    )
  })

type Decoded<A> =
  | { readonly ok: true; readonly value: A }
  | {
      readonly ok: false
      readonly reason: string
      readonly details: Array<{ path: string; message: string }>
    }

/** Runs the consumer until interrupted; restarts the subscription if the server drops it. */
export const runConsumer = <A, R>(spec: ConsumerSpec<A, R>) =>
  Effect.gen(function* () {
    const config = yield* EngineConfig
    const { js } = yield* Nats
    const deadLetters = yield* DeadLetters
    const metrics = yield* Metrics
    const dependencies = yield* Dependencies
    const decode = Schema.decodeUnknownExit(spec.schema)

    const decodeMessage = (message: JsMsg): Decoded<A> => {
      let text: string
      try {
        text = utf8.decode(message.data)
      } catch {
        return { ok: false, reason: "payload is not valid UTF-8", details: [] }
      }
      let json: unknown
      try {
        json = JSON.parse(text)
      } catch (error) {
        return { ok: false, reason: `payload is not JSON: ${(error as Error).message}`, details: [] }
      }
      const decoded = decode(json, { errors: "all", onExcessProperty: "ignore" })
      if (Exit.isSuccess(decoded)) return { ok: true, value: decoded.value }
      const error = Cause.findErrorOption(decoded.cause)
      return {
        ok: false,
        reason: "message does not match its schema",
        details: error._tag === "Some" && Schema.isSchemaError(error.value) ? issuesOf(error.value) : [],
      }
    }

    // Failures of each message while Postgres and NATS answered, by stream sequence.
    const healthyFailures = new Map<number, number>()
    const countFailure = (seq: number) => {
      const failures = (healthyFailures.get(seq) ?? 0) + 1
      healthyFailures.delete(seq)
      healthyFailures.set(seq, failures)
      if (healthyFailures.size > rememberedFailures) {
        const oldest = healthyFailures.keys().next().value
        if (oldest !== undefined) healthyFailures.delete(oldest)
      }
      return failures
    }

    const consumeOnce = Effect.gen(function* () {
      const consumer = yield* Effect.promise(() => js.consumers.get(spec.stream, spec.consumer))
      const fibers = yield* FiberSet.make<void, never>()
      const runInSet = yield* FiberSet.runtime(fibers)<R>()
      const unsettled = new Set<JsMsg>()

      const deadLetter = (
        message: JsMsg,
        reason: string,
        details: Array<{ path: string; message: string }>,
      ) => {
        runInSet(
          deadLetters.send(message, spec.consumer, reason, details).pipe(
            Effect.andThen(Effect.sync(() => message.term())),
            // If even the dead-letter stream is unreachable, leave the message for redelivery.
            Effect.catchCause((cause) =>
              Effect.logError("could not dead-letter a message; it will be redelivered", cause).pipe(
                Effect.andThen(Effect.sync(() => message.nak(5_000))),
              ),
            ),
          ),
        )
      }

      const failed = (message: JsMsg, cause: Cause.Cause<unknown>) =>
        Effect.gen(function* () {
          const blamed = yield* dependencies.blame(cause)
          if (blamed !== undefined) {
            yield* Effect.logDebug(
              `message handling failed while ${blamed} was unreachable; redelivered, not counted`,
            ).pipe(Effect.annotateLogs({ consumer: spec.consumer, subject: message.subject }))
            message.nak(infrastructureRetryMs)
            return
          }
          const failures = countFailure(message.seq)
          if (failures >= config.consumerMaxDeliveries) {
            healthyFailures.delete(message.seq)
            const firstLine = Cause.pretty(cause).split("\n")[0]
            deadLetter(message, `processing failed ${failures} times: ${firstLine}`, [])
            return
          }
          yield* Effect.logWarning("message handling failed; it will be redelivered").pipe(
            Effect.annotateLogs({
              consumer: spec.consumer,
              subject: message.subject,
              failures,
              deliveries: message.info.deliveryCount,
              cause: Cause.pretty(cause),
            }),
          )
          // Back off: 1 s, 2 s, 4 s ... capped at a minute.
          message.nak(Math.min(60_000, 1_000 * 2 ** (failures - 1)))
        })

      const settle = (message: JsMsg) => (outcome: Exit.Exit<HandlerVerdict, unknown>) => {
        if (!unsettled.delete(message)) return
        if (Exit.isSuccess(outcome)) {
          healthyFailures.delete(message.seq)
          if (outcome.value._tag === "Done") message.ack()
          else deadLetter(message, outcome.value.reason, [])
          return
        }
        if (Cause.hasInterruptsOnly(outcome.cause)) return
        runInSet(failed(message, outcome.cause))
      }

      let batch: Array<Delivery<A>> = []
      const flush = () => {
        const ready = batch
        batch = []
        runInSet(
          spec.handle(ready).pipe(
            Effect.exit,
            Effect.flatMap((exit) =>
              Effect.sync(() => {
                // Whatever the handler did not settle (it failed part way) is settled as failed.
                const failure = Exit.failCause(
                  Exit.isFailure(exit) ? exit.cause : Cause.die(new Error("the handler did not settle it")),
                )
                for (const delivery of ready) delivery.settle(failure)
              }),
            ),
          ),
        )
      }

      const receive = (message: JsMsg) => {
        unsettled.add(message)
        const decoded = decodeMessage(message)
        if (!decoded.ok) {
          unsettled.delete(message)
          deadLetter(message, decoded.reason, decoded.details)
          return
        }
        if (batch.length === 0) setImmediate(flush)
        batch.push({
          message: decoded.value,
          context: {
            messageId: message.headers?.get("Nats-Msg-Id") || `${message.info.stream}:${message.seq}`,
            subject: message.subject,
            deliveries: message.info.deliveryCount,
          },
          settle: settle(message),
        })
      }

      if (spec.heartbeatAckWaitMs !== undefined) {
        yield* Effect.forkScoped(
          Effect.repeat(
            Effect.sync(() => {
              for (const message of unsettled) message.working()
            }),
            Schedule.spaced(Duration.millis(Math.max(200, spec.heartbeatAckWaitMs / 3))),
          ),
        )
      }
      const messages = yield* Effect.acquireRelease(
        Effect.promise(() => consumer.consume({ max_messages: spec.prefetch, callback: receive })),
        // Closing waits for the server; while NATS is away it cannot answer.
        (messages) => Effect.promise(() => settledWithin(messages.close(), 2_000)),
      )
      // Readiness and rp_consumer_running: consuming from here until this subscription ends.
      yield* Effect.acquireRelease(
        Effect.sync(() => metrics.consumerRunning(spec.consumer, true)),
        () => Effect.sync(() => metrics.consumerRunning(spec.consumer, false)),
      )
      const ended = yield* Effect.raceFirst(
        Effect.promise(() => messages.closed()),
        dependencies.awaitDown.pipe(Effect.as("paused" as const)),
      )
      if (ended !== "paused") {
        if (ended instanceof Error) return yield* Effect.die(ended)
        return
      }
      // Stop pulling; what is being handled finishes and is settled (a failure now is not counted).
      yield* Effect.promise(() => settledWithin(messages.close(), 2_000))
      metrics.consumerRunning(spec.consumer, false)
      yield* Effect.logWarning("consumer paused: a dependency is unreachable").pipe(
        Effect.annotateLogs({
          consumer: spec.consumer,
          down: [...dependencies.down().keys()].join(","),
          unsettled: unsettled.size,
        }),
      )
      yield* FiberSet.awaitEmpty(fibers).pipe(Effect.timeoutOption(Duration.millis(pauseDrainMs)))
    }).pipe(Effect.scoped)

    yield* Effect.logInfo("consumer running").pipe(
      Effect.annotateLogs({ stream: spec.stream, consumer: spec.consumer }),
    )
    const resumeWhenUp = Effect.suspend(() => {
      if (dependencies.down().size === 0) return Effect.void
      return dependencies.awaitUp.pipe(
        Effect.andThen(
          Effect.logInfo("consumer resumed").pipe(Effect.annotateLogs({ consumer: spec.consumer })),
        ),
      )
    })
    // The subscription ends when the server or connection goes away, or a dependency does: start
    // again once everything answers, after a pause, forever.
    yield* resumeWhenUp.pipe(
      Effect.andThen(consumeOnce),
      Effect.catchCause((cause) =>
        Effect.logWarning("consumer stopped; restarting").pipe(
          Effect.annotateLogs({ consumer: spec.consumer, cause: Cause.pretty(cause) }),
        ),
      ),
      Effect.andThen(
        Effect.suspend(() =>
          dependencies.down().size === 0 ? Effect.sleep(Duration.seconds(1)) : Effect.void,
        ),
      ),
      Effect.forever,
    )
  })
