/**
 * Several instances: partitions are shared out by leases, each instance
 * sweeps and runs only its own, messages for another's partition are
 * forwarded to it, leaving hands partitions over at once, and even two
 * instances that both run the same partition pay each occurrence once.
 */
import { Effect } from "effect"
import { sql } from "kysely"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { type RunningEngine, World } from "../../harness/World.ts"
import { Partitions } from "../../src/actors/Partitions.ts"
import { SubscriptionActors } from "../../src/actors/SubscriptionActors.ts"
import { engineActor } from "../../src/actors/Transition.ts"
import { ConsoleOperations } from "../../src/console/ConsoleOperations.ts"
import { newId } from "../../src/domain/Ids.ts"
import { partitionOf } from "../../src/domain/Partition.ts"
import { ProtocolHandler } from "../../src/protocol/ProtocolServer.ts"
import { partitionSql } from "../../src/store/LeaseStore.ts"
import { secretBytes, signMessage } from "../../src/streams/InternalAuth.ts"
import { commandsInStream, countBy, createMany } from "../support/scenarios.ts"

// Short leases so handovers happen within a test; actors stay live long enough to be counted.
const fastLeases = { partitions: 8, leaseTtlMs: 1_500, leaseRenewMs: 100, actorIdleMs: 60_000 }

const ownedBy = (engine: RunningEngine) =>
  engine.runtime.runPromise(Effect.map(Partitions, (partitions) => [...partitions.epochs().keys()]))

const liveOn = (engine: RunningEngine) =>
  engine.runtime.runPromise(Effect.flatMap(SubscriptionActors, (actors) => actors.live))

describe("several engine instances", () => {
  let env: World
  beforeEach(async () => {
    env = await World.create(fastLeases, "partitions")
  })
  afterEach(async () => {
    await env.dispose()
  })

  const twoInstances = async () => {
    const first = await env.startEngine({ instanceId: "instance-a" })
    const second = await env.startEngine({ instanceId: "instance-b" })
    await env.waitFor("the partitions to be shared out", async () => {
      const [a, b] = [await ownedBy(first), await ownedBy(second)]
      return a.length > 0 && b.length > 0 && a.length + b.length === fastLeases.partitions
    })
    return { first, second }
  }

  /** Creates a few subscriptions and returns one in `engine`'s partitions. */
  const subscriptionOwnedBy = async (engine: RunningEngine) => {
    const created = await createMany(env.channel(), 30)
    const owned = new Set(await ownedBy(engine))
    const target = created.find((s) => owned.has(partitionOf(s.subscriptionId, fastLeases.partitions)))
    if (target === undefined) throw new Error("no subscription in the instance's partitions")
    return target
  }

  const everyPaymentSucceeded = (count: number) =>
    env.waitFor("every payment to succeed", async () => {
      const row = await env.db
        .selectFrom("payments")
        .select((eb) => eb.fn.countAll<string>().as("count"))
        .where("status", "=", "succeeded")
        .executeTakeFirstOrThrow()
      return Number(row.count) === count
    })

  it("computes a subscription's partition the same way in TypeScript and in Postgres", async () => {
    const ids = Array.from({ length: 200 }, newId)
    const rows = await sql<{ id: string; partition: number }>`
      SELECT id::text AS id, ${partitionSql(fastLeases.partitions)} AS partition
      FROM unnest(${ids}::uuid[]) AS id`.execute(env.db)
    for (const row of rows.rows) expect(row.partition).toBe(partitionOf(row.id, fastLeases.partitions))
    // Spread: every partition gets some of 200 random ids.
    expect(new Set(rows.rows.map((row) => row.partition)).size).toBe(fastLeases.partitions)
  })

  it("shares the partitions out between two instances, each with its own lease", async () => {
    const { first, second } = await twoInstances()
    const [a, b] = [await ownedBy(first), await ownedBy(second)]
    expect(new Set([...a, ...b]).size).toBe(fastLeases.partitions)
    const leases = await env.db.selectFrom("partition_leases").selectAll().orderBy("partition").execute()
    for (const lease of leases) {
      expect(lease.owner).toBe(a.includes(lease.partition) ? "instance-a" : "instance-b")
      expect(lease.expires_at.getTime()).toBeGreaterThan(Date.now())
    }
  })

  it("pays a month-start burst once per subscription, each instance sweeping its own partitions", async () => {
    const { first, second } = await twoInstances()
    const hub = await env.startHub()
    const created = await createMany(env.channel(), 120)
    const [a, b] = [new Set(await ownedBy(first)), new Set(await ownedBy(second))]
    // Each instance creates subscriptions in partitions it owns, and both got requests (queue group).
    const partitionsCreated = created.map((s) => partitionOf(s.subscriptionId, fastLeases.partitions))
    expect(partitionsCreated.some((p) => a.has(p))).toBe(true)
    expect(partitionsCreated.some((p) => b.has(p))).toBe(true)

    await env.tick("2027-01-01T06:00:00Z")
    await hub.waitForCommands(120)
    await everyPaymentSucceeded(120)
    await env.settled()
    const commands = await commandsInStream(env)
    expect(commands).toHaveLength(120)
    expect(
      [...countBy(commands, (c) => `${c.subscriptionId}/${c.occurrence}`).values()].every((n) => n === 1),
    ).toBe(true)
  })

  it("forwards a message for another instance's partition to its owner, whose actor handles it", async () => {
    const { first, second } = await twoInstances()
    const target = await subscriptionOwnedBy(second)

    // The first instance is asked to pause it on the engine's behalf (no protocol request to keep local).
    const outcome = await first.runtime.runPromise(
      Effect.flatMap(SubscriptionActors, (actors) =>
        actors.send(target.subscriptionId, {
          _tag: "Pause",
          by: engineActor,
        }),
      ),
    )
    expect(outcome._tag).toBe("Forwarded")
    const row = await env.db
      .selectFrom("subscriptions")
      .select("status")
      .where("id", "=", target.subscriptionId)
      .executeTakeFirstOrThrow()
    expect(row.status).toBe("paused")
    // The owner's actor did it.
    expect(await liveOn(second)).toBeGreaterThan(0)
  })

  it("sends a channel's change to a subscription in another instance's partition to that instance", async () => {
    const { first, second } = await twoInstances()
    const target = await subscriptionOwnedBy(second)
    const [firstBefore, secondBefore] = [await liveOn(first), await liveOn(second)]

    // The request reaches the first instance (handed to its handler directly, as its NATS server would).
    const envelope = {
      v: 3,
      requestId: "pause-forwarded-1",
      channel: "mobile",
      terminal: "mobile-terminal-1",
      clientId: target.clientId,
      sentAt: new Date().toISOString(),
      operation: "subscription.pause",
      body: { subscriptionId: target.subscriptionId },
    }
    const reply = await first.runtime.runPromise(
      Effect.flatMap(ProtocolHandler, ({ handle }) =>
        handle(
          new TextEncoder().encode(JSON.stringify(envelope)),
          `${env.settings.naming.rpPrefix}.v3.mobile`,
        ),
      ),
    )
    expect(JSON.parse(reply), reply).toMatchObject({
      status: "ok",
      result: { subscription: { status: "paused" } },
    })
    // The owner's actor made the change; the first instance started none (actors stay live for a minute here).
    expect(await liveOn(second)).toBe(secondBefore + 1)
    expect(await liveOn(first)).toBe(firstBefore)
  })

  it("runs an operator's console change on the instance that owns the subscription", async () => {
    const { first, second } = await twoInstances()
    const target = await subscriptionOwnedBy(second)
    const [firstBefore, secondBefore] = [await liveOn(first), await liveOn(second)]

    const outcome = await first.runtime.runPromise(
      Effect.flatMap(ConsoleOperations, (console) =>
        console.run(
          "subscription.pause",
          { subscriptionId: target.subscriptionId },
          { login: "anna", clientId: target.clientId, requestId: "console-pause-1", reason: "client called" },
        ),
      ),
    )
    expect(outcome).toMatchObject({ _tag: "Ok", result: { subscription: { status: "paused" } } })
    expect(await liveOn(second)).toBe(secondBefore + 1)
    expect(await liveOn(first)).toBe(firstBefore)
    const decision = await env.db
      .selectFrom("decisions")
      .select(["operator", "operator_reason"])
      .where("subscription_id", "=", target.subscriptionId)
      .where("operator", "is not", null)
      .executeTakeFirstOrThrow()
    expect(decision).toEqual({ operator: "anna", operator_reason: "client called" })
  })

  it("hands every partition to the remaining instance at once when one stops", async () => {
    const { first, second } = await twoInstances()
    const released = await ownedBy(second)
    const stoppedAt = Date.now()
    await second.stop()
    env.engines.splice(env.engines.indexOf(second), 1)
    await env.waitFor("the first instance to own every partition", async () => {
      return (await ownedBy(first)).length === fastLeases.partitions
    })
    // Released, not expired: taken well within one lease period.
    expect(Date.now() - stoppedAt).toBeLessThan(fastLeases.leaseTtlMs)
    const leases = await env.db
      .selectFrom("partition_leases")
      .select(["partition", "owner", "epoch"])
      .where("partition", "in", released)
      .execute()
    for (const lease of leases) {
      expect(lease.owner).toBe("instance-a")
      expect(Number(lease.epoch)).toBeGreaterThanOrEqual(2)
    }
  })

  it("pays a burst once when a second instance joins while its payments await their results", async () => {
    const due = 200
    const first = await env.startEngine({ instanceId: "instance-a" })
    // The hub takes every command and answers none yet: the burst's attempts are all open.
    const hub = await env.startHub({ decide: () => "silent" })
    await createMany(env.channel(), due)
    await env.tick("2027-01-01T06:00:00Z")
    const commands = await hub.waitForCommands(due)

    const second = await env.startEngine({ instanceId: "instance-b" })
    await env.waitFor("the second instance to take its share", async () => (await ownedBy(second)).length > 0)
    // Now the results arrive, each at whichever instance pulls it, for subscriptions of either.
    for (const command of commands) {
      await hub.publishResult({
        paymentId: command.paymentId,
        status: "succeeded",
        retryable: false,
        at: "2027-01-01T06:00:05Z",
      })
    }
    await everyPaymentSucceeded(due)
    await env.settled()
    const stored = await commandsInStream(env)
    expect(stored).toHaveLength(due)
    const paid = await env.db
      .selectFrom("subscriptions")
      .select((eb) => eb.fn.sum<string>(sql`(state->>'paid')::int`).as("paid"))
      .executeTakeFirstOrThrow()
    expect(Number(paid.paid)).toBe(due)
    expect((await ownedBy(first)).length + (await ownedBy(second)).length).toBe(fastLeases.partitions)
  })

  it("still pays once when two instances both run the same partitions (a lease is not what keeps money safe)", async () => {
    const { first, second } = await twoInstances()
    const hub = await env.startHub()
    await createMany(env.channel(), 60)
    // Make both believe they own everything, as a process paused past its lease would for a moment.
    for (const engine of [first, second]) {
      await engine.runtime.runPromise(
        Effect.map(Partitions, (partitions) =>
          partitions.grant(
            Array.from({ length: fastLeases.partitions }, (_, partition) => ({ partition, epoch: 0 })),
          ),
        ),
      )
    }
    await env.tick("2027-01-01T06:00:00Z")
    await hub.waitForCommands(60)
    await env.settled()
    const commands = await commandsInStream(env)
    expect(commands).toHaveLength(60)
    expect(new Set(commands.map((c) => `${c.subscriptionId}/${c.occurrence}`)).size).toBe(60)
    const payments = await env.db.selectFrom("payments").select("payment_id").execute()
    expect(payments).toHaveLength(60)
  })

  it("drops a partition whose lease another holder took, and takes it back once that lease runs out", async () => {
    const engine = await env.startEngine({ instanceId: "instance-a" })
    await env.waitFor(
      "every partition owned",
      async () => (await ownedBy(engine)).length === fastLeases.partitions,
    )
    // Another holder (one that sends no heartbeat, say a paused process of an old deployment) has partition 3.
    await sql`UPDATE partition_leases SET owner = 'intruder', epoch = epoch + 1, expires_at = now() + interval '2 seconds'
              WHERE partition = 3`.execute(env.db)
    await env.waitFor("the partition to be dropped", async () => !(await ownedBy(engine)).includes(3))
    // While the intruder's lease lasts the engine cannot take it back; once it runs out, it does, at a new epoch.
    await env.waitFor(
      "the partition to be taken back",
      async () => (await ownedBy(engine)).includes(3),
      10_000,
    )
    const lease = await env.db
      .selectFrom("partition_leases")
      .select(["owner", "epoch"])
      .where("partition", "=", 3)
      .executeTakeFirstOrThrow()
    expect(lease.owner).toBe("instance-a")
    const epochs = await engine.runtime.runPromise(
      Effect.map(Partitions, (partitions) => partitions.epochs()),
    )
    expect(epochs.get(3)).toBe(Number(lease.epoch))
    expect(Number(lease.epoch)).toBeGreaterThanOrEqual(3)
  })

  it("answers garbage an instance signed on a partition's internal subject with a failure and keeps serving", async () => {
    await env.startEngine({ instanceId: "instance-a" })
    await env.waitFor("partition 0 owned", async () =>
      (await ownedBy(env.engines[0] as RunningEngine)).includes(0),
    )
    const subject = env.topology.subjects.partitionInbox(0)
    const { secret } = await env.db
      .selectFrom("cluster_secret")
      .select("secret")
      .where("id", "=", 1)
      .executeTakeFirstOrThrow()
    for (const garbage of ["not json", "{}", '[{"id":"x","input":{"_tag":"Nope"}}]']) {
      const answer = await env.connection.request(subject, garbage, {
        timeout: 5_000,
        headers: signMessage(secretBytes(secret), subject, garbage),
      })
      expect(answer.json()).toEqual([{ _tag: "Failed", message: "unreadable forwarded batch" }])
    }
    const created = await createMany(env.channel(), 1)
    expect(created).toHaveLength(1)
  })

  it("refuses to start with a partition count other than the database's layout", async () => {
    await env.startEngine({ instanceId: "instance-a" })
    await expect(env.startEngine({ instanceId: "instance-c", partitions: 32 })).rejects.toThrow(
      /RP_PARTITIONS is 32 but the database was laid out with 8 partitions/,
    )
  })
})
