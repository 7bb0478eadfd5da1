/**
 * The engine's configuration, read once from the environment at start.
 *
 * Every variable has a default that runs against the services of a
 * developer machine; README.md lists them all. Durations are ISO 8601
 * (`PT1H`, `P1D`) so operators write them the way the contract does.
 */
import { isIP } from "node:net"
import { Config, Context, Effect, Layer, Redacted, Schema } from "effect"
import { type LimitSettings, noLimitSettings } from "./actors/Limits.ts"
import * as Calendar from "./domain/Calendar.ts"
import * as IsoDuration from "./domain/IsoDuration.ts"
import { isKnownCurrency } from "./domain/Money.ts"
import * as Ranges from "./domain/Ranges.ts"

/** Subject prefixes and stream names; each is configurable so several engines or tests can share a server. */
export interface Naming {
  readonly rpPrefix: string
  readonly providerPrefix: string
  readonly hubPrefix: string
  readonly streamPrefix: string
}

/** Everything the engine can be told from outside. */
export interface EngineSettings {
  readonly natsUrl: string
  readonly databaseUrl: Redacted.Redacted<string>
  readonly instanceId: string
  readonly naming: Naming
  /** `on`: the engine publishes `rp.tick` itself every `tickIntervalMs`; `off`: someone else does. */
  readonly clock: "on" | "off"
  readonly tickIntervalMs: number
  readonly catchUpWindowMs: number
  readonly noticeLeadMs: number
  readonly retryScheduleMs: ReadonlyArray<number>
  readonly resultTimeoutMs: number
  readonly statusQueryBackoffMs: ReadonlyArray<number>
  readonly statusQueryTimeoutMs: number
  readonly autoPauseAfterFailures: number
  /** Debt: a query unanswered this long counts as lost and the next poll asks again. */
  readonly debtQueryTimeoutMs: number
  readonly limits: LimitSettings
  readonly duplicateWindowMs: number
  readonly streamReplicas: number
  readonly queueGroup: string
  readonly actorIdleMs: number
  readonly mailboxCapacity: number
  readonly commitBatchSize: number
  readonly commitWorkers: number
  readonly commitLingerMs: number
  readonly publishWorkers: number
  readonly outboxSweepAgeMs: number
  readonly outboxSweepIntervalMs: number
  readonly dbPoolSize: number
  readonly sweepBatchSize: number
  readonly sweepInFlight: number
  readonly consumerAckWaitMs: number
  /**
   * The ticks consumer's ack wait. Short, because the engine tells the server it is still working
   * on a tick every third of it: if the instance sweeping a tick dies, another takes the tick over
   * this long after, not after the general ack wait.
   */
  readonly tickAckWaitMs: number
  readonly consumerMaxDeliveries: number
  /** Processed inbound message ids are kept this long: far beyond any redelivery. */
  readonly inboxRetentionMs: number
  /**
   * Stored replies of channel requests are kept this long: a repeat within it gets the first reply,
   * so it must outlast any channel's retries (including a channel replaying after a long outage).
   */
  readonly requestLogRetentionMs: number
  /** Expired request-log and inbox rows are deleted at most this many per statement. */
  readonly pruneBatchSize: number
  /** The pause between two prune batches, so pruning never holds the database for long. */
  readonly prunePauseMs: number
  /** How often a prune round starts. */
  readonly pruneIntervalMs: number
  readonly requestConcurrency: number
  /** A protocol request not started this long after it arrived is answered BUSY (retry later), not left to time out. */
  readonly requestQueueWaitMs: number
  /** At most this many protocol requests wait for a free handler; the next is answered BUSY at once. */
  readonly requestQueue: number
  /** A signed request whose `sentAt` is further than this from the wall clock is refused as a replay. */
  readonly signatureWindowMs: number
  /** The channel registry is re-read at least this often (changes also arrive at once by NOTIFY). */
  readonly channelsRefreshMs: number
  /** The console's overrides of limits and retry schedule are re-read at least this often (and at once by NOTIFY). */
  readonly settingsRefreshMs: number
  /** `on`: with no channel registered, the five development channels are accepted unsigned; `off`: nothing is. */
  readonly defaultChannels: "on" | "off"
  /** The HTTP server (console, metrics, health) listens here; port 0 takes any free port (tests). */
  readonly httpHost: string
  readonly httpPort: number
  /**
   * Proxies (addresses or CIDR ranges) whose `X-Forwarded-For` names the console's real client;
   * empty: the connection's peer is the client, and the header is ignored.
   */
  readonly consoleTrustedProxies: ReadonlyArray<string>
  /** Sign-in attempts one address (IPv4, or IPv6 /64) may make per window; successful ones are not counted. */
  readonly consoleAddressAttempts: number
  readonly consoleAddressWindowMs: number
  /** Subscriptions are split into this many partitions; every instance must use the same count. */
  readonly partitions: number
  /** A partition lease (and an instance's heartbeat) lasts this long without renewal. */
  readonly leaseTtlMs: number
  /** How often an instance renews its leases and rebalances. */
  readonly leaseRenewMs: number
  /** OTLP/HTTP collector the engine's spans are exported to; empty: no export (trace headers still flow). */
  readonly otlpEndpoint: string
  /**
   * The key instances sign their messages to each other with (`rp.internal.>`); empty: a random one the
   * first instance stores in Postgres, shared by every instance on the same database.
   */
  readonly clusterSecret: Redacted.Redacted<string>
  /** During a rotation, a second secret accepted from other instances (the next or the old one), never used to sign. */
  readonly clusterSecretAccepted: Redacted.Redacted<string>
}

/** Defaults: what `npm start` uses when the environment says nothing. */
export const defaultSettings: EngineSettings = {
  natsUrl: "nats://127.0.0.1:4222",
  databaseUrl: Redacted.make("postgres://postgres@127.0.0.1:5432/rp"),
  instanceId: `engine-${process.pid}`,
  naming: { rpPrefix: "rp", providerPrefix: "provider", hubPrefix: "hub", streamPrefix: "" },
  clock: "on",
  tickIntervalMs: 60_000,
  catchUpWindowMs: 24 * 3_600_000,
  noticeLeadMs: 24 * 3_600_000,
  retryScheduleMs: [3_600_000, 6 * 3_600_000, 24 * 3_600_000],
  resultTimeoutMs: 15 * 60_000,
  statusQueryBackoffMs: [60_000, 5 * 60_000, 15 * 60_000, 3_600_000],
  statusQueryTimeoutMs: 2_000,
  autoPauseAfterFailures: 3,
  debtQueryTimeoutMs: 3_600_000,
  limits: noLimitSettings,
  duplicateWindowMs: 10 * 60_000,
  streamReplicas: 1,
  queueGroup: "rp-engine",
  actorIdleMs: 5_000,
  mailboxCapacity: 64,
  commitBatchSize: 500,
  commitWorkers: 3,
  commitLingerMs: 2,
  publishWorkers: 4,
  outboxSweepAgeMs: 10_000,
  outboxSweepIntervalMs: 5_000,
  dbPoolSize: 10,
  sweepBatchSize: 1_000,
  // Measured on the month-start burst: 500 costs ~7% less CPU per payment than 1,000, at the same rate or better.
  sweepInFlight: 500,
  consumerAckWaitMs: 30_000,
  tickAckWaitMs: 5_000,
  consumerMaxDeliveries: 5,
  inboxRetentionMs: 7 * 24 * 3_600_000,
  requestLogRetentionMs: 30 * 24 * 3_600_000,
  pruneBatchSize: 1_000,
  prunePauseMs: 100,
  pruneIntervalMs: 3_600_000,
  requestConcurrency: 256,
  // Well inside the 10 s a channel waits for a reply: a refused request can still be retried in it.
  requestQueueWaitMs: 2_000,
  requestQueue: 2_000,
  signatureWindowMs: 5 * 60_000,
  channelsRefreshMs: 5_000,
  settingsRefreshMs: 5_000,
  defaultChannels: "on",
  httpHost: "127.0.0.1",
  httpPort: 8080,
  consoleTrustedProxies: [],
  consoleAddressAttempts: 20,
  consoleAddressWindowMs: 15 * 60_000,
  partitions: 16,
  leaseTtlMs: 10_000,
  leaseRenewMs: 2_000,
  otlpEndpoint: "",
  clusterSecret: Redacted.make(""),
  clusterSecretAccepted: Redacted.make(""),
}

const duration = (name: string, fallback: number) =>
  Config.schema(IsoDuration.IsoDuration, name).pipe(
    Config.map(IsoDuration.millisOf),
    Config.withDefault(fallback),
  )

/** Reads `PT1H,PT6H,PT24H` into milliseconds; undefined unless every part is a positive ISO 8601 duration. */
export const parseDurationList = (text: string): ReadonlyArray<number> | undefined => {
  const parts = text.split(",").map((part) => IsoDuration.parseMillis(part.trim()) ?? 0)
  return parts.every((millis) => millis > 0) ? parts : undefined
}

const DurationList = Schema.String.check(
  Schema.makeFilter((text: string) =>
    parseDurationList(text) !== undefined
      ? undefined
      : "must be a comma-separated list of ISO 8601 durations such as PT1H,PT6H,PT24H",
  ),
)

const durations = (name: string, fallback: ReadonlyArray<number>) =>
  Config.schema(DurationList, name).pipe(
    Config.map(
      (text): ReadonlyArray<number> => text.split(",").map((part) => IsoDuration.millisOf(part.trim())),
    ),
    Config.withDefault(fallback),
  )

const RetrySchedule = Schema.String.check(
  Schema.makeFilter((text: string) => {
    const parsed = Ranges.parseRetrySchedule(text)
    return typeof parsed === "string" ? parsed : undefined
  }),
)

/** The retry schedule: 1-20 delays, each within `Ranges.retryDelay`. */
const retrySchedule = (name: string, fallback: ReadonlyArray<number>) =>
  Config.schema(RetrySchedule, name).pipe(
    Config.map((text): ReadonlyArray<number> => {
      const parsed = Ranges.parseRetrySchedule(text)
      return typeof parsed === "string" ? fallback : parsed
    }),
    Config.withDefault(fallback),
  )

const positiveInt = (name: string, fallback: number) =>
  Config.schema(Schema.Int.check(Schema.isGreaterThan(0)), name).pipe(Config.withDefault(fallback))

/** Reads `RUB:1500000,USD:100000` (minor units; empty: none); undefined when it is not such a list. */
export const parseAmountsByCurrency = (text: string): Readonly<Record<string, number>> | undefined => {
  const parts = text
    .split(",")
    .map((part) => part.trim())
    .filter((part) => part !== "")
  const entries: Array<[string, number]> = []
  for (const part of parts) {
    const [currency, value] = part.split(":")
    if (currency === undefined || !isKnownCurrency(currency) || !/^\d{1,15}$/.test(value ?? ""))
      return undefined
    entries.push([currency, Number(value)])
  }
  return Object.fromEntries(entries)
}

const AmountsByCurrency = Schema.String.check(
  Schema.makeFilter((text: string) =>
    parseAmountsByCurrency(text) !== undefined
      ? undefined
      : "must be a comma-separated list of CURRENCY:minor-units such as RUB:1500000,USD:100000",
  ),
)

/** A per-currency amount list such as `RUB:1500000,USD:100000` (minor units); empty means none. */
const amountsByCurrency = (name: string) =>
  Config.schema(AmountsByCurrency, name).pipe(
    Config.map((text): Readonly<Record<string, number>> => parseAmountsByCurrency(text) ?? {}),
    Config.withDefault({}),
  )

/** True for an IANA time zone name this runtime knows. */
export const isTimeZoneName = (text: string): boolean => Calendar.isValidTimeZone(text)

const TimeZoneName = Schema.String.check(
  Schema.makeFilter((text: string) =>
    Calendar.isValidTimeZone(text) ? undefined : "must be an IANA time zone such as Europe/Moscow",
  ),
)

const port = (name: string, fallback: number) =>
  Config.schema(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 65_535 })), name).pipe(
    Config.withDefault(fallback),
  )

/** Shortest cluster secret accepted: 32 characters (the documented way to make one gives 44). */
export const MIN_CLUSTER_SECRET_LENGTH = 32

const ClusterSecretText = Schema.String.check(
  Schema.makeFilter((text: string) =>
    text === "" || text.length >= MIN_CLUSTER_SECRET_LENGTH
      ? undefined
      : `must be at least ${MIN_CLUSTER_SECRET_LENGTH} characters (e.g. openssl rand -base64 32), or empty`,
  ),
)

const clusterSecret = (name: string) =>
  // Read as Redacted at once, so not even a refusal at start prints the value.
  Config.schema(Schema.Redacted(ClusterSecretText), name).pipe(Config.withDefault(Redacted.make("")))

/** Why an address or CIDR range cannot be used, or undefined. */
const addressRangeProblem = (entry: string): string | undefined => {
  const [address = "", prefix, extra] = entry.split("/")
  const family = isIP(address)
  if (family === 0 || extra !== undefined) return `"${entry}" is not an IP address or CIDR range`
  if (prefix !== undefined && !(/^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128)))
    return `"${entry}" has a bad prefix length`
  return undefined
}

const listOf = (text: string) =>
  text
    .split(",")
    .map((part) => part.trim())
    .filter((part) => part !== "")

const AddressRanges = Schema.String.check(
  Schema.makeFilter((text: string) =>
    listOf(text)
      .map(addressRangeProblem)
      .find((problem) => problem !== undefined),
  ),
)

const text = (name: string, fallback: string) => Config.String(name).pipe(Config.withDefault(fallback))

/** Reads every setting from the environment, falling back to `defaultSettings`. */
export const settingsFromEnvironment: Config.Config<EngineSettings> = Config.all({
  natsUrl: text("NATS_URL", defaultSettings.natsUrl),
  databaseUrl: Config.Redacted("DATABASE_URL").pipe(Config.withDefault(defaultSettings.databaseUrl)),
  instanceId: text("RP_INSTANCE_ID", defaultSettings.instanceId),
  naming: Config.all({
    rpPrefix: text("RP_SUBJECT_PREFIX", defaultSettings.naming.rpPrefix),
    providerPrefix: text("RP_PROVIDER_PREFIX", defaultSettings.naming.providerPrefix),
    hubPrefix: text("RP_HUB_PREFIX", defaultSettings.naming.hubPrefix),
    streamPrefix: text("RP_STREAM_PREFIX", defaultSettings.naming.streamPrefix),
  }),
  clock: Config.Literals(["on", "off"], "RP_CLOCK").pipe(Config.withDefault(defaultSettings.clock)),
  tickIntervalMs: duration("RP_TICK_INTERVAL", defaultSettings.tickIntervalMs),
  catchUpWindowMs: duration("RP_CATCH_UP_WINDOW", defaultSettings.catchUpWindowMs),
  noticeLeadMs: duration("RP_NOTICE_LEAD", defaultSettings.noticeLeadMs),
  retryScheduleMs: retrySchedule("RP_RETRY_SCHEDULE", defaultSettings.retryScheduleMs),
  resultTimeoutMs: duration("RP_RESULT_TIMEOUT", defaultSettings.resultTimeoutMs),
  statusQueryBackoffMs: durations("RP_STATUS_QUERY_BACKOFF", defaultSettings.statusQueryBackoffMs),
  statusQueryTimeoutMs: duration("RP_STATUS_QUERY_TIMEOUT", defaultSettings.statusQueryTimeoutMs),
  autoPauseAfterFailures: positiveInt("RP_AUTO_PAUSE_AFTER", defaultSettings.autoPauseAfterFailures),
  debtQueryTimeoutMs: duration("RP_DEBT_QUERY_TIMEOUT", defaultSettings.debtQueryTimeoutMs),
  limits: Config.all({
    paymentMax: Config.all({
      scheduled: amountsByCurrency("RP_LIMIT_PAYMENT_MAX_SCHEDULED"),
      threshold: amountsByCurrency("RP_LIMIT_PAYMENT_MAX_THRESHOLD"),
      debt: amountsByCurrency("RP_LIMIT_PAYMENT_MAX_DEBT"),
    }),
    monthlyMax: amountsByCurrency("RP_LIMIT_MONTHLY_MAX"),
    clientTimeZone: Config.schema(TimeZoneName, "RP_CLIENT_TIMEZONE").pipe(
      Config.withDefault(defaultSettings.limits.clientTimeZone),
    ),
  }),
  duplicateWindowMs: duration("RP_DUPLICATE_WINDOW", defaultSettings.duplicateWindowMs),
  streamReplicas: positiveInt("RP_STREAM_REPLICAS", defaultSettings.streamReplicas),
  queueGroup: text("RP_QUEUE_GROUP", defaultSettings.queueGroup),
  actorIdleMs: duration("RP_ACTOR_IDLE", defaultSettings.actorIdleMs),
  mailboxCapacity: positiveInt("RP_MAILBOX_CAPACITY", defaultSettings.mailboxCapacity),
  commitBatchSize: positiveInt("RP_COMMIT_BATCH", defaultSettings.commitBatchSize),
  commitWorkers: positiveInt("RP_COMMIT_WORKERS", defaultSettings.commitWorkers),
  commitLingerMs: duration("RP_COMMIT_LINGER", defaultSettings.commitLingerMs),
  publishWorkers: positiveInt("RP_PUBLISH_WORKERS", defaultSettings.publishWorkers),
  outboxSweepAgeMs: duration("RP_OUTBOX_SWEEP_AGE", defaultSettings.outboxSweepAgeMs),
  outboxSweepIntervalMs: duration("RP_OUTBOX_SWEEP_INTERVAL", defaultSettings.outboxSweepIntervalMs),
  dbPoolSize: positiveInt("RP_DB_POOL", defaultSettings.dbPoolSize),
  sweepBatchSize: positiveInt("RP_SWEEP_BATCH", defaultSettings.sweepBatchSize),
  sweepInFlight: positiveInt("RP_SWEEP_IN_FLIGHT", defaultSettings.sweepInFlight),
  consumerAckWaitMs: duration("RP_ACK_WAIT", defaultSettings.consumerAckWaitMs),
  tickAckWaitMs: duration("RP_TICK_ACK_WAIT", defaultSettings.tickAckWaitMs),
  consumerMaxDeliveries: positiveInt("RP_MAX_DELIVERIES", defaultSettings.consumerMaxDeliveries),
  inboxRetentionMs: duration("RP_INBOX_RETENTION", defaultSettings.inboxRetentionMs),
  requestLogRetentionMs: duration("RP_REQUEST_LOG_RETENTION", defaultSettings.requestLogRetentionMs),
  pruneBatchSize: positiveInt("RP_PRUNE_BATCH", defaultSettings.pruneBatchSize),
  prunePauseMs: duration("RP_PRUNE_PAUSE", defaultSettings.prunePauseMs),
  pruneIntervalMs: duration("RP_PRUNE_INTERVAL", defaultSettings.pruneIntervalMs),
  requestConcurrency: positiveInt("RP_REQUEST_CONCURRENCY", defaultSettings.requestConcurrency),
  requestQueueWaitMs: duration("RP_REQUEST_QUEUE_WAIT", defaultSettings.requestQueueWaitMs),
  requestQueue: positiveInt("RP_REQUEST_QUEUE", defaultSettings.requestQueue),
  signatureWindowMs: duration("RP_SIGNATURE_WINDOW", defaultSettings.signatureWindowMs),
  channelsRefreshMs: duration("RP_CHANNELS_REFRESH", defaultSettings.channelsRefreshMs),
  settingsRefreshMs: duration("RP_SETTINGS_REFRESH", defaultSettings.settingsRefreshMs),
  defaultChannels: Config.Literals(["on", "off"], "RP_DEFAULT_CHANNELS").pipe(
    Config.withDefault(defaultSettings.defaultChannels),
  ),
  httpHost: text("RP_HTTP_HOST", defaultSettings.httpHost),
  httpPort: port("RP_HTTP_PORT", defaultSettings.httpPort),
  consoleTrustedProxies: Config.schema(AddressRanges, "RP_CONSOLE_TRUSTED_PROXIES").pipe(
    Config.map(listOf),
    Config.withDefault(defaultSettings.consoleTrustedProxies),
  ),
  consoleAddressAttempts: positiveInt("RP_CONSOLE_ADDRESS_ATTEMPTS", defaultSettings.consoleAddressAttempts),
  consoleAddressWindowMs: duration("RP_CONSOLE_ADDRESS_WINDOW", defaultSettings.consoleAddressWindowMs),
  partitions: Config.schema(
    Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 4096 })),
    "RP_PARTITIONS",
  ).pipe(Config.withDefault(defaultSettings.partitions)),
  leaseTtlMs: duration("RP_LEASE_TTL", defaultSettings.leaseTtlMs),
  leaseRenewMs: duration("RP_LEASE_RENEW", defaultSettings.leaseRenewMs),
  otlpEndpoint: text("RP_OTLP_ENDPOINT", defaultSettings.otlpEndpoint),
  clusterSecret: clusterSecret("RP_CLUSTER_SECRET"),
  clusterSecretAccepted: clusterSecret("RP_CLUSTER_SECRET_ACCEPTED"),
})

/** The settings as a service, so every component reads the same values. */
export class EngineConfig extends Context.Service<EngineConfig, EngineSettings>()("rp/EngineConfig") {
  /** Settings from the process environment. */
  static readonly layerFromEnvironment = Layer.effect(
    EngineConfig,
    Effect.gen(function* () {
      return yield* settingsFromEnvironment
    }),
  )

  /** Fixed settings: the defaults with `overrides` applied (tests, demo, bench). */
  static readonly layerWith = (overrides: Partial<EngineSettings>) =>
    Layer.succeed(EngineConfig, { ...defaultSettings, ...overrides })
}
