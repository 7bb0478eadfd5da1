/**
 * Whether the engine's infrastructure answers: Postgres and NATS.
 *
 * A stream consumer asks here before it counts a failed message toward the
 * dead-letter stream: a failure is the infrastructure's when its cause is a
 * connection failure (refused, reset, terminated, a pool or connect timeout,
 * a NATS disconnect or timeout), or when a probe right after it finds Postgres
 * or NATS not answering. Such a failure never counts against the message.
 *
 * A dependency a probe finds down stays down until a probe finds it back
 * (probed with back-off, 250 ms doubling to 2 s): meanwhile the consumers stop
 * pulling (`awaitDown`), readiness says which one is down, and the consumers
 * start again by themselves (`awaitUp`).
 *
 * The Postgres probe opens a connection of its own (`SELECT 1`) rather than
 * borrowing one from the pool: in a burst the pool may be busy for longer
 * than the probe's timeout, and that is not an outage.
 */
import { Cause, Context, Duration, Effect, Latch, Layer, Redacted } from "effect"
import pg from "pg"
import { EngineConfig } from "../EngineConfig.ts"
import { Nats } from "./Nats.ts"

/** What the engine cannot work without. */
export type Dependency = "postgres" | "nats"

/** How long one probe may take before the dependency counts as not answering. */
export const probeTimeoutMs = 2_000
/** A probe started this long before a failure still tells about it (a burst of failures shares one). */
const probeReuseMs = 100
const firstRetryMs = 250
const maxRetryMs = 2_000

const SOCKET_ERROR_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
  "ENOTFOUND",
  "EAI_AGAIN",
])

/** Postgres SQLSTATEs of a lost or refused connection: class 08, shutdowns (57P01-57P03), too many connections. */
const isPostgresConnectionState = (code: string) =>
  code.startsWith("08") || code === "57P01" || code === "57P02" || code === "57P03" || code === "53300"

/** What the `pg` client says when its socket or pool fails, rather than a statement. */
const PG_CONNECTION_MESSAGE =
  /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Connection refused/i

const NATS_CONNECTION_ERRORS = new Set([
  "ClosedConnectionError",
  "ConnectionError",
  "DrainingConnectionError",
  "TimeoutError",
])

/** Every error in `error`, its `cause` chain and any `errors` it aggregates. */
const errorsIn = (error: unknown, depth = 0): Array<unknown> => {
  if (depth > 5 || typeof error !== "object" || error === null) return [error]
  const nested: Array<unknown> = [error]
  const { cause, errors } = error as { cause?: unknown; errors?: unknown }
  if (cause !== undefined) nested.push(...errorsIn(cause, depth + 1))
  if (Array.isArray(errors)) for (const inner of errors) nested.push(...errorsIn(inner, depth + 1))
  return nested
}

/** The dependency a failure's own errors blame, if they are connection failures. */
export const connectionFailureIn = (cause: Cause.Cause<unknown>): Dependency | undefined => {
  for (const reason of cause.reasons) {
    const raw = Cause.isFailReason(reason)
      ? reason.error
      : Cause.isDieReason(reason)
        ? reason.defect
        : undefined
    for (const error of errorsIn(raw)) {
      if (typeof error !== "object" || error === null) continue
      const { code, name, message } = error as { code?: unknown; name?: unknown; message?: unknown }
      if (typeof name === "string" && NATS_CONNECTION_ERRORS.has(name)) return "nats"
      if (typeof code === "string" && (SOCKET_ERROR_CODES.has(code) || isPostgresConnectionState(code)))
        return "postgres"
      if (typeof message === "string" && PG_CONNECTION_MESSAGE.test(message)) return "postgres"
    }
  }
  return undefined
}

/** Resolves with the promise's value, or rejects once `ms` pass without one. */
export const withTimeout = <A>(promise: Promise<A>, ms: number): Promise<A> =>
  new Promise<A>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)
    promise.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (error: unknown) => {
        clearTimeout(timer)
        reject(error)
      },
    )
  })

const reasonOf = (error: unknown) => (error instanceof Error ? error.message : String(error))

/** What is down, found by one round of probes. */
type ProbeResult = ReadonlyMap<Dependency, string>

/** The engine's view of its infrastructure. */
export class Dependencies extends Context.Service<
  Dependencies,
  {
    /** The dependencies found not answering, with why; empty while everything answers. */
    readonly down: () => ReadonlyMap<Dependency, string>
    /**
     * Whom to blame for a handler's failure: the dependency its errors or a fresh probe point at,
     * or undefined when Postgres and NATS answer (the message itself is the problem). A probe that
     * finds a dependency down marks it down.
     */
    readonly blame: (cause: Cause.Cause<unknown>) => Effect.Effect<Dependency | undefined>
    /** Completes at once while everything answers, otherwise once probes find it back. */
    readonly awaitUp: Effect.Effect<void>
    /** Completes once a dependency is found down. */
    readonly awaitDown: Effect.Effect<void>
  }
>()("rp/streams/Dependencies") {
  static readonly layer = Layer.effect(
    Dependencies,
    Effect.gen(function* () {
      const config = yield* EngineConfig
      const { connection } = yield* Nats
      const databaseUrl = Redacted.value(config.databaseUrl)

      const down = new Map<Dependency, string>()
      const allUp = Latch.makeUnsafe(true)
      const someDown = Latch.makeUnsafe(false)

      const probePostgres = async (): Promise<string | undefined> => {
        const client = new pg.Client({
          connectionString: databaseUrl,
          connectionTimeoutMillis: probeTimeoutMs,
          query_timeout: probeTimeoutMs,
        })
        // A socket that dies after the probe is not this probe's business (and must not crash the process).
        client.on("error", () => undefined)
        try {
          await withTimeout(
            client.connect().then(() => client.query("SELECT 1")),
            probeTimeoutMs,
          )
          return undefined
        } catch (error) {
          return `no answer to SELECT 1: ${reasonOf(error)}`
        } finally {
          void client.end().catch(() => undefined)
        }
      }

      // Status events come as they happen; a disconnect is known before any probe.
      let natsDisconnected = false
      const probeNats = async (): Promise<string | undefined> => {
        if (connection.isClosed()) return "the NATS connection is closed"
        if (natsDisconnected) return "disconnected from the NATS server"
        try {
          await withTimeout(connection.flush(), probeTimeoutMs)
          return undefined
        } catch (error) {
          return `no answer to a ping: ${reasonOf(error)}`
        }
      }

      const probe = async (dependency: Dependency) =>
        dependency === "postgres" ? probePostgres() : probeNats()

      let latest: { readonly startedAt: number; readonly result: Promise<ProbeResult> } | undefined
      /** Probes both, sharing a round started at most `probeReuseMs` before `since`. */
      const probeBoth = (since: number): Promise<ProbeResult> => {
        if (latest !== undefined && latest.startedAt >= since - probeReuseMs) return latest.result
        const startedAt = performance.now()
        const result = Promise.all([probePostgres(), probeNats()]).then(([postgres, nats]) => {
          const found = new Map<Dependency, string>()
          if (postgres !== undefined) found.set("postgres", postgres)
          if (nats !== undefined) found.set("nats", nats)
          return found as ProbeResult
        })
        latest = { startedAt, result }
        return result
      }

      const markDown = (dependency: Dependency, why: string) =>
        Effect.suspend(() => {
          const known = down.has(dependency)
          down.set(dependency, why)
          if (known) return Effect.void
          allUp.closeUnsafe()
          someDown.openUnsafe()
          return Effect.logWarning(`${dependency} unreachable; consumers pause until it answers`).pipe(
            Effect.annotateLogs({ dependency, why }),
          )
        })

      const markUp = (dependency: Dependency) =>
        Effect.suspend(() => {
          if (!down.delete(dependency)) return Effect.void
          if (down.size === 0) {
            someDown.closeUnsafe()
            allUp.openUnsafe()
          }
          return Effect.logInfo(`${dependency} answers again`).pipe(Effect.annotateLogs({ dependency }))
        })

      const context = yield* Effect.context<never>()
      const runFork = Effect.runForkWith(context)
      // Set when something may have come back (NATS reconnected): the next probe runs at once.
      const wake = Latch.makeUnsafe(false)
      yield* Effect.forkScoped(
        Effect.promise(async () => {
          for await (const status of connection.status()) {
            if (status.type === "disconnect" || status.type === "staleConnection") {
              natsDisconnected = true
              runFork(markDown("nats", `disconnected from the NATS server (${status.type})`))
            } else if (status.type === "reconnect") {
              natsDisconnected = false
              wake.openUnsafe()
            }
          }
        }),
      )

      // Probes what is down, with back-off, until everything answers; then waits for the next outage.
      const recover = Effect.gen(function* () {
        let delayMs = firstRetryMs
        for (;;) {
          yield* someDown.await
          wake.closeUnsafe()
          for (const dependency of [...down.keys()]) {
            const why = yield* Effect.promise(() => probe(dependency))
            if (why === undefined) yield* markUp(dependency)
            else down.set(dependency, why)
          }
          if (down.size === 0) {
            delayMs = firstRetryMs
            continue
          }
          yield* Effect.raceFirst(Effect.sleep(Duration.millis(delayMs)), wake.await)
          delayMs = Math.min(maxRetryMs, delayMs * 2)
        }
      })
      yield* Effect.forkScoped(recover)

      return Dependencies.of({
        down: () => down,
        blame: (cause) =>
          Effect.gen(function* () {
            const since = performance.now()
            const named = connectionFailureIn(cause)
            const found = yield* Effect.promise(() => probeBoth(since))
            for (const [dependency, why] of found) yield* markDown(dependency, why)
            // A connection failure is the infrastructure's even when the probe after it finds it back.
            return named ?? found.keys().next().value
          }),
        awaitUp: allUp.await,
        awaitDown: someDown.await,
      })
    }),
  )
}
