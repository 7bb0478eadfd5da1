/**
 * The actor registry: actors come and go with use, and a message never falls
 * between an actor going idle and a new one starting.
 */
import { Effect, Exit } from "effect"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { type RunningEngine, World } from "../../harness/World.ts"
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

  /** How many actors the engine has live right now. */
  const liveActors = (engine: RunningEngine) =>
    engine.runtime.runPromise(
      Effect.gen(function* () {
        return yield* (yield* SubscriptionActors).live
      }),
    )

  it("are passivated when idle and started again by the next message", async () => {
    const engine = await env.startEngine()
    const mobile = env.channel()
    const subscription = await createScheduled(mobile, "client-1")
    await mobile.ok(
      "subscription.pause",
      { subscriptionId: subscription.subscriptionId },
      { clientId: "client-1" },
    )
    await env.waitFor("the actor to be passivated", async () => (await liveActors(engine)) === 0)
    await mobile.ok(
      "subscription.resume",
      { subscriptionId: subscription.subscriptionId },
      { clientId: "client-1" },
    )
    expect((await getSubscription(mobile, "client-1", subscription.subscriptionId)).status).toBe("active")
  })

  it("handle every message, each once, while actors come and go under them", async () => {
    const engine = await env.startEngine()
    const subscriptions = await createMany(env.channel(), 40)
    const outcomes: Array<ActorExit> = []
    const rounds = 25
    const tellAll = () =>
      engine.runtime.runPromise(
        Effect.gen(function* () {
          const actors = yield* SubscriptionActors
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
        }),
      )
    for (let round = 0; round < rounds; round++) {
      await tellAll()
      // Every other round lands on actors that have all been passivated; the rest on live ones
      // still busy with the previous round.
      if (round % 2 === 1)
        await env.waitFor("every actor to be passivated", async () => (await liveActors(engine)) === 0)
    }
    await env.waitFor(
      "every message to be handled",
      async () => outcomes.length === rounds * subscriptions.length,
    )
    expect(outcomes.every((exit) => Exit.isSuccess(exit))).toBe(true)
  })

  it("make a sender wait while a mailbox is full, then handle every message once, in the order sent", async () => {
    const mailboxCapacity = 3
    const engine = await env.startEngine({ mailboxCapacity })
    const [subscription] = await createMany(env.channel(), 1)
    if (subscription === undefined) throw new Error("no subscription created")
    const handledInOrder: Array<number> = []
    const exits: Array<ActorExit> = []
    const sent = 40
    const depthsAfterEachSend = await engine.runtime.runPromise(
      Effect.gen(function* () {
        const actors = yield* SubscriptionActors
        const depths: Array<number> = []
        for (let index = 0; index < sent; index++) {
          yield* actors.tell(
            subscription.subscriptionId,
            { _tag: "Wake", statusReplies: new Map() },
            {},
            (exit) => {
              handledInOrder.push(index)
              exits.push(exit)
            },
          )
          depths.push(yield* actors.mailboxDepth)
        }
        return depths
      }),
    )
    // Every send returned with the message inside a mailbox that never grew past its capacity.
    expect(Math.max(...depthsAfterEachSend)).toBeLessThanOrEqual(mailboxCapacity)
    await env.waitFor("every message to be handled", async () => handledInOrder.length === sent)
    expect(handledInOrder).toEqual(Array.from({ length: sent }, (_, index) => index))
    expect(exits.every((exit) => Exit.isSuccess(exit))).toBe(true)
  })

  it("keep each sender's order when several senders wait on one full mailbox", async () => {
    const engine = await env.startEngine({ mailboxCapacity: 2 })
    const [subscription] = await createMany(env.channel(), 1)
    if (subscription === undefined) throw new Error("no subscription created")
    const handled: Array<string> = []
    const senders = ["a", "b", "c", "d"]
    const perSender = 15
    await engine.runtime.runPromise(
      Effect.gen(function* () {
        const actors = yield* SubscriptionActors
        const sendAll = (sender: string) =>
          Effect.gen(function* () {
            for (let index = 0; index < perSender; index++) {
              yield* actors.tell(
                subscription.subscriptionId,
                { _tag: "Wake", statusReplies: new Map() },
                {},
                () => {
                  handled.push(`${sender}${index}`)
                },
              )
            }
          })
        yield* Effect.forEach(senders, sendAll, { concurrency: "unbounded", discard: true })
      }),
    )
    await env.waitFor(
      "every message to be handled",
      async () => handled.length === senders.length * perSender,
    )
    for (const sender of senders) {
      const own = handled.filter((label) => label.startsWith(sender))
      expect(own).toEqual(Array.from({ length: perSender }, (_, index) => `${sender}${index}`))
    }
  })
})
