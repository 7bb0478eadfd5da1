/**
 * The console's way to run the protocol's operations, on the instance that
 * owns the subscription.
 *
 * A change an operator makes to a subscription of another instance's
 * partition is sent to that instance (core NATS request-reply on
 * `rp.internal.partition.<p>.console`), so the subscription's actor runs in
 * one place, as it does for a channel's change. Every instance listens on
 * `rp.internal.partition.*.console` and only the partition's owner answers.
 * Both the change and the answer are signed with the cluster secret
 * (src/streams/InternalAuth.ts), so a party that can merely publish on NATS
 * can neither make a change nor answer one.
 * Without an answer (a handover under way, the owner gone) the change runs
 * here: the revision fence orders it with anything the owner does. Reads run
 * where they are asked.
 */
import { Context, Effect, FiberSet, Layer } from "effect"
import { Partitions, partitionOf } from "../actors/Partitions.ts"
import { Conflict, type DomainError, LimitExceeded, NotFound, ValidationFailed } from "../domain/Errors.ts"
import type { Operation } from "../protocol/Operation.ts"
import { targetOf } from "../protocol/ProtocolServer.ts"
import { subscriptionOperations } from "../protocol/SubscriptionOperations.ts"
import { RequestLog } from "../store/RequestLog.ts"
import { InternalAuth } from "../streams/InternalAuth.ts"
import { Nats } from "../streams/Nats.ts"
import { Topology } from "../streams/Topology.ts"
import { type OnBehalf, type OperationResult, runOperation } from "./ClientOperations.ts"

/** How long the console waits for the owner before making the change itself. */
const OWNER_TIMEOUT_MS = 3_000

interface ConsoleChange {
  readonly name: string
  readonly body: unknown
  readonly who: OnBehalf
}

type WireResult =
  | { readonly _tag: "Ok"; readonly result: unknown }
  | {
      readonly _tag: "Refused"
      readonly error: DomainError["_tag"]
      readonly message: string
      readonly details: ReadonlyArray<{ path: string; message: string }>
    }
  | { readonly _tag: "AlreadyDone" }

const toWire = (result: OperationResult): WireResult =>
  result._tag === "Refused"
    ? {
        _tag: "Refused",
        error: result.error._tag,
        message: result.error.message,
        details: "details" in result.error ? result.error.details : [],
      }
    : result

const fromWire = (wire: WireResult): OperationResult => {
  if (wire._tag !== "Refused") return wire
  const { message, details } = wire
  switch (wire.error) {
    case "ValidationFailed":
      return { _tag: "Refused", error: new ValidationFailed({ message, details }) }
    case "Conflict":
      return { _tag: "Refused", error: new Conflict({ message, details }) }
    case "NotFound":
      return { _tag: "Refused", error: new NotFound({ message }) }
    case "LimitExceeded":
      return { _tag: "Refused", error: new LimitExceeded({ message }) }
  }
}

const isChange = (value: unknown): value is ConsoleChange => {
  if (typeof value !== "object" || value === null) return false
  const { name, who } = value as Partial<ConsoleChange>
  return (
    typeof name === "string" &&
    typeof who === "object" &&
    who !== null &&
    typeof who.login === "string" &&
    typeof who.clientId === "string" &&
    typeof who.requestId === "string" &&
    typeof who.reason === "string"
  )
}

export class ConsoleOperations extends Context.Service<
  ConsoleOperations,
  {
    /** Runs operation `name` for `who`, on the owner of the subscription it changes. */
    readonly run: (name: string, body: unknown, who: OnBehalf) => Effect.Effect<OperationResult>
  }
>()("rp/console/ConsoleOperations") {
  static readonly layer = Layer.effect(
    ConsoleOperations,
    Effect.gen(function* () {
      const operations: Readonly<Record<string, Operation>> = yield* subscriptionOperations
      const requestLog = yield* RequestLog
      const partitions = yield* Partitions
      const { connection } = yield* Nats
      const internal = yield* InternalAuth
      const { subjects } = yield* Topology
      const runHere = (name: string, body: unknown, who: OnBehalf) =>
        runOperation(operations, requestLog.find, name, body, who)

      const fibers = yield* FiberSet.make<void, never>()
      const fork = yield* FiberSet.runtime(fibers)<never>()
      const encoder = new TextEncoder()
      yield* Effect.acquireRelease(
        Effect.sync(() =>
          connection.subscribe(subjects.partitionConsoleAll, {
            callback: (error, message) => {
              // Only a change another instance signed is run: anyone else may publish here.
              if (error !== null || !internal.accepts(message, "console")) return
              let change: unknown
              try {
                change = message.json()
              } catch {
                return
              }
              if (!isChange(change)) return
              const target = targetOf(change.body)
              // Only the owner answers; the others stay silent so the owner's answer is the one taken.
              if (target === undefined || !partitions.ownsId(target)) return
              fork(
                runHere(change.name, change.body, change.who).pipe(
                  Effect.flatMap((result) =>
                    Effect.sync(() =>
                      internal.respond(message, encoder.encode(JSON.stringify(toWire(result)))),
                    ),
                  ),
                  Effect.asVoid,
                ),
              )
            },
          }),
        ),
        (subscription) => Effect.sync(() => subscription.unsubscribe()),
      )

      const onOwner = (target: string, change: ConsoleChange) =>
        Effect.tryPromise(() =>
          internal.request(
            subjects.partitionConsole(partitionOf(target, partitions.count)),
            encoder.encode(JSON.stringify(change)),
            { timeout: OWNER_TIMEOUT_MS },
          ),
        ).pipe(
          Effect.map((reply) => fromWire(reply.json() as WireResult)),
          Effect.option,
        )

      return ConsoleOperations.of({
        run: (name, body, who) => {
          const target = targetOf(body)
          const mutating = Object.hasOwn(operations, name) && operations[name]?.mutating === true
          if (!mutating || target === undefined || partitions.ownsId(target)) return runHere(name, body, who)
          return onOwner(target, { name, body, who }).pipe(
            Effect.flatMap((answer) =>
              answer._tag === "Some" ? Effect.succeed(answer.value) : runHere(name, body, who),
            ),
          )
        },
      })
    }),
  )
}
