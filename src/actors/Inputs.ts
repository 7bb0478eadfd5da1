/**
 * The messages a subscription actor handles, and the settings its policies
 * read. Everything that touches a subscription arrives as one of these and is
 * handled by that subscription's actor, one at a time, in order.
 */
import type { Money } from "../domain/Money.ts"
import type { ScheduleInput } from "../domain/Subscription.ts"
import type { Actor, PaymentResult, PaymentStatusReply } from "../streams/Messages.ts"

/** Time has reached the subscription's next due time (or a tick is sweeping it). */
export interface Wake {
  readonly _tag: "Wake"
  /** Answers of `hub.payment.status` for attempts whose outcome was unknown, gathered just before. */
  readonly statusReplies: ReadonlyMap<string, PaymentStatusReply | "unreachable">
}

/** The hub's result for one of this subscription's attempts. */
export interface HubResult {
  readonly _tag: "HubResult"
  readonly result: PaymentResult
  /** The status already recorded for that payment id, if any. */
  readonly recordedStatus: string | null
}

/** A channel (or the engine) asks for a lifecycle change. */
export interface LifecycleCommand {
  readonly _tag: "Pause" | "Resume" | "Cancel" | "SkipNext"
  readonly by: Actor
}

/** A channel changes the subscription's terms. */
export interface UpdateCommand {
  readonly _tag: "Update"
  readonly by: Actor
  readonly expectedVersion: number
  readonly amount: Money | undefined
  readonly schedule: ScheduleInput | undefined
}

/** Any message a subscription actor handles. */
export type ActorInput = Wake | HubResult | LifecycleCommand | UpdateCommand

/** The engine settings a policy decides with. */
export interface PolicySettings {
  readonly catchUpWindowMs: number
  readonly noticeLeadMs: number
  readonly retryScheduleMs: ReadonlyArray<number>
  readonly resultTimeoutMs: number
  readonly statusQueryBackoffMs: ReadonlyArray<number>
  readonly autoPauseAfterFailures: number
}
