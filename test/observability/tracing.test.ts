/**
 * Trace context from a channel's request to the messages it causes: the
 * request's `traceparent` names the trace the payment command is published
 * in, while the commands of a tick's sweep carry none.
 */
import { randomBytes, randomUUID } from "node:crypto"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { headers } from "@nats-io/transport-node"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { World } from "../../harness/World.ts"
import { noLimitSettings } from "../../src/actors/Limits.ts"
import { outboxText, traceContextText } from "../../src/streams/OutboxPublisher.ts"
import { createScheduled } from "../support/scenarios.ts"

const rub = (value: number) => ({ value, currency: "RUB" })

/** Messages stored under `subject` in `stream`, with their trace header. */
const tracedMessages = async (env: World, stream: string, subject: string) => {
  const info = await env.jsm.streams.info(stream)
  const found: Array<{ readonly json: Record<string, unknown>; readonly traceparent: string | undefined }> =
    []
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const message = await env.jsm.streams.getMessage(stream, { seq }).catch(() => null)
    if (message === null || message.subject !== subject) continue
    found.push({ json: message.json(), traceparent: message.header?.get("traceparent") || undefined })
  }
  return found
}

describe("trace context", () => {
  let env: World
  beforeEach(async () => {
    // Two payments of 100.00 due at once against a monthly cap of 100.00: the second is held.
    env = await World.create({ limits: { ...noLimitSettings, monthlyMax: { RUB: 10_000 } } })
  })
  afterEach(async () => {
    await env.dispose()
  })

  /** Sends one request with a `traceparent` header, as a traced channel would. */
  const tracedRequest = async (traceparent: string, operation: string, body: unknown) => {
    const envelope = {
      v: 3,
      requestId: `mobile-${randomUUID()}`,
      channel: "mobile",
      clientId: "client-1",
      sentAt: new Date().toISOString(),
      operation,
      body,
    }
    const requestHeaders = headers()
    requestHeaders.set("traceparent", traceparent)
    const reply = await env.connection.request(
      env.topology.subjects.channelRequest("mobile"),
      JSON.stringify(envelope),
      { timeout: 10_000, headers: requestHeaders },
    )
    return reply.json<{ status: string; result?: { subscription?: { subscriptionId: string } } }>()
  }

  it("publishes the payment command a request caused in the request's trace", async () => {
    await env.startEngine()
    const hub = await env.startHub()
    const mobile = env.channel()
    const createTrace = randomBytes(16).toString("hex")
    const created = await tracedRequest(
      `00-${createTrace}-${randomBytes(8).toString("hex")}-01`,
      "subscription.create",
      {
        kind: "scheduled",
        template: { name: "Phone", providerId: "mts", account: "phone-1", source: "card-tok-1" },
        amount: rub(10_000),
        schedule: { every: "month", dayOfMonth: 1, time: "09:00", startDate: "2027-01-01" },
      },
    )
    expect(created.status).toBe("ok")
    await createScheduled(mobile, "client-1", { amount: rub(10_000) }, "phone-2")

    await env.tick("2027-01-01T06:00:00Z")
    await env.settled()
    const held = await env.db
      .selectFrom("decisions")
      .select(["subscription_id", "payment_id"])
      .where("outcome", "=", "held")
      .execute()
    expect(held).toHaveLength(1)
    const { subscription_id: subscriptionId, payment_id: paymentId } = held[0] ?? {}

    const confirmTrace = randomBytes(16).toString("hex")
    const callerSpan = randomBytes(8).toString("hex")
    const confirmed = await tracedRequest(`00-${confirmTrace}-${callerSpan}-01`, "payment.confirm", {
      subscriptionId,
      paymentId,
    })
    expect(confirmed.status).toBe("ok")
    await hub.waitForCommands(2)
    await env.settled()

    const commands = await tracedMessages(
      env,
      env.topology.streams.hubPayments,
      env.topology.subjects.hubCommand,
    )
    expect(commands).toHaveLength(2)
    const released = commands.find((command) => command.json.paymentId === paymentId)
    const swept = commands.find((command) => command.json.paymentId !== paymentId)
    // Same trace as the request; the parent is the engine's own span, not the caller's.
    const [version, traceId, parentId, flags] = released?.traceparent?.split("-") ?? []
    expect({ version, traceId, flags }).toEqual({ version: "00", traceId: confirmTrace, flags: "01" })
    expect(parentId).toMatch(/^[0-9a-f]{16}$/)
    expect(parentId).not.toBe(callerSpan)
    // The tick's sweep is no request: its command carries no trace context.
    expect(swept?.traceparent).toBeUndefined()

    // Everything the traced creation caused is in the creation's trace too.
    const createdEvents = await tracedMessages(
      env,
      env.topology.streams.events,
      env.topology.subjects.event("subscription.created"),
    )
    const traced = createdEvents.filter(
      (event) => event.json.subscriptionId === created.result?.subscription?.subscriptionId,
    )
    expect(traced).toHaveLength(1)
    expect(traced[0]?.traceparent?.split("-")[1]).toBe(createTrace)
  })

  it("starts a trace for a request that brings none, and ignores a malformed traceparent", async () => {
    await env.startEngine()
    const reply = await tracedRequest("not-a-traceparent", "subscription.create", {
      kind: "scheduled",
      template: { name: "Phone", providerId: "mts", account: "phone-9", source: "card-tok-1" },
      amount: rub(10_000),
      schedule: { every: "month", dayOfMonth: 1, time: "09:00", startDate: "2027-01-01" },
    })
    expect(reply.status).toBe("ok")
    await env.settled()
    const events = await tracedMessages(
      env,
      env.topology.streams.events,
      env.topology.subjects.event("subscription.created"),
    )
    expect(events).toHaveLength(1)
    expect(events[0]?.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/)
  })

  it("keeps the trace context of an outbox row left behind by a crash when the sweeper republishes it", async () => {
    // An engine ran once (the streams exist), then died with a traced row committed and unpublished.
    await (await env.startEngine()).stop()
    const traceparent = `00-${randomBytes(16).toString("hex")}-${randomBytes(8).toString("hex")}-01`
    const subject = env.topology.subjects.event("payment.requested")
    const messages = [
      { subject, msgId: "traced-1", payload: JSON.stringify({ eventId: "traced-1" }), traceparent },
      { subject, msgId: "untraced-1", payload: JSON.stringify({ eventId: "untraced-1" }) },
    ]
    await env.db
      .insertInto("outbox")
      .values({
        id: "00000000-0000-4000-8000-000000000001",
        messages: outboxText(messages),
        message_count: messages.length,
        trace_context: traceContextText(messages),
      })
      .execute()
    await env.startEngine()
    await env.waitFor(
      "the outbox to drain",
      async () => (await env.db.selectFrom("outbox").select("id").execute()).length === 0,
    )

    const published = await tracedMessages(env, env.topology.streams.events, subject)
    expect(published.map((message) => [message.json.eventId, message.traceparent])).toEqual([
      ["traced-1", traceparent],
      ["untraced-1", undefined],
    ])
  })

  it("exports its spans to an OTLP collector when RP_OTLP_ENDPOINT names one", async () => {
    const received: Array<string> = []
    const collector = createServer((request, response) => {
      let body = ""
      request.on("data", (chunk: Buffer) => {
        body += chunk.toString()
      })
      request.on("end", () => {
        if (request.url === "/v1/traces") received.push(body)
        response.writeHead(200, { "content-type": "application/json" }).end("{}")
      })
    })
    await new Promise<void>((resolve) => collector.listen(0, "127.0.0.1", resolve))
    try {
      const { port } = collector.address() as AddressInfo
      const engine = await env.startEngine({ otlpEndpoint: `http://127.0.0.1:${port}` })
      const traceId = randomBytes(16).toString("hex")
      const reply = await tracedRequest(
        `00-${traceId}-${randomBytes(8).toString("hex")}-01`,
        "template.list",
        {},
      )
      expect(reply.status).toBe("ok")
      // Stopping flushes what the exporter holds.
      await engine.stop()
      const spans = received.flatMap((body) =>
        (
          JSON.parse(body) as {
            resourceSpans: Array<{ scopeSpans: Array<{ spans: Array<{ name: string; traceId: string }> }> }>
          }
        ).resourceSpans.flatMap((resource) => resource.scopeSpans.flatMap((scope) => scope.spans)),
      )
      expect(spans).toContainEqual(expect.objectContaining({ name: "rp.protocol.request", traceId }))
    } finally {
      await new Promise((resolve) => collector.close(resolve))
    }
  })
})
