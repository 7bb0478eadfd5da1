/**
 * Spending limits, for every kind of autopayment (contract 3.7).
 *
 * Two limits, both configured per currency:
 * - a maximum for one payment, per kind (a scheduled rent and a phone top-up
 *   have very different sensible ceilings);
 * - a maximum a client may spend through autopayments in one calendar month,
 *   in the client's time zone.
 *
 * A payment that would break either is not sent: the policy holds it, the
 * client is told, and `payment.confirm` releases it once.
 *
 * The per-payment check is pure. The monthly check is read-then-verify: the
 * actor reads the client's spend for the month before deciding, and the
 * group committer re-checks and records the spend under a row lock in the
 * same transaction as the payment row. If two actors of one client raced and
 * the second no longer fits, its commit loses and it decides again with the
 * fresh figure, so a client can never overspend however many subscriptions
 * pay at once.
 */
import * as Calendar from "../domain/Calendar.ts"
import type { Money } from "../domain/Money.ts"
import type { RuleInputs, Subscription } from "../domain/Subscription.ts"

/** Limits as configured: amounts in minor units, keyed by currency. */
export interface LimitSettings {
  readonly paymentMax: {
    readonly scheduled: Readonly<Record<string, number>>
    readonly threshold: Readonly<Record<string, number>>
    readonly debt: Readonly<Record<string, number>>
  }
  readonly monthlyMax: Readonly<Record<string, number>>
  /** Calendar months of the monthly limit are counted in this zone. */
  readonly clientTimeZone: string
}

/** No limit at all: the default until a bank configures them. */
export const noLimitSettings: LimitSettings = {
  paymentMax: { scheduled: {}, threshold: {}, debt: {} },
  monthlyMax: {},
  clientTimeZone: "Europe/Moscow",
}

/** The calendar month (`YYYY-MM`) of engine time `now` in `timeZone`. */
export const monthOf = (now: number, timeZone: string): string =>
  Calendar.instantToLocalDate(now, timeZone).slice(0, 7)

/** True when a monthly limit applies to payments in `currency`, so spend must be read and recorded. */
export const tracksMonthlySpend = (settings: LimitSettings, currency: string): boolean =>
  settings.monthlyMax[currency] !== undefined

/** What a client has spent in one month, in one currency, as read before deciding. */
export interface SpendReading {
  readonly month: string
  readonly spent: number
}

/** A limit a payment would break, with the inputs of the comparison (for history and the client). */
export interface LimitBreach {
  /** over_debt_limit is the debt kind's own limit; the caps apply to every kind. */
  readonly reason: "over_payment_cap" | "over_monthly_cap" | "over_debt_limit"
  readonly limit: RuleInputs
}

/** The spend a payment adds to its client's month, and whether the monthly cap was checked for it. */
export interface SpendRecord {
  readonly month: string
  /** False for a payment the client confirmed past a limit: counted, not checked. */
  readonly checked: boolean
}

/**
 * The limits one decision works with. It counts the payments it admits, so two
 * payments in one transition are checked together.
 */
export class LimitCheck {
  private admitted = 0
  constructor(
    readonly settings: LimitSettings,
    readonly subscription: Pick<Subscription, "kind" | "currency">,
    /** Null when no monthly limit applies to this currency. */
    readonly reading: SpendReading | null,
  ) {}

  /** Checks a payment about to be sent; when it passes it counts toward the month. */
  admit(amount: Money, now: number): LimitBreach | null {
    // Reminders never pay; every kind that does has its own cap.
    const kind = this.subscription.kind === "reminder" ? "scheduled" : this.subscription.kind
    const paymentMax = this.settings.paymentMax[kind][amount.currency]
    if (paymentMax !== undefined && amount.value > paymentMax) {
      return {
        reason: "over_payment_cap",
        limit: {
          rule: `one ${this.subscription.kind} payment may not exceed the cap`,
          cap: { value: paymentMax, currency: amount.currency },
          amount,
        },
      }
    }
    const monthlyMax = this.settings.monthlyMax[amount.currency]
    if (monthlyMax !== undefined) {
      const month = monthOf(now, this.settings.clientTimeZone)
      const spent = (this.reading?.month === month ? this.reading.spent : 0) + this.admitted
      if (spent + amount.value > monthlyMax) {
        return {
          reason: "over_monthly_cap",
          limit: {
            rule: "a client's autopayments in one calendar month may not exceed the cap",
            month,
            timeZone: this.settings.clientTimeZone,
            cap: { value: monthlyMax, currency: amount.currency },
            spentThisMonth: { value: spent, currency: amount.currency },
            amount,
          },
        }
      }
      this.admitted += amount.value
    }
    return null
  }

  /** True when a payment of `amount` at `now` would be held (nothing is counted). */
  wouldBreak(amount: Money, now: number): boolean {
    const admitted = this.admitted
    const breach = this.admit(amount, now)
    this.admitted = admitted
    return breach !== null
  }

  /** The spend record of a payment sent at `now`, or null when no monthly limit applies. */
  spendOf(amount: Money, now: number, checked: boolean): SpendRecord | null {
    return tracksMonthlySpend(this.settings, amount.currency)
      ? { month: monthOf(now, this.settings.clientTimeZone), checked }
      : null
  }
}

/** A check that lets everything through (policy unit tests, engines without limits). */
export const unlimited = (subscription: Pick<Subscription, "kind" | "currency">): LimitCheck =>
  new LimitCheck(noLimitSettings, subscription, null)
