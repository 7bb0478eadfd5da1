/**
 * The providers a bank has configured: whose bills recur (a one-off payment
 * to them earns a reminder, after `remindAfter`), who answers debt queries
 * and who reports balances.
 *
 * While no provider is registered the engine runs open, as on a developer's
 * machine: any provider id is accepted and nobody is reminded, and the
 * engine says so at start. Once one is registered, a template or autopayment
 * naming an unknown provider is refused, and a kind the provider does not
 * support too.
 */
import { Context, Effect, Layer } from "effect"
import type { Kysely } from "kysely"
import { Database } from "./Database.ts"
import type { Tables } from "./Tables.ts"

/** One provider's configuration. */
export interface ProviderConfig {
  readonly providerId: string
  readonly displayName: string
  readonly periodic: boolean
  /** ISO 8601 duration: how long after a one-off payment its reminder is offered. */
  readonly remindAfter: string
  readonly supportsDebt: boolean
  readonly supportsThreshold: boolean
}

/** What a lookup found: the provider, or whether the registry is empty (open) or it is unknown. */
export type ProviderLookup =
  | { readonly _tag: "Registered"; readonly provider: ProviderConfig }
  | { readonly _tag: "Open" }
  | { readonly _tag: "Unknown" }

const toConfig = (row: {
  provider_id: string
  display_name: string
  periodic: boolean
  remind_after: string
  supports_debt: boolean
  supports_threshold: boolean
}): ProviderConfig => ({
  providerId: row.provider_id,
  displayName: row.display_name,
  periodic: row.periodic,
  remindAfter: row.remind_after,
  supportsDebt: row.supports_debt,
  supportsThreshold: row.supports_threshold,
})

/** Every registered provider, by id. */
export const listProviders = async (db: Kysely<Tables>): Promise<Array<ProviderConfig>> =>
  (await db.selectFrom("providers").selectAll().orderBy("provider_id").execute()).map(toConfig)

/** Adds a provider or replaces its configuration. */
export const saveProvider = async (db: Kysely<Tables>, provider: ProviderConfig): Promise<void> => {
  const row = {
    provider_id: provider.providerId,
    display_name: provider.displayName,
    periodic: provider.periodic,
    remind_after: provider.remindAfter,
    supports_debt: provider.supportsDebt,
    supports_threshold: provider.supportsThreshold,
  }
  await db
    .insertInto("providers")
    .values(row)
    .onConflict((conflict) => conflict.column("provider_id").doUpdateSet({ ...row, updated_at: new Date() }))
    .execute()
}

/** Removes a provider; true if it was there. Autopayments already made keep working. */
export const removeProvider = async (db: Kysely<Tables>, providerId: string): Promise<boolean> =>
  (await db.deleteFrom("providers").where("provider_id", "=", providerId).executeTakeFirst()).numDeletedRows >
  0n

/** Provider lookups (read each time: they are rare next to payments, and never stale). */
export class ProviderRegistry extends Context.Service<
  ProviderRegistry,
  { readonly lookup: (providerId: string) => Effect.Effect<ProviderLookup> }
>()("rp/store/ProviderRegistry") {
  static readonly layer = Layer.effect(
    ProviderRegistry,
    Effect.gen(function* () {
      const { use } = yield* Database
      const registered = yield* use((db) =>
        db
          .selectFrom("providers")
          .select((eb) => eb.fn.countAll<string>().as("count"))
          .executeTakeFirstOrThrow(),
      )
      if (Number(registered.count) === 0) {
        yield* Effect.logWarning(
          "no provider registry: accepting ANY provider id and sending no reminders (register providers with `npm run providers`)",
        )
      } else {
        yield* Effect.logInfo("providers ready").pipe(
          Effect.annotateLogs({ providers: Number(registered.count) }),
        )
      }
      return ProviderRegistry.of({
        lookup: (providerId) =>
          use(async (db) => {
            const found = await db
              .selectFrom("providers")
              .selectAll()
              .where("provider_id", "=", providerId)
              .executeTakeFirst()
            if (found !== undefined) return { _tag: "Registered", provider: toConfig(found) } as const
            const any = await db.selectFrom("providers").select("provider_id").limit(1).executeTakeFirst()
            return any === undefined ? ({ _tag: "Open" } as const) : ({ _tag: "Unknown" } as const)
          }),
      })
    }),
  )
}
