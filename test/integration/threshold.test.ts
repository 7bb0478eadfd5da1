/**
 * Threshold autopayments end to end: a fake mobile operator reports balances
 * over NATS, the fake hub answers the top-ups, and the channel reads the
 * outcome back through the protocol. Contract 3.5: event ids de-duplicated,
 * stale readings ignored, one top-up in flight, then the cooldown.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import type { FakeHub } from "../../fakes/FakeHub.ts"
import type { FakeProvider } from "../../fakes/FakeProvider.ts"
import { World } from "../../harness/World.ts"
import { commandsInStream, getSubscription } from "../support/scenarios.ts"

const operator = "mobile-op"
const phone = "+79001234567"
const rub = (value: number) => ({ value, currency: "RUB" })

interface HistoryEntry {
  readonly type: string
  readonly outcome: string | null
  readonly reason: string | null
  readonly occurrence: string | null
  readonly details?: Record<string, unknown>
  readonly why?: Record<string, unknown>
}

describe("threshold autopayments", () => {
  let env: World
  let provider: FakeProvider
  let hub: FakeHub
  beforeEach(async () => {
    env = await World.create()
    await env.startEngine()
    hub = await env.startHub()
    provider = await env.startProvider(operator)
    await env.tick("2027-01-10T10:00:00Z")
  })
  afterEach(async () => {
    await env.dispose()
  })

  const createThreshold = async (
    clientId = "client-1",
    account = phone,
    body: Record<string, unknown> = {},
  ) =>
    (
      await env.channel().ok<{ subscription: { subscriptionId: string; version: number } }>(
        "subscription.create",
        {
          kind: "threshold",
          template: { name: "My phone", providerId: operator, account, source: "card-tok-1" },
          amount: rub(50_000),
          threshold: rub(10_000),
          ...body,
        },
        { clientId },
      )
    ).subscription

  const reading = (eventId: string, balance: number, at: string, account = phone) =>
    provider.reportBalance({ eventId, account, balance: rub(balance), at })

  const history = async (subscriptionId: string, clientId = "client-1") =>
    (
      await env
        .channel()
        .ok<{ entries: ReadonlyArray<HistoryEntry> }>(
          "subscription.history",
          { subscriptionId },
          { clientId },
        )
    ).entries

  const watchMessages = async () =>
    (
      await env.messages(
        env.topology.streams.providers,
        `${env.settings.naming.providerPrefix}.${operator}.threshold.*`,
      )
    )
      .filter((message) => !message.subject.endsWith(".event"))
      .map((message) => ({
        topic: message.subject.split(".").at(-1),
        body: message.json,
        msgId: message.msgId,
      }))

  it("asks the provider to watch the account, and tops up once when the balance falls below the threshold", async () => {
    const subscription = await createThreshold()
    await env.settled()
    expect(await watchMessages()).toEqual([
      {
        topic: "watch",
        body: {
          subscriptionId: subscription.subscriptionId,
          providerId: operator,
          account: phone,
          threshold: rub(10_000),
          at: "2027-01-10T10:00:00.000Z",
        },
        msgId: `threshold.watch:${subscription.subscriptionId}:v1`,
      },
    ])

    await reading("ev-1", 20_000, "2027-01-10T10:01:00Z") // above: nothing
    await reading("ev-2", 10_000, "2027-01-10T10:02:00Z") // at the threshold: not below
    await reading("ev-3", 9_999, "2027-01-10T10:03:00Z") // below: one top-up
    await env.settled()

    const commands = await commandsInStream(env)
    expect(commands).toHaveLength(1)
    expect(commands[0]).toMatchObject({
      subscriptionId: subscription.subscriptionId,
      kind: "threshold",
      occurrence: "ev-3",
      attempt: 1,
      amount: rub(50_000),
      providerId: operator,
      account: phone,
    })
    expect(hub.commands).toHaveLength(1)
    const view = await getSubscription(env.channel(), "client-1", subscription.subscriptionId)
    expect(view).toMatchObject({
      paymentsMade: 1,
      lastBalance: rub(9_999),
      cooldownUntil: "2027-01-10T11:00:00.000Z",
    })
    const paid = (await history(subscription.subscriptionId)).find((entry) => entry.type === "payment")
    expect(paid?.why).toMatchObject({
      rule: "threshold",
      eventId: "ev-3",
      balance: rub(9_999),
      threshold: rub(10_000),
    })
  })

  it("ignores a redelivered event id and a stale reading, and says why for the stale one", async () => {
    const subscription = await createThreshold()
    await reading("ev-10", 5_000, "2027-01-10T10:05:00Z")
    await env.settled()
    // The same event again under another message id, so the stream does not drop it: the engine must.
    await provider.reportBalance(
      { eventId: "ev-10", account: phone, balance: rub(5_000), at: "2027-01-10T10:05:00Z" },
      "redelivered-ev-10",
    )
    // Older than the newest reading seen: stale, whatever it says.
    await reading("ev-09", 1_000, "2027-01-10T10:04:00Z")
    await env.settled()

    expect((await commandsInStream(env)).map((command) => command.occurrence)).toEqual(["ev-10"])
    const entries = await history(subscription.subscriptionId)
    // The redelivery left no trace at all: not even a "skipped, cooldown" decision.
    expect(entries.filter((entry) => entry.occurrence === "ev-10").map((entry) => entry.type)).toEqual([
      "payment",
    ])
    const ignored = entries.filter((entry) => entry.outcome === "ignored")
    expect(ignored).toEqual([
      expect.objectContaining({
        reason: "stale_event",
        occurrence: "ev-09",
        details: expect.objectContaining({ newestSeenAt: "2027-01-10T10:05:00.000Z", balance: rub(1_000) }),
      }),
    ])
  })

  it("waits out the cooldown after a successful top-up, in tick time", async () => {
    const subscription = await createThreshold()
    await reading("ev-20", 3_000, "2027-01-10T10:10:00Z") // paid; the success starts a 1 h cooldown at 10:00
    await env.settled()
    await env.tick("2027-01-10T10:30:00Z")
    await reading("ev-22", 1_000, "2027-01-10T10:31:00Z")
    await env.settled()
    await env.tick("2027-01-10T11:00:00Z")
    await reading("ev-23", 1_000, "2027-01-10T11:01:00Z")
    await env.settled()

    expect((await commandsInStream(env)).map((command) => command.occurrence)).toEqual(["ev-20", "ev-23"])
    const skipped = (await history(subscription.subscriptionId)).filter(
      (entry) => entry.outcome === "skipped",
    )
    expect(skipped).toEqual([
      expect.objectContaining({
        reason: "cooldown",
        occurrence: "ev-22",
        details: expect.objectContaining({ cooldown: "PT1H", cooldownUntil: "2027-01-10T11:00:00.000Z" }),
      }),
    ])
  })

  it("skips a reading while a top-up is in flight", async () => {
    await hub.stop()
    const quiet = await env.startHub({ consumerName: "quiet-hub", decide: () => "silent" })
    const subscription = await createThreshold()
    await reading("ev-30", 3_000, "2027-01-10T10:10:00Z")
    await quiet.waitForCommands(1)
    await reading("ev-31", 2_000, "2027-01-10T10:11:00Z")
    await env.providersCaughtUp()

    expect((await commandsInStream(env)).map((command) => command.occurrence)).toEqual(["ev-30"])
    const entries = await history(subscription.subscriptionId)
    expect(entries).toContainEqual(
      expect.objectContaining({ outcome: "skipped", reason: "top_up_in_flight", occurrence: "ev-31" }),
    )
  })

  it("retries a failed top-up only when a later reading is still low", async () => {
    await hub.stop()
    let first = true
    const failingOnce = await env.startHub({
      consumerName: "failing-once",
      decide: () => {
        if (!first) return { status: "succeeded", retryable: false }
        first = false
        return { status: "failed", retryable: true, reason: "card declined" }
      },
    })
    await createThreshold()
    await reading("ev-40", 3_000, "2027-01-10T10:10:00Z")
    await env.settled()
    await reading("ev-41", 3_000, "2027-01-10T10:12:00Z")
    await env.settled()
    expect(failingOnce.commands.map((command) => [command.occurrence, command.attempt])).toEqual([
      ["ev-40", 1],
      ["ev-41", 1],
    ])
  })

  it("unwatches when paused or cancelled, watches again on resume, and pays nothing while paused", async () => {
    const subscription = await createThreshold()
    const mobile = env.channel()
    const atm = env.channel("atm")
    const ref = { subscriptionId: subscription.subscriptionId }
    await mobile.ok("subscription.pause", ref, { clientId: "client-1" })
    await reading("ev-50", 1_000, "2027-01-10T10:10:00Z")
    await env.settled()
    expect(await commandsInStream(env)).toEqual([])
    // A reading that still arrives while paused is recorded as skipped, not lost.
    expect(await history(subscription.subscriptionId)).toContainEqual(
      expect.objectContaining({ outcome: "skipped", reason: "paused", occurrence: "ev-50" }),
    )

    await atm.ok("subscription.resume", ref, { clientId: "client-1" })
    await atm.ok("subscription.cancel", ref, { clientId: "client-1" })
    await env.settled()
    expect((await watchMessages()).map((message) => [message.topic, message.msgId])).toEqual([
      ["watch", `threshold.watch:${subscription.subscriptionId}:v1`],
      ["unwatch", `threshold.unwatch:${subscription.subscriptionId}:v2`],
      ["watch", `threshold.watch:${subscription.subscriptionId}:v3`],
      ["unwatch", `threshold.unwatch:${subscription.subscriptionId}:v4`],
    ])
  })

  it("routes one reading to every subscription watching the account, and to no other", async () => {
    const a = await createThreshold("client-a")
    const b = await createThreshold("client-b")
    await createThreshold("client-c", "+79990000000")
    await reading("ev-60", 1_000, "2027-01-10T10:10:00Z")
    await env.settled()
    const commands = await commandsInStream(env)
    expect(commands.map((command) => command.subscriptionId).sort()).toEqual(
      [a.subscriptionId, b.subscriptionId].sort(),
    )
  })

  it("updates its own terms, watches again at a new threshold, and refuses terms of other kinds", async () => {
    const subscription = await createThreshold()
    const mobile = env.channel()
    const refused = await mobile.request(
      "subscription.update",
      {
        subscriptionId: subscription.subscriptionId,
        expectedVersion: 1,
        limit: rub(1),
        schedule: { every: "month", time: "09:00", startDate: "2027-02-01" },
      },
      { clientId: "client-1" },
    )
    expect(refused).toMatchObject({ status: "error", error: { code: "VALIDATION_FAILED" } })
    const details = refused.status === "error" ? refused.error.details : []
    const paths = details.map((detail) => detail.path)
    expect([...paths].sort()).toEqual(["body.limit", "body.schedule"])

    const { subscription: updated } = await mobile.ok<{
      subscription: { version: number; threshold: unknown }
    }>(
      "subscription.update",
      { subscriptionId: subscription.subscriptionId, expectedVersion: 1, threshold: rub(20_000) },
      { clientId: "client-1" },
    )
    expect(updated).toMatchObject({ version: 2, threshold: rub(20_000) })
    await env.settled()
    expect((await watchMessages()).map((message) => [message.topic, message.msgId, message.body])).toEqual([
      [
        "watch",
        `threshold.watch:${subscription.subscriptionId}:v1`,
        expect.objectContaining({ threshold: rub(10_000) }),
      ],
      [
        "watch",
        `threshold.watch:${subscription.subscriptionId}:v2`,
        expect.objectContaining({ threshold: rub(20_000) }),
      ],
    ])
    await reading("ev-80", 15_000, "2027-01-10T10:20:00Z") // below the new threshold only
    await env.settled()
    expect((await commandsInStream(env)).map((command) => command.occurrence)).toEqual(["ev-80"])
  })

  it("refuses a threshold in another currency than the top-up, and writes nothing", async () => {
    const reply = await env.channel().request(
      "subscription.create",
      {
        kind: "threshold",
        template: { name: "My phone", providerId: operator, account: phone, source: "card-tok-1" },
        amount: rub(50_000),
        threshold: { value: 100, currency: "USD" },
      },
      { clientId: "client-1" },
    )
    expect(reply).toMatchObject({ status: "error", error: { code: "VALIDATION_FAILED" } })
    const rows = await env.db.selectFrom("subscriptions").select("id").execute()
    expect(rows).toEqual([])
  })

  it("sends undecodable readings and readings under another provider's subject to the DLQ, and carries on", async () => {
    await createThreshold()
    await provider.publishRaw("threshold.event", "{not json")
    await provider.publishRaw(
      "threshold.event",
      JSON.stringify({
        eventId: "ev-x",
        providerId: "someone-else",
        account: phone,
        balance: rub(1),
        at: "2027-01-10T10:10:00Z",
      }),
    )
    await reading("ev-70", 1_000, "2027-01-10T10:11:00Z")
    await env.settled()
    const letters = await env.messages(
      env.topology.streams.deadLetters,
      `${env.settings.naming.rpPrefix}.dlq.>`,
    )
    expect(letters.map((letter) => (letter.json as { reason: string }).reason)).toEqual([
      expect.stringContaining("not JSON"),
      expect.stringContaining("someone-else"),
    ])
    expect((await commandsInStream(env)).map((command) => command.occurrence)).toEqual(["ev-70"])
  })
})
