/**
 * Messages the engine cannot use go to the dead-letter stream with the
 * reason, and the stream they came from keeps flowing.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { World } from "../../harness/World.ts"
import type { DeadLetter } from "../../src/streams/Messages.ts"
import { commandsInStream, createScheduled } from "../support/scenarios.ts"

describe("dead letters", () => {
  let env: World
  beforeEach(async () => {
    env = await World.create({ consumerMaxDeliveries: 2 })
    await env.startEngine()
  })
  afterEach(async () => {
    await env.dispose()
  })

  const deadLetters = async () =>
    (await env.messages(env.topology.streams.deadLetters, `${env.settings.naming.rpPrefix}.dlq.>`)).map(
      (message) => message.json as DeadLetter,
    )

  it("parks undecodable ticks with their bytes and reasons, and keeps processing ticks", async () => {
    const hub = await env.startHub()
    await createScheduled(env.channel(), "client-1")
    const { subjects } = env.topology
    await env.js.publish(subjects.tick, "not json at all")
    await env.js.publish(subjects.tick, JSON.stringify({ at: "2027-02-30T06:00:00Z" }))
    await env.js.publish(subjects.tick, JSON.stringify({ when: "soon" }))
    await env.tick("2027-01-01T06:00:00Z")
    await hub.waitForCommands(1)

    const letters = await deadLetters()
    expect(letters.map((letter) => [letter.stream, letter.subject, letter.reason])).toEqual([
      [env.topology.streams.ticks, subjects.tick, expect.stringContaining("not JSON")],
      [env.topology.streams.ticks, subjects.tick, "message does not match its schema"],
      [env.topology.streams.ticks, subjects.tick, "message does not match its schema"],
    ])
    expect(Buffer.from(letters[0]?.data ?? "", "base64").toString()).toBe("not json at all")
    expect(letters[1]?.details).toEqual([{ path: "at", message: expect.stringContaining("RFC 3339") }])
    expect(letters[2]?.details).toEqual([{ path: "at", message: expect.stringContaining("Missing key") }])
  })

  it("parks hub results that are malformed or about payments the engine never sent", async () => {
    const hub = await env.startHub()
    await createScheduled(env.channel(), "client-1")
    await env.js.publish(
      env.topology.subjects.hubResult,
      JSON.stringify({ paymentId: "p-1", status: "maybe" }),
    )
    await hub.publishResult({
      paymentId: "5b0d3a52-1111-4222-8333-444455556666",
      status: "succeeded",
      retryable: false,
      at: "2027-01-01T06:00:00Z",
    })
    await env.tick("2027-01-01T06:00:00Z")
    await hub.waitForCommands(1)
    await env.settled()

    const letters = await deadLetters()
    expect(letters.map((letter) => letter.reason)).toEqual([
      "message does not match its schema",
      expect.stringContaining("unknown paymentId"),
    ])
    expect(letters[0]?.details.map((detail) => detail.path).sort()).toEqual(["at", "retryable", "status"])
    const payments = await env.db.selectFrom("payments").select("status").execute()
    expect(payments).toEqual([{ status: "succeeded" }])
  })

  it("parks a result that keeps failing after its retries, and moves on", async () => {
    const hub = await env.startHub({ decide: () => "silent" })
    const broken = await createScheduled(env.channel(), "client-1")
    const healthy = await createScheduled(env.channel(), "client-2", {}, "contract-456")
    await env.tick("2027-01-01T06:00:00Z")
    const commands = await hub.waitForCommands(2)
    await env.db
      .updateTable("subscriptions")
      .set({ state: JSON.stringify({ corrupted: true }) })
      .where("id", "=", broken.subscriptionId)
      .execute()
    // The engine's cached actor would still hold good state: restart so it must read the corrupt row.
    await env.engines[0]?.stop()
    await env.startEngine()
    for (const command of commands) {
      await hub.publishResult(
        { paymentId: command.paymentId, status: "succeeded", retryable: false, at: "2027-01-01T06:00:01Z" },
        `result:${command.paymentId}`,
      )
    }
    await env.settled()

    const letters = await deadLetters()
    expect(letters).toHaveLength(1)
    expect(letters[0]?.reason).toMatch(/^processing failed 2 times/)
    const settledPayment = await env.db
      .selectFrom("payments")
      .select(["subscription_id", "status"])
      .where("subscription_id", "=", healthy.subscriptionId)
      .executeTakeFirstOrThrow()
    expect(settledPayment.status).toBe("succeeded")
    expect(await commandsInStream(env)).toHaveLength(2)
  })
})
