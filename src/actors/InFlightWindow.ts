/**
 * A window over work handed off with completion callbacks (actor tells): the
 * sender counts what it started, callbacks count what finished, and the
 * sender can wait for room or for everything to finish — without a fiber
 * per item, which is the point in a burst of a hundred thousand.
 */
import { Deferred, Effect, Exit } from "effect"

/** Work started and finished; `room` and `empty` wait on the count. */
export class InFlightWindow {
  #inFlight = 0
  #waiter: { readonly until: number; readonly deferred: Deferred.Deferred<void> } | undefined

  constructor(readonly limit: number) {}

  started(): void {
    this.#inFlight += 1
  }

  finished(): void {
    this.#inFlight -= 1
    const waiter = this.#waiter
    if (waiter !== undefined && this.#inFlight <= waiter.until) {
      this.#waiter = undefined
      Deferred.doneUnsafe(waiter.deferred, Exit.void)
    }
  }

  /** Waits until fewer than `limit` are in flight (resuming at half, so the waits are few). */
  get room(): Effect.Effect<void> {
    return this.#waitUntil(this.#inFlight < this.limit ? undefined : Math.floor(this.limit / 2))
  }

  /** Waits until nothing is in flight. */
  get empty(): Effect.Effect<void> {
    return this.#waitUntil(this.#inFlight === 0 ? undefined : 0)
  }

  #waitUntil(until: number | undefined): Effect.Effect<void> {
    if (until === undefined) return Effect.void
    const deferred = Deferred.makeUnsafe<void>()
    this.#waiter = { until, deferred }
    return Deferred.await(deferred)
  }
}
