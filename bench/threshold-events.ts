/**
 * The balance events of the threshold bench and the publisher that sends
 * them, shared by the engine run and the raw JetStream run so both move
 * exactly the same messages.
 *
 * Event i reports the balance of `benchAccount(i)` at its provider; it is
 * below the threshold when i is even. Every account gets one event in the
 * whole run, so the 1 h cooldown never hides a below-threshold event and
 * each of them must yield exactly one payment command.
 */
import type { Naming } from "../src/EngineConfig.ts"
import type { JetStreamPublisher } from "../src/streams/JetStreamPublisher.ts"
import { makeTopology } from "../src/streams/Topology.ts"
import { sleep } from "./common.ts"
import { benchAccount, seedNow, thresholdBenchTerms, thresholdProviderOf } from "./seed.ts"

/** How many providers the threshold subscriptions and events are spread over. */
export const thresholdProviders = 10

/** True when event `index` reports a balance below the threshold (and so must yield a command). */
export const isBelowThreshold = (index: number): boolean => index % 2 === 0

const { threshold } = thresholdBenchTerms
const balanceBelow = { value: threshold.value / 2, currency: threshold.currency }
const balanceAbove = { value: threshold.value * 3, currency: threshold.currency }

/** The bench's balance events for one run, addressed with one naming. */
export interface ThresholdEvents {
  readonly count: number
  subjectOf(index: number): string
  eventIdOf(index: number): string
  /** The JSON body of event `index`, as a provider publishes it. */
  payloadOf(index: number): string
  /** The event index an `occurrence` names, or undefined when it is not one of this run's events. */
  indexOf(eventId: string): number | undefined
}

/** `count` balance events with ids unique to `tag`, on the provider subjects of `naming`. */
export const thresholdEvents = (tag: string, naming: Naming, count: number): ThresholdEvents => {
  const idPrefix = `${tag}-e`
  const { toProvider } = makeTopology(naming).subjects
  // Readings in the last `count` ms before the engine's (frozen) clock, increasing with the index.
  const firstAt = seedNow - count
  return {
    count,
    subjectOf: (index) => toProvider(thresholdProviderOf(index, thresholdProviders), "threshold.event"),
    eventIdOf: (index) => `${idPrefix}${index}`,
    payloadOf: (index) =>
      JSON.stringify({
        eventId: `${idPrefix}${index}`,
        providerId: thresholdProviderOf(index, thresholdProviders),
        account: benchAccount(index),
        balance: isBelowThreshold(index) ? balanceBelow : balanceAbove,
        at: new Date(firstAt + index).toISOString(),
      }),
    indexOf: (eventId) => {
      if (!eventId.startsWith(idPrefix)) return undefined
      const index = Number(eventId.slice(idPrefix.length))
      return Number.isSafeInteger(index) && index >= 0 && index < count ? index : undefined
    },
  }
}

/** Which events to publish and how fast. */
export interface PublishPlan {
  readonly from: number
  /** Exclusive. */
  readonly to: number
  /** Events per second, or null for as fast as JetStream acknowledges them. */
  readonly perSec: number | null
  /** Publishes awaiting their JetStream ack at most. */
  readonly inFlight: number
}

/** How a publish went. */
export interface PublishReport {
  /** `performance.now()` when the first event was handed to the client. */
  readonly startedAt: number
  /** Seconds from the first publish until the last was handed to the client. */
  readonly sendSeconds: number
  /** Seconds from the first publish until every publish was acknowledged. */
  readonly ackedSeconds: number
}

/**
 * Publishes events `plan.from` up to `plan.to` with `Nats-Msg-Id` = eventId,
 * at `plan.perSec` (the schedule is kept from the start, so a late timer is
 * caught up, not lost) or flat out; records when each was sent in `sentAt`.
 */
export const publishEvents = async (
  publisher: JetStreamPublisher,
  events: ThresholdEvents,
  plan: PublishPlan,
  sentAt?: Float64Array,
): Promise<PublishReport> => {
  let next = plan.from
  let inFlight = 0
  let failure: unknown
  let roomFreed: (() => void) | undefined
  const startedAt = performance.now()
  const settled = () => {
    inFlight -= 1
    const wake = roomFreed
    roomFreed = undefined
    wake?.()
  }
  while (next < plan.to && failure === undefined) {
    const due =
      plan.perSec === null
        ? plan.to
        : Math.min(
            plan.to,
            plan.from + Math.floor(((performance.now() - startedAt) * plan.perSec) / 1_000) + 1,
          )
    while (next < due && inFlight < plan.inFlight) {
      if (sentAt !== undefined) sentAt[next] = performance.now()
      inFlight += 1
      publisher
        .publish(events.subjectOf(next), events.payloadOf(next), events.eventIdOf(next))
        .catch((error: unknown) => {
          failure ??= error
        })
        .finally(settled)
      next += 1
    }
    if (next < due) {
      await new Promise<void>((resolve) => {
        roomFreed = resolve
      })
    } else if (next < plan.to) {
      await sleep(1)
    }
  }
  const sendSeconds = (performance.now() - startedAt) / 1_000
  while (inFlight > 0) {
    await new Promise<void>((resolve) => {
      roomFreed = resolve
    })
  }
  if (failure !== undefined) throw failure
  return { startedAt, sendSeconds, ackedSeconds: (performance.now() - startedAt) / 1_000 }
}
