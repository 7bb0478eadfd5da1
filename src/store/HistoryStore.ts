/**
 * A subscription's history: every payment attempt (with the rule that caused
 * it and what the hub said) and every other decision (skips and why,
 * lifecycle changes and who made them), newest first, paged.
 */
import { Context, Effect, Layer, Schema } from "effect"
import { sql } from "kysely"
import { decodeCursor, keysetPage } from "./Cursor.ts"
import { Database } from "./Database.ts"

/** One line of history. */
export type HistoryEntry =
  | {
      readonly type: "payment"
      readonly at: string
      readonly occurrence: string
      readonly paymentId: string
      readonly attempt: number
      readonly amount: { readonly value: number; readonly currency: string }
      readonly status: string
      readonly outcome: string | null
      readonly reason: string | null
      readonly retryable: boolean | null
      readonly hubReference: string | null
      readonly resultAt: string | null
      readonly why: unknown
    }
  | {
      readonly type: "decision"
      readonly at: string
      readonly outcome: string
      readonly reason: string | null
      readonly occurrence: string | null
      readonly paymentId: string | null
      readonly details: unknown
      readonly by: {
        readonly channel: string
        readonly terminal: string | null
        /** Present when an operator made the change in the console on the client's behalf. */
        readonly operator?: { readonly login: string; readonly reason: string }
      } | null
    }

/** A page of history. */
export interface HistoryPage {
  readonly entries: ReadonlyArray<HistoryEntry>
  readonly nextCursor: string | null
}

const HistoryCursor = Schema.Struct({ at: Schema.String, rank: Schema.Int, key: Schema.String }).check(
  Schema.makeFilter((position) => !Number.isNaN(Date.parse(position.at))),
)
type HistoryCursor = typeof HistoryCursor.Type

/** Decodes an opaque history cursor; undefined when it is not one of ours. */
export const decodeHistoryCursor = (text: string): HistoryCursor | undefined =>
  decodeCursor(HistoryCursor, text)

interface HistoryRow {
  readonly at: Date
  readonly rank: number
  readonly key: string
  readonly occurrence: string | null
  readonly payment_id: string | null
  readonly attempt: number | null
  readonly amount: number | null
  readonly currency: string | null
  readonly status: string | null
  readonly outcome: string | null
  readonly reason: string | null
  readonly retryable: boolean | null
  readonly hub_reference: string | null
  readonly result_at: Date | null
  readonly details: unknown
  readonly channel: string | null
  readonly terminal: string | null
  readonly operator: string | null
  readonly operator_reason: string | null
  readonly at_text: string
}

const toEntry = (row: HistoryRow): HistoryEntry =>
  row.rank === 1
    ? {
        type: "payment",
        at: row.at.toISOString(),
        occurrence: row.occurrence ?? "",
        paymentId: row.payment_id ?? "",
        attempt: row.attempt ?? 0,
        amount: { value: row.amount ?? 0, currency: row.currency ?? "" },
        status: row.status ?? "",
        outcome: row.outcome,
        reason: row.reason,
        retryable: row.retryable,
        hubReference: row.hub_reference,
        resultAt: row.result_at?.toISOString() ?? null,
        why: row.details,
      }
    : {
        type: "decision",
        at: row.at.toISOString(),
        outcome: row.outcome ?? "",
        reason: row.reason,
        occurrence: row.occurrence,
        paymentId: row.payment_id,
        details: row.details,
        by:
          row.channel === null
            ? null
            : row.operator === null
              ? { channel: row.channel, terminal: row.terminal }
              : {
                  channel: row.channel,
                  terminal: row.terminal,
                  operator: { login: row.operator, reason: row.operator_reason ?? "" },
                },
      }

/** History reads. */
export class HistoryStore extends Context.Service<
  HistoryStore,
  {
    readonly page: (
      subscriptionId: string,
      options: { readonly limit: number; readonly cursor: HistoryCursor | undefined },
    ) => Effect.Effect<HistoryPage>
  }
>()("rp/store/HistoryStore") {
  static readonly layer = Layer.effect(
    HistoryStore,
    Effect.gen(function* () {
      const { use } = yield* Database
      return HistoryStore.of({
        page: (subscriptionId, { limit, cursor }) =>
          use((db) =>
            sql<HistoryRow>`
              SELECT *, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at_text FROM (
                SELECT requested_at AS at, 1 AS rank, payment_id::text AS key, occurrence, payment_id::text AS payment_id,
                  attempt, amount, currency, status, outcome, reason, retryable, hub_reference, result_at,
                  rule AS details, NULL::text AS channel, NULL::text AS terminal,
                  NULL::text AS operator, NULL::text AS operator_reason
                FROM payments WHERE subscription_id = ${subscriptionId}::uuid
                UNION ALL
                SELECT at, 0, lpad(id::text, 20, '0'), occurrence, payment_id::text, NULL, NULL, NULL, NULL, outcome,
                  reason, NULL, NULL, NULL, details, channel, terminal, operator, operator_reason
                FROM decisions WHERE subscription_id = ${subscriptionId}::uuid
              ) history
              WHERE ${cursor === undefined}
                OR (at, rank, key) < (${cursor?.at ?? null}::timestamptz, ${cursor?.rank ?? 0}::int, ${cursor?.key ?? ""}::text)
              ORDER BY at DESC, rank DESC, key DESC
              LIMIT ${limit + 1}`.execute(db),
          ).pipe(
            Effect.map(({ rows }) => {
              const page = keysetPage(rows, limit, toEntry, (row) => ({
                at: row.at_text,
                rank: row.rank,
                key: row.key,
              }))
              return { entries: page.items, nextCursor: page.nextCursor }
            }),
          ),
      })
    }),
  )
}
