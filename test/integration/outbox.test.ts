/**
 * The outbox sweeper heals a crash between commit and publish: rows left in
 * the table (one per group-commit transaction, each holding many messages)
 * are published again whole, in order, repeats dropped by message id, and
 * deleted once every message is acknowledged.
 */
import { Effect } from "effect"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { World } from "../../harness/World.ts"
import { migrateToLatest } from "../../src/store/Database.ts"
import { outboxText, type PublishableMessage } from "../../src/streams/OutboxPublisher.ts"

describe("outbox sweeper", () => {
  let env: World
  beforeEach(async () => {
    env = await World.create()
    await Effect.runPromise(migrateToLatest(env.db))
  })
  afterEach(async () => {
    await env.dispose()
  })

  const message = (type: string, msgId: string, n: number): PublishableMessage => ({
    subject: env.topology.subjects.event(type),
    msgId,
    payload: JSON.stringify({ eventId: msgId, type, n }),
  })

  /** Leaves a row in the table as a committed transaction would, as if the engine died before publishing. */
  const leaveRow = async (id: string, messages: ReadonlyArray<PublishableMessage>) => {
    await env.db
      .insertInto("outbox")
      .values({ id, messages: outboxText(messages), message_count: messages.length })
      .execute()
  }

  const outboxRows = async () => (await env.db.selectFrom("outbox").select("id").execute()).length

  it("republishes rows left behind whole and in order, and drops what was already published", async () => {
    const first = [
      message("payment.requested", "m-1", 1),
      message("payment.succeeded", "m-2", 2),
      message("payment.failed", "m-3", 3),
    ]
    const second = [message("payment.requested", "m-4", 4), message("payment.succeeded", "m-5", 5)]
    // An engine ran once (the streams exist), then died with two rows committed and unpublished,
    // part of the first of them already out.
    await (await env.startEngine()).stop()
    await leaveRow("00000000-0000-4000-8000-000000000001", first)
    await leaveRow("00000000-0000-4000-8000-000000000002", second)
    await env.js.publish(first[1]?.subject ?? "", first[1]?.payload ?? "", { msgID: "m-2" })
    await env.startEngine()
    await env.waitFor("the outbox to drain", async () => (await outboxRows()) === 0)

    const stored = await env.messages(env.topology.streams.events, `${env.settings.naming.rpPrefix}.event.>`)
    expect(stored.map((entry) => entry.msgId).sort()).toEqual(["m-1", "m-2", "m-3", "m-4", "m-5"])
    const order = stored.map((entry) => entry.msgId)
    // m-2 went out before the crash and was not stored again; the rest kept their row's order.
    expect(order[0]).toBe("m-2")
    expect(order.indexOf("m-1")).toBeLessThan(order.indexOf("m-3"))
    expect(order.indexOf("m-4")).toBeLessThan(order.indexOf("m-5"))
    expect(stored.find((entry) => entry.msgId === "m-4")?.json).toEqual({
      eventId: "m-4",
      type: "payment.requested",
      n: 4,
    })
  })

  it("keeps only the messages still unacknowledged when part of a row fails", async () => {
    // No stream covers this subject: its publish fails every time.
    const lost = { subject: `${env.settings.naming.rpPrefix}-nowhere.x`, msgId: "m-2", payload: "{}" }
    await leaveRow("00000000-0000-4000-8000-000000000001", [
      message("payment.requested", "m-1", 1),
      lost,
      message("payment.succeeded", "m-3", 3),
    ])
    await env.startEngine()
    await env.waitFor("the row to be cut down to the failing message", async () => {
      const rows = await env.db.selectFrom("outbox").select(["messages", "message_count"]).execute()
      return rows.length === 1 && rows[0]?.message_count === 1 && rows[0].messages.includes('"m-2"')
    })
    const stored = await env.messages(env.topology.streams.events, `${env.settings.naming.rpPrefix}.event.>`)
    expect(stored.map((entry) => entry.msgId)).toEqual(["m-1", "m-3"])
  })

  it("works through rows larger than one sweep loads, one after another", async () => {
    const perRow = 6_000
    for (const row of [1, 2]) {
      await leaveRow(
        `00000000-0000-4000-8000-00000000000${row}`,
        Array.from({ length: perRow }, (_, index) => message("payment.requested", `r${row}-${index}`, index)),
      )
    }
    await env.startEngine()
    await env.waitFor("the outbox to drain", async () => (await outboxRows()) === 0, 30_000)
    const info = await env.jsm.streams.info(env.topology.streams.events)
    expect(info.state.messages).toBe(2 * perRow)
  })
})
