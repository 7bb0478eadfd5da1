/**
 * Asking the hub what became of a payment (`hub.payment.status`).
 *
 * Used only when a command has had no result within the result timeout: the
 * outcome is unknown, so the engine must not send a new attempt, and asks
 * instead. A hub that does not answer, or answers nonsense, counts as
 * "unreachable" and is asked again later with back-off.
 */
import { Context, Effect, Layer, Schema } from "effect"
import { EngineConfig } from "../EngineConfig.ts"
import { PaymentStatusQuery, PaymentStatusReply } from "./Messages.ts"
import { Nats } from "./Nats.ts"
import { Topology } from "./Topology.ts"

const decodeReply = Schema.decodeUnknownOption(Schema.fromJsonString(PaymentStatusReply))
const encodeQuery = Schema.encodeSync(Schema.fromJsonString(PaymentStatusQuery))

/** Status queries to the hub. */
export class HubStatus extends Context.Service<
  HubStatus,
  {
    /** The hub's answer for one payment id, or "unreachable". Never fails. */
    readonly query: (paymentId: string) => Effect.Effect<PaymentStatusReply | "unreachable">
  }
>()("rp/streams/HubStatus") {
  static readonly layer = Layer.effect(
    HubStatus,
    Effect.gen(function* () {
      const config = yield* EngineConfig
      const { connection } = yield* Nats
      const { subjects } = yield* Topology
      return HubStatus.of({
        query: (paymentId) =>
          Effect.tryPromise(() =>
            connection.request(subjects.hubStatus, encodeQuery({ paymentId }), {
              timeout: config.statusQueryTimeoutMs,
            }),
          ).pipe(
            Effect.map((message) => {
              const decoded = decodeReply(message.string())
              if (decoded._tag === "None") return "unreachable" as const
              // An answer about another payment is as good as none.
              const reply = decoded.value
              return "paymentId" in reply && reply.paymentId !== paymentId ? ("unreachable" as const) : reply
            }),
            Effect.catch((error) =>
              Effect.logWarning("hub status query failed").pipe(
                Effect.annotateLogs({ paymentId, error: String(error.cause ?? error) }),
                Effect.as("unreachable" as const),
              ),
            ),
          ),
      })
    }),
  )
}
