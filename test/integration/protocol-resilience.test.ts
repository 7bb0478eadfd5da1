/**
 * The channel protocol stays up whatever one request does, and answers overload instead of
 * leaving channels to time out: every reply fits the NATS server's max_payload; a subscription
 * that ends is taken up again while readiness names the protocol; requests that cannot start in
 * time are answered BUSY, write nothing, and succeed once when sent again with the same requestId.
 */
import { randomUUID } from "node:crypto"
import type { Subscription } from "@nats-io/transport-node"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Reply } from "../../fakes/FakeChannel.ts"
import { type RunningEngine, World } from "../../harness/World.ts"
import { MAX_DETAILS } from "../../src/protocol/Envelope.ts"
import { Nats } from "../../src/streams/Nats.ts"
import { httpUrlOf } from "../observability/prometheus.ts"
import { monthlyOnFirst, rowCounts } from "../support/scenarios.ts"

const errorOf = (reply: Reply) => {
  if (reply.status !== "error") throw new Error(`expected an error reply, got ${JSON.stringify(reply)}`)
  return reply.error
}

const inlineTemplate = { name: "Rent", providerId: "isp-1", account: "flat-1", source: "acc-1" }

describe("protocol resilience", () => {
  let env: World
  let engine: RunningEngine
  beforeAll(async () => {
    env = await World.create({}, "resilience")
    engine = await env.startEngine()
  })
  afterAll(async () => {
    await env?.dispose()
  })

  const stillServing = async () => {
    const reply = await env.channel().request("template.list", {}, { clientId: "probe-1" })
    expect(reply.status).toBe("ok")
  }

  it("answers 12,000 unknown keys with a VALIDATION_FAILED that fits max_payload, and keeps serving", async () => {
    const before = await rowCounts(env.db)
    const body: Record<string, unknown> = { ...inlineTemplate }
    for (let index = 0; index < 12_000; index++) body[`x${index}`] = 1
    const requestId = `flood-${randomUUID()}`
    const request = JSON.stringify({
      v: 3,
      requestId,
      channel: "mobile",
      clientId: "client-1",
      sentAt: new Date().toISOString(),
      operation: "template.create",
      body,
    })
    expect(request.length).toBeGreaterThan(100_000)
    const raw = await env.connection.request(`${env.settings.naming.rpPrefix}.v3.mobile`, request, {
      timeout: 10_000,
    })
    const maxPayload = env.connection.info?.max_payload ?? 0
    expect(maxPayload).toBeGreaterThan(0)
    expect(raw.data.length).toBeLessThanOrEqual(maxPayload)
    // A few kilobytes, not a megabyte: the first paths and a count of the rest.
    expect(raw.data.length).toBeLessThan(32 * 1024)
    const reply = raw.json<Reply>()
    expect(reply.requestId).toBe(requestId)
    const error = errorOf(reply)
    expect(error.code).toBe("VALIDATION_FAILED")
    expect(error.details).toHaveLength(MAX_DETAILS + 1)
    expect(error.details.slice(0, 3).map((detail) => detail.path)).toEqual(["body.x0", "body.x1", "body.x2"])
    expect(new Set(error.details.map((detail) => detail.path)).size).toBe(error.details.length)
    expect(error.details.at(-1)?.message).toMatch(`${12_000 - MAX_DETAILS} more`)
    expect(await rowCounts(env.db)).toEqual(before)
    await stillServing()
  })

  it("takes its subscription up again when it ends, and readiness names the protocol meanwhile", async () => {
    const url = await httpUrlOf(engine)
    const readiness = async () => {
      const response = await fetch(`${url}/health/ready`)
      return {
        code: response.status,
        body: (await response.json()) as { failed: Array<string>; checks: Record<string, string> },
      }
    }
    await env.waitFor("the engine to be ready", async () => (await readiness()).code === 200)
    expect((await readiness()).body.checks.protocol).toBe("ok")

    // The engine's own NATS client refuses new subscriptions to the channel subject for a while
    // (as a server denying it would), and the one the protocol server holds is closed under it.
    const { connection } = await engine.runtime.runPromise(Nats)
    const channelRequests = env.topology.subjects.channelRequests
    const subscribe = connection.subscribe.bind(connection)
    let refusing = true
    let attempts = 0
    connection.subscribe = (subject, options) => {
      if (subject === channelRequests && refusing) {
        attempts += 1
        throw new Error("subscription refused by the test")
      }
      return subscribe(subject, options)
    }
    try {
      const internals = connection as unknown as {
        protocol: { subscriptions: { all(): Array<Subscription> } }
      }
      const served = internals.protocol.subscriptions.all().filter((s) => s.getSubject() === channelRequests)
      expect(served).toHaveLength(1)
      for (const subscription of served) subscription.unsubscribe()

      let down = await readiness()
      await env.waitFor("readiness to name the protocol", async () => {
        down = await readiness()
        return down.code === 503
      })
      expect(down.body.failed).toEqual(["protocol"])
      expect(down.body.checks.protocol).toMatch(/^not serving: /)
      // Still down while refused: it keeps trying, with back-off.
      await env.waitFor("a second attempt to subscribe", async () => attempts >= 2)
      expect((await readiness()).code).toBe(503)
    } finally {
      refusing = false
      connection.subscribe = subscribe
    }
    await env.waitFor("readiness to come back", async () => (await readiness()).code === 200)
    expect((await readiness()).body.checks.protocol).toBe("ok")
    await stillServing()
  })
})

describe("protocol overload", () => {
  let env: World
  beforeAll(async () => {
    // Two requests at a time, two more waiting at most 50 ms: a small flood overflows at once.
    env = await World.create({ requestConcurrency: 2, requestQueue: 2, requestQueueWaitMs: 50 }, "busy")
    await env.startEngine()
  })
  afterAll(async () => {
    await env?.dispose()
  })

  const createBody = (index: number) => ({
    kind: "scheduled",
    template: { ...inlineTemplate, account: `flat-${index}` },
    amount: { value: 100_000, currency: "RUB" },
    schedule: monthlyOnFirst,
  })

  it("answers a flood it cannot start in time with BUSY, writes nothing for it, and takes the retries once", async () => {
    const before = await rowCounts(env.db)
    const mobile = env.channel()
    const flood = Array.from({ length: 30 }, (_, index) => ({
      index,
      clientId: `busy-client-${index}`,
      requestId: `busy-${index}-${randomUUID()}`,
    }))
    const first = await Promise.all(
      flood.map(async (request) => ({
        ...request,
        reply: await mobile.request("subscription.create", createBody(request.index), {
          clientId: request.clientId,
          requestId: request.requestId,
          retryBusy: false,
        }),
      })),
    )
    const busy = first.filter(({ reply }) => reply.status === "error" && reply.error.code === "BUSY")
    const accepted = first.filter(({ reply }) => reply.status === "ok")
    expect(busy.length).toBeGreaterThan(0)
    expect(accepted.length).toBeGreaterThan(0)
    expect(busy.length + accepted.length).toBe(flood.length)
    for (const { reply, requestId } of busy) {
      expect(reply.requestId).toBe(requestId)
      const error = errorOf(reply)
      expect(error.retryAfterMs).toBeGreaterThan(0)
      expect(error.details).toEqual([])
    }

    // Nothing was written for a refused request: only the accepted ones have rows.
    const afterFlood = await rowCounts(env.db)
    expect(afterFlood.subscriptions - before.subscriptions).toBe(accepted.length)
    expect(afterFlood.requests - before.requests).toBe(accepted.length)
    const logged = await env.db
      .selectFrom("requests")
      .select("request_id")
      .where(
        "request_id",
        "in",
        busy.map(({ requestId }) => requestId),
      )
      .execute()
    expect(logged).toEqual([])

    // Sent again with the same requestId (every one of the flood, as a channel unsure of its
    // replies would), each is done exactly once; a BUSY on the way is retried by the fake channel.
    const again = await Promise.all(
      first.map(async ({ index, clientId, requestId, reply }) => ({
        before: reply,
        reply: await mobile.request("subscription.create", createBody(index), { clientId, requestId }),
      })),
    )
    for (const { before: earlier, reply } of again) {
      expect(reply.status === "ok" ? "ok" : reply.error).toBe("ok")
      if (earlier.status === "ok") expect(reply).toEqual(earlier)
    }
    const after = await rowCounts(env.db)
    expect(after.subscriptions - before.subscriptions).toBe(flood.length)
    expect(after.requests - before.requests).toBe(flood.length)
    const perClient = await env.db
      .selectFrom("subscriptions")
      .select((eb) => ["client_id", eb.fn.countAll<string>().as("count")])
      .where(
        "client_id",
        "in",
        flood.map(({ clientId }) => clientId),
      )
      .groupBy("client_id")
      .execute()
    expect(perClient).toHaveLength(flood.length)
    expect(perClient.every((row) => Number(row.count) === 1)).toBe(true)
  }, 120_000)
})
