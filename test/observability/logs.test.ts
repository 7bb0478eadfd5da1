/**
 * Structured logs of a real engine process (`RP_LOG_FORMAT=json`): every line
 * names the instance, and a line about one payment logged while its
 * subscription's actor works names both the subscription and the payment.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { World } from "../../harness/World.ts"
import { createScheduled } from "../support/scenarios.ts"

interface JsonLogLine {
  readonly message: unknown
  readonly level: string
  readonly annotations: Readonly<Record<string, unknown>>
}

describe("structured logs", () => {
  let env: World
  beforeEach(async () => {
    env = await World.create()
  })
  afterEach(async () => {
    await env.dispose()
  })

  it("carry the instance on every line, and subscriptionId and paymentId on the actor's payment lines", async () => {
    const engine = await env.spawnEngine({ RP_LOG_FORMAT: "json", RP_LOG_LEVEL: "Info" })
    let output = ""
    engine.stdout?.on("data", (chunk: Buffer) => {
      output += chunk.toString()
    })
    const lines = () =>
      output
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as JsonLogLine)

    // No hub listens: the command goes unanswered, and when its result is overdue the actor asks
    // the hub for the payment's status and logs that nobody answered.
    const subscription = await createScheduled(env.channel(), "client-1")
    await env.tick("2027-01-01T06:00:00Z")
    await env.tick("2027-01-01T06:15:00Z")
    await env.waitFor("the failed status query to be logged", async () =>
      lines().some((line) => line.message === "hub status query failed"),
    )
    const payment = await env.db.selectFrom("payments").select("payment_id").executeTakeFirstOrThrow()

    const query = lines().find((line) => line.message === "hub status query failed")
    expect(query?.annotations).toMatchObject({
      instance: `${env.settings.instanceId}-process`,
      subscriptionId: subscription.subscriptionId,
      paymentId: payment.payment_id,
    })
    // Everything logged since the engine said it was ready (the tick lines among them).
    expect(lines().some((line) => line.message === "tick processed")).toBe(true)
    for (const line of lines()) expect(line.annotations.instance).toBe(`${env.settings.instanceId}-process`)
  })
})
