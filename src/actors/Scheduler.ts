/**
 * Turning ticks into work: on each tick, engine time moves forward and every
 * subscription whose next due time has come is woken.
 *
 * Due subscriptions are found through the `next_due_at` index in keyset
 * pages, never by loading all of them; a bounded number of wakes is in
 * flight at once, so a month-start burst of a hundred thousand subscriptions
 * flows through the actors and the group committer at a steady pace.
 *
 * An instance sweeps only the partitions it owns; the others' owners sweep
 * theirs when told engine time moved (or at their next lease round).
 */
import { Cause, Context, Effect, Exit, Layer, Semaphore } from "effect"
import { EngineConfig } from "../EngineConfig.ts"
import { type DueSubscription, SubscriptionStore } from "../store/SubscriptionStore.ts"
import { EngineClock } from "./EngineClock.ts"
import { InFlightWindow } from "./InFlightWindow.ts"
import { Partitions } from "./Partitions.ts"
import { type ActorExit, SubscriptionActors } from "./SubscriptionActors.ts"

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
      const partitions = yield* Partitions
      // One sweep at a time: a second would only wake the same actors again.
      const sweeping = yield* Semaphore.make(1)

      // Pages of due rows in (next_due_at, id) order; at most `sweepInFlight` wakes at once.
      // Wakes are told, not sent: each completes through a callback, so a burst of a hundred
      // thousand costs no fiber per subscription beyond the actors' own.
      const sweepAt = (now: number) =>
        Effect.gen(function* () {
          const report = { woken: 0, failed: 0 }
          // Read once per sweep: a partition given up meanwhile forwards its wakes to the new owner.
          const owned = partitions.owned()
          if (owned !== "all" && owned.length === 0) return { now, ...report }
          const window = new InFlightWindow(config.sweepInFlight)
          const completed = (due: DueSubscription) => (exit: ActorExit) => {
            if (Exit.isSuccess(exit)) report.woken += 1
            else {
              // One subscription's failure must not stop the sweep; it stays due and is retried next tick.
              report.failed += 1
              if (failures.length < 20) failures.push({ id: due.id, cause: exit.cause })
            }
            window.finished()
          }
          const failures: Array<{ id: string; cause: Cause.Cause<unknown> }> = []
          let after: { dueAt: number; id: string } | null = null
          for (;;) {
            const page: ReadonlyArray<DueSubscription> = yield* store.dueBatch(
              now,
              after,
              config.sweepBatchSize,
              { count: partitions.count, owned },
            )
            for (const due of page) {
              yield* window.room
              window.started()
              yield* actors.tell(
                due.id,
                { _tag: "Wake", statusReplies: noStatusReplies },
                due.subscription === undefined ? {} : { primed: due.subscription },
                completed(due),
              )
            }
            const last: DueSubscription | undefined = page[page.length - 1]
            if (page.length < config.sweepBatchSize || last === undefined) break
            after = { dueAt: last.nextDueAt, id: last.id }
          }
          yield* window.empty
          for (const failure of failures) {
            yield* Effect.logWarning("wake failed").pipe(
              Effect.annotateLogs({ subscriptionId: failure.id, cause: Cause.pretty(failure.cause) }),
            )
          }
          return { now, ...report }
        })

      const sweep = sweeping.withPermits(1)(clock.now.pipe(Effect.flatMap(sweepAt)))

      return Scheduler.of({
        tick: (at) => clock.advance(at).pipe(Effect.andThen(sweep)),
        sweep,
      })
    }),
  )
}
