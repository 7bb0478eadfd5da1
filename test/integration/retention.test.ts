/**
 * Retention of the request log and the inbox: rows older than their retention are deleted by the
 * engine's background pruner, in small batches, and newer ones stay, so a request repeated within
 * the window is still answered with its first reply. Two instances pruning at once never wait on
 * each other: a batch skips rows another transaction holds.
 */

import { Effect, Redacted } from "effect"
import { sql } from "kysely"
import pg from "pg"
import { afterEach, describe, expect, it } from "vitest"
import { World } from "../../harness/World.ts"
import { deleteExpiredBatch, inboxTable, pruneExpired, requestLogTable } from "../../src/store/Retention.ts"
import { rowCounts } from "../support/scenarios.ts"

const DAY = 24 * 3_600_000

describe("retention of the request log and the inbox", () => {
  let env: World
  afterEach(async () => {
    await env.dispose()
  })

  /** Inserts request-log rows and inbox rows stamped `age` ago (database wall clock). */
  const insertAged = async (prefix: string, count: number, age: string) => {
    for (let index = 0; index < count; index++) {
      await sql`
        INSERT INTO requests (channel, request_id, client_id, operation, request_hash, reply, created_at)
        VALUES ('mobile', ${`${prefix}-${index}`}, 'client-old', 'template.create', 'hash', '{}',
                now() - ${age}::interval)`.execute(env.db)
      await sql`
        INSERT INTO inbox (consumer, message_id, processed_at)
        VALUES ('hub-results', ${`${prefix}-${index}`}, now() - ${age}::interval)`.execute(env.db)
    }
  }

  const ids = async (table: "requests" | "inbox", prefix: string) => {
    const column = table === "requests" ? "request_id" : "message_id"
    const rows = await sql<{ id: string }>`
      SELECT ${sql.ref(column)} AS id FROM ${sql.table(table)} WHERE ${sql.ref(column)} LIKE ${`${prefix}-%`}
      ORDER BY 1`.execute(env.db)
    return rows.rows.map((row) => row.id)
  }

  it("the engine prunes expired rows in batches, keeps newer ones, and a repeat in the window gets its first reply", async () => {
    env = await World.create()
    await env.startEngine({
      requestLogRetentionMs: DAY,
      inboxRetentionMs: DAY,
      pruneBatchSize: 2,
      prunePauseMs: 1,
      pruneIntervalMs: 50,
    })
    const mobile = env.channel()
    const requestId = "create-once"
    const first = await mobile.request(
      "subscription.create",
      {
        kind: "scheduled",
        template: { name: "Rent", providerId: "landlord", account: "flat-9", source: "card-tok-1" },
        amount: { value: 150_000, currency: "RUB" },
        schedule: { every: "month", dayOfMonth: 1, time: "09:00", startDate: "2027-01-01" },
      },
      { clientId: "client-1", requestId },
    )
    expect(first.status).toBe("ok")
    await insertAged("expired", 5, "2 days")
    await insertAged("recent", 3, "23 hours")

    await env.waitFor("the expired rows to be pruned", async () => {
      const left = [...(await ids("requests", "expired")), ...(await ids("inbox", "expired"))]
      return left.length === 0
    })
    expect(await ids("requests", "recent")).toEqual(["recent-0", "recent-1", "recent-2"])
    expect(await ids("inbox", "recent")).toEqual(["recent-0", "recent-1", "recent-2"])

    const before = await rowCounts(env.db, ["subscriptions", "templates", "requests"])
    const repeated = await mobile.request(
      "subscription.create",
      {
        kind: "scheduled",
        template: { name: "Rent", providerId: "landlord", account: "flat-9", source: "card-tok-1" },
        amount: { value: 150_000, currency: "RUB" },
        schedule: { every: "month", dayOfMonth: 1, time: "09:00", startDate: "2027-01-01" },
      },
      { clientId: "client-1", requestId },
    )
    expect(repeated).toEqual(first)
    expect(await rowCounts(env.db, ["subscriptions", "templates", "requests"])).toEqual(before)
    // Nothing the engine itself stores outside these two tables is touched.
    expect(before.subscriptions).toBe(1)
  })

  it("deletes at most one batch per statement, only expired rows, and skips rows another transaction holds", async () => {
    env = await World.create()
    // Started and stopped once so the schema is migrated; the test drives the pruning itself.
    await (await env.startEngine({ pruneIntervalMs: DAY })).stop()
    await insertAged("expired", 5, "2 days")
    await insertAged("recent", 2, "1 hour")

    const batches: Array<number> = []
    for (;;) {
      const deleted = await deleteExpiredBatch(env.db, requestLogTable, DAY, 2)
      batches.push(deleted)
      if (deleted < 2) break
    }
    expect(batches).toEqual([2, 2, 1])
    expect(await ids("requests", "expired")).toEqual([])
    expect(await ids("requests", "recent")).toEqual(["recent-0", "recent-1"])

    // Another instance holds one expired inbox row: this pruner deletes the rest without waiting on it.
    const other = new pg.Client({ connectionString: Redacted.value(env.settings.databaseUrl) })
    await other.connect()
    try {
      await other.query("BEGIN")
      await other.query("SELECT 1 FROM inbox WHERE message_id = 'expired-0' FOR UPDATE")
      const use = <A>(run: (db: typeof env.db) => Promise<A>) => Effect.promise(() => run(env.db))
      expect(await Effect.runPromise(pruneExpired(use, inboxTable, DAY, 2, 1))).toBe(4)
      expect(await ids("inbox", "expired")).toEqual(["expired-0"])
      await other.query("COMMIT")
      expect(await Effect.runPromise(pruneExpired(use, inboxTable, DAY, 2, 1))).toBe(1)
      expect(await ids("inbox", "expired")).toEqual([])
      expect(await ids("inbox", "recent")).toEqual(["recent-0", "recent-1"])
    } finally {
      await other.end()
    }
  })
})
