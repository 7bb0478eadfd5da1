/**
 * The engine's Prometheus metrics: one registry per engine instance (several
 * engines share a process in tests, so prom-client's global registry is never
 * used), and the hooks components call to count what they do.
 *
 * The hooks are plain synchronous functions, not effects: they sit on the
 * burst path (every published command, every hub result), where a counter
 * increment is all that may be spent. Everything that needs I/O (outbox
 * backlog, consumer lag) is read when Prometheus scrapes, see EngineGauges.ts.
 */
import { Context, Layer } from "effect"
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client"

/** What became of a hub result the engine received. */
export type HubResultOutcome =
  | "applied"
  | "contradiction"
  | "duplicate"
  | "unknown_payment"
  | "mismatch"
  | "refused"

const resultOutcomes: ReadonlyArray<HubResultOutcome> = [
  "applied",
  "contradiction",
  "duplicate",
  "unknown_payment",
  "mismatch",
  "refused",
]
// Statuses come decoded from the contract's three, but a label must never grow with input.
const resultStatuses = ["succeeded", "failed", "declined", "other"]

/** The label an operation that is not one of the engine's gets, so labels stay a bounded set. */
export const UNKNOWN_OPERATION_LABEL = "unknown"
/** The label of a request refused before its envelope named an operation. */
export const NO_OPERATION_LABEL = "none"

/** Hooks into the engine's metrics. */
export interface MetricsService {
  readonly registry: Registry
  /** Payment commands JetStream stored for the first time (repeats dropped by message id are not counted). */
  readonly commandsPublished: (count: number) => void
  /** A hub result taken from the stream, by its status and by what the engine made of it. */
  readonly hubResult: (status: string, outcome: HubResultOutcome) => void
  /** A protocol request answered: `operation` must already be bounded, `outcome` is `ok` or an error code. */
  readonly requestHandled: (operation: string, outcome: string, seconds: number) => void
  /** A message was moved to the dead-letter stream by `consumer`. */
  readonly deadLettered: (consumer: string) => void
  /** A durable consumer started or stopped consuming in this process. */
  readonly consumerRunning: (consumer: string, running: boolean) => void
  /** The consumers consuming in this process right now (readiness reads it). */
  readonly runningConsumers: () => ReadonlySet<string>
  /** A message on `rp.internal.>` refused as not from an instance; `kind` and `reason` are bounded sets. */
  readonly internalRejected: (kind: string, reason: string) => void
  /** The protocol server answers requests (`undefined`), or why it does not right now. */
  readonly protocolServing: (notServingBecause: string | undefined) => void
  /** Why the protocol server does not answer right now; `undefined` while it does (readiness reads it). */
  readonly protocolNotServing: () => string | undefined
}

/** Buckets for protocol requests: most answer in a few milliseconds, a slow Postgres shows up in seconds. */
const requestBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

/** Builds a fresh registry with the engine's counters and node's process metrics. */
export const makeMetrics = (): MetricsService => {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  // The burst path adds to plain numbers; prom-client's own inc hashes and validates labels and
  // allocates on every call. The counters take the totals when scraped.
  let commandsPublished = 0
  const resultCounts = new Map(
    resultStatuses.map((status) => [
      status,
      Object.fromEntries(resultOutcomes.map((outcome) => [outcome, 0])),
    ]),
  ) as Map<string, Record<HubResultOutcome, number>>
  new Counter({
    name: "rp_payment_commands_published_total",
    help: "Payment commands stored in the hub payments stream for the first time",
    registers: [registry],
    collect() {
      this.reset()
      this.inc(commandsPublished)
    },
  })
  new Counter({
    name: "rp_hub_results_total",
    help: "Hub payment results received, by status and by what the engine made of them",
    labelNames: ["status", "outcome"] as const,
    registers: [registry],
    collect() {
      this.reset()
      for (const [status, counts] of resultCounts)
        for (const outcome of resultOutcomes) this.inc({ status, outcome }, counts[outcome])
    },
  })
  const requests = new Histogram({
    name: "rp_request_duration_seconds",
    help: "Channel protocol requests, from being taken up to the reply, by operation and outcome (ok or error code; BUSY: refused unstarted, the channel retries)",
    labelNames: ["operation", "outcome"] as const,
    buckets: requestBuckets,
    registers: [registry],
  })
  const deadLetters = new Counter({
    name: "rp_dead_letters_total",
    help: "Messages moved to the dead-letter stream, by the durable consumer that gave up on them",
    labelNames: ["consumer"] as const,
    registers: [registry],
  })
  const internalRejections = new Counter({
    name: "rp_internal_messages_rejected_total",
    help: "Messages between instances refused as not signed by an instance with the cluster secret, by kind and reason",
    labelNames: ["kind", "reason"] as const,
    registers: [registry],
  })
  const consumers = new Set<string>()
  const consumerGauge = new Gauge({
    name: "rp_consumer_running",
    help: "1 while this instance consumes from the durable consumer, 0 while it restarts it",
    labelNames: ["consumer"] as const,
    registers: [registry],
  })
  let protocolNotServing: string | undefined = "not started yet"
  const protocolGauge = new Gauge({
    name: "rp_protocol_serving",
    help: "1 while this instance answers channel requests, 0 while its protocol server restarts",
    registers: [registry],
  })
  protocolGauge.set(0)
  return {
    registry,
    commandsPublished: (count) => {
      commandsPublished += count
    },
    hubResult: (status, outcome) => {
      const counts = resultCounts.get(status) ?? resultCounts.get("other")
      if (counts !== undefined) counts[outcome] += 1
    },
    requestHandled: (operation, outcome, seconds) => requests.observe({ operation, outcome }, seconds),
    deadLettered: (consumer) => deadLetters.inc({ consumer }),
    consumerRunning: (consumer, running) => {
      if (running) consumers.add(consumer)
      else consumers.delete(consumer)
      consumerGauge.set({ consumer }, running ? 1 : 0)
    },
    runningConsumers: () => consumers,
    internalRejected: (kind, reason) => internalRejections.inc({ kind, reason }),
    protocolServing: (notServingBecause) => {
      protocolNotServing = notServingBecause
      protocolGauge.set(notServingBecause === undefined ? 1 : 0)
    },
    protocolNotServing: () => protocolNotServing,
  }
}

/** The engine instance's metrics. */
export class Metrics extends Context.Service<Metrics, MetricsService>()("rp/observability/Metrics") {
  static readonly layer = Layer.sync(Metrics, makeMetrics)
}

/** The reply's outcome label: `ok`, or its error code. */
export const outcomeOfReply = (reply: string): string => {
  // Replies are written by okReply/errorReply (status right after requestId, code first in error)
  // or are stored copies of those. Reading the fixed prefix costs far less than parsing the reply
  // again; a requestId cannot contain an unescaped quote, so the first match is the envelope's.
  const status = reply.indexOf(',"status":"')
  if (status < 0) return "unknown"
  if (reply.startsWith("ok", status + 11)) return "ok"
  const code = /"code":"([A-Z_]{1,40})"/.exec(reply.slice(status, status + 120))
  return code?.[1] ?? "unknown"
}
