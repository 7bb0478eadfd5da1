/**
 * Fault scenarios (issue 5): each builds its own world, seeds a burst of
 * subscriptions all due at one tick, runs the engine through a fault, waits
 * until nothing moves, and checks the invariants (Invariants.ts). Each
 * returns counts for the table and its own scenario-specific checks; none
 * throws on a broken invariant, so a run reports every scenario.
 *
 * Every wait is on observable state (the hub's command count, rows, consumer
 * positions); the kill point is chosen by progress, never by time.
 */
import type { ChildProcess } from "node:child_process"
import { randomUUID } from "node:crypto"
import { Redacted } from "effect"
import { type RawBuilder, sql } from "kysely"
import pg from "pg"
import { burstAt, seedBenchDatabase } from "../../bench/seed.ts"
import type { HubVerdict } from "../../fakes/FakeHub.ts"
import type { PaymentCommand, PaymentResult } from "../../src/streams/Messages.ts"
import { TcpProxy } from "../TcpProxy.ts"
import { World } from "../World.ts"
import { checkInvariants, type DueOccurrence, holds, type InvariantReport } from "./Invariants.ts"
import { freePort, PrivateNatsServer } from "./NatsServer.ts"

/** A check only this scenario makes (say, "the contradicting results changed no payment"). */
export interface ScenarioCheck {
  readonly what: string
  readonly ok: boolean
}

/** What one scenario run found. */
export interface ScenarioOutcome {
  readonly scenario: string
  readonly report: InvariantReport
  /** Wall-clock ms from the recovery step (restart, late answers) to the last result recorded. */
  readonly recoveryMs: number
  readonly checks: ReadonlyArray<ScenarioCheck>
  readonly notes: ReadonlyArray<string>
  readonly seconds: number
  /** Bad messages the scenario itself sent, which must be dead-lettered; none unless said. */
  readonly expectedDeadLetters?: number
}

/** True when the invariants hold and every scenario check passed. */
export const passed = (outcome: ScenarioOutcome): boolean =>
  holds(outcome.report, outcome.expectedDeadLetters ?? 0) && outcome.checks.every((check) => check.ok)

/** The seeded occurrence every subscription is due for at `burstAt` (1 January 2027 in Moscow). */
const burstOccurrence = "2027-01-01"

const burstTime = Date.parse(burstAt)
const at = (minutesAfterBurst: number) => new Date(burstTime + minutesAfterBurst * 60_000).toISOString()

/** Waits this long at most for any one step; a burst of 100k takes under a minute on a small machine. */
const stepTimeoutMs = 180_000

/** Seeds `n` subscriptions due at `burstAt`; returns them with their clients, in a fixed order. */
const seed = async (world: World, n: number) => {
  await seedBenchDatabase(world.databaseName, n)
  const rows = await world.db
    .selectFrom("subscriptions")
    .select(["id", "client_id"])
    .orderBy("client_id")
    .execute()
  const due: Array<DueOccurrence> = rows.map((row) => ({
    subscriptionId: row.id,
    occurrence: burstOccurrence,
  }))
  return { rows, due }
}

const countSettled = async (world: World): Promise<number> => {
  const row = await world.db
    .selectFrom("payments")
    .select((eb) => eb.fn.countAll<string>().as("count"))
    .where("status", "in", ["succeeded", "failed", "declined"])
    .executeTakeFirstOrThrow()
  return Number(row.count)
}

/** The database server's clock, in epoch milliseconds. */
const databaseNow = async (world: World): Promise<number> =>
  (
    (await sql<{ now: Date }>`SELECT clock_timestamp() AS now`.execute(world.db)).rows[0]?.now ?? new Date()
  ).getTime()

const count = async (world: World, query: RawBuilder<{ count: string }>): Promise<number> =>
  Number((await query.execute(world.db)).rows[0]?.count ?? 0)

/** Waits for `child` to be gone after `kill`. */
const killed = (child: ChildProcess, signal: NodeJS.Signals): Promise<NodeJS.Signals | null> =>
  new Promise((resolve) => {
    child.once("exit", (_code, received) => resolve(received))
    child.kill(signal)
  })

/** Keeps the last few megabytes of a child process's output, for counting log lines. */
const captureOutput = (child: ChildProcess) => {
  const captured = { text: "", exit: undefined as string | undefined }
  const keep = (chunk: Buffer) => {
    captured.text = (captured.text + chunk.toString()).slice(-5_000_000)
  }
  child.stdout?.on("data", keep)
  child.stderr?.on("data", keep)
  child.once("exit", (code, signal) => {
    captured.exit = `code ${code}, signal ${signal}`
  })
  return captured
}

const occurrencesIn = (text: string, what: string) => text.split(what).length - 1

/** Publishes the tick for `at`, as the engine's own clock would (same message id). */
const publishTick = (world: World, at: string) =>
  world.js.publish(world.topology.subjects.tick, JSON.stringify({ at }), { msgID: `tick:${at}` })

/**
 * Waits until every due payment has its result recorded, failing at once if `engine` exited;
 * returns the time from `since` to the last result and to 95% of them.
 */
const allResultsRecorded = async (
  world: World,
  due: ReadonlyArray<unknown>,
  since: number,
  engine?: { readonly name: string; readonly log: ReturnType<typeof captureOutput> },
) => {
  let mostMs: number | undefined
  await world.waitFor(
    "every due payment to have its result recorded",
    async () => {
      if (engine !== undefined && engine.log.exit !== undefined)
        throw new Error(`the ${engine.name} exited (${engine.log.exit}):\n${engine.log.text.slice(-4_000)}`)
      const settled = await countSettled(world)
      if (mostMs === undefined && settled >= due.length * 0.95) mostMs = performance.now() - since
      return settled >= due.length
    },
    stepTimeoutMs,
  )
  const recoveryMs = performance.now() - since
  return { recoveryMs, mostMs: mostMs ?? recoveryMs }
}

/** Whether a live engine still answers a protocol request about one of the seeded subscriptions. */
const answersRequest = async (
  world: World,
  rows: ReadonlyArray<{ readonly id: string; readonly client_id: string }>,
  log: ReturnType<typeof captureOutput>,
): Promise<boolean> => {
  const first = rows[0]
  if (first === undefined || log.exit !== undefined) return false
  const reply = await world
    .channel()
    .request("subscription.get", { subscriptionId: first.id }, { clientId: first.client_id })
    .catch(() => undefined)
  return reply?.status === "ok"
}

/**
 * Engine process settings for the kill: small commit batches and few wakes in flight, so a
 * burst of a thousand is still going when the kill lands (the default batch of 500 would send
 * most of it in one commit). Everything else is the production default.
 */
const killableEngine = {
  RP_COMMIT_BATCH: "20",
  RP_SWEEP_IN_FLIGHT: "20",
  RP_PUBLISH_WORKERS: "1",
}

/**
 * Outbox rows whose publish went out but whose delete failed (or that a dead instance left) wait
 * for a sweeper: at the production age (10 s) and interval (5 s) that alone would set the
 * recovery time, so the scenarios that leave such rows sweep sooner.
 */
const sweepingEngine = {
  ...killableEngine,
  RP_OUTBOX_SWEEP_AGE: "PT1S",
  RP_OUTBOX_SWEEP_INTERVAL: "PT0.5S",
}

/**
 * Scenario 1: kill -9 an engine instance in the middle of a burst and start it again.
 *
 * `n` subscriptions are due at one tick. The engine runs as its own process; once the hub has
 * received `killFraction` of the commands (observed, not timed) it gets SIGKILL. A new process
 * starts, the clock's next tick is published, and the world is left to settle. Recovery time
 * is from the restart to the last result recorded: it includes the new process's start and
 * the consumers' ack wait (5 s here), after which the hub results and the tick the dead
 * process had taken are delivered again.
 */
export const killMidBurst = async (n: number, killFraction = 0.3): Promise<ScenarioOutcome> => {
  const started = performance.now()
  const world = await World.create({}, "faults")
  try {
    const { due } = await seed(world, n)
    const first = await world.spawnEngine(killableEngine)
    const hub = await world.startHub()
    await publishTick(world, burstAt)
    const killAt = Math.max(1, Math.floor(n * killFraction))
    await hub.waitForCommands(killAt, stepTimeoutMs)
    const signal = await killed(first, "SIGKILL")
    const sentBeforeKill = hub.commands.length
    const recordedBeforeKill = await count(world, sql<{ count: string }>`SELECT count(*) FROM payments`)
    const outboxAtKill = await count(
      world,
      sql<{ count: string }>`SELECT coalesce(sum(message_count), 0) AS count FROM outbox`,
    )

    const restarted = performance.now()
    await world.spawnEngine(killableEngine)
    // What the engine's own clock would do a minute later.
    await publishTick(world, at(1))
    const { recoveryMs, mostMs } = await allResultsRecorded(world, due, restarted)
    await world.settled(stepTimeoutMs)
    const report = await checkInvariants(world, due)
    return {
      scenario: "1. kill -9 mid-burst",
      report,
      recoveryMs,
      checks: [
        { what: "the engine died of SIGKILL", ok: signal === "SIGKILL" },
        {
          what: `the kill came mid-burst (hub had ${sentBeforeKill} of ${n} commands)`,
          ok: sentBeforeKill > 0 && sentBeforeKill < n,
        },
        { what: "every occurrence paid once", ok: report.paid === n },
        {
          what: "the hub was asked once per payment",
          ok: new Set(hub.commands.map((c) => c.paymentId)).size === n,
        },
      ],
      notes: [
        `killed after the hub had ${sentBeforeKill} commands; ${recordedBeforeKill} payments were recorded and ${outboxAtKill} messages waited in the outbox`,
        `95% of the results were recorded ${(mostMs / 1_000).toFixed(2)} s after the restart, the last at ${(recoveryMs / 1_000).toFixed(2)} s`,
      ],
      seconds: (performance.now() - started) / 1_000,
    }
  } finally {
    await world.dispose()
  }
}

/** Splits `items` into consecutive groups of the given sizes; the rest is the last group. */
const split = <T>(items: ReadonlyArray<T>, sizes: ReadonlyArray<number>): Array<Array<T>> => {
  const groups: Array<Array<T>> = []
  let from = 0
  for (const size of sizes) {
    groups.push(items.slice(from, from + size))
    from += size
  }
  groups.push(items.slice(from))
  return groups
}

/** Runs `work` over `items`, `parallel` at a time. */
const inBatches = async <T>(
  items: ReadonlyArray<T>,
  parallel: number,
  work: (item: T) => Promise<unknown>,
) => {
  for (let from = 0; from < items.length; from += parallel) {
    await Promise.all(items.slice(from, from + parallel).map(work))
  }
}

/**
 * Scenario 5: the hub misbehaves. `n` subscriptions are due at one tick and split into groups:
 * - paused before the tick: skipped with reason `paused`, nothing sent;
 * - declined by the hub: failed for good (not retryable);
 * - answered, then the same result again (a new message id, and none at all): recorded once;
 * - answered `succeeded`, then `failed` + retryable for the same payment (out of order): the
 *   paid record stands, the contradiction is a `result_conflict` decision, nothing is resent;
 * - silent, then the subscription is cancelled, then the result arrives: it is recorded;
 * - silent for good: at the result timeout the engine asks `hub.payment.status` (contract 10),
 *   the hub does not know; later it does, and the next status query records the result.
 * Plus results for payment ids the engine never sent, which go to the dead-letter stream.
 * Recovery time is from the tick after which the silent hub answers to the last result recorded.
 */
export const hubMisbehaves = async (n: number): Promise<ScenarioOutcome> => {
  const started = performance.now()
  const world = await World.create({}, "faults")
  try {
    const { rows, due } = await seed(world, n)
    const share = Math.max(1, Math.floor(n / 20))
    const [paused = [], declined = [], repeated = [], contradicted = [], cancelled = [], silent = []] = split(
      rows,
      [share, share, share, share, share, share],
    )
    const bucketOf = new Map<string, "declined" | "silent">()
    for (const row of declined) bucketOf.set(row.id, "declined")
    for (const row of [...cancelled, ...silent]) bucketOf.set(row.id, "silent")
    // Dead letters are expected here: warnings about them would bury the report.
    await world.startEngine({}, "Error")
    const hub = await world.startHub({
      decide: (command): HubVerdict => {
        const bucket = bucketOf.get(command.subscriptionId)
        if (bucket === "declined") return { status: "declined", retryable: false, reason: "card blocked" }
        if (bucket === "silent") return "silent"
        return { status: "succeeded", retryable: false }
      },
    })
    const channel = world.channel()
    await inBatches(paused, 50, (row) =>
      channel.ok("subscription.pause", { subscriptionId: row.id }, { clientId: row.client_id }),
    )

    await world.tick(burstAt)
    await hub.waitForCommands(n - paused.length, stepTimeoutMs)
    await world.settled(stepTimeoutMs)

    const commandOf = new Map(hub.commands.map((command) => [command.subscriptionId, command]))
    const paymentIdOf = (subscriptionId: string) => {
      const command = commandOf.get(subscriptionId)
      if (command === undefined) throw new Error(`no command for ${subscriptionId}`)
      return command.paymentId
    }
    const succeeded = (paymentId: string, atTime: string): PaymentResult => ({
      paymentId,
      status: "succeeded",
      retryable: false,
      hubReference: `late-${paymentId.slice(0, 8)}`,
      at: atTime,
    })

    // The same result again: once under a new message id, once with none (both stored), once
    // under the hub's own id (dropped by the stream's duplicate window).
    await inBatches(repeated, 100, async (row) => {
      const paymentId = paymentIdOf(row.id)
      const again = succeeded(paymentId, at(0.5))
      await hub.publishResult(again, `again:${paymentId}`)
      await hub.publishResult(again)
      await hub.publishResult(again, `result:${paymentId}`)
    })
    // A failure after the success, for the same payment.
    await inBatches(contradicted, 100, (row) => {
      const paymentId = paymentIdOf(row.id)
      return hub.publishResult(
        { paymentId, status: "failed", retryable: true, reason: "late failure", at: at(0.5) },
        `late:${paymentId}`,
      )
    })
    // Results for payments the engine never sent, some not even UUIDs.
    const unknown = Array.from({ length: share }, (_, index) =>
      index % 5 === 0 ? `not-a-payment-${index}` : randomUUID(),
    )
    await inBatches(unknown, 100, (paymentId) =>
      hub.publishResult(
        { paymentId, status: "succeeded", retryable: false, at: at(0.5) },
        `unknown:${paymentId}`,
      ),
    )
    // Cancelled while the hub is silent; the result arrives afterwards.
    await inBatches(cancelled, 50, (row) =>
      channel.ok("subscription.cancel", { subscriptionId: row.id }, { clientId: row.client_id }),
    )
    await inBatches(cancelled, 100, (row) => {
      const paymentId = paymentIdOf(row.id)
      return hub.publishResult(succeeded(paymentId, at(1)), `result:${paymentId}`)
    })
    await world.settled(stepTimeoutMs)

    // Result timeout (15 min): the engine asks the hub, which does not know yet.
    await world.tick(at(15))
    await world.settled(stepTimeoutMs)
    const overdue = await count(
      world,
      sql<{ count: string }>`SELECT count(*) FROM decisions WHERE outcome = 'result_overdue'`,
    )
    const unknownStatus = await count(
      world,
      sql<{ count: string }>`SELECT count(*) FROM payments WHERE status = 'unknown'`,
    )
    // Now the hub knows; the engine's next query (back-off: 1 min) finds out.
    for (const row of silent) hub.setVerdict(paymentIdOf(row.id), { status: "succeeded", retryable: false })
    const answering = performance.now()
    await world.tick(at(16))
    const expectedSettled = n - paused.length
    await world.waitFor(
      "every sent payment to have its result recorded",
      async () => (await countSettled(world)) >= expectedSettled,
      stepTimeoutMs,
    )
    const recoveryMs = performance.now() - answering
    await world.settled(stepTimeoutMs)

    const report = await checkInvariants(world, due)
    const statusOf = async (ids: ReadonlyArray<string>) => {
      if (ids.length === 0) return []
      return world.db.selectFrom("payments").select("status").where("subscription_id", "in", ids).execute()
    }
    const contradictedStatus = await statusOf(contradicted.map((row) => row.id))
    const cancelledStatus = await statusOf(cancelled.map((row) => row.id))
    const conflicts = await count(
      world,
      sql<{ count: string }>`SELECT count(*) FROM decisions WHERE outcome = 'result_conflict'`,
    )
    const stillCancelled = await count(
      world,
      sql<{ count: string }>`SELECT count(*) FROM subscriptions WHERE status = 'cancelled'`,
    )
    const pausedSkips = await count(
      world,
      sql<{ count: string }>`SELECT count(*) FROM decisions WHERE outcome = 'skipped' AND reason = 'paused'`,
    )
    const letters = report.deadLetters[world.topology.streams.hubPayments] ?? 0
    return {
      scenario: "5. hub misbehaves",
      report,
      recoveryMs,
      checks: [
        {
          what: `paused ones skipped as paused (${pausedSkips}/${paused.length})`,
          ok: pausedSkips === paused.length,
        },
        { what: "declined ones failed for good", ok: report.failed === declined.length },
        {
          what: `failed-after-succeeded left the payments paid (${conflicts} conflicts recorded)`,
          ok: contradictedStatus.every((p) => p.status === "succeeded") && conflicts === contradicted.length,
        },
        {
          what: "results after cancel were recorded",
          ok: cancelledStatus.every((p) => p.status === "succeeded") && stillCancelled === cancelled.length,
        },
        {
          what: `silent hub: status queried at the timeout (${overdue} overdue, ${unknownStatus} unknown), answered later`,
          ok: overdue === silent.length && unknownStatus === silent.length,
        },
        {
          what: `results for unknown ids dead-lettered (${letters}/${unknown.length})`,
          ok: letters === unknown.length,
        },
        { what: "one command per payment", ok: report.commands === n - paused.length },
      ],
      expectedDeadLetters: unknown.length,
      notes: [
        `groups of ${share}: paused, declined, repeated results, failed after succeeded, cancelled while silent, silent; ${n - 6 * share} answered normally; ${unknown.length} results for unknown ids`,
      ],
      seconds: (performance.now() - started) / 1_000,
    }
  } finally {
    await world.dispose()
  }
}

/** The Postgres server as the harness's administrator sees it (the same default as World's). */
const adminUrl = process.env.TEST_DATABASE_ADMIN_URL ?? "postgres://postgres@127.0.0.1:5432/postgres"

/** How long scenario 4 keeps terminating the engine's connections, and how often. */
const outageMs = 4_000
const terminateEveryMs = 100

/**
 * Scenario 4: Postgres goes away for a while. The engine runs as its own process (so a crash
 * would show as its exit) with commit batches of 20 and 20 wakes in flight. From the harness's
 * own admin connection, every 100 ms for 4 s, every backend on the engine's database is
 * terminated (`pg_terminate_backend`): whatever query was running fails, idle connections are
 * closed under the pool. The tick is published once the outage has begun, so the burst runs
 * into it whatever N is. Then the terminations stop, the clock's next tick is published (the
 * wakes that failed are due again), and the world settles. The engine must still be running and
 * answer a protocol request. Recovery time is from the end of the outage to the last result
 * recorded.
 */
export const postgresOutage = async (n: number): Promise<ScenarioOutcome> => {
  const started = performance.now()
  const world = await World.create({}, "faults")
  const admin = new pg.Client({ connectionString: adminUrl })
  await admin.connect()
  try {
    const { rows, due } = await seed(world, n)
    const log = captureOutput(await world.spawnEngine(sweepingEngine))
    const hub = await world.startHub()

    // The harness's own pool would lose its connections too: it is not used during the outage.
    let terminated = 0
    let rounds = 0
    const terminateAll = async () => {
      // In the select list, not the WHERE clause: there the planner may call it before the filters.
      const result = await admin.query<{ terminated: boolean }>(
        `SELECT pg_terminate_backend(pid) AS terminated FROM pg_stat_activity
          WHERE datname = $1 AND pid <> pg_backend_pid()`,
        [world.databaseName],
      )
      terminated += result.rows.filter((row) => row.terminated).length
      rounds += 1
    }
    const outageStarted = performance.now()
    await terminateAll()
    await publishTick(world, burstAt)
    while (performance.now() - outageStarted < outageMs) {
      await new Promise((resolve) => setTimeout(resolve, terminateEveryMs))
      await terminateAll()
    }
    const sentDuringOutage = hub.commands.length
    const aliveAfterOutage = log.exit === undefined

    const recovering = performance.now()
    await publishTick(world, at(1))
    const { recoveryMs } = await allResultsRecorded(world, due, recovering, { name: "engine process", log })
    await world.settled(stepTimeoutMs)
    const settledMs = performance.now() - recovering
    const report = await checkInvariants(world, due)

    const answers = await answersRequest(world, rows, log)
    const replaced = occurrencesIn(log.text, "postgres: an idle connection was closed")
    const groupFailures = occurrencesIn(log.text, "group commit failed")
    const wakeFailures = occurrencesIn(log.text, "wake failed")
    return {
      scenario: "4. Postgres unavailable",
      report,
      recoveryMs,
      checks: [
        {
          what: `the engine process kept running (${log.exit ?? "no exit"})`,
          ok: aliveAfterOutage && log.exit === undefined,
        },
        {
          what: `the engine's connections were terminated (${terminated} in ${rounds} rounds)`,
          ok: terminated > 0,
        },
        { what: "every occurrence paid once", ok: report.paid === n },
        {
          what: "the hub was asked once per payment",
          ok: new Set(hub.commands.map((c) => c.paymentId)).size === n,
        },
        { what: "the engine answers a protocol request afterwards", ok: answers },
      ],
      notes: [
        `${terminated} backends terminated in ${rounds} rounds over ${(outageMs / 1_000).toFixed(0)} s; the engine logged ${replaced} idle connections replaced, ${groupFailures} group commits retried one by one and ${wakeFailures} wakes failed; the hub had ${sentDuringOutage} commands when the outage ended`,
        `settled ${(settledMs / 1_000).toFixed(2)} s after the outage; seeded and started in ${((outageStarted - started) / 1_000).toFixed(2)} s`,
      ],
      seconds: (performance.now() - started) / 1_000,
    }
  } finally {
    await admin.end().catch(() => undefined)
    await world.dispose()
  }
}

/** How long scenario 3's NATS server stays down before it is started again. */
const natsDownMs = 1_000

/**
 * Scenario 3: the NATS server restarts in the middle of a burst. The scenario starts its own
 * nats-server (JetStream, its own port and store directory: the shared one is untouched); the
 * world, the engine (its own process, commit batches of 20 and 20 wakes in flight) and the fake
 * hub all connect to it. Once the hub has received `stopFraction` of the commands (observed, not
 * timed) the server gets `signal`; after a second it starts again on the same port and store.
 * Nothing else is done: no new tick, no engine restart. The engine must ride it out (reconnect,
 * resume its consumers, republish what did not get an ack), still be running and answer a
 * protocol request. Recovery time is from the server being ready again to the last result recorded.
 */
export const natsRestart = async (
  n: number,
  stopFraction = 0.3,
  signal: NodeJS.Signals = "SIGKILL",
): Promise<ScenarioOutcome> => {
  const started = performance.now()
  const server = await PrivateNatsServer.start()
  try {
    const world = await World.create({ natsUrl: server.url }, "faults")
    try {
      const { rows, due } = await seed(world, n)
      const log = captureOutput(await world.spawnEngine(sweepingEngine))
      // Commands the server handed to the hub, or the hub's acks for them, can be lost with the
      // server: they come again after the hub's ack wait, here the engine's own (5 s) rather than
      // the fake hub's default 30 s, which would only set how long settling takes.
      const hub = await world.startHub({ ackWaitMs: 5_000 })
      await publishTick(world, burstAt)
      const stopAt = Math.max(1, Math.floor(n * stopFraction))
      await hub.waitForCommands(stopAt, stepTimeoutMs)
      await server.stop(signal)
      const sentBeforeStop = hub.commands.length
      const settledBeforeStop = await countSettled(world)
      await new Promise((resolve) => setTimeout(resolve, natsDownMs))
      const settledWhileDown = await countSettled(world)
      await server.restart()
      const back = performance.now()

      const { recoveryMs, mostMs } = await allResultsRecorded(world, due, back, {
        name: "engine process",
        log,
      })
      await world.settled(stepTimeoutMs)
      const settledMs = performance.now() - back
      const report = await checkInvariants(world, due)

      const answers = await answersRequest(world, rows, log)
      const restarts = occurrencesIn(log.text, "consumer stopped; restarting")
      const publishFailures = occurrencesIn(log.text, "outbox publish failed")
      const republished = occurrencesIn(log.text, "republishing outbox rows")
      return {
        scenario: "3. NATS server restart",
        report,
        recoveryMs,
        checks: [
          { what: `the engine process kept running (${log.exit ?? "no exit"})`, ok: log.exit === undefined },
          {
            what: `the server stopped mid-burst (hub had ${sentBeforeStop} of ${n} commands)`,
            ok: sentBeforeStop > 0 && sentBeforeStop < n,
          },
          { what: "every occurrence paid once", ok: report.paid === n },
          {
            what: "the hub was asked once per payment",
            ok: new Set(hub.commands.map((c) => c.paymentId)).size === n,
          },
          { what: "the engine answers a protocol request afterwards", ok: answers },
        ],
        notes: [
          `${signal} after the hub had ${sentBeforeStop} commands (${settledBeforeStop} results recorded, ${settledWhileDown} when the server came back ${(natsDownMs / 1_000).toFixed(0)} s later); the engine logged ${restarts} consumer restarts, ${publishFailures} failed outbox publishes and ${republished} sweeps republishing rows`,
          `95% of the results were recorded ${(mostMs / 1_000).toFixed(2)} s after the server was back, the last at ${(recoveryMs / 1_000).toFixed(2)} s; settled at ${(settledMs / 1_000).toFixed(2)} s`,
        ],
        seconds: (performance.now() - started) / 1_000,
      }
    } finally {
      await world.dispose()
    }
  } finally {
    await server.dispose()
  }
}

/** Sums the `woken=` figures of every log line containing `message`. */
const wokenIn = (text: string, message: string) =>
  text
    .split("\n")
    .filter((line) => line.includes(message))
    .reduce((sum, line) => sum + Number(/woken=(\d+)/.exec(line)?.[1] ?? 0), 0)

/** Scenario 2's leases: short, so the takeover shows within a CI run (production: 10 s and 2 s). */
const leaseTtlMs = 3_000
const leaseRenewMs = 500

/**
 * Scenario 2: two instances, kill one. Two engine processes (distinct `RP_INSTANCE_ID`) on one
 * world share the partitions through leases (`RP_LEASE_TTL` 3 s, `RP_LEASE_RENEW` 0.5 s here):
 * each sweeps its own partitions, runs their actors, and forwards messages for the other's.
 * `n` subscriptions are due at one tick. Once the hub has received `killFraction` of the
 * commands (observed, not timed) one instance gets SIGKILL and is not restarted; no further tick
 * is published. The survivor stops seeing its heartbeat, takes its partitions when their leases
 * run out (at most a lease period plus a round after the kill), and sweeps them: their due
 * subscriptions, the results the dead one had taken (back after the consumers' ack wait,
 * `RP_ACK_WAIT`, 5 s here) and the commands it committed but had not published (the outbox
 * sweeper: age 1 s, every 0.5 s here). Takeover time is from the kill to the survivor holding
 * every lease; recovery time to the last result recorded.
 */
export const twoInstancesKillOne = async (n: number, killFraction = 0.3): Promise<ScenarioOutcome> => {
  const started = performance.now()
  const world = await World.create({}, "faults")
  try {
    const { rows, due } = await seed(world, n)
    const leases = { RP_LEASE_TTL: `PT${leaseTtlMs / 1_000}S`, RP_LEASE_RENEW: `PT${leaseRenewMs / 1_000}S` }
    const victimId = `${world.databaseName}-a`
    const survivorId = `${world.databaseName}-b`
    const victim = await world.spawnEngine({ ...sweepingEngine, ...leases, RP_INSTANCE_ID: victimId })
    const survivor = await world.spawnEngine({ ...sweepingEngine, ...leases, RP_INSTANCE_ID: survivorId })
    const victimLog = captureOutput(victim)
    const survivorLog = captureOutput(survivor)
    const leasesHeldBy = async (owner: string) =>
      count(
        world,
        sql<{ count: string }>`SELECT count(*) AS count FROM partition_leases
                               WHERE owner = ${owner} AND expires_at > now()`,
      )
    const partitionCount = await count(
      world,
      sql<{ count: string }>`SELECT count(*) AS count FROM partition_leases`,
    )
    await world.waitFor(
      "both instances to hold leases",
      async () => (await leasesHeldBy(victimId)) > 0 && (await leasesHeldBy(survivorId)) > 0,
      stepTimeoutMs,
    )
    const victimPartitions = await leasesHeldBy(victimId)
    const hub = await world.startHub()
    await publishTick(world, burstAt)
    const killAt = Math.max(1, Math.floor(n * killFraction))
    await hub.waitForCommands(killAt, stepTimeoutMs)
    const killedAt = performance.now()
    // Takeover is judged on the database's clock, so the harness's own polling and the victim's exit do not count.
    const killedAtDb = await databaseNow(world)
    const signal = await killed(victim, "SIGKILL")
    const sentBeforeKill = hub.commands.length
    const settledBeforeKill = await countSettled(world)
    const outboxAtKill = await count(
      world,
      sql<{ count: string }>`SELECT coalesce(sum(message_count), 0) AS count FROM outbox`,
    )
    await world.waitFor(
      "the survivor to hold every lease",
      async () => (await leasesHeldBy(survivorId)) === partitionCount,
      stepTimeoutMs,
    )
    // Every renewal rewrites changed_at for all of an owner's leases in one statement, so their latest
    // changed_at is the round that took the last of them (or at most one round later).
    const lastTakenAt = (
      await sql<{
        at: Date
      }>`SELECT max(changed_at) AS at FROM partition_leases WHERE owner = ${survivorId}`.execute(world.db)
    ).rows[0]?.at
    const leasesTakenMs =
      lastTakenAt === undefined ? Number.POSITIVE_INFINITY : lastTakenAt.getTime() - killedAtDb

    const { recoveryMs: takeoverMs, mostMs } = await allResultsRecorded(world, due, killedAt, {
      name: "surviving engine",
      log: survivorLog,
    })
    await world.settled(stepTimeoutMs)
    const settledMs = performance.now() - killedAt
    const report = await checkInvariants(world, due)

    // One tick was published: delivered more than once means the dead instance held it.
    const ticks = await world.jsm.consumers.info(world.topology.streams.ticks, world.topology.consumers.ticks)
    const tickDeliveries = ticks.delivered.consumer_seq
    const victimHeldTick = tickDeliveries > ticks.delivered.stream_seq
    const answers = await answersRequest(world, rows, survivorLog)
    const survivorWoken =
      wokenIn(survivorLog.text, "tick processed") +
      wokenIn(survivorLog.text, "resumed due work after start") +
      wokenIn(survivorLog.text, "partition sweep")
    const raceLosses = occurrencesIn(victimLog.text + survivorLog.text, "lost the write race")
    const wakeFailures = occurrencesIn(survivorLog.text, "wake failed")
    const republished = occurrencesIn(survivorLog.text, "republishing outbox rows")
    return {
      scenario: "2. two instances, kill one",
      report,
      recoveryMs: takeoverMs,
      checks: [
        { what: "the first instance died of SIGKILL", ok: signal === "SIGKILL" },
        {
          what: `both instances held partitions before the kill (the victim ${victimPartitions} of ${partitionCount})`,
          ok: victimPartitions > 0 && victimPartitions < partitionCount,
        },
        {
          what: `the kill came mid-burst (hub had ${sentBeforeKill} of ${n} commands)`,
          ok: sentBeforeKill > 0 && sentBeforeKill < n,
        },
        {
          what: `the survivor held every lease ${(leasesTakenMs / 1_000).toFixed(2)} s after the kill (stated bound: lease TTL + 2 rounds = ${((leaseTtlMs + 2 * leaseRenewMs) / 1_000).toFixed(1)} s)`,
          ok: leasesTakenMs <= leaseTtlMs + 2 * leaseRenewMs,
        },
        {
          what: `the surviving instance kept running and answers a protocol request (${survivorLog.exit ?? "no exit"})`,
          ok: survivorLog.exit === undefined && answers,
        },
        { what: "every occurrence paid once", ok: report.paid === n },
        {
          what: "the hub was asked once per payment",
          ok: new Set(hub.commands.map((c) => c.paymentId)).size === n,
        },
        { what: `no wake lost its revision race 8 times in a row (${raceLosses})`, ok: raceLosses === 0 },
      ],
      notes: [
        `killed after the hub had ${sentBeforeKill} commands; ${settledBeforeKill} results were recorded and ${outboxAtKill} messages waited in the outbox; the dead instance ${victimHeldTick ? "held the tick (it was delivered again to the survivor)" : "did not hold the tick (the survivor was sweeping)"}`,
        `the survivor took the victim's ${victimPartitions} partitions ${(leasesTakenMs / 1_000).toFixed(2)} s after the kill; 95% of the results were recorded ${(mostMs / 1_000).toFixed(2)} s after it, the last at ${(takeoverMs / 1_000).toFixed(2)} s (ack wait 5 s); settled at ${(settledMs / 1_000).toFixed(2)} s`,
        `the survivor's sweeps reported ${survivorWoken} wakes for ${n} due; it logged ${wakeFailures} failed wakes and ${republished} sweeps republishing outbox rows (Stale retries are not logged)`,
      ],
      seconds: (performance.now() - started) / 1_000,
    }
  } finally {
    await world.dispose()
  }
}

/** The engine's `/health/ready` answer: its status code and the checks that failed, or why there was none. */
const readinessOf = async (url: string) => {
  try {
    const response = await fetch(`${url}/health/ready`, { signal: AbortSignal.timeout(5_000) })
    const body = (await response.json()) as { failed?: ReadonlyArray<string> }
    return { code: response.status, failed: body.failed ?? [] }
  } catch (error) {
    return { code: 0, failed: [String(error)] }
  }
}

const portOf = (url: string, fallback: number) => Number(new URL(url).port || fallback)

/** What a dependency outage scenario cuts: the engine's way to Postgres or to NATS. */
type Cut = "postgres" | "nats"

/**
 * Scenarios 6-8: Postgres or NATS unreachable for the engine for `outageMs`, in the middle of a
 * burst. The engine (its own process, commit batches of 20 and 20 wakes in flight, the production
 * redelivery budget: RP_MAX_DELIVERIES 5, 1-2-4-8 s apart) reaches the dependency through a TCP
 * proxy the harness controls (harness/TcpProxy.ts); the harness, the fake hub and the shared
 * servers are untouched. Once the hub has received 30% of the commands (observed, not timed) the
 * proxy is cut: open connections are reset, new ones refused. Until then the hub held its answers
 * back: they arrive during the outage, half at once and half half-way through; the clock's ticks are published meanwhile as the
 * engine's own clock would (one per engine minute, at most every 30 s of the outage). Then the
 * proxy is restored and nothing else is done. The engine must have said it was not ready during
 * the outage and be ready after it, have dead-lettered nothing, and finish the burst by itself.
 * Recovery time is from the restore to the last result recorded.
 */
const dependencyOutage = async (
  scenario: string,
  cut: Cut,
  n: number,
  outageMs: number,
  cutFraction = 0.3,
): Promise<ScenarioOutcome> => {
  const started = performance.now()
  const world = await World.create({}, "faults")
  const target = cut === "postgres" ? Redacted.value(world.settings.databaseUrl) : world.settings.natsUrl
  const proxy = await TcpProxy.start(portOf(target, cut === "postgres" ? 5432 : 4222))
  try {
    const { rows, due } = await seed(world, n)
    const httpPort = await freePort()
    const log = captureOutput(
      await world.spawnEngine({
        ...sweepingEngine,
        RP_HTTP_PORT: String(httpPort),
        ...(cut === "postgres" ? { DATABASE_URL: proxy.route(target) } : { NATS_URL: proxy.route(target) }),
      }),
    )
    // Until the cut the hub holds its answers back; they arrive during the outage, in two waves.
    let holding = true
    const held: Array<PaymentCommand> = []
    const hub = await world.startHub({
      ackWaitMs: 5_000,
      decide: (command): HubVerdict => {
        if (!holding) return { status: "succeeded", retryable: false }
        held.push(command)
        return "silent"
      },
    })
    const answerHeld = (commands: ReadonlyArray<PaymentCommand>) =>
      inBatches(commands, 100, (command) => {
        hub.setVerdict(command.paymentId, { status: "succeeded", retryable: false })
        return hub.publishResult(
          { paymentId: command.paymentId, status: "succeeded", retryable: false, at: at(0.5) },
          `result:${command.paymentId}`,
        )
      })
    const url = `http://127.0.0.1:${httpPort}`
    await publishTick(world, burstAt)
    await hub.waitForCommands(Math.max(1, Math.floor(n * cutFraction)), stepTimeoutMs)
    const readyBefore = await readinessOf(url)

    proxy.cut()
    const cutAt = performance.now()
    holding = false
    const settledAtCut = await countSettled(world)
    const [firstWave, secondWave] = split(held, [Math.ceil(held.length / 2)])
    await answerHeld(firstWave ?? [])
    let secondWaveSent = false
    const notReady: Array<string> = []
    let readinessChecks = 0
    let ticks = 0
    const tickEveryMs = Math.min(60_000, outageMs / 2)
    while (performance.now() - cutAt < outageMs) {
      const untilTick = cutAt + (ticks + 1) * tickEveryMs - performance.now()
      const untilEnd = cutAt + outageMs - performance.now()
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, Math.min(5_000, untilTick, untilEnd))))
      if (performance.now() >= cutAt + (ticks + 1) * tickEveryMs && performance.now() - cutAt < outageMs) {
        ticks += 1
        await publishTick(world, at(ticks))
      }
      if (!secondWaveSent && performance.now() - cutAt >= outageMs / 2) {
        secondWaveSent = true
        await answerHeld(secondWave ?? [])
      }
      const readiness = await readinessOf(url)
      readinessChecks += 1
      if (readiness.code === 503) notReady.push(readiness.failed.join("+"))
    }
    if (!secondWaveSent) await answerHeld(secondWave ?? [])
    const answeredDuringOutage = held.length
    const settledDuringOutage = (await countSettled(world)) - settledAtCut
    const sentDuringOutage = hub.commands.length

    proxy.restore()
    const restored = performance.now()
    // Readiness is watched from the restore on, beside the burst's progress.
    let readyAfter = await readinessOf(url)
    // Every half second: a probe costs the engine a query and ten JetStream requests.
    const readyAgain = (async () => {
      while (readyAfter.code !== 200 && performance.now() - restored < stepTimeoutMs) {
        await new Promise((resolve) => setTimeout(resolve, 500))
        readyAfter = await readinessOf(url)
      }
      return performance.now() - restored
    })()
    const { recoveryMs, mostMs } = await allResultsRecorded(world, due, restored, {
      name: "engine process",
      log,
    })
    const readyAfterMs = await readyAgain
    await world.settled(stepTimeoutMs)
    const settledMs = performance.now() - restored
    const report = await checkInvariants(world, due)

    if (process.env.FAULTS_DEBUG_LOG)
      (await import("node:fs")).writeFileSync(process.env.FAULTS_DEBUG_LOG, log.text)
    const answers = await answersRequest(world, rows, log)
    const pauses = occurrencesIn(log.text, "consumer paused")
    const resumes = occurrencesIn(log.text, "consumer resumed")
    const dependencyName = cut === "postgres" ? "postgres" : "nats"
    const namedDown = notReady.filter((failed) => failed.split("+").includes(dependencyName)).length
    return {
      scenario,
      report,
      recoveryMs,
      checks: [
        { what: `the engine process kept running (${log.exit ?? "no exit"})`, ok: log.exit === undefined },
        {
          what: `the cut came mid-burst (hub had ${sentDuringOutage} of ${n} commands when it ended)`,
          ok: sentDuringOutage > 0 && sentDuringOutage < n,
        },
        { what: `ready before the cut (${readyBefore.code})`, ok: readyBefore.code === 200 },
        {
          what: `hub results arrived during the outage (${answeredDuringOutage})`,
          ok: answeredDuringOutage > 0,
        },
        {
          what: `not ready during the outage, naming ${dependencyName} (${namedDown} of ${readinessChecks} probes)`,
          ok: readinessChecks > 0 && namedDown === readinessChecks,
        },
        {
          what: `ready again ${(readyAfterMs / 1_000).toFixed(1)} s after the restore`,
          ok: readyAfter.code === 200,
        },
        { what: "every occurrence paid once", ok: report.paid === n },
        {
          what: "the hub was asked once per payment",
          ok: new Set(hub.commands.map((c) => c.paymentId)).size === n,
        },
        { what: "the engine answers a protocol request afterwards", ok: answers },
      ],
      notes: [
        `${dependencyName} unreachable for the engine for ${(outageMs / 1_000).toFixed(0)} s from when the hub had ${Math.max(1, Math.floor(n * cutFraction))} commands; ${answeredDuringOutage} results the hub had held back arrived meanwhile (${settledDuringOutage} recorded during it), ${ticks} ticks were published, the proxy refused ${proxy.refused} connections`,
        `the engine logged ${pauses} consumer pauses and ${resumes} resumes; 95% of the results were recorded ${(mostMs / 1_000).toFixed(2)} s after the restore, the last at ${(recoveryMs / 1_000).toFixed(2)} s; ready at ${(readyAfterMs / 1_000).toFixed(2)} s, settled at ${(settledMs / 1_000).toFixed(2)} s`,
      ],
      seconds: (performance.now() - started) / 1_000,
    }
  } finally {
    proxy.restore()
    await world.dispose()
    await proxy.close()
  }
}

/** Scenario 6: Postgres unreachable for the engine for a minute mid-burst. */
export const postgresUnreachable = (n: number, outageMs = 60_000) =>
  dependencyOutage(`6. Postgres unreachable ${(outageMs / 1_000).toFixed(0)} s`, "postgres", n, outageMs)

/** Scenario 7: Postgres unreachable for the engine for ten minutes mid-burst. */
export const postgresUnreachableLong = (n: number, outageMs = 600_000) =>
  dependencyOutage(`7. Postgres unreachable ${(outageMs / 60_000).toFixed(0)} min`, "postgres", n, outageMs)

/** Scenario 8: NATS unreachable for the engine (the hub keeps its own connection) for a minute mid-burst. */
export const natsUnreachable = (n: number, outageMs = 60_000) =>
  dependencyOutage(`8. NATS unreachable ${(outageMs / 1_000).toFixed(0)} s`, "nats", n, outageMs)
