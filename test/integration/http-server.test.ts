import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { World } from "../../harness/World.ts"
import { HttpServer } from "../../src/http/HttpServer.ts"

describe("the engine's HTTP server", () => {
  let world: World
  beforeAll(async () => {
    world = await World.create({}, "http")
  })
  afterAll(() => world.dispose())

  it("listens on the configured host with a free port while the engine runs, and stops with it", async () => {
    const engine = await world.startEngine()
    const server = await engine.runtime.runPromise(HttpServer)
    expect(server.host).toBe("127.0.0.1")
    expect(server.port).toBeGreaterThan(0)
    const unknown = await fetch(`${server.url}/no-such-page`)
    expect(unknown.status).toBe(404)
    await engine.stop()
    await expect(fetch(`${server.url}/no-such-page`)).rejects.toThrow()
  })
})
