/**
 * Inbound messages already processed, per consumer: written with the change a
 * message caused (in the group commit), read before handling so a message
 * redelivered after a crash — after its effect was committed but before its
 * acknowledgement reached the server — is recognised and acked without going
 * near its actor. Only for effects that leave no mark of their own: a hub
 * result that settles its payment needs no row (the settled payment is the
 * record), one contradicting a settled payment does. Kept for
 * `RP_INBOX_RETENTION`, far longer than any redelivery can happen (pruned by
 * Retention.ts).
 */
import { Context, Effect, Layer } from "effect"
import { Database } from "./Database.ts"

/** The processed-message record. */
export class InboxStore extends Context.Service<
  InboxStore,
  {
    /** Which of `messageIds` `consumer` has already processed. */
    readonly processed: (
      consumer: string,
      messageIds: ReadonlyArray<string>,
    ) => Effect.Effect<ReadonlySet<string>>
  }
>()("rp/store/InboxStore") {
  static readonly layer = Layer.effect(
    InboxStore,
    Effect.gen(function* () {
      const { use } = yield* Database
      return InboxStore.of({
        processed: (consumer, messageIds) =>
          messageIds.length === 0
            ? Effect.succeed(new Set())
            : use((db) =>
                db
                  .selectFrom("inbox")
                  .select("message_id")
                  .where("consumer", "=", consumer)
                  .where("message_id", "in", [...new Set(messageIds)])
                  .execute(),
              ).pipe(Effect.map((rows) => new Set(rows.map((row) => row.message_id)))),
      })
    }),
  )
}
