/**
 * Routing hub results to the actor of the subscription that made the payment.
 *
 * A batch of results is looked up at once, by payment id. The payment row is
 * the idempotency record: a result for a payment already settled that way is
 * a redelivery (its effect committed, its acknowledgement lost) or a repeat,
 * and stops here without a write. A result contradicting a settled payment is
 * rare and has no payment change to show it was handled, so for those alone
 * the processed-message record is consulted (and written with the conflict
 * the actor records). A result for a payment the engine never sent is
 * dead-lettered, and so is one that repeats its payment's subscription,
 * occurrence, attempt or amount differently from what was sent (nothing of
 * it is applied); anything else goes to the actor, which alone decides what a
 * result means (paid, retry, final failure, or a contradiction to record).
 */
import { Context, Effect, Exit, Layer } from "effect"
import { Metrics } from "../observability/Metrics.ts"
import { InboxStore } from "../store/InboxStore.ts"
import { PaymentStore } from "../store/PaymentStore.ts"
import { type Delivery, done } from "../streams/DurableConsumer.ts"
import type { PaymentResult } from "../streams/Messages.ts"
import { InFlightWindow } from "./InFlightWindow.ts"
import { deadLetterOf, resultMismatch } from "./Matching.ts"
import { SubscriptionActors, verdictOf } from "./SubscriptionActors.ts"

const isSettled = (status: string) => status === "succeeded" || status === "failed" || status === "declined"

/** The hub result router. */
export class ResultRouter extends Context.Service<
  ResultRouter,
  {
    /** Handles a batch of results from `consumer`; completes when each is settled. */
    readonly route: (batch: ReadonlyArray<Delivery<PaymentResult>>, consumer: string) => Effect.Effect<void>
  }
>()("rp/actors/ResultRouter") {
  static readonly layer = Layer.effect(
    ResultRouter,
    Effect.gen(function* () {
      const payments = yield* PaymentStore
      const inbox = yield* InboxStore
      const actors = yield* SubscriptionActors
      const metrics = yield* Metrics
      return ResultRouter.of({
        route: (batch, consumer) =>
          Effect.gen(function* () {
            const routes = yield* payments.routes(batch.map((delivery) => delivery.message.paymentId))
            const routeOf = (delivery: Delivery<PaymentResult>) =>
              routes.get(delivery.message.paymentId.toLowerCase())
            const contradicting = batch.filter((delivery) => {
              const payment = routeOf(delivery)
              return (
                payment !== undefined &&
                isSettled(payment.status) &&
                payment.status !== delivery.message.status
              )
            })
            const processed = yield* inbox.processed(
              consumer,
              contradicting.map((delivery) => delivery.context.messageId),
            )
            const window = new InFlightWindow(batch.length + 1)
            for (const delivery of batch) {
              const result = delivery.message
              const payment = routeOf(delivery)
              if (payment === undefined) {
                metrics.hubResult(result.status, "unknown_payment")
                delivery.settle(
                  Exit.succeed({
                    _tag: "DeadLetter",
                    reason: `result for unknown paymentId ${JSON.stringify(result.paymentId)}`,
                  }),
                )
                continue
              }
              // A result that repeats its payment's details must repeat them as sent, or it is not used.
              const mismatch = resultMismatch(payment, result)
              if (mismatch !== undefined) {
                metrics.hubResult(result.status, "mismatch")
                delivery.settle(Exit.succeed(deadLetterOf("result", mismatch)))
                continue
              }
              // Settled as this result says: applied before (the payment row is the record).
              if (payment.status === result.status && isSettled(payment.status)) {
                metrics.hubResult(result.status, "duplicate")
                delivery.settle(Exit.succeed(done))
                continue
              }
              // A contradiction recorded before; only the acknowledgement was lost.
              if (processed.has(delivery.context.messageId)) {
                yield* Effect.logInfo(
                  "result already processed; acknowledged without applying it again",
                ).pipe(
                  Effect.annotateLogs({ paymentId: result.paymentId, messageId: delivery.context.messageId }),
                )
                metrics.hubResult(result.status, "duplicate")
                delivery.settle(Exit.succeed(done))
                continue
              }
              window.started()
              yield* actors.tell(
                payment.subscriptionId,
                {
                  _tag: "HubResult",
                  result: { ...result, paymentId: payment.paymentId },
                  recordedStatus: payment.status,
                },
                // Written only when the result does not settle its payment (a contradiction).
                { inbox: { consumer, messageId: delivery.context.messageId, paymentId: payment.paymentId } },
                (exit) => {
                  // A defect is not counted: the result comes back and is counted when it settles.
                  if (Exit.isSuccess(exit))
                    metrics.hubResult(result.status, isSettled(payment.status) ? "contradiction" : "applied")
                  else if (Exit.hasFails(exit)) metrics.hubResult(result.status, "refused")
                  delivery.settle(verdictOf(exit, "result"))
                  window.finished()
                },
              )
            }
            yield* window.empty
          }),
      })
    }),
  )
}
