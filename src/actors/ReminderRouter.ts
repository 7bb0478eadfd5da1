/**
 * Turning one-off payments into reminders (contract 3.8).
 *
 * For every `hub.payment.completed`: if the provider is registered as
 * periodic and the client has no live autopayment to that payee, the
 * client's reminder for the payee hears of the payment (and starts its period
 * again), or one is created, hidden, due one period later. A declined
 * reminder stays declined: its actor notes the payment and reminds nobody.
 *
 * The payments of one batch are handled one after another (they are rare
 * next to autopayments), but batches may overlap and instances may race, so
 * two payments to one payee can both find "no reminder yet". The unique index
 * on reminders per client and payee settles it: the loser's insert fails, its
 * message is redelivered, and then it finds the reminder.
 */
import { Cause, Context, Effect, Exit, Layer } from "effect"
import { ProviderRegistry } from "../store/ProviderRegistry.ts"
import { SubscriptionStore } from "../store/SubscriptionStore.ts"
import { TransitionCommitter } from "../store/TransitionCommitter.ts"
import { type Delivery, done, type HandlerVerdict } from "../streams/DurableConsumer.ts"
import type { HubPaymentCompleted } from "../streams/Messages.ts"
import { EngineClock } from "./EngineClock.ts"
import { Partitions } from "./Partitions.ts"
import * as ReminderPolicy from "./ReminderPolicy.ts"
import { SubscriptionActors } from "./SubscriptionActors.ts"
import { engineActor } from "./Transition.ts"

/** Why a payment made no reminder, for the log. */
type Skip = "provider not periodic" | "client has an autopayment to this payee"

/**
 * A refusal by the reminder (a payment that is not its payee's) can never apply: dead-lettered.
 * Anything else is retried by redelivery.
 */
const verdictOf = <E extends { readonly message: string }>(
  exit: Exit.Exit<HandlerVerdict, E>,
): Exit.Exit<HandlerVerdict, unknown> => {
  if (Exit.isSuccess(exit)) return exit
  const refusal = Cause.findErrorOption(exit.cause)
  return refusal._tag === "Some"
    ? Exit.succeed({ _tag: "DeadLetter", reason: `payment could not be applied: ${refusal.value.message}` })
    : Exit.failCause(exit.cause)
}

/** The reminder router. */
export class ReminderRouter extends Context.Service<
  ReminderRouter,
  { readonly route: (batch: ReadonlyArray<Delivery<HubPaymentCompleted>>) => Effect.Effect<void> }
>()("rp/actors/ReminderRouter") {
  static readonly layer = Layer.effect(
    ReminderRouter,
    Effect.gen(function* () {
      const providers = yield* ProviderRegistry
      const subscriptions = yield* SubscriptionStore
      const actors = yield* SubscriptionActors
      const partitions = yield* Partitions
      const committer = yield* TransitionCommitter
      const clock = yield* EngineClock

      const handle = (payment: HubPaymentCompleted) =>
        Effect.gen(function* () {
          const lookup = yield* providers.lookup(payment.providerId)
          if (lookup._tag !== "Registered" || !lookup.provider.periodic)
            return "provider not periodic" as Skip
          const existing = yield* subscriptions.forPayee(
            payment.clientId,
            payment.providerId,
            payment.account,
          )
          const live = (status: string) => status === "active" || status === "paused"
          if (existing.some((s) => s.kind !== "reminder" && live(s.status)))
            return "client has an autopayment to this payee" as Skip
          const reminder = existing.find((s) => s.kind === "reminder")
          if (reminder !== undefined) {
            yield* actors.send(reminder.id, { _tag: "PaymentCompleted", payment })
            return undefined
          }
          const transition = ReminderPolicy.create(
            {
              id: partitions.newOwnedId(),
              clientId: payment.clientId,
              payee: { providerId: payment.providerId, account: payment.account, source: payment.source },
              terms: { remindAfter: lookup.provider.remindAfter },
              // The engine makes a reminder; the payment's channel is where it came from.
              by: { ...engineActor, channel: payment.channel },
              createdAt: Date.now(),
              payment,
            },
            yield* clock.now,
          )
          yield* committer.create({ transition, template: null, request: null })
          return undefined
        })

      return ReminderRouter.of({
        route: (batch) =>
          Effect.forEach(
            batch,
            (delivery) =>
              handle(delivery.message).pipe(
                Effect.tap((skip) =>
                  skip === undefined
                    ? Effect.void
                    : Effect.logDebug(`no reminder: ${skip}`).pipe(
                        Effect.annotateLogs({ paymentId: delivery.message.paymentId }),
                      ),
                ),
                Effect.as(done as HandlerVerdict),
                Effect.exit,
                Effect.map((exit) => delivery.settle(verdictOf(exit))),
              ),
            { discard: true },
          ),
      })
    }),
  )
}
