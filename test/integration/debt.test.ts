/**
 * Debt autopayments end to end: on ticks the engine asks a fake utility over
 * NATS what an account owes, pays each bill up to the client's limit once,
 * holds the ones above it until the client confirms, and records every
 * answer, error and silence. Contract 3.6.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import type { FakeHub } from "../../fakes/FakeHub.ts"
import type { DebtAnswer, FakeProvider } from "../../fakes/FakeProvider.ts"
import { World } from "../../harness/World.ts"
import { commandsInStream, getSubscription } from "../support/scenarios.ts"

const utility = "city-water"
const contract = "WTR-000123"
const rub = (value: number) => ({ value, currency: "RUB" })

interface HistoryEntry {
  readonly type: string
  readonly outcome: string | null
  readonly reason: string | null
  readonly occurrence: string | null
  readonly paymentId: string | null
  readonly details?: Record<string, unknown>
}

interface Held {
  readonly paymentId: string
  readonly occurrence: string
  readonly reason: string
}

describe("debt autopayments", () => {
  let env: World
  let provider: FakeProvider
  let hub: FakeHub
  let answer: DebtAnswer
  beforeEach(async () => {
    env = await World.create()
    await env.startEngine()
    hub = await env.startHub()
    answer = { debts: [] }
    provider = await env.startProvider(utility, () => answer)
    await env.tick("2027-01-10T10:00:00Z")
  })
  afterEach(async () => {
    await env.dispose()
  })

  const createDebt = async (clientId = "client-1") =>
    (
      await env
        .channel()
        .ok<{ subscription: { subscriptionId: string; version: number; nextPollAt: string } }>(
          "subscription.create",
          {
            kind: "debt",
            template: { name: "Water", providerId: utility, account: contract, source: "card-tok-1" },
            limit: rub(500_000),
          },
          { clientId },
        )
    ).subscription

  const history = async (subscriptionId: string) =>
    (
      await env
        .channel()
        .ok<{ entries: ReadonlyArray<HistoryEntry> }>(
          "subscription.history",
          { subscriptionId, limit: 200 },
          { clientId: "client-1" },
        )
    ).entries

  const notifications = async (clientId = "client-1") =>
    (
      await env.messages(env.topology.streams.events, `${env.settings.naming.rpPrefix}.notify.${clientId}`)
    ).map((message) => message.json as { type: string; paymentId?: string; data: Record<string, unknown> })

  it("asks once per poll, pays a bill within the limit once, and holds one above it until confirmed", async () => {
    answer = {
      debts: [
        { billId: "bill-jan", amount: rub(300_000), dueDate: "2027-01-25", description: "January water" },
        { billId: "bill-big", amount: rub(700_000) },
      ],
    }
    const subscription = await createDebt()
    expect(subscription.nextPollAt).toBe("2027-01-10T10:00:00.000Z")
    await env.tick("2027-01-10T10:01:00Z")
    await env.settled()

    expect(provider.queries).toEqual([
      expect.objectContaining({
        providerId: utility,
        account: contract,
        subscriptionId: subscription.subscriptionId,
      }),
    ])
    expect(
      (await commandsInStream(env)).map((command) => [command.occurrence, command.amount.value]),
    ).toEqual([["bill-jan", 300_000]])
    const view = await getSubscription(env.channel(), "client-1", subscription.subscriptionId)
    const held = (view as unknown as { heldPayments: ReadonlyArray<Held> }).heldPayments
    expect(held).toEqual([expect.objectContaining({ occurrence: "bill-big", reason: "over_debt_limit" })])
    const overLimit = (await notifications()).filter((n) => n.type === "debt.over_limit")
    expect(overLimit).toEqual([expect.objectContaining({ paymentId: held[0]?.paymentId })])
    const events = await env.messages(
      env.topology.streams.events,
      `${env.settings.naming.rpPrefix}.event.debt.over_limit`,
    )
    expect(events).toHaveLength(1)

    // A day later the provider still reports both: neither is paid or announced again.
    await env.tick("2027-01-11T10:01:00Z")
    await env.settled()
    expect(provider.queries).toHaveLength(2)
    expect(await commandsInStream(env)).toHaveLength(1)
    expect((await notifications()).filter((n) => n.type === "debt.over_limit")).toHaveLength(1)
    const skipped = (await history(subscription.subscriptionId)).filter(
      (entry) => entry.outcome === "skipped",
    )
    expect(skipped).toEqual([expect.objectContaining({ occurrence: "bill-jan", reason: "already_paid" })])

    // The client confirms the big bill at an ATM: it is paid once, for exactly its amount.
    const paymentId = held[0]?.paymentId ?? ""
    const confirm = { subscriptionId: subscription.subscriptionId, paymentId }
    const atm = env.channel("atm")
    const first = await atm.request("payment.confirm", confirm, {
      clientId: "client-1",
      requestId: "confirm-1",
    })
    expect(first).toMatchObject({ status: "ok", result: { confirmedPaymentId: paymentId } })
    const repeat = await atm.request("payment.confirm", confirm, {
      clientId: "client-1",
      requestId: "confirm-1",
    })
    expect(repeat).toEqual(first)
    const again = await atm.request("payment.confirm", confirm, {
      clientId: "client-1",
      requestId: "confirm-2",
    })
    expect(again).toMatchObject({ status: "error", error: { code: "CONFLICT" } })
    const stranger = await atm.request("payment.confirm", confirm, { clientId: "client-2" })
    expect(stranger).toMatchObject({ status: "error", error: { code: "NOT_FOUND" } })
    await env.settled()

    const commands = await commandsInStream(env)
    expect(commands.map((command) => [command.occurrence, command.amount.value, command.paymentId])).toEqual([
      ["bill-jan", 300_000, expect.any(String)],
      ["bill-big", 700_000, paymentId],
    ])
    expect(hub.commands).toHaveLength(2)
    const confirmed = (await history(subscription.subscriptionId)).find(
      (entry) => entry.outcome === "confirmed",
    )
    expect(confirmed).toMatchObject({ paymentId, by: { channel: "atm" } })
  })

  it("never pays a bill twice, ever: not after cancel and re-create, not from two subscriptions on one account", async () => {
    answer = { debts: [{ billId: "bill-once", amount: rub(100_000) }] }
    const first = await createDebt("client-1")
    await env.tick("2027-01-10T10:01:00Z")
    await env.settled()
    await env
      .channel()
      .ok("subscription.cancel", { subscriptionId: first.subscriptionId }, { clientId: "client-1" })
    // The provider is slow to notice the payment and still reports the bill to the new subscriptions.
    const again = await createDebt("client-1")
    const spouse = await createDebt("client-2")
    await env.tick("2027-01-10T10:02:00Z")
    await env.settled()

    expect(
      (await commandsInStream(env)).map((command) => [command.occurrence, command.subscriptionId]),
    ).toEqual([["bill-once", first.subscriptionId]])
    expect(provider.queries).toHaveLength(3)
    const skipped = await env.db
      .selectFrom("decisions")
      .select(["subscription_id", "reason"])
      .where("outcome", "=", "skipped")
      .execute()
    expect(skipped.map((row) => [row.subscription_id, row.reason]).sort()).toEqual(
      [
        [again.subscriptionId, "already_paid"],
        [spouse.subscriptionId, "already_paid"],
      ].sort(),
    )
  })

  it("drops a hold once another subscription paid the bill, so confirming cannot pay it twice", async () => {
    answer = { debts: [{ billId: "bill-shared", amount: rub(700_000) }] }
    const small = await createDebt("client-1") // limit 5,000.00: holds the bill
    await env.tick("2027-01-10T10:01:00Z")
    await env.settled()
    const { subscription: big } = await env.channel().ok<{ subscription: { subscriptionId: string } }>(
      "subscription.create",
      {
        kind: "debt",
        template: { name: "Water", providerId: utility, account: contract, source: "card-tok-2" },
        limit: rub(1_000_000),
      },
      { clientId: "client-2" },
    )
    await env.tick("2027-01-10T10:02:00Z")
    await env.settled()
    expect((await commandsInStream(env)).map((command) => command.subscriptionId)).toEqual([
      big.subscriptionId,
    ])

    const held = (await getSubscription(env.channel(), "client-1", small.subscriptionId)) as unknown as {
      heldPayments: ReadonlyArray<{ paymentId: string }>
    }
    const paymentId = held.heldPayments[0]?.paymentId ?? ""
    const refused = await env
      .channel()
      .request(
        "payment.confirm",
        { subscriptionId: small.subscriptionId, paymentId },
        { clientId: "client-1" },
      )
    expect(refused).toMatchObject({ status: "error", error: { code: "CONFLICT" } })

    await env.tick("2027-01-11T10:01:00Z") // the next poll still lists the bill: the hold goes
    await env.settled()
    const after = (await getSubscription(env.channel(), "client-1", small.subscriptionId)) as unknown as {
      heldPayments: ReadonlyArray<unknown>
    }
    expect(after.heldPayments).toEqual([])
    expect(await history(small.subscriptionId)).toContainEqual(
      expect.objectContaining({ outcome: "hold_dropped", reason: "bill_paid_elsewhere", paymentId }),
    )
    expect(await commandsInStream(env)).toHaveLength(1)
  })

  it("records an error answer and pays nothing", async () => {
    answer = { error: { code: "ACCOUNT_BLOCKED", message: "contract suspended" } }
    const subscription = await createDebt()
    await env.tick("2027-01-10T10:01:00Z")
    await env.settled()
    expect(await commandsInStream(env)).toEqual([])
    const errors = (await history(subscription.subscriptionId)).filter(
      (entry) => entry.outcome === "provider_error",
    )
    expect(errors).toEqual([
      expect.objectContaining({
        reason: "ACCOUNT_BLOCKED",
        details: expect.objectContaining({
          error: { code: "ACCOUNT_BLOCKED", message: "contract suspended" },
        }),
      }),
    ])
  })

  it("records a query that got no answer, never piles up queries, and asks again at the next poll", async () => {
    answer = "silent"
    const subscription = await createDebt()
    await env.tick("2027-01-10T10:01:00Z")
    await env.tick("2027-01-10T10:30:00Z") // still waiting: no second query
    await env.tick("2027-01-10T11:02:00Z") // past the 1 h timeout: recorded, the next poll is tomorrow
    await env.settled()
    expect(provider.queries).toHaveLength(1)
    const entries = await history(subscription.subscriptionId)
    expect(entries.filter((entry) => entry.outcome === "query_unanswered")).toEqual([
      expect.objectContaining({
        details: expect.objectContaining({ queryId: provider.queries[0]?.queryId }),
      }),
    ])

    answer = { debts: [{ billId: "bill-1", amount: rub(10_000) }] }
    await env.tick("2027-01-11T10:01:00Z")
    await env.settled()
    expect(provider.queries).toHaveLength(2)
    expect((await commandsInStream(env)).map((command) => command.occurrence)).toEqual(["bill-1"])
  })

  it("uses only the answer to the open query, and pays a bill once when it is answered twice", async () => {
    answer = { debts: [{ billId: "bill-7", amount: rub(10_000) }] }
    const subscription = await createDebt()
    await env.tick("2027-01-10T10:01:00Z")
    await env.settled()
    const query = provider.queries[0]
    if (query === undefined) throw new Error("no query")
    // The same answer again under another message id: the query is no longer open.
    await provider.respond(query, { debts: [{ billId: "bill-7", amount: rub(10_000) }] }, "second-answer")
    await env.settled()
    expect((await commandsInStream(env)).map((command) => command.occurrence)).toEqual(["bill-7"])
    const ignored = (await history(subscription.subscriptionId)).filter(
      (entry) => entry.outcome === "ignored",
    )
    expect(ignored).toEqual([expect.objectContaining({ reason: "answer_to_another_query" })])
  })

  it("sends an answer to a query the engine never sent, and a malformed answer, to the DLQ", async () => {
    await createDebt()
    await provider.publishRaw(
      "debt.response",
      JSON.stringify({
        queryId: "q",
        providerId: utility,
        account: contract,
        debts: [{ billId: "b", amount: { value: -5, currency: "RUB" } }],
        error: { code: "X", message: "both at once" },
        at: "2027-01-10T10:00:00Z",
      }),
    )
    await provider.respond(
      { queryId: "5b0c7a8e-0000-4000-8000-000000000000", account: contract },
      { debts: [{ billId: "bill-x", amount: rub(1_000) }] },
    )
    await env.settled()
    const letters = await env.messages(
      env.topology.streams.deadLetters,
      `${env.settings.naming.rpPrefix}.dlq.>`,
    )
    expect(letters.map((letter) => (letter.json as { reason: string }).reason)).toEqual([
      "message does not match its schema",
      expect.stringContaining("unknown queryId"),
    ])
    const details =
      (letters[0]?.json as { details?: ReadonlyArray<{ path: string }> } | undefined)?.details ?? []
    expect(details.map((detail) => detail.path)).toContain("debts")
    expect(await commandsInStream(env)).toEqual([])
  })
})
