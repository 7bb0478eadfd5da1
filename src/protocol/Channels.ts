/**
 * Which channels may talk to the engine, what each may do, and whether a
 * request really comes from the channel it names.
 *
 * The registry lives in the `channels` table (see store/ChannelStore.ts and
 * the `channels` CLI) and is held in memory: a request is authorized without
 * a database round trip, and each registered key is turned into a Node
 * KeyObject once, when it is loaded. Every instance reloads the registry
 * when Postgres notifies `rp_channels` (a trigger fires on every change,
 * usually within milliseconds) and, in case a notification is lost, every
 * `RP_CHANNELS_REFRESH` (default 5 s): a change such as a key rotation is in
 * force on every instance within that bound.
 *
 * With no channel registered at all, the five development channels the
 * contract names are accepted unsigned, each allowed every operation — and
 * the engine says so loudly. `RP_DEFAULT_CHANNELS=off` refuses everything
 * instead, for production installations that must never run open.
 */
import type { KeyObject } from "node:crypto"
import { Context, Effect, Layer, Ref } from "effect"
import { millisOf } from "../domain/Timestamp.ts"
import { EngineConfig } from "../EngineConfig.ts"
import { type ChannelRow, listChannels } from "../store/ChannelStore.ts"
import { Database } from "../store/Database.ts"
import { keepFresh } from "../store/KeptFresh.ts"
import { checkSignature, fingerprintOf, parsePublicKey, publicKeyObject } from "./ChannelKeys.ts"

/** The channels accepted, unsigned, when no channel is registered. */
export const DEFAULT_CHANNELS: ReadonlyArray<string> = ["mobile", "internet", "atm", "terminal", "cashier"]

/**
 * The operations a channel can be allowed, by name: the contract's (the channels test checks that
 * every operation the server offers is here).
 */
export const KNOWN_OPERATIONS: ReadonlyArray<string> = [
  "template.create",
  "template.get",
  "template.list",
  "template.delete",
  "subscription.create",
  "subscription.get",
  "subscription.list",
  "subscription.update",
  "subscription.pause",
  "subscription.resume",
  "subscription.cancel",
  "subscription.skipNext",
  "subscription.history",
  "subscription.preview",
  "payment.confirm",
  "reminder.accept",
  "reminder.decline",
]

/**
 * The channel name changes made in the operator console are recorded under; no channel may be
 * registered with it, so a history entry by `console` is always an operator's.
 */
export const CONSOLE_CHANNEL = "console"

/** The channel id pattern: one NATS subject token. */
export const CHANNEL_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/

/**
 * Why a permission pattern is not one, or undefined: `*` (everything), `<group>.*`
 * (`template.*`, `subscription.*`, `payment.*`) or an operation's name.
 */
export const checkOperationPattern = (pattern: string): string | undefined => {
  if (pattern === "*" || KNOWN_OPERATIONS.includes(pattern)) return undefined
  if (pattern.endsWith(".*") && KNOWN_OPERATIONS.some((name) => name.startsWith(pattern.slice(0, -1)))) {
    return undefined
  }
  return `"${pattern}" is not "*", "<group>.*" or one of: ${KNOWN_OPERATIONS.join(", ")}`
}

/** True when one of `patterns` admits `operation`. */
export const operationAllowed = (patterns: ReadonlyArray<string>, operation: string): boolean =>
  patterns.some(
    (pattern) =>
      pattern === "*" ||
      pattern === operation ||
      (pattern.endsWith(".*") && operation.startsWith(pattern.slice(0, -1))),
  )

/** A registered channel as the engine holds it. */
export interface RegisteredChannel {
  readonly id: string
  readonly displayName: string
  readonly operations: ReadonlyArray<string>
  readonly disabled: boolean
  /** How requests are authenticated: not at all, with this key, or refused (the stored key is unreadable). */
  readonly signing:
    | { readonly _tag: "Unsigned" }
    | { readonly _tag: "Key"; readonly key: KeyObject; readonly fingerprint: string }
    | { readonly _tag: "BrokenKey"; readonly reason: string }
}

/** The registry in force. */
export type Registry =
  /** Nothing registered: the development channels, unsigned. */
  | { readonly _tag: "Default" }
  /** Nothing registered and the development channels switched off: every request is refused. */
  | { readonly _tag: "Closed" }
  | { readonly _tag: "Registered"; readonly channels: ReadonlyMap<string, RegisteredChannel> }

/** What authorization looks at: the envelope's channel, operation and `sentAt`, and the request's exact bytes. */
export interface ChannelRequest {
  readonly channel: string
  readonly operation: string
  readonly sentAt: string
  readonly data: Uint8Array
  /** The `Rp-Signature` header, if any. */
  readonly signature: string | undefined
}

/** Why a request was refused. */
export interface ChannelRefusal {
  readonly message: string
}

const refuse = (message: string): ChannelRefusal => ({ message })

const developmentChannels = new Set(DEFAULT_CHANNELS)

/**
 * Undefined when `request` may go on; otherwise why not. Checks, in order: the channel is registered
 * and enabled; a signing channel's signature verifies over the exact bytes and its `sentAt` is within
 * `windowMs` of `nowMs` (a replay guard); the channel may perform the operation.
 */
export const authorizeWith = (
  registry: Registry,
  request: ChannelRequest,
  nowMs: number,
  windowMs: number,
): ChannelRefusal | undefined => {
  switch (registry._tag) {
    case "Default":
      return developmentChannels.has(request.channel)
        ? undefined
        : refuse(`channel "${request.channel}" is not registered`)
    case "Closed":
      return refuse(`channel "${request.channel}" is not registered (no channel is)`)
    case "Registered": {
      const channel = registry.channels.get(request.channel)
      if (channel === undefined) return refuse(`channel "${request.channel}" is not registered`)
      if (channel.disabled) return refuse(`channel "${request.channel}" is disabled`)
      switch (channel.signing._tag) {
        case "BrokenKey":
          return refuse(`channel "${request.channel}" has no usable key registered`)
        case "Key": {
          const problem = checkSignature(request.signature, request.data, channel.signing.key)
          if (problem !== undefined) return refuse(problem)
          const skew = Math.abs(millisOf(request.sentAt) - nowMs)
          if (skew > windowMs) {
            return refuse(
              `sentAt ${request.sentAt} is more than ${Math.round(windowMs / 1000)} s from the engine's clock: ` +
                "a signed request is accepted only within that window (replay protection)",
            )
          }
          break
        }
        case "Unsigned":
          break
      }
      return operationAllowed(channel.operations, request.operation)
        ? undefined
        : refuse(`channel "${request.channel}" may not perform "${request.operation}"`)
    }
  }
}

/** Builds the registry from its rows, reusing KeyObjects already made for the same key text. */
export const registryOf = (
  rows: ReadonlyArray<ChannelRow>,
  defaultChannels: "on" | "off",
  keys: Map<string, KeyObject> = new Map(),
): Registry => {
  if (rows.length === 0) return defaultChannels === "on" ? { _tag: "Default" } : { _tag: "Closed" }
  const channels = new Map<string, RegisteredChannel>()
  const used = new Set<string>()
  for (const row of rows) {
    let signing: RegisteredChannel["signing"] = { _tag: "Unsigned" }
    if (row.publicKey !== null) {
      const parsed = parsePublicKey(row.publicKey)
      if (parsed._tag === "Invalid") {
        signing = { _tag: "BrokenKey", reason: parsed.reason }
      } else {
        let key = keys.get(row.publicKey)
        if (key === undefined) {
          key = publicKeyObject(parsed.raw)
          keys.set(row.publicKey, key)
        }
        used.add(row.publicKey)
        signing = { _tag: "Key", key, fingerprint: fingerprintOf(parsed.raw) }
      }
    }
    channels.set(row.id, {
      id: row.id,
      displayName: row.displayName,
      operations: row.operations,
      disabled: row.disabledAt !== null,
      signing,
    })
  }
  for (const text of keys.keys()) if (!used.has(text)) keys.delete(text)
  return { _tag: "Registered", channels }
}

/** One line describing the registry, for the log (it changes exactly when the registry does). */
export const describeRegistry = (registry: Registry): string => {
  switch (registry._tag) {
    case "Default":
      return `INSECURE: no channel registered: accepting the five default channels, UNSIGNED (${DEFAULT_CHANNELS.join(", ")}); register channels with npm run channels`
    case "Closed":
      return "no channel registered and RP_DEFAULT_CHANNELS=off: every channel request is refused"
    case "Registered":
      return `channel registry: ${[...registry.channels.values()]
        .map((channel) => {
          const signing =
            channel.signing._tag === "Key"
              ? `key ${channel.signing.fingerprint}`
              : channel.signing._tag === "Unsigned"
                ? "UNSIGNED"
                : "BROKEN KEY"
          return `${channel.id} (${signing}${channel.disabled ? ", disabled" : ""}; ${channel.operations.join(" ")})`
        })
        .join(", ")}`
  }
}

/** A few words on the registry for the protocol server's ready line. */
export const summarizeRegistry = (registry: Registry): string => {
  switch (registry._tag) {
    case "Default":
      return "UNSIGNED development defaults (no channel registered)"
    case "Closed":
      return "none (no channel registered, RP_DEFAULT_CHANNELS=off)"
    case "Registered": {
      const channels = [...registry.channels.values()].filter((channel) => !channel.disabled)
      const unsigned = channels.filter((channel) => channel.signing._tag !== "Key").length
      return `${channels.length} enabled, ${unsigned} of them unsigned`
    }
  }
}

/** The Postgres channel the registry's trigger notifies. */
export const REGISTRY_NOTIFICATION = "rp_channels"

/** Channel authentication and authorization. */
export class Channels extends Context.Service<
  Channels,
  {
    /** Undefined when the request may go on; otherwise why not. Reads only memory. */
    readonly authorize: (request: ChannelRequest) => Effect.Effect<ChannelRefusal | undefined>
    /** The registry in force. */
    readonly current: Effect.Effect<Registry>
    /** Reads the registry from the database now. */
    readonly reload: Effect.Effect<void>
  }
>()("rp/protocol/Channels") {
  /** The five development channels, unsigned, whatever the database says (tests of other parts). */
  static readonly layerDefault = Layer.effect(
    Channels,
    Effect.gen(function* () {
      const registry: Registry = { _tag: "Default" }
      yield* Effect.logWarning(describeRegistry(registry))
      const { signatureWindowMs } = yield* EngineConfig
      return Channels.of({
        authorize: (request) =>
          Effect.sync(() => authorizeWith(registry, request, Date.now(), signatureWindowMs)),
        current: Effect.succeed(registry),
        reload: Effect.void,
      })
    }),
  )

  /** The registry from the database, kept current by notifications and a periodic refresh. */
  static readonly layer = Layer.effect(
    Channels,
    Effect.gen(function* () {
      const config = yield* EngineConfig
      const database = yield* Database
      const keys = new Map<string, KeyObject>()
      const state = yield* Ref.make<Registry>({ _tag: "Closed" })
      let described = ""

      const reload = Effect.gen(function* () {
        const rows = yield* database.use((db) => listChannels(db))
        const next = registryOf(rows, config.defaultChannels, keys)
        yield* Ref.set(state, next)
        const description = describeRegistry(next)
        if (description === described) return
        described = description
        if (next._tag === "Registered") {
          yield* Effect.logInfo(description)
          for (const channel of next.channels.values()) {
            if (channel.disabled) continue
            if (channel.signing._tag === "Unsigned") {
              yield* Effect.logWarning(
                `channel "${channel.id}" is registered without a key: its requests are NOT authenticated`,
              )
            } else if (channel.signing._tag === "BrokenKey") {
              yield* Effect.logError(
                `channel "${channel.id}" has an unreadable key (${channel.signing.reason}): all its requests are refused`,
              )
            }
          }
        } else {
          yield* Effect.logWarning(description)
        }
      })

      yield* reload

      yield* keepFresh({
        databaseUrl: config.databaseUrl,
        notification: REGISTRY_NOTIFICATION,
        everyMs: config.channelsRefreshMs,
        reload,
        what: "the channel registry",
      })

      return Channels.of({
        authorize: (request) =>
          Ref.get(state).pipe(
            Effect.map((registry) => authorizeWith(registry, request, Date.now(), config.signatureWindowMs)),
          ),
        current: Ref.get(state),
        reload,
      })
    }),
  )
}
