/**
 * Routing what providers publish to the subscriptions it concerns.
 *
 * - A balance reading goes to every active threshold subscription watching
 *   that account, found through the partial `(provider_id, account)` index in
 *   one query per batch. Each actor de-duplicates by event id and ignores
 *   stale readings itself, so a reading redelivered after some of its
 *   subscriptions handled it is safe to hand to all of them again.
 * - A debt answer goes to the one subscription that sent the query, found by
 *   `queryId`. An answer processed before (its acknowledgement lost) stops
 *   here; an answer to a query the engine never sent is dead-lettered.
 */
import { Context, Effect, Exit, Layer } from "effect"
import { InboxStore } from "../store/InboxStore.ts"
import { SubscriptionStore, watchKey } from "../store/SubscriptionStore.ts"
import { type Delivery, done, type HandlerVerdict } from "../streams/DurableConsumer.ts"
import type { DebtResponse, ThresholdEvent } from "../streams/Messages.ts"
import { InFlightWindow } from "./InFlightWindow.ts"
import { SubscriptionActors, verdictOf } from "./SubscriptionActors.ts"

/** The `<providerId>` token of a provider subject (`<prefix>.<providerId>.<kind>.<what>`). */
const providerOfSubject = (subject: string): string | undefined => subject.split(".").at(-3)

/** A message whose subject names another provider than its body is not trusted. */
const subjectMismatch = (subject: string, providerId: string): HandlerVerdict | undefined => {
  const named = providerOfSubject(subject)
  return named === providerId
    ? undefined
    : {
        _tag: "DeadLetter",
        reason: `the subject names provider ${JSON.stringify(named)} but the message says ${JSON.stringify(providerId)}`,
      }
}

/** The provider message router. */
export class ProviderRouter extends Context.Service<
  ProviderRouter,
  {
    readonly thresholdEvents: (batch: ReadonlyArray<Delivery<ThresholdEvent>>) => Effect.Effect<void>
    readonly debtResponses: (
      batch: ReadonlyArray<Delivery<DebtResponse>>,
      consumer: string,
    ) => Effect.Effect<void>
  }
>()("rp/actors/ProviderRouter") {
  static readonly layer = Layer.effect(
    ProviderRouter,
    Effect.gen(function* () {
      const subscriptions = yield* SubscriptionStore
      const inbox = yield* InboxStore
      const actors = yield* SubscriptionActors

      const thresholdEvents = (batch: ReadonlyArray<Delivery<ThresholdEvent>>) =>
        Effect.gen(function* () {
          const watchers = yield* subscriptions.thresholdWatchers(
            batch.map(({ message }) => ({ providerId: message.providerId, account: message.account })),
          )
          const window = new InFlightWindow(batch.length + 1)
          for (const delivery of batch) {
            const event = delivery.message
            const mismatch = subjectMismatch(delivery.context.subject, event.providerId)
            if (mismatch !== undefined) {
              delivery.settle(Exit.succeed(mismatch))
              continue
            }
            const watching = watchers.get(watchKey(event.providerId, event.account)) ?? []
            // Nobody watches this account (any more): nothing to do.
            if (watching.length === 0) {
              delivery.settle(Exit.succeed(done))
              continue
            }
            // Settled once every watcher has handled it; the first failure decides the verdict.
            let remaining = watching.length
            let failure: Exit.Exit<HandlerVerdict, unknown> | undefined
            for (const { id, subscription } of watching) {
              window.started()
              const primed = subscription === undefined ? {} : { primed: subscription }
              yield* actors.tell(id, { _tag: "ThresholdEvent", event }, primed, (exit) => {
                const verdict = verdictOf(exit, "message")
                if (failure === undefined && !(Exit.isSuccess(verdict) && verdict.value._tag === "Done"))
                  failure = verdict
                remaining -= 1
                if (remaining === 0) delivery.settle(failure ?? Exit.succeed(done))
                window.finished()
              })
            }
          }
          yield* window.empty
        })

      const debtResponses = (batch: ReadonlyArray<Delivery<DebtResponse>>, consumer: string) =>
        Effect.gen(function* () {
          const [owners, processed] = yield* Effect.all(
            [
              subscriptions.debtQueryOwners(batch.map(({ message }) => message.queryId)),
              inbox.processed(
                consumer,
                batch.map((delivery) => delivery.context.messageId),
              ),
            ],
            { concurrency: 2 },
          )
          const window = new InFlightWindow(batch.length + 1)
          for (const delivery of batch) {
            const response = delivery.message
            if (processed.has(delivery.context.messageId)) {
              delivery.settle(Exit.succeed(done))
              continue
            }
            const mismatch = subjectMismatch(delivery.context.subject, response.providerId)
            if (mismatch !== undefined) {
              delivery.settle(Exit.succeed(mismatch))
              continue
            }
            const owner = owners.get(response.queryId.toLowerCase())
            if (owner === undefined) {
              delivery.settle(
                Exit.succeed({
                  _tag: "DeadLetter",
                  reason: `answer to unknown queryId ${JSON.stringify(response.queryId)}`,
                }),
              )
              continue
            }
            window.started()
            yield* actors.tell(
              owner,
              {
                _tag: "DebtResponse",
                response: { ...response, queryId: response.queryId.toLowerCase() },
                bills: new Map(),
              },
              { inbox: { consumer, messageId: delivery.context.messageId } },
              (exit) => {
                delivery.settle(verdictOf(exit, "message"))
                window.finished()
              },
            )
          }
          yield* window.empty
        })

      return ProviderRouter.of({ thresholdEvents, debtResponses })
    }),
  )
}
