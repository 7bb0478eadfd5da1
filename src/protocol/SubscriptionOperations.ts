/**
 * The `subscription.*` operations. Reads go straight to the committed rows;
 * every change goes through the subscription's actor, the same path ticks
 * and hub results take, so a channel can never race the engine.
 */
import { Effect, Schema } from "effect"
import { EngineClock } from "../actors/EngineClock.ts"
import type { ActorInput } from "../actors/Inputs.ts"
import * as ScheduledPolicy from "../actors/ScheduledPolicy.ts"
import { type ActorOutcome, SubscriptionActors } from "../actors/SubscriptionActors.ts"
import { invalidField, NotFound, ValidationFailed } from "../domain/Errors.ts"
import { isUuid, newId } from "../domain/Ids.ts"
import { PositiveMoney } from "../domain/Money.ts"
import { normalizeSchedule, ScheduleInput, type Subscription } from "../domain/Subscription.ts"
import { toView } from "../domain/SubscriptionView.ts"
import { type Template, TemplateInput } from "../domain/Template.ts"
import * as Timestamp from "../domain/Timestamp.ts"
import { EngineConfig } from "../EngineConfig.ts"
import { decodeHistoryCursor, HistoryStore } from "../store/HistoryStore.ts"
import { SubscriptionStore } from "../store/SubscriptionStore.ts"
import { TemplateStore } from "../store/TemplateStore.ts"
import { TransitionCommitter } from "../store/TransitionCommitter.ts"
import { okReply } from "./Envelope.ts"
import {
  bodyDecoder,
  defineOperation,
  type Operation,
  type OperationOutcome,
  type RequestContext,
  requestKey,
} from "./Operation.ts"
import { decodePageCursorOrFail, PageRequest } from "./Paging.ts"

const SubscriptionId = Schema.String.check(Schema.isMinLength(1), Schema.isMaxLength(100))
const SubscriptionRef = Schema.Struct({ subscriptionId: SubscriptionId })

const ScheduledCreate = Schema.Struct({
  kind: Schema.Literal("scheduled"),
  templateId: Schema.optionalKey(Schema.String.check(Schema.isMinLength(1), Schema.isMaxLength(100))),
  template: Schema.optionalKey(TemplateInput),
  amount: PositiveMoney,
  schedule: ScheduleInput,
}).check(
  Schema.makeFilter((body) =>
    (body.templateId === undefined) === (body.template === undefined)
      ? {
          path: ["templateId"],
          issue: "give exactly one of templateId (a saved template) or template (a new one)",
        }
      : undefined,
  ),
)

const decodeScheduledCreate = bodyDecoder(ScheduledCreate)

const KnownKind = Schema.Struct({ kind: Schema.Literals(["scheduled", "threshold", "debt"]) })
const decodeKind = Schema.decodeUnknownOption(KnownKind)

const UpdateBody = Schema.Struct({
  subscriptionId: SubscriptionId,
  expectedVersion: Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)),
  amount: Schema.optionalKey(PositiveMoney),
  schedule: Schema.optionalKey(ScheduleInput),
}).check(
  Schema.makeFilter((body) =>
    body.amount === undefined && body.schedule === undefined
      ? { path: ["amount"], issue: "give at least one of amount or schedule to change" }
      : undefined,
  ),
)

const ListBody = Schema.Struct({
  ...PageRequest.fields,
  includeHidden: Schema.optionalKey(Schema.Boolean),
})

const HistoryBody = Schema.Struct({ subscriptionId: SubscriptionId, ...PageRequest.fields })

const PreviewBody = Schema.Struct({
  subscriptionId: SubscriptionId,
  count: Schema.optionalKey(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 50 }))),
})

const subscriptionReply = (requestId: string) => (subscription: Subscription) =>
  okReply(requestId, { subscription: toView(subscription) })

const skipReply = (requestId: string) => (subscription: Subscription) =>
  okReply(requestId, {
    skippedOccurrence: subscription.state.skip[subscription.state.skip.length - 1] ?? null,
    subscription: toView(subscription),
  })

/** The subscription operations, bound to the services they use. */
export const subscriptionOperations = Effect.gen(function* () {
  const config = yield* EngineConfig
  const clock = yield* EngineClock
  const actors = yield* SubscriptionActors
  const subscriptions = yield* SubscriptionStore
  const templates = yield* TemplateStore
  const history = yield* HistoryStore
  const committer = yield* TransitionCommitter

  const notFound = (id: string) => new NotFound({ message: `subscription ${id} not found` })

  /** The client's own subscription, or NotFound (missing and foreign look the same). */
  const owned = (id: string, clientId: string) =>
    Effect.gen(function* () {
      const subscription = isUuid(id) ? yield* subscriptions.loadFresh(id) : undefined
      if (subscription === undefined || subscription.clientId !== clientId) return yield* notFound(id)
      return subscription
    })

  /** Sends a change to the actor; its reply is stored with the change. */
  const change = (
    id: string,
    input: ActorInput,
    context: RequestContext,
    render: (subscription: Subscription) => string,
  ) =>
    Effect.gen(function* () {
      if (!isUuid(id)) return yield* notFound(id)
      const outcome: ActorOutcome = yield* actors.send(id, input, {
        clientId: context.clientId,
        request: { ...requestKey(context), render },
      })
      return outcome._tag === "Applied" && outcome.reply !== null
        ? ({ _tag: "Reply", text: outcome.reply } satisfies OperationOutcome)
        : ({ _tag: "AlreadyAnswered" } satisfies OperationOutcome)
    })

  const lifecycle = (tag: "Pause" | "Resume" | "Cancel") =>
    defineOperation({
      mutating: true,
      body: SubscriptionRef,
      run: ({ subscriptionId }, context) =>
        change(subscriptionId, { _tag: tag, by: context.by }, context, subscriptionReply(context.requestId)),
    })

  // The kind is checked before the rest of the body so that a kind this version does not
  // offer gets one clear message instead of a list of fields it does not have.
  const create: Operation = {
    mutating: true,
    decode: (raw) => {
      const kind = decodeKind(raw)
      if (kind._tag === "Some" && kind.value.kind !== "scheduled") {
        return Effect.fail(
          invalidField(
            "body.kind",
            `"${kind.value.kind}" autopayments are not available in this version of the engine; use "scheduled"`,
          ),
        )
      }
      return decodeScheduledCreate(raw)
    },
    // The table only passes bodies this operation's own decode produced.
    run: (body, context) => createScheduled(body as typeof ScheduledCreate.Type, context),
  }

  const createScheduled = (body: typeof ScheduledCreate.Type, context: RequestContext) =>
    Effect.gen(function* () {
      let template: Template
      let newTemplate: Template | null = null
      if (body.templateId !== undefined) {
        const found = isUuid(body.templateId)
          ? yield* templates.get(body.templateId, context.clientId)
          : undefined
        if (found === undefined)
          return yield* new NotFound({ message: `template ${body.templateId} not found` })
        template = found
      } else {
        const input: TemplateInput = body.template as TemplateInput
        newTemplate = {
          id: newId(),
          clientId: context.clientId,
          name: input.name,
          providerId: input.providerId,
          account: input.account,
          source: input.source,
          fields: input.fields ?? {},
          createdAt: Date.now(),
          createdChannel: context.channel,
          createdTerminal: context.terminal,
        }
        template = newTemplate
      }
      const now = yield* clock.now
      const transition = ScheduledPolicy.create(
        {
          id: newId(),
          clientId: context.clientId,
          templateId: template.id,
          payee: { providerId: template.providerId, account: template.account, source: template.source },
          terms: { amount: body.amount, schedule: normalizeSchedule(body.schedule) },
          by: context.by,
          createdAt: Date.now(),
        },
        now,
        config,
      )
      if (transition.subscription.state.cursor === null) {
        return yield* new ValidationFailed({
          message: `the schedule has no occurrence after the engine's current time ${Timestamp.format(now)}`,
          details: [
            { path: "body.schedule", message: "has no future occurrence (check startDate and endDate)" },
          ],
        })
      }
      const reply = subscriptionReply(context.requestId)(transition.subscription)
      const outcome = yield* committer.create({
        transition,
        template: newTemplate,
        request: { ...requestKey(context), reply },
      })
      return outcome === "Created"
        ? ({ _tag: "Reply", text: reply } satisfies OperationOutcome)
        : ({ _tag: "AlreadyAnswered" } satisfies OperationOutcome)
    })

  const get = defineOperation({
    mutating: false,
    body: SubscriptionRef,
    run: ({ subscriptionId }, context) =>
      owned(subscriptionId, context.clientId).pipe(
        Effect.map(
          (subscription) => ({ _tag: "Result", result: { subscription: toView(subscription) } }) as const,
        ),
      ),
  })

  const list = defineOperation({
    mutating: false,
    body: ListBody,
    run: (body, context) =>
      Effect.gen(function* () {
        const cursor = yield* decodePageCursorOrFail(body.cursor)
        const page = yield* subscriptions.listByClient(context.clientId, {
          includeHidden: body.includeHidden ?? false,
          limit: body.limit ?? 50,
          cursor,
        })
        return {
          _tag: "Result",
          result: { items: page.items.map(toView), nextCursor: page.nextCursor },
        } as const
      }),
  })

  const update = defineOperation({
    mutating: true,
    body: UpdateBody,
    run: (body, context) =>
      change(
        body.subscriptionId,
        {
          _tag: "Update",
          by: context.by,
          expectedVersion: body.expectedVersion,
          amount: body.amount,
          schedule: body.schedule,
        },
        context,
        subscriptionReply(context.requestId),
      ),
  })

  const skipNext = defineOperation({
    mutating: true,
    body: SubscriptionRef,
    run: ({ subscriptionId }, context) =>
      change(subscriptionId, { _tag: "SkipNext", by: context.by }, context, skipReply(context.requestId)),
  })

  const historyOperation = defineOperation({
    mutating: false,
    body: HistoryBody,
    run: (body, context) =>
      Effect.gen(function* () {
        yield* owned(body.subscriptionId, context.clientId)
        const cursor = body.cursor === undefined ? undefined : decodeHistoryCursor(body.cursor)
        if (body.cursor !== undefined && cursor === undefined) {
          return yield* invalidField("body.cursor", "is not a cursor this engine returned")
        }
        const page = yield* history.page(body.subscriptionId, { limit: body.limit ?? 50, cursor })
        return { _tag: "Result", result: page } as const
      }),
  })

  const preview = defineOperation({
    mutating: false,
    body: PreviewBody,
    run: (body, context) =>
      Effect.gen(function* () {
        const subscription = yield* owned(body.subscriptionId, context.clientId)
        const occurrences = ScheduledPolicy.previewOccurrences(subscription, body.count ?? 5).map(
          (occurrence) => ({
            date: occurrence.date,
            dueAt: Timestamp.format(occurrence.dueAt),
            amount: occurrence.amount,
            willPay: occurrence.willPay,
            reason: occurrence.reason,
          }),
        )
        return { _tag: "Result", result: { subscriptionId: subscription.id, occurrences } } as const
      }),
  })

  return {
    "subscription.create": create,
    "subscription.get": get,
    "subscription.list": list,
    "subscription.update": update,
    "subscription.pause": lifecycle("Pause"),
    "subscription.resume": lifecycle("Resume"),
    "subscription.cancel": lifecycle("Cancel"),
    "subscription.skipNext": skipNext,
    "subscription.history": historyOperation,
    "subscription.preview": preview,
  } satisfies Record<string, Operation>
})
