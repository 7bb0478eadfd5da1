/**
 * The group committer's guards, against a real database: revision fencing
 * and request idempotency hold even inside one batch.
 */

import { Effect } from "effect"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { World } from "../../harness/World.ts"
import * as ScheduledPolicy from "../../src/actors/ScheduledPolicy.ts"
import type { Transition } from "../../src/actors/Transition.ts"
import type { ScheduledSubscription } from "../../src/domain/Subscription.ts"
import { defaultSettings } from "../../src/EngineConfig.ts"
import { migrateToLatest } from "../../src/store/Database.ts"
import {
  address,
  type RequestRecord,
  writeBatch,
  writeCreation,
} from "../../src/store/TransitionCommitter.ts"

const by = { channel: "mobile", terminal: null, requestId: null }

const newSubscription = (id: string, templateId: string): Transition<ScheduledSubscription> =>
  ScheduledPolicy.create(
    {
      id,
      clientId: "client-1",
      templateId,
      payee: { providerId: "isp-1", account: "a-1", source: "card-1" },
      terms: {
        amount: { value: 1000, currency: "RUB" },
        schedule: {
          every: "month",
          interval: 1,
          time: "09:00",
          timezone: "Europe/Moscow",
          startDate: "2027-01-01",
        },
      },
      by,
      createdAt: Date.parse("2026-12-01T00:00:00Z"),
    },
    0,
    defaultSettings,
  )

const paused = (transition: Transition<ScheduledSubscription>) => {
  const decided = ScheduledPolicy.decide(transition.subscription, { _tag: "Pause", by }, 0, defaultSettings)
  if (decided._tag === "Failure") throw new Error("pause refused")
  return decided.success
}

const request = (requestId: string, reply: string): RequestRecord => ({
  channel: "mobile",
  requestId,
  clientId: "client-1",
  operation: "subscription.pause",
  requestHash: reply,
  reply,
})

describe("group commit", () => {
  let world: World
  beforeEach(async () => {
    world = await World.create()
    await Effect.runPromise(migrateToLatest(world.db))
    await world.db
      .insertInto("templates")
      .values({
        id: "00000000-0000-4000-8000-000000000001",
        client_id: "client-1",
        name: "t",
        provider_id: "isp-1",
        account: "a-1",
        source: "card-1",
        fields: "{}",
        created_channel: "mobile",
      })
      .execute()
  })
  afterEach(async () => {
    await world.dispose()
  })

  const create = async (id: string) => {
    const transition = newSubscription(id, "00000000-0000-4000-8000-000000000001")
    await world.db
      .transaction()
      .execute((trx) => writeCreation(trx, { transition, template: null, request: null }, world.topology))
    return transition
  }

  it("lets only the first of two requests with one id change anything, even in one batch", async () => {
    const a = await create("00000000-0000-4000-8000-00000000000a")
    const b = await create("00000000-0000-4000-8000-00000000000b")
    const { outcomes } = await world.db.transaction().execute((trx) =>
      writeBatch(
        trx,
        [
          {
            transition: paused(a),
            expectedRevision: 1,
            termsChanged: false,
            request: request("same-id", "reply-a"),
            inbox: null,
          },
          {
            transition: paused(b),
            expectedRevision: 1,
            termsChanged: false,
            request: request("same-id", "reply-b"),
            inbox: null,
          },
        ],
        world.topology,
      ),
    )
    expect(outcomes.map((outcome) => outcome._tag)).toEqual(["Committed", "Stale"])
    const rows = await world.db
      .selectFrom("subscriptions")
      .select(["id", "status", "revision"])
      .orderBy("id")
      .execute()
    expect(rows).toEqual([
      { id: a.subscription.id, status: "paused", revision: 2 },
      { id: b.subscription.id, status: "active", revision: 1 },
    ])
    const stored = await world.db.selectFrom("requests").select(["request_id", "reply"]).execute()
    expect(stored).toEqual([{ request_id: "same-id", reply: "reply-a" }])
  })

  it("writes one outbox row per batch, holding every transition's messages in order", async () => {
    const a = await create("00000000-0000-4000-8000-00000000000a")
    const b = await create("00000000-0000-4000-8000-00000000000b")
    const before = (await world.db.selectFrom("outbox").select("id").execute()).map((row) => row.id)
    const transitions = [paused(a), paused(b)]
    const { outbox } = await world.db.transaction().execute((trx) =>
      writeBatch(
        trx,
        transitions.map((transition) => ({
          transition,
          expectedRevision: 1,
          termsChanged: false,
          request: null,
          inbox: null,
        })),
        world.topology,
      ),
    )
    const expected = transitions.flatMap((transition) =>
      transition.outgoing.map((outgoing) => address(outgoing, world.topology).msgId),
    )
    expect(expected).toHaveLength(2)
    expect(outbox).toHaveLength(1)
    expect(outbox[0]?.messages.map((message) => message.msgId)).toEqual(expected)
    const rows = await world.db
      .selectFrom("outbox")
      .select(["id", "messages", "message_count"])
      .where("id", "not in", before)
      .execute()
    expect(rows).toHaveLength(1)
    expect(rows[0]?.message_count).toBe(expected.length)
    const stored = JSON.parse(rows[0]?.messages ?? "[]") as Array<{ msgId: string }>
    expect(stored.map((message) => message.msgId)).toEqual(expected)
  })

  it("writes nothing for a transition computed from a stale revision, and frees its request id", async () => {
    const a = await create("00000000-0000-4000-8000-00000000000a")
    const { outcomes } = await world.db.transaction().execute((trx) =>
      writeBatch(
        trx,
        [
          {
            transition: paused(a),
            expectedRevision: 7,
            termsChanged: false,
            request: request("late", "reply"),
            inbox: null,
          },
        ],
        world.topology,
      ),
    )
    expect(outcomes).toEqual([{ _tag: "Stale" }])
    const row = await world.db
      .selectFrom("subscriptions")
      .select(["status", "revision"])
      .executeTakeFirstOrThrow()
    expect(row).toEqual({ status: "active", revision: 1 })
    expect(await world.db.selectFrom("requests").selectAll().execute()).toEqual([])
    expect(await world.db.selectFrom("decisions").select("outcome").execute()).toEqual([
      { outcome: "created" },
    ])
    expect(await world.db.selectFrom("outbox").select("id").execute()).toHaveLength(1)
  })
})
