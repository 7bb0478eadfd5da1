/**
 * What an operation of the channel protocol is: a body schema, whether it
 * changes anything (and so is idempotent on the request id), and a handler.
 */
import { Effect, Schema } from "effect"
import { type DomainError, ValidationFailed } from "../domain/Errors.ts"
import { issuesOf } from "../domain/Issues.ts"
import type { Actor } from "../streams/Messages.ts"

/** Who is asking, from where, and which request this is. */
export interface RequestContext {
  readonly channel: string
  readonly terminal: string | null
  readonly clientId: string
  readonly requestId: string
  readonly operation: string
  /** Hash of operation, client and body: a reused requestId with a different request is refused. */
  readonly requestHash: string
  readonly by: Actor & { readonly channel: string }
}

/** The idempotency key of a request and what identifies the request behind it. */
export const requestKey = (context: RequestContext) => ({
  channel: context.channel,
  requestId: context.requestId,
  clientId: context.clientId,
  operation: context.operation,
  requestHash: context.requestHash,
})

/** How an operation answered. */
export type OperationOutcome =
  /** A read: the server wraps `result` in a reply. */
  | { readonly _tag: "Result"; readonly result: unknown }
  /** A change: the exact reply text, already stored with the change for repeats. */
  | { readonly _tag: "Reply"; readonly text: string }
  /** A concurrent repeat stored its reply first: answer with that one. */
  | { readonly _tag: "AlreadyAnswered" }

/** One operation, with its body type erased so operations can share a table. */
export interface Operation {
  readonly mutating: boolean
  /** Decodes the body; every problem is reported, with paths from the envelope root. */
  readonly decode: (body: unknown) => Effect.Effect<unknown, ValidationFailed>
  readonly run: (body: unknown, context: RequestContext) => Effect.Effect<OperationOutcome, DomainError>
}

/** A decoder for a body schema that reports every problem with its path from the envelope root. */
export const bodyDecoder = <B>(schema: Schema.Codec<B, unknown>) => {
  const decode = Schema.decodeUnknownEffect(schema)
  return (body: unknown): Effect.Effect<B, ValidationFailed> =>
    decode(body, { errors: "all", onExcessProperty: "error" }).pipe(
      Effect.mapError((error) => {
        const details = issuesOf(error).map((issue) => ({
          path: issue.path === "" ? "body" : `body.${issue.path}`,
          message: issue.message,
        }))
        const summary = details.map((issue) => `${issue.path} ${issue.message}`).join("; ")
        return new ValidationFailed({ message: `the request body is invalid: ${summary}`, details })
      }),
    )
}

/** Defines an operation from its body schema and handler. */
export const defineOperation = <B>(options: {
  readonly mutating: boolean
  readonly body: Schema.Codec<B, unknown>
  readonly run: (body: B, context: RequestContext) => Effect.Effect<OperationOutcome, DomainError>
}): Operation => ({
  mutating: options.mutating,
  decode: bodyDecoder(options.body),
  // The table only ever passes bodies produced by this operation's own decode.
  run: (body, context) => options.run(body as B, context),
})
