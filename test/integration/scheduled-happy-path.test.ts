import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { World } from "../../harness/World.ts"

describe("a scheduled autopayment, end to end", () => {
  let env: World
  beforeEach(async () => {
    env = await World.create()
  })
  afterEach(async () => {
    await env.dispose()
  })

  it("notifies ahead, pays once on the due date, and records the outcome", async () => {
    await env.startEngine()
    const hub = await env.startHub()
    const mobile = env.channel("mobile")
    const client = { clientId: "client-7" }

    const { template } = await mobile.ok<{ template: { templateId: string } }>(
      "template.create",
      { name: "Home internet", providerId: "isp-1", account: "contract-123", source: "card-tok-1" },
      client,
    )
    const { subscription } = await mobile.ok<{
      subscription: { subscriptionId: string; status: string; version: number }
    }>(
      "subscription.create",
      {
        kind: "scheduled",
        templateId: template.templateId,
        amount: { value: 150000, currency: "RUB" },
        schedule: {
          every: "month",
          dayOfMonth: 1,
          time: "09:00",
          timezone: "Europe/Moscow",
          startDate: "2027-01-01",
        },
      },
      client,
    )
    expect(subscription.status).toBe("active")

    await env.tick("2026-12-31T06:00:00Z")
    await env.settled()
    const upcoming = await env.messages(
      env.topology.streams.events,
      `${env.settings.naming.rpPrefix}.notify.client-7`,
    )
    expect(upcoming.map((m) => (m.json as { type: string }).type)).toEqual(["payment.upcoming"])

    await env.tick("2027-01-01T06:00:00Z")
    const commands = await hub.waitForCommands(1)
    expect(commands[0]).toMatchObject({
      subscriptionId: subscription.subscriptionId,
      occurrence: "2027-01-01",
      attempt: 1,
      amount: { value: 150000, currency: "RUB" },
      providerId: "isp-1",
      account: "contract-123",
      source: "card-tok-1",
    })
    await env.settled()

    const payments = await env.db.selectFrom("payments").selectAll().execute()
    expect(payments).toHaveLength(1)
    expect(payments[0]).toMatchObject({ status: "succeeded", outcome: "paid", occurrence: "2027-01-01" })

    const after = await mobile.ok<{
      subscription: { paymentsMade: number; nextOccurrence: { date: string } }
    }>("subscription.get", { subscriptionId: subscription.subscriptionId }, client)
    expect(after.subscription.paymentsMade).toBe(1)
    expect(after.subscription.nextOccurrence.date).toBe("2027-02-01")

    const notices = await env.messages(
      env.topology.streams.events,
      `${env.settings.naming.rpPrefix}.notify.client-7`,
    )
    expect(notices.map((m) => (m.json as { type: string }).type)).toEqual([
      "payment.upcoming",
      "payment.succeeded",
    ])

    // Every message the engine published carries its Nats-Msg-Id, so a re-publish is dropped.
    const published = [
      ...(await env.messages(env.topology.streams.events, `${env.settings.naming.rpPrefix}.>`)),
      ...(await env.messages(env.topology.streams.hubPayments, env.topology.subjects.hubCommand)),
    ]
    expect(published.length).toBeGreaterThan(4)
    expect(published.every((message) => message.msgId !== undefined && message.msgId !== "")).toBe(true)
  })
})
