/**
 * The fault harness's short form (issue 5): the same scenarios as
 * `npm run faults`, at a size CI runs in seconds, and a check that the
 * invariant checker itself catches what it is meant to catch.
 */
import { randomUUID } from "node:crypto"
import { afterEach, describe, expect, it } from "vitest"
import { burstAt, seedBenchDatabase } from "../../bench/seed.ts"
import { checkInvariants, holds } from "../../harness/faults/Invariants.ts"
import {
  hubMisbehaves,
  killMidBurst,
  natsRestart,
  natsUnreachable,
  postgresOutage,
  postgresUnreachable,
  type ScenarioOutcome,
  twoInstancesKillOne,
} from "../../harness/faults/scenarios.ts"
import { World } from "../../harness/World.ts"

const n = 600

const expectClean = (outcome: ScenarioOutcome, deadLettered = 0) => {
  const { report } = outcome
  expect(report.problems).toEqual([])
  expect(outcome.checks.filter((check) => !check.ok).map((check) => check.what)).toEqual([])
  expect(report).toMatchObject({
    due: n,
    duplicates: 0,
    lost: 0,
    inFlight: 0,
    conflicting: 0,
    commandsWithoutRecords: 0,
    recordsWithoutCommands: 0,
    commandRecordMismatches: 0,
    eventMismatches: 0,
    repeatedMessages: 0,
    deadLettered,
  })
  expect(report.paid + report.skipped + report.failed).toBe(n)
}

describe("fault scenarios", () => {
  it("1. kill -9 in the middle of a burst: nothing paid twice, nothing lost", async () => {
    const outcome = await killMidBurst(n)
    expectClean(outcome)
    expect(outcome.report.paid).toBe(n)
  })

  it("2. two instances, kill one: the survivor finishes the burst, nothing paid twice or lost", async () => {
    const outcome = await twoInstancesKillOne(n)
    expectClean(outcome)
    expect(outcome.report.paid).toBe(n)
    // Bounded by the ack wait (5 s) for what the dead instance held, plus the outbox sweep.
    expect(outcome.recoveryMs).toBeLessThan(15_000)
  })

  it("3. the NATS server restarts mid-burst: the engine rides it out, nothing paid twice or lost", async () => {
    const outcome = await natsRestart(n)
    expectClean(outcome)
    expect(outcome.report.paid).toBe(n)
    // A stall on lost publish acks would show as the publisher's 30 s timeout.
    expect(outcome.recoveryMs).toBeLessThan(15_000)
  })

  it("4. Postgres unavailable for a while: the engine keeps running, resumes, nothing paid twice or lost", async () => {
    const outcome = await postgresOutage(n)
    expectClean(outcome)
    expect(outcome.report.paid).toBe(n)
  })

  it("5. the hub misbehaves: repeats, contradictions, unknown ids, late and missing results", async () => {
    const outcome = await hubMisbehaves(n)
    const share = n / 20
    expectClean(outcome, share)
    expect(outcome.report).toMatchObject({ paid: n - 2 * share, skipped: share, failed: share })
  })
})

// Outages longer than the whole redelivery budget (5 deliveries, 1 + 2 + 4 + 8 s apart), shorter
// than the minute npm run faults uses.
const outageMs = 20_000

describe("dependency outages", () => {
  it("6. Postgres unreachable for the engine mid-burst: paused, nothing dead-lettered, lost or paid twice", async () => {
    const outcome = await postgresUnreachable(n, outageMs)
    expectClean(outcome)
    expect(outcome.report.paid).toBe(n)
  }, 180_000)

  it("8. NATS unreachable for the engine mid-burst: paused, nothing dead-lettered, lost or paid twice", async () => {
    const outcome = await natsUnreachable(n, outageMs)
    expectClean(outcome)
    expect(outcome.report.paid).toBe(n)
  }, 180_000)
})

describe("the invariant checker", () => {
  let world: World | undefined
  afterEach(async () => {
    await world?.dispose()
    world = undefined
  })

  it("counts lost, doubled and unmatched payments it is shown", async () => {
    world = await World.create({}, "faults")
    const env = world
    await seedBenchDatabase(env.databaseName, 8)
    const subscriptions = await env.db.selectFrom("subscriptions").select("id").orderBy("client_id").execute()
    const due = subscriptions.map((row) => ({ subscriptionId: row.id, occurrence: "2027-01-01" }))
    await env.startEngine({}, "Error")
    const hub = await env.startHub()
    await env.tick(burstAt)
    await hub.waitForCommands(8)
    await env.settled()
    const clean = await checkInvariants(env, due)
    expect(clean.problems).toEqual([])
    expect(holds(clean)).toBe(true)
    expect(clean).toMatchObject({ due: 8, paid: 8, commands: 8 })

    const [lostOne, pendingOne, doubled, resent] = subscriptions.map((row) => row.id)
    if (lostOne === undefined || pendingOne === undefined || doubled === undefined || resent === undefined)
      throw new Error("seeding made too few subscriptions")
    // A payment whose record vanished: its command has no record, its occurrence no outcome.
    await env.db.deleteFrom("payments").where("subscription_id", "=", lostOne).execute()
    // A payment the records say is still pending while the streams say it succeeded.
    await env.db
      .updateTable("payments")
      .set({ status: "pending", outcome: null })
      .where("subscription_id", "=", pendingOne)
      .execute()
    // A second successful payment for one occurrence, recorded but never sent.
    const paid = await env.db
      .selectFrom("payments")
      .selectAll()
      .where("subscription_id", "=", doubled)
      .executeTakeFirstOrThrow()
    await env.db
      .insertInto("payments")
      .values({ ...paid, payment_id: randomUUID(), attempt: 2, rule: JSON.stringify(paid.rule) })
      .execute()
    // A second command for an occurrence already paid, with no record behind it.
    const command = hub.commands.find((candidate) => candidate.subscriptionId === resent)
    await env.js.publish(
      env.topology.subjects.hubCommand,
      JSON.stringify({ ...command, paymentId: randomUUID(), attempt: 2 }),
    )

    const broken = await checkInvariants(env, due)
    expect(holds(broken)).toBe(false)
    expect(broken).toMatchObject({
      due: 8,
      paid: 6,
      lost: 1,
      inFlight: 1,
      duplicates: 2,
      commandsWithoutRecords: 2,
      recordsWithoutCommands: 1,
    })
    // The vanished record's events, the pending one's success and the unsent one's missing request.
    expect(broken.eventMismatches).toBeGreaterThanOrEqual(4)
  })
})
