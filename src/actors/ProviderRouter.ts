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
 *
 * Only the subject token, the `queryId` or the `(provider, account)` pair
 * decide where a message goes, so everything else it says about what it
 * answers is checked first (Matching.ts): a message whose subject and body
 * name different providers, an answer about another provider, account or
 * currency than its query's, a reading in another currency than a watcher's
 * threshold, is dead-lettered with the fields that disagree, and moves
 * nothing (a reading still reaches the watchers it does match).
 */
import { Context, Effect, Exit, Layer } from "effect"
import { InboxStore } from "../store/InboxStore.ts"
import { SubscriptionStore, watchKey } from "../store/SubscriptionStore.ts"
import { type Delivery, done, type HandlerVerdict } from "../streams/DurableConsumer.ts"
import type { DebtResponse, ThresholdEvent } from "../streams/Messages.ts"
import { answerMismatch } from "./DebtPolicy.ts"
import { InFlightWindow } from "./InFlightWindow.ts"
import { deadLetterOf, type Mismatch, reasonOf } from "./Matching.ts"
import { SubscriptionActors, verdictOf } from "./SubscriptionActors.ts"
import { readingMismatch, watchedBy } from "./ThresholdPolicy.ts"

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
            const found = watchers.get(watchKey(event.providerId, event.account)) ?? []
            // A watcher the reading does not match (say, a balance in another currency) is not told;
            // the others are, so one subscription's terms never keep readings from another's.
            const mismatches: Array<Mismatch> = []
            const watching = found.filter(({ subscription }) => {
              const mismatch =
                subscription?.kind === "threshold"
                  ? readingMismatch(watchedBy(subscription), event)
                  : undefined
              if (mismatch !== undefined) mismatches.push(mismatch)
              return mismatch === undefined
            })
            const mismatched: Exit.Exit<HandlerVerdict, unknown> = Exit.succeed(
              mismatches.length === 0
                ? done
                : {
                    _tag: "DeadLetter",
                    reason: mismatches.map((mismatch) => reasonOf("balance reading", mismatch)).join(" | "),
                  },
            )
            // Nobody (else) watches this account: nothing to do.
            if (watching.length === 0) {
              delivery.settle(mismatched)
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
                if (remaining === 0) delivery.settle(failure ?? mismatched)
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
            const query = owners.get(response.queryId.toLowerCase())
            if (query === undefined) {
              delivery.settle(
                Exit.succeed({
                  _tag: "DeadLetter",
                  reason: `answer to unknown queryId ${JSON.stringify(response.queryId)}`,
                }),
              )
              continue
            }
            // The queryId alone names the subscription: the rest of the answer must be about its query.
            const disagreement = answerMismatch(query, response)
            if (disagreement !== undefined) {
              delivery.settle(Exit.succeed(deadLetterOf("debt answer", disagreement)))
              continue
            }
            window.started()
            yield* actors.tell(
              query.subscriptionId,
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
