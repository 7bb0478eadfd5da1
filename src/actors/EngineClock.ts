/**
 * The engine's notion of "now": the latest tick it has processed.
 *
 * Business rules never read the wall clock; they read this. It is persisted
 * so that a restarted engine resumes from the time it had reached, and it
 * only moves forward: a late or repeated tick cannot turn time back.
 */
import { Context, Effect, Layer, Ref } from "effect"
import { sql } from "kysely"
import { Database } from "../store/Database.ts"

/** Engine time. */
export class EngineClock extends Context.Service<
  EngineClock,
  {
    /** Engine time in epoch milliseconds (0 before the first tick ever). */
    readonly now: Effect.Effect<number>
    /** Moves time forward to `at` if it is later; returns the resulting time. */
    readonly advance: (at: number) => Effect.Effect<number>
    /** Takes in time another instance reached (already stored by it); returns whether it moved. */
    readonly observe: (at: number) => Effect.Effect<boolean>
    /** Re-reads the stored time (another instance may have moved it); returns whether it moved. */
    readonly refresh: Effect.Effect<boolean>
  }
>()("rp/actors/EngineClock") {
  static readonly layer = Layer.effect(
    EngineClock,
    Effect.gen(function* () {
      const { use } = yield* Database
      const stored = yield* use((db) =>
        db.selectFrom("engine_clock").select("now").where("id", "=", 1).executeTakeFirst(),
      )
      const current = yield* Ref.make(stored?.now.getTime() ?? 0)
      const observe = (at: number) =>
        Ref.modify(current, (previous) => (at > previous ? [true, at] : [false, previous]))
      yield* Effect.logInfo("engine clock ready").pipe(
        Effect.annotateLogs({ now: stored === undefined ? "no tick yet" : stored.now.toISOString() }),
      )
      return EngineClock.of({
        now: Ref.get(current),
        advance: (at) =>
          use((db) =>
            sql<{ now: Date }>`
              INSERT INTO engine_clock (id, now) VALUES (1, ${new Date(at)})
              ON CONFLICT (id) DO UPDATE SET now = GREATEST(engine_clock.now, EXCLUDED.now), updated_at = now()
              RETURNING now`.execute(db),
          ).pipe(
            Effect.map((result) => result.rows[0]?.now.getTime() ?? at),
            Effect.tap((now) => Ref.update(current, (previous) => Math.max(previous, now))),
          ),
        observe,
        refresh: use((db) =>
          db.selectFrom("engine_clock").select("now").where("id", "=", 1).executeTakeFirst(),
        ).pipe(
          Effect.flatMap((row) => (row === undefined ? Effect.succeed(false) : observe(row.now.getTime()))),
        ),
      })
    }),
  )
}
