/**
 * The protocol's own operations, run on a client's behalf by an operator.
 *
 * The console does not touch subscriptions itself: it decodes and runs the
 * same `subscription.*` operations a channel request does, so every change
 * goes through the subscription's actor (never a racing UPDATE), is
 * idempotent on its request id, and is recorded in the subscription's history
 * with channel `console`, the operator's login and the reason they gave.
 */
import { createHash } from "node:crypto"
import { Effect } from "effect"
import { conflict, type DomainError, invalidField } from "../domain/Errors.ts"
import { textProblem } from "../domain/Text.ts"
import { CONSOLE_CHANNEL } from "../protocol/Channels.ts"
import type { Operation, RequestContext } from "../protocol/Operation.ts"

export { CONSOLE_CHANNEL }

/** The longest reason an operator can give (the console's forms allow as much). */
const REASON_MAX = 500

/** Who acts and why; `reason` is required for changes. */
export interface OnBehalf {
  readonly login: string
  readonly clientId: string
  readonly requestId: string
  readonly reason: string
}

export type OperationResult =
  | { readonly _tag: "Ok"; readonly result: unknown }
  | { readonly _tag: "Refused"; readonly error: DomainError }
  /** The same form was submitted before (its request id was seen): nothing happened a second time. */
  | { readonly _tag: "AlreadyDone" }

/** Where the replies of earlier changes are kept (the protocol's idempotency log). */
export type AnsweredRequests = (
  channel: string,
  requestId: string,
) => Effect.Effect<{ readonly requestHash: string } | undefined>

/**
 * Runs operation `name` with `body` for `who`; domain refusals are results, not failures. A change
 * whose request id was already answered (the same form submitted again) is not run a second time,
 * as the protocol server does for a channel's repeat.
 */
export const runOperation = (
  operations: Readonly<Record<string, Operation>>,
  answered: AnsweredRequests,
  name: string,
  body: unknown,
  who: OnBehalf,
): Effect.Effect<OperationResult> => {
  const operation = operations[name]
  if (operation === undefined) return Effect.die(new Error(`the console asked for unknown operation ${name}`))
  // The reason goes into the history channels read: it follows the protocol's text rules like their own text.
  const reasonProblem = textProblem(who.reason, REASON_MAX, { optional: true })
  if (reasonProblem !== undefined)
    return Effect.succeed({ _tag: "Refused", error: invalidField("reason", reasonProblem) })
  const context: RequestContext = {
    channel: CONSOLE_CHANNEL,
    terminal: null,
    clientId: who.clientId,
    requestId: who.requestId,
    operation: name,
    // The reason and operator are part of the request: the same id with another reason is another request.
    requestHash: createHash("sha256")
      .update(JSON.stringify([name, who.clientId, body, who.login, who.reason]))
      .digest("base64url"),
    by: {
      channel: CONSOLE_CHANNEL,
      terminal: null,
      requestId: who.requestId,
      operator: { login: who.login, reason: who.reason },
    },
  }
  const earlier = operation.mutating ? answered(CONSOLE_CHANNEL, who.requestId) : Effect.succeed(undefined)
  return earlier.pipe(
    Effect.flatMap((stored) =>
      stored === undefined
        ? operation.decode(body).pipe(Effect.flatMap((decoded) => operation.run(decoded, context)))
        : stored.requestHash === context.requestHash
          ? Effect.succeed({ _tag: "AlreadyAnswered" } as const)
          : Effect.fail(conflict("this form was already used for another change: reload the page")),
    ),
    Effect.map(
      (outcome): OperationResult =>
        outcome._tag === "Result"
          ? { _tag: "Ok", result: outcome.result }
          : outcome._tag === "Reply"
            ? { _tag: "Ok", result: (JSON.parse(outcome.text) as { result?: unknown }).result }
            : { _tag: "AlreadyDone" },
    ),
    Effect.catch((error: DomainError) => Effect.succeed({ _tag: "Refused", error } as const)),
  )
}
