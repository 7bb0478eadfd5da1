/**
 * Routing hub results to the actor of the subscription that made the payment.
 *
 * A result for a payment already settled the same way is a redelivery and
 * stops here; anything else goes to the actor, which alone decides what a
 * result means (paid, retry, final failure, or a contradiction to record).
 */
import { Context, Effect, Layer } from "effect"
import { PaymentStore } from "../store/PaymentStore.ts"
import { done, type HandlerVerdict, type MessageContext } from "../streams/DurableConsumer.ts"
import type { PaymentResult } from "../streams/Messages.ts"
import { SubscriptionActors } from "./SubscriptionActors.ts"

/** The hub result router. */
export class ResultRouter extends Context.Service<
  ResultRouter,
  {
    readonly route: (
      result: PaymentResult,
      context: MessageContext,
      consumer: string,
    ) => Effect.Effect<HandlerVerdict>
  }
>()("rp/actors/ResultRouter") {
  static readonly layer = Layer.effect(
    ResultRouter,
    Effect.gen(function* () {
      const payments = yield* PaymentStore
      const actors = yield* SubscriptionActors
      return ResultRouter.of({
        route: (result, context, consumer) =>
          Effect.gen(function* () {
            const payment = yield* payments.route(result.paymentId)
            if (payment === undefined) {
              return {
                _tag: "DeadLetter",
                reason: `result for unknown paymentId ${JSON.stringify(result.paymentId)}`,
              } as const
            }
            if (payment.status === result.status) return done
            const outcome = yield* Effect.result(
              actors.send(
                payment.subscriptionId,
                { _tag: "HubResult", result, recordedStatus: payment.status },
                { inbox: { consumer, messageId: context.messageId } },
              ),
            )
            if (outcome._tag === "Failure") {
              return {
                _tag: "DeadLetter",
                reason: `result could not be applied: ${outcome.failure.message}`,
              } as const
            }
            return done
          }).pipe(Effect.annotateLogs({ paymentId: result.paymentId })),
      })
    }),
  )
}
