/**
 * Messages between instances (`rp.internal.>`) must prove they come from an
 * instance: anything published there without the cluster secret's MAC, with
 * a wrong one, signed too long ago, or seen before changes nothing, gets no
 * answer, and is counted; answers to an instance's own requests are checked
 * the same way. Instances on one database agree on the stored secret with
 * no configuration (the forwarding tests in partitions.test.ts run so).
 */
import { randomBytes } from "node:crypto"
import { createInbox, headers, type Msg, type MsgHdrs, type Subscription } from "@nats-io/transport-node"
import { Effect, Redacted } from "effect"
import { sql } from "kysely"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { type RunningEngine, World } from "../../harness/World.ts"
import { EngineClock } from "../../src/actors/EngineClock.ts"
import { encodeForward, encodeForwardBatch } from "../../src/actors/Forwarding.ts"
import { Partitions } from "../../src/actors/Partitions.ts"
import { SubscriptionActors } from "../../src/actors/SubscriptionActors.ts"
import { engineActor } from "../../src/actors/Transition.ts"
import { ConsoleOperations } from "../../src/console/ConsoleOperations.ts"
import { partitionOf } from "../../src/domain/Partition.ts"
import { Metrics } from "../../src/observability/Metrics.ts"
import { FORWARDED_SUBJECT_HEADER } from "../../src/protocol/ProtocolServer.ts"
import { INTERNAL_MAC_HEADER, secretBytes, signMessage } from "../../src/streams/InternalAuth.ts"
import { createMany } from "../support/scenarios.ts"

const fastLeases = { partitions: 8, leaseTtlMs: 1_500, leaseRenewMs: 100, actorIdleMs: 60_000 }
const encoder = new TextEncoder()

const ownedBy = (engine: RunningEngine) =>
  engine.runtime.runPromise(Effect.map(Partitions, (partitions) => [...partitions.epochs().keys()]))

/** Internal messages `engine` refused, of `kind` (all kinds when omitted). */
const refused = async (engine: RunningEngine, kind?: string): Promise<number> => {
  const metric = await engine.runtime.runPromise(
    Effect.map(Metrics, ({ registry }) => registry.getSingleMetric("rp_internal_messages_rejected_total")),
  )
  if (metric === undefined) return 0
  const { values } = await metric.get()
  return values
    .filter((value) => kind === undefined || value.labels.kind === kind)
    .reduce((sum, value) => sum + value.value, 0)
}

/** The reasons `engine` gave for refusing, e.g. `console/wrong_mac`. */
const refusalReasons = async (engine: RunningEngine): Promise<Set<string>> => {
  const metric = await engine.runtime.runPromise(
    Effect.map(Metrics, ({ registry }) => registry.getSingleMetric("rp_internal_messages_rejected_total")),
  )
  const values = metric === undefined ? [] : (await metric.get()).values
  return new Set(values.filter((v) => v.value > 0).map((v) => `${v.labels.kind}/${v.labels.reason}`))
}

describe("messages between engine instances", () => {
  let env: World
  let answers: Subscription | undefined
  const answered: Array<Msg> = []

  beforeEach(async () => {
    env = await World.create(fastLeases, "internal")
    answered.length = 0
  })
  afterEach(async () => {
    answers?.unsubscribe()
    await env.dispose()
  })

  /** One instance owning every partition, with one active subscription. */
  const oneInstanceWithASubscription = async () => {
    const engine = await env.startEngine({ instanceId: "instance-a" })
    await env.waitFor(
      "every partition owned",
      async () => (await ownedBy(engine)).length === fastLeases.partitions,
    )
    const [target] = await createMany(env.channel(), 1)
    if (target === undefined) throw new Error("no subscription created")
    return { engine, target }
  }

  /** Publishes as a stranger would, asking for an answer on an inbox this test watches. */
  const publishAsStranger = (subject: string, payload: Uint8Array, carried?: MsgHdrs) => {
    if (answers === undefined) {
      const inbox = createInbox()
      answers = env.connection.subscribe(inbox, {
        callback: (_, message) => {
          answered.push(message)
        },
      })
      strangerInbox = inbox
    }
    env.connection.publish(subject, payload, {
      reply: strangerInbox,
      ...(carried === undefined ? {} : { headers: carried }),
    })
  }
  let strangerInbox = ""

  const statusOf = async (subscriptionId: string) =>
    (
      await env.db
        .selectFrom("subscriptions")
        .select("status")
        .where("id", "=", subscriptionId)
        .executeTakeFirstOrThrow()
    ).status

  const decisionsOf = async (subscriptionId: string) =>
    (
      await env.db
        .selectFrom("decisions")
        .select("outcome")
        .where("subscription_id", "=", subscriptionId)
        .execute()
    ).map((row) => row.outcome)

  const auditRows = async () =>
    Number(
      (
        await env.db
          .selectFrom("audit_log")
          .select((eb) => eb.fn.countAll<string>().as("count"))
          .executeTakeFirstOrThrow()
      ).count,
    )

  /** The secret the instances on this database share (stored by the first to start; here too, if none did). */
  const storedSecret = async () => {
    const made = randomBytes(32).toString("base64")
    await sql`INSERT INTO cluster_secret (id, secret) VALUES (1, ${made}) ON CONFLICT (id) DO NOTHING`.execute(
      env.db,
    )
    const row = await env.db
      .selectFrom("cluster_secret")
      .select("secret")
      .where("id", "=", 1)
      .executeTakeFirstOrThrow()
    return secretBytes(row.secret)
  }

  /** An operator's change as one instance sends it to another on `rp.internal.partition.<p>.console`. */
  const consoleChange = (name: string, target: { subscriptionId: string; clientId: string }) =>
    encoder.encode(
      JSON.stringify({
        name,
        body: { subscriptionId: target.subscriptionId },
        who: { login: "mallory", clientId: target.clientId, requestId: `forged-${name}`, reason: "forged" },
      }),
    )

  /**
   * Sends `messages` one after another and waits until the engine has refused each (or, without the check,
   * until the subscription's status moved), then asserts that nothing changed and nothing was answered.
   */
  const expectIgnored = async (
    engine: RunningEngine,
    target: { subscriptionId: string },
    kind: string,
    messages: ReadonlyArray<{ subject: string; payload: Uint8Array; headers?: MsgHdrs }>,
  ) => {
    const [decisionsBefore, auditBefore, refusedBefore] = [
      await decisionsOf(target.subscriptionId),
      await auditRows(),
      await refused(engine, kind),
    ]
    for (const [index, message] of messages.entries()) {
      publishAsStranger(message.subject, message.payload, message.headers)
      await env.waitFor(
        `message ${index + 1} to be refused`,
        async () =>
          (await refused(engine, kind)) >= refusedBefore + index + 1 ||
          (await statusOf(target.subscriptionId)) !== "active",
      )
    }
    expect(await statusOf(target.subscriptionId)).toBe("active")
    expect(await decisionsOf(target.subscriptionId)).toEqual(decisionsBefore)
    expect(await auditRows()).toBe(auditBefore)
    expect(answered.map((answer) => answer.string())).toEqual([])
  }

  it("ignores plain JSON on a partition's console subject: no pause, no cancel, no audit, no answer", async () => {
    const { engine, target } = await oneInstanceWithASubscription()
    const subject = env.topology.subjects.partitionConsole(
      partitionOf(target.subscriptionId, fastLeases.partitions),
    )
    await expectIgnored(engine, target, "console", [
      { subject, payload: consoleChange("subscription.pause", target) },
      { subject, payload: consoleChange("subscription.cancel", target) },
    ])
    expect(await refusalReasons(engine)).toEqual(new Set(["console/unsigned"]))
  })

  it("ignores a console change signed with another secret", async () => {
    const { engine, target } = await oneInstanceWithASubscription()
    const subject = env.topology.subjects.partitionConsole(
      partitionOf(target.subscriptionId, fastLeases.partitions),
    )
    const wrongSecret = encoder.encode("not the cluster secret, though just as long as one")
    const signed = (name: string) => {
      const payload = consoleChange(name, target)
      return { subject, payload, headers: signMessage(wrongSecret, subject, payload) }
    }
    await expectIgnored(engine, target, "console", [
      signed("subscription.pause"),
      signed("subscription.cancel"),
    ])
    expect(await refusalReasons(engine)).toEqual(new Set(["console/wrong_mac"]))
  })

  it("ignores a correctly signed console change replayed after the freshness window", async () => {
    const { engine, target } = await oneInstanceWithASubscription()
    const secret = await storedSecret()
    const subject = env.topology.subjects.partitionConsole(
      partitionOf(target.subscriptionId, fastLeases.partitions),
    )
    const captured = (name: string) => {
      const payload = consoleChange(name, target)
      return {
        subject,
        payload,
        headers: signMessage(secret, subject, payload, headers(), Date.now() - 60_000),
      }
    }
    await expectIgnored(engine, target, "console", [
      captured("subscription.pause"),
      captured("subscription.cancel"),
    ])
    expect(await refusalReasons(engine)).toEqual(new Set(["console/stale"]))
  })

  it("applies a forwarded message signed with the cluster secret once, and refuses the same message again", async () => {
    const { engine, target } = await oneInstanceWithASubscription()
    const secret = await storedSecret()
    const subject = env.topology.subjects.partitionInbox(
      partitionOf(target.subscriptionId, fastLeases.partitions),
    )
    const batch = (tag: "Pause" | "Resume") =>
      encodeForwardBatch([
        encodeForward({ id: target.subscriptionId, input: { _tag: tag, by: engineActor } }),
      ])

    // The secret is all it takes: a message signed with it is applied and answered (signed too).
    const pause = { payload: batch("Pause"), headers: signMessage(secret, subject, batch("Pause")) }
    const answer = await env.connection.request(subject, pause.payload, {
      headers: pause.headers,
      timeout: 5_000,
    })
    expect(answer.json()).toEqual([{ _tag: "Handled" }])
    expect(answer.headers?.get(INTERNAL_MAC_HEADER)).toMatch(/^v1\./)
    expect(await statusOf(target.subscriptionId)).toBe("paused")
    const resume = batch("Resume")
    await env.connection.request(subject, resume, {
      headers: signMessage(secret, subject, resume),
      timeout: 5_000,
    })
    expect(await statusOf(target.subscriptionId)).toBe("active")

    // The pause captured off the wire, sent again within the window.
    await expectIgnored(engine, target, "forward", [{ subject, ...pause }])
    expect(await refusalReasons(engine)).toEqual(new Set(["forward/replayed"]))
  })

  it("ignores unsigned forwarded messages and channel requests on a partition's subjects", async () => {
    const { engine, target } = await oneInstanceWithASubscription()
    const partition = partitionOf(target.subscriptionId, fastLeases.partitions)
    await expectIgnored(engine, target, "forward", [
      {
        subject: env.topology.subjects.partitionInbox(partition),
        payload: encodeForwardBatch([
          encodeForward({ id: target.subscriptionId, input: { _tag: "Cancel", by: engineActor } }),
        ]),
      },
    ])
    const forwardedHeaders = headers()
    forwardedHeaders.set(FORWARDED_SUBJECT_HEADER, `${env.settings.naming.rpPrefix}.v3.mobile`)
    await expectIgnored(engine, target, "request", [
      {
        subject: env.topology.subjects.partitionRequests(partition),
        headers: forwardedHeaders,
        payload: encoder.encode(
          JSON.stringify({
            v: 3,
            requestId: "forged-cancel-1",
            channel: "mobile",
            terminal: "mobile-terminal-1",
            clientId: target.clientId,
            sentAt: new Date().toISOString(),
            operation: "subscription.cancel",
            body: { subscriptionId: target.subscriptionId },
          }),
        ),
      },
    ])
    expect(await refusalReasons(engine)).toEqual(new Set(["forward/unsigned", "request/unsigned"]))
  })

  it("moves engine time on a signed announcement only", async () => {
    const engine = await env.startEngine({ instanceId: "instance-a" })
    const engineTime = () => engine.runtime.runPromise(Effect.flatMap(EngineClock, (clock) => clock.now))
    const before = await engineTime()
    env.connection.publish(env.topology.subjects.clockAdvanced, "2099-01-01T00:00:00Z")
    await env.waitFor(
      "the announcement to be refused",
      async () => (await refused(engine, "clock")) === 1 || (await engineTime()) !== before,
    )
    expect(await engineTime()).toBe(before)
    expect(await refusalReasons(engine)).toEqual(new Set(["clock/unsigned"]))
    // Another instance's announcement, signed, is taken.
    const announced = "2099-01-01T00:00:00Z"
    const from = headers()
    from.set("Rp-Instance", "instance-b")
    env.connection.publish(env.topology.subjects.clockAdvanced, announced, {
      headers: signMessage(await storedSecret(), env.topology.subjects.clockAdvanced, announced, from),
    })
    await env.waitFor(
      "the signed announcement to be taken",
      async () => (await engineTime()) === Date.parse(announced),
    )
  })

  it("takes the owner's answer to a console change, not a stranger's forged one", async () => {
    const first = await env.startEngine({ instanceId: "instance-a" })
    const second = await env.startEngine({ instanceId: "instance-b" })
    await env.waitFor("the partitions to be shared out", async () => {
      const [a, b] = [await ownedBy(first), await ownedBy(second)]
      return a.length > 0 && b.length > 0 && a.length + b.length === fastLeases.partitions
    })
    const owned = new Set(await ownedBy(second))
    const target = (await createMany(env.channel(), 30)).find((s) =>
      owned.has(partitionOf(s.subscriptionId, fastLeases.partitions)),
    )
    if (target === undefined) throw new Error("no subscription in the second instance's partitions")

    // A stranger listening on every partition's console subject answers first, claiming success.
    const forger = env.connection.subscribe(env.topology.subjects.partitionConsoleAll, {
      callback: (_, message) => {
        message.respond(JSON.stringify({ _tag: "Ok", result: { forged: true } }))
      },
    })
    await env.connection.flush()
    try {
      const outcome = await first.runtime.runPromise(
        Effect.flatMap(ConsoleOperations, (console) =>
          console.run(
            "subscription.pause",
            { subscriptionId: target.subscriptionId },
            {
              login: "anna",
              clientId: target.clientId,
              requestId: "console-pause-1",
              reason: "client called",
            },
          ),
        ),
      )
      expect(outcome).toMatchObject({ _tag: "Ok", result: { subscription: { status: "paused" } } })
      expect(await statusOf(target.subscriptionId)).toBe("paused")
      // Whichever came first, the forged answer was checked and refused.
      await env.waitFor("the forged answer to be refused", async () => (await refused(first, "reply")) === 1)
      expect(await refusalReasons(first)).toEqual(new Set(["reply/unsigned"]))
    } finally {
      forger.unsubscribe()
    }
  })

  it("uses RP_CLUSTER_SECRET when set: nothing stored, and an instance with another secret is refused but still safe", async () => {
    const clusterSecret = Redacted.make("Y2x1c3RlciBzZWNyZXQgZm9yIHRoZSB0ZXN0IG9ubHk=")
    const first = await env.startEngine({ instanceId: "instance-a", clusterSecret })
    const second = await env.startEngine({ instanceId: "instance-b", clusterSecret })
    await env.waitFor("the partitions to be shared out", async () => {
      const [a, b] = [await ownedBy(first), await ownedBy(second)]
      return a.length > 0 && b.length > 0 && a.length + b.length === fastLeases.partitions
    })
    const created = await createMany(env.channel(), 30)
    const partitionOfSubscription = (s: { subscriptionId: string }) =>
      partitionOf(s.subscriptionId, fastLeases.partitions)
    const ownedBySecond = new Set(await ownedBy(second))
    const target = created.find((s) => ownedBySecond.has(partitionOfSubscription(s)))
    if (target === undefined) throw new Error("no subscription of the second instance")
    const pause = (
      engine: RunningEngine,
      subscription: { subscriptionId: string; clientId: string },
      id: string,
    ) =>
      engine.runtime.runPromise(
        Effect.flatMap(ConsoleOperations, (console) =>
          console.run(
            "subscription.pause",
            { subscriptionId: subscription.subscriptionId },
            { login: "anna", clientId: subscription.clientId, requestId: id, reason: "client called" },
          ),
        ),
      )
    const liveOn = (engine: RunningEngine) =>
      engine.runtime.runPromise(Effect.flatMap(SubscriptionActors, (actors) => actors.live))

    // Same secret: the owner runs the change.
    const ownerBefore = await liveOn(second)
    expect(await pause(first, target, "console-pause-1")).toMatchObject({ _tag: "Ok" })
    expect(await liveOn(second)).toBe(ownerBefore + 1)
    expect(await env.db.selectFrom("cluster_secret").selectAll().execute()).toEqual([])

    // An instance with another secret: the owner refuses its change, which then runs where it was made.
    const stranger = await env.startEngine({
      instanceId: "instance-c",
      clusterSecret: Redacted.make("c29tZSBvdGhlciBzZWNyZXQgb2YgZW5vdWdoIGxlbmd0aA=="),
    })
    const ownedByStranger = new Set(await ownedBy(stranger))
    const another = created.find((s) => s !== target && !ownedByStranger.has(partitionOfSubscription(s)))
    if (another === undefined) throw new Error("every subscription is the third instance's")
    expect(await pause(stranger, another, "console-pause-2")).toMatchObject({
      _tag: "Ok",
      result: { subscription: { status: "paused" } },
    })
    // Every other instance listens on the console subjects, and each refused it.
    expect(await refusalReasons(first)).toContain("console/wrong_mac")
    expect(await refusalReasons(second)).toContain("console/wrong_mac")
  })
})
