/**
 * The lease keeper: keeps this instance's share of the partitions, every
 * `RP_LEASE_RENEW`.
 *
 * Each round it says it is alive, works out the share rendezvous hashing
 * gives it among the live instances, and then:
 * - renews the leases it keeps (a lease found taken over is dropped at once);
 * - hands over the ones it should give up: stops taking their messages,
 *   lets their actors finish what they hold, then releases the leases so the
 *   new owner need not wait for them to expire;
 * - takes the ones it should have that are free or expired, listens for
 *   messages forwarded to them, and sweeps them (work their previous owner
 *   left due is done now, not at the next tick).
 * If it cannot renew for a whole lease period (Postgres unreachable), it
 * assumes it owns nothing: by then another instance may have taken over.
 *
 * It also keeps every instance's engine time in step: the instance that
 * consumes a tick announces the new time, and each round re-reads it, so
 * every owner sweeps its partitions when time moves.
 */
import type { Subscription } from "@nats-io/transport-node"
import { Cause, Duration, Effect, FiberSet, Layer, Schedule } from "effect"
import * as Timestamp from "../domain/Timestamp.ts"
import { EngineConfig } from "../EngineConfig.ts"
import { traceparentOf } from "../observability/TraceContext.ts"
import { FORWARDED_SUBJECT_HEADER, ProtocolHandler, signatureOf } from "../protocol/ProtocolServer.ts"
import { LeaseStore } from "../store/LeaseStore.ts"
import { InternalAuth } from "../streams/InternalAuth.ts"
import { Nats } from "../streams/Nats.ts"
import { ANNOUNCER_HEADER, Topology } from "../streams/Topology.ts"
import { EngineClock } from "./EngineClock.ts"
import { desiredPartitions, Partitions } from "./Partitions.ts"
import { Scheduler } from "./Scheduler.ts"
import { SubscriptionActors } from "./SubscriptionActors.ts"

export const PartitionKeeper = Layer.effectDiscard(
  Effect.gen(function* () {
    const config = yield* EngineConfig
    const partitions = yield* Partitions
    const leases = yield* LeaseStore
    const actors = yield* SubscriptionActors
    const scheduler = yield* Scheduler
    const clock = yield* EngineClock
    const protocol = yield* ProtocolHandler
    const { connection } = yield* Nats
    const internal = yield* InternalAuth
    const { subjects } = yield* Topology
    const me = config.instanceId
    const ttl = config.leaseTtlMs

    // One sweep queued at most: a queued sweep reads engine time when it starts, so a second adds nothing.
    let sweepQueued = false
    const sweepSoon = (why: string) =>
      Effect.suspend(() => {
        if (sweepQueued) return Effect.void
        sweepQueued = true
        return scheduler.sweep.pipe(
          Effect.ensuring(Effect.sync(() => (sweepQueued = false))),
          Effect.tap((report) =>
            report.woken + report.failed > 0
              ? Effect.logInfo("partition sweep").pipe(Effect.annotateLogs({ why, ...report }))
              : Effect.void,
          ),
          Effect.catchCause((cause) =>
            Effect.logWarning("partition sweep failed; the next one retries", cause),
          ),
          Effect.forkDetach,
          Effect.asVoid,
        )
      })

    const fibers = yield* FiberSet.make<void, never>()
    const fork = yield* FiberSet.runtime(fibers)<never>()

    // Per owned partition: actor messages and channel requests other instances forward to this one.
    const inboxes = new Map<number, ReadonlyArray<Subscription>>()
    const listen = (partition: number) => {
      if (inboxes.has(partition)) return
      const actorMessages = connection.subscribe(subjects.partitionInbox(partition), {
        callback: (error, message) => {
          if (error !== null || !internal.accepts(message, "forward")) return
          actors.receiveForwarded(message.data, (reply) => internal.respond(message, reply))
        },
      })
      const channelRequests = connection.subscribe(subjects.partitionRequests(partition), {
        callback: (error, message) => {
          if (error !== null || !internal.accepts(message, "request")) return
          const subject = message.headers?.get(FORWARDED_SUBJECT_HEADER)
          if (subject === undefined || subject === "") return
          fork(
            protocol
              .handle(message.data, subject, signatureOf(message), traceparentOf(message.headers), true)
              .pipe(
                Effect.flatMap((reply) => Effect.sync(() => internal.respond(message, reply))),
                Effect.asVoid,
              ),
          )
        },
      })
      inboxes.set(partition, [actorMessages, channelRequests])
    }
    const stopListening = (gone: ReadonlyArray<number>) => {
      for (const partition of gone) {
        for (const subscription of inboxes.get(partition) ?? []) subscription.unsubscribe()
        inboxes.delete(partition)
      }
    }

    /** Stops owning `gone` here: no more messages, actors finish and stop. */
    const letGo = (gone: ReadonlyArray<number>) =>
      Effect.gen(function* () {
        if (gone.length === 0) return
        partitions.revoke(gone)
        stopListening(gone)
        const stillBusy = yield* actors.evict(new Set(gone), Math.max(1_000, ttl / 2))
        if (stillBusy !== 0) {
          yield* Effect.logWarning("partition actors still busy when handing over; revisions keep them safe")
        }
      })

    for (const partition of partitions.epochs().keys()) listen(partition)
    let lastRenewed = Date.now()

    const round = Effect.gen(function* () {
      const live = yield* leases.heartbeat(me, ttl)
      const desired = new Set(desiredPartitions(me, live, partitions.count))
      const owned = [...partitions.epochs().keys()]
      const keeping = owned.filter((partition) => desired.has(partition))
      const renewed = new Set(yield* leases.renew(me, keeping, ttl))
      lastRenewed = Date.now()
      const lost = keeping.filter((partition) => !renewed.has(partition))
      if (lost.length > 0) {
        yield* Effect.logWarning("partition leases lost to another instance").pipe(
          Effect.annotateLogs({ partitions: lost.join(",") }),
        )
        yield* letGo(lost)
      }
      const leaving = owned.filter((partition) => !desired.has(partition))
      if (leaving.length > 0) {
        yield* letGo(leaving)
        yield* leases.release(me, leaving)
        yield* Effect.logInfo("partitions handed over").pipe(
          Effect.annotateLogs({ partitions: leaving.join(","), liveInstances: live.length }),
        )
      }
      const wanted = [...desired].filter((partition) => !partitions.owns(partition))
      const acquired = yield* leases.acquire(me, wanted, ttl)
      if (acquired.length > 0) {
        partitions.grant(acquired)
        for (const { partition } of acquired) listen(partition)
        yield* Effect.logInfo("partitions taken").pipe(
          Effect.annotateLogs({
            partitions: acquired.map(({ partition, epoch }) => `${partition}@${epoch}`).join(","),
            owned: partitions.epochs().size,
            liveInstances: live.length,
          }),
        )
      }
      const moved = yield* clock.refresh
      if (acquired.length > 0 || moved)
        yield* sweepSoon(acquired.length > 0 ? "partitions taken" : "time moved")
    })

    const guardedRound = round.pipe(
      Effect.catchCause((cause) =>
        Effect.gen(function* () {
          yield* Effect.logWarning("lease round failed; retrying next round", Cause.pretty(cause))
          // Past a whole lease period without renewal, another instance may own these partitions by now.
          if (Date.now() - lastRenewed > ttl && partitions.epochs().size > 0) {
            yield* Effect.logWarning("leases not renewed for a lease period: this instance owns nothing now")
            yield* letGo([...partitions.epochs().keys()])
          }
        }),
      ),
    )

    yield* Effect.forkScoped(
      Effect.repeat(guardedRound, Schedule.spaced(Duration.millis(config.leaseRenewMs))).pipe(
        Effect.delay(Duration.millis(config.leaseRenewMs)),
      ),
    )

    // Another instance consumed a tick: sweep this instance's partitions at the new time now.
    const clockSubscription = connection.subscribe(subjects.clockAdvanced, {
      callback: (error, message) => {
        // Its own announcement: the tick handler sweeps this instance's partitions itself.
        if (error !== null || message.headers?.get(ANNOUNCER_HEADER) === me) return
        if (!internal.accepts(message, "clock")) return
        const at = Timestamp.parseTimestamp(message.string())
        if (at === undefined) return
        fork(
          clock.observe(at).pipe(Effect.flatMap((moved) => (moved ? sweepSoon("time moved") : Effect.void))),
        )
      },
    })

    // Leaving: stop listening and give every lease back, so the others take over at once.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        clockSubscription.unsubscribe()
        stopListening([...inboxes.keys()])
        yield* leases.leave(me)
        yield* Effect.logInfo("partitions released for the other instances")
      }).pipe(Effect.catchCause((cause) => Effect.logWarning("could not release partitions", cause))),
    )
    yield* Effect.logInfo("lease keeper ready").pipe(
      Effect.annotateLogs({ owned: partitions.epochs().size, ttlMs: ttl, renewMs: config.leaseRenewMs }),
    )
  }),
)
