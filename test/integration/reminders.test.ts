/**
 * Reminders end to end (contract 3.8): one-off payments published by the hub
 * on `hub.payment.completed`, a registered periodic provider, ticks moving
 * engine time, and the client answering through the protocol.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { World } from "../../harness/World.ts"
import { saveProvider } from "../../src/store/ProviderRegistry.ts"
import { commandsInStream } from "../support/scenarios.ts"

const rub = (value: number) => ({ value, currency: "RUB" })

interface View {
  readonly subscriptionId: string
  readonly kind: string
  readonly status: string
  readonly statusReason: string | null
  readonly hidden: boolean
  readonly templateId: string | null
  readonly offersMade?: number
  readonly nextOfferAt?: string | null
  readonly amount?: { value: number; currency: string }
}

describe("reminders", () => {
  let env: World
  beforeEach(async () => {
    env = await World.create()
    await env.startEngine() // migrates the database; the registry is read per request
    await saveProvider(env.db, {
      providerId: "isp-1",
      displayName: "Home internet",
      periodic: true,
      remindAfter: "P30D",
      supportsDebt: false,
      supportsThreshold: false,
    })
    await saveProvider(env.db, {
      providerId: "shop-1",
      displayName: "A shop",
      periodic: false,
      remindAfter: "P30D",
      supportsDebt: false,
      supportsThreshold: false,
    })
    await env.tick("2027-01-01T00:00:00Z")
  })
  afterEach(async () => {
    await env.dispose()
  })

  let sequence = 0
  const oneOff = async (
    clientId: string,
    at: string,
    options: { providerId?: string; paymentId?: string; msgId?: string; amount?: number } = {},
  ) => {
    sequence += 1
    const paymentId = options.paymentId ?? `one-off-${sequence}`
    await env.js.publish(
      env.topology.subjects.hubCompleted,
      JSON.stringify({
        paymentId,
        clientId,
        channel: "internet",
        providerId: options.providerId ?? "isp-1",
        account: "contract-77",
        source: "card-tok-9",
        amount: rub(options.amount ?? 99_000),
        at,
      }),
      { msgID: options.msgId ?? `completed:${paymentId}` },
    )
    await env.settled()
    return paymentId
  }

  const list = async (clientId: string, includeHidden: boolean) =>
    (
      await env
        .channel()
        .ok<{ items: ReadonlyArray<View> }>("subscription.list", { includeHidden }, { clientId })
    ).items

  const notifications = async (clientId: string) =>
    (
      await env.messages(env.topology.streams.events, `${env.settings.naming.rpPrefix}.notify.${clientId}`)
    ).map((message) => message.json as { type: string; data: Record<string, unknown> })

  it("offers to repeat a one-off payment after its period, three times at most, then stops", async () => {
    await oneOff("client-1", "2027-01-01T10:00:00Z")
    expect(await list("client-1", false)).toEqual([])
    const [reminder] = await list("client-1", true)
    expect(reminder).toMatchObject({
      kind: "reminder",
      hidden: true,
      status: "active",
      offersMade: 0,
      nextOfferAt: "2027-01-31T10:00:00.000Z",
    })

    await env.tick("2027-01-31T09:59:00Z")
    await env.settled()
    expect(await notifications("client-1")).toEqual([])
    for (const at of [
      "2027-01-31T10:00:00Z",
      "2027-03-02T10:00:00Z",
      "2027-04-01T10:00:00Z",
      "2027-06-01T10:00:00Z",
    ]) {
      await env.tick(at)
      await env.settled()
    }
    const offers = (await notifications("client-1")).filter((n) => n.type === "reminder.offer")
    expect(offers.map((n) => n.data.offer)).toEqual([1, 2, 3])
    expect(offers[0]?.data).toMatchObject({
      providerId: "isp-1",
      account: "contract-77",
      source: "card-tok-9",
      lastAmount: rub(99_000),
    })
    const events = await env.messages(
      env.topology.streams.events,
      `${env.settings.naming.rpPrefix}.event.reminder.offered`,
    )
    expect(events).toHaveLength(3)
    const [stopped] = await list("client-1", true)
    expect(stopped).toMatchObject({ status: "completed", statusReason: "no_answer", offersMade: 3 })

    // A new one-off payment to the payee starts it again, with the same reminder.
    await oneOff("client-1", "2027-06-05T10:00:00Z", { amount: 120_000 })
    const again = await list("client-1", true)
    expect(again).toHaveLength(1)
    expect(again[0]).toMatchObject({
      subscriptionId: reminder?.subscriptionId,
      status: "active",
      offersMade: 0,
      nextOfferAt: "2027-07-05T10:00:00.000Z",
    })
  })

  it("restarts the period on a new payment, never makes a second reminder, and ignores redeliveries", async () => {
    const first = await oneOff("client-2", "2027-01-01T10:00:00Z")
    // The same payment again under another message id, as after a hub-side retry.
    await oneOff("client-2", "2027-01-01T10:00:00Z", { paymentId: first, msgId: "again" })
    await oneOff("client-2", "2027-01-20T08:00:00Z")
    const reminders = await list("client-2", true)
    expect(reminders).toHaveLength(1)
    expect(reminders[0]).toMatchObject({ nextOfferAt: "2027-02-19T08:00:00.000Z", offersMade: 0 })
    const restarts = await env.db
      .selectFrom("decisions")
      .select("reason")
      .where("outcome", "=", "restarted")
      .execute()
    expect(restarts.map((row) => row.reason)).toEqual(["new_payment"])
  })

  it("turns an accepted reminder into a visible scheduled autopayment with a saved template, which then pays", async () => {
    const hub = await env.startHub()
    await oneOff("client-3", "2027-01-01T10:00:00Z")
    await env.tick("2027-01-31T10:00:00Z")
    await env.settled()
    const [reminder] = await list("client-3", true)
    const atm = env.channel("atm")
    const accept = {
      reminderId: reminder?.subscriptionId,
      schedule: { every: "month", dayOfMonth: 15, time: "09:00", startDate: "2027-02-01" },
      templateName: "Internet at home",
    }
    const reply = await atm.request("reminder.accept", accept, {
      clientId: "client-3",
      requestId: "accept-1",
    })
    expect(reply).toMatchObject({
      status: "ok",
      result: {
        subscription: {
          subscriptionId: reminder?.subscriptionId,
          kind: "scheduled",
          hidden: false,
          status: "active",
          amount: rub(99_000),
          nextOccurrence: { date: "2027-02-15" },
        },
      },
    })
    // Idempotent on the request id; a second acceptance is a conflict.
    expect(
      await atm.request("reminder.accept", accept, { clientId: "client-3", requestId: "accept-1" }),
    ).toEqual(reply)
    const twice = await atm.request("reminder.accept", accept, { clientId: "client-3" })
    expect(twice).toMatchObject({ status: "error", error: { code: "CONFLICT" } })
    const stranger = await atm.request("reminder.accept", accept, { clientId: "client-4" })
    expect(stranger).toMatchObject({ status: "error", error: { code: "NOT_FOUND" } })

    const visible = await list("client-3", false)
    expect(visible).toHaveLength(1)
    const { template } = await atm.ok<{ template: Record<string, unknown> }>(
      "template.get",
      { templateId: visible[0]?.templateId },
      { clientId: "client-3" },
    )
    expect(template).toMatchObject({
      name: "Internet at home",
      providerId: "isp-1",
      account: "contract-77",
      source: "card-tok-9",
    })
    await env.tick("2027-02-15T06:00:00Z")
    await env.settled()
    const commands = await commandsInStream(env)
    expect(commands).toEqual([
      expect.objectContaining({
        subscriptionId: reminder?.subscriptionId,
        kind: "scheduled",
        amount: rub(99_000),
      }),
    ])
    expect(hub.commands).toHaveLength(1)
    // With an autopayment to the payee now, a later one-off payment makes no reminder.
    await oneOff("client-3", "2027-02-20T10:00:00Z")
    expect(await list("client-3", true)).toHaveLength(1)
    const accepted = await env.messages(
      env.topology.streams.events,
      `${env.settings.naming.rpPrefix}.event.reminder.accepted`,
    )
    expect(accepted).toHaveLength(1)
  })

  it("stops reminders for a payee for good when declined", async () => {
    await oneOff("client-5", "2027-01-01T10:00:00Z")
    const [reminder] = await list("client-5", true)
    const ref = { reminderId: reminder?.subscriptionId }
    const mobile = env.channel()
    const declined = await mobile.request("reminder.decline", ref, { clientId: "client-5", requestId: "d-1" })
    expect(declined).toMatchObject({
      status: "ok",
      result: { subscription: { status: "cancelled", statusReason: "declined" } },
    })
    expect(await mobile.request("reminder.decline", ref, { clientId: "client-5", requestId: "d-1" })).toEqual(
      declined,
    )
    await oneOff("client-5", "2027-02-01T10:00:00Z")
    await env.tick("2027-06-01T00:00:00Z")
    await env.settled()
    expect(await notifications("client-5")).toEqual([])
    const [still] = await list("client-5", true)
    expect(still).toMatchObject({ status: "cancelled", statusReason: "declined" })
    const events = await env.messages(
      env.topology.streams.events,
      `${env.settings.naming.rpPrefix}.event.reminder.declined`,
    )
    expect(events).toHaveLength(1)
  })

  it("makes no reminder for a provider that is not periodic, nor for a payee the client already pays automatically", async () => {
    await oneOff("client-6", "2027-01-01T10:00:00Z", { providerId: "shop-1" })
    expect(await list("client-6", true)).toEqual([])
    await env.channel().ok(
      "subscription.create",
      {
        kind: "scheduled",
        template: { name: "Internet", providerId: "isp-1", account: "contract-77", source: "card-tok-1" },
        amount: rub(99_000),
        schedule: { every: "month", dayOfMonth: 1, time: "09:00", startDate: "2027-02-01" },
      },
      { clientId: "client-6" },
    )
    await oneOff("client-6", "2027-01-02T10:00:00Z")
    expect((await list("client-6", true)).map((s) => s.kind)).toEqual(["scheduled"])
  })

  it("stops offering once the client pays the payee automatically, and pays from the latest one-off payment's source", async () => {
    await oneOff("client-8", "2027-01-01T10:00:00Z")
    await env.channel().ok(
      "subscription.create",
      {
        kind: "scheduled",
        template: { name: "Internet", providerId: "isp-1", account: "contract-77", source: "card-tok-1" },
        amount: rub(99_000),
        schedule: { every: "month", dayOfMonth: 1, time: "09:00", startDate: "2027-02-01" },
      },
      { clientId: "client-8" },
    )
    await env.tick("2027-01-31T10:00:00Z")
    await env.settled()
    expect((await notifications("client-8")).filter((n) => n.type === "reminder.offer")).toEqual([])
    const reminder = (await list("client-8", true)).find((s) => s.kind === "reminder")
    expect(reminder).toMatchObject({ status: "completed", statusReason: "autopayment_exists" })
    const refused = await env.channel().request(
      "reminder.accept",
      {
        reminderId: reminder?.subscriptionId,
        schedule: { every: "month", dayOfMonth: 5, time: "09:00", startDate: "2027-02-01" },
      },
      { clientId: "client-8" },
    )
    expect(refused, JSON.stringify(refused)).toMatchObject({ status: "error", error: { code: "CONFLICT" } })

    // Another client: two one-off payments from different cards; the autopayment takes the latest card.
    await oneOff("client-9", "2027-01-01T10:00:00Z")
    await env.js.publish(
      env.topology.subjects.hubCompleted,
      JSON.stringify({
        paymentId: "one-off-new-card",
        clientId: "client-9",
        channel: "atm",
        providerId: "isp-1",
        account: "contract-77",
        source: "card-tok-new",
        amount: rub(99_000),
        at: "2027-01-05T10:00:00Z",
      }),
      { msgID: "completed:one-off-new-card" },
    )
    await env.settled()
    const [nine] = await list("client-9", true)
    const { subscription } = await env.channel().ok<{ subscription: { payee: { source: string } } }>(
      "reminder.accept",
      {
        reminderId: nine?.subscriptionId,
        schedule: { every: "month", dayOfMonth: 5, time: "09:00", startDate: "2027-02-01" },
      },
      { clientId: "client-9" },
    )
    expect(subscription.payee.source).toBe("card-tok-new")
    // The row says so too: after a restart the actor loads it from there.
    const row = await env.db
      .selectFrom("subscriptions")
      .select(["source", "kind", "hidden"])
      .where("id", "=", nine?.subscriptionId ?? "")
      .executeTakeFirstOrThrow()
    expect(row).toEqual({ source: "card-tok-new", kind: "scheduled", hidden: false })
  })

  it("refuses templates and autopayments naming a provider the bank has not registered, or a kind it does not support", async () => {
    const mobile = env.channel()
    const unknown = await mobile.request(
      "template.create",
      { name: "X", providerId: "nobody", account: "a", source: "s" },
      { clientId: "client-7" },
    )
    expect(unknown).toMatchObject({
      status: "error",
      error: {
        code: "VALIDATION_FAILED",
        details: [{ path: "body.providerId", message: expect.stringContaining("not registered") }],
      },
    })
    const noBalances = await mobile.request(
      "subscription.create",
      {
        kind: "threshold",
        template: { name: "X", providerId: "isp-1", account: "a", source: "s" },
        amount: rub(100),
        threshold: rub(10),
      },
      { clientId: "client-7" },
    )
    expect(noBalances).toMatchObject({
      status: "error",
      error: { code: "VALIDATION_FAILED", details: [{ path: "body.template.providerId" }] },
    })
    expect(await env.db.selectFrom("templates").select("id").execute()).toEqual([])
    expect(await env.db.selectFrom("subscriptions").select("id").execute()).toEqual([])
  })
})
