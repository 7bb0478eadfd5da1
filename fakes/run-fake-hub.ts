/**
 * Runs a fake hub as its own process, configured like the engine from the
 * environment: NATS_URL, RP_SUBJECT_PREFIX, RP_PROVIDER_PREFIX, RP_HUB_PREFIX,
 * RP_STREAM_PREFIX, and FAKE_HUB_CONSUMER for its durable consumer name.
 * Every payment succeeds. Prints "fake hub ready" once it consumes, and a
 * count line when SIGTERM or SIGINT stops it.
 */
import { defaultSettings } from "../src/EngineConfig.ts"
import { startFakeHub } from "./FakeHub.ts"

const fromEnvironment = (name: string, fallback: string): string => {
  const value = process.env[name]
  return value === undefined || value === "" ? fallback : value
}

const hub = await startFakeHub({
  natsUrl: fromEnvironment("NATS_URL", defaultSettings.natsUrl),
  naming: {
    rpPrefix: fromEnvironment("RP_SUBJECT_PREFIX", defaultSettings.naming.rpPrefix),
    providerPrefix: fromEnvironment("RP_PROVIDER_PREFIX", defaultSettings.naming.providerPrefix),
    hubPrefix: fromEnvironment("RP_HUB_PREFIX", defaultSettings.naming.hubPrefix),
    streamPrefix: fromEnvironment("RP_STREAM_PREFIX", defaultSettings.naming.streamPrefix),
  },
  consumerName: fromEnvironment("FAKE_HUB_CONSUMER", "fake-hub"),
})
console.log("fake hub ready")

let stopping = false
const stop = async (signal: string) => {
  if (stopping) return
  stopping = true
  await hub.stop()
  console.log(`fake hub stopped (${signal}): commands=${hub.commands.length} answered=${hub.answered}`)
  process.exit(0)
}
process.on("SIGTERM", () => void stop("SIGTERM"))
process.on("SIGINT", () => void stop("SIGINT"))
