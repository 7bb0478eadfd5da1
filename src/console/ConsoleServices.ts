/**
 * What the console's pages use from the engine, gathered once when the
 * routes are built, so handlers are plain async functions over it.
 */
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream"
import type { Effect } from "effect"
import type { Kysely } from "kysely"
import type { InForce } from "../actors/LiveSettings.ts"
import type { EngineSettings } from "../EngineConfig.ts"
import type { Registry } from "../protocol/Channels.ts"
import type { Tables } from "../store/Tables.ts"
import type { TopologyService } from "../streams/Topology.ts"
import type { OnBehalf, OperationResult } from "./ClientOperations.ts"

export interface ConsoleServices {
  readonly db: Kysely<Tables>
  /** Runs an engine effect for a request; interrupted if the engine stops meanwhile. */
  readonly run: <A, E>(effect: Effect.Effect<A, E>) => Promise<A>
  /** Runs one of the protocol's operations on a client's behalf, on the subscription's owner (ConsoleOperations.ts). */
  readonly runOperation: (name: string, body: unknown, who: OnBehalf) => Effect.Effect<OperationResult>
  /** The engine's clock: the last tick's `at`, in milliseconds (0 before the first tick). */
  readonly engineNow: () => Promise<number>
  readonly settings: EngineSettings
  readonly topology: TopologyService
  readonly js: JetStreamClient
  readonly jsm: JetStreamManager
  /** The channel registry in force on this instance, and a way to re-read it at once after an edit. */
  readonly channelRegistry: () => Promise<Registry>
  readonly reloadChannels: () => Promise<void>
  /** The limits and retry schedule in force, and a way to re-read them at once after an edit. */
  readonly settingsInForce: () => Promise<InForce>
  readonly reloadSettings: () => Promise<void>
}
