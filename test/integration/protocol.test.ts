/**
 * The channel protocol's gates and error codes: every refusal is clear,
 * writes nothing, and never takes the engine down; repeats are idempotent;
 * one client never sees another's resources.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Reply } from "../../fakes/FakeChannel.ts"
import { World } from "../../harness/World.ts"
import { createScheduled, monthlyOnFirst, rowCounts } from "../support/scenarios.ts"

const errorOf = (reply: Reply) => {
  if (reply.status !== "error") throw new Error(`expected an error reply, got ${JSON.stringify(reply)}`)
  return reply.error
}

describe("channel protocol", () => {
  let env: World
  beforeAll(async () => {
    env = await World.create()
    await env.startEngine()
  })
  afterAll(async () => {
    await env.dispose()
  })

  /** Row counts of every table a request could write to. */
  const footprint = () => rowCounts(env.db)

  const validEnvelope = (overrides: Record<string, unknown> = {}) => ({
    v: 3,
    requestId: `req-${Math.random()}`,
    channel: "mobile",
    terminal: "device-42",
    clientId: "client-7",
    sentAt: "2026-12-01T10:00:00+03:00",
    operation: "template.list",
    body: {},
    ...overrides,
  })

  it("answers BAD_REQUEST to bytes that are not JSON, and keeps serving", async () => {
    const before = await footprint()
    const mobile = env.channel("mobile")
    expect(errorOf(await mobile.send("{not json")).code).toBe("BAD_REQUEST")
    expect(errorOf(await mobile.send(new Uint8Array([0xff, 0xfe, 0x00]))).code).toBe("BAD_REQUEST")
    expect(errorOf(await mobile.send("x".repeat(300 * 1024))).code).toBe("BAD_REQUEST")
    expect((await mobile.request("template.list", {}, { clientId: "client-7" })).status).toBe("ok")
    expect(await footprint()).toEqual(before)
  })

  it("answers BAD_REQUEST to a wrong envelope, listing every problem and echoing the request id", async () => {
    const reply = await env.channel("mobile").send(
      JSON.stringify({
        v: 2,
        requestId: "r-1",
        channel: "mobile",
        clientId: "bad id!",
        sentAt: "yesterday",
      }),
    )
    const error = errorOf(reply)
    expect(error.code).toBe("BAD_REQUEST")
    expect(reply.requestId).toBe("r-1")
    expect(error.details.map((detail) => detail.path).sort()).toEqual([
      "body",
      "clientId",
      "operation",
      "sentAt",
      "v",
    ])
  })

  it("answers UNAUTHORIZED to an unknown channel and to a channel speaking for another", async () => {
    const before = await footprint()
    const rogue = env.channel("rogue")
    expect(errorOf(await rogue.request("template.list", {}, { clientId: "client-7" })).code).toBe(
      "UNAUTHORIZED",
    )
    const impersonation = await env.channel("atm").request(
      "template.create",
      { name: "x", providerId: "isp-1", account: "a", source: "s" },
      {
        clientId: "client-7",
        channel: "mobile",
      },
    )
    expect(errorOf(impersonation).code).toBe("UNAUTHORIZED")
    expect(await footprint()).toEqual(before)
  })

  it("answers UNKNOWN_OPERATION", async () => {
    const reply = await env
      .channel()
      .send(JSON.stringify(validEnvelope({ operation: "subscription.teleport" })))
    expect(errorOf(reply).code).toBe("UNKNOWN_OPERATION")
  })

  it("answers VALIDATION_FAILED with every field path, and writes nothing", async () => {
    const before = await footprint()
    const reply = await env.channel().request(
      "subscription.create",
      {
        kind: "scheduled",
        template: { name: "", providerId: "isp 1", account: "a", source: "s" },
        amount: { value: 10.5, currency: "XYZ" },
        schedule: {
          every: "month",
          dayOfMonth: 32,
          dayOfWeek: 3,
          time: "25:00",
          timezone: "Mars/Olympus",
          startDate: "2027-02-30",
        },
        surprise: true,
      },
      { clientId: "client-7" },
    )
    const error = errorOf(reply)
    expect(error.code).toBe("VALIDATION_FAILED")
    const paths = error.details.map((detail) => detail.path).sort()
    expect(paths).toEqual(
      [
        "body.amount.currency",
        "body.amount.value",
        "body.schedule.dayOfMonth",
        "body.schedule.startDate",
        "body.schedule.time",
        "body.schedule.timezone",
        "body.surprise",
        "body.template.name",
        "body.template.providerId",
      ].sort(),
    )
    expect(await footprint()).toEqual(before)
  })

  it("refuses an unknown kind with one clear VALIDATION_FAILED on body.kind", async () => {
    const reply = await env
      .channel()
      .request("subscription.create", { kind: "reminder", templateId: "x" }, { clientId: "client-7" })
    const error = errorOf(reply)
    expect(error.code).toBe("VALIDATION_FAILED")
    expect(error.details).toEqual([{ path: "body.kind", message: expect.stringContaining("must be one of") }])
  })

  it("checks each kind's body against that kind's terms", async () => {
    const reply = await env
      .channel()
      .request("subscription.create", { kind: "threshold", templateId: "x" }, { clientId: "client-7" })
    const error = errorOf(reply)
    expect(error.code).toBe("VALIDATION_FAILED")
    expect(error.details.map((detail: { path: string }) => detail.path).sort()).toEqual([
      "body.amount",
      "body.threshold",
    ])
  })

  it("refuses a schedule with no occurrence after the engine's current time", async () => {
    await env.tick("2026-12-01T00:00:00Z")
    const reply = await env.channel().request(
      "subscription.create",
      {
        kind: "scheduled",
        template: { name: "Rent", providerId: "landlord", account: "flat-1", source: "acc-1" },
        amount: { value: 100, currency: "RUB" },
        schedule: { ...monthlyOnFirst, startDate: "2020-01-01", endDate: "2020-06-01" },
      },
      { clientId: "client-7" },
    )
    expect(errorOf(reply).code).toBe("VALIDATION_FAILED")
  })

  it("answers NOT_FOUND for missing ids and for another client's resources alike", async () => {
    const mobile = env.channel("mobile")
    const mine = await createScheduled(mobile, "owner-1")
    const { template } = await mobile.ok<{ template: { templateId: string } }>(
      "template.create",
      { name: "Phone", providerId: "mts", account: "+79990000000", source: "card-1" },
      { clientId: "owner-1" },
    )
    const stranger = { clientId: "stranger-2" }
    const before = await footprint()
    for (const operation of [
      "subscription.get",
      "subscription.pause",
      "subscription.resume",
      "subscription.cancel",
      "subscription.skipNext",
      "subscription.history",
      "subscription.preview",
    ]) {
      const foreign = errorOf(
        await mobile.request(operation, { subscriptionId: mine.subscriptionId }, stranger),
      )
      const missing = errorOf(
        await mobile.request(operation, { subscriptionId: "7f0c5e8a-0000-4000-8000-000000000000" }, stranger),
      )
      expect([operation, foreign.code]).toEqual([operation, "NOT_FOUND"])
      expect(foreign.message.replace(mine.subscriptionId, "ID")).toBe(
        missing.message.replace("7f0c5e8a-0000-4000-8000-000000000000", "ID"),
      )
    }
    const update = await mobile.request(
      "subscription.update",
      { subscriptionId: mine.subscriptionId, expectedVersion: 1, amount: { value: 1, currency: "RUB" } },
      stranger,
    )
    expect(errorOf(update).code).toBe("NOT_FOUND")
    expect(
      errorOf(await mobile.request("template.get", { templateId: template.templateId }, stranger)).code,
    ).toBe("NOT_FOUND")
    expect(
      errorOf(await mobile.request("template.delete", { templateId: template.templateId }, stranger)).code,
    ).toBe("NOT_FOUND")
    expect(
      errorOf(await mobile.request("subscription.get", { subscriptionId: "not-a-uuid" }, stranger)).code,
    ).toBe("NOT_FOUND")
    const listed = await mobile.ok<{ items: Array<unknown> }>("subscription.list", {}, stranger)
    expect(listed.items).toEqual([])
    expect(await footprint()).toEqual(before)
  })

  it("answers CONFLICT to a stale expectedVersion and to an illegal transition", async () => {
    const mobile = env.channel("mobile")
    const client = { clientId: "conflicted-1" }
    const subscription = await createScheduled(mobile, client.clientId)
    const stale = await mobile.request(
      "subscription.update",
      {
        subscriptionId: subscription.subscriptionId,
        expectedVersion: 7,
        amount: { value: 1, currency: "RUB" },
      },
      client,
    )
    expect(errorOf(stale).code).toBe("CONFLICT")
    const resume = await mobile.request(
      "subscription.resume",
      { subscriptionId: subscription.subscriptionId },
      client,
    )
    expect(errorOf(resume).code).toBe("CONFLICT")
    await mobile.ok("subscription.cancel", { subscriptionId: subscription.subscriptionId }, client)
    const again = await mobile.request(
      "subscription.cancel",
      { subscriptionId: subscription.subscriptionId },
      client,
    )
    expect(errorOf(again).code).toBe("CONFLICT")
  })

  it("answers a repeated request with the first reply and makes no second change", async () => {
    const mobile = env.channel("mobile")
    const body = {
      kind: "scheduled",
      template: { name: "Rent", providerId: "landlord", account: "flat-9", source: "acc-1" },
      amount: { value: 4_500_000, currency: "RUB" },
      schedule: monthlyOnFirst,
    }
    const options = { clientId: "repeater-1", requestId: "create-once" }
    const first = await mobile.request("subscription.create", body, options)
    const [second, third] = await Promise.all([
      mobile.request("subscription.create", body, options),
      mobile.request("subscription.create", body, options),
    ])
    expect(second).toEqual(first)
    expect(third).toEqual(first)
    const listed = await mobile.ok<{ items: Array<unknown> }>(
      "subscription.list",
      {},
      { clientId: "repeater-1" },
    )
    expect(listed.items).toHaveLength(1)

    const reused = await mobile.request(
      "subscription.create",
      { ...body, amount: { value: 1, currency: "RUB" } },
      options,
    )
    expect(errorOf(reused).code).toBe("CONFLICT")
    // The same id from another channel is another request.
    const fromAtm = await env.channel("atm").request("subscription.create", body, options)
    expect(fromAtm.status).toBe("ok")
  })

  it("treats a repeat with its JSON keys in another order as the same request", async () => {
    const mobile = env.channel("mobile")
    const options = { clientId: "reorder-1", requestId: "template-once" }
    const first = await mobile.request(
      "template.create",
      { name: "Phone", providerId: "mts", account: "+79990000001", source: "card-1" },
      options,
    )
    const again = await mobile.request(
      "template.create",
      { source: "card-1", account: "+79990000001", providerId: "mts", name: "Phone" },
      options,
    )
    expect(again).toEqual(first)
  })

  it("refuses control characters where they would be stored, before writing anything", async () => {
    const mobile = env.channel("mobile")
    const before = await footprint()
    const badKey = await mobile.request(
      "template.create",
      {
        name: "Phone",
        providerId: "mts",
        account: "+7999",
        source: "card-1",
        fields: { "re\u0000gion": "77" },
      },
      { clientId: "client-7" },
    )
    expect(errorOf(badKey)).toMatchObject({
      code: "VALIDATION_FAILED",
      details: [{ path: expect.stringMatching(/^body\.fields/) }],
    })
    const badRequestId = await mobile.request(
      "template.create",
      { name: "Phone", providerId: "mts", account: "+7999", source: "card-1" },
      { clientId: "client-7", requestId: "id\u0000with-nul" },
    )
    expect(errorOf(badRequestId).code).toBe("BAD_REQUEST")
    expect(await footprint()).toEqual(before)
  })

  it("pages lists with an opaque cursor, and refuses a cursor it did not hand out", async () => {
    const mobile = env.channel("mobile")
    const client = { clientId: "pager-1" }
    for (let index = 0; index < 5; index++) await createScheduled(mobile, client.clientId, {}, `acc-${index}`)
    const seen: Array<string> = []
    let cursor: string | null = null
    do {
      const page: { items: Array<{ subscriptionId: string }>; nextCursor: string | null } = await mobile.ok(
        "subscription.list",
        { limit: 2, ...(cursor === null ? {} : { cursor }) },
        client,
      )
      expect(page.items.length).toBeLessThanOrEqual(2)
      seen.push(...page.items.map((item) => item.subscriptionId))
      cursor = page.nextCursor
    } while (cursor !== null)
    expect(new Set(seen).size).toBe(5)
    const templates = await mobile.ok<{ items: Array<unknown>; nextCursor: string | null }>(
      "template.list",
      { limit: 3 },
      client,
    )
    expect(templates.items).toHaveLength(3)
    expect(templates.nextCursor).not.toBeNull()
    const forged = await mobile.request("subscription.list", { cursor: "bm90LWEtY3Vyc29y" }, client)
    expect(errorOf(forged)).toMatchObject({ code: "VALIDATION_FAILED", details: [{ path: "body.cursor" }] })
  })

  it("makes a pause idempotent on its request id", async () => {
    const mobile = env.channel("mobile")
    const client = { clientId: "pauser-1" }
    const subscription = await createScheduled(mobile, client.clientId)
    const options = { ...client, requestId: "pause-1" }
    const first = await mobile.request(
      "subscription.pause",
      { subscriptionId: subscription.subscriptionId },
      options,
    )
    const second = await mobile.request(
      "subscription.pause",
      { subscriptionId: subscription.subscriptionId },
      options,
    )
    expect(first.status).toBe("ok")
    expect(second).toEqual(first)
    const decisions = await env.db
      .selectFrom("decisions")
      .select("outcome")
      .where("subscription_id", "=", subscription.subscriptionId)
      .where("outcome", "=", "paused")
      .execute()
    expect(decisions).toHaveLength(1)
  })

  it("answers INTERNAL, writes nothing and keeps serving when a stored row is unreadable", async () => {
    const mobile = env.channel("mobile")
    const client = { clientId: "broken-1" }
    const subscription = await createScheduled(mobile, client.clientId)
    await env.db
      .updateTable("subscriptions")
      .set({ state: JSON.stringify({ nonsense: true }) })
      .where("id", "=", subscription.subscriptionId)
      .execute()
    const before = await footprint()
    const reply = await mobile.request(
      "subscription.pause",
      { subscriptionId: subscription.subscriptionId },
      client,
    )
    expect(errorOf(reply).code).toBe("INTERNAL")
    expect(await footprint()).toEqual(before)
    expect((await mobile.request("template.list", {}, client)).status).toBe("ok")
  })
})
