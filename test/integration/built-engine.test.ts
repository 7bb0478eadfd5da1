/**
 * The engine as `npm start` runs it: the bundle `npm run build` writes, on
 * plain node. Every other test runs the sources; this one makes sure the
 * bundle is a working engine too (its migrations, streams, protocol and
 * payments all inside it) and that it stops cleanly.
 */
import { execFileSync } from "node:child_process"
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest"
import { World } from "../../harness/World.ts"
import { createScheduled, getSubscription } from "../support/scenarios.ts"

describe("the built engine", () => {
  let env: World
  beforeAll(() => {
    execFileSync("npm", ["run", "-s", "build"], { stdio: "inherit" })
  })
  beforeEach(async () => {
    env = await World.create()
  })
  afterEach(async () => {
    await env.dispose()
  })

  it("migrates a fresh database, pays a due subscription once and stops cleanly on SIGTERM", async () => {
    const engine = await env.spawnEngine({}, "build")
    const hub = await env.startHub()
    const mobile = env.channel()
    const subscription = await createScheduled(mobile, "client-1")
    expect((await getSubscription(mobile, "client-1", subscription.subscriptionId)).status).toBe("active")

    await env.tick("2027-01-01T06:00:00Z")
    await hub.waitForCommands(1, 30_000)
    await env.waitFor("the payment to be recorded as succeeded", async () => {
      const payments = await env.db.selectFrom("payments").select("status").execute()
      return payments.length === 1 && payments[0]?.status === "succeeded"
    })
    expect(hub.commands.map((command) => command.subscriptionId)).toEqual([subscription.subscriptionId])

    const exited = new Promise<number | null>((resolve) => engine.once("exit", (code) => resolve(code)))
    engine.kill("SIGTERM")
    expect(await exited).toBe(0)
  })
})
