/**
 * One entry point to the rules of every kind: the actor hands a message to
 * `decide` and gets a transition (or a refusal) from the kind's own policy.
 */
import type { Result } from "effect"
import type { OpenAttempt, Subscription } from "../domain/Subscription.ts"
import * as DebtPolicy from "./DebtPolicy.ts"
import type { ActorInput, PolicySettings } from "./Inputs.ts"
import type { LimitCheck } from "./Limits.ts"
import type { PolicyRefusal } from "./PaymentRun.ts"
import * as ReminderPolicy from "./ReminderPolicy.ts"
import * as ScheduledPolicy from "./ScheduledPolicy.ts"
import * as ThresholdPolicy from "./ThresholdPolicy.ts"
import type { Transition } from "./Transition.ts"

/** Handles one message for `subscription` at engine time `now`, by the rules of its kind. */
export const decide = (
  subscription: Subscription,
  input: ActorInput,
  now: number,
  settings: PolicySettings,
  limits: LimitCheck,
): Result.Result<Transition, PolicyRefusal> => {
  switch (subscription.kind) {
    case "scheduled":
      return ScheduledPolicy.decide(subscription, input, now, settings, limits)
    case "threshold":
      return ThresholdPolicy.decide(subscription, input, now, settings, limits)
    case "debt":
      return DebtPolicy.decide(subscription, input, now, settings, limits)
    case "reminder":
      return ReminderPolicy.decide(subscription, input, now, settings)
  }
}

/** Attempts whose outcome is overdue at `now`: the actor asks the hub about these before a Wake. */
export const attemptsAwaitingStatus = (subscription: Subscription, now: number): ReadonlyArray<OpenAttempt> =>
  subscription.state.open.filter((attempt) => (attempt.nextQueryAt ?? attempt.timeoutAt) <= now)

/**
 * True when handling `input` may send a payment that the limits check, so the client's monthly
 * spend must be known first (a raised debt limit, or a resume after one, pays held bills; a
 * confirmation is not checked).
 */
export const mayPay = (input: ActorInput): boolean =>
  input._tag === "Wake" ||
  input._tag === "ThresholdEvent" ||
  input._tag === "DebtResponse" ||
  input._tag === "Update" ||
  input._tag === "Resume"
