/**
 * Gauges read when Prometheus scrapes, never on the engine's own paths:
 * live actors and their mailboxes (memory), the outbox backlog (one count
 * query), consumer lag (JetStream consumer info, cached briefly so that
 * several scrapers do not multiply requests to the server) and tick lag.
 *
 * A reading that fails or times out is reported as NaN rather than as its
 * last value: a stale number would hide exactly the outage it should show.
 */
import type { ConsumerInfo } from "@nats-io/jetstream"
import { Effect } from "effect"
import { sql } from "kysely"
import { Counter, Gauge } from "prom-client"
import { EngineClock } from "../actors/EngineClock.ts"
import { Partitions } from "../actors/Partitions.ts"
import { SubscriptionActors } from "../actors/SubscriptionActors.ts"
import { Database } from "../store/Database.ts"
import { withTimeout } from "../streams/Dependencies.ts"
import { Nats } from "../streams/Nats.ts"
import { OutboxPublisher, type OutboxStats } from "../streams/OutboxPublisher.ts"
import { durableConsumers, Topology } from "../streams/Topology.ts"
import { checkTimeoutMs } from "./Health.ts"
import { Metrics } from "./Metrics.ts"

/** Consumer info younger than this is served from memory. */
export const consumerInfoCacheMs = 2_000

/**
 * A reading shared by the gauges of one scrape (prom-client collects every metric at once) and
 * by scrapes closer together than `maxAgeMs`: one query serves them all.
 */
const sharedReading = <A>(read: () => Promise<A>, maxAgeMs: number): (() => Promise<A>) => {
  let cached: { readonly at: number; readonly value: Promise<A> } | undefined
  return () => {
    const now = Date.now()
    if (cached === undefined || now - cached.at > maxAgeMs) cached = { at: now, value: read() }
    return cached.value
  }
}

const unknownBacklog = { rows: Number.NaN, messages: Number.NaN, oldest: Number.NaN }

/** Registers the scrape-time gauges on the instance's registry. */
export const registerEngineGauges = Effect.gen(function* () {
  const { registry } = yield* Metrics
  const actors = yield* SubscriptionActors
  const partitions = yield* Partitions
  const clock = yield* EngineClock
  const { db } = yield* Database
  const { jsm } = yield* Nats
  const topology = yield* Topology
  const { consumers } = topology
  const outbox = yield* OutboxPublisher
  const registers = [registry]

  // The publisher counts for itself already; these only copy its figures when scraped.
  const outboxCounter = (name: string, help: string, read: (stats: OutboxStats) => number) =>
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset()
        this.inc(read(Effect.runSync(outbox.stats)))
      },
    })
  outboxCounter(
    "rp_outbox_messages_published_total",
    "Messages of any kind (commands, events, notifications, provider queries) JetStream stored for the first time",
    (stats) => stats.published,
  )
  outboxCounter(
    "rp_outbox_duplicates_total",
    "Messages published again (after a sweep or a partial failure) that the stream dropped by Nats-Msg-Id",
    (stats) => stats.duplicates,
  )
  outboxCounter(
    "rp_outbox_publish_failures_total",
    "Outbox rows whose publish failed, wholly or in part; they stay in the table and are published again",
    (stats) => stats.failures,
  )

  new Gauge({
    name: "rp_partitions_owned",
    help: "Partitions this instance holds a lease on and runs (of RP_PARTITIONS)",
    registers,
    collect() {
      this.set(partitions.epochs().size)
    },
  })
  new Gauge({
    name: "rp_partitions",
    help: "Partitions the subscriptions are split into (RP_PARTITIONS)",
    registers,
    collect() {
      this.set(partitions.count)
    },
  })
  new Gauge({
    name: "rp_actors_live",
    help: "Subscription actors in memory (busy, or idle for less than RP_ACTOR_IDLE)",
    registers,
    collect() {
      this.set(Effect.runSync(actors.live))
    },
  })
  new Gauge({
    name: "rp_actor_mailbox_depth",
    help: "Messages waiting in all actors' mailboxes together",
    registers,
    collect() {
      this.set(Effect.runSync(actors.mailboxDepth))
    },
  })

  // The outbox holds one row per committed transaction and is emptied as it is published: small.
  const outboxBacklog = sharedReading(
    () =>
      withTimeout(
        sql<{ rows: number; messages: number; oldest: number | null }>`
          SELECT count(*)::int AS rows, coalesce(sum(message_count), 0)::int AS messages,
            extract(epoch FROM now() - min(created_at))::float8 AS oldest
          FROM outbox`.execute(db),
        checkTimeoutMs,
      ).then(
        (result) => {
          const row = result.rows[0]
          return row === undefined ? unknownBacklog : { ...row, oldest: row.oldest ?? 0 }
        },
        () => unknownBacklog,
      ),
    250,
  )
  new Gauge({
    name: "rp_outbox_backlog_rows",
    help: "Outbox rows (committed transactions) whose messages are not all published yet",
    registers,
    async collect() {
      this.set((await outboxBacklog()).rows)
    },
  })
  new Gauge({
    name: "rp_outbox_oldest_row_age_seconds",
    help: "Age of the oldest outbox row (0 when empty): past RP_OUTBOX_SWEEP_AGE, publishing is failing",
    registers,
    async collect() {
      this.set((await outboxBacklog()).oldest)
    },
  })
  new Gauge({
    name: "rp_outbox_backlog_messages",
    help: "Messages in the outbox not published yet",
    registers,
    async collect() {
      this.set((await outboxBacklog()).messages)
    },
  })

  const durables = durableConsumers(topology)
  const consumerInfos = sharedReading(
    () =>
      Promise.all(
        durables.map(({ stream, consumer }) =>
          withTimeout(jsm.consumers.info(stream, consumer), checkTimeoutMs).then(
            (info): readonly [string, ConsumerInfo | undefined] => [consumer, info],
            (): readonly [string, ConsumerInfo | undefined] => [consumer, undefined],
          ),
        ),
      ).then((entries) => new Map(entries)),
    consumerInfoCacheMs,
  )
  new Gauge({
    name: "rp_consumer_pending",
    help: "Messages in the stream the durable consumer has not delivered yet",
    labelNames: ["consumer"] as const,
    registers,
    async collect() {
      const infos = await consumerInfos()
      for (const { consumer } of durables)
        this.set({ consumer }, infos.get(consumer)?.num_pending ?? Number.NaN)
    },
  })
  new Gauge({
    name: "rp_consumer_ack_pending",
    help: "Messages delivered by the durable consumer and not yet acknowledged (by any instance)",
    labelNames: ["consumer"] as const,
    registers,
    async collect() {
      const infos = await consumerInfos()
      for (const { consumer } of durables)
        this.set({ consumer }, infos.get(consumer)?.num_ack_pending ?? Number.NaN)
    },
  })
  new Gauge({
    name: "rp_ticks_waiting",
    help: "Ticks published and not yet processed: pending plus delivered and unacknowledged",
    registers,
    async collect() {
      const info = (await consumerInfos()).get(consumers.ticks)
      this.set(info === undefined ? Number.NaN : info.num_pending + info.num_ack_pending)
    },
  })
  new Gauge({
    name: "rp_tick_lag_seconds",
    help: "Wall clock minus the time of the latest tick this instance processed (NaN before the first tick)",
    registers,
    collect() {
      const engineNow = Effect.runSync(clock.now)
      this.set(engineNow === 0 ? Number.NaN : (Date.now() - engineNow) / 1_000)
    },
  })
})
