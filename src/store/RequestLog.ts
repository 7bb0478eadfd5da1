/**
 * The idempotency log of the channel protocol: every mutating request's
 * reply, stored in the same transaction as the change it made, keyed by
 * (channel, requestId). A repeat is answered from here and changes nothing.
 */
import { Context, Effect, Layer } from "effect"
import type { Transaction } from "kysely"
import { Database } from "./Database.ts"
import type { Tables } from "./Tables.ts"
import type { RequestRecord } from "./TransitionCommitter.ts"

/** A reply stored for a request. */
export interface StoredReply {
  readonly requestHash: string
  readonly reply: string
}

/** Claims `record` inside `trx`; false when the same (channel, requestId) was already stored. */
export const claimRequest = async (trx: Transaction<Tables>, record: RequestRecord): Promise<boolean> => {
  const inserted = await trx
    .insertInto("requests")
    .values({
      channel: record.channel,
      request_id: record.requestId,
      client_id: record.clientId,
      operation: record.operation,
      request_hash: record.requestHash,
      reply: record.reply,
    })
    .onConflict((conflict) => conflict.columns(["channel", "request_id"]).doNothing())
    .returning("request_id")
    .executeTakeFirst()
  return inserted !== undefined
}

/** Reading stored replies. */
export class RequestLog extends Context.Service<
  RequestLog,
  {
    readonly find: (channel: string, requestId: string) => Effect.Effect<StoredReply | undefined>
  }
>()("rp/store/RequestLog") {
  static readonly layer = Layer.effect(
    RequestLog,
    Effect.gen(function* () {
      const { use } = yield* Database
      return RequestLog.of({
        find: (channel, requestId) =>
          use((db) =>
            db
              .selectFrom("requests")
              .select(["request_hash", "reply"])
              .where("channel", "=", channel)
              .where("request_id", "=", requestId)
              .executeTakeFirst(),
          ).pipe(
            Effect.map((row) =>
              row === undefined ? undefined : { requestHash: row.request_hash, reply: row.reply },
            ),
          ),
      })
    }),
  )
}
