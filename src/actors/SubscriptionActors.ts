/**
 * One actor per subscription: a bounded mailbox and one fiber that handles
 * the subscription's messages one at a time, in the order they arrived.
 *
 * An actor is created on demand when a message for its subscription arrives,
 * loads its state from Postgres (or takes the row the sender just read), and
 * is passivated after `actorIdle` without messages: the RcMap holding actors
 * counts senders as references and closes an actor's scope once it has been
 * idle that long, so memory is bounded by how many subscriptions are busy,
 * not by how many exist.
 *
 * The actor keeps its state in memory only as a cache of the row it last
 * wrote. Every change goes through the group committer fenced by the
 * revision the actor computed it from; if another writer got there first
 * the actor reloads and decides again.
 */
import { Context, Deferred, Effect, Exit, Layer, Queue, RcMap, Result } from "effect"
import { NotFound } from "../domain/Errors.ts"
import type { Subscription } from "../domain/Subscription.ts"
import { EngineConfig } from "../EngineConfig.ts"
import { SubscriptionStore } from "../store/SubscriptionStore.ts"
import { type InboxRecord, TransitionCommitter } from "../store/TransitionCommitter.ts"
import { HubStatus } from "../streams/HubStatus.ts"
import type { PaymentStatusReply } from "../streams/Messages.ts"
import { EngineClock } from "./EngineClock.ts"
import type { ActorInput, PolicySettings } from "./Inputs.ts"
import * as ScheduledPolicy from "./ScheduledPolicy.ts"
import type { Transition } from "./Transition.ts"

/** A protocol request whose reply must be stored with the change it makes. */
export interface IdempotentRequest {
  readonly channel: string
  readonly requestId: string
  readonly clientId: string
  readonly operation: string
  readonly requestHash: string
  /** Renders the reply from the subscription as it will be after the change. */
  readonly render: (subscription: Subscription) => string
}

/** How a message is delivered to an actor. */
export interface SendOptions {
  /** A row the sender has just read, saving the actor a load if it is not live. */
  readonly primed?: Subscription
  /** Only this client may touch the subscription; anyone else gets NotFound. */
  readonly clientId?: string
  readonly request?: IdempotentRequest
  readonly inbox?: InboxRecord
}

/** What handling a message came to. */
export type ActorOutcome =
  | {
      readonly _tag: "Applied"
      readonly subscription: Subscription
      readonly transition: Transition
      readonly reply: string | null
    }
  /** The same protocol request was already answered; the stored reply stands. */
  | { readonly _tag: "AlreadyAnswered" }

/** What an actor may refuse a message with. */
export type ActorRefusal = ScheduledPolicy.PolicyRefusal | NotFound

interface Envelope {
  readonly input: ActorInput
  readonly options: SendOptions
  readonly done: Deferred.Deferred<ActorOutcome, ActorRefusal>
}

interface ActorHandle {
  readonly mailbox: Queue.Queue<Envelope>
}

const MAX_RACES = 8

/** Routes messages to subscription actors. */
export class SubscriptionActors extends Context.Service<
  SubscriptionActors,
  {
    /** Delivers `input` to the subscription's actor and waits until it is handled and durable. */
    readonly send: (
      id: string,
      input: ActorInput,
      options?: SendOptions,
    ) => Effect.Effect<ActorOutcome, ActorRefusal>
    /** How many actors are live right now. */
    readonly live: Effect.Effect<number>
  }
>()("rp/actors/SubscriptionActors") {
  static readonly layer = Layer.effect(
    SubscriptionActors,
    Effect.gen(function* () {
      const config = yield* EngineConfig
      const store = yield* SubscriptionStore
      const committer = yield* TransitionCommitter
      const clock = yield* EngineClock
      const hubStatus = yield* HubStatus
      const settings: PolicySettings = config
      let liveActors = 0

      const withStatusReplies = (subscription: Subscription, input: ActorInput, now: number) =>
        Effect.gen(function* () {
          if (input._tag !== "Wake") return input
          const waiting = ScheduledPolicy.attemptsAwaitingStatus(subscription, now)
          if (waiting.length === 0) return input
          const replies = yield* Effect.forEach(
            waiting,
            (attempt) =>
              hubStatus
                .query(attempt.paymentId)
                .pipe(
                  Effect.map((reply): readonly [string, PaymentStatusReply | "unreachable"] => [
                    attempt.paymentId,
                    reply,
                  ]),
                ),
            { concurrency: 4 },
          )
          return { ...input, statusReplies: new Map(replies) }
        })

      const runActor = (id: string, mailbox: Queue.Queue<Envelope>) =>
        Effect.gen(function* () {
          // The actor's cache of its row as last written; dropped whenever something went wrong.
          let cached: Subscription | undefined

          const handle = (envelope: Envelope) =>
            Effect.gen(function* () {
              const { input, options } = envelope
              let subscription = cached ?? options.primed ?? (yield* store.load(id))
              if (
                subscription === undefined ||
                (options.clientId !== undefined && subscription.clientId !== options.clientId)
              ) {
                return yield* new NotFound({ message: `subscription ${id} not found` })
              }
              for (let race = 0; race < MAX_RACES; race++) {
                const now = yield* clock.now
                const prepared = yield* withStatusReplies(subscription, input, now)
                const decided = ScheduledPolicy.decide(subscription, prepared, now, settings)
                if (Result.isFailure(decided)) {
                  cached = subscription
                  return yield* Effect.fail(decided.failure)
                }
                const transition = decided.success
                const reply = options.request?.render(transition.subscription) ?? null
                if (!transition.changed && options.request === undefined) {
                  cached = subscription
                  return { _tag: "Applied", subscription, transition, reply } as const
                }
                const outcome = yield* committer.commit({
                  transition,
                  expectedRevision: subscription.revision,
                  request:
                    options.request === undefined || reply === null
                      ? null
                      : {
                          channel: options.request.channel,
                          requestId: options.request.requestId,
                          clientId: options.request.clientId,
                          operation: options.request.operation,
                          requestHash: options.request.requestHash,
                          reply,
                        },
                  inbox: options.inbox ?? null,
                })
                switch (outcome._tag) {
                  case "Committed": {
                    const written = { ...transition.subscription, revision: subscription.revision + 1 }
                    cached = written
                    return { _tag: "Applied", subscription: written, transition, reply } as const
                  }
                  case "DuplicateRequest":
                    cached = subscription
                    return { _tag: "AlreadyAnswered" } as const
                  case "Stale": {
                    const fresh = yield* store.loadFresh(id)
                    if (fresh === undefined)
                      return yield* new NotFound({ message: `subscription ${id} not found` })
                    subscription = fresh
                  }
                }
              }
              return yield* Effect.die(
                new Error(`subscription ${id}: lost the write race ${MAX_RACES} times in a row`),
              )
            })

          for (;;) {
            const envelope = yield* Queue.take(mailbox)
            const exit = yield* Effect.exit(handle(envelope))
            if (Exit.isFailure(exit) && !Exit.hasFails(exit)) cached = undefined
            yield* Deferred.done(envelope.done, exit)
          }
        })

      const actors = yield* RcMap.make({
        lookup: (id: string) =>
          Effect.gen(function* () {
            const mailbox = yield* Queue.bounded<Envelope>(config.mailboxCapacity)
            liveActors += 1
            yield* Effect.addFinalizer(() =>
              Effect.sync(() => {
                liveActors -= 1
              }),
            )
            yield* Effect.forkScoped(runActor(id, mailbox))
            return { mailbox } satisfies ActorHandle
          }),
        idleTimeToLive: config.actorIdleMs,
      })

      yield* Effect.logInfo("actors ready").pipe(
        Effect.annotateLogs({ mailboxCapacity: config.mailboxCapacity, idleMs: config.actorIdleMs }),
      )

      return SubscriptionActors.of({
        send: (id, input, options = {}) =>
          Effect.scoped(
            Effect.gen(function* () {
              const actor = yield* RcMap.get(actors, id)
              const done = yield* Deferred.make<ActorOutcome, ActorRefusal>()
              yield* Queue.offer(actor.mailbox, { input, options, done })
              return yield* Deferred.await(done)
            }),
          ),
        live: Effect.sync(() => liveActors),
      })
    }),
  )
}
