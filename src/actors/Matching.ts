/**
 * Does an inbound message match what it answers?
 *
 * A provider's answer names a query, a hub result names a payment: the name
 * alone decides where the message goes, so whatever else the message says
 * about what it answers (the provider, the account, the payment's amount and
 * currency) must agree with what the engine sent. A message that disagrees is
 * not used at all: its router dead-letters it with the fields that disagree,
 * and nothing moves. The checks are pure; the routers (and the policies, as a
 * second line) call them.
 */
import type { Money } from "../domain/Money.ts"
import type { HandlerVerdict } from "../streams/DurableConsumer.ts"
import type { PaymentResult } from "../streams/Messages.ts"

/** One field on which a message disagrees with what it answers. */
export interface Disagreement {
  readonly field: string
  readonly expected: string
  readonly received: string
}

/** A message that does not match what it answers, and how. */
export interface Mismatch {
  readonly _tag: "Mismatch"
  /** What the message was checked against, in words ("the debt query it answers"). */
  readonly against: string
  readonly disagreements: ReadonlyArray<Disagreement>
}

/** One comparison: the field, what the engine expects, what the message says (undefined: not carried). */
export type Check = readonly [field: string, expected: string, received: string | undefined]

/** The mismatch among `checks`, or undefined when every carried field agrees. */
export const compare = (against: string, checks: ReadonlyArray<Check>): Mismatch | undefined => {
  const disagreements: Array<Disagreement> = []
  for (const [field, expected, received] of checks) {
    if (received !== undefined && received !== expected) disagreements.push({ field, expected, received })
  }
  return disagreements.length === 0 ? undefined : { _tag: "Mismatch", against, disagreements }
}

/** The first mismatch found, checking in order. */
export const firstOf = (...mismatches: ReadonlyArray<Mismatch | undefined>): Mismatch | undefined =>
  mismatches.find((mismatch) => mismatch !== undefined)

/** The reason kept with the dead letter: every field that disagrees, with both values. */
export const reasonOf = (what: string, mismatch: Mismatch): string =>
  `${what} does not match ${mismatch.against}: ${mismatch.disagreements
    .map(
      ({ field, expected, received }) =>
        `${field} is ${JSON.stringify(received)}, expected ${JSON.stringify(expected)}`,
    )
    .join("; ")}`

/** The consumer's verdict for a mismatched message: dead-lettered with its reason. */
export const deadLetterOf = (what: string, mismatch: Mismatch): HandlerVerdict => ({
  _tag: "DeadLetter",
  reason: reasonOf(what, mismatch),
})

/** What the engine recorded about a payment attempt, as far as a result may repeat it. */
export interface SentPayment {
  readonly paymentId: string
  readonly subscriptionId: string
  readonly occurrence: string
  readonly attempt: number
  readonly amount: Money
}

/**
 * A hub result against the payment its `paymentId` names. The contract's result carries only the
 * payment id; a hub that also repeats the subscription, occurrence, attempt or amount must repeat
 * them as sent.
 */
export const resultMismatch = (payment: SentPayment, result: PaymentResult): Mismatch | undefined =>
  compare(`the payment it names (${payment.paymentId})`, [
    ["subscriptionId", payment.subscriptionId.toLowerCase(), result.subscriptionId?.toLowerCase()],
    ["occurrence", payment.occurrence, result.occurrence],
    ["attempt", String(payment.attempt), result.attempt === undefined ? undefined : String(result.attempt)],
    ["amount.value", String(payment.amount.value), result.amount && String(result.amount.value)],
    ["amount.currency", payment.amount.currency, result.amount?.currency],
  ])
