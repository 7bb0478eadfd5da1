/**
 * What the engine does with the hub's answers — and with its silence —
 * driven over NATS: retries on schedule, final failures, auto-pause after
 * three failed occurrences, and status queries when the outcome is unknown.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import type { HubVerdict } from "../../fakes/FakeHub.ts"
import { World } from "../../harness/World.ts"
import { commandsInStream, createScheduled, getSubscription } from "../support/scenarios.ts"

const retryableFailure: HubVerdict = { status: "failed", retryable: true, reason: "insufficient funds" }

describe("payment outcomes", () => {
  let env: World
  beforeEach(async () => {
    env = await World.create()
    await env.startEngine()
  })
  afterEach(async () => {
    await env.dispose()
  })

  const eventTypes = async (clientId: string) =>
    (
      await env.messages(env.topology.streams.events, `${env.settings.naming.rpPrefix}.notify.${clientId}`)
    ).map((message) => (message.json as { type: string; data: { final?: boolean } }).type)

  it("retries a retryable failure after 1 h, 6 h and 24 h, then gives up on that occurrence", async () => {
    const hub = await env.startHub({ decide: () => retryableFailure })
    const mobile = env.channel()
    const subscription = await createScheduled(mobile, "client-1")

    await env.tick("2027-01-01T06:00:00Z")
    await env.settled()
    await env.tick("2027-01-01T06:59:00Z") // not yet
    await env.tick("2027-01-01T07:00:00Z") // +1 h: attempt 2
    await env.settled()
    await env.tick("2027-01-01T13:00:00Z") // +6 h: attempt 3
    await env.settled()
    await env.tick("2027-01-02T13:00:00Z") // +24 h: attempt 4
    await env.settled()
    await env.tick("2027-01-05T00:00:00Z") // nothing left to try
    await env.settled()

    const commands = await commandsInStream(env)
    expect(commands.map((command) => [command.occurrence, command.attempt])).toEqual([
      ["2027-01-01", 1],
      ["2027-01-01", 2],
      ["2027-01-01", 3],
      ["2027-01-01", 4],
    ])
    expect(new Set(commands.map((command) => command.paymentId)).size).toBe(4)
    expect(hub.commands).toHaveLength(4)
    const payments = await env.db
      .selectFrom("payments")
      .select(["attempt", "outcome", "requested_at"])
      .orderBy("attempt")
      .execute()
    expect(
      payments.map((payment) => [payment.attempt, payment.outcome, payment.requested_at.toISOString()]),
    ).toEqual([
      [1, "retry_scheduled", "2027-01-01T06:00:00.000Z"],
      [2, "retry_scheduled", "2027-01-01T07:00:00.000Z"],
      [3, "retry_scheduled", "2027-01-01T13:00:00.000Z"],
      [4, "failed", "2027-01-02T13:00:00.000Z"],
    ])
    const after = await getSubscription(mobile, "client-1", subscription.subscriptionId)
    expect(after).toMatchObject({ status: "active", failedInARow: 1, paymentsMade: 0 })
    expect(await eventTypes("client-1")).toEqual([
      "payment.failed",
      "payment.failed",
      "payment.failed",
      "payment.failed",
    ])
  })

  it("treats declines and non-retryable failures as final", async () => {
    const verdicts: Array<HubVerdict> = [
      { status: "declined", retryable: true, reason: "card blocked" },
      { status: "failed", retryable: false, reason: "account closed" },
    ]
    const hub = await env.startHub({
      decide: () => verdicts.shift() ?? { status: "succeeded", retryable: false },
    })
    await createScheduled(env.channel(), "client-1")
    await env.tick("2027-01-01T06:00:00Z")
    await env.settled()
    await env.tick("2027-01-02T06:00:00Z")
    await env.settled()
    await env.tick("2027-02-01T06:00:00Z")
    await env.settled()
    await env.tick("2027-02-03T06:00:00Z")
    await env.settled()
    expect(hub.commands.map((command) => [command.occurrence, command.attempt])).toEqual([
      ["2027-01-01", 1],
      ["2027-02-01", 1],
    ])
  })

  it("pauses itself after three failed occurrences in a row and says so", async () => {
    await env.startHub({ decide: () => ({ status: "declined", retryable: false, reason: "card expired" }) })
    const mobile = env.channel()
    const subscription = await createScheduled(mobile, "client-1")
    for (const at of ["2027-01-01T06:00:00Z", "2027-02-01T06:00:00Z", "2027-03-01T06:00:00Z"]) {
      await env.tick(at)
      await env.settled()
    }
    await env.tick("2027-04-01T06:00:00Z")
    await env.settled()

    const after = await getSubscription(mobile, "client-1", subscription.subscriptionId)
    expect(after).toMatchObject({ status: "paused", statusReason: "consecutive_failures", failedInARow: 3 })
    const commands = await commandsInStream(env)
    expect(commands.map((command) => command.occurrence)).toEqual(["2027-01-01", "2027-02-01", "2027-03-01"])
    expect(await eventTypes("client-1")).toContain("subscription.paused")
    const skipped = await env.db
      .selectFrom("decisions")
      .select(["occurrence", "reason"])
      .where("outcome", "=", "skipped")
      .execute()
    expect(skipped).toEqual([{ occurrence: "2027-04-01", reason: "paused" }])
    const paused = await env.messages(
      env.topology.streams.events,
      `${env.settings.naming.rpPrefix}.event.subscription.paused`,
    )
    expect(paused).toHaveLength(1)
  })

  it("asks the hub instead of paying again when a result never comes", async () => {
    const hub = await env.startHub({ decide: () => "silent" })
    const subscription = await createScheduled(env.channel(), "client-1")
    await env.tick("2027-01-01T06:00:00Z")
    const [command] = await hub.waitForCommands(1)
    if (command === undefined) throw new Error("no command")
    await env.settled()

    await env.tick("2027-01-01T06:15:00Z") // result timeout: first status query, the hub does not know
    await env.tick("2027-01-01T06:16:00Z") // back-off: asks again; still unknown
    const unknown = await env.db
      .selectFrom("payments")
      .select(["status", "outcome"])
      .executeTakeFirstOrThrow()
    expect(unknown).toEqual({ status: "unknown", outcome: "awaiting_status" })

    hub.setVerdict(command.paymentId, retryableFailure)
    await env.tick("2027-01-01T06:21:00Z") // asks again: now a definite, retryable failure
    await env.settled()
    await env.tick("2027-01-01T07:21:00Z") // retry one hour later
    await env.settled()

    const commands = await commandsInStream(env)
    expect(commands.map((c) => [c.subscriptionId, c.attempt])).toEqual([
      [subscription.subscriptionId, 1],
      [subscription.subscriptionId, 2],
    ])
    const history = await env
      .channel()
      .ok<{ entries: Array<{ type: string; outcome: string }> }>(
        "subscription.history",
        { subscriptionId: subscription.subscriptionId },
        { clientId: "client-1" },
      )
    expect(history.entries.map((entry) => entry.outcome)).toEqual(
      expect.arrayContaining(["result_overdue", "retry_scheduled"]),
    )
  })
})
