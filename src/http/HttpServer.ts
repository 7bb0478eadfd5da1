/**
 * The engine's HTTP side: one hono application, served by node's http server
 * on `RP_HTTP_HOST:RP_HTTP_PORT` for as long as the engine runs.
 *
 * Features add their routes in layers of their own that read `HttpApp`; the
 * server starts listening only after every one of them is built, because
 * hono's router is compiled on the first request and refuses routes after.
 */
import { type ServerType, serve } from "@hono/node-server"
import { Context, Effect, Layer } from "effect"
import { Hono } from "hono"
import { EngineConfig } from "../EngineConfig.ts"

/** The application that routes are added to while the engine is being built. */
export class HttpApp extends Context.Service<HttpApp, Hono>()("rp/HttpApp") {
  static readonly layer = Layer.sync(HttpApp, () => new Hono())
}

/** Where the server listens, once it does (the port is the bound one, also when configured as 0). */
export interface HttpServerService {
  readonly host: string
  readonly port: number
  readonly url: string
}

export class HttpServer extends Context.Service<HttpServer, HttpServerService>()("rp/HttpServer") {
  /**
   * Builds `routes` on a fresh application, then listens. Closing the scope
   * stops accepting connections and waits for open requests to finish.
   */
  static readonly layer = <E, R>(routes: Layer.Layer<never, E, R>) =>
    Layer.effect(HttpServer, listen).pipe(Layer.provide(routes), Layer.provide(HttpApp.layer))
}

const listen = Effect.gen(function* () {
  const app = yield* HttpApp
  const config = yield* EngineConfig
  const host = config.httpHost
  const server = yield* Effect.acquireRelease(
    Effect.callback<ServerType, Error>((resume) => {
      const started = serve({ fetch: app.fetch, port: config.httpPort, hostname: host }, () =>
        resume(Effect.succeed(started)),
      )
      started.once("error", (error) => resume(Effect.fail(error)))
    }),
    (server) =>
      Effect.callback<void>((resume) => {
        server.close(() => resume(Effect.void))
        // Keep-alive sockets would hold close() open until they time out; idle ones go now.
        if ("closeIdleConnections" in server) server.closeIdleConnections()
      }),
  ).pipe(
    Effect.mapError(
      (error) => new Error(`HTTP server could not listen on ${host}:${config.httpPort}: ${error.message}`),
    ),
    Effect.orDie,
  )
  const address = server.address()
  const port = typeof address === "object" && address !== null ? address.port : config.httpPort
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`
  yield* Effect.logInfo("http ready").pipe(Effect.annotateLogs({ url }))
  return { host, port, url }
})
