/**
 * The raw JetStream rate for the threshold bench: the same balance events,
 * published with the same number in flight to a scratch stream configured
 * like the engine's RP_PROVIDERS, and consumed at the same time by a durable
 * pull consumer that acknowledges each one. No database, no engine: what
 * the messaging alone costs on this machine, in this run.
 */
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream"
import { connect, nanos } from "@nats-io/transport-node"
import { defaultSettings, type Naming } from "../src/EngineConfig.ts"
import { JetStreamPublisher } from "../src/streams/JetStreamPublisher.ts"
import { makeTopology, streamDefinitions } from "../src/streams/Topology.ts"
import { count, deleteStreamsOf, natsUrl, progress, secondsSince, sleep } from "./common.ts"
import { publishEvents, type ThresholdEvents } from "./threshold-events.ts"

/** What the raw run measured. */
export interface RawReport {
  readonly messages: number
  /** Seconds from the first publish until the last message was consumed and acknowledged. */
  readonly seconds: number
  readonly perSec: number
  /** Seconds from the first publish until JetStream had acknowledged every publish. */
  readonly publishSeconds: number
}

/** Where and how much to run. */
export interface RawOptions {
  /** Fresh names: the scratch stream is this naming's RP_PROVIDERS. */
  readonly naming: Naming
  readonly events: ThresholdEvents
  readonly inFlight: number
}

const consumerName = "bench-raw"
const stallLimitMs = 30_000
const progressEveryMs = 2_000

/** Publishes and consumes every event once on a scratch stream, then deletes the stream. */
export const runRawJetStream = async (options: RawOptions): Promise<RawReport> => {
  const topology = makeTopology(options.naming)
  const stream = topology.streams.providers
  const connection = await connect({ servers: natsUrl, name: "bench-raw", noAsyncTraces: true })
  const jsm = await jetstreamManager(connection)
  const publisher = new JetStreamPublisher(connection)
  try {
    for (const definition of streamDefinitions(topology, defaultSettings.duplicateWindowMs, 1)) {
      if (definition.name === stream) await jsm.streams.add(definition)
    }
    await jsm.consumers.add(stream, {
      durable_name: consumerName,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: nanos(60_000),
      max_ack_pending: 20_000,
    })
    const total = options.events.count
    let consumed = 0
    let lastConsumedAt = 0
    let allConsumed: (() => void) | undefined
    const finished = new Promise<void>((resolve) => {
      allConsumed = resolve
    })
    const consumer = await jetstream(connection).consumers.get(stream, consumerName)
    const messages = await consumer.consume({
      max_messages: 1_000,
      callback: (message) => {
        message.ack()
        consumed += 1
        lastConsumedAt = performance.now()
        if (consumed >= total) allConsumed?.()
      },
    })

    const publishing = publishEvents(publisher, options.events, {
      from: 0,
      to: total,
      perSec: null,
      inFlight: options.inFlight,
    })
    const startedAt = performance.now()
    let lastProgress = startedAt
    let lastCount = -1
    let lastChange = startedAt
    let done = false
    void finished.then(() => {
      done = true
    })
    while (!done) {
      await Promise.race([finished, sleep(100)])
      if (consumed !== lastCount) {
        lastCount = consumed
        lastChange = performance.now()
      } else if (!done && performance.now() - lastChange > stallLimitMs) {
        throw new Error(`raw JetStream stalled: ${consumed} of ${total} consumed`)
      }
      if (performance.now() - lastProgress >= progressEveryMs) {
        lastProgress = performance.now()
        const elapsed = secondsSince(startedAt)
        progress(
          "threshold",
          `raw ${elapsed.toFixed(1)}s  consumed ${count(consumed)}/${count(total)}  ${count(consumed / elapsed)}/s`,
        )
      }
    }
    const published = await publishing
    // Every ack is on the wire before the consumer is closed.
    await connection.flush()
    await messages.close()
    const seconds = (lastConsumedAt - published.startedAt) / 1_000
    return { messages: total, seconds, perSec: total / seconds, publishSeconds: published.ackedSeconds }
  } finally {
    publisher.close()
    await deleteStreamsOf(jsm, options.naming)
    await connection.drain().catch(() => undefined)
  }
}
