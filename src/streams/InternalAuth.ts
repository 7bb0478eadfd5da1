/**
 * Proof that a message on `rp.internal.>` comes from an engine instance.
 *
 * Every message between instances (forwarded actor messages, forwarded
 * channel requests, console changes, engine-time announcements, and the
 * answers to each) carries an `Rp-Internal-Mac` header: an HMAC-SHA256,
 * under the cluster secret, of the subject, the time it was signed, a
 * random nonce, the engine's own headers (`Rp-*`, `traceparent`) and the
 * payload. A receiver checks it (in constant time) before anything is
 * applied, refuses a message signed more than `FRESHNESS_WINDOW_MS` away
 * from its own clock, and a nonce it has already accepted within that
 * window, so a captured message cannot be replayed. A refused message
 * changes nothing and gets no answer; it is counted
 * (`rp_internal_messages_rejected_total`) and logged, at most one warning
 * per kind and reason every `WARNING_INTERVAL_MS`.
 *
 * NATS permissions (docs/channels.md) keep other parties off these
 * subjects too; this check holds when they are missing or too wide.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto"
import { createInbox, headers, type Msg, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node"
import { Context, Effect, FiberSet, Layer, Redacted } from "effect"
import { EngineConfig } from "../EngineConfig.ts"
import { Metrics } from "../observability/Metrics.ts"
import { ClusterSecretStore } from "../store/ClusterSecret.ts"
import { Nats } from "./Nats.ts"

export const INTERNAL_MAC_HEADER = "Rp-Internal-Mac"

/** A message signed further than this from the receiver's clock is refused (instances' clocks must agree this well). */
export const FRESHNESS_WINDOW_MS = 30_000

/** Refusals of one kind and reason are logged at most this often; every one is counted. */
const WARNING_INTERVAL_MS = 60_000

const MAC_VERSION = "v1"

/** Which internal traffic a message belongs to (a metric label). */
export type InternalKind = "forward" | "request" | "console" | "clock" | "reply"

/** Why a message was refused (a metric label). */
export type InternalRejection = "unsigned" | "malformed" | "wrong_mac" | "stale" | "replayed"

const encoder = new TextEncoder()

const bytesOf = (payload: Uint8Array | string): Uint8Array =>
  typeof payload === "string" ? encoder.encode(payload) : payload

/** The headers the MAC covers: the engine's own (`Rp-*`, `traceparent`), whatever their case, the MAC itself aside. */
const coveredHeaders = (carried: MsgHdrs | undefined): Array<string> => {
  if (carried === undefined) return []
  const lines: Array<string> = []
  for (const name of carried.keys()) {
    const lower = name.toLowerCase()
    if (lower === INTERNAL_MAC_HEADER.toLowerCase()) continue
    if (!lower.startsWith("rp-") && lower !== "traceparent") continue
    lines.push(`${lower}=${carried.values(name).join("\u0000")}`)
  }
  return lines.sort()
}

const macOf = (
  secret: Uint8Array,
  subject: string,
  at: string,
  nonce: string,
  carried: MsgHdrs | undefined,
  payload: Uint8Array,
): Buffer => {
  const hmac = createHmac("sha256", secret)
  hmac.update(`rp-internal-${MAC_VERSION}\n${subject}\n${at}\n${nonce}\n`)
  for (const line of coveredHeaders(carried)) hmac.update(`${line}\n`)
  hmac.update("\n")
  hmac.update(payload)
  return hmac.digest()
}

/**
 * Adds the MAC for a message to `subject` to `carried` (a fresh header set when absent). Set every other
 * header first: the MAC covers them. `at` and `nonce` are for tests that forge old or repeated messages.
 */
export const signMessage = (
  secret: Uint8Array,
  subject: string,
  payload: Uint8Array | string,
  carried: MsgHdrs = headers(),
  at: number = Date.now(),
  nonce: string = randomBytes(12).toString("base64url"),
): MsgHdrs => {
  const stamp = String(Math.trunc(at))
  const mac = macOf(secret, subject, stamp, nonce, carried, bytesOf(payload)).toString("base64url")
  carried.set(INTERNAL_MAC_HEADER, `${MAC_VERSION}.${stamp}.${nonce}.${mac}`)
  return carried
}

/** An authentic message's nonce and signing time, or why it is refused (replays aside: see `InternalAuth`). */
export type Verdict =
  | { readonly ok: true; readonly nonce: string; readonly at: number }
  | { readonly ok: false; readonly reason: InternalRejection }

/** Checks the MAC of a message received on `subject` against each of `secrets` (the current one first). */
export const verifyMessage = (
  secrets: ReadonlyArray<Uint8Array>,
  subject: string,
  payload: Uint8Array,
  carried: MsgHdrs | undefined,
  now: number = Date.now(),
): Verdict => {
  const values = carried?.values(INTERNAL_MAC_HEADER) ?? []
  if (values.length === 0) return { ok: false, reason: "unsigned" }
  const parts = values.length === 1 ? (values[0] ?? "").split(".") : []
  const [version, stamp, nonce, mac] = parts
  if (
    parts.length !== 4 ||
    version !== MAC_VERSION ||
    stamp === undefined ||
    !/^\d{1,15}$/.test(stamp) ||
    nonce === undefined ||
    !/^[A-Za-z0-9_-]{8,64}$/.test(nonce) ||
    mac === undefined
  ) {
    return { ok: false, reason: "malformed" }
  }
  const claimed = Buffer.from(mac, "base64url")
  const authentic = secrets.some((secret) => {
    const expected = macOf(secret, subject, stamp, nonce, carried, payload)
    return claimed.length === expected.length && timingSafeEqual(claimed, expected)
  })
  if (!authentic) return { ok: false, reason: "wrong_mac" }
  const at = Number(stamp)
  if (Math.abs(now - at) > FRESHNESS_WINDOW_MS) return { ok: false, reason: "stale" }
  return { ok: true, nonce, at }
}

/** Reads `RP_CLUSTER_SECRET`-style text as key bytes. */
export const secretBytes = (secret: string): Uint8Array => encoder.encode(secret)

export interface InternalAuthService {
  /** Headers for a message to `subject`: `carried` (set its other headers first) plus the MAC. */
  readonly sign: (subject: string, payload: Uint8Array | string, carried?: MsgHdrs) => MsgHdrs
  /**
   * Whether `message` comes from an instance (authentic, fresh, not seen before). When not, it is counted
   * and logged, and the caller must drop it: apply nothing and answer nothing.
   */
  readonly accepts: (message: Msg, kind: InternalKind) => boolean
  /** Publishes a signed message. */
  readonly publish: (subject: string, payload: Uint8Array | string, carried?: MsgHdrs) => void
  /** Answers `message` with a signed reply (nothing when it asked for none). */
  readonly respond: (message: Msg, payload: Uint8Array | string) => void
  /**
   * A signed request; resolves with the first authentic answer (forged answers are counted and ignored)
   * and rejects on timeout or when nobody listens.
   */
  readonly request: (
    subject: string,
    payload: Uint8Array | string,
    options: { readonly timeout: number; readonly headers?: MsgHdrs },
  ) => Promise<Msg>
}

/** Counts and logs refused internal messages, never more than one warning per kind and reason a minute. */
const makeRejectionReporter = (
  count: (kind: InternalKind, reason: InternalRejection) => void,
  warn: (kind: InternalKind, reason: InternalRejection, subject: string, suppressed: number) => void,
) => {
  const lastWarned = new Map<string, { at: number; suppressed: number }>()
  return (kind: InternalKind, reason: InternalRejection, subject: string) => {
    count(kind, reason)
    const key = `${kind}/${reason}`
    const now = Date.now()
    const last = lastWarned.get(key)
    if (last !== undefined && now - last.at < WARNING_INTERVAL_MS) {
      last.suppressed += 1
      return
    }
    warn(kind, reason, subject, last?.suppressed ?? 0)
    lastWarned.set(key, { at: now, suppressed: 0 })
  }
}

/** Nonces accepted within the freshness window; insertion order is arrival order, so expiry trims the front. */
const makeNonceMemory = () => {
  const seen = new Map<string, number>()
  return (nonce: string, now: number): boolean => {
    for (const [old, at] of seen) {
      if (now - at <= 2 * FRESHNESS_WINDOW_MS) break
      seen.delete(old)
    }
    if (seen.has(nonce)) return false
    seen.set(nonce, now)
    return true
  }
}

interface PendingRequest {
  readonly resolve: (message: Msg) => void
  readonly reject: (error: Error) => void
  readonly timer: NodeJS.Timeout
}

/** The service over given secrets (the first signs; all verify) and a connection. */
export const makeInternalAuth = (
  connection: NatsConnection,
  secrets: ReadonlyArray<Uint8Array>,
  report: (kind: InternalKind, reason: InternalRejection, subject: string) => void,
): InternalAuthService & { readonly close: () => void } => {
  const [signing] = secrets
  if (signing === undefined) throw new Error("no cluster secret")
  const firstSeen = makeNonceMemory()

  const sign = (subject: string, payload: Uint8Array | string, carried?: MsgHdrs) =>
    signMessage(signing, subject, payload, carried ?? headers())

  const accepts = (message: Msg, kind: InternalKind): boolean => {
    const now = Date.now()
    const verdict = verifyMessage(secrets, message.subject, message.data, message.headers, now)
    const reason = verdict.ok ? (firstSeen(verdict.nonce, now) ? undefined : "replayed") : verdict.reason
    if (reason === undefined) return true
    report(kind, reason, message.subject)
    return false
  }

  // Answers come back on one wildcard subscription, matched to their request by the last token, so a
  // forged answer can be passed over and the owner's still taken.
  const inbox = createInbox()
  const pending = new Map<string, PendingRequest>()
  let nextToken = 0
  const answers = connection.subscribe(`${inbox}.*`, {
    callback: (error, message) => {
      if (error !== null) return
      const token = message.subject.slice(inbox.length + 1)
      const waiting = pending.get(token)
      // Nobody listens (the server's own status answer): the caller handles the message itself.
      if (message.headers?.code === 503) {
        if (waiting === undefined) return
        pending.delete(token)
        clearTimeout(waiting.timer)
        waiting.reject(new Error("no responders"))
        return
      }
      // Checked even when late: a forged answer is counted whether or not it came first.
      if (!accepts(message, "reply") || waiting === undefined) return
      pending.delete(token)
      clearTimeout(waiting.timer)
      waiting.resolve(message)
    },
  })

  const request: InternalAuthService["request"] = (subject, payload, options) =>
    new Promise<Msg>((resolve, reject) => {
      nextToken += 1
      const token = nextToken.toString(36)
      const timer = setTimeout(() => {
        pending.delete(token)
        reject(new Error(`no authentic answer on ${subject} within ${options.timeout} ms`))
      }, options.timeout)
      pending.set(token, { resolve, reject, timer })
      try {
        connection.publish(subject, payload, {
          reply: `${inbox}.${token}`,
          headers: sign(subject, payload, options.headers),
        })
      } catch (error) {
        pending.delete(token)
        clearTimeout(timer)
        reject(error instanceof Error ? error : new Error(String(error)))
      }
    })

  return {
    sign,
    accepts,
    publish: (subject, payload, carried) =>
      connection.publish(subject, payload, { headers: sign(subject, payload, carried) }),
    respond: (message, payload) => {
      const reply = message.reply
      if (reply === undefined || reply === "") return
      connection.publish(reply, payload, { headers: sign(reply, payload) })
    },
    request,
    close: () => {
      answers.unsubscribe()
      for (const [token, waiting] of pending) {
        pending.delete(token)
        clearTimeout(waiting.timer)
        waiting.reject(new Error("closing"))
      }
    },
  }
}

/** Signs and checks the engine's messages between instances with the cluster secret. */
export class InternalAuth extends Context.Service<InternalAuth, InternalAuthService>()(
  "rp/streams/InternalAuth",
) {
  static readonly layer = Layer.effect(
    InternalAuth,
    Effect.gen(function* () {
      const config = yield* EngineConfig
      const metrics = yield* Metrics
      const { connection } = yield* Nats
      const stored = yield* ClusterSecretStore
      const configured = Redacted.value(config.clusterSecret)
      const current = secretBytes(configured === "" ? yield* stored.secret : configured)
      const alsoAccepted = Redacted.value(config.clusterSecretAccepted)
      const secrets = alsoAccepted === "" ? [current] : [current, secretBytes(alsoAccepted)]

      const fibers = yield* FiberSet.make<void, never>()
      const fork = yield* FiberSet.runtime(fibers)<never>()
      const report = makeRejectionReporter(metrics.internalRejected, (kind, reason, subject, suppressed) =>
        fork(
          Effect.logWarning(
            "internal message refused: not signed by an engine instance with this cluster secret; nothing applied",
          ).pipe(Effect.annotateLogs({ kind, reason, subject, suppressedSinceLastWarning: suppressed })),
        ),
      )
      const auth = yield* Effect.acquireRelease(
        Effect.sync(() => makeInternalAuth(connection, secrets, report)),
        (made) => Effect.sync(made.close),
      )
      yield* Effect.logInfo("internal messages signed").pipe(
        Effect.annotateLogs({
          clusterSecret: configured === "" ? "stored in the database" : "RP_CLUSTER_SECRET",
          secondSecretAccepted: alsoAccepted !== "",
        }),
      )
      return InternalAuth.of(auth)
    }),
  )
}
