/**
 * A success the hub reports after it reported a failure for the same attempt,
 * driven over NATS with the fake hub: the planned retry is never sent, and a
 * retry already in flight is flagged as a suspected duplicate for the bank to
 * reverse, on the events stream and in the console. With a monthly cap, the
 * amount the failure gave back counts toward the client's month again.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import type { HubVerdict } from "../../fakes/FakeHub.ts"
import { World } from "../../harness/World.ts"
import { noLimitSettings } from "../../src/actors/Limits.ts"
import { resolveDuplicate } from "../../src/console/DuplicatePayments.ts"
import type { PaymentResult } from "../../src/streams/Messages.ts"
import { consoleUrl, createOperator, launchBrowser, signIn } from "../console/browser.ts"
import { commandsInStream, createScheduled, getSubscription } from "../support/scenarios.ts"

const retryableFailure: HubVerdict = { status: "failed", retryable: true, reason: "hub timeout" }

describe("a success reported after a failure", () => {
  let env: World
  beforeEach(async () => {
    env = await World.create({}, "latesuccess")
  })
  afterEach(async () => {
    await env.dispose()
  })

  const eventsOf = async (type: string) =>
    (await env.messages(env.topology.streams.events, `${env.settings.naming.rpPrefix}.event.${type}`)).map(
      (message) => message.json as { type: string; data: Record<string, unknown> },
    )

  const paymentRows = () =>
    env.db
      .selectFrom("payments")
      .select(["payment_id", "attempt", "status", "outcome", "duplicate_of", "duplicate_state"])
      .orderBy("attempt")
      .execute()

  const succeeded = (paymentId: string, at: string, hubReference: string): PaymentResult => ({
    paymentId,
    status: "succeeded",
    retryable: false,
    hubReference,
    at,
  })

  it("never sends the planned retry, and the subscription moves on", async () => {
    await env.startEngine()
    const hub = await env.startHub({ decide: () => retryableFailure })
    const mobile = env.channel()
    const subscription = await createScheduled(mobile, "client-1")

    await env.tick("2027-01-01T06:00:00Z")
    const [first] = await hub.waitForCommands(1)
    if (first === undefined) throw new Error("no command")
    await env.settled()
    expect((await paymentRows()).map((row) => row.outcome)).toEqual(["retry_scheduled"])

    // The same attempt, now reported as succeeded.
    await hub.publishResult(succeeded(first.paymentId, "2027-01-01T06:05:00Z", "hub-ref-late"))
    await env.consumerCaughtUp(env.topology.streams.hubPayments, env.topology.consumers.hubResults)
    await env.settled()
    // Past the retry's time (+1 h) and every later step of the retry schedule.
    for (const at of ["2027-01-01T07:00:00Z", "2027-01-01T13:00:00Z", "2027-01-02T13:00:00Z"]) {
      await env.tick(at)
      await env.settled()
    }

    expect((await commandsInStream(env)).map((c) => [c.occurrence, c.attempt])).toEqual([["2027-01-01", 1]])
    expect(hub.commands).toHaveLength(1)
    expect((await paymentRows()).map((row) => [row.attempt, row.status, row.outcome])).toEqual([
      [1, "succeeded", "paid"],
    ])
    const cancelled = await env.db
      .selectFrom("decisions")
      .select(["outcome", "reason", "occurrence"])
      .where("outcome", "in", ["late_success", "retry_cancelled"])
      .orderBy("id")
      .execute()
    expect(cancelled).toEqual([
      { outcome: "late_success", reason: null, occurrence: "2027-01-01" },
      { outcome: "retry_cancelled", reason: "earlier_attempt_succeeded", occurrence: "2027-01-01" },
    ])
    expect((await eventsOf("payment.succeeded")).map((event) => event.data.paymentId)).toEqual([
      first.paymentId,
    ])
    expect(await eventsOf("payment.duplicate_suspected")).toEqual([])
    expect(await getSubscription(mobile, "client-1", subscription.subscriptionId)).toMatchObject({
      status: "active",
      paymentsMade: 1,
      failedInARow: 0,
    })

    await env.tick("2027-02-01T06:00:00Z")
    await env.settled()
    expect((await commandsInStream(env)).map((c) => [c.occurrence, c.attempt])).toEqual([
      ["2027-01-01", 1],
      ["2027-02-01", 1],
    ])
  })

  it("debt: a bill paid late is never paid again, even after the flagged next attempt fails", async () => {
    await env.startEngine()
    const hub = await env.startHub({
      decide: (command) => (command.attempt === 1 ? retryableFailure : "silent"),
    })
    await env.startProvider("city-water", () => ({
      debts: [{ billId: "bill-1", amount: { value: 100_000, currency: "RUB" } }],
    }))
    await env.tick("2027-01-10T10:00:00Z")
    await env.channel().ok(
      "subscription.create",
      {
        kind: "debt",
        template: { name: "Water", providerId: "city-water", account: "WTR-1", source: "card-tok-1" },
        limit: { value: 500_000, currency: "RUB" },
      },
      { clientId: "client-1" },
    )
    await env.tick("2027-01-10T10:01:00Z")
    await env.settled()
    // The next poll still lists the bill after the retryable failure: attempt 2 goes out.
    await env.tick("2027-01-11T10:01:00Z")
    const [first, second] = await hub.waitForCommands(2)
    if (first === undefined || second === undefined) throw new Error("expected two commands")
    await env.settled()

    await hub.publishResult(succeeded(first.paymentId, "2027-01-11T10:05:00Z", "hub-ref-1"))
    await env.waitFor(
      "payment.duplicate_suspected",
      async () => (await eventsOf("payment.duplicate_suspected")).length > 0,
    )
    await hub.publishResult({
      paymentId: second.paymentId,
      status: "failed",
      retryable: true,
      reason: "hub timeout",
      at: "2027-01-11T10:10:00Z",
    })
    await env.waitFor("the flag to clear", async () =>
      (await paymentRows()).some((row) => row.duplicate_state === "cleared"),
    )
    // The provider has not caught up and lists the bill again: it is paid already.
    await env.tick("2027-01-12T10:01:00Z")
    await env.settled()

    expect((await commandsInStream(env)).map((c) => [c.occurrence, c.attempt])).toEqual([
      ["bill-1", 1],
      ["bill-1", 2],
    ])
    expect(await eventsOf("payment.duplicate_suspected")).toHaveLength(1)
    expect(
      (await paymentRows()).map((row) => [row.attempt, row.status, row.outcome, row.duplicate_state]),
    ).toEqual([
      [1, "succeeded", "paid", null],
      [2, "failed", "failed", "cleared"],
    ])
  })

  it("flags a retry already in flight once, names both payments when it succeeds too, and the console shows it", async () => {
    const engine = await env.startEngine()
    // The first attempt fails as retryable; the retry gets no answer until the test gives one.
    const hub = await env.startHub({
      decide: (command) => (command.attempt === 1 ? retryableFailure : "silent"),
    })
    const mobile = env.channel()
    const subscription = await createScheduled(mobile, "client-1")
    await env.tick("2027-01-01T06:00:00Z")
    await env.settled()
    await env.tick("2027-01-01T07:00:00Z")
    const [first, retry] = await hub.waitForCommands(2)
    if (first === undefined || retry === undefined) throw new Error("expected two commands")
    expect(retry.attempt).toBe(2)
    await env.settled()

    await hub.publishResult(succeeded(first.paymentId, "2027-01-01T07:05:00Z", "hub-ref-1"))
    await env.waitFor(
      "payment.duplicate_suspected",
      async () => (await eventsOf("payment.duplicate_suspected")).length > 0,
    )
    await hub.publishResult(succeeded(retry.paymentId, "2027-01-01T07:10:00Z", "hub-ref-2"))
    await env.waitFor("the retry to be confirmed as a duplicate", async () =>
      (await paymentRows()).some((row) => row.duplicate_state === "confirmed"),
    )
    await env.settled()

    const suspected = await eventsOf("payment.duplicate_suspected")
    expect(suspected).toHaveLength(1)
    expect(suspected[0]?.data).toMatchObject({
      paymentId: retry.paymentId,
      attempt: 2,
      occurrence: "2027-01-01",
      paidBy: first.paymentId,
      paidByAttempt: 1,
      secondStatus: "in_flight",
    })
    expect(
      (await paymentRows()).map((row) => [
        row.attempt,
        row.status,
        row.outcome,
        row.duplicate_of,
        row.duplicate_state,
      ]),
    ).toEqual([
      [1, "succeeded", "paid", null, null],
      [2, "succeeded", "duplicate", first.paymentId, "confirmed"],
    ])
    // Counted and announced once.
    expect((await eventsOf("payment.succeeded")).map((event) => event.data.paymentId)).toEqual([
      first.paymentId,
    ])
    expect(await getSubscription(mobile, "client-1", subscription.subscriptionId)).toMatchObject({
      paymentsMade: 1,
      failedInARow: 0,
    })

    // The console: the flag on the subscription names both payments; Today counts it until it is reversed.
    await createOperator(env, "olga", "operator")
    const browser = await launchBrowser()
    try {
      const base = await consoleUrl(engine)
      const page = await browser.newPage()
      await signIn(page, base, "olga")
      await page.goto(`${base}/subscriptions/${subscription.subscriptionId}`)
      const flag = page.locator(`[data-testid=duplicate][data-payment="${retry.paymentId}"]`)
      expect(await flag.getAttribute("data-state")).toBe("confirmed")
      const text = (await flag.textContent()) ?? ""
      expect(text).toContain(first.paymentId)
      expect(text).toContain(retry.paymentId)
      expect(text).toContain("2027-01-01")
      await page.goto(`${base}/today`)
      expect(await page.textContent("[data-testid=open-duplicates-count]")).toMatch(/\b1\b open/)

      await page.goto(`${base}/subscriptions/${subscription.subscriptionId}`)
      await page.fill(`#reason-duplicate-${retry.paymentId}`, "reversed in core banking, ticket REV-77")
      await page.click("form[data-action=resolve-duplicate] button")
      await page.waitForSelector("[role=status]:has-text('reversed')")
      expect(await flag.getAttribute("data-state")).toBe("resolved")
      await page.goto(`${base}/today`)
      expect(await page.textContent("[data-testid=open-duplicates-count]")).toMatch(/\b0\b open/)
    } finally {
      await browser.close()
    }
    const audit = await env.db.selectFrom("audit_log").select(["operator", "action", "reason"]).execute()
    expect(audit).toContainEqual({
      operator: "olga",
      action: "payment.duplicate_resolved",
      reason: "reversed in core banking, ticket REV-77",
    })
  })
})

describe("a success reported after a failure, under a monthly cap", () => {
  let env: World
  afterEach(async () => {
    await env.dispose()
  })

  const rub = (value: number) => ({ value, currency: "RUB" })

  const spent = async (clientId: string) =>
    (await env.db.selectFrom("client_spend").selectAll().where("client_id", "=", clientId).execute()).map(
      (row) => [row.month, row.currency, Number(row.spent)],
    )

  const statusOf = async (paymentId: string) =>
    (
      await env.db
        .selectFrom("payments")
        .select("status")
        .where("payment_id", "=", paymentId)
        .executeTakeFirstOrThrow()
    ).status

  /** Sends the hub's late success for `paymentId` and waits until the engine has recorded it. */
  const reportLateSuccess = async (
    hub: { publishResult: (result: PaymentResult) => Promise<void> },
    paymentId: string,
    at: string,
  ) => {
    await hub.publishResult({
      paymentId,
      status: "succeeded",
      retryable: false,
      hubReference: "hub-late",
      at,
    })
    await env.waitFor(
      "the late success to be recorded",
      async () => (await statusOf(paymentId)) === "succeeded",
    )
    await env.settled()
  }

  it("counts the amount again in its month, so a later payment over the cap is held", async () => {
    env = await World.create({ limits: { ...noLimitSettings, monthlyMax: { RUB: 15_000 } } }, "latespend")
    await env.startEngine()
    const hub = await env.startHub({
      decide: (command) =>
        command.account === "gym" ? retryableFailure : { status: "succeeded", retryable: false },
    })
    const mobile = env.channel()
    await createScheduled(mobile, "client-1", { amount: rub(10_000) }, "gym")
    await createScheduled(
      mobile,
      "client-1",
      {
        amount: rub(10_000),
        schedule: { every: "month", dayOfMonth: 15, time: "09:00", startDate: "2027-01-01" },
      },
      "phone",
    )
    await env.tick("2027-01-01T06:00:00Z")
    const [gym] = await hub.waitForCommands(1)
    if (gym === undefined) throw new Error("no command")
    await env.settled()
    // The failure gave the amount back.
    expect(await spent("client-1")).toEqual([["2027-01", "RUB", 0]])

    await reportLateSuccess(hub, gym.paymentId, "2027-01-01T06:05:00Z")
    expect(await spent("client-1")).toEqual([["2027-01", "RUB", 10_000]])

    // 10 000 counted + 10 000 would pass the cap of 15 000: the phone payment is held.
    await env.tick("2027-01-15T06:00:00Z")
    await env.settled()
    expect((await commandsInStream(env)).map((c) => c.account)).toEqual(["gym"])
    const held = await env.db
      .selectFrom("decisions")
      .select(["reason", "details"])
      .where("outcome", "=", "held")
      .execute()
    expect(held.map((row) => row.reason)).toEqual(["over_monthly_cap"])
    expect(held[0]?.details).toMatchObject({ limit: { spentThisMonth: rub(10_000) } })
    expect(await spent("client-1")).toEqual([["2027-01", "RUB", 10_000]])
  })

  it("counts both payments of a confirmed duplicate, past the cap: the money moved", async () => {
    env = await World.create({ limits: { ...noLimitSettings, monthlyMax: { RUB: 15_000 } } }, "latespend")
    await env.startEngine()
    const hub = await env.startHub({
      decide: (command) => (command.attempt === 1 ? retryableFailure : "silent"),
    })
    await createScheduled(env.channel(), "client-1", { amount: rub(10_000) })
    await env.tick("2027-01-01T06:00:00Z")
    await env.settled()
    await env.tick("2027-01-01T07:00:00Z")
    const [first, retry] = await hub.waitForCommands(2)
    if (first === undefined || retry === undefined) throw new Error("expected two commands")
    await env.settled()
    expect(await spent("client-1")).toEqual([["2027-01", "RUB", 10_000]])

    // The first attempt's success brings the month to 20 000, over the cap: counted, never refused.
    await reportLateSuccess(hub, first.paymentId, "2027-01-01T07:05:00Z")
    expect(await spent("client-1")).toEqual([["2027-01", "RUB", 20_000]])

    await hub.publishResult({
      paymentId: retry.paymentId,
      status: "succeeded",
      retryable: false,
      hubReference: "hub-2",
      at: "2027-01-01T07:10:00Z",
    })
    await env.waitFor("the retry to be confirmed as a duplicate", async () =>
      (await env.db.selectFrom("payments").select("duplicate_state").execute()).some(
        (row) => row.duplicate_state === "confirmed",
      ),
    )
    await env.settled()
    expect(await spent("client-1")).toEqual([["2027-01", "RUB", 20_000]])
    expect(
      (
        await env.db.selectFrom("payments").select(["attempt", "spend_month"]).orderBy("attempt").execute()
      ).map((row) => [row.attempt, row.spend_month]),
    ).toEqual([
      [1, "2027-01"],
      [2, "2027-01"],
    ])

    // The bank reverses the retry and an operator marks it so: its amount leaves the month.
    const subscriptionId = (await env.db.selectFrom("subscriptions").select("id").executeTakeFirstOrThrow())
      .id
    expect(
      await env.db.transaction().execute((trx) => resolveDuplicate(trx, subscriptionId, retry.paymentId)),
    ).toBe(true)
    expect(await spent("client-1")).toEqual([["2027-01", "RUB", 10_000]])
    // Marking it again changes nothing.
    expect(
      await env.db.transaction().execute((trx) => resolveDuplicate(trx, subscriptionId, retry.paymentId)),
    ).toBe(false)
    expect(await spent("client-1")).toEqual([["2027-01", "RUB", 10_000]])
  })
})
