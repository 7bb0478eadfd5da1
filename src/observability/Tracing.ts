/**
 * Span export: off unless `RP_OTLP_ENDPOINT` names an OTLP/HTTP collector.
 * Effect's own OTLP exporter (JSON over fetch) is used, so exporting adds no
 * dependency; without it, spans still exist in memory and their trace
 * context still travels in NATS headers, they are just not sent anywhere.
 */
import { Effect, Layer } from "effect"
import { EngineConfig } from "../EngineConfig.ts"

/** The traces URL for an endpoint given as a collector's base URL (`http://collector:4318`) or in full. */
export const tracesUrl = (endpoint: string): string => {
  const url = new URL(endpoint)
  if (url.pathname === "" || url.pathname === "/") url.pathname = "/v1/traces"
  return url.toString()
}

/** The OTLP span exporter when configured, nothing otherwise. */
export const TracingFromConfig = Layer.unwrap(
  Effect.gen(function* () {
    const config = yield* EngineConfig
    if (config.otlpEndpoint === "") return Layer.empty
    // Loaded only when export is on: an engine that does not export never loads the HTTP client.
    const [{ FetchHttpClient }, { OtlpSerialization, OtlpTracer }] = yield* Effect.promise(() =>
      Promise.all([import("effect/http"), import("effect/observability")]),
    )
    return OtlpTracer.layer({
      url: tracesUrl(config.otlpEndpoint),
      resource: {
        serviceName: "recurring-payments-engine",
        attributes: { "service.instance.id": config.instanceId },
      },
    }).pipe(Layer.provide(OtlpSerialization.layerJson), Layer.provide(FetchHttpClient.layer))
  }),
)
