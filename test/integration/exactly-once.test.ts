/**
 * Money moves at most once per occurrence, and nothing accepted is lost:
 * duplicate ticks, redelivered results, and an engine killed mid-burst.
 */
import { sql } from "kysely"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { World } from "../../harness/World.ts"
import { commandsInStream, countBy, createMany, createScheduled } from "../support/scenarios.ts"

describe("exactly one payment per occurrence", () => {
  let env: World
  beforeEach(async () => {
    env = await World.create()
  })
  afterEach(async () => {
    await env.dispose()
  })

  it("ignores duplicate and stale ticks", async () => {
    await env.startEngine()
    const hub = await env.startHub()
    const subscription = await createScheduled(env.channel(), "client-1")

    await env.tick("2027-01-01T06:00:00Z")
    await hub.waitForCommands(1)
    await env.settled()
    // The same tick again (a new message id, so JetStream stores it), and an older one.
    await env.js.publish(env.topology.subjects.tick, JSON.stringify({ at: "2027-01-01T06:00:00Z" }), {
      msgID: "again",
    })
    await env.tick("2026-12-31T06:00:00Z")
    await env.tick("2027-01-01T06:30:00Z")
    await env.settled()

    const commands = await commandsInStream(env)
    expect(commands.map((command) => [command.subscriptionId, command.occurrence, command.attempt])).toEqual([
      [subscription.subscriptionId, "2027-01-01", 1],
    ])
    expect(hub.commands).toHaveLength(1)
    const clock = await env.db.selectFrom("engine_clock").select("now").executeTakeFirstOrThrow()
    expect(clock.now.toISOString()).toBe("2027-01-01T06:30:00.000Z")
  })

  it("records a redelivered or repeated hub result once", async () => {
    await env.startEngine()
    const hub = await env.startHub()
    const subscription = await createScheduled(env.channel(), "client-1")
    await env.tick("2027-01-01T06:00:00Z")
    const [command] = await hub.waitForCommands(1)
    await env.settled()
    if (command === undefined) throw new Error("no command")

    // The hub repeats its result: once without a message id (stored again), once with a new one.
    const result = {
      paymentId: command.paymentId,
      status: "succeeded" as const,
      retryable: false,
      at: "2027-01-01T06:00:01Z",
    }
    await hub.publishResult(result)
    await hub.publishResult(result, "another-id")
    await env.settled()

    const payments = await env.db.selectFrom("payments").selectAll().execute()
    expect(payments).toHaveLength(1)
    expect(payments[0]?.status).toBe("succeeded")
    const succeededEvents = await env.messages(
      env.topology.streams.events,
      `${env.settings.naming.rpPrefix}.event.payment.succeeded`,
    )
    expect(succeededEvents).toHaveLength(1)
    const row = await env.db
      .selectFrom("subscriptions")
      .select(["state"])
      .where("id", "=", subscription.subscriptionId)
      .executeTakeFirstOrThrow()
    expect((row.state as { paid: number }).paid).toBe(1)
  })

  /** One payment sent to a hub that stays silent, so the test decides what results arrive. */
  const paymentAwaitingResult = async () => {
    await env.startEngine()
    const hub = await env.startHub({ decide: () => "silent" })
    await createScheduled(env.channel(), "client-1")
    await env.tick("2027-01-01T06:00:00Z")
    const [command] = await hub.waitForCommands(1)
    if (command === undefined) throw new Error("no command")
    return { hub, command }
  }

  it("keeps the result applied first and records a contradicting one, even when both arrive together", async () => {
    const { hub, command } = await paymentAwaitingResult()
    await Promise.all([
      hub.publishResult(
        { paymentId: command.paymentId, status: "succeeded", retryable: false, at: "2027-01-01T06:00:01Z" },
        "first",
      ),
      hub.publishResult(
        { paymentId: command.paymentId, status: "failed", retryable: true, at: "2027-01-01T06:00:02Z" },
        "second",
      ),
    ])
    await env.settled()
    const payment = await env.db.selectFrom("payments").select("status").executeTakeFirstOrThrow()
    const conflicts = await env.db
      .selectFrom("decisions")
      .select(["outcome", "details"])
      .where("outcome", "=", "result_conflict")
      .execute()
    expect(conflicts).toHaveLength(1)
    expect(conflicts[0]?.details).toMatchObject({ recorded: payment.status })
    expect(await commandsInStream(env)).toHaveLength(1)
    // The contradiction changed no payment, so its message id is what shows it was handled.
    expect(await inboxRows()).toEqual([{ message_id: payment.status === "succeeded" ? "second" : "first" }])
  })

  /** What a write about the payment would change: row versions, messages, records. */
  const footprint = async () => {
    const rows = await sql<{ table: string; xmin: string; revision: number | null }>`
      SELECT 'payment' AS table, xmin::text AS xmin, NULL::bigint AS revision FROM payments
      UNION ALL SELECT 'subscription', xmin::text, revision FROM subscriptions ORDER BY 1`.execute(env.db)
    const events = await env.jsm.streams.info(env.topology.streams.events)
    const decisions = await env.db.selectFrom("decisions").select("outcome").orderBy("id").execute()
    return { rows: rows.rows, messages: events.state.messages, decisions }
  }

  const inboxRows = () => env.db.selectFrom("inbox").select("message_id").execute()

  it("drops a repeated result without any write: the settled payment is the record", async () => {
    const { hub, command } = await paymentAwaitingResult()
    const result = {
      paymentId: command.paymentId,
      status: "succeeded" as const,
      retryable: false,
      at: "2027-01-01T06:00:01Z",
    }
    await hub.publishResult(result, "result-1")
    await env.settled()
    const before = await footprint()
    expect(before.decisions).toEqual([{ outcome: "created" }])
    // The hub says it again, as a new message (JetStream itself drops a repeat of the same id).
    await hub.publishResult(result, "result-2")
    await env.settled()
    expect(await footprint()).toEqual(before)
    // Results that settle their payment leave no processed-message record either.
    expect(await inboxRows()).toEqual([])
  })

  it("acknowledges a contradicting result already processed, without recording it again", async () => {
    const { hub, command } = await paymentAwaitingResult()
    await hub.publishResult(
      { paymentId: command.paymentId, status: "succeeded", retryable: false, at: "2027-01-01T06:00:01Z" },
      "result-1",
    )
    await env.settled()
    // As if this contradiction had been processed and committed, and only its ack was lost.
    await env.db
      .insertInto("inbox")
      .values({ consumer: env.topology.consumers.hubResults, message_id: "late-failure" })
      .execute()
    const before = await footprint()
    await hub.publishResult(
      { paymentId: command.paymentId, status: "failed", retryable: true, at: "2027-01-01T06:00:02Z" },
      "late-failure",
    )
    await env.settled()
    expect(await footprint()).toEqual(before)
  })

  /**
   * Starts an engine process, lets a burst of `count` payments begin, stops the process
   * with `signal` part way, then finishes the burst with a new engine; returns what was
   * sent before the stop and the stopped process's exit.
   */
  const burstInterrupted = async (count: number, signal: NodeJS.Signals) => {
    // Small batches, so the burst is still going when the engine is stopped.
    const engineProcess = await env.spawnEngine({
      RP_COMMIT_BATCH: "10",
      RP_SWEEP_IN_FLIGHT: "10",
      RP_PUBLISH_WORKERS: "1",
    })
    const subscriptions = await createMany(env.channel(), count)
    const hub = await env.startHub()
    await env.js.publish(env.topology.subjects.tick, JSON.stringify({ at: "2027-01-01T06:00:00Z" }), {
      msgID: "tick:2027-01-01T06:00:00Z",
    })
    await hub.waitForCommands(Math.floor(count / 10), 60_000)
    const exited = new Promise<number | null>((resolve) =>
      engineProcess.once("exit", (code) => resolve(code)),
    )
    engineProcess.kill(signal)
    const exitCode = await exited
    const sentBeforeStop = hub.commands.length

    await env.startEngine()
    // The tick is redelivered (it was never acknowledged) and also published again by an impatient clock.
    await env.tick("2027-01-01T06:00:00Z")
    await hub.waitForCommands(subscriptions.length, 60_000)
    await env.settled(60_000)
    return { subscriptions, sentBeforeStop, exitCode }
  }

  /** Checks the burst ended with exactly one command and one successful payment per subscription. */
  const expectEachPaidOnce = async (expected: number) => {
    const perOccurrence = countBy(
      await commandsInStream(env),
      (command) => `${command.subscriptionId}/${command.occurrence}`,
    )
    expect(perOccurrence.size).toBe(expected)
    expect([...perOccurrence.values()].every((count) => count === 1)).toBe(true)
    const payments = await env.db.selectFrom("payments").select(["subscription_id", "status"]).execute()
    expect(payments).toHaveLength(expected)
    expect(payments.every((payment) => payment.status === "succeeded")).toBe(true)
    expect(await env.db.selectFrom("outbox").select("id").execute()).toHaveLength(0)
  }

  it("survives being killed in the middle of a burst: no second command, nothing lost", async () => {
    const { subscriptions, sentBeforeStop } = await burstInterrupted(300, "SIGKILL")
    expect(sentBeforeStop).toBeGreaterThan(0)
    expect(sentBeforeStop).toBeLessThan(subscriptions.length)
    await expectEachPaidOnce(subscriptions.length)
  })

  it("stops cleanly on SIGTERM in the middle of a burst and loses nothing", async () => {
    const { subscriptions, exitCode } = await burstInterrupted(200, "SIGTERM")
    expect(exitCode).toBe(0)
    await expectEachPaidOnce(subscriptions.length)
  })
})
