/**
 * The engine's own clock (`RP_CLOCK=on`): publishes `rp.tick` at every
 * interval boundary of the wall clock.
 *
 * Ticks are aligned to boundaries and carry the msg id `tick:<at>`, so when
 * several instances run their clocks, each boundary is stored once.
 */
import { Duration, Effect, Layer } from "effect"
import * as Timestamp from "../domain/Timestamp.ts"
import { EngineConfig } from "../EngineConfig.ts"
import { Nats } from "./Nats.ts"
import { Topology } from "./Topology.ts"

/** Runs the clock when configured on; does nothing when off. */
export const ClockPublisher = Layer.effectDiscard(
  Effect.gen(function* () {
    const config = yield* EngineConfig
    if (config.clock === "off") {
      yield* Effect.logInfo("clock off: engine time advances only with rp.tick messages from outside")
      return
    }
    const { js } = yield* Nats
    const { subjects } = yield* Topology
    const interval = config.tickIntervalMs
    const publishTick = Effect.gen(function* () {
      const at = Timestamp.format(Math.floor(Date.now() / interval) * interval)
      yield* Effect.tryPromise(() =>
        js.publish(subjects.tick, JSON.stringify({ at }), { msgID: `tick:${at}` }),
      ).pipe(
        Effect.catch((error) =>
          Effect.logWarning("tick publish failed; the next boundary will carry time forward").pipe(
            Effect.annotateLogs({ at, error: String(error.cause ?? error) }),
          ),
        ),
      )
    })
    const untilNextBoundary = Effect.suspend(() =>
      Effect.sleep(Duration.millis(interval - (Date.now() % interval) + 5)),
    )
    yield* Effect.forkScoped(publishTick.pipe(Effect.andThen(untilNextBoundary), Effect.forever))
    yield* Effect.logInfo("clock on").pipe(Effect.annotateLogs({ intervalMs: interval }))
  }),
)
