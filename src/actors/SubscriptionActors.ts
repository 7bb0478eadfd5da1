/**
 * One actor per subscription: a bounded mailbox and, while it holds messages,
 * one fiber that handles them one at a time, in the order they arrived.
 *
 * An actor is created on demand when a message for its subscription arrives,
 * loads its state from Postgres (or takes the row the sender just read), and
 * is passivated once it has been idle for `actorIdle`: memory follows how many
 * subscriptions are busy, not how many exist.
 *
 * This is the "entity" idea rather than an RcMap: a month-start burst sends a
 * hundred thousand messages in seconds, and measured here an RcMap round trip
 * (scope, reference count, context copy, deferred) costs 40-90 µs a message,
 * more than deciding and writing the payment. Here the registry is a plain
 * map; a sender's message is put into the mailbox synchronously when there is
 * room, and completion is a callback, so the only fiber switch per message is
 * the actor's own. Passivation cannot race a sender: a sender puts its message
 * into the mailbox in the same synchronous step that finds the actor in the
 * map, and passivation removes only actors with an empty mailbox and no fiber.
 *
 * The actor keeps its state in memory only as a cache of the row it last
 * wrote. Every change goes through the group committer fenced by the
 * revision the actor computed it from; if another writer got there first
 * the actor reloads and decides again.
 */
import {
  Cause,
  Context,
  Deferred,
  Duration,
  Effect,
  Exit,
  FiberSet,
  Layer,
  Result,
  Schedule,
  Tracer,
} from "effect"
import { NotFound } from "../domain/Errors.ts"
import type { Subscription } from "../domain/Subscription.ts"
import { EngineConfig } from "../EngineConfig.ts"
import { formatTraceparent } from "../observability/TraceContext.ts"
import { PaymentStore } from "../store/PaymentStore.ts"
import { SubscriptionStore } from "../store/SubscriptionStore.ts"
import { type InboxRecord, TransitionCommitter } from "../store/TransitionCommitter.ts"
import { done, type HandlerVerdict } from "../streams/DurableConsumer.ts"
import { HubStatus } from "../streams/HubStatus.ts"
import { InternalAuth } from "../streams/InternalAuth.ts"
import type { PaymentStatusReply } from "../streams/Messages.ts"
import { Topology } from "../streams/Topology.ts"
import { EngineClock } from "./EngineClock.ts"
import {
  decodeForwardBatch,
  decodeReplies,
  encodeForward,
  encodeForwardBatch,
  encodeReplies,
  exitOfReply,
  type ForwardReply,
  replyOf,
} from "./Forwarding.ts"
import type { ActorInput } from "./Inputs.ts"
import { LimitCheck, monthOf, tracksMonthlySpend } from "./Limits.ts"
import { LiveSettings } from "./LiveSettings.ts"
import { reasonOf, resultMismatch } from "./Matching.ts"
import { Partitions, partitionOf } from "./Partitions.ts"
import type { PolicyRefusal } from "./PaymentRun.ts"
import * as Policy from "./Policy.ts"
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
  /** Sent here by another instance as this partition's owner: never forwarded again. */
  readonly forwarded?: boolean
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
  /** The instance owning the subscription's partition handled it (and it is durable there). */
  | { readonly _tag: "Forwarded" }

/** What an actor may refuse a message with. */
export type ActorRefusal = PolicyRefusal | NotFound

/** How a handled message ended: the outcome, a refusal, or a defect. */
export type ActorExit = Exit.Exit<ActorOutcome, ActorRefusal>

/**
 * What a stream consumer does with a message its actor handled: acknowledge it when applied,
 * dead-letter it when refused (it can never apply), redeliver it after a defect.
 */
export const verdictOf = (exit: ActorExit, what: string): Exit.Exit<HandlerVerdict, unknown> => {
  if (Exit.isSuccess(exit)) return Exit.succeed(done)
  const refusal = Cause.findErrorOption(exit.cause)
  return refusal._tag === "Some"
    ? Exit.succeed({ _tag: "DeadLetter", reason: `${what} could not be applied: ${refusal.value.message}` })
    : Exit.failCause(exit.cause)
}

interface Envelope {
  readonly input: ActorInput
  readonly options: SendOptions
  readonly complete: (exit: ActorExit) => void
  /** The span of the request that sent the message, if it was sent from one (never on the burst path). */
  readonly span?: Tracer.AnySpan
}

interface Actor {
  readonly id: string
  /** Messages not yet taken, oldest first; at most `mailboxCapacity`. */
  readonly mailbox: Array<Envelope>
  /** Senders waiting for room in a full mailbox, resumed one per message taken. */
  readonly waitingForRoom: Array<() => void>
  /** The row as this actor last wrote or read it; dropped whenever something went wrong. */
  cached: Subscription | undefined
  /**
   * A fiber is draining the mailbox: set when a message arrives at an idle actor, cleared once the
   * mailbox is empty and the last message handled. A non-empty mailbox always means busy.
   */
  busy: boolean
  lastActive: number
}

const MAX_RACES = 8
// A forwarded batch stays well under NATS's default 1 MiB max_payload.
const MAX_FORWARD_BATCH = 500
const MAX_FORWARD_BYTES = 256 * 1024

/** A message on its way to its partition's owner. */
interface Forward {
  readonly id: string
  readonly envelope: Envelope
  readonly encoded: string
}

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
    /**
     * Puts `input` into the actor's mailbox (waiting only if it is full) and returns;
     * `complete` is called once it is handled and durable. For senders that deliver
     * many messages at once: the sweep, the stream consumers.
     */
    readonly tell: (
      id: string,
      input: ActorInput,
      options: SendOptions,
      complete: (exit: ActorExit) => void,
    ) => Effect.Effect<void>
    /** How many actors are live right now. */
    readonly live: Effect.Effect<number>
    /** Handles a message another instance forwarded to this partition owner; `respond` gets the reply. */
    readonly receiveForwarded: (message: Uint8Array, respond: (reply: Uint8Array) => void) => void
    /**
     * Waits until the actors of `partitions` have handled what they hold, then stops them (before their
     * partitions are given up). Gives up waiting after `withinMs`: revision fencing keeps a straggler safe.
     */
    readonly evict: (partitions: ReadonlySet<number>, withinMs: number) => Effect.Effect<number>
    /** Messages waiting in every live actor's mailbox (read when metrics are scraped). */
    readonly mailboxDepth: Effect.Effect<number>
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
      const payments = yield* PaymentStore
      const partitions = yield* Partitions
      const { subjects } = yield* Topology
      const internal = yield* InternalAuth
      // A forward unanswered for this long is handled here instead (well within the sender's ack wait).
      const forwardTimeoutMs = Math.max(1_000, Math.floor(config.consumerAckWaitMs / 2))
      // Limits and the retry schedule may be changed by an admin while the engine runs: read per message.
      const live = yield* LiveSettings

      /**
       * The limits a decision works with: when a monthly limit applies to the subscription's
       * currency and the message may pay, the client's spend this month is read first (the
       * committer checks it again under a lock).
       */
      const limitsFor = (
        subscription: Subscription,
        input: ActorInput,
        now: number,
      ): Effect.Effect<LimitCheck> => {
        const { limits } = live.current()
        // Plain functions rather than generators: this runs for every message of a burst.
        if (!tracksMonthlySpend(limits, subscription.currency) || !Policy.mayPay(input)) {
          return Effect.succeed(new LimitCheck(limits, subscription, null))
        }
        const month = monthOf(now, limits.clientTimeZone)
        return payments
          .monthlySpend(subscription.clientId, month, subscription.currency)
          .pipe(Effect.map((spent) => new LimitCheck(limits, subscription, { month, spent })))
      }

      /**
       * What the policy needs beyond the message: for a wake, the hub's answers about
       * overdue attempts; for a result about an attempt no longer open, the status recorded
       * now (the router's reading may predate an earlier copy being applied, and only a
       * fresh one can tell a redelivery from a contradiction, with what the payment paid); for a debt answer, what was
       * paid before for each bill in it, by this subscription or any other.
       */
      const prepare = (
        subscription: Subscription,
        input: ActorInput,
        now: number,
      ): Effect.Effect<ActorInput> => {
        if (input._tag === "DebtResponse") {
          const billIds = (input.response.debts ?? []).map((bill) => bill.billId)
          return payments
            .latestAttempts(subscription.payee, billIds)
            .pipe(Effect.map((bills) => ({ ...input, bills })))
        }
        if (subscription.kind === "reminder" && (input._tag === "Wake" || input._tag === "AcceptReminder")) {
          // An autopayment the client set up since makes the reminder pointless (and a second one wrong).
          return store
            .forPayee(subscription.clientId, subscription.payee.providerId, subscription.payee.account)
            .pipe(
              Effect.map((payee) => ({
                ...input,
                autopaymentToPayee: payee.some(
                  (other) =>
                    other.kind !== "reminder" && (other.status === "active" || other.status === "paused"),
                ),
              })),
            )
        }
        const releasing = input._tag === "Confirm" || input._tag === "Update" || input._tag === "Resume"
        if (subscription.kind === "debt" && releasing && subscription.state.held.length > 0) {
          const billIds = subscription.state.held.map((held) => held.occurrence)
          return payments
            .latestAttempts(subscription.payee, billIds)
            .pipe(Effect.map((bills) => ({ ...input, bills })))
        }
        if (input._tag === "HubResult") {
          const open = subscription.state.open.some((attempt) => attempt.paymentId === input.result.paymentId)
          if (open) return Effect.succeed(input)
          return payments.recorded(input.result.paymentId).pipe(
            Effect.map((recorded) =>
              recorded === undefined
                ? input
                : {
                    ...input,
                    recordedStatus: recorded.status,
                    settled: {
                      occurrence: recorded.occurrence,
                      attempt: recorded.attempt,
                      amount: recorded.amount,
                      spendMonth: recorded.spendMonth,
                      occurrencePaidBy: recorded.occurrencePaidBy,
                    },
                  },
            ),
          )
        }
        if (input._tag !== "Wake") return Effect.succeed(input)
        const waiting = Policy.attemptsAwaitingStatus(subscription, now)
        if (waiting.length === 0) return Effect.succeed(input)
        return Effect.forEach(
          waiting,
          (attempt) =>
            hubStatus.query(attempt.paymentId).pipe(
              Effect.flatMap((reply) => {
                // An answer that repeats the payment's details differently is as good as none.
                const mismatch =
                  reply !== "unreachable" && reply.status !== "unknown"
                    ? resultMismatch({ ...attempt, subscriptionId: subscription.id }, reply)
                    : undefined
                return mismatch === undefined
                  ? Effect.succeed(reply)
                  : Effect.logWarning(reasonOf("hub status answer", mismatch)).pipe(
                      Effect.as("unreachable" as const),
                    )
              }),
              Effect.map((reply): readonly [string, PaymentStatusReply | "unreachable"] => [
                attempt.paymentId,
                reply,
              ]),
            ),
          { concurrency: 4 },
        ).pipe(
          Effect.map((replies) => ({ ...input, statusReplies: new Map(replies) })),
          Effect.annotateLogs({ subscriptionId: subscription.id }),
        )
      }

      const handle = (actor: Actor, envelope: Envelope, traceparent?: string) =>
        Effect.gen(function* () {
          const { id } = actor
          const { input, options } = envelope
          let subscription = actor.cached ?? options.primed ?? (yield* store.load(id))
          if (
            subscription === undefined ||
            (options.clientId !== undefined && subscription.clientId !== options.clientId)
          ) {
            return yield* new NotFound({ message: `subscription ${id} not found` })
          }
          for (let race = 0; race < MAX_RACES; race++) {
            const now = yield* clock.now
            const prepared = yield* prepare(subscription, input, now)
            const limits = yield* limitsFor(subscription, prepared, now)
            const decided = Policy.decide(subscription, prepared, now, live.current().policy, limits)
            if (Result.isFailure(decided)) {
              actor.cached = subscription
              return yield* Effect.fail(decided.failure)
            }
            const transition = decided.success
            const reply = options.request?.render(transition.subscription) ?? null
            if (!transition.changed && options.request === undefined) {
              actor.cached = subscription
              return { _tag: "Applied", subscription, transition, reply } as const
            }
            const outcome = yield* committer.commit({
              transition,
              expectedRevision: subscription.revision,
              termsChanged: transition.subscription.terms !== subscription.terms,
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
              traceparent,
            })
            switch (outcome._tag) {
              case "Committed": {
                const written = { ...transition.subscription, revision: subscription.revision + 1 }
                actor.cached = written
                return { _tag: "Applied", subscription: written, transition, reply } as const
              }
              case "DuplicateRequest":
                actor.cached = subscription
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

      /** Handles a message sent from a traced request in a child span; its traceparent goes with the transition. */
      const handleTraced = (actor: Actor, envelope: Envelope, parent: Tracer.AnySpan) =>
        Effect.currentSpan.pipe(
          Effect.orDie,
          Effect.flatMap((span) => handle(actor, envelope, formatTraceparent(span))),
          Effect.withSpan("rp.actor.transition", {
            parent,
            attributes: { "rp.subscription_id": actor.id, "rp.input": envelope.input._tag },
          }),
          Effect.annotateLogs({ subscriptionId: actor.id }),
        )

      // While an actor has messages, one fiber takes them a message at a time and ends when the
      // mailbox is empty; the next message starts another. An idle actor is then a plain object (no
      // parked fiber, no queue), which matters in a burst: tens of thousands are live at once and
      // every young-generation collection would copy what they hold.
      // Its log lines are annotated with the subscription where they are logged (the status
      // queries, traced requests), not by annotating the fiber: that copies the fiber's context.
      const drain = (actor: Actor): Effect.Effect<void> =>
        Effect.suspend(() => {
          const next = actor.mailbox.shift()
          if (next === undefined) {
            actor.busy = false
            actor.lastActive = Date.now()
            return Effect.void
          }
          actor.waitingForRoom.shift()?.()
          const { span } = next
          return Effect.exit(span === undefined ? handle(actor, next) : handleTraced(actor, next, span)).pipe(
            Effect.flatMap((exit) => {
              // After a defect the cache may not match the row any more.
              if (Exit.isFailure(exit) && !Exit.hasFails(exit)) actor.cached = undefined
              next.complete(exit)
              return drain(actor)
            }),
          )
        })

      const actors = new Map<string, Actor>()
      const fibers = yield* FiberSet.make<void, never>()
      const fork = yield* FiberSet.runtime(fibers)<never>()

      const spawn = (id: string): Actor => {
        const actor: Actor = {
          id,
          mailbox: [],
          waitingForRoom: [],
          cached: undefined,
          busy: false,
          lastActive: Date.now(),
        }
        actors.set(id, actor)
        return actor
      }

      /** Puts the message into the actor's mailbox; a sender woken from a full one keeps its place in line. */
      const enqueue = (id: string, envelope: Envelope, woken = false): Effect.Effect<void> =>
        Effect.suspend(() => {
          const actor = actors.get(id) ?? spawn(id)
          actor.lastActive = Date.now()
          if (actor.mailbox.length < config.mailboxCapacity) {
            actor.mailbox.push(envelope)
            if (!actor.busy) {
              actor.busy = true
              fork(drain(actor))
            }
            return Effect.void
          }
          // Full: wait for room (backpressure on the sender). The actor is busy, so it is not
          // passivated meanwhile; the retry finds it (or its successor) through the map. A sender
          // that was woken but lost the room to a newcomer goes back to the head of the line.
          return Effect.callback<void>((resume) => {
            const retry = () => resume(enqueue(id, envelope, true))
            if (woken) actor.waitingForRoom.unshift(retry)
            else actor.waitingForRoom.push(retry)
            // An interrupted sender gives its turn back, so the next one is woken instead.
            return Effect.sync(() => {
              const index = actor.waitingForRoom.indexOf(retry)
              if (index >= 0) actor.waitingForRoom.splice(index, 1)
            })
          })
        })

      /**
       * Sends a message for another instance's partition to its owner, in a batch with the others for
       * that partition sent in the same turn of the event loop. When no owner answers (a handover under
       * way, the owner gone, a timeout) the messages are handled here: the owner would have produced the
       * same result, and the revision fence orders the two if both act.
       */
      const waitingToForward = new Map<number, { items: Array<Forward>; bytes: number }>()
      let flushScheduled = false

      const handleHere = (item: Forward) => fork(enqueue(item.id, item.envelope))

      const flush = (partition: number) => {
        const batch = waitingToForward.get(partition)
        if (batch === undefined) return
        waitingToForward.delete(partition)
        const { items } = batch
        internal
          .request(
            subjects.partitionInbox(partition),
            encodeForwardBatch(items.map((item) => item.encoded)),
            {
              timeout: forwardTimeoutMs,
            },
          )
          .then(
            (answer) => {
              const replies = decodeReplies(answer.data, items.length)
              items.forEach((item, index) => {
                const reply = replies[index]
                if (reply === undefined || reply._tag === "NotOwner") handleHere(item)
                else item.envelope.complete(exitOfReply(reply))
              })
            },
            () => {
              for (const item of items) handleHere(item)
            },
          )
      }

      const flushAll = () => {
        flushScheduled = false
        for (const partition of [...waitingToForward.keys()]) flush(partition)
      }

      const forward = (id: string, envelope: Envelope) => {
        const { input, options } = envelope
        const encoded = encodeForward({
          id,
          input,
          ...(options.clientId === undefined ? {} : { clientId: options.clientId }),
          ...(options.inbox === undefined ? {} : { inbox: options.inbox }),
        })
        const partition = partitionOf(id, partitions.count)
        const batch = waitingToForward.get(partition) ?? { items: [], bytes: 0 }
        waitingToForward.set(partition, batch)
        batch.items.push({ id, envelope, encoded })
        batch.bytes += encoded.length
        if (batch.items.length >= MAX_FORWARD_BATCH || batch.bytes >= MAX_FORWARD_BYTES) flush(partition)
        else if (!flushScheduled) {
          flushScheduled = true
          setImmediate(flushAll)
        }
      }

      /** The one way in: the owner's actor here, or the owner elsewhere. Protocol requests stay local. */
      const deliver = (id: string, envelope: Envelope): Effect.Effect<void> => {
        const { options } = envelope
        if (partitions.ownsId(id) || options.request !== undefined || options.forwarded === true) {
          return enqueue(id, envelope)
        }
        return Effect.sync(() => forward(id, envelope))
      }

      const receiveForwarded = (bytes: Uint8Array, respond: (reply: Uint8Array) => void) => {
        const batch = decodeForwardBatch(bytes)
        if (batch === undefined) {
          respond(encodeReplies([{ _tag: "Failed", message: "unreadable forwarded batch" }]))
          return
        }
        const replies: Array<ForwardReply> = new Array(batch.length)
        let remaining = batch.length
        const answered = (index: number, reply: ForwardReply) => {
          replies[index] = reply
          remaining -= 1
          if (remaining === 0) respond(encodeReplies(replies))
        }
        if (remaining === 0) respond(encodeReplies(replies))
        batch.forEach((message, index) => {
          if (!partitions.ownsId(message.id)) {
            answered(index, { _tag: "NotOwner" })
            return
          }
          const options: SendOptions = {
            forwarded: true,
            ...(message.clientId === undefined ? {} : { clientId: message.clientId }),
            ...(message.inbox === undefined ? {} : { inbox: message.inbox }),
          }
          fork(
            enqueue(message.id, {
              input: message.input,
              options,
              complete: (exit) => answered(index, replyOf(exit)),
            }),
          )
        })
      }

      /** Stops the idle actors of `leaving`; returns how many of theirs are still busy. */
      const evictIdle = (leaving: ReadonlySet<number>) =>
        Effect.sync(() => {
          let busy = 0
          for (const actor of actors.values()) {
            if (!leaving.has(partitionOf(actor.id, partitions.count))) continue
            if (actor.busy) {
              busy += 1
              continue
            }
            actors.delete(actor.id)
          }
          return busy
        })

      const evict = (leaving: ReadonlySet<number>, withinMs: number) =>
        evictIdle(leaving).pipe(
          Effect.repeat({
            schedule: Schedule.spaced(Duration.millis(20)),
            until: (busy) => busy === 0,
          }),
          Effect.timeoutOption(Duration.millis(withinMs)),
          Effect.map((busy) => (busy._tag === "Some" ? busy.value : -1)),
        )

      const passivateIdle = Effect.sync(() => {
        const cutoff = Date.now() - config.actorIdleMs
        for (const actor of actors.values()) {
          if (actor.busy || actor.lastActive > cutoff) continue
          actors.delete(actor.id)
        }
      })
      yield* Effect.forkScoped(
        Effect.repeat(passivateIdle, Schedule.spaced(Duration.millis(Math.max(50, config.actorIdleMs / 2)))),
      )

      yield* Effect.logInfo("actors ready").pipe(
        Effect.annotateLogs({ mailboxCapacity: config.mailboxCapacity, idleMs: config.actorIdleMs }),
      )

      return SubscriptionActors.of({
        send: (id, input, options = {}) =>
          Effect.gen(function* () {
            const done = yield* Deferred.make<ActorOutcome, ActorRefusal>()
            // Requests run in a span (ProtocolServer); the sweep and the consumers use tell and carry none.
            const span = yield* Effect.serviceOption(Tracer.ParentSpan)
            const complete = (exit: ActorExit) => Deferred.doneUnsafe(done, exit)
            yield* deliver(
              id,
              span._tag === "Some"
                ? { input, options, complete, span: span.value }
                : { input, options, complete },
            )
            return yield* Deferred.await(done)
          }),
        tell: (id, input, options, complete) => deliver(id, { input, options, complete }),
        live: Effect.sync(() => actors.size),
        receiveForwarded,
        evict,
        mailboxDepth: Effect.sync(() => {
          let depth = 0
          for (const actor of actors.values()) depth += actor.mailbox.length
          return depth
        }),
      })
    }),
  )
}
