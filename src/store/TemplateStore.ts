/**
 * Templates: stored per client, read by id or page, soft-deleted so the
 * subscriptions made from them keep an intact reference for audit.
 */
import { Context, Effect, Layer, Schema } from "effect"
import type { Selectable, Transaction } from "kysely"
import type { Template } from "../domain/Template.ts"
import { type CreatedPosition, createdBefore, createdPositionOf, keysetPage } from "./Cursor.ts"
import { Database } from "./Database.ts"
import type { Tables, TemplatesTable } from "./Tables.ts"

const decodeFields = Schema.decodeUnknownSync(Schema.Record(Schema.String, Schema.String))

const fromRow = (row: Selectable<TemplatesTable>): Template => ({
  id: row.id,
  clientId: row.client_id,
  name: row.name,
  providerId: row.provider_id,
  account: row.account,
  source: row.source,
  fields: decodeFields(row.fields),
  createdAt: row.created_at.getTime(),
  createdChannel: row.created_channel,
  createdTerminal: row.created_terminal,
})

/** Inserts a template inside the caller's transaction. */
export const insertTemplate = async (trx: Transaction<Tables>, template: Template): Promise<void> => {
  await trx
    .insertInto("templates")
    .values({
      id: template.id,
      client_id: template.clientId,
      name: template.name,
      provider_id: template.providerId,
      account: template.account,
      source: template.source,
      fields: JSON.stringify(template.fields),
      created_at: new Date(template.createdAt),
      created_channel: template.createdChannel,
      created_terminal: template.createdTerminal,
    })
    .execute()
}

/** Outcome of deleting a template. */
export type TemplateDeletion =
  | { readonly _tag: "Deleted" }
  | { readonly _tag: "NotFound" }
  | { readonly _tag: "InUse"; readonly subscriptionIds: ReadonlyArray<string> }

/** A page of templates, newest first. */
export interface TemplatePage {
  readonly items: ReadonlyArray<Template>
  readonly nextCursor: string | null
}

/** Template reads and deletes. */
export class TemplateStore extends Context.Service<
  TemplateStore,
  {
    /** The client's live template, or undefined (missing, deleted, or another client's). */
    readonly get: (id: string, clientId: string) => Effect.Effect<Template | undefined>
    readonly list: (
      clientId: string,
      options: {
        readonly limit: number
        readonly after: CreatedPosition | undefined
      },
    ) => Effect.Effect<TemplatePage>
    /** Soft-deletes inside `trx`, refusing while live subscriptions use the template. */
    readonly deleteIn: (trx: Transaction<Tables>, id: string, clientId: string) => Promise<TemplateDeletion>
  }
>()("rp/store/TemplateStore") {
  static readonly layer = Layer.effect(
    TemplateStore,
    Effect.gen(function* () {
      const { use } = yield* Database
      return TemplateStore.of({
        get: (id, clientId) =>
          use((db) =>
            db
              .selectFrom("templates")
              .selectAll()
              .where("id", "=", id)
              .where("client_id", "=", clientId)
              .where("deleted_at", "is", null)
              .executeTakeFirst(),
          ).pipe(Effect.map((row) => (row === undefined ? undefined : fromRow(row)))),
        list: (clientId, { limit, after }) =>
          use((db) => {
            let query = db
              .selectFrom("templates")
              .selectAll()
              .where("client_id", "=", clientId)
              .where("deleted_at", "is", null)
              .orderBy("created_at", "desc")
              .orderBy("id", "desc")
              .limit(limit + 1)
            if (after !== undefined) query = query.where(createdBefore(after))
            return query.execute()
          }).pipe(Effect.map((rows) => keysetPage(rows, limit, fromRow, createdPositionOf))),
        deleteIn: async (trx, id, clientId) => {
          const template = await trx
            .selectFrom("templates")
            .select("id")
            .where("id", "=", id)
            .where("client_id", "=", clientId)
            .where("deleted_at", "is", null)
            .forUpdate()
            .executeTakeFirst()
          if (template === undefined) return { _tag: "NotFound" }
          const users = await trx
            .selectFrom("subscriptions")
            .select("id")
            // Through the client's index: a template and its subscriptions belong to one client.
            .where("client_id", "=", clientId)
            .where("template_id", "=", id)
            .where("status", "in", ["active", "paused"])
            .limit(20)
            .execute()
          if (users.length > 0) return { _tag: "InUse", subscriptionIds: users.map((row) => row.id) }
          await trx.updateTable("templates").set({ deleted_at: new Date() }).where("id", "=", id).execute()
          return { _tag: "Deleted" }
        },
      })
    }),
  )
}
