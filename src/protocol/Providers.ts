/**
 * Refusing what names a provider the bank has not registered, or asks a
 * provider for what it does not do (report balances, answer debt queries).
 */
import { Effect } from "effect"
import { invalidField } from "../domain/Errors.ts"
import type { ProviderRegistry } from "../store/ProviderRegistry.ts"

/** Succeeds when `providerId` may be used (for `kind`, when given); otherwise VALIDATION_FAILED at `path`. */
export const checkProvider = (
  registry: ProviderRegistry["Service"],
  providerId: string,
  path: string,
  kind?: string,
) =>
  registry.lookup(providerId).pipe(
    Effect.flatMap((lookup) => {
      if (lookup._tag === "Open") return Effect.void
      if (lookup._tag === "Unknown") {
        return Effect.fail(
          invalidField(path, `names provider "${providerId}", which the bank has not registered`),
        )
      }
      const { provider } = lookup
      if (kind === "threshold" && !provider.supportsThreshold) {
        return Effect.fail(
          invalidField(
            path,
            `names provider "${providerId}", which does not report balances (threshold autopayments)`,
          ),
        )
      }
      if (kind === "debt" && !provider.supportsDebt) {
        return Effect.fail(
          invalidField(
            path,
            `names provider "${providerId}", which does not answer debt queries (debt autopayments)`,
          ),
        )
      }
      return Effect.void
    }),
  )
