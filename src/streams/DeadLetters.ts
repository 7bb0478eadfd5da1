/**
 * The dead-letter stream (`rp.dlq.<stream>`): where a message the engine
 * cannot use is kept, byte for byte, with the reason, so it never blocks its
 * stream and is never silently lost.
 *
 * A letter must itself fit the server's max_payload (1 MiB by default). The
 * original is base64 inside it (4/3 of its size), so a message of more than
 * about 750 KiB cannot be copied: such a letter says so (`dataOmitted`: its
 * size and SHA-256) and the original stays in its source stream at
 * `streamSequence`, since the engine deletes nothing. Without this the
 * letter's publish failed for ever and the message was redelivered for ever,
 * which on the tick stream (one at a time) stopped the engine's clock.
 */
import { createHash } from "node:crypto"
import type { JsMsg } from "@nats-io/jetstream"
import { Context, Effect, Layer } from "effect"
import * as Timestamp from "../domain/Timestamp.ts"
import { Metrics } from "../observability/Metrics.ts"
import type { DeadLetter } from "./Messages.ts"
import { Nats } from "./Nats.ts"
import { Topology } from "./Topology.ts"

/** NATS's default max_payload, for a connection that has not reported its server's yet. */
const DEFAULT_MAX_PAYLOAD = 1024 * 1024
/** Room left for the protocol line and the `Nats-Msg-Id` header of the letter's publish. */
const ENVELOPE_ALLOWANCE = 1024
const MAX_TEXT = 2_000

const clip = (text: string): string => (text.length > MAX_TEXT ? `${text.slice(0, MAX_TEXT)}…` : text)

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
      const { js, connection } = yield* Nats
      const { subjects } = yield* Topology
      const metrics = yield* Metrics
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
              reason: clip(reason),
              // A problem's message may quote the offending value, which may be most of a megabyte.
              details: details.map((detail) => ({ path: clip(detail.path), message: clip(detail.message) })),
              data: Buffer.from(message.data).toString("base64"),
              headers,
              receivedAt: Timestamp.format(Date.now()),
            }
            const limit = (connection.info?.max_payload ?? DEFAULT_MAX_PAYLOAD) - ENVELOPE_ALLOWANCE
            let text = JSON.stringify(letter)
            if (Buffer.byteLength(text) > limit) {
              const omitted: DeadLetter = {
                ...letter,
                data: "",
                dataOmitted: {
                  bytes: message.data.length,
                  sha256: createHash("sha256").update(message.data).digest("hex"),
                },
              }
              text = JSON.stringify(omitted)
              // Headers count toward max_payload too; if they are what is too big, they go as well.
              if (Buffer.byteLength(text) > limit) text = JSON.stringify({ ...omitted, headers: {} })
            }
            yield* Effect.promise(() =>
              js.publish(subjects.deadLetter(message.info.stream), text, {
                msgID: `dlq:${message.info.stream}:${message.seq}`,
              }),
            )
            metrics.deadLettered(consumer)
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
