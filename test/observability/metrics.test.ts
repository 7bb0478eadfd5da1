/**
 * /metrics after a small burst: what the engine counts agrees with what it
 * recorded in Postgres, and every protocol request is in the latency
 * histogram under its operation and outcome.
 */
import { randomUUID } from "node:crypto"
import { sql } from "kysely"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { World } from "../../harness/World.ts"
import { createMany } from "../support/scenarios.ts"
import { httpUrlOf, scrapeUntil, sumOf } from "./prometheus.ts"

const burst = 20

describe("metrics", () => {
  let env: World
  beforeEach(async () => {
    env = await World.create()
  })
  afterEach(async () => {
    await env.dispose()
  })

  it("counts commands, results and requests as the database records them", async () => {
    const engine = await env.startEngine()
    const url = await httpUrlOf(engine)
    // Accounts acc-0 … acc-19: every third payment is declined, the others succeed.
    await env.startHub({
      decide: (command) =>
        Number(command.account.replace("acc-", "")) % 3 === 0
          ? { status: "declined", retryable: false, reason: "insufficient funds" }
          : { status: "succeeded", retryable: false },
    })
    const mobile = env.channel()
    await createMany(mobile, burst)
    const missing = await mobile.request(
      "subscription.get",
      { subscriptionId: "00000000-0000-4000-8000-000000000000" },
      { clientId: "client-0" },
    )
    expect(missing).toMatchObject({ status: "error", error: { code: "NOT_FOUND" } })
    const unknown = await mobile.request("subscription.explode", {}, { clientId: "client-0" })
    expect(unknown).toMatchObject({ status: "error", error: { code: "UNKNOWN_OPERATION" } })
    const garbage = await mobile.send("not json")
    expect(garbage).toMatchObject({ status: "error", error: { code: "BAD_REQUEST" } })

    await env.tick("2027-01-01T06:00:00Z")
    await env.settled()

    const payments = await sql<{ status: string; count: number }>`
      SELECT status, count(*)::int AS count FROM payments GROUP BY status`.execute(env.db)
    const byStatus = Object.fromEntries(payments.rows.map((row) => [row.status, row.count]))
    expect(byStatus).toEqual({ succeeded: 13, declined: 7 })

    const samples = await scrapeUntil(env, url, "every result to be counted", (samples) =>
      ["succeeded", "declined"].every(
        (status) => sumOf(samples, "rp_hub_results_total", { status }) === byStatus[status],
      ),
    )
    expect(sumOf(samples, "rp_payment_commands_published_total")).toBe(burst)
    expect(sumOf(samples, "rp_hub_results_total", { status: "succeeded", outcome: "applied" })).toBe(13)
    expect(sumOf(samples, "rp_hub_results_total", { status: "declined", outcome: "applied" })).toBe(7)
    expect(sumOf(samples, "rp_hub_results_total", { status: "failed" })).toBe(0)

    const requests = (labels: Record<string, string>) =>
      sumOf(samples, "rp_request_duration_seconds_count", labels)
    expect(requests({ operation: "subscription.create", outcome: "ok" })).toBe(burst)
    expect(requests({ operation: "subscription.get", outcome: "NOT_FOUND" })).toBe(1)
    expect(requests({ operation: "unknown", outcome: "UNKNOWN_OPERATION" })).toBe(1)
    expect(requests({ operation: "none", outcome: "BAD_REQUEST" })).toBe(1)
    expect(requests({})).toBe(burst + 3)
    // Bounded labels: the operation the channel made up never becomes a label value.
    expect(samples.some((sample) => sample.labels.operation === "subscription.explode")).toBe(false)

    // Results the hub should not have sent: each is counted by what the engine made of it. A repeat
    // of a settled result is a duplicate, a different status for it a contradiction, and a result
    // for a payment the engine never sent is dead-lettered.
    const paid = await env.db
      .selectFrom("payments")
      .select("payment_id")
      .where("status", "=", "succeeded")
      .executeTakeFirstOrThrow()
    const result = (paymentId: string, status: string) =>
      env.js.publish(
        env.topology.subjects.hubResult,
        JSON.stringify({ paymentId, status, retryable: false, at: "2027-01-01T06:00:05Z" }),
      )
    await result(paid.payment_id, "succeeded")
    await result(paid.payment_id, "failed")
    await result(randomUUID(), "failed")
    await scrapeUntil(
      env,
      url,
      "the unexpected results to be counted",
      (samples) =>
        sumOf(samples, "rp_hub_results_total", { status: "succeeded", outcome: "duplicate" }) === 1 &&
        sumOf(samples, "rp_hub_results_total", { status: "failed", outcome: "contradiction" }) === 1 &&
        sumOf(samples, "rp_hub_results_total", { status: "failed", outcome: "unknown_payment" }) === 1 &&
        sumOf(samples, "rp_dead_letters_total", { consumer: env.topology.consumers.hubResults }) === 1,
    )
    await env.settled()

    // Everything the outbox published is in the streams once: the commands, the events and notices.
    const events = (await env.jsm.streams.info(env.topology.streams.events)).state.messages
    const published = await scrapeUntil(env, url, "the outbox counters", () => true)
    expect(sumOf(published, "rp_outbox_messages_published_total")).toBe(burst + events)
    expect(sumOf(published, "rp_outbox_duplicates_total")).toBe(0)
    expect(sumOf(published, "rp_outbox_publish_failures_total")).toBe(0)

    // Scrape-time gauges, read after everything settled.
    expect(sumOf(samples, "rp_outbox_backlog_rows")).toBe(0)
    expect(sumOf(samples, "rp_outbox_backlog_messages")).toBe(0)
    expect(sumOf(samples, "rp_outbox_oldest_row_age_seconds")).toBe(0)
    expect(sumOf(samples, "rp_actor_mailbox_depth")).toBe(0)
    expect(sumOf(samples, "rp_actors_live")).toBeGreaterThanOrEqual(0)
    // One instance owns every partition.
    expect(sumOf(samples, "rp_partitions_owned")).toBe(env.settings.partitions)
    expect(sumOf(samples, "rp_partitions")).toBe(env.settings.partitions)
    const { consumers } = env.topology
    expect(sumOf(samples, "rp_consumer_running", { consumer: consumers.hubResults })).toBe(1)
    const lag = await scrapeUntil(env, url, "consumer lag to show the settled streams", (samples) =>
      Object.values(consumers).every(
        (consumer) =>
          sumOf(samples, "rp_consumer_pending", { consumer }) === 0 &&
          sumOf(samples, "rp_consumer_ack_pending", { consumer }) === 0,
      ),
    )
    expect(sumOf(lag, "rp_ticks_waiting")).toBe(0)
    // Engine time is the tick's, a month ahead of the wall clock here: the lag is negative, and known.
    const tickLag = sumOf(lag, "rp_tick_lag_seconds")
    expect(tickLag).toBeCloseTo((Date.now() - Date.parse("2027-01-01T06:00:00Z")) / 1_000, -2)
    // Node's process metrics live on the instance's own registry.
    expect(lag.some((sample) => sample.name === "process_cpu_user_seconds_total")).toBe(true)
    expect(lag.some((sample) => sample.name === "nodejs_eventloop_lag_seconds")).toBe(true)
  })

  it("keeps each engine's counts to itself when several run in one process", async () => {
    const first = await env.startEngine()
    const other = await World.create()
    try {
      const second = await other.startEngine()
      await createMany(env.channel(), 2)
      const [firstUrl, secondUrl] = [await httpUrlOf(first), await httpUrlOf(second)]
      const counted = await scrapeUntil(
        env,
        firstUrl,
        "the first engine's requests",
        (samples) => sumOf(samples, "rp_request_duration_seconds_count") === 2,
      )
      expect(sumOf(counted, "rp_request_duration_seconds_count")).toBe(2)
      const untouched = await scrapeUntil(other, secondUrl, "the second engine's metrics", () => true)
      expect(sumOf(untouched, "rp_request_duration_seconds_count")).toBe(0)
    } finally {
      await other.dispose()
    }
  })
})
