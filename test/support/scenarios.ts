/**
 * Building blocks shared by integration tests: creating autopayments through
 * the protocol as a channel would, and reading back what the engine did.
 */

import { sql } from "kysely"
import type { FakeChannel } from "../../fakes/FakeChannel.ts"
import type { World } from "../../harness/World.ts"
import type { PaymentCommand } from "../../src/streams/Messages.ts"

/** The public subscription fields tests look at. */
export interface SubscriptionResult {
  readonly subscriptionId: string
  readonly clientId: string
  readonly status: string
  readonly statusReason: string | null
  readonly version: number
  readonly paymentsMade: number
  readonly failedInARow: number
  readonly skippedOccurrences: ReadonlyArray<string>
  readonly nextOccurrence: { readonly date: string; readonly dueAt: string } | null
  readonly amount: { readonly value: number; readonly currency: string }
}

/** A monthly schedule on the 1st at 09:00 Moscow (06:00Z), from 2027-01-01. */
export const monthlyOnFirst = {
  every: "month",
  dayOfMonth: 1,
  time: "09:00",
  timezone: "Europe/Moscow",
  startDate: "2027-01-01",
} as const

/** Creates a scheduled autopayment with an inline template; returns the subscription. */
export const createScheduled = async (
  channel: FakeChannel,
  clientId: string,
  overrides: Record<string, unknown> = {},
  account = "contract-123",
): Promise<SubscriptionResult> => {
  const { subscription } = await channel.ok<{ subscription: SubscriptionResult }>(
    "subscription.create",
    {
      kind: "scheduled",
      template: { name: "Home internet", providerId: "isp-1", account, source: "card-tok-1" },
      amount: { value: 150000, currency: "RUB" },
      schedule: monthlyOnFirst,
      ...overrides,
    },
    { clientId },
  )
  return subscription
}

/** Creates `count` subscriptions for distinct clients, a few requests at a time. */
export const createMany = async (channel: FakeChannel, count: number): Promise<Array<SubscriptionResult>> => {
  const created: Array<SubscriptionResult> = []
  for (let start = 0; start < count; start += 50) {
    const batch = Array.from({ length: Math.min(50, count - start) }, (_, offset) =>
      createScheduled(channel, `client-${start + offset}`, {}, `acc-${start + offset}`),
    )
    created.push(...(await Promise.all(batch)))
  }
  return created
}

/** Reads a subscription through the protocol. */
export const getSubscription = async (
  channel: FakeChannel,
  clientId: string,
  subscriptionId: string,
): Promise<SubscriptionResult> =>
  (
    await channel.ok<{ subscription: SubscriptionResult }>(
      "subscription.get",
      { subscriptionId },
      { clientId },
    )
  ).subscription

/** Payment commands stored in the HUB_PAYMENTS stream, grouped by (subscription, occurrence, attempt). */
export const commandsInStream = async (env: World) => {
  const messages = await env.messages(env.topology.streams.hubPayments, env.topology.subjects.hubCommand)
  return messages.map((message) => message.json as PaymentCommand)
}

/** Counts of values, for "exactly once" checks. */
export const countBy = <T>(items: ReadonlyArray<T>, key: (item: T) => string): Map<string, number> => {
  const counts = new Map<string, number>()
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1)
  return counts
}

/** The tables a protocol request can write to (the outbox drains on its own, so it is left out). */
const requestTables = ["templates", "subscriptions", "requests", "decisions", "payments"] as const

type CountedTable = (typeof requestTables)[number] | "outbox"

/** Row counts per table, to show that a refused request wrote nothing. */
export const rowCounts = async <T extends CountedTable = (typeof requestTables)[number]>(
  db: World["db"],
  tables: ReadonlyArray<T> = requestTables as unknown as ReadonlyArray<T>,
): Promise<Record<T, number>> => {
  const counts = {} as Record<T, number>
  for (const table of tables) {
    const result = await sql<{ count: string }>`SELECT count(*) AS count FROM ${sql.table(table)}`.execute(db)
    counts[table] = Number(result.rows[0]?.count)
  }
  return counts
}
