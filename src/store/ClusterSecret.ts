/**
 * The cluster secret kept in Postgres: used when `RP_CLUSTER_SECRET` is not
 * set. The first instance to ask stores 32 random bytes (base64); every instance on
 * the same database reads the same ones, so they sign and check each
 * other's messages with no configuration, while a party that can only
 * publish on NATS cannot. Whoever can read the database can read it.
 */
import { randomBytes } from "node:crypto"
import { Context, Effect, Layer } from "effect"
import { sql } from "kysely"
import { Database } from "./Database.ts"

export class ClusterSecretStore extends Context.Service<
  ClusterSecretStore,
  {
    /** The stored secret (text, as `RP_CLUSTER_SECRET` is), created on first use; concurrent first uses agree on one. */
    readonly secret: Effect.Effect<string>
  }
>()("rp/store/ClusterSecretStore") {
  static readonly layer = Layer.effect(
    ClusterSecretStore,
    Effect.gen(function* () {
      const { use } = yield* Database
      return ClusterSecretStore.of({
        secret: use(async (db) => {
          await sql`INSERT INTO cluster_secret (id, secret) VALUES (1, ${randomBytes(32).toString("base64")})
                    ON CONFLICT (id) DO NOTHING`.execute(db)
          const row = await db
            .selectFrom("cluster_secret")
            .select("secret")
            .where("id", "=", 1)
            .executeTakeFirstOrThrow()
          return row.secret
        }),
      })
    }),
  )
}
