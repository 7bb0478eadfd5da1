/**
 * Liveness and readiness: ready on a running engine; not ready, saying why,
 * while its Postgres refuses connections or its NATS server is down; ready
 * again once they are back.
 */
import pg from "pg"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { PrivateNatsServer } from "../../harness/faults/NatsServer.ts"
import { World } from "../../harness/World.ts"
import { httpUrlOf } from "./prometheus.ts"

const ADMIN_URL = process.env.TEST_DATABASE_ADMIN_URL ?? "postgres://postgres@127.0.0.1:5432/postgres"

interface ReadinessBody {
  readonly status: string
  readonly failed: ReadonlyArray<string>
  readonly checks: Readonly<Record<string, string>>
}

const readiness = async (url: string) => {
  const response = await fetch(`${url}/health/ready`)
  return { code: response.status, body: (await response.json()) as ReadinessBody }
}

/** Runs one statement as the Postgres superuser, outside the world's database. */
const asAdmin = async (statement: string) => {
  const admin = new pg.Client({ connectionString: ADMIN_URL })
  await admin.connect()
  try {
    await admin.query(statement)
  } finally {
    await admin.end()
  }
}

describe("health", () => {
  let env: World
  beforeEach(async () => {
    env = await World.create()
  })
  afterEach(async () => {
    await asAdmin(`ALTER DATABASE ${env.databaseName} ALLOW_CONNECTIONS true`)
    await env.dispose()
  })

  it("is live and ready while running, not ready while Postgres refuses it, and ready again after", async () => {
    const url = await httpUrlOf(await env.startEngine())

    const live = await fetch(`${url}/health/live`)
    expect(live.status).toBe(200)
    expect(await live.json()).toMatchObject({ status: "live", instance: env.settings.instanceId })

    // The consumers start in the background right after the engine is built.
    await env.waitFor("the engine to be ready", async () => (await readiness(url)).code === 200)
    const ready = await readiness(url)
    expect(ready.body).toMatchObject({
      status: "ready",
      failed: [],
      checks: { postgres: "ok", migrations: "ok", nats: "ok", streams: "ok", consumers: "ok" },
    })

    // No new connection is allowed, and the ones open (the engine's pool among them) are closed.
    await asAdmin(`ALTER DATABASE ${env.databaseName} ALLOW_CONNECTIONS false`)
    await asAdmin(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${env.databaseName}'`,
    )
    let refused = await readiness(url)
    await env.waitFor("readiness to notice Postgres is gone", async () => {
      refused = await readiness(url)
      return refused.code === 503
    })
    expect(refused.body.status).toBe("not ready")
    expect(refused.body.failed).toContain("postgres")
    expect(refused.body.checks.postgres).toMatch(/query failed/)
    expect(refused.body.checks.nats).toBe("ok")
    // The process itself is fine: liveness does not depend on Postgres.
    expect((await fetch(`${url}/health/live`)).status).toBe(200)

    await asAdmin(`ALTER DATABASE ${env.databaseName} ALLOW_CONNECTIONS true`)
    await env.waitFor("readiness to come back with Postgres", async () => (await readiness(url)).code === 200)
  })

  it("is not ready while its NATS server is down, and ready again once it is back", async () => {
    // A private server: stopping the shared one would pull it from under every other test.
    const server = await PrivateNatsServer.start()
    const world = await World.create({ natsUrl: server.url })
    try {
      const url = await httpUrlOf(await world.startEngine())
      await world.waitFor("the engine to be ready", async () => (await readiness(url)).code === 200)

      await server.stop()
      let refused = await readiness(url)
      await world.waitFor("readiness to notice NATS is gone", async () => {
        refused = await readiness(url)
        return refused.code === 503
      })
      expect(refused.body.failed).toContain("nats")
      expect(refused.body.checks.postgres).toBe("ok")
      expect((await fetch(`${url}/health/live`)).status).toBe(200)

      await server.restart()
      await world.waitFor("readiness to come back with NATS", async () => (await readiness(url)).code === 200)
    } finally {
      await world.dispose()
      await server.dispose()
    }
  })
})
