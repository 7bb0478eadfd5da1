/**
 * The engine's own clock (`RP_CLOCK=on`): ticks on interval boundaries, each
 * stored once even when several engines run their clocks, and engine time
 * follows them.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { World } from "../../harness/World.ts"

describe("engine clock", () => {
  let env: World
  beforeEach(async () => {
    env = await World.create({ clock: "on", tickIntervalMs: 1_000 })
  })
  afterEach(async () => {
    await env.dispose()
  })

  it("publishes aligned ticks once per boundary, whichever engine publishes them, and follows them", async () => {
    await env.startEngine()
    await env.startEngine({ instanceId: "second-engine" })
    await env.waitFor(
      "three ticks",
      async () => (await env.messages(env.topology.streams.ticks, env.topology.subjects.tick)).length >= 3,
    )

    const ticks = await env.messages(env.topology.streams.ticks, env.topology.subjects.tick)
    const times = ticks.map((tick) => (tick.json as { at: string }).at)
    expect(times.every((at) => Date.parse(at) % 1_000 === 0)).toBe(true)
    expect(new Set(times).size).toBe(times.length)
    expect(ticks.every((tick) => tick.msgId === `tick:${(tick.json as { at: string }).at}`)).toBe(true)

    const newest = Math.max(...times.map((at) => Date.parse(at)))
    await env.waitFor("engine time to reach the newest tick", async () => {
      const clock = await env.db.selectFrom("engine_clock").select("now").executeTakeFirst()
      return clock !== undefined && clock.now.getTime() >= newest
    })
  })
})
