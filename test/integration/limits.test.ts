/**
 * Spending limits (contract 3.7) with the real group committer: a payment
 * over a cap is held and the client told, `payment.confirm` releases it once,
 * and many subscriptions of one client paying at the same instant can never
 * together spend past the monthly cap.
 */
import { afterEach, describe, expect, it } from "vitest"
import { World } from "../../harness/World.ts"
import { noLimitSettings } from "../../src/actors/Limits.ts"
import { commandsInStream, createScheduled } from "../support/scenarios.ts"

const rub = (value: number) => ({ value, currency: "RUB" })

describe("spending limits", () => {
  let env: World
  afterEach(async () => {
    await env.dispose()
  })

  const notificationTypes = async (clientId: string) =>
    (
      await env.messages(env.topology.streams.events, `${env.settings.naming.rpPrefix}.notify.${clientId}`)
    ).map((message) => (message.json as { type: string }).type)

  const spent = async (clientId: string) =>
    (await env.db.selectFrom("client_spend").selectAll().where("client_id", "=", clientId).execute()).map(
      (row) => [row.month, row.currency, Number(row.spent)],
    )

  it("refuses to create an autopayment whose every payment is above the per-payment cap", async () => {
    env = await World.create({
      limits: { ...noLimitSettings, paymentMax: { scheduled: { RUB: 100_000 }, threshold: {}, debt: {} } },
    })
    await env.startEngine()
    const reply = await env.channel().request(
      "subscription.create",
      {
        kind: "scheduled",
        template: { name: "Rent", providerId: "landlord", account: "flat-9", source: "card-tok-1" },
        amount: rub(150_000),
        schedule: { every: "month", dayOfMonth: 1, time: "09:00", startDate: "2027-01-01" },
      },
      { clientId: "client-1" },
    )
    expect(reply).toMatchObject({ status: "error", error: { code: "LIMIT_EXCEEDED" } })
    expect(await env.db.selectFrom("subscriptions").select("id").execute()).toEqual([])
    expect(await env.db.selectFrom("templates").select("id").execute()).toEqual([])
  })

  it("never lets one client's subscriptions spend past the monthly cap together, and confirm releases one", async () => {
    // Twelve payments of 100.00 at the same instant against a cap of 500.00.
    env = await World.create({ limits: { ...noLimitSettings, monthlyMax: { RUB: 50_000 } } })
    await env.startEngine()
    const hub = await env.startHub()
    const mobile = env.channel()
    const subscriptions = await Promise.all(
      Array.from({ length: 12 }, (_, index) =>
        createScheduled(mobile, "client-1", { amount: rub(10_000) }, `phone-${index}`),
      ),
    )
    await env.tick("2027-01-01T06:00:00Z")
    await env.settled()

    expect(await commandsInStream(env)).toHaveLength(5)
    expect(await spent("client-1")).toEqual([["2027-01", "RUB", 50_000]])
    const held = await env.db
      .selectFrom("decisions")
      .select(["subscription_id", "payment_id", "reason"])
      .where("outcome", "=", "held")
      .execute()
    expect(held).toHaveLength(7)
    expect(new Set(held.map((row) => row.reason))).toEqual(new Set(["over_monthly_cap"]))
    expect((await notificationTypes("client-1")).filter((type) => type === "limit.exceeded")).toHaveLength(7)

    // The client confirms one held payment: it goes out once, past the cap, and counts toward the month.
    const first = held[0]
    if (first === undefined) throw new Error("nothing held")
    const confirm = { subscriptionId: first.subscription_id, paymentId: first.payment_id }
    const reply = await mobile.request("payment.confirm", confirm, { clientId: "client-1" })
    expect(reply).toMatchObject({ status: "ok" })
    const twice = await mobile.request("payment.confirm", confirm, { clientId: "client-1" })
    expect(twice).toMatchObject({ status: "error", error: { code: "CONFLICT" } })
    await env.settled()
    const commands = await commandsInStream(env)
    expect(commands).toHaveLength(6)
    expect(commands.filter((command) => command.paymentId === first.payment_id)).toHaveLength(1)
    expect(hub.commands).toHaveLength(6)
    expect(await spent("client-1")).toEqual([["2027-01", "RUB", 60_000]])
    expect(subscriptions).toHaveLength(12)
  })

  it("gives back what a declined payment counted toward the month", async () => {
    env = await World.create({ limits: { ...noLimitSettings, monthlyMax: { RUB: 10_000 } } })
    await env.startEngine()
    const hub = await env.startHub({
      decide: (command) =>
        command.account === "gym"
          ? { status: "declined", retryable: false, reason: "insufficient funds" }
          : { status: "succeeded", retryable: false },
    })
    const mobile = env.channel()
    await createScheduled(mobile, "client-5", { amount: rub(10_000) }, "gym")
    await createScheduled(
      mobile,
      "client-5",
      {
        amount: rub(10_000),
        schedule: { every: "month", dayOfMonth: 15, time: "09:00", startDate: "2027-01-01" },
      },
      "phone",
    )
    await env.tick("2027-01-01T06:00:00Z")
    await env.settled()
    expect(await spent("client-5")).toEqual([["2027-01", "RUB", 0]])
    await env.tick("2027-01-15T06:00:00Z")
    await env.settled()
    expect(hub.commands.map((command) => command.account)).toEqual(["gym", "phone"])
    expect(await spent("client-5")).toEqual([["2027-01", "RUB", 10_000]])
  })

  it("counts the month in the client's time zone and starts afresh in the next one", async () => {
    env = await World.create({ limits: { ...noLimitSettings, monthlyMax: { RUB: 10_000 } } })
    await env.startEngine()
    await env.startHub()
    const mobile = env.channel()
    // Monthly on the 1st at 00:30 Moscow, which is still the previous month in UTC (21:30Z).
    await createScheduled(mobile, "client-9", {
      amount: rub(10_000),
      schedule: {
        every: "month",
        dayOfMonth: 1,
        time: "00:30",
        timezone: "Europe/Moscow",
        startDate: "2027-01-01",
      },
    })
    await env.tick("2026-12-31T21:30:00Z")
    await env.settled()
    await env.tick("2027-01-31T21:30:00Z")
    await env.settled()
    expect(await commandsInStream(env)).toHaveLength(2)
    expect((await spent("client-9")).sort()).toEqual([
      ["2027-01", "RUB", 10_000],
      ["2027-02", "RUB", 10_000],
    ])
  })
})
