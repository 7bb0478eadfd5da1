/**
 * Small pieces every benchmark phase shares: the NATS server, per-run
 * naming (so a run never touches anyone else's streams), the environment a
 * child process gets, and number formatting for progress lines.
 */
import type { JetStreamManager } from "@nats-io/jetstream"
import type { Naming } from "../src/EngineConfig.ts"
import { makeTopology } from "../src/streams/Topology.ts"

/** The NATS server the bench, the engine and the fake hubs all use. */
export const natsUrl = process.env.NATS_URL ?? "nats://127.0.0.1:4222"

/** Subject prefixes and stream names unique to one phase of one run. */
export const namingFor = (tag: string): Naming => ({
  rpPrefix: `${tag}.rp`,
  providerPrefix: `${tag}.provider`,
  hubPrefix: `${tag}.hub`,
  streamPrefix: `${tag.toUpperCase()}_`,
})

/** The environment variables through which the engine and `run-fake-hub.ts` read `naming`. */
export const namingEnvironment = (naming: Naming): Record<string, string> => ({
  NATS_URL: natsUrl,
  RP_SUBJECT_PREFIX: naming.rpPrefix,
  RP_PROVIDER_PREFIX: naming.providerPrefix,
  RP_HUB_PREFIX: naming.hubPrefix,
  RP_STREAM_PREFIX: naming.streamPrefix,
})

/** Deletes every stream `naming` names; only ever called on names a bench run made up. */
export const deleteStreamsOf = async (jsm: JetStreamManager, naming: Naming): Promise<void> => {
  for (const stream of Object.values(makeTopology(naming).streams)) {
    await jsm.streams.delete(stream).catch(() => false)
  }
}

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Seconds since `startedMs` (a `performance.now()` reading). */
export const secondsSince = (startedMs: number): number => (performance.now() - startedMs) / 1_000

/** An integer with thousands separators, for progress lines. */
export const count = (value: number): string => Math.round(value).toLocaleString("en-US")

/** Rounds to `digits` decimals for the JSON summary. */
export const rounded = (value: number, digits: number): number => {
  const scale = 10 ** digits
  return Math.round(value * scale) / scale
}

/** Prints one progress line, prefixed with the phase it belongs to. */
export const progress = (phase: string, message: string): void => {
  console.log(`[${phase}] ${message}`)
}
