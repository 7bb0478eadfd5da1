/**
 * Keeping an in-memory copy of a table fresh on every instance: re-read it
 * when Postgres notifies a change (`LISTEN <notification>`, sent by the
 * table's trigger) and every `everyMs` in case a notification is lost.
 *
 * Bursts of notifications collapse into one re-read. The listening
 * connection is reopened when it drops, and the table re-read then, since
 * notifications sent in between are lost. A failed re-read is logged and the
 * copy in force is kept.
 */
import { Duration, Effect, Queue, Redacted, type Scope } from "effect"
import pg from "pg"

export interface KeptFreshOptions {
  readonly databaseUrl: Redacted.Redacted<string>
  /** The channel the table's trigger notifies. */
  readonly notification: string
  readonly everyMs: number
  /** Re-reads the table into memory. */
  readonly reload: Effect.Effect<void>
  /** What is kept, for the log lines ("the channel registry"). */
  readonly what: string
}

/** Starts the re-reading in the current scope; it stops with the scope. */
export const keepFresh = (options: KeptFreshOptions): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function* () {
    const wanted = yield* Queue.dropping<void>(1)
    const want = () => void Queue.offerUnsafe(wanted, undefined)
    yield* Effect.forkScoped(
      Effect.forever(
        Queue.take(wanted).pipe(
          Effect.andThen(options.reload),
          Effect.catchCause((cause) =>
            Effect.logError(`could not re-read ${options.what}; keeping the one in force`, cause),
          ),
        ),
      ),
    )
    yield* Effect.forkScoped(
      Effect.forever(Effect.sleep(Duration.millis(options.everyMs)).pipe(Effect.andThen(Effect.sync(want)))),
    )
    const listenUntilDisconnected = Effect.acquireRelease(
      Effect.promise(async () => {
        const client = new pg.Client({ connectionString: Redacted.value(options.databaseUrl) })
        client.on("error", () => undefined)
        await client.connect()
        await client.query(`LISTEN ${options.notification}`)
        return client
      }),
      (client) => Effect.promise(() => client.end().catch(() => undefined)),
    ).pipe(
      Effect.tap(() => Effect.sync(want)),
      Effect.flatMap((client) =>
        Effect.callback<void>((resume) => {
          client.on("notification", want)
          client.on("error", () => resume(Effect.void))
          client.on("end", () => resume(Effect.void))
        }),
      ),
      Effect.scoped,
    )
    yield* Effect.forkScoped(
      Effect.forever(
        listenUntilDisconnected.pipe(
          Effect.catchCause((cause) => Effect.logWarning(`listener for ${options.what} failed`, cause)),
          Effect.andThen(Effect.sleep(Duration.seconds(1))),
        ),
      ),
    )
  })
