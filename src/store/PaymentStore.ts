/**
 * Payment lookups by id: every hub result needs to know which subscription
 * its payment belongs to. Results arrive in batches, and so are looked up.
 */
import { Context, Effect, Layer } from "effect"
import { isUuid } from "../domain/Ids.ts"
import { Database } from "./Database.ts"

/** What routing a hub result needs to know about its payment. */
export interface PaymentRoute {
  readonly paymentId: string
  readonly subscriptionId: string
  readonly status: string
}

/** Payment reads. */
export class PaymentStore extends Context.Service<
  PaymentStore,
  {
    /** Each known payment's subscription and recorded status, keyed by payment id (lower case). */
    readonly routes: (paymentIds: ReadonlyArray<string>) => Effect.Effect<ReadonlyMap<string, PaymentRoute>>
  }
>()("rp/store/PaymentStore") {
  static readonly layer = Layer.effect(
    PaymentStore,
    Effect.gen(function* () {
      const { use } = yield* Database
      return PaymentStore.of({
        routes: (paymentIds) => {
          // Ids the engine mints are UUIDs; anything else cannot be ours and must not reach a uuid column.
          const ids = [...new Set(paymentIds.filter(isUuid).map((id) => id.toLowerCase()))]
          if (ids.length === 0) return Effect.succeed(new Map())
          return use((db) =>
            db
              .selectFrom("payments")
              .select(["payment_id", "subscription_id", "status"])
              .where("payment_id", "in", ids)
              .execute(),
          ).pipe(
            Effect.map(
              (rows) =>
                new Map(
                  rows.map((row) => [
                    row.payment_id,
                    { paymentId: row.payment_id, subscriptionId: row.subscription_id, status: row.status },
                  ]),
                ),
            ),
          )
        },
      })
    }),
  )
}
