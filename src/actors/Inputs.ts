/**
 * The messages a subscription actor handles, and the settings its policies
 * read. Everything that touches a subscription arrives as one of these and is
 * handled by that subscription's actor, one at a time, in order.
 */
import { conflict } from "../domain/Errors.ts"
import type { Money } from "../domain/Money.ts"
import type { ScheduleInput } from "../domain/Subscription.ts"
import type { Template } from "../domain/Template.ts"
import type {
  Actor,
  DebtResponse,
  HubPaymentCompleted,
  PaymentResult,
  PaymentStatusReply,
  ThresholdEvent,
} from "../streams/Messages.ts"

/** Time has reached the subscription's next due time (or a tick is sweeping it). */
export interface Wake {
  readonly _tag: "Wake"
  /** Answers of `hub.payment.status` for attempts whose outcome was unknown, gathered just before. */
  readonly statusReplies: ReadonlyMap<string, PaymentStatusReply | "unreachable">
  /** Reminders: whether the client pays the payee automatically by now (read just before). */
  readonly autopaymentToPayee?: boolean
}

/** The hub's result for one of this subscription's attempts. */
export interface HubResult {
  readonly _tag: "HubResult"
  readonly result: PaymentResult
  /** The status already recorded for that payment id, if any. */
  readonly recordedStatus: string | null
  /** For a payment no longer open: what it paid, read with `recordedStatus` just before. */
  readonly settled?: SettledPayment
}

/** A payment already settled, as recorded: what a result arriving after its verdict is about. */
export interface SettledPayment {
  readonly occurrence: string
  readonly attempt: number
  readonly amount: Money
  /** The month its amount was counted toward when sent (a monthly limit applied), else null. */
  readonly spendMonth: string | null
  /** Another attempt of the same occurrence recorded as succeeded, if any. */
  readonly occurrencePaidBy: { readonly paymentId: string; readonly attempt: number } | null
}

/** A channel (or the engine) asks for a lifecycle change. */
export interface LifecycleCommand {
  readonly _tag: "Pause" | "Resume" | "Cancel" | "SkipNext"
  readonly by: Actor
  /** Debt: what was done since about the bills held for the client (a resume may pay them). */
  readonly bills?: ReadonlyMap<string, BillRecord>
}

/** A channel changes the subscription's terms; each field applies to the kinds that have it. */
export interface UpdateCommand {
  readonly _tag: "Update"
  readonly by: Actor
  readonly expectedVersion: number
  readonly amount: Money | undefined
  readonly schedule: ScheduleInput | undefined
  readonly threshold?: Money | undefined
  readonly cooldown?: string | undefined
  readonly limit?: Money | undefined
  readonly pollEvery?: string | undefined
  /** Debt: what was done since about the bills held for the client (a raised limit may pay them). */
  readonly bills?: ReadonlyMap<string, BillRecord>
}

/** A provider reported the balance of the account a threshold subscription watches. */
export interface BalanceReading {
  readonly _tag: "ThresholdEvent"
  readonly event: ThresholdEvent
}

/** What the engine already did about a bill: its latest attempt, if any. */
export interface BillRecord {
  readonly attempt: number
  /** pending | unknown | succeeded | failed | declined */
  readonly status: string
  readonly retryable: boolean | null
}

/** A provider answered the debt query of a debt subscription. */
export interface DebtAnswer {
  readonly _tag: "DebtResponse"
  readonly response: DebtResponse
  /** By bill id: the latest payment attempt already recorded for each bill in the answer. */
  readonly bills: ReadonlyMap<string, BillRecord>
}

/** The client approves a payment a limit held back. */
export interface ConfirmCommand {
  readonly _tag: "Confirm"
  readonly by: Actor
  readonly paymentId: string
  /** Debt: what was done since about the bills held for the client. */
  readonly bills?: ReadonlyMap<string, BillRecord>
}

/** A one-off payment to the reminder's payee completed in the hub: the reminder starts its period again. */
export interface OneOffPayment {
  readonly _tag: "PaymentCompleted"
  readonly payment: HubPaymentCompleted
}

/** The client takes up a reminder's offer: it becomes a scheduled autopayment with a template of its own. */
export interface AcceptReminder {
  readonly _tag: "AcceptReminder"
  readonly by: Actor
  readonly schedule: ScheduleInput
  readonly amount: Money | undefined
  /** The template the payment is saved as (id and audit stamps minted by the caller). */
  readonly template: Omit<Template, "providerId" | "account" | "source">
  /** Whether the client pays the payee automatically by now (read just before). */
  readonly autopaymentToPayee?: boolean
}

/** The client wants no more reminders for this payee. */
export interface DeclineReminder {
  readonly _tag: "DeclineReminder"
  readonly by: Actor
}

/** Any message a subscription actor handles. */
export type ActorInput =
  | Wake
  | HubResult
  | LifecycleCommand
  | UpdateCommand
  | BalanceReading
  | DebtAnswer
  | ConfirmCommand
  | OneOffPayment
  | AcceptReminder
  | DeclineReminder

/** The refusal for a message another kind takes (a routing mistake, or a client naming the wrong id). */
export const notForKind = (kind: string, input: ActorInput) =>
  conflict(
    input._tag === "AcceptReminder" || input._tag === "DeclineReminder"
      ? `this is a ${kind} autopayment, not a reminder waiting for an answer`
      : `a ${kind} subscription does not take ${input._tag} messages`,
  )

/** The engine settings a policy decides with. */
export interface PolicySettings {
  readonly catchUpWindowMs: number
  readonly noticeLeadMs: number
  readonly retryScheduleMs: ReadonlyArray<number>
  readonly resultTimeoutMs: number
  readonly statusQueryBackoffMs: ReadonlyArray<number>
  readonly autoPauseAfterFailures: number
  /** Debt: how long a query may go unanswered before it counts as lost. */
  readonly debtQueryTimeoutMs: number
}
