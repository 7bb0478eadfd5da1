/**
 * Turning ticks into work: on each tick, engine time moves forward and every
 * subscription whose next due time has come is woken.
 *
 * Due subscriptions are found through the `next_due_at` index in keyset
 * pages, never by loading all of them; a bounded number of wakes is in
 * flight at once, so a month-start burst of a hundred thousand subscriptions
 * flows through the actors and the group committer at a steady pace.
 */
import { Cause, Context, Effect, Layer, Option, Semaphore, Stream } from "effect"
import { EngineConfig } from "../EngineConfig.ts"
import { SubscriptionStore } from "../store/SubscriptionStore.ts"
import { EngineClock } from "./EngineClock.ts"
import { SubscriptionActors } from "./SubscriptionActors.ts"

const noStatusReplies: ReadonlyMap<string, never> = new Map<string, never>()

/** Sweep statistics, for logs and benchmarks. */
export interface SweepReport {
  readonly now: number
  readonly woken: number
  readonly failed: number
}

/** The scheduler. */
export class Scheduler extends Context.Service<
  Scheduler,
  {
    /** Advances engine time to `at` (if later) and wakes everything due. */
    readonly tick: (at: number) => Effect.Effect<SweepReport>
    /** Wakes everything due at the current engine time. */
    readonly sweep: Effect.Effect<SweepReport>
  }
>()("rp/actors/Scheduler") {
  static readonly layer = Layer.effect(
    Scheduler,
    Effect.gen(function* () {
      const config = yield* EngineConfig
      const clock = yield* EngineClock
      const store = yield* SubscriptionStore
      const actors = yield* SubscriptionActors
      // One sweep at a time: a second would only wake the same actors again.
      const sweeping = yield* Semaphore.make(1)

      const sweepAt = (now: number) =>
        Effect.gen(function* () {
          let woken = 0
          let failed = 0
          const pages = Stream.paginate(null as { dueAt: number; id: string } | null, (after) =>
            store.dueBatch(now, after, config.sweepBatchSize).pipe(
              Effect.map((batch) => {
                const last = batch[batch.length - 1]
                const next =
                  batch.length === config.sweepBatchSize && last !== undefined
                    ? Option.some({ dueAt: last.nextDueAt, id: last.id })
                    : Option.none()
                return [batch, next] as const
              }),
            ),
          )
          yield* pages.pipe(
            Stream.mapEffect(
              (due) =>
                actors
                  .send(
                    due.id,
                    { _tag: "Wake", statusReplies: noStatusReplies },
                    due.subscription === undefined ? {} : { primed: due.subscription },
                  )
                  .pipe(
                    Effect.matchCauseEffect({
                      onSuccess: () =>
                        Effect.sync(() => {
                          woken += 1
                        }),
                      // One subscription's failure must not stop the sweep; it stays due and is retried next tick.
                      onFailure: (cause) =>
                        Effect.sync(() => {
                          failed += 1
                        }).pipe(
                          Effect.andThen(
                            Effect.logWarning("wake failed").pipe(
                              Effect.annotateLogs({
                                subscriptionId: due.id,
                                cause: Cause.pretty(cause),
                              }),
                            ),
                          ),
                        ),
                    }),
                  ),
              { concurrency: config.sweepInFlight, unordered: true },
            ),
            Stream.runDrain,
          )
          return { now, woken, failed }
        })

      const sweep = sweeping.withPermits(1)(clock.now.pipe(Effect.flatMap(sweepAt)))

      return Scheduler.of({
        tick: (at) => clock.advance(at).pipe(Effect.andThen(sweep)),
        sweep,
      })
    }),
  )
}
