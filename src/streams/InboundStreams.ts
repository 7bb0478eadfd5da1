/**
 * The engine's inbound streams, each bound to the component that handles it:
 * ticks to the scheduler (strictly one at a time, in order), hub results to
 * the result router, providers' balance readings and debt answers to the
 * provider router (many at once; each actor keeps its own order), and the
 * hub's one-off payments to the reminder router.
 */

import { headers } from "@nats-io/transport-node"
import { Effect, Layer } from "effect"
import { ProviderRouter } from "../actors/ProviderRouter.ts"
import { ReminderRouter } from "../actors/ReminderRouter.ts"
import { ResultRouter } from "../actors/ResultRouter.ts"
import { Scheduler } from "../actors/Scheduler.ts"
import * as Timestamp from "../domain/Timestamp.ts"
import { EngineConfig } from "../EngineConfig.ts"
import { done, runConsumer } from "./DurableConsumer.ts"
import { InternalAuth } from "./InternalAuth.ts"
import { DebtResponse, HubPaymentCompleted, PaymentResult, ThresholdEvent, Tick } from "./Messages.ts"
import { ANNOUNCER_HEADER, Topology } from "./Topology.ts"

/** Starts every consumer; they run until the engine stops. */
export const InboundStreams = Layer.effectDiscard(
  Effect.gen(function* () {
    const topology = yield* Topology
    const config = yield* EngineConfig
    const scheduler = yield* Scheduler
    const router = yield* ResultRouter
    const providers = yield* ProviderRouter
    const reminders = yield* ReminderRouter
    const internal = yield* InternalAuth

    // Work a previous run left half done is due already: finish it, in the background so the
    // engine is ready at once (ticks wait for it: sweeps take turns).
    yield* Effect.forkScoped(
      scheduler.sweep.pipe(
        Effect.tap((recovered) =>
          recovered.woken + recovered.failed > 0
            ? Effect.logInfo("resumed due work after start").pipe(Effect.annotateLogs({ ...recovered }))
            : Effect.void,
        ),
        Effect.catchCause((cause) =>
          Effect.logError("start-up sweep failed; the next tick sweeps again", cause),
        ),
      ),
    )

    yield* Effect.forkScoped(
      runConsumer({
        stream: topology.streams.ticks,
        consumer: topology.consumers.ticks,
        prefetch: 1,
        heartbeatAckWaitMs: config.tickAckWaitMs,
        schema: Tick,
        handle: (batch) =>
          Effect.forEach(
            batch,
            ({ message: tick, settle }) =>
              // The other instances sweep their own partitions at the same time as this one sweeps its own.
              Effect.sync(() => {
                const from = headers()
                from.set(ANNOUNCER_HEADER, config.instanceId)
                internal.publish(topology.subjects.clockAdvanced, tick.at, from)
              }).pipe(
                Effect.andThen(scheduler.tick(Timestamp.millisOf(tick.at))),
                Effect.tap((report) =>
                  report.woken + report.failed > 0
                    ? Effect.logInfo("tick processed").pipe(
                        Effect.annotateLogs({ at: tick.at, woken: report.woken, failed: report.failed }),
                      )
                    : Effect.void,
                ),
                Effect.as(done),
                Effect.exit,
                Effect.map(settle),
              ),
            { discard: true },
          ),
      }),
    )
    yield* Effect.forkScoped(
      runConsumer({
        stream: topology.streams.hubPayments,
        consumer: topology.consumers.hubResults,
        prefetch: 1_000,
        schema: PaymentResult,
        handle: (batch) => router.route(batch, topology.consumers.hubResults),
      }),
    )
    yield* Effect.forkScoped(
      runConsumer({
        stream: topology.streams.providers,
        consumer: topology.consumers.thresholdEvents,
        prefetch: 1_000,
        schema: ThresholdEvent,
        handle: providers.thresholdEvents,
      }),
    )
    yield* Effect.forkScoped(
      runConsumer({
        stream: topology.streams.providers,
        consumer: topology.consumers.debtResponses,
        prefetch: 200,
        schema: DebtResponse,
        handle: (batch) => providers.debtResponses(batch, topology.consumers.debtResponses),
      }),
    )
    yield* Effect.forkScoped(
      runConsumer({
        stream: topology.streams.hubPayments,
        consumer: topology.consumers.hubCompleted,
        prefetch: 100,
        schema: HubPaymentCompleted,
        handle: reminders.route,
      }),
    )
  }),
)
