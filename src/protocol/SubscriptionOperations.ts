/**
 * The `subscription.*` operations. Reads go straight to the committed rows;
 * every change goes through the subscription's actor, the same path ticks
 * and hub results take, so a channel can never race the engine.
 */
import { Effect, Schema } from "effect"
import * as DebtPolicy from "../actors/DebtPolicy.ts"
import { EngineClock } from "../actors/EngineClock.ts"
import type { ActorInput } from "../actors/Inputs.ts"
import { LiveSettings } from "../actors/LiveSettings.ts"
import { Partitions } from "../actors/Partitions.ts"
import * as ScheduledPolicy from "../actors/ScheduledPolicy.ts"
import { type ActorOutcome, SubscriptionActors } from "../actors/SubscriptionActors.ts"
import * as ThresholdPolicy from "../actors/ThresholdPolicy.ts"
import type { Transition } from "../actors/Transition.ts"
import * as Calendar from "../domain/Calendar.ts"
import { invalidField, LimitExceeded, NotFound, ValidationFailed } from "../domain/Errors.ts"
import { isUuid, newId } from "../domain/Ids.ts"
import * as Money from "../domain/Money.ts"
import { NonNegativeMoney, PositiveMoney } from "../domain/Money.ts"
import * as Ranges from "../domain/Ranges.ts"
import {
  DEFAULT_COOLDOWN,
  DEFAULT_POLL_EVERY,
  DEFAULT_TIMEZONE,
  normalizeSchedule,
  ScheduleInput,
  type Subscription,
  type SubscriptionKind,
} from "../domain/Subscription.ts"
import { toView } from "../domain/SubscriptionView.ts"
import { type Template, TemplateInput } from "../domain/Template.ts"
import { Text } from "../domain/Text.ts"
import * as Timestamp from "../domain/Timestamp.ts"
import { EngineConfig } from "../EngineConfig.ts"
import { decodeHistoryCursor, HistoryStore } from "../store/HistoryStore.ts"
import { ProviderRegistry } from "../store/ProviderRegistry.ts"
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
import { checkProvider } from "./Providers.ts"

const SubscriptionId = Schema.String.check(Schema.isMinLength(1), Schema.isMaxLength(100))
const SubscriptionRef = Schema.Struct({ subscriptionId: SubscriptionId })

const TemplateChoice = {
  templateId: Schema.optionalKey(Schema.String.check(Schema.isMinLength(1), Schema.isMaxLength(100))),
  template: Schema.optionalKey(TemplateInput),
}

const exactlyOneTemplate = Schema.makeFilter(
  (body: { readonly templateId?: string; readonly template?: unknown }) =>
    (body.templateId === undefined) === (body.template === undefined)
      ? {
          path: ["templateId"],
          issue: "give exactly one of templateId (a saved template) or template (a new one)",
        }
      : undefined,
)

const ScheduledCreate = Schema.Struct({
  kind: Schema.Literal("scheduled"),
  ...TemplateChoice,
  amount: PositiveMoney,
  schedule: ScheduleInput,
}).check(exactlyOneTemplate)

const ThresholdCreate = Schema.Struct({
  kind: Schema.Literal("threshold"),
  ...TemplateChoice,
  amount: PositiveMoney,
  threshold: NonNegativeMoney,
  cooldown: Schema.optionalKey(Ranges.durationWithin(Ranges.cooldown)),
}).check(
  exactlyOneTemplate,
  Schema.makeFilter((body) =>
    body.threshold.currency !== body.amount.currency
      ? {
          path: ["threshold", "currency"],
          issue: `must be the currency of amount (${body.amount.currency})`,
        }
      : undefined,
  ),
)

const DebtCreate = Schema.Struct({
  kind: Schema.Literal("debt"),
  ...TemplateChoice,
  limit: PositiveMoney,
  pollEvery: Schema.optionalKey(Ranges.durationWithin(Ranges.pollEvery)),
}).check(exactlyOneTemplate)

const decodeCreate = {
  scheduled: bodyDecoder(ScheduledCreate),
  threshold: bodyDecoder(ThresholdCreate),
  debt: bodyDecoder(DebtCreate),
}

type CreateBody = typeof ScheduledCreate.Type | typeof ThresholdCreate.Type | typeof DebtCreate.Type

const KnownKind = Schema.Struct({ kind: Schema.Literals(["scheduled", "threshold", "debt"]) })
const decodeKind = Schema.decodeUnknownOption(KnownKind)

const ReminderRef = Schema.Struct({ reminderId: SubscriptionId })

const AcceptBody = Schema.Struct({
  reminderId: SubscriptionId,
  schedule: ScheduleInput,
  amount: Schema.optionalKey(PositiveMoney),
  templateName: Schema.optionalKey(Text(100)),
})

const ConfirmBody = Schema.Struct({
  subscriptionId: SubscriptionId,
  paymentId: Schema.String.check(Schema.isMinLength(1), Schema.isMaxLength(100)),
})

const UpdateBody = Schema.Struct({
  subscriptionId: SubscriptionId,
  expectedVersion: Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)),
  amount: Schema.optionalKey(PositiveMoney),
  schedule: Schema.optionalKey(ScheduleInput),
  threshold: Schema.optionalKey(NonNegativeMoney),
  cooldown: Schema.optionalKey(Ranges.durationWithin(Ranges.cooldown)),
  limit: Schema.optionalKey(PositiveMoney),
  pollEvery: Schema.optionalKey(Ranges.durationWithin(Ranges.pollEvery)),
}).check(
  Schema.makeFilter((body) =>
    [body.amount, body.schedule, body.threshold, body.cooldown, body.limit, body.pollEvery].every(
      (field) => field === undefined,
    )
      ? {
          path: ["amount"],
          issue:
            "give at least one term to change: amount, schedule (scheduled), threshold, cooldown (threshold), limit, pollEvery (debt)",
        }
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
    skippedOccurrence:
      subscription.kind === "scheduled"
        ? (subscription.state.skip[subscription.state.skip.length - 1] ?? null)
        : null,
    subscription: toView(subscription),
  })

const confirmReply = (requestId: string, paymentId: string) => (subscription: Subscription) =>
  okReply(requestId, { confirmedPaymentId: paymentId.toLowerCase(), subscription: toView(subscription) })

/** The subscription operations, bound to the services they use. */
export const subscriptionOperations = Effect.gen(function* () {
  const config = yield* EngineConfig
  const clock = yield* EngineClock
  const actors = yield* SubscriptionActors
  const partitions = yield* Partitions
  const subscriptions = yield* SubscriptionStore
  const templates = yield* TemplateStore
  const history = yield* HistoryStore
  const committer = yield* TransitionCommitter
  const providers = yield* ProviderRegistry
  const live = yield* LiveSettings

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

  /**
   * Refuses schedule dates too far after the engine's current date, which the body's schema cannot
   * know; before the first tick ever the wall clock stands in for it.
   */
  const checkScheduleDates = (schedule: ScheduleInput | undefined) =>
    Effect.gen(function* () {
      if (schedule === undefined) return
      const now = yield* clock.now
      const today = Calendar.instantToLocalDate(
        now > 0 ? now : Date.now(),
        schedule.timezone ?? DEFAULT_TIMEZONE,
      )
      const details = Ranges.scheduleDateIssues(schedule, today, "body.schedule")
      if (details.length === 0) return
      return yield* new ValidationFailed({
        message: `the request body is invalid: ${details.map((issue) => `${issue.path} ${issue.message}`).join("; ")}`,
        details,
      })
    })

  const lifecycle = (tag: "Pause" | "Resume" | "Cancel") =>
    defineOperation({
      mutating: true,
      body: SubscriptionRef,
      run: ({ subscriptionId }, context) =>
        change(subscriptionId, { _tag: tag, by: context.by }, context, subscriptionReply(context.requestId)),
    })

  // The kind is read first so each kind's body is checked against its own schema, and a body
  // without a known kind gets one clear message instead of every field of every kind.
  const create: Operation = {
    mutating: true,
    decode: (raw) => {
      // Not an object at all: say so, rather than blame a `kind` the body cannot even have.
      if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
        return Effect.fail(invalidField("body", "must be an object with a kind and its terms"))
      }
      const kind = decodeKind(raw)
      if (kind._tag === "None") {
        return Effect.fail(invalidField("body.kind", 'must be one of "scheduled", "threshold" or "debt"'))
      }
      return decodeCreate[kind.value.kind](raw)
    },
    // The table only passes bodies this operation's own decode produced.
    run: (body, context) => createSubscription(body as CreateBody, context),
  }

  /** The saved template the body names, or the new one it brings (saved with the subscription). */
  const templateFor = (body: CreateBody, context: RequestContext) =>
    Effect.gen(function* () {
      if (body.templateId !== undefined) {
        const found = isUuid(body.templateId)
          ? yield* templates.get(body.templateId, context.clientId)
          : undefined
        if (found === undefined)
          return yield* new NotFound({ message: `template ${body.templateId} not found` })
        return { template: found, newTemplate: null }
      }
      const input = body.template as TemplateInput
      const newTemplate: Template = {
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
      return { template: newTemplate, newTemplate }
    })

  /** A payment amount no payment of this kind could ever be sent with is refused up front. */
  const checkPaymentCap = (kind: Exclude<SubscriptionKind, "reminder">, amount: Money.Money) => {
    const cap = live.current().limits.paymentMax[kind][amount.currency]
    return cap !== undefined && amount.value > cap
      ? Effect.fail(
          new LimitExceeded({
            message: `amount ${Money.format(amount)} is above the bank's cap of ${Money.format({ value: cap, currency: amount.currency })} for one ${kind} payment`,
          }),
        )
      : Effect.void
  }

  const createSubscription = (body: CreateBody, context: RequestContext) =>
    Effect.gen(function* () {
      const { template, newTemplate } = yield* templateFor(body, context)
      yield* checkProvider(
        providers,
        template.providerId,
        body.templateId === undefined ? "body.template.providerId" : "body.templateId",
        body.kind,
      )
      const now = yield* clock.now
      const common = {
        id: partitions.newOwnedId(),
        clientId: context.clientId,
        templateId: template.id,
        payee: { providerId: template.providerId, account: template.account, source: template.source },
        by: context.by,
        createdAt: Date.now(),
      }
      let transition: Transition
      switch (body.kind) {
        case "scheduled": {
          yield* checkScheduleDates(body.schedule)
          yield* checkPaymentCap("scheduled", body.amount)
          const scheduled = ScheduledPolicy.create(
            { ...common, terms: { amount: body.amount, schedule: normalizeSchedule(body.schedule) } },
            now,
            config,
          )
          transition = scheduled
          if (scheduled.subscription.state.cursor === null) {
            return yield* new ValidationFailed({
              message: `the schedule has no occurrence after the engine's current time ${Timestamp.format(now)}`,
              details: [
                { path: "body.schedule", message: "has no future occurrence (check startDate and endDate)" },
              ],
            })
          }
          break
        }
        case "threshold":
          yield* checkPaymentCap("threshold", body.amount)
          transition = ThresholdPolicy.create(
            {
              ...common,
              terms: {
                amount: body.amount,
                threshold: body.threshold,
                cooldown: body.cooldown ?? DEFAULT_COOLDOWN,
              },
            },
            now,
          )
          break
        case "debt":
          transition = DebtPolicy.create(
            { ...common, terms: { limit: body.limit, pollEvery: body.pollEvery ?? DEFAULT_POLL_EVERY } },
            now,
          )
          break
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

  /** The terms `subscription.update` may change, per kind. */
  const updatableTerms: Readonly<Record<SubscriptionKind, ReadonlyArray<string>>> = {
    scheduled: ["amount", "schedule"],
    threshold: ["amount", "threshold", "cooldown"],
    debt: ["limit", "pollEvery"],
    reminder: [],
  }

  /** Refuses terms the subscription's kind does not have (all of them at once), and amounts over the cap. */
  const checkUpdateFits = (body: typeof UpdateBody.Type, context: RequestContext) =>
    Effect.gen(function* () {
      const subscription = yield* owned(body.subscriptionId, context.clientId)
      const allowed = updatableTerms[subscription.kind]
      const foreign = ["amount", "schedule", "threshold", "cooldown", "limit", "pollEvery"].filter(
        (field) => body[field as keyof typeof body] !== undefined && !allowed.includes(field),
      )
      if (foreign.length > 0) {
        const message =
          allowed.length === 0
            ? "a reminder has no terms to change: answer it with reminder.accept or reminder.decline"
            : `is not a term of a ${subscription.kind} autopayment (it has ${allowed.join(", ")})`
        return yield* new ValidationFailed({
          message: `body has terms a ${subscription.kind} autopayment does not have: ${foreign.join(", ")}`,
          details: foreign.map((field) => ({ path: `body.${field}`, message })),
        })
      }
      if (body.amount !== undefined && subscription.kind !== "reminder")
        yield* checkPaymentCap(subscription.kind, body.amount)
    })

  const update = defineOperation({
    mutating: true,
    body: UpdateBody,
    run: (body, context) =>
      Effect.andThen(
        Effect.andThen(checkScheduleDates(body.schedule), checkUpdateFits(body, context)),
        change(
          body.subscriptionId,
          {
            _tag: "Update",
            by: context.by,
            expectedVersion: body.expectedVersion,
            amount: body.amount,
            schedule: body.schedule,
            threshold: body.threshold,
            cooldown: body.cooldown,
            limit: body.limit,
            pollEvery: body.pollEvery,
          },
          context,
          subscriptionReply(context.requestId),
        ),
      ),
  })

  const acceptReminder = defineOperation({
    mutating: true,
    body: AcceptBody,
    run: (body, context) =>
      Effect.andThen(
        checkScheduleDates(body.schedule),
        change(
          body.reminderId,
          {
            _tag: "AcceptReminder",
            by: context.by,
            schedule: body.schedule,
            amount: body.amount,
            template: {
              id: newId(),
              clientId: context.clientId,
              name: body.templateName ?? "",
              fields: {},
              createdAt: Date.now(),
              createdChannel: context.channel,
              createdTerminal: context.terminal,
            },
          },
          context,
          subscriptionReply(context.requestId),
        ),
      ),
  })

  const declineReminder = defineOperation({
    mutating: true,
    body: ReminderRef,
    run: (body, context) =>
      change(
        body.reminderId,
        { _tag: "DeclineReminder", by: context.by },
        context,
        subscriptionReply(context.requestId),
      ),
  })

  const confirm = defineOperation({
    mutating: true,
    body: ConfirmBody,
    run: (body, context) =>
      change(
        body.subscriptionId,
        { _tag: "Confirm", by: context.by, paymentId: body.paymentId },
        context,
        confirmReply(context.requestId, body.paymentId),
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
        if (subscription.kind !== "scheduled") {
          const note = {
            threshold:
              "a threshold autopayment has no calendar: it pays when the provider reports a balance below the threshold",
            debt: "a debt autopayment has no calendar: it pays the bills the provider reports at each poll, up to the limit",
            reminder: "a reminder never pays: it offers to repeat a one-off payment (see nextOfferAt)",
          }[subscription.kind]
          return {
            _tag: "Result",
            result: { subscriptionId: subscription.id, occurrences: [], note },
          } as const
        }
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
    "payment.confirm": confirm,
    "reminder.accept": acceptReminder,
    "reminder.decline": declineReminder,
  } satisfies Record<string, Operation>
})
