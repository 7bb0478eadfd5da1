/**
 * Which channels may talk to the engine.
 *
 * Until the channel registry (database-backed, with signing keys and
 * per-operation permissions) exists, the registered channels are the five
 * the contract names, unsigned, each allowed every operation.
 */
import { Context, Effect, Layer } from "effect"

/** The channels accepted when no registry is configured. */
export const DEFAULT_CHANNELS: ReadonlyArray<string> = ["mobile", "internet", "atm", "terminal", "cashier"]

/** Why a channel was refused. */
export interface ChannelRefusal {
  readonly message: string
}

/** Channel authorization. */
export class Channels extends Context.Service<
  Channels,
  {
    /** Undefined when `channel` may perform `operation`; otherwise why not. */
    readonly authorize: (channel: string, operation: string) => Effect.Effect<ChannelRefusal | undefined>
  }
>()("rp/protocol/Channels") {
  static readonly layerDefault = Layer.effect(
    Channels,
    Effect.gen(function* () {
      yield* Effect.logWarning(
        "no channel registry: accepting the five default channels, UNSIGNED (mobile, internet, atm, terminal, cashier)",
      )
      const known = new Set(DEFAULT_CHANNELS)
      return Channels.of({
        authorize: (channel) =>
          Effect.succeed(
            known.has(channel) ? undefined : { message: `channel "${channel}" is not registered` },
          ),
      })
    }),
  )
}
