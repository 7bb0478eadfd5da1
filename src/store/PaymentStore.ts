/**
 * Payment lookups by id, batched across concurrent callers: every hub result
 * needs to know which subscription its payment belongs to.
 */
import { Context, Effect, Exit, Layer, Request, RequestResolver } from "effect"
import { isUuid } from "../domain/Ids.ts"
import { Database } from "./Database.ts"

/** What routing a hub result needs to know about its payment. */
export interface PaymentRoute {
  readonly paymentId: string
  readonly subscriptionId: string
  readonly status: string
}

class FindPayment extends Request.Class<
  { readonly paymentId: string },
  PaymentRoute | undefined,
  never,
  never
> {}

/** Payment reads. */
export class PaymentStore extends Context.Service<
  PaymentStore,
  {
    /** The payment's subscription and recorded status, or undefined for an id the engine never minted. */
    readonly route: (paymentId: string) => Effect.Effect<PaymentRoute | undefined>
  }
>()("rp/store/PaymentStore") {
  static readonly layer = Layer.effect(
    PaymentStore,
    Effect.gen(function* () {
      const { db } = yield* Database
      const resolver = RequestResolver.make<FindPayment>((entries) =>
        Effect.promise(async () => {
          const ids = [...new Set(entries.map((entry) => entry.request.paymentId))]
          const rows = await db
            .selectFrom("payments")
            .select(["payment_id", "subscription_id", "status"])
            .where("payment_id", "in", ids)
            .execute()
          const byId = new Map(rows.map((row) => [row.payment_id, row]))
          for (const entry of entries) {
            const row = byId.get(entry.request.paymentId)
            entry.completeUnsafe(
              Exit.succeed(
                row === undefined
                  ? undefined
                  : { paymentId: row.payment_id, subscriptionId: row.subscription_id, status: row.status },
              ),
            )
          }
        }),
      ).pipe(RequestResolver.setDelay(1), RequestResolver.batchN(1_000))
      return PaymentStore.of({
        route: (paymentId) =>
          // Ids the engine mints are UUIDs; anything else cannot be ours and must not reach a uuid column.
          isUuid(paymentId)
            ? Effect.request(new FindPayment({ paymentId: paymentId.toLowerCase() }), resolver)
            : Effect.succeed(undefined),
      })
    }),
  )
}
