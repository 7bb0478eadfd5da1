/**
 * The NATS connection, with its JetStream client and manager, as a scoped
 * service. Opened when the engine starts and drained when it stops, so
 * replies and publishes already handed to the client still go out.
 */
import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream"
import { connect, type NatsConnection } from "@nats-io/transport-node"
import { Context, Effect, Layer } from "effect"
import { EngineConfig } from "../EngineConfig.ts"

/** A live NATS connection and its JetStream views. */
export interface NatsService {
  readonly connection: NatsConnection
  readonly js: JetStreamClient
  readonly jsm: JetStreamManager
}

/** The engine's NATS connection. */
export class Nats extends Context.Service<Nats, NatsService>()("rp/streams/Nats") {
  static readonly layer = Layer.effect(
    Nats,
    Effect.gen(function* () {
      const config = yield* EngineConfig
      const connection = yield* Effect.acquireRelease(
        Effect.promise(() =>
          connect({
            servers: config.natsUrl,
            name: `rp-engine:${config.instanceId}`,
            // Keep reconnecting for as long as it takes: a NATS restart must not stop the engine.
            maxReconnectAttempts: -1,
            reconnectTimeWait: 500,
            // Stack traces for every request cost more CPU than the requests themselves in a burst.
            noAsyncTraces: true,
          }),
        ),
        (connection) => Effect.promise(() => connection.drain().catch(() => undefined)),
      )
      const jsm = yield* Effect.promise(() => jetstreamManager(connection))
      const js = jetstream(connection, { timeout: 10_000 })
      yield* Effect.logInfo("nats connected").pipe(Effect.annotateLogs({ server: connection.getServer() }))
      return Nats.of({ connection, js, jsm })
    }),
  )
}
