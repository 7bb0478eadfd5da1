/**
 * The dead-letter stream (`rp.dlq.<stream>`): where a message the engine
 * cannot use is kept, byte for byte, with the reason, so it never blocks its
 * stream and is never silently lost.
 */
import type { JsMsg } from "@nats-io/jetstream"
import { Context, Effect, Layer } from "effect"
import * as Timestamp from "../domain/Timestamp.ts"
import type { DeadLetter } from "./Messages.ts"
import { Nats } from "./Nats.ts"
import { Topology } from "./Topology.ts"

/** Publishing to the dead-letter stream. */
export class DeadLetters extends Context.Service<
  DeadLetters,
  {
    /** Keeps `message` with `reason`; waits for the stream to acknowledge it. */
    readonly send: (
      message: JsMsg,
      consumer: string,
      reason: string,
      details: ReadonlyArray<{ path: string; message: string }>,
    ) => Effect.Effect<void>
  }
>()("rp/streams/DeadLetters") {
  static readonly layer = Layer.effect(
    DeadLetters,
    Effect.gen(function* () {
      const { js } = yield* Nats
      const { subjects } = yield* Topology
      return DeadLetters.of({
        send: (message, consumer, reason, details) =>
          Effect.gen(function* () {
            const headers: Record<string, Array<string>> = {}
            for (const [key, values] of message.headers ?? []) headers[key] = values
            const letter: DeadLetter = {
              stream: message.info.stream,
              consumer,
              subject: message.subject,
              streamSequence: message.seq,
              deliveries: message.info.deliveryCount,
              reason,
              details: [...details],
              data: Buffer.from(message.data).toString("base64"),
              headers,
              receivedAt: Timestamp.format(Date.now()),
            }
            yield* Effect.promise(() =>
              js.publish(subjects.deadLetter(message.info.stream), JSON.stringify(letter), {
                msgID: `dlq:${message.info.stream}:${message.seq}`,
              }),
            )
            yield* Effect.logWarning("message moved to the dead-letter stream").pipe(
              Effect.annotateLogs({
                stream: message.info.stream,
                seq: message.seq,
                subject: message.subject,
                reason,
              }),
            )
          }),
      })
    }),
  )
}
