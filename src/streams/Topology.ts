/**
 * Every subject, stream and durable consumer name the engine uses, derived
 * from the configured prefixes, and the code that creates the streams and
 * consumers when they are missing.
 *
 * The engine creates and extends, never deletes: an existing stream keeps its
 * data and limits, and only gains subjects it lacks.
 */
import {
  AckPolicy,
  type ConsumerConfig,
  DeliverPolicy,
  JetStreamApiError,
  type JetStreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "@nats-io/jetstream"
import { nanos } from "@nats-io/transport-node"
import { Context, Duration, Effect, Layer, Schedule } from "effect"
import { EngineConfig, type Naming } from "../EngineConfig.ts"
import { Nats } from "./Nats.ts"

/** Names of the engine's streams. */
export interface StreamNames {
  readonly ticks: string
  readonly providers: string
  readonly hubPayments: string
  readonly events: string
  readonly deadLetters: string
}

/** Durable consumer names, one per inbound subject the engine processes. */
export interface ConsumerNames {
  readonly ticks: string
  readonly hubResults: string
  readonly thresholdEvents: string
  readonly debtResponses: string
  readonly hubCompleted: string
}

/** Every durable consumer of the engine with its stream, and what it reads (for probes, gauges, pages). */
export const durableConsumers = ({
  streams,
  consumers,
}: TopologyService): ReadonlyArray<{
  readonly stream: string
  readonly consumer: string
  readonly what: string
}> => [
  { stream: streams.ticks, consumer: consumers.ticks, what: "ticks (the clock)" },
  { stream: streams.hubPayments, consumer: consumers.hubResults, what: "hub payment results" },
  { stream: streams.hubPayments, consumer: consumers.hubCompleted, what: "one-off payments (reminders)" },
  { stream: streams.providers, consumer: consumers.thresholdEvents, what: "balance readings" },
  { stream: streams.providers, consumer: consumers.debtResponses, what: "debt answers" },
]

/** Names the instance that announced a new engine time on `rp.internal.clock` (it sweeps its own partitions itself). */
export const ANNOUNCER_HEADER = "Rp-Instance"

/** Subjects the engine publishes to or listens on. */
export interface Subjects {
  /** Wildcard the protocol server subscribes to: `rp.v3.*`. */
  readonly channelRequests: string
  readonly channelRequest: (channel: string) => string
  /** Position of the `<channel>` token in a request subject. */
  readonly channelTokenIndex: number
  readonly tick: string
  readonly hubCommand: string
  readonly hubResult: string
  readonly hubCompleted: string
  readonly hubStatus: string
  readonly event: (type: string) => string
  readonly notify: (clientId: string) => string
  readonly deadLetter: (stream: string) => string
  readonly providerAll: string
  /** `provider.*.threshold.event`: balance readings from every provider. */
  readonly thresholdEvents: string
  /** `provider.*.debt.response`: answers to debt queries from every provider. */
  readonly debtResponses: string
  /** What the engine publishes to one provider: `provider.<providerId>.<topic>`. */
  readonly toProvider: (providerId: string, topic: string) => string
  readonly eventsAll: string
  readonly notifyAll: string
  readonly deadLettersAll: string
  /** Core NATS, between instances: messages for partition `p`, answered by its owner. */
  readonly partitionInbox: (partition: number) => string
  /** Core NATS, between instances: channel requests that change a subscription of partition `p`. */
  readonly partitionRequests: (partition: number) => string
  /** Core NATS, between instances: console changes to a subscription of partition `p`. */
  readonly partitionConsole: (partition: number) => string
  /** Every instance listens here and the owner of `<p>` answers: `rp.internal.partition.*.console`. */
  readonly partitionConsoleAll: string
  /** Core NATS, between instances: engine time moved (so every instance sweeps its partitions at once). */
  readonly clockAdvanced: string
}

/** The whole naming scheme, computed once from configuration. */
export interface TopologyService {
  readonly streams: StreamNames
  readonly consumers: ConsumerNames
  readonly subjects: Subjects
}

/** Builds every name from the configured prefixes. */
export const makeTopology = (naming: Naming): TopologyService => {
  const { rpPrefix: rp, providerPrefix: provider, hubPrefix: hub, streamPrefix } = naming
  return {
    streams: {
      ticks: `${streamPrefix}RP_TICKS`,
      providers: `${streamPrefix}RP_PROVIDERS`,
      hubPayments: `${streamPrefix}HUB_PAYMENTS`,
      events: `${streamPrefix}RP_EVENTS`,
      deadLetters: `${streamPrefix}RP_DLQ`,
    },
    consumers: {
      ticks: "rp-engine-ticks",
      hubResults: "rp-engine-hub-results",
      thresholdEvents: "rp-engine-threshold-events",
      debtResponses: "rp-engine-debt-responses",
      hubCompleted: "rp-engine-hub-completed",
    },
    subjects: {
      channelRequests: `${rp}.v3.*`,
      channelRequest: (channel) => `${rp}.v3.${channel}`,
      channelTokenIndex: rp.split(".").length + 1,
      tick: `${rp}.tick`,
      hubCommand: `${hub}.payment.command`,
      hubResult: `${hub}.payment.result`,
      hubCompleted: `${hub}.payment.completed`,
      hubStatus: `${hub}.payment.status`,
      event: (type) => `${rp}.event.${type}`,
      notify: (clientId) => `${rp}.notify.${clientId}`,
      deadLetter: (stream) => `${rp}.dlq.${stream}`,
      providerAll: `${provider}.>`,
      thresholdEvents: `${provider}.*.threshold.event`,
      debtResponses: `${provider}.*.debt.response`,
      toProvider: (providerId, topic) => `${provider}.${providerId}.${topic}`,
      eventsAll: `${rp}.event.>`,
      notifyAll: `${rp}.notify.>`,
      deadLettersAll: `${rp}.dlq.>`,
      partitionInbox: (partition) => `${rp}.internal.partition.${partition}`,
      partitionRequests: (partition) => `${rp}.internal.partition.${partition}.request`,
      partitionConsole: (partition) => `${rp}.internal.partition.${partition}.console`,
      partitionConsoleAll: `${rp}.internal.partition.*.console`,
      clockAdvanced: `${rp}.internal.clock`,
    },
  }
}

/** The stream definitions the engine needs. Request-reply subjects stay out of every stream. */
export const streamDefinitions = (topology: TopologyService, duplicateWindowMs: number, replicas: number) => {
  const base = {
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    duplicate_window: nanos(duplicateWindowMs),
    num_replicas: replicas,
  }
  const { streams, subjects } = topology
  return [
    { ...base, name: streams.ticks, subjects: [subjects.tick] },
    { ...base, name: streams.providers, subjects: [subjects.providerAll] },
    {
      ...base,
      name: streams.hubPayments,
      subjects: [subjects.hubCommand, subjects.hubResult, subjects.hubCompleted],
    },
    { ...base, name: streams.events, subjects: [subjects.eventsAll, subjects.notifyAll] },
    { ...base, name: streams.deadLetters, subjects: [subjects.deadLettersAll] },
  ] satisfies ReadonlyArray<Partial<StreamConfig> & { name: string; subjects: Array<string> }>
}

const isNotFound = (error: unknown): boolean =>
  error instanceof JetStreamApiError && (error.status === 404 || error.code === 10059 || error.code === 10014)

const ensureStream = async (
  jsm: JetStreamManager,
  definition: Partial<StreamConfig> & { name: string; subjects: Array<string> },
): Promise<"created" | "extended" | "present"> => {
  try {
    const info = await jsm.streams.info(definition.name)
    const missing = definition.subjects.filter((subject) => !info.config.subjects.includes(subject))
    if (missing.length === 0) return "present"
    await jsm.streams.update(definition.name, {
      ...info.config,
      subjects: [...info.config.subjects, ...missing],
    })
    return "extended"
  } catch (error) {
    if (!isNotFound(error)) throw error
    try {
      await jsm.streams.add(definition)
      return "created"
    } catch (addError) {
      // Another instance created it between our info and add: that is the outcome we wanted.
      if (addError instanceof JetStreamApiError && addError.code === 10058) return "present"
      throw addError
    }
  }
}

const ensureConsumer = async (
  jsm: JetStreamManager,
  stream: string,
  config: Partial<ConsumerConfig> & { durable_name: string },
): Promise<"created" | "present"> => {
  try {
    await jsm.consumers.info(stream, config.durable_name)
    return "present"
  } catch (error) {
    if (!isNotFound(error)) throw error
    await jsm.consumers.add(stream, config)
    return "created"
  }
}

/** Durable pull consumer definitions for everything the engine consumes. */
export const consumerDefinitions = (topology: TopologyService, ackWaitMs: number, tickAckWaitMs: number) => {
  const base = {
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(ackWaitMs),
    // Poison messages are moved to the dead-letter stream by the engine itself, so
    // the server never gives up on a message silently.
    max_deliver: -1,
  }
  return [
    {
      stream: topology.streams.ticks,
      // Ticks are processed strictly one at a time, in order: engine time only moves forward.
      config: {
        ...base,
        durable_name: topology.consumers.ticks,
        filter_subject: topology.subjects.tick,
        // Kept alive by heartbeats while a sweep runs; a dead sweeper's tick moves on quickly.
        ack_wait: nanos(tickAckWaitMs),
        max_ack_pending: 1,
      },
    },
    {
      stream: topology.streams.hubPayments,
      config: {
        ...base,
        durable_name: topology.consumers.hubResults,
        filter_subject: topology.subjects.hubResult,
        // Results are handled concurrently, this many at most: the bound on the engine's memory in a burst.
        max_ack_pending: 5_000,
      },
    },
    {
      stream: topology.streams.providers,
      // Readings for different accounts are handled concurrently; one subscription's actor keeps order.
      config: {
        ...base,
        durable_name: topology.consumers.thresholdEvents,
        filter_subject: topology.subjects.thresholdEvents,
        max_ack_pending: 5_000,
      },
    },
    {
      stream: topology.streams.providers,
      config: {
        ...base,
        durable_name: topology.consumers.debtResponses,
        filter_subject: topology.subjects.debtResponses,
        max_ack_pending: 1_000,
      },
    },
    {
      stream: topology.streams.hubPayments,
      // One-off payments feed reminders; see ReminderRouter for how two at once are settled.
      config: {
        ...base,
        durable_name: topology.consumers.hubCompleted,
        filter_subject: topology.subjects.hubCompleted,
        max_ack_pending: 100,
      },
    },
  ]
}

/**
 * Runs one stream or consumer set-up step, again after a short pause when JetStream fails it: a
 * server that is starting, electing a leader, or (seen on 2.9.10) cleaning up the directory of an
 * account's last deleted stream just as a new one is created ("error creating store for stream")
 * answers an error that the next attempt does not get. After the last attempt the error stands
 * and the engine does not start.
 */
export const setupAttempts = 6

export const withSetupRetries = <A>(what: string, step: () => Promise<A>): Effect.Effect<A> =>
  Effect.tryPromise({ try: step, catch: (error) => error }).pipe(
    Effect.tapError((error) =>
      Effect.logWarning(`${what} failed; trying again`).pipe(
        Effect.annotateLogs({ error: error instanceof Error ? error.message : String(error) }),
      ),
    ),
    Effect.retry({ schedule: Schedule.exponential(Duration.millis(100)), times: setupAttempts - 1 }),
    Effect.orDie,
  )

/** The engine's names, plus the streams and consumers guaranteed to exist once the layer is built. */
export class Topology extends Context.Service<Topology, TopologyService>()("rp/streams/Topology") {
  static readonly layer = Layer.effect(
    Topology,
    Effect.gen(function* () {
      const config = yield* EngineConfig
      const { jsm } = yield* Nats
      const topology = makeTopology(config.naming)
      for (const definition of streamDefinitions(topology, config.duplicateWindowMs, config.streamReplicas)) {
        const outcome = yield* withSetupRetries(`stream ${definition.name}`, () =>
          ensureStream(jsm, definition),
        )
        if (outcome !== "present")
          yield* Effect.logInfo(`stream ${outcome}`).pipe(Effect.annotateLogs({ stream: definition.name }))
      }
      for (const { stream, config: consumer } of consumerDefinitions(
        topology,
        config.consumerAckWaitMs,
        config.tickAckWaitMs,
      )) {
        const outcome = yield* withSetupRetries(`consumer ${consumer.durable_name}`, () =>
          ensureConsumer(jsm, stream, consumer),
        )
        if (outcome !== "present") {
          yield* Effect.logInfo(`consumer ${outcome}`).pipe(
            Effect.annotateLogs({ stream, consumer: consumer.durable_name }),
          )
        }
      }
      yield* Effect.logInfo("streams ready").pipe(
        Effect.annotateLogs({ streams: Object.values(topology.streams).join(",") }),
      )
      return Topology.of(topology)
    }),
  )
}
