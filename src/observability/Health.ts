/**
 * Liveness and readiness of one engine instance.
 *
 * Live: the process answers and its Effect runtime still runs fibers.
 * Ready: the instance can do its work right now: the schema is migrated,
 * Postgres answers a query within a short timeout, NATS is connected, every
 * stream and durable consumer exists on the server, every consumer is
 * consuming in this process (consumers pause while Postgres or NATS is
 * unreachable, and the check names which), and the protocol server answers
 * requests. Each check is bounded by `checkTimeoutMs`, so a
 * probe answers quickly even while Postgres or NATS hang.
 */
import { Context, Effect, Layer } from "effect"
import { sql } from "kysely"
import { Database } from "../store/Database.ts"
import { migrations } from "../store/migrations/index.ts"
import { Dependencies, withTimeout } from "../streams/Dependencies.ts"
import { Nats } from "../streams/Nats.ts"
import { durableConsumers, Topology } from "../streams/Topology.ts"
import { Metrics } from "./Metrics.ts"

/** How long one readiness check may take before it counts as failed. */
export const checkTimeoutMs = 1_000

/** One check's verdict: `ok`, or why not. */
export type CheckResult = "ok" | string

/** What a readiness probe answers. */
export interface Readiness {
  readonly ready: boolean
  readonly checks: Readonly<
    Record<"postgres" | "migrations" | "nats" | "streams" | "consumers" | "protocol", CheckResult>
  >
  /** The names of the checks that failed, for a quick read of the body. */
  readonly failed: ReadonlyArray<string>
}

const verdict = async (check: () => Promise<CheckResult>): Promise<CheckResult> => {
  try {
    return await withTimeout(check(), checkTimeoutMs)
  } catch (error) {
    return error instanceof Error ? error.message : String(error)
  }
}

/** The instance's health checks. */
export class Health extends Context.Service<
  Health,
  {
    /** Resolves once a fiber of the engine's runtime ran, or fails after the timeout. */
    readonly live: () => Promise<void>
    readonly ready: () => Promise<Readiness>
  }
>()("rp/observability/Health") {
  static readonly layer = Layer.effect(
    Health,
    Effect.gen(function* () {
      const { db } = yield* Database
      const { connection, jsm } = yield* Nats
      const topology = yield* Topology
      const metrics = yield* Metrics
      const dependencies = yield* Dependencies
      const context = yield* Effect.context<never>()
      const runPromise = Effect.runPromiseWith(context)

      // The client reports connection changes as they happen; a probe only reads the latest.
      let natsConnected = !connection.isClosed()
      yield* Effect.forkScoped(
        Effect.promise(async () => {
          for await (const status of connection.status()) {
            if (status.type === "disconnect" || status.type === "close" || status.type === "staleConnection")
              natsConnected = false
            else if (status.type === "reconnect") natsConnected = true
          }
        }),
      )

      const durables = durableConsumers(topology)
      const expectedMigrations = Object.keys(migrations)

      const checkPostgres = async (): Promise<{ postgres: CheckResult; migrations: CheckResult }> => {
        try {
          const rows = await withTimeout(
            sql<{ name: string }>`SELECT name FROM rp_migrations`.execute(db),
            checkTimeoutMs,
          )
          const applied = new Set(rows.rows.map((row) => row.name))
          const missing = expectedMigrations.filter((name) => !applied.has(name))
          return {
            postgres: "ok",
            migrations: missing.length === 0 ? "ok" : `not applied: ${missing.join(", ")}`,
          }
        } catch (error) {
          const why = `query failed: ${error instanceof Error ? error.message : String(error)}`
          return { postgres: why, migrations: "unknown: postgres did not answer" }
        }
      }

      const checkStreams = () =>
        verdict(async () => {
          await Promise.all(Object.values(topology.streams).map((stream) => jsm.streams.info(stream)))
          return "ok"
        })

      const checkConsumers = () =>
        verdict(async () => {
          const running = metrics.runningConsumers()
          const stopped = durables
            .filter(({ consumer }) => !running.has(consumer))
            .map(({ consumer }) => consumer)
          // Consumers stop pulling while a dependency is down, and say so.
          const down = [...dependencies.down().keys()]
          const paused = down.length === 0 ? "" : ` (paused while ${down.join(" and ")} is unreachable)`
          if (stopped.length > 0) return `not consuming: ${stopped.join(", ")}${paused}`
          await Promise.all(durables.map(({ stream, consumer }) => jsm.consumers.info(stream, consumer)))
          return "ok"
        })

      return Health.of({
        live: () => withTimeout(runPromise(Effect.yieldNow), checkTimeoutMs),
        ready: async () => {
          const nats: CheckResult =
            natsConnected && !connection.isClosed() ? "ok" : "not connected to the NATS server"
          const [postgres, streamCheck, consumerCheck] = await Promise.all([
            checkPostgres(),
            checkStreams(),
            checkConsumers(),
          ])
          const protocolDown = metrics.protocolNotServing()
          const protocol: CheckResult = protocolDown === undefined ? "ok" : `not serving: ${protocolDown}`
          const checks = { ...postgres, nats, streams: streamCheck, consumers: consumerCheck, protocol }
          const failed = Object.entries(checks)
            .filter(([, result]) => result !== "ok")
            .map(([name]) => name)
          return { ready: failed.length === 0, checks, failed }
        },
      })
    }),
  )
}
