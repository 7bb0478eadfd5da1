/**
 * What creating a subscription looks like, whatever its kind: the first row
 * (version 1, revision 1, active) and a transition holding its `created`
 * decision and `subscription.created` event. Each kind's policy adds its own
 * terms, initial state and first due time, and anything else creation causes.
 */
import type { Payee, Subscription, SubscriptionCommon } from "../domain/Subscription.ts"
import { toView } from "../domain/SubscriptionView.ts"
import type { Actor } from "../streams/Messages.ts"
import { type Transition, TransitionBuilder } from "./Transition.ts"

/** What a new subscription of any kind is made of; `terms` are the kind's own. */
export interface NewSubscription<Terms> {
  readonly id: string
  readonly clientId: string
  readonly templateId: string
  readonly payee: Payee
  readonly terms: Terms
  readonly by: Actor & { readonly channel: string }
  /** Wall-clock time of creation, for the audit stamp only. */
  readonly createdAt: number
}

/** The fields every new subscription starts with. */
export const firstRow = (
  input: NewSubscription<unknown>,
  currency: string,
  nextDueAt: number | null,
): SubscriptionCommon => ({
  id: input.id,
  clientId: input.clientId,
  status: "active",
  statusReason: null,
  hidden: false,
  version: 1,
  revision: 1,
  templateId: input.templateId,
  payee: input.payee,
  currency,
  nextDueAt,
  createdAt: input.createdAt,
  createdChannel: input.by.channel,
  createdTerminal: input.by.terminal,
})

/**
 * The builder of a creation transition, with its `created` decision (`details` are the kind's
 * inputs worth keeping) and event already in it.
 */
export const creationBuilder = (
  subscription: Subscription,
  by: Actor,
  now: number,
  details: Readonly<Record<string, unknown>>,
): TransitionBuilder => {
  const builder = new TransitionBuilder({ ...subscription, revision: 0 }, now)
  builder.decide("created", { by, details })
  builder.event("subscription.created", subscription, { by, subscription: toView(subscription) })
  return builder
}

/** The creation transition when creating causes nothing else. */
export const creation = <S extends Subscription>(
  subscription: S,
  by: Actor,
  now: number,
  details: Readonly<Record<string, unknown>>,
): Transition<S> => creationBuilder(subscription, by, now, details).build(subscription)
