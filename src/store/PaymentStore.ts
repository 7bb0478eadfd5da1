/**
 * Payment lookups by id: every hub result needs to know which subscription
 * its payment belongs to. Results arrive in batches, and so are looked up.
 */
import { Context, Effect, Exit, Layer, Request, RequestResolver } from "effect"
import { sql } from "kysely"
import { isUuid } from "../domain/Ids.ts"
import type { Money } from "../domain/Money.ts"
import { Database } from "./Database.ts"

/** What routing a hub result needs to know about its payment. */
export interface PaymentRoute {
  readonly paymentId: string
  readonly subscriptionId: string
  readonly status: string
  /** What was sent, for checking a result that repeats it. */
  readonly occurrence: string
  readonly attempt: number
  readonly amount: Money
}

/** A payment as recorded, with the attempt of its occurrence recorded as paid (if any other). */
export interface RecordedPayment {
  readonly status: string
  readonly occurrence: string
  readonly attempt: number
  readonly amount: { readonly value: number; readonly currency: string }
  /** The month its amount was counted toward when sent, when a monthly limit applied. */
  readonly spendMonth: string | null
  readonly occurrencePaidBy: { readonly paymentId: string; readonly attempt: number } | null
}

/** The latest attempt recorded for one debt bill. */
export interface LatestAttempt {
  readonly attempt: number
  readonly status: string
  readonly retryable: boolean | null
}

class ReadSpend extends Request.Class<
  { readonly clientId: string; readonly month: string; readonly currency: string },
  number,
  never,
  never
> {}

const spendKey = (row: { client_id: string; month: string; currency: string }) =>
  `${row.client_id}\u0000${row.month}\u0000${row.currency}`

/** Payment reads. */
export class PaymentStore extends Context.Service<
  PaymentStore,
  {
    /** Each known payment's subscription and recorded status, keyed by payment id (lower case). */
    readonly routes: (paymentIds: ReadonlyArray<string>) => Effect.Effect<ReadonlyMap<string, PaymentRoute>>
    /** One payment as recorded now, or undefined when there is no such payment. */
    readonly recorded: (paymentId: string) => Effect.Effect<RecordedPayment | undefined>
    /** For each of a payee's bills paid before (by any subscription), its latest attempt. */
    readonly latestAttempts: (
      payee: { readonly providerId: string; readonly account: string },
      billIds: ReadonlyArray<string>,
    ) => Effect.Effect<ReadonlyMap<string, LatestAttempt>>
    /** What the client has spent through autopayments in `month` (YYYY-MM), in minor units of `currency`. */
    readonly monthlySpend: (clientId: string, month: string, currency: string) => Effect.Effect<number>
  }
>()("rp/store/PaymentStore") {
  static readonly layer = Layer.effect(
    PaymentStore,
    Effect.gen(function* () {
      const { db, use } = yield* Database

      // With a monthly cap, every payment of a burst reads its client's month first: the reads
      // of concurrent actors go to Postgres together, as subscription loads do.
      const spendResolver = RequestResolver.make<ReadSpend>((entries) =>
        Effect.promise(async () => {
          const keys = entries.map(({ request }) => ({
            client_id: request.clientId,
            month: request.month,
            currency: request.currency,
          }))
          const found = await sql<{ client_id: string; month: string; currency: string; spent: number }>`
            SELECT s.client_id, s.month, s.currency, s.spent FROM client_spend s
            JOIN (SELECT DISTINCT * FROM json_to_recordset(${JSON.stringify(keys)}::json)
              AS v(client_id text, month text, currency text)) v
              ON s.client_id = v.client_id AND s.month = v.month AND s.currency = v.currency`.execute(db)
          const spent = new Map(found.rows.map((row) => [spendKey(row), Number(row.spent)]))
          for (const entry of entries) {
            const { clientId, month, currency } = entry.request
            entry.completeUnsafe(
              Exit.succeed(spent.get(spendKey({ client_id: clientId, month, currency })) ?? 0),
            )
          }
        }),
      ).pipe(RequestResolver.setDelay(1), RequestResolver.batchN(1_000))

      return PaymentStore.of({
        routes: (paymentIds) => {
          // Ids the engine mints are UUIDs; anything else cannot be ours and must not reach a uuid column.
          const ids = [...new Set(paymentIds.filter(isUuid).map((id) => id.toLowerCase()))]
          if (ids.length === 0) return Effect.succeed(new Map())
          return use((db) =>
            db
              .selectFrom("payments")
              .select([
                "payment_id",
                "subscription_id",
                "status",
                "occurrence",
                "attempt",
                "amount",
                "currency",
              ])
              .where("payment_id", "in", ids)
              .execute(),
          ).pipe(
            Effect.map(
              (rows) =>
                new Map(
                  rows.map((row) => [
                    row.payment_id,
                    {
                      paymentId: row.payment_id,
                      subscriptionId: row.subscription_id,
                      status: row.status,
                      occurrence: row.occurrence,
                      attempt: row.attempt,
                      amount: { value: Number(row.amount), currency: row.currency },
                    },
                  ]),
                ),
            ),
          )
        },
        recorded: (paymentId) => {
          if (!isUuid(paymentId)) return Effect.succeed(undefined)
          return use(async (db) => {
            const row = await db
              .selectFrom("payments")
              .select([
                "subscription_id",
                "status",
                "occurrence",
                "attempt",
                "amount",
                "currency",
                "spend_month",
              ])
              .where("payment_id", "=", paymentId.toLowerCase())
              .executeTakeFirst()
            if (row === undefined) return undefined
            const paid = await db
              .selectFrom("payments")
              .select(["payment_id", "attempt"])
              .where("subscription_id", "=", row.subscription_id)
              .where("occurrence", "=", row.occurrence)
              .where("status", "=", "succeeded")
              .where("payment_id", "!=", paymentId.toLowerCase())
              .orderBy("attempt")
              .executeTakeFirst()
            return {
              status: row.status,
              occurrence: row.occurrence,
              attempt: row.attempt,
              amount: { value: Number(row.amount), currency: row.currency },
              spendMonth: row.spend_month,
              occurrencePaidBy:
                paid === undefined ? null : { paymentId: paid.payment_id, attempt: paid.attempt },
            }
          })
        },
        latestAttempts: (payee, billIds) => {
          if (billIds.length === 0) return Effect.succeed(new Map())
          return use((db) =>
            db
              .selectFrom("debt_bills as b")
              .innerJoin("payments as p", "p.payment_id", "b.payment_id")
              .select(["b.bill_id", "b.attempt", "p.retryable"])
              // Any attempt of the bill that succeeded makes it paid, whatever became of later ones.
              .select(
                sql<string>`CASE WHEN EXISTS (SELECT 1 FROM payments q WHERE q.subscription_id = b.subscription_id
                  AND q.occurrence = b.bill_id AND q.status = 'succeeded') THEN 'succeeded' ELSE p.status END`.as(
                  "status",
                ),
              )
              .where("b.provider_id", "=", payee.providerId)
              .where("b.account", "=", payee.account)
              .where("b.bill_id", "in", [...new Set(billIds)])
              .execute(),
          ).pipe(
            Effect.map(
              (rows) =>
                new Map(
                  rows.map((row) => [
                    row.bill_id,
                    { attempt: row.attempt, status: row.status, retryable: row.retryable },
                  ]),
                ),
            ),
          )
        },
        monthlySpend: (clientId, month, currency) =>
          Effect.request(new ReadSpend({ clientId, month, currency }), spendResolver),
      })
    }),
  )
}
