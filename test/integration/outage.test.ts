/**
 * A Postgres outage longer than the redelivery budget: the hub results that
 * arrive meanwhile wait in their stream and are applied once the database is
 * back; none goes to the dead-letter stream, and the engine says it is not
 * ready while it cannot work.
 *
 * "Unreachable" is a TCP proxy between this engine and the shared Postgres
 * (harness/TcpProxy.ts): cut, every connection is reset.
 */
import { randomUUID } from "node:crypto"
import { Effect, Redacted } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import { TcpProxy } from "../../harness/TcpProxy.ts"
import { World } from "../../harness/World.ts"
import { OutboxPublisher, outboxText } from "../../src/streams/OutboxPublisher.ts"
import { httpUrlOf } from "../observability/prometheus.ts"
import { createMany } from "../support/scenarios.ts"

interface ReadinessBody {
  readonly failed: ReadonlyArray<string>
  readonly checks: Readonly<Record<string, string>>
}

const readiness = async (url: string) => {
  const response = await fetch(`${url}/health/ready`)
  return { code: response.status, body: (await response.json()) as ReadinessBody }
}

/** Two deliveries: the first fails, then 1 s of back-off, then the last. */
const maxDeliveries = 2
/** Longer than that whole budget, several times over. */
const outageMs = 5_000

describe("a Postgres outage longer than the redelivery budget", () => {
  let env: World | undefined
  let proxy: TcpProxy | undefined
  afterEach(async () => {
    proxy?.restore()
    await env?.dispose()
    await proxy?.close()
  })

  it("applies every hub result once it is back, dead-letters none, and is not ready meanwhile", async () => {
    proxy = await TcpProxy.start(5432)
    const world = await World.create({ consumerMaxDeliveries: maxDeliveries }, "outage")
    env = world
    const url = await httpUrlOf(
      await world.startEngine({
        databaseUrl: Redacted.make(proxy.route(Redacted.value(world.settings.databaseUrl))),
      }),
    )
    const hub = await world.startHub({ decide: () => "silent" })
    await createMany(world.channel(), 5)
    await world.tick("2027-01-01T06:00:00Z")
    const commands = await hub.waitForCommands(5)
    await world.waitFor("the engine to be ready", async () => (await readiness(url)).code === 200)

    proxy.cut()
    for (const command of commands) {
      await hub.publishResult(
        { paymentId: command.paymentId, status: "succeeded", retryable: false, at: "2027-01-01T06:00:01Z" },
        `result:${command.paymentId}`,
      )
    }
    const { streams, consumers } = world.topology
    // The engine has taken results while the database is away (it stops pulling once it notices).
    await world.waitFor("the engine to take results", async () => {
      const info = await world.jsm.consumers.info(streams.hubPayments, consumers.hubResults)
      return info.num_pending < commands.length
    })
    let during = await readiness(url)
    await world.waitFor("readiness to say Postgres is down", async () => {
      during = await readiness(url)
      return during.code === 503
    })
    expect(during.body.failed).toContain("postgres")
    // The outage outlasts the whole redelivery budget (that is what it is about, not a synchronisation).
    await new Promise((resolve) => setTimeout(resolve, outageMs))
    const late = await readiness(url)
    expect(late.code).toBe(503)
    expect(late.body.failed).toContain("postgres")

    proxy.restore()
    await world.waitFor(
      "every result to be applied",
      async () => {
        const paid = await world.db
          .selectFrom("payments")
          .select("payment_id")
          .where("status", "=", "succeeded")
          .execute()
        return paid.length === commands.length
      },
      30_000,
    )
    await world.waitFor("readiness to come back", async () => (await readiness(url)).code === 200, 30_000)
    await world.settled()

    const letters = await world.messages(streams.deadLetters, `${world.settings.naming.rpPrefix}.dlq.>`)
    expect(letters).toEqual([])
    expect(late.body.checks.consumers).toMatch(/paused while postgres is unreachable/)
    expect(proxy.refused).toBeGreaterThan(0)
  })

  it("does not publish again, past the duplicate window, what it published before the database went", async () => {
    proxy = await TcpProxy.start(5432)
    const duplicateWindowMs = 1_000
    const world = await World.create({ duplicateWindowMs }, "outage")
    env = world
    const engine = await world.startEngine({
      databaseUrl: Redacted.make(proxy.route(Redacted.value(world.settings.databaseUrl))),
    })
    const url = await httpUrlOf(engine)
    await world.waitFor("the engine to be ready", async () => (await readiness(url)).code === 200)

    proxy.cut()
    // A committed row the publisher is handed: its publish works (NATS is there), its delete cannot.
    const subject = world.topology.subjects.event("test.outage")
    const message = { subject, msgId: `outage-${randomUUID()}`, payload: '{"n":1}' }
    const id = randomUUID()
    await world.db
      .insertInto("outbox")
      .values({ id, messages: outboxText([message]), message_count: 1 })
      .execute()
    await engine.runtime.runPromise(
      Effect.flatMap(OutboxPublisher, (outbox) => outbox.enqueue([{ id, messages: [message] }])),
    )
    const copies = async () =>
      (await world.messages(world.topology.streams.events, subject)).filter(
        (stored) => stored.msgId === message.msgId,
      ).length
    await world.waitFor("the message to be published", async () => (await copies()) === 1)
    // The outage outlasts the stream's duplicate window: a second publish would be stored again. A
    // probe id first published after the message shows when the window has passed: the stream
    // stops calling its repeats duplicates.
    const probe = { subject: world.topology.subjects.event("test.window"), msgID: `window-${randomUUID()}` }
    await world.js.publish(probe.subject, "{}", { msgID: probe.msgID })
    await world.waitFor(
      "the duplicate window to pass",
      async () => !(await world.js.publish(probe.subject, "{}", { msgID: probe.msgID })).duplicate,
    )

    proxy.restore()
    await world.waitFor(
      "the row to leave the outbox",
      async () => (await world.db.selectFrom("outbox").select("id").execute()).length === 0,
      30_000,
    )
    expect(await copies()).toBe(1)
  })
})
