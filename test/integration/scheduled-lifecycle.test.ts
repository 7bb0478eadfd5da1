/**
 * Managing a scheduled autopayment through the protocol, from any channel:
 * pause, resume, skip, update, cancel, preview and history; and the calendar
 * and catch-up rules as the engine applies them over NATS.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { World } from "../../harness/World.ts"
import { commandsInStream, createScheduled, getSubscription, monthlyOnFirst } from "../support/scenarios.ts"

describe("scheduled autopayment lifecycle", () => {
  let env: World
  beforeEach(async () => {
    env = await World.create()
    await env.startEngine()
    await env.startHub()
  })
  afterEach(async () => {
    await env.dispose()
  })

  it("is created in the mobile bank and managed at the ATM and the cashier desk", async () => {
    const client = { clientId: "client-1" }
    const subscription = await createScheduled(env.channel("mobile"), client.clientId)
    const atm = env.channel("atm")
    const cashier = env.channel("cashier")

    const listed = await atm.ok<{ items: Array<{ subscriptionId: string }> }>("subscription.list", {}, client)
    expect(listed.items.map((item) => item.subscriptionId)).toEqual([subscription.subscriptionId])
    await atm.ok("subscription.pause", { subscriptionId: subscription.subscriptionId }, client)
    await env.tick("2027-01-01T06:00:00Z")
    await cashier.ok("subscription.resume", { subscriptionId: subscription.subscriptionId }, client)
    await env.tick("2027-02-01T06:00:00Z")
    await env.settled()

    const commands = await commandsInStream(env)
    expect(commands.map((command) => command.occurrence)).toEqual(["2027-02-01"])
    const history = await env.channel("internet").ok<{
      entries: Array<{
        type: string
        outcome: string
        reason: string | null
        occurrence: string | null
        by?: { channel: string } | null
      }>
    }>("subscription.history", { subscriptionId: subscription.subscriptionId }, client)
    expect(
      history.entries.map((entry) => [entry.type, entry.outcome, entry.reason, entry.occurrence]),
    ).toEqual([
      ["payment", "paid", null, "2027-02-01"],
      ["decision", "resumed", null, null],
      ["decision", "skipped", "paused", "2027-01-01"],
      ["decision", "paused", "client_request", null],
      ["decision", "created", null, null],
    ])
    const byChannel = history.entries.flatMap((entry) =>
      entry.type === "decision" && entry.by ? [[entry.outcome, entry.by.channel]] : [],
    )
    expect(byChannel).toEqual([
      ["resumed", "cashier"],
      ["paused", "atm"],
      ["created", "mobile"],
    ])
  })

  it("pages history with a cursor", async () => {
    const client = { clientId: "client-1" }
    const subscription = await createScheduled(env.channel(), client.clientId)
    for (const at of ["2027-01-01T06:00:00Z", "2027-02-01T06:00:00Z", "2027-03-01T06:00:00Z"]) {
      await env.tick(at)
      await env.settled()
    }
    const seen: Array<string> = []
    let cursor: string | null = null
    do {
      const page: {
        entries: Array<{ at: string; type: string; outcome: string }>
        nextCursor: string | null
      } = await env
        .channel()
        .ok(
          "subscription.history",
          { subscriptionId: subscription.subscriptionId, limit: 2, ...(cursor === null ? {} : { cursor }) },
          client,
        )
      expect(page.entries.length).toBeLessThanOrEqual(2)
      seen.push(...page.entries.map((entry) => `${entry.at} ${entry.type} ${entry.outcome}`))
      cursor = page.nextCursor
    } while (cursor !== null)
    const all = await env
      .channel()
      .ok<{ entries: Array<{ at: string; type: string; outcome: string }> }>(
        "subscription.history",
        { subscriptionId: subscription.subscriptionId, limit: 200 },
        client,
      )
    expect(seen).toEqual(all.entries.map((entry) => `${entry.at} ${entry.type} ${entry.outcome}`))
    expect(seen.filter((line) => line.includes("payment paid"))).toHaveLength(3)
  })

  it("skips the next occurrence, then pays the one after", async () => {
    const client = { clientId: "client-1" }
    const subscription = await createScheduled(env.channel(), client.clientId)
    const skipped = await env
      .channel("terminal")
      .ok<{ skippedOccurrence: string }>(
        "subscription.skipNext",
        { subscriptionId: subscription.subscriptionId },
        client,
      )
    expect(skipped.skippedOccurrence).toBe("2027-01-01")
    const preview = await env
      .channel()
      .ok<{ occurrences: Array<{ date: string; willPay: boolean; reason: string | null }> }>(
        "subscription.preview",
        { subscriptionId: subscription.subscriptionId, count: 3 },
        client,
      )
    expect(preview.occurrences).toEqual([
      expect.objectContaining({ date: "2027-01-01", willPay: false, reason: "skip_next" }),
      expect.objectContaining({ date: "2027-02-01", willPay: true, reason: null }),
      expect.objectContaining({ date: "2027-03-01", willPay: true, reason: null }),
    ])
    await env.tick("2027-01-01T06:00:00Z")
    await env.tick("2027-02-01T06:00:00Z")
    await env.settled()
    expect((await commandsInStream(env)).map((command) => command.occurrence)).toEqual(["2027-02-01"])
  })

  it("applies an update from the next occurrence on, and refuses a stale one", async () => {
    const client = { clientId: "client-1" }
    const mobile = env.channel()
    const subscription = await createScheduled(mobile, client.clientId)
    await env.tick("2027-01-01T06:00:00Z")
    await env.settled()
    const current = await getSubscription(mobile, client.clientId, subscription.subscriptionId)
    // A payment does not make the client's view stale: version moves only with terms and status.
    expect(current.version).toBe(subscription.version)

    const updated = await mobile.ok<{ subscription: { version: number; amount: { value: number } } }>(
      "subscription.update",
      {
        subscriptionId: subscription.subscriptionId,
        expectedVersion: current.version,
        amount: { value: 99_900, currency: "RUB" },
        schedule: { ...monthlyOnFirst, dayOfMonth: 31, time: "18:00" },
      },
      client,
    )
    expect(updated.subscription.version).toBe(current.version + 1)
    const stale = await mobile.request(
      "subscription.update",
      {
        subscriptionId: subscription.subscriptionId,
        expectedVersion: current.version,
        amount: { value: 1, currency: "RUB" },
      },
      client,
    )
    expect(stale.status === "error" && stale.error.code).toBe("CONFLICT")

    const preview = await mobile.ok<{
      occurrences: Array<{ date: string; dueAt: string; amount: { value: number } }>
    }>("subscription.preview", { subscriptionId: subscription.subscriptionId, count: 3 }, client)
    // Day 31 in shorter months is their last day; 18:00 Moscow is 15:00Z.
    expect(
      preview.occurrences.map((occurrence) => [occurrence.date, occurrence.dueAt, occurrence.amount.value]),
    ).toEqual([
      ["2027-01-31", "2027-01-31T15:00:00.000Z", 99_900],
      ["2027-02-28", "2027-02-28T15:00:00.000Z", 99_900],
      ["2027-03-31", "2027-03-31T15:00:00.000Z", 99_900],
    ])
    await env.tick("2027-01-31T15:00:00Z")
    await env.settled()
    const commands = await commandsInStream(env)
    expect(
      commands.map((command) => [
        command.occurrence,
        (command as unknown as { amount: { value: number } }).amount.value,
      ]),
    ).toEqual([
      ["2027-01-01", 150_000],
      ["2027-01-31", 99_900],
    ])
  })

  it("sends nothing after a cancel, but still records a result already in flight", async () => {
    await env.hubs[0]?.stop()
    const hub = await env.startHub({ consumerName: "slow-hub", decide: () => "silent" })
    const client = { clientId: "client-1" }
    const subscription = await createScheduled(env.channel(), client.clientId)
    await env.tick("2027-01-01T06:00:00Z")
    const [command] = await hub.waitForCommands(1)
    if (command === undefined) throw new Error("no command")
    const cancelled = await env
      .channel("atm")
      .ok<{ subscription: { status: string; nextOccurrence: unknown } }>(
        "subscription.cancel",
        { subscriptionId: subscription.subscriptionId },
        client,
      )
    expect(cancelled.subscription).toMatchObject({ status: "cancelled", nextOccurrence: null })
    await hub.publishResult(
      {
        paymentId: command.paymentId,
        status: "succeeded",
        retryable: false,
        hubReference: "h-1",
        at: "2027-01-01T06:00:05Z",
      },
      `result:${command.paymentId}`,
    )
    await env.settled()
    await env.tick("2027-02-01T06:00:00Z")
    await env.settled()
    const payment = await env.db
      .selectFrom("payments")
      .select(["status", "hub_reference"])
      .executeTakeFirstOrThrow()
    expect(payment).toEqual({ status: "succeeded", hub_reference: "h-1" })
    expect(await commandsInStream(env)).toHaveLength(1)
  })

  it("after downtime pays only the most recent missed occurrence, and only within the catch-up window", async () => {
    const client = { clientId: "client-1" }
    const daily = await createScheduled(env.channel(), client.clientId, {
      schedule: { every: "day", time: "09:00", timezone: "Europe/Moscow", startDate: "2027-01-01" },
    })
    const monthly = await createScheduled(env.channel(), "client-2")
    await env.tick("2026-12-31T00:00:00Z")
    // The engine was down from 2026-12-31 until 2027-01-04 12:00Z.
    await env.tick("2027-01-04T12:00:00Z")
    await env.settled()
    const commands = await commandsInStream(env)
    expect(commands.map((command) => [command.subscriptionId, command.occurrence])).toEqual([
      [daily.subscriptionId, "2027-01-04"],
    ])
    const skipped = await env.db
      .selectFrom("decisions")
      .select(["subscription_id", "occurrence", "reason"])
      .where("outcome", "=", "skipped")
      .execute()
    const describe = (row: { subscription_id: string; occurrence: string | null; reason: string | null }) =>
      `${row.subscription_id === daily.subscriptionId ? "daily" : "monthly"} ${row.occurrence} ${row.reason}`
    expect(skipped.map(describe).sort()).toEqual([
      "daily 2027-01-01 missed",
      "daily 2027-01-02 missed",
      "daily 2027-01-03 missed",
      // More than 24 hours late: even the most recent one is not paid.
      "monthly 2027-01-01 missed",
    ])
    expect(monthly.subscriptionId).not.toBe(daily.subscriptionId)
  })

  it("completes after maxPayments", async () => {
    const client = { clientId: "client-1" }
    const mobile = env.channel()
    const subscription = await createScheduled(mobile, client.clientId, {
      schedule: { ...monthlyOnFirst, maxPayments: 2 },
    })
    for (const at of ["2027-01-01T06:00:00Z", "2027-02-01T06:00:00Z", "2027-03-01T06:00:00Z"]) {
      await env.tick(at)
      await env.settled()
    }
    const after = await getSubscription(mobile, client.clientId, subscription.subscriptionId)
    expect(after).toMatchObject({
      status: "completed",
      statusReason: "max_payments_reached",
      paymentsMade: 2,
      nextOccurrence: null,
    })
    expect((await commandsInStream(env)).map((command) => command.occurrence)).toEqual([
      "2027-01-01",
      "2027-02-01",
    ])
  })
})
