/**
 * Messages for a subscription of another instance's partition, on their way
 * to that instance (core NATS request-reply on `rp.internal.partition.<p>`).
 *
 * The receiving stream consumer keeps the original message unacknowledged
 * until the owner answers, so a forward lost in flight is only a redelivery.
 * Messages for one partition travel in batches (a JSON array, answered by an
 * array of replies in the same order): a burst forwards thousands a second,
 * and one round trip per message would cost more than handling them.
 * Inputs carry Maps and bigints, which JSON has no words for: they travel
 * as tagged objects and come back as what they were.
 */
import { Cause, Exit } from "effect"
import { Conflict, NotFound, ValidationFailed } from "../domain/Errors.ts"
import type { InboxRecord } from "../store/TransitionCommitter.ts"
import type { ActorInput } from "./Inputs.ts"
import type { ActorExit } from "./SubscriptionActors.ts"

/** What travels to the owner: the subscription, the message, and the send options that survive a hop. */
export interface ForwardedMessage {
  readonly id: string
  readonly input: ActorInput
  readonly clientId?: string
  readonly inbox?: InboxRecord
}

/** The owner's answer. */
export type ForwardReply =
  | { readonly _tag: "Handled" }
  | {
      readonly _tag: "Refused"
      readonly error: "Conflict" | "ValidationFailed" | "NotFound"
      readonly message: string
      readonly details: ReadonlyArray<{ path: string; message: string }>
    }
  /** The receiver no longer owns the partition (a handover is under way): the sender handles it itself. */
  | { readonly _tag: "NotOwner" }
  | { readonly _tag: "Failed"; readonly message: string }

const replacer = (_key: string, value: unknown): unknown => {
  if (value instanceof Map) return { $map: [...value.entries()] }
  if (typeof value === "bigint") return { $bigint: value.toString() }
  return value
}

const reviver = (_key: string, value: unknown): unknown => {
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    const tagged = value as { $map?: Array<[unknown, unknown]>; $bigint?: string }
    if (Array.isArray(tagged.$map) && Object.keys(value).length === 1) return new Map(tagged.$map)
    if (typeof tagged.$bigint === "string" && Object.keys(value).length === 1) return BigInt(tagged.$bigint)
  }
  return value
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** One message as it goes into a batch. */
export const encodeForward = (message: ForwardedMessage): string => JSON.stringify(message, replacer)

/** A batch of messages already encoded one by one. */
export const encodeForwardBatch = (encoded: ReadonlyArray<string>): Uint8Array =>
  encoder.encode(`[${encoded.join(",")}]`)

const inputTags = new Set<string>([
  "Wake",
  "HubResult",
  "Pause",
  "Resume",
  "Cancel",
  "SkipNext",
  "Update",
  "ThresholdEvent",
  "DebtResponse",
  "Confirm",
  "PaymentCompleted",
  "AcceptReminder",
  "DeclineReminder",
])

/**
 * Reads a batch of forwarded messages. Only a batch another instance signed gets here (InternalAuth checks
 * its MAC first), so this checks the shape a peer writes rather than distrusting it field by field; anything
 * else is refused as a defect of the sender.
 */
export const decodeForwardBatch = (bytes: Uint8Array): ReadonlyArray<ForwardedMessage> | undefined => {
  try {
    const parsed: unknown = JSON.parse(decoder.decode(bytes), reviver)
    if (!Array.isArray(parsed)) return undefined
    for (const item of parsed as Array<Partial<ForwardedMessage>>) {
      if (typeof item !== "object" || item === null || typeof item.id !== "string") return undefined
      if (typeof item.input !== "object" || item.input === null) return undefined
      if (!inputTags.has((item.input as { _tag?: string })._tag ?? "")) return undefined
    }
    return parsed as ReadonlyArray<ForwardedMessage>
  } catch {
    return undefined
  }
}

export const encodeReplies = (replies: ReadonlyArray<ForwardReply>): Uint8Array =>
  encoder.encode(JSON.stringify(replies))

/** The owner's replies to a batch of `count`; anything unreadable fails every message of the batch. */
export const decodeReplies = (bytes: Uint8Array, count: number): ReadonlyArray<ForwardReply> => {
  try {
    const parsed: unknown = JSON.parse(decoder.decode(bytes))
    if (
      Array.isArray(parsed) &&
      parsed.length === count &&
      parsed.every((reply) => typeof reply === "object" && reply !== null && typeof reply._tag === "string")
    ) {
      return parsed as ReadonlyArray<ForwardReply>
    }
  } catch {
    // falls through
  }
  const unreadable: ForwardReply = { _tag: "Failed", message: "unreadable reply from the partition's owner" }
  return Array.from({ length: count }, () => unreadable)
}

/** How the owner's handling of a forwarded message ended, in a reply. */
export const replyOf = (exit: ActorExit): ForwardReply => {
  if (Exit.isSuccess(exit)) return { _tag: "Handled" }
  const refusal = Cause.findErrorOption(exit.cause)
  if (refusal._tag === "Some") {
    const error = refusal.value
    return {
      _tag: "Refused",
      error: error._tag,
      message: error.message,
      details: "details" in error ? error.details : [],
    }
  }
  return { _tag: "Failed", message: Cause.pretty(exit.cause).slice(0, 2_000) }
}

/** The exit a sender reports for a reply other than NotOwner. */
export const exitOfReply = (reply: Exclude<ForwardReply, { _tag: "NotOwner" }>): ActorExit => {
  switch (reply._tag) {
    case "Handled":
      return Exit.succeed({ _tag: "Forwarded" })
    case "Refused":
      return Exit.fail(
        reply.error === "NotFound"
          ? new NotFound({ message: reply.message })
          : reply.error === "Conflict"
            ? new Conflict({ message: reply.message, details: reply.details })
            : new ValidationFailed({ message: reply.message, details: reply.details }),
      )
    case "Failed":
      return Exit.die(new Error(`the partition's owner failed to handle the message: ${reply.message}`))
  }
}
