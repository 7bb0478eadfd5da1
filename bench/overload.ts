/**
 * Overload: 5,000 `subscription.create` requests sent at once to one engine started with its
 * default settings (its own process, as `npm start` runs it from the sources), each waiting at
 * most 10 s, the timeout docs/protocol.md suggests to channels.
 *
 * Prints, for the first attempt of each request: p50/p99/max latency of the replies, the share
 * answered BUSY, other errors and timeouts (the target is none). Then every BUSY request is sent
 * again with its requestId after its `retryAfterMs`, as a channel does, and the time until all
 * 5,000 were created is printed, with a check that each made exactly one subscription.
 *
 *   npm run bench:overload [-- <requests>]
 */
import { randomUUID } from "node:crypto"
import { cpus, loadavg } from "node:os"
import { FakeChannel, type Reply } from "../fakes/FakeChannel.ts"
import { World } from "../harness/World.ts"
import { monthlyOnFirst } from "../test/support/scenarios.ts"

const requests = Number(process.argv[2] ?? 5_000)
const timeoutMs = 10_000

const percentile = (sorted: ReadonlyArray<number>, share: number): number =>
  sorted.length === 0
    ? Number.NaN
    : (sorted[Math.min(sorted.length - 1, Math.ceil(share * sorted.length) - 1)] ?? 0)

const body = (index: number) => ({
  kind: "scheduled",
  template: { name: "Home internet", providerId: "isp-1", account: `acc-${index}`, source: "card-tok-1" },
  amount: { value: 150_000, currency: "RUB" },
  schedule: monthlyOnFirst,
})

type Outcome = "ok" | "BUSY" | "timeout" | string

const main = async () => {
  const world = await World.create({}, "overload")
  try {
    await world.spawnEngine()
    const channel = new FakeChannel(world.connection, world.settings.naming.rpPrefix, "mobile", timeoutMs)
    const subject = `${world.settings.naming.rpPrefix}.v3.mobile`
    // Warm up: the first requests load code and open the pool.
    for (let index = 0; index < 20; index++)
      await channel.ok("subscription.create", body(index), { clientId: `warm-${index}` })

    const sent = Array.from({ length: requests }, (_, index) => ({
      index,
      clientId: `client-${index}`,
      requestId: `overload-${randomUUID()}`,
    }))
    const started = performance.now()
    const first = await Promise.all(
      sent.map(async (request) => {
        const at = performance.now()
        let outcome: Outcome
        try {
          // Plain JSON, not the FakeChannel's schema decode: the client's own CPU must not delay
          // reading replies (its timers would fire first and count them as timeouts).
          const envelope = {
            v: 3,
            requestId: request.requestId,
            channel: "mobile",
            clientId: request.clientId,
            sentAt: new Date().toISOString(),
            operation: "subscription.create",
            body: body(request.index),
          }
          const message = await world.connection.request(subject, JSON.stringify(envelope), {
            timeout: timeoutMs,
          })
          const reply = message.json<Reply>()
          outcome = reply.status === "ok" ? "ok" : reply.error.code
        } catch (error) {
          outcome = /timeout/i.test(String(error)) ? "timeout" : `failed: ${String(error)}`
        }
        return { ...request, outcome, ms: performance.now() - at }
      }),
    )
    const firstSeconds = (performance.now() - started) / 1_000
    const latencies = first.map((result) => result.ms).sort((a, b) => a - b)
    const counts = new Map<string, number>()
    for (const { outcome } of first) counts.set(outcome, (counts.get(outcome) ?? 0) + 1)
    const busy = counts.get("BUSY") ?? 0
    const timeouts = counts.get("timeout") ?? 0
    console.log(
      `date: ${new Date().toISOString()}, load average ${loadavg()
        .map((load) => load.toFixed(1))
        .join(" ")}, ${cpus().length} CPUs`,
    )
    console.log(`first attempt of ${requests} concurrent subscription.create (timeout ${timeoutMs} ms):`)
    console.log(
      `  reply latency p50 ${percentile(latencies, 0.5).toFixed(0)} ms, p99 ${percentile(latencies, 0.99).toFixed(0)} ms, max ${(latencies.at(-1) ?? 0).toFixed(0)} ms; all answered in ${firstSeconds.toFixed(1)} s`,
    )
    console.log(
      `  ok ${counts.get("ok") ?? 0}, BUSY ${busy} (${((100 * busy) / requests).toFixed(1)}%), timeouts ${timeouts}, other ${requests - (counts.get("ok") ?? 0) - busy - timeouts}`,
    )
    for (const [outcome, number] of counts)
      if (!["ok", "BUSY", "timeout"].includes(outcome)) console.log(`  ${outcome}: ${number}`)

    // Every request not answered ok is sent again with its requestId, BUSY retried after retryAfterMs.
    const retried = await Promise.all(
      first
        .filter((result) => result.outcome !== "ok")
        .map(async (result) => {
          // A timeout here too is sent again, as a channel would, until the FakeChannel's BUSY budget.
          for (let attempt = 0; attempt < 2; attempt++) {
            try {
              const reply = await channel.request("subscription.create", body(result.index), {
                clientId: result.clientId,
                requestId: result.requestId,
              })
              return { ...result, done: reply.status === "ok" }
            } catch {
              // timed out: try again with the same requestId
            }
          }
          return { ...result, done: false }
        }),
    )
    const allSeconds = (performance.now() - started) / 1_000
    const perClient = await world.db
      .selectFrom("subscriptions")
      .select((eb) => ["client_id", eb.fn.countAll<string>().as("count")])
      .where("client_id", "like", "client-%")
      .groupBy("client_id")
      .execute()
    const rows = perClient.reduce((sum, row) => sum + Number(row.count), 0)
    console.log(
      `with retries: ${retried.filter((result) => result.done).length} of ${retried.length} sent again succeeded (each retried on BUSY for up to 60 s); the run ended after ${allSeconds.toFixed(1)} s`,
    )
    console.log(`subscriptions: ${rows} rows for ${perClient.length} clients (expected ${requests} each)`)
  } finally {
    await world.dispose()
  }
}

await main()
