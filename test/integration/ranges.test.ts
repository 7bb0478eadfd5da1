/**
 * Durations and dates in range (issue 12, defect 4): a cooldown of 14.8 million weeks or a poll
 * every millisecond is refused with the field's path and nothing written; and subscriptions an
 * older version stored with such values (rows put straight into the database here, as that
 * version left them) stay readable, pausable, resumable and cancellable, over the protocol and
 * in the console.
 */
import { randomUUID } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Reply } from "../../fakes/FakeChannel.ts"
import type { FakeProvider } from "../../fakes/FakeProvider.ts"
import { type RunningEngine, World } from "../../harness/World.ts"
import { addOperator, openSession } from "../../src/store/OperatorStore.ts"
import { consoleUrl } from "../console/browser.ts"
import { commandsInStream, rowCounts } from "../support/scenarios.ts"

const rub = (value: number) => ({ value, currency: "RUB" })
const NOW = "2027-01-10T10:00:00Z"
const NOW_MS = Date.parse(NOW)
const LAST_INSTANT_TEXT = "9999-12-31T23:59:59.999Z"
// What an older version computed for a P14800000W cooldown after a top-up at NOW: past any Date.
const OVERSIZED_WEEKS = 14_800_000
const OVERSIZED_MS = OVERSIZED_WEEKS * 7 * 86_400_000

describe("durations and dates out of range", () => {
  let env: World
  let engine: RunningEngine
  let operator: FakeProvider
  let utility: FakeProvider
  beforeAll(async () => {
    env = await World.create({}, "ranges")
    engine = await env.startEngine()
    await env.startHub()
    operator = await env.startProvider("mobile-op")
    utility = await env.startProvider("city-water")
    await env.tick(NOW)
  })
  afterAll(async () => {
    await env?.dispose()
  })

  const footprint = () =>
    rowCounts(env.db, ["templates", "subscriptions", "requests", "decisions", "outbox", "payments"])

  const request = (operation: string, body: unknown, clientId = "client-ranges"): Promise<Reply> =>
    env.channel().request(operation, body, { clientId })

  const expectRefused = async (label: string, operation: string, body: unknown, path: string) => {
    const reply = await request(operation, body)
    expect([label, reply.status]).toEqual([label, "error"])
    if (reply.status !== "error") return
    expect([label, reply.error.code]).toEqual([label, "VALIDATION_FAILED"])
    expect([label, reply.error.details.map((detail) => detail.path)]).toEqual([
      label,
      expect.arrayContaining([path]),
    ])
  }

  const phoneTemplate = { name: "Phone", providerId: "mobile-op", account: "+79001112233", source: "card-1" }
  const waterTemplate = { name: "Water", providerId: "city-water", account: "WTR-1", source: "card-1" }
  const threshold = (cooldown: string) => ({
    kind: "threshold",
    template: phoneTemplate,
    amount: rub(50_000),
    threshold: rub(10_000),
    cooldown,
  })
  const debt = (pollEvery: string) => ({
    kind: "debt",
    template: waterTemplate,
    limit: rub(500_000),
    pollEvery,
  })
  const scheduled = (schedule: Record<string, unknown>) => ({
    kind: "scheduled",
    template: { name: "Internet", providerId: "isp-1", account: "INET-1", source: "card-1" },
    amount: rub(150_000),
    schedule: { every: "month", time: "09:00", startDate: "2027-02-01", ...schedule },
  })

  it("refuses a cooldown of P14800000W and a poll every PT0.001S with the field's path, writing nothing", async () => {
    const before = await footprint()
    await expectRefused(
      "cooldown P14800000W",
      "subscription.create",
      threshold("P14800000W"),
      "body.cooldown",
    )
    await expectRefused("pollEvery PT0.001S", "subscription.create", debt("PT0.001S"), "body.pollEvery")
    expect(await footprint()).toEqual(before)
  })

  it("refuses each duration, interval, count and date just outside its range, and takes the ends of it", async () => {
    const before = await footprint()
    const someId = randomUUID()
    const refusals: Array<[string, string, unknown, string]> = [
      ["cooldown PT59S", "subscription.create", threshold("PT59S"), "body.cooldown"],
      ["cooldown P367D", "subscription.create", threshold("P367D"), "body.cooldown"],
      ["pollEvery PT59M", "subscription.create", debt("PT59M"), "body.pollEvery"],
      ["pollEvery P93D", "subscription.create", debt("P93D"), "body.pollEvery"],
      [
        "update cooldown",
        "subscription.update",
        { subscriptionId: someId, expectedVersion: 1, cooldown: "P14800000W" },
        "body.cooldown",
      ],
      [
        "update pollEvery",
        "subscription.update",
        { subscriptionId: someId, expectedVersion: 1, pollEvery: "PT0.001S" },
        "body.pollEvery",
      ],
      ["interval 61 months", "subscription.create", scheduled({ interval: 61 }), "body.schedule.interval"],
      [
        "interval 6 years",
        "subscription.create",
        scheduled({ every: "year", interval: 6 }),
        "body.schedule.interval",
      ],
      [
        "interval 1827 days",
        "subscription.create",
        scheduled({ every: "day", interval: 1827 }),
        "body.schedule.interval",
      ],
      [
        "maxPayments 10001",
        "subscription.create",
        scheduled({ maxPayments: 10_001 }),
        "body.schedule.maxPayments",
      ],
      [
        "startDate 1999",
        "subscription.create",
        scheduled({ startDate: "1999-12-31" }),
        "body.schedule.startDate",
      ],
      ["endDate 1999", "subscription.create", scheduled({ endDate: "1999-12-31" }), "body.schedule.endDate"],
      // Five years after the engine's date (2027-01-10) is 2032-01-10; fifty is 2077-01-10.
      [
        "startDate too far",
        "subscription.create",
        scheduled({ startDate: "2032-01-11" }),
        "body.schedule.startDate",
      ],
      [
        "endDate too far",
        "subscription.create",
        scheduled({ endDate: "2077-01-11" }),
        "body.schedule.endDate",
      ],
      [
        "update startDate too far",
        "subscription.update",
        {
          subscriptionId: someId,
          expectedVersion: 1,
          schedule: { every: "month", time: "09:00", startDate: "2032-01-11" },
        },
        "body.schedule.startDate",
      ],
      [
        "accept startDate too far",
        "reminder.accept",
        { reminderId: someId, schedule: { every: "month", time: "09:00", startDate: "2032-01-11" } },
        "body.schedule.startDate",
      ],
    ]
    for (const [label, operation, body, path] of refusals) await expectRefused(label, operation, body, path)
    expect(await footprint()).toEqual(before)

    const accepted: Array<[string, unknown]> = [
      ["cooldown PT1M", threshold("PT1M")],
      ["cooldown P366D", threshold("P366D")],
      ["pollEvery PT1H", debt("PT1H")],
      ["pollEvery P92D", debt("P92D")],
      ["interval 60 months, 10000 payments", scheduled({ interval: 60, maxPayments: 10_000 })],
      ["interval 1826 days", scheduled({ every: "day", interval: 1826 })],
      ["start five years on, end fifty", scheduled({ startDate: "2032-01-10", endDate: "2077-01-10" })],
      ["start 2000-01-01", scheduled({ startDate: "2000-01-01" })],
    ]
    for (const [label, body] of accepted) {
      const reply = await request("subscription.create", body)
      expect([label, reply.status]).toEqual([label, "ok"])
    }
  })

  /** A row as an older version stored it, written straight into the database. */
  const insertRow = async (row: {
    readonly kind: string
    readonly providerId: string
    readonly account: string
    readonly terms: unknown
    readonly state: unknown
    readonly nextDueAt: number | null
    readonly hidden?: boolean
  }) => {
    const id = randomUUID()
    await env.db
      .insertInto("subscriptions")
      .values({
        id,
        client_id: "old-client",
        kind: row.kind,
        status: "active",
        status_reason: null,
        hidden: row.hidden ?? false,
        version: 1,
        revision: 1,
        template_id: null,
        provider_id: row.providerId,
        account: row.account,
        source: "card-old",
        currency: "RUB",
        terms: JSON.stringify(row.terms),
        state: JSON.stringify(row.state),
        next_due_at: row.nextDueAt === null ? null : new Date(row.nextDueAt),
        created_channel: "mobile",
        created_terminal: null,
      })
      .execute()
    return id
  }

  it("keeps subscriptions stored with oversized durations readable, pausable and cancellable", async () => {
    const thresholdTerms = { amount: rub(50_000), threshold: rub(10_000), cooldown: `P${OVERSIZED_WEEKS}W` }
    // Topped up once under the old version: its cooldown runs until after the last JavaScript date.
    const toppedUp = await insertRow({
      kind: "threshold",
      providerId: "mobile-op",
      account: "+79000000001",
      terms: thresholdTerms,
      state: {
        newestEventAt: NOW_MS - 60_000,
        recentEventIds: ["old-ev-1"],
        lastBalance: rub(5_000),
        open: [],
        cooldownUntil: NOW_MS - 30_000 + OVERSIZED_MS,
        paid: 1,
        held: [],
      },
      nextDueAt: null,
    })
    // Not topped up yet: its first top-up happens under this version.
    const waiting = await insertRow({
      kind: "threshold",
      providerId: "mobile-op",
      account: "+79000000002",
      terms: thresholdTerms,
      state: {
        newestEventAt: null,
        recentEventIds: [],
        lastBalance: null,
        open: [],
        cooldownUntil: null,
        paid: 0,
        held: [],
      },
      nextDueAt: null,
    })
    // A poll every 14.8 million weeks, due now: the old version could never commit its next poll.
    const debtId = await insertRow({
      kind: "debt",
      providerId: "city-water",
      account: "WTR-OLD",
      terms: { limit: rub(500_000), pollEvery: `P${OVERSIZED_WEEKS}W` },
      state: { nextPollAt: NOW_MS, query: null, open: [], held: [], paid: 0, unansweredQueries: 0 },
      nextDueAt: NOW_MS,
    })
    // A reminder whose offer lies past year 275 000 (within what a JavaScript date holds).
    const reminderAt = 8.6e15
    const reminder = await insertRow({
      kind: "reminder",
      providerId: "city-water",
      account: "WTR-OLD",
      hidden: true,
      terms: { remindAfter: "P14000000W" },
      state: {
        lastPayment: {
          paymentId: "one-off-old",
          amount: rub(1_000),
          source: "card-old",
          channel: "mobile",
          at: NOW_MS,
        },
        offers: 0,
        nextOfferAt: reminderAt,
        open: [],
        held: [],
      },
      nextDueAt: reminderAt,
    })
    // Every 1000 years, as the old interval range allowed.
    const scheduledId = await insertRow({
      kind: "scheduled",
      providerId: "isp-1",
      account: "INET-OLD",
      terms: {
        amount: rub(150_000),
        schedule: {
          every: "year",
          interval: 1000,
          time: "09:00",
          timezone: "Europe/Moscow",
          startDate: "2027-06-01",
          maxPayments: 100_000,
        },
      },
      state: {
        cursor: { index: 0, date: "2027-06-01", dueAt: Date.parse("2027-06-01T06:00:00Z") },
        noticeFor: null,
        skip: [],
        open: [],
        retry: null,
        failedInARow: 0,
        paid: 0,
        lastSettled: null,
        held: [],
      },
      nextDueAt: Date.parse("2027-05-31T06:00:00Z"),
    })

    // The first top-up under this version, and the debt's poll: both commit.
    await operator.reportBalance({
      eventId: "new-ev-1",
      account: "+79000000002",
      balance: rub(1_000),
      at: "2027-01-10T10:05:00Z",
    })
    await env.tick("2027-01-10T10:10:00Z")
    await env.settled()
    expect(
      (await commandsInStream(env)).filter((command) => command.subscriptionId === waiting),
    ).toHaveLength(1)
    expect(utility.queries.filter((query) => query.subscriptionId === debtId)).toHaveLength(1)

    const ok = async (operation: string, body: Record<string, unknown>) => {
      const reply = await request(operation, body, "old-client")
      expect([operation, body, reply.status === "ok" ? "ok" : reply.error]).toEqual([operation, body, "ok"])
      return reply.status === "ok" ? (reply.result as Record<string, unknown>) : {}
    }
    const view = async (subscriptionId: string) =>
      (await ok("subscription.get", { subscriptionId })).subscription as Record<string, unknown>

    expect(await view(toppedUp)).toMatchObject({ cooldownUntil: LAST_INSTANT_TEXT, paymentsMade: 1 })
    expect(await view(waiting)).toMatchObject({ cooldownUntil: LAST_INSTANT_TEXT, paymentsMade: 1 })
    expect(await view(debtId)).toMatchObject({ nextPollAt: LAST_INSTANT_TEXT })
    expect(await view(reminder)).toMatchObject({ nextOfferAt: LAST_INSTANT_TEXT })
    expect(await view(scheduledId)).toMatchObject({
      nextOccurrence: { date: "2027-06-01", dueAt: "2027-06-01T06:00:00.000Z" },
    })
    const listed = await ok("subscription.list", { includeHidden: true })
    expect((listed.items as ReadonlyArray<unknown>).length).toBe(5)
    const preview = await ok("subscription.preview", { subscriptionId: scheduledId, count: 10 })
    expect((preview.occurrences as ReadonlyArray<{ date: string }>).map((o) => o.date)).toEqual(
      ["2027", "3027", "4027", "5027", "6027", "7027", "8027", "9027"].map((year) => `${year}-06-01`),
    )

    // The console shows the client and each subscription.
    await addOperator(env.db, { login: "olga", role: "operator", passwordHash: "unused" })
    const session = await openSession(env.db, "olga")
    if (session === undefined) throw new Error("no session for a fresh operator")
    const { token } = session
    const base = await consoleUrl(engine)
    const page = (path: string) =>
      fetch(`${base}${path}`, { headers: { cookie: `rp_console_session=${token}` } })
    expect((await page("/clients?clientId=old-client&hidden=1")).status).toBe(200)
    for (const id of [toppedUp, waiting, debtId, reminder, scheduledId]) {
      const response = await page(`/subscriptions/${id}`)
      expect([id, response.status]).toEqual([id, 200])
    }

    for (const subscriptionId of [toppedUp, waiting, debtId, scheduledId]) {
      await ok("subscription.history", { subscriptionId })
      await ok("subscription.preview", { subscriptionId })
      expect((await ok("subscription.pause", { subscriptionId })).subscription).toMatchObject({
        status: "paused",
      })
      expect((await ok("subscription.resume", { subscriptionId })).subscription).toMatchObject({
        status: "active",
      })
      expect((await ok("subscription.cancel", { subscriptionId })).subscription).toMatchObject({
        status: "cancelled",
      })
    }
    await ok("subscription.history", { subscriptionId: reminder })
    expect((await ok("reminder.decline", { reminderId: reminder })).subscription).toMatchObject({
      status: "cancelled",
    })
  })
})
