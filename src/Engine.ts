/**
 * The engine as one layer: every component, wired bottom-up. Building it
 * migrates the database, creates missing streams and consumers, and starts
 * serving; closing its scope stops consuming first, then lets in-flight
 * commits and publishes finish, then closes the connections.
 */
import { Effect, Layer, References } from "effect"
import { EngineClock } from "./actors/EngineClock.ts"
import { LiveSettings } from "./actors/LiveSettings.ts"
import { PartitionKeeper } from "./actors/PartitionKeeper.ts"
import { Partitions } from "./actors/Partitions.ts"
import { ProviderRouter } from "./actors/ProviderRouter.ts"
import { ReminderRouter } from "./actors/ReminderRouter.ts"
import { ResultRouter } from "./actors/ResultRouter.ts"
import { Scheduler } from "./actors/Scheduler.ts"
import { SubscriptionActors } from "./actors/SubscriptionActors.ts"
import { ConsoleOperations } from "./console/ConsoleOperations.ts"
import { ConsoleRoutes } from "./console/ConsoleRoutes.ts"
import { EngineConfig } from "./EngineConfig.ts"
import { HttpServer } from "./http/HttpServer.ts"
import { Metrics } from "./observability/Metrics.ts"
import { ObservabilityRoutes } from "./observability/ObservabilityRoutes.ts"
import { TracingFromConfig } from "./observability/Tracing.ts"
import { Channels } from "./protocol/Channels.ts"
import { ProtocolHandler, ProtocolServer } from "./protocol/ProtocolServer.ts"
import { ClusterSecretStore } from "./store/ClusterSecret.ts"
import { Database } from "./store/Database.ts"
import { HistoryStore } from "./store/HistoryStore.ts"
import { InboxStore } from "./store/InboxStore.ts"
import { LeaseStore } from "./store/LeaseStore.ts"
import { PaymentStore } from "./store/PaymentStore.ts"
import { ProviderRegistry } from "./store/ProviderRegistry.ts"
import { RequestLog } from "./store/RequestLog.ts"
import { RetentionPruner } from "./store/Retention.ts"
import { SubscriptionStore } from "./store/SubscriptionStore.ts"
import { TemplateStore } from "./store/TemplateStore.ts"
import { TransitionCommitter } from "./store/TransitionCommitter.ts"
import { ClockPublisher } from "./streams/ClockPublisher.ts"
import { DeadLetters } from "./streams/DeadLetters.ts"
import { Dependencies } from "./streams/Dependencies.ts"
import { HubStatus } from "./streams/HubStatus.ts"
import { InboundStreams } from "./streams/InboundStreams.ts"
import { InternalAuth } from "./streams/InternalAuth.ts"
import { Nats } from "./streams/Nats.ts"
import { OutboxPublisher } from "./streams/OutboxPublisher.ts"
import { Topology } from "./streams/Topology.ts"

const connections = Layer.mergeAll(Database.layer, Nats.layer, Metrics.layer)

const foundations = Layer.mergeAll(
  Topology.layer,
  OutboxPublisher.layer,
  EngineClock.layer,
  SubscriptionStore.layer,
  TemplateStore.layer,
  HistoryStore.layer,
  PaymentStore.layer,
  InboxStore.layer,
  RequestLog.layer,
  ProviderRegistry.layer,
  Channels.layer,
  LeaseStore.layer,
  LiveSettings.layer,
  ClusterSecretStore.layer,
).pipe(Layer.provideMerge(Dependencies.layer))

/** Every service of the engine, without the parts that start work (for tests that drive pieces directly). */
export const EngineServices = Layer.mergeAll(
  Scheduler.layer,
  ResultRouter.layer,
  ProviderRouter.layer,
  ReminderRouter.layer,
  ProtocolHandler.layer,
  ConsoleOperations.layer,
).pipe(
  Layer.provideMerge(SubscriptionActors.layer),
  Layer.provideMerge(
    Layer.mergeAll(
      TransitionCommitter.layer,
      HubStatus.layer,
      DeadLetters.layer,
      Partitions.layer,
      InternalAuth.layer,
    ),
  ),
  Layer.provideMerge(foundations),
  Layer.provideMerge(connections),
)

/** Every feature's HTTP routes; the server listens once all of them are in place. */
const httpRoutes = Layer.mergeAll(ConsoleRoutes, ObservabilityRoutes)

/** Every log line of the engine names its instance: several run side by side, and in one process in tests. */
const instanceLogAnnotation = Layer.effect(
  References.CurrentLogAnnotations,
  Effect.map(EngineConfig, (config) => ({ instance: config.instanceId })),
)

/** The running engine: its services plus the protocol server, the consumers, the clock and the HTTP server. */
export const EngineLive = Layer.mergeAll(
  ProtocolServer,
  InboundStreams,
  ClockPublisher,
  PartitionKeeper,
  RetentionPruner,
  HttpServer.layer(httpRoutes),
).pipe(
  Layer.provideMerge(EngineServices),
  Layer.provide(Layer.mergeAll(instanceLogAnnotation, TracingFromConfig)),
)

/** Builds the engine, says so, and runs until interrupted (SIGTERM, SIGINT). */
export const runEngine = Effect.gen(function* () {
  const config = yield* EngineConfig
  return yield* Effect.gen(function* () {
    yield* Layer.build(EngineLive)
    yield* Effect.logInfo("engine ready").pipe(
      Effect.annotateLogs({ clock: config.clock, nats: config.natsUrl }),
    )
    return yield* Effect.never.pipe(
      Effect.onInterrupt(() =>
        Effect.logInfo("engine stopping: consumers stop, in-flight commits and publishes finish"),
      ),
    )
  }).pipe(
    Effect.scoped,
    Effect.ensuring(Effect.logInfo("engine stopped")),
    Effect.annotateLogs({ instance: config.instanceId }),
  )
})
