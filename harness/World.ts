/**
 * An isolated world around the engine, on the real NATS and Postgres: its own
 * database and its own stream names and subject prefixes (so tests, the demo
 * and benchmarks run side by side and never see each other), the engine
 * started and stopped on demand, fakes of the hub and of channels, and ways
 * to wait for the engine to have done something — never a sleep.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream"
import { connect, type NatsConnection } from "@nats-io/transport-node"
import { Effect, Layer, Logger, type LogLevel, ManagedRuntime, Redacted, References } from "effect"
import type { Kysely } from "kysely"
import pg from "pg"
import { FakeChannel } from "../fakes/FakeChannel.ts"
import { type FakeHub, type FakeHubOptions, startFakeHub } from "../fakes/FakeHub.ts"
import { type DebtAnswer, FakeProvider } from "../fakes/FakeProvider.ts"
import { EngineLive } from "../src/Engine.ts"
import { defaultSettings, EngineConfig, type EngineSettings } from "../src/EngineConfig.ts"
import { makeKysely } from "../src/store/Database.ts"
import type { Tables } from "../src/store/Tables.ts"
import type { DebtQuery } from "../src/streams/Messages.ts"
import { makeTopology, type TopologyService } from "../src/streams/Topology.ts"

const ADMIN_URL = process.env.TEST_DATABASE_ADMIN_URL ?? "postgres://postgres@127.0.0.1:5432/postgres"
const NATS_URL = process.env.NATS_URL ?? "nats://127.0.0.1:4222"

/** A running engine inside a test. */
export interface RunningEngine {
  /** Stops it the way SIGTERM does: scopes close in order. */
  readonly stop: () => Promise<void>
  /** The engine's services, for tests that look inside. */
  readonly runtime: ManagedRuntime.ManagedRuntime<unknown, never>
}

/** One message read back from a stream. */
export interface StoredMessage {
  readonly subject: string
  readonly seq: number
  readonly json: unknown
  readonly msgId: string | undefined
}

/** A test's isolated world. */
export class World {
  readonly engines: Array<RunningEngine> = []
  readonly hubs: Array<FakeHub> = []
  readonly providers: Array<FakeProvider> = []
  readonly processes: Array<ChildProcess> = []

  private constructor(
    readonly settings: EngineSettings,
    readonly topology: TopologyService,
    readonly databaseName: string,
    readonly db: Kysely<Tables>,
    readonly connection: NatsConnection,
    readonly js: JetStreamClient,
    readonly jsm: JetStreamManager,
  ) {}

  /** Creates a fresh world; `overrides` change engine settings, `label` names its database. */
  static async create(overrides: Partial<EngineSettings> = {}, label = "test"): Promise<World> {
    const token = randomBytes(5).toString("hex")
    const databaseName = `rp_${label}_${token}`
    const naming = {
      rpPrefix: `t${token}.rp`,
      providerPrefix: `t${token}.provider`,
      hubPrefix: `t${token}.hub`,
      streamPrefix: `T${token.toUpperCase()}_`,
    }
    const databaseUrl = new URL(ADMIN_URL)
    databaseUrl.pathname = `/${databaseName}`
    const settings: EngineSettings = {
      ...defaultSettings,
      natsUrl: overrides.natsUrl ?? NATS_URL,
      databaseUrl: Redacted.make(databaseUrl.toString()),
      instanceId: `test-${token}`,
      naming,
      clock: "off",
      queueGroup: `rp-engine-${token}`,
      // Small pages and pools: tests are about behaviour, and many run at once.
      dbPoolSize: 4,
      sweepBatchSize: 200,
      outboxSweepAgeMs: 1_000,
      outboxSweepIntervalMs: 500,
      consumerAckWaitMs: 5_000,
      // Any free port: many engines run at once in a test run.
      httpPort: 0,
      ...overrides,
    }
    const connection = await connect({
      servers: settings.natsUrl,
      name: `test-${token}`,
      // A scenario may restart the NATS server under the world: its own connection rides it out.
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
    })
    const jsm = await jetstreamManager(connection)
    const js = jetstream(connection)
    const admin = new pg.Client({ connectionString: ADMIN_URL })
    await admin.connect()
    await admin.query(`CREATE DATABASE ${databaseName}`)
    await admin.end()
    const db = makeKysely(databaseUrl.toString(), 2)
    return new World(settings, makeTopology(naming), databaseName, db, connection, js, jsm)
  }

  /** Starts an engine on this world (several may run at once, e.g. across a restart). */
  async startEngine(
    overrides: Partial<EngineSettings> = {},
    logLevel: LogLevel.LogLevel = (process.env.RP_TEST_LOG_LEVEL as LogLevel.LogLevel | undefined) ?? "Warn",
  ): Promise<RunningEngine> {
    const level = logLevel
    const runtime = ManagedRuntime.make(
      EngineLive.pipe(
        Layer.provide(EngineConfig.layerWith({ ...this.settings, ...overrides })),
        Layer.provide(
          Layer.mergeAll(
            Logger.layer([Logger.consoleLogFmt]),
            Layer.succeed(References.MinimumLogLevel, level),
          ),
        ),
      ),
    ) as ManagedRuntime.ManagedRuntime<unknown, never>
    await runtime.runPromise(Effect.void)
    const engine: RunningEngine = { runtime, stop: () => runtime.dispose() }
    this.engines.push(engine)
    return engine
  }

  /**
   * Starts the engine as its own process, for tests that kill it: the sources through tsx
   * (`node --import tsx src/main.ts`), or with `from: "build"` the bundle `npm run build` wrote
   * (`node dist/engine.mjs`, as `npm start` runs it).
   */
  async spawnEngine(
    environment: Record<string, string> = {},
    from: "sources" | "build" = "sources",
  ): Promise<ChildProcess> {
    const { naming } = this.settings
    const entry = from === "build" ? ["dist/engine.mjs"] : ["--import", "tsx", "src/main.ts"]
    const child = spawn(process.execPath, entry, {
      env: {
        ...process.env,
        NATS_URL: this.settings.natsUrl,
        DATABASE_URL: Redacted.value(this.settings.databaseUrl),
        RP_CLOCK: "off",
        RP_INSTANCE_ID: `${this.settings.instanceId}-process`,
        RP_SUBJECT_PREFIX: naming.rpPrefix,
        RP_PROVIDER_PREFIX: naming.providerPrefix,
        RP_HUB_PREFIX: naming.hubPrefix,
        RP_STREAM_PREFIX: naming.streamPrefix,
        RP_QUEUE_GROUP: this.settings.queueGroup,
        RP_ACK_WAIT: "PT5S",
        RP_LOG_LEVEL: "Info",
        RP_HTTP_PORT: "0",
        ...environment,
      },
      stdio: ["ignore", "pipe", "pipe"],
    })
    this.processes.push(child)
    let output = ""
    await new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        output += chunk.toString()
        if (output.includes("engine ready")) resolve()
      }
      child.stdout?.on("data", onData)
      child.stderr?.on("data", onData)
      child.once("exit", (code) => reject(new Error(`engine process exited early (${code}):\n${output}`)))
    })
    return child
  }

  /** Starts a fake hub on this world's subjects. */
  async startHub(options: Partial<FakeHubOptions> = {}): Promise<FakeHub> {
    const hub = await startFakeHub({
      natsUrl: this.settings.natsUrl,
      naming: this.settings.naming,
      ...options,
    })
    this.hubs.push(hub)
    return hub
  }

  /** Starts a fake provider on this world's NATS. */
  async startProvider(providerId: string, answer?: (query: DebtQuery) => DebtAnswer): Promise<FakeProvider> {
    const provider = await FakeProvider.start({
      natsUrl: this.settings.natsUrl,
      naming: this.settings.naming,
      providerId,
      ...(answer === undefined ? {} : { answer }),
    })
    this.providers.push(provider)
    return provider
  }

  /** A fake channel talking to this world's engine. */
  channel(name = "mobile"): FakeChannel {
    return new FakeChannel(this.connection, this.settings.naming.rpPrefix, name)
  }

  /** Publishes a tick and waits until the engine has processed it (its consumer acknowledged it). */
  async tick(at: string): Promise<void> {
    await this.js.publish(this.topology.subjects.tick, JSON.stringify({ at }), { msgID: `tick:${at}` })
    await this.consumerCaughtUp(this.topology.streams.ticks, this.topology.consumers.ticks)
  }

  /** Waits until a durable consumer has nothing pending and nothing unacknowledged. */
  async consumerCaughtUp(stream: string, consumer: string, timeoutMs = 20_000): Promise<void> {
    await this.waitFor(
      `${consumer} to catch up`,
      async () => {
        const info = await this.jsm.consumers.info(stream, consumer)
        return info.num_pending === 0 && info.num_ack_pending === 0
      },
      timeoutMs,
    )
  }

  /**
   * Waits until nothing is moving: the engine's consumers, every running fake hub and provider
   * have handled all they were sent, the outbox is empty, and the streams did not grow while
   * that was being checked (so nothing was on its way between two of the checks).
   */
  async settled(timeoutMs = 20_000): Promise<void> {
    const { streams, consumers } = this.topology
    const watched: Array<readonly [string, string]> = [
      [streams.providers, consumers.thresholdEvents],
      [streams.providers, consumers.debtResponses],
      ...this.providers.filter((p) => !p.stopped).map((p) => [streams.providers, p.consumerName] as const),
      ...this.hubs
        .filter((hub) => !hub.stopped)
        .map((hub) => [streams.hubPayments, hub.consumerName] as const),
      [streams.hubPayments, consumers.hubResults],
      [streams.hubPayments, consumers.hubCompleted],
    ]
    const positions = async () =>
      (await Promise.all([streams.hubPayments, streams.providers].map((s) => this.jsm.streams.info(s))))
        .map((info) => info.state.last_seq)
        .join(",")
    const caughtUp = async (stream: string, consumer: string) => {
      const info = await this.jsm.consumers.info(stream, consumer)
      return info.num_pending === 0 && info.num_ack_pending === 0
    }
    await this.waitFor(
      "the engine, the hubs and the providers to settle",
      async () => {
        const before = await positions()
        for (const [stream, consumer] of watched) if (!(await caughtUp(stream, consumer))) return false
        const row = await this.db
          .selectFrom("outbox")
          .select((eb) => eb.fn.countAll<string>().as("count"))
          .executeTakeFirstOrThrow()
        return Number(row.count) === 0 && (await positions()) === before
      },
      timeoutMs,
    )
  }

  /** Waits until the engine has handled every balance reading and debt answer published so far. */
  async providersCaughtUp(timeoutMs = 20_000): Promise<void> {
    const { streams, consumers } = this.topology
    await this.consumerCaughtUp(streams.providers, consumers.thresholdEvents, timeoutMs)
    await this.consumerCaughtUp(streams.providers, consumers.debtResponses, timeoutMs)
  }

  /** Polls `condition` until it holds; fails with `what` after `timeoutMs`. Waiting on an outcome, not a sleep. */
  async waitFor(what: string, condition: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      if (await condition()) return
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
      await new Promise((resolve) => setTimeout(resolve, 15))
    }
  }

  /** Every message stored under `subject` (wildcards allowed) in `stream`, oldest first. */
  async messages(stream: string, subject: string): Promise<Array<StoredMessage>> {
    const info = await this.jsm.streams.info(stream)
    if (info.state.messages === 0) return []
    const found: Array<StoredMessage> = []
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const message = await this.jsm.streams.getMessage(stream, { seq }).catch(() => null)
      if (message === null || !subjectMatches(subject, message.subject)) continue
      found.push({
        subject: message.subject,
        seq: message.seq,
        json: message.json(),
        msgId: message.header?.get("Nats-Msg-Id") || undefined,
      })
    }
    return found
  }

  /** Stops engines and hubs, deletes this test's streams and drops its database. */
  async dispose(): Promise<void> {
    for (const hub of this.hubs) await hub.stop().catch(() => undefined)
    for (const provider of this.providers) await provider.stop().catch(() => undefined)
    for (const engine of this.engines) await engine.stop().catch(() => undefined)
    for (const child of this.processes)
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
    for (const stream of Object.values(this.topology.streams)) {
      await this.jsm.streams.delete(stream).catch(() => undefined)
    }
    await this.connection.drain().catch(() => undefined)
    await this.db.destroy()
    const admin = new pg.Client({ connectionString: ADMIN_URL })
    await admin.connect()
    await admin.query(`DROP DATABASE IF EXISTS ${this.databaseName} WITH (FORCE)`)
    await admin.end()
  }
}

const subjectMatches = (pattern: string, subject: string): boolean => {
  const wanted = pattern.split(".")
  const actual = subject.split(".")
  for (let index = 0; index < wanted.length; index++) {
    if (wanted[index] === ">") return actual.length > index
    if (wanted[index] !== "*" && wanted[index] !== actual[index]) return false
  }
  return wanted.length === actual.length
}
