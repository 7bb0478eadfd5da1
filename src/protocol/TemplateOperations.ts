/**
 * `template.create`, `template.get`, `template.list`, `template.delete`.
 */
import { Effect, Schema } from "effect"
import { Conflict, NotFound } from "../domain/Errors.ts"
import { isUuid, newId } from "../domain/Ids.ts"
import { type Template, TemplateInput, toTemplateView } from "../domain/Template.ts"
import { Database } from "../store/Database.ts"
import { ProviderRegistry } from "../store/ProviderRegistry.ts"
import { claimRequest } from "../store/RequestLog.ts"
import { insertTemplate, TemplateStore } from "../store/TemplateStore.ts"
import { okReply } from "./Envelope.ts"
import { defineOperation, type Operation, type RequestContext, requestKey } from "./Operation.ts"
import { decodePageCursorOrFail, PageRequest } from "./Paging.ts"
import { checkProvider } from "./Providers.ts"

const TemplateRef = Schema.Struct({
  templateId: Schema.String.check(Schema.isMinLength(1), Schema.isMaxLength(100)),
})

/** Thrown inside a transaction callback to roll it back and report why. */
class AlreadyAnswered extends Error {}

const requestRecord = (context: RequestContext, reply: string) => ({ ...requestKey(context), reply })

/** The template operations, bound to the services they use. */
export const templateOperations = Effect.gen(function* () {
  const database = yield* Database
  const templates = yield* TemplateStore
  const providers = yield* ProviderRegistry

  const notFound = (id: string) => new NotFound({ message: `template ${id} not found` })

  const create = defineOperation({
    mutating: true,
    body: TemplateInput,
    run: (body, context) =>
      Effect.gen(function* () {
        yield* checkProvider(providers, body.providerId, "body.providerId")
        const template: Template = {
          id: newId(),
          clientId: context.clientId,
          name: body.name,
          providerId: body.providerId,
          account: body.account,
          source: body.source,
          fields: body.fields ?? {},
          createdAt: Date.now(),
          createdChannel: context.channel,
          createdTerminal: context.terminal,
        }
        const reply = okReply(context.requestId, { template: toTemplateView(template) })
        const stored = yield* database.transaction(async (trx) => {
          if (!(await claimRequest(trx, requestRecord(context, reply)))) return false
          await insertTemplate(trx, template)
          return true
        })
        return stored ? ({ _tag: "Reply", text: reply } as const) : ({ _tag: "AlreadyAnswered" } as const)
      }),
  })

  const get = defineOperation({
    mutating: false,
    body: TemplateRef,
    run: ({ templateId }, context) =>
      Effect.gen(function* () {
        const template = isUuid(templateId) ? yield* templates.get(templateId, context.clientId) : undefined
        if (template === undefined) return yield* notFound(templateId)
        return { _tag: "Result", result: { template: toTemplateView(template) } } as const
      }),
  })

  const list = defineOperation({
    mutating: false,
    body: PageRequest,
    run: (body, context) =>
      Effect.gen(function* () {
        const after = yield* decodePageCursorOrFail(body.cursor)
        const page = yield* templates.list(context.clientId, { limit: body.limit ?? 50, after })
        return {
          _tag: "Result",
          result: { items: page.items.map(toTemplateView), nextCursor: page.nextCursor },
        } as const
      }),
  })

  const remove = defineOperation({
    mutating: true,
    body: TemplateRef,
    run: ({ templateId }, context) =>
      Effect.gen(function* () {
        if (!isUuid(templateId)) return yield* notFound(templateId)
        const reply = okReply(context.requestId, { templateId, deleted: true })
        const outcome = yield* database
          .transaction(async (trx) => {
            const deletion = await templates.deleteIn(trx, templateId, context.clientId)
            if (deletion._tag !== "Deleted") return deletion
            if (!(await claimRequest(trx, requestRecord(context, reply)))) throw new AlreadyAnswered()
            return deletion
          })
          .pipe(
            Effect.catchDefect((defect) =>
              defect instanceof AlreadyAnswered
                ? Effect.succeed({ _tag: "AlreadyAnswered" } as const)
                : Effect.die(defect),
            ),
          )
        switch (outcome._tag) {
          case "NotFound":
            return yield* notFound(templateId)
          case "InUse":
            return yield* new Conflict({
              message: `template ${templateId} is used by live subscriptions; cancel them first`,
              details: outcome.subscriptionIds.map((id) => ({
                path: "body.templateId",
                message: `used by subscription ${id}`,
              })),
            })
          case "AlreadyAnswered":
            return outcome
          case "Deleted":
            return { _tag: "Reply", text: reply } as const
        }
      }),
  })

  return {
    "template.create": create,
    "template.get": get,
    "template.list": list,
    "template.delete": remove,
  } satisfies Record<string, Operation>
})
