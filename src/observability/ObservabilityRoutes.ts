/**
 * The engine's operational HTTP endpoints: `/metrics` (Prometheus text
 * format, this instance's registry), `/health/live` and `/health/ready`.
 */
import { Effect, Layer } from "effect"
import { EngineConfig } from "../EngineConfig.ts"
import { HttpApp } from "../http/HttpServer.ts"
import { registerEngineGauges } from "./EngineGauges.ts"
import { Health } from "./Health.ts"
import { Metrics } from "./Metrics.ts"

/** Adds the metrics and health routes to the engine's HTTP application. */
export const ObservabilityRoutes = Layer.effectDiscard(
  Effect.gen(function* () {
    const app = yield* HttpApp
    const { registry } = yield* Metrics
    const health = yield* Health
    const { instanceId } = yield* EngineConfig
    yield* registerEngineGauges

    app.get("/metrics", async (c) =>
      c.body(await registry.metrics(), 200, { "content-type": registry.contentType }),
    )
    app.get("/health/live", async (c) => {
      try {
        await health.live()
        return c.json({ status: "live", instance: instanceId })
      } catch (error) {
        return c.json({ status: "not live", instance: instanceId, reason: String(error) }, 503)
      }
    })
    app.get("/health/ready", async (c) => {
      const readiness = await health.ready()
      return c.json(
        { status: readiness.ready ? "ready" : "not ready", instance: instanceId, ...readiness },
        readiness.ready ? 200 : 503,
      )
    })
  }),
).pipe(Layer.provide(Health.layer))
