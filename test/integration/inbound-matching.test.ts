/**
 * An inbound message must match what it answers. Providers and the hub are
 * played by the fakes, misbehaving over NATS as a real party could: an answer
 * from another provider carrying a query's id, a balance in another currency,
 * a result repeating another amount. Each goes to RP_DLQ with the fields that
 * disagree, and nothing moves; the right message is still applied after it.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { World } from "../../harness/World.ts"
import type { DeadLetter } from "../../src/streams/Messages.ts"
import { commandsInStream, createScheduled } from "../support/scenarios.ts"

const rub = (value: number) => ({ value, currency: "RUB" })
const usd = (value: number) => ({ value, currency: "USD" })

describe("inbound messages must match what they answer", () => {
  let env: World
  beforeEach(async () => {
    env = await World.create()
    await env.startEngine()
    await env.tick("2027-01-10T10:00:00Z")
  })
  afterEach(async () => {
    await env.dispose()
  })

  const deadLetters = async () =>
    (await env.messages(env.topology.streams.deadLetters, `${env.settings.naming.rpPrefix}.dlq.>`)).map(
      (message) => message.json as DeadLetter,
    )

  /** Waits for the `count`th dead letter and returns them all. */
  const deadLettered = async (count: number) => {
    await env.waitFor(`${count} dead letter(s)`, async () => (await deadLetters()).length >= count)
    return deadLetters()
  }

  const decisionsOf = async (subscriptionId: string) =>
    (
      await env.db
        .selectFrom("decisions")
        .select(["outcome", "reason"])
        .where("subscription_id", "=", subscriptionId)
        .orderBy("id")
        .execute()
    ).map((row) => [row.outcome, row.reason])

  const createDebt = async (providerId: string, account: string) =>
    (
      await env.channel().ok<{ subscription: { subscriptionId: string } }>(
        "subscription.create",
        {
          kind: "debt",
          template: { name: "Internet", providerId, account, source: "card-tok-1" },
          limit: rub(500_000),
        },
        { clientId: "client-1" },
      )
    ).subscription

  it("an answer from another provider about another account, carrying a query's id, pays nothing; the right answer is paid once", async () => {
    const hub = await env.startHub()
    const isp = await env.startProvider("isp-1", () => "silent")
    const util = await env.startProvider("util-1")
    const { subscriptionId } = await createDebt("isp-1", "acct-fast")
    await env.tick("2027-01-10T10:01:00Z")
    const [query] = await isp.waitForQueries(1)
    if (query === undefined) throw new Error("no debt query")

    // util-1 answers, on its own subject and in its own name, a query it was never sent.
    const bills = { debts: [{ billId: "bill-dec", amount: rub(120_000) }] }
    await util.respond({ queryId: query.queryId, account: "acct-other" }, bills, `util-1:${query.queryId}`)
    const [letter] = await deadLettered(1)
    expect(letter).toMatchObject({
      stream: env.topology.streams.providers,
      consumer: env.topology.consumers.debtResponses,
      subject: `${env.settings.naming.providerPrefix}.util-1.debt.response`,
    })
    expect(letter?.reason).toBe(
      `debt answer does not match the debt query it answers (queryId ${query.queryId}): ` +
        `providerId is "util-1", expected "isp-1"; account is "acct-other", expected "acct-fast"`,
    )
    await env.settled()
    // Nothing moved: no command, no payment, no decision about it, and the query is still open.
    expect(await commandsInStream(env)).toEqual([])
    expect(await env.db.selectFrom("payments").selectAll().execute()).toEqual([])
    expect(await decisionsOf(subscriptionId)).toEqual([
      ["created", null],
      ["queried", null],
    ])
    const row = await env.db
      .selectFrom("subscriptions")
      .select("state")
      .where("id", "=", subscriptionId)
      .executeTakeFirstOrThrow()
    expect((row.state as { query: { queryId: string } | null }).query?.queryId).toBe(query.queryId)

    // The right answer, from isp-1 about acct-fast, is still applied: its bill paid once.
    await isp.respond(query, bills)
    await hub.waitForCommands(1)
    await env.settled()
    expect(
      (await commandsInStream(env)).map((c) => [c.providerId, c.account, c.occurrence, c.amount]),
    ).toEqual([["isp-1", "acct-fast", "bill-dec", rub(120_000)]])
    expect(hub.commands).toHaveLength(1)
    expect(await deadLetters()).toHaveLength(1)
  })

  it("an answer from the right provider naming another account, or with a bill in another currency, pays nothing", async () => {
    const hub = await env.startHub()
    const isp = await env.startProvider("isp-1", () => ({
      account: "acct-slow",
      debts: [{ billId: "bill-1", amount: rub(1_000) }],
    }))
    await createDebt("isp-1", "acct-fast")
    await env.tick("2027-01-10T10:01:00Z")
    const [first] = await deadLettered(1)
    expect(first?.reason).toContain(`account is "acct-slow", expected "acct-fast"`)

    // The next poll's answer names the right account but adds a bill in dollars: refused whole.
    isp.setAnswer(() => ({
      debts: [
        { billId: "bill-1", amount: rub(1_000) },
        { billId: "bill-usd", amount: usd(1_000) },
      ],
    }))
    await env.tick("2027-01-11T10:02:00Z")
    const [, second] = await deadLettered(2)
    expect(second?.reason).toContain(`bill "bill-usd" amount.currency is "USD", expected "RUB"`)
    await env.settled()
    expect(await commandsInStream(env)).toEqual([])
    expect(hub.commands).toEqual([])
  })

  it("a balance in another currency than the threshold's is dead-lettered and recorded nowhere", async () => {
    const hub = await env.startHub()
    const operator = await env.startProvider("mobile-op")
    const created = await env.channel().ok<{ subscription: { subscriptionId: string } }>(
      "subscription.create",
      {
        kind: "threshold",
        template: { name: "Phone", providerId: "mobile-op", account: "+79001234567", source: "card-tok-1" },
        amount: rub(50_000),
        threshold: rub(10_000),
      },
      { clientId: "client-1" },
    )
    const { subscriptionId } = created.subscription
    const before = await decisionsOf(subscriptionId)

    await operator.reportBalance({
      eventId: "ev-usd",
      account: "+79001234567",
      balance: usd(5),
      at: "2027-01-10T10:00:30Z",
    })
    const [letter] = await deadLettered(1)
    expect(letter?.subject).toBe(`${env.settings.naming.providerPrefix}.mobile-op.threshold.event`)
    expect(letter?.reason).toBe(
      `balance reading does not match the subscription watching the account (${subscriptionId}): ` +
        `balance.currency is "USD", expected "RUB"`,
    )
    await env.settled()
    expect(await commandsInStream(env)).toEqual([])
    expect(await decisionsOf(subscriptionId)).toEqual(before)
    const row = await env.db
      .selectFrom("subscriptions")
      .select("state")
      .where("id", "=", subscriptionId)
      .executeTakeFirstOrThrow()
    expect(row.state).toMatchObject({ lastBalance: null, newestEventAt: null, recentEventIds: [] })

    // A low balance in roubles is then paid as usual.
    await operator.reportBalance({
      eventId: "ev-rub",
      account: "+79001234567",
      balance: rub(5),
      at: "2027-01-10T10:00:40Z",
    })
    await hub.waitForCommands(1)
    await env.settled()
    expect((await commandsInStream(env)).map((c) => [c.occurrence, c.amount])).toEqual([
      ["ev-rub", rub(50_000)],
    ])
  })

  it("a hub result repeating another amount or currency is dead-lettered; the payment stays open", async () => {
    const hub = await env.startHub({
      echoCommand: true,
      decide: () => ({ status: "succeeded", retryable: false, misreport: { amount: usd(1_500) } }),
    })
    const { subscriptionId } = await createScheduled(env.channel(), "client-1", {
      schedule: { every: "month", dayOfMonth: 1, time: "09:00", startDate: "2027-02-01" },
    })
    await env.tick("2027-02-01T06:00:00Z")
    const [command] = await hub.waitForCommands(1)
    if (command === undefined) throw new Error("no payment command")
    const [letter] = await deadLettered(1)
    expect(letter).toMatchObject({
      stream: env.topology.streams.hubPayments,
      consumer: env.topology.consumers.hubResults,
      subject: env.topology.subjects.hubResult,
    })
    expect(letter?.reason).toBe(
      `result does not match the payment it names (${command.paymentId}): ` +
        `amount.value is "1500", expected "150000"; amount.currency is "USD", expected "RUB"`,
    )
    await env.settled()
    const payments = await env.db.selectFrom("payments").select(["status", "outcome"]).execute()
    expect(payments).toEqual([{ status: "pending", outcome: null }])
    expect(await decisionsOf(subscriptionId)).toEqual([["created", null]])
    const succeeded = await env.messages(
      env.topology.streams.events,
      `${env.settings.naming.rpPrefix}.event.payment.succeeded`,
    )
    expect(succeeded).toEqual([])

    // The hub's corrected result, repeating the command as sent, settles the payment.
    await hub.publishResult(
      {
        paymentId: command.paymentId,
        status: "succeeded",
        retryable: false,
        subscriptionId: command.subscriptionId,
        occurrence: command.occurrence,
        attempt: command.attempt,
        amount: command.amount,
        at: "2027-02-01T06:00:05Z",
      },
      `result:${command.paymentId}:corrected`,
    )
    await env.waitFor("the corrected result to be applied", async () => {
      const [payment] = await env.db.selectFrom("payments").select("status").execute()
      return payment?.status === "succeeded"
    })
    expect(await deadLetters()).toHaveLength(1)
  })
  it("a reading in one watcher's currency tops that watcher up; the other, in another currency, records nothing", async () => {
    const hub = await env.startHub()
    const operator = await env.startProvider("mobile-op")
    const create = async (clientId: string, currency: string) =>
      (
        await env.channel().ok<{ subscription: { subscriptionId: string } }>(
          "subscription.create",
          {
            kind: "threshold",
            template: {
              name: "Phone",
              providerId: "mobile-op",
              account: "+79001234567",
              source: "card-tok-1",
            },
            amount: { value: 50_000, currency },
            threshold: { value: 10_000, currency },
          },
          { clientId },
        )
      ).subscription.subscriptionId
    const roubles = await create("client-1", "RUB")
    const dollars = await create("client-2", "USD")
    const before = await decisionsOf(roubles)

    await operator.reportBalance({
      eventId: "ev-usd",
      account: "+79001234567",
      balance: usd(5),
      at: "2027-01-10T10:00:30Z",
    })
    await hub.waitForCommands(1)
    const [letter] = await deadLettered(1)
    expect(letter?.reason).toBe(
      `balance reading does not match the subscription watching the account (${roubles}): ` +
        `balance.currency is "USD", expected "RUB"`,
    )
    await env.settled()
    expect((await commandsInStream(env)).map((c) => [c.subscriptionId, c.occurrence, c.amount])).toEqual([
      [dollars, "ev-usd", usd(50_000)],
    ])
    expect(await decisionsOf(roubles)).toEqual(before)
  })

  it("a status answer repeating another amount counts as no answer; the right one settles the payment", async () => {
    const hub = await env.startHub({ echoCommand: true, decide: () => "silent" })
    await createScheduled(env.channel(), "client-1", {
      schedule: { every: "month", dayOfMonth: 1, time: "09:00", startDate: "2027-02-01" },
    })
    await env.tick("2027-02-01T06:00:00Z")
    const [command] = await hub.waitForCommands(1)
    if (command === undefined) throw new Error("no payment command")
    await env.settled()

    hub.setVerdict(command.paymentId, {
      status: "succeeded",
      retryable: false,
      misreport: { amount: rub(1) },
    })
    await env.tick("2027-02-01T06:15:00Z") // result timeout: the hub is asked and answers wrongly
    const payment = () =>
      env.db.selectFrom("payments").select(["status", "outcome"]).executeTakeFirstOrThrow()
    expect(await payment()).toEqual({ status: "unknown", outcome: "awaiting_status" })
    const overdue = await env.db
      .selectFrom("decisions")
      .select("details")
      .where("outcome", "=", "result_overdue")
      .executeTakeFirstOrThrow()
    expect(overdue.details).toMatchObject({ hubAnswer: "unreachable" })

    hub.setVerdict(command.paymentId, { status: "succeeded", retryable: false })
    await env.tick("2027-02-01T06:16:00Z") // asked again: the answer now repeats the command as sent
    expect(await payment()).toEqual({ status: "succeeded", outcome: "paid" })
    expect(hub.commands).toHaveLength(1)
  })
})
