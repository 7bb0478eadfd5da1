/**
 * The actor registry: actors come and go with use, and a message never falls
 * between an actor going idle and a new one starting.
 */
import { Effect, Exit } from "effect"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { World } from "../../harness/World.ts"
import { type ActorExit, SubscriptionActors } from "../../src/actors/SubscriptionActors.ts"
import { createMany, createScheduled, getSubscription } from "../support/scenarios.ts"

describe("subscription actors", () => {
  let env: World
  beforeEach(async () => {
    env = await World.create({ actorIdleMs: 50 })
  })
  afterEach(async () => {
    await env.dispose()
  })

  it("are passivated when idle and started again by the next message", async () => {
    const engine = await env.startEngine()
    const live = () =>
      engine.runtime.runPromise(
        Effect.gen(function* () {
          return yield* (yield* SubscriptionActors).live
        }),
      )
    const mobile = env.channel()
    const subscription = await createScheduled(mobile, "client-1")
    await mobile.ok(
      "subscription.pause",
      { subscriptionId: subscription.subscriptionId },
      { clientId: "client-1" },
    )
    await env.waitFor("the actor to be passivated", async () => (await live()) === 0)
    await mobile.ok(
      "subscription.resume",
      { subscriptionId: subscription.subscriptionId },
      { clientId: "client-1" },
    )
    expect((await getSubscription(mobile, "client-1", subscription.subscriptionId)).status).toBe("active")
  })

  it("handle every message, each once, while actors keep passivating under them", async () => {
    const engine = await env.startEngine()
    const subscriptions = await createMany(env.channel(), 40)
    const outcomes: Array<ActorExit> = []
    const rounds = 25
    await engine.runtime.runPromise(
      Effect.gen(function* () {
        const actors = yield* SubscriptionActors
        for (let round = 0; round < rounds; round++) {
          for (const subscription of subscriptions) {
            yield* actors.tell(
              subscription.subscriptionId,
              { _tag: "Wake", statusReplies: new Map() },
              {},
              (exit) => {
                outcomes.push(exit)
              },
            )
          }
          // Not synchronisation: a pause in the load, so that actors reach their idle time and
          // passivate while the next round's messages arrive for them.
          yield* Effect.sleep(round % 2 === 0 ? 0 : 60)
        }
      }),
    )
    await env.waitFor(
      "every message to be handled",
      async () => outcomes.length === rounds * subscriptions.length,
    )
    expect(outcomes.every((exit) => Exit.isSuccess(exit))).toBe(true)
  })
})
