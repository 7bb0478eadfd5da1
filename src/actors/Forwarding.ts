/**
 * Messages for a subscription of another instance's partition, on their way
 * to that instance (core NATS request-reply on `rp.internal.partition.<p>`).
 *
 * The receiving stream consumer keeps the original message unacknowledged
 * until the owner answers, so a forward lost in flight is only a redelivery.
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

export const encodeForward = (message: ForwardedMessage): Uint8Array =>
  encoder.encode(JSON.stringify(message, replacer))

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
 * Reads a forwarded message. Only engine instances may publish on the internal subjects (see the NATS
 * permissions in docs/channels.md), so this checks the shape a peer writes rather than distrusting it field
 * by field; anything else is refused as a defect of the sender.
 */
export const decodeForward = (bytes: Uint8Array): ForwardedMessage | undefined => {
  try {
    const parsed = JSON.parse(decoder.decode(bytes), reviver) as Partial<ForwardedMessage>
    if (typeof parsed.id !== "string" || typeof parsed.input !== "object" || parsed.input === null) return
    if (!inputTags.has((parsed.input as { _tag?: string })._tag ?? "")) return
    return parsed as ForwardedMessage
  } catch {
    return undefined
  }
}

export const encodeReply = (reply: ForwardReply): Uint8Array => encoder.encode(JSON.stringify(reply))

export const decodeReply = (bytes: Uint8Array): ForwardReply => {
  try {
    const parsed = JSON.parse(decoder.decode(bytes)) as ForwardReply
    if (typeof parsed === "object" && parsed !== null && typeof parsed._tag === "string") return parsed
  } catch {
    // falls through
  }
  return { _tag: "Failed", message: "unreadable reply from the partition's owner" }
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
