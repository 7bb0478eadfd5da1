import { Result } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import type { AcceptReminder, ActorInput } from "../../src/actors/Inputs.ts"
import { LimitCheck, noLimitSettings } from "../../src/actors/Limits.ts"
import type { PolicyRefusal } from "../../src/actors/PaymentRun.ts"
import * as Policy from "../../src/actors/Policy.ts"
import * as ReminderPolicy from "../../src/actors/ReminderPolicy.ts"
import type { Transition } from "../../src/actors/Transition.ts"
import type { Money } from "../../src/domain/Money.ts"
import {
  MAX_REMINDER_OFFERS,
  type ReminderSubscription,
  type ScheduleInput,
  type Subscription,
} from "../../src/domain/Subscription.ts"
import * as Timestamp from "../../src/domain/Timestamp.ts"
import type { HubPaymentCompleted } from "../../src/streams/Messages.ts"
import { refusal } from "./eventHarness.ts"
import {
  at,
  client,
  DAY,
  decisions,
  events,
  eventTypes,
  HOUR,
  MINUTE,
  monthly,
  notifications,
  notificationTypes,
  policySettings,
  rub,
} from "./policyHarness.ts"

const REMINDER_ID = "7c6d5e4f-3a2b-4c1d-8e9f-0a1b2c3d4e5f"
const PERIOD = 30 * DAY
const FIRST_PAID = "2027-01-01T10:00:00Z"
const FIRST_DUE = at(FIRST_PAID) + PERIOD
const PAYEE = { providerId: "isp-1", account: "contract-77" }

/** A one-off payment to the reminder's payee, as the hub reports it on `hub.payment.completed`. */
const oneOff = (
  paymentId: string,
  paidAt: string | number,
  overrides: { readonly amount?: Money; readonly source?: string; readonly channel?: string } = {},
): HubPaymentCompleted => ({
  paymentId,
  clientId: "client-7",
  channel: overrides.channel ?? "internet",
  ...PAYEE,
  source: overrides.source ?? "card-tok-9",
  amount: overrides.amount ?? rub(99_000),
  at: typeof paidAt === "number" ? Timestamp.format(paidAt) : paidAt,
})

const FIRST_PAYMENT = oneOff("one-off-1", FIRST_PAID)

type When = number | string | undefined

/** The transition of an accepted message (fails loudly on a refusal). */
const ok = (result: Result.Result<Transition, PolicyRefusal>): Transition => {
  if (Result.isFailure(result))
    throw new Error(`expected the message to be accepted, refused: ${result.failure.message}`)
  return result.success
}

const timeOf = (when: number | string): number => (typeof when === "number" ? when : at(when))

/**
 * A driver in the spirit of `policyHarness.ts`: a reminder made by `create` from a one-off payment,
 * fed messages one at a time, each successful transition applied as the actor does (revision + 1
 * when something changed). Once accepted it is a scheduled autopayment and its messages go through
 * `Policy.decide`, as the actor would send them.
 */
class ReminderHarness {
  subscription: Subscription
  now: number
  readonly created: Transition<ReminderSubscription>
  readonly steps: Array<{
    readonly input: ActorInput
    readonly now: number
    readonly before: Subscription
    readonly result: Result.Result<Transition, PolicyRefusal>
  }> = []

  constructor(payment: HubPaymentCompleted, now: number, remindAfter: string) {
    this.now = now
    this.created = ReminderPolicy.create(
      {
        id: REMINDER_ID,
        clientId: payment.clientId,
        payee: { providerId: payment.providerId, account: payment.account, source: payment.source },
        terms: { remindAfter },
        by: { channel: payment.channel, terminal: null, requestId: null },
        createdAt: now,
        payment,
      },
      now,
    )
    this.subscription = this.created.subscription
  }

  static create(
    options: {
      readonly payment?: HubPaymentCompleted
      readonly now?: When
      readonly remindAfter?: string
    } = {},
  ): ReminderHarness {
    const payment = options.payment ?? FIRST_PAYMENT
    const now = options.now === undefined ? at(payment.at) + MINUTE : timeOf(options.now)
    return new ReminderHarness(payment, now, options.remindAfter ?? "P30D")
  }

  /** The reminder (fails loudly once it has become something else). */
  get reminder(): ReminderSubscription {
    if (this.subscription.kind !== "reminder")
      throw new Error(`no longer a reminder: ${this.subscription.kind}`)
    return this.subscription
  }

  send(input: ActorInput, when: When = undefined): Result.Result<Transition, PolicyRefusal> {
    const target = when === undefined ? this.now : timeOf(when)
    if (target < this.now) throw new Error("engine time cannot go back")
    this.now = target
    const before = this.subscription
    const result =
      before.kind === "reminder"
        ? ReminderPolicy.decide(before, input, target, policySettings)
        : Policy.decide(before, input, target, policySettings, new LimitCheck(noLimitSettings, before, null))
    this.steps.push({ input, now: target, before, result })
    if (Result.isSuccess(result) && result.success.changed) {
      this.subscription = { ...result.success.subscription, revision: before.revision + 1 }
    }
    return result
  }

  wake(when: When = undefined, autopaymentToPayee?: boolean): Transition {
    return ok(
      this.send(
        {
          _tag: "Wake",
          statusReplies: new Map(),
          ...(autopaymentToPayee === undefined ? {} : { autopaymentToPayee }),
        },
        when,
      ),
    )
  }

  /** Wakes at the reminder's own next due time. */
  wakeWhenDue(): Transition {
    const due = this.subscription.nextDueAt
    if (due === null) throw new Error("nothing is due: nextDueAt is null")
    return this.wake(Math.max(due, this.now))
  }

  paid(payment: HubPaymentCompleted, when: When = undefined): Transition {
    return ok(this.send({ _tag: "PaymentCompleted", payment }, when))
  }

  accept(
    options: {
      readonly schedule?: ScheduleInput
      readonly amount?: Money
      readonly name?: string
      readonly autopaymentToPayee?: boolean
    } = {},
    when: When = undefined,
  ) {
    const input: AcceptReminder = {
      _tag: "AcceptReminder",
      by: client,
      schedule: options.schedule ?? monthly({ dayOfMonth: 15, startDate: "2027-02-01" }),
      amount: options.amount,
      template: {
        id: "template-from-reminder",
        clientId: "client-7",
        name: options.name ?? "Internet at home",
        fields: {},
        createdAt: when === undefined ? this.now : timeOf(when),
        createdChannel: client.channel ?? "mobile",
        createdTerminal: client.terminal,
      },
      ...(options.autopaymentToPayee === undefined ? {} : { autopaymentToPayee: options.autopaymentToPayee }),
    }
    return this.send(input, when)
  }

  decline(when: When = undefined) {
    return this.send({ _tag: "DeclineReminder", by: client }, when)
  }
}

/** The offer a transition makes (notification data), or undefined. */
const offerOf = (transition: Transition) => notifications(transition, "reminder.offer")[0]?.data

// ---- creation -----------------------------------------------------------------

describe("create", () => {
  it("makes a hidden, active reminder due one period after the payment, with a created decision", () => {
    const harness = ReminderHarness.create()
    const { subscription } = harness.created
    expect(subscription).toMatchObject({
      id: REMINDER_ID,
      kind: "reminder",
      hidden: true,
      status: "active",
      statusReason: null,
      version: 1,
      revision: 1,
      templateId: null,
      currency: "RUB",
      payee: { ...PAYEE, source: "card-tok-9" },
      nextDueAt: FIRST_DUE,
      terms: { remindAfter: "P30D" },
    })
    expect(subscription.state).toEqual({
      lastPayment: {
        paymentId: "one-off-1",
        amount: rub(99_000),
        source: "card-tok-9",
        channel: "internet",
        at: at(FIRST_PAID),
      },
      offers: 0,
      nextOfferAt: FIRST_DUE,
      open: [],
      held: [],
    })
    expect(decisions(harness.created).map((d) => [d.outcome, d.channel, d.details])).toEqual([
      [
        "created",
        "internet",
        { paymentId: "one-off-1", remindAfter: "P30D", nextOfferAt: "2027-01-31T10:00:00.000Z" },
      ],
    ])
    expect(eventTypes(harness.created)).toEqual(["subscription.created"])
    expect(notificationTypes(harness.created)).toEqual([])
    expect(harness.created.templates).toEqual([])
  })

  it("counts the period from when the payment was made, not from when it was heard of", () => {
    const harness = ReminderHarness.create({ now: "2027-01-03T00:00:00Z", remindAfter: "P7D" })
    expect(harness.subscription.nextDueAt).toBe(at(FIRST_PAID) + 7 * DAY)
  })
})

// ---- offers -------------------------------------------------------------------

describe("offers", () => {
  it("offers nothing before the due time, and nothing is written", () => {
    const harness = ReminderHarness.create()
    const early = harness.wake(FIRST_DUE - 1)
    expect(early.changed).toBe(false)
    expect(early.outgoing).toEqual([])
    expect(early.decisions).toEqual([])
    expect(harness.reminder.state.offers).toBe(0)
  })

  it("offers at the due time with the payee, the last payment and its source, as offer 1 of 3", () => {
    const harness = ReminderHarness.create()
    const offered = harness.wake(FIRST_DUE)
    const expected = {
      reminderId: REMINDER_ID,
      providerId: PAYEE.providerId,
      account: PAYEE.account,
      source: "card-tok-9",
      lastAmount: rub(99_000),
      lastPaidAt: "2027-01-01T10:00:00.000Z",
      lastPaymentId: "one-off-1",
      howToAnswer: expect.stringContaining("reminder.accept"),
      offer: 1,
      of: MAX_REMINDER_OFFERS,
    }
    expect(notifications(offered)).toEqual([
      expect.objectContaining({
        type: "reminder.offer",
        clientId: "client-7",
        subscriptionId: REMINDER_ID,
        at: "2027-01-31T10:00:00.000Z",
        data: expected,
      }),
    ])
    expect(events(offered)).toEqual([
      expect.objectContaining({ type: "reminder.offered", kind: "reminder", data: expected }),
    ])
    expect(decisions(offered).map((d) => d.outcome)).toEqual(["offered"])
    // Offers change no version: the client has nothing to be stale about.
    expect(harness.reminder).toMatchObject({ status: "active", version: 1, revision: 2 })
    expect(harness.reminder.state).toMatchObject({ offers: 1, nextOfferAt: FIRST_DUE + PERIOD })
    expect(harness.subscription.nextDueAt).toBe(FIRST_DUE + PERIOD)
  })

  it("does not offer twice for one due time (a duplicate tick)", () => {
    const harness = ReminderHarness.create()
    harness.wake(FIRST_DUE)
    const again = harness.wake(FIRST_DUE + HOUR)
    expect(again.changed).toBe(false)
    expect(harness.reminder.state.offers).toBe(1)
  })

  it("offers again every period, three times at most, then stops with no_answer", () => {
    const harness = ReminderHarness.create()
    const offered = [harness.wakeWhenDue(), harness.wakeWhenDue(), harness.wakeWhenDue()]
    expect(harness.steps.map((step) => step.now)).toEqual([
      FIRST_DUE,
      FIRST_DUE + PERIOD,
      FIRST_DUE + 2 * PERIOD,
    ])
    expect(offered.map((t) => offerOf(t)?.offer)).toEqual([1, 2, 3])
    const last = offered[2] as Transition
    expect(decisions(last).map((d) => [d.outcome, d.reason])).toEqual([
      ["offered", null],
      ["stopped", "no_answer"],
    ])
    expect(harness.reminder).toMatchObject({
      status: "completed",
      statusReason: "no_answer",
      nextDueAt: null,
    })
    expect(harness.reminder.state).toMatchObject({ offers: 3, nextOfferAt: null })
    // Nothing more, however late.
    const later = harness.wake(FIRST_DUE + 10 * PERIOD)
    expect(later.changed).toBe(false)
    expect(later.outgoing).toEqual([])
  })

  it("the next offer is one period after a late offer, never before", () => {
    const harness = ReminderHarness.create()
    harness.wake(FIRST_DUE + 2 * DAY) // the engine was down when it was due
    expect(harness.subscription.nextDueAt).toBe(FIRST_DUE + 2 * DAY + PERIOD)
    expect(harness.wake(FIRST_DUE + 2 * DAY + PERIOD - 1).changed).toBe(false)
  })

  it("a hub result can be about nothing of a reminder's: nothing is written", () => {
    const harness = ReminderHarness.create()
    const result = ok(
      harness.send({
        _tag: "HubResult",
        result: { paymentId: "p", status: "succeeded", retryable: false, at: FIRST_PAID },
        recordedStatus: null,
      }),
    )
    expect(result.changed).toBe(false)
  })
})

// ---- a new one-off payment ------------------------------------------------------

describe("PaymentCompleted", () => {
  it("a payment of another client or to another payee is refused and writes nothing", () => {
    const harness = ReminderHarness.create()
    const before = harness.subscription
    const astray = {
      ...oneOff("one-off-2", "2027-01-05T10:00:00Z"),
      clientId: "client-8",
      account: "contract-78",
    }
    const refused = refusal(harness.send({ _tag: "PaymentCompleted", payment: astray }))
    expect(refused.message).toBe(
      `one-off payment does not match the reminder it was handed to (${REMINDER_ID}): ` +
        `clientId is "client-8", expected "client-7"; account is "contract-78", expected "contract-77"`,
    )
    expect(harness.subscription).toBe(before)
    expect(ReminderPolicy.paymentMismatch(harness.reminder, FIRST_PAYMENT)).toBeUndefined()
  })

  it("the same payment again changes nothing and writes nothing", () => {
    const harness = ReminderHarness.create()
    harness.wakeWhenDue()
    const before = harness.subscription
    const again = harness.paid({ ...FIRST_PAYMENT, at: "2027-02-10T00:00:00Z" })
    expect(again.changed).toBe(false)
    expect(again.decisions).toEqual([])
    expect(harness.subscription).toBe(before)
  })

  it("an older payment than the one known changes nothing and writes nothing", () => {
    const harness = ReminderHarness.create()
    const older = harness.paid(oneOff("one-off-0", "2026-12-20T10:00:00Z", { source: "card-tok-old" }))
    expect(older.changed).toBe(false)
    expect(older.outgoing).toEqual([])
    expect(harness.reminder.state.lastPayment.paymentId).toBe("one-off-1")
  })

  it("a newer payment resets the offers and starts the period from it", () => {
    const harness = ReminderHarness.create()
    harness.wakeWhenDue()
    harness.wakeWhenDue()
    const paidAt = FIRST_DUE + PERIOD + 5 * DAY
    const restarted = harness.paid(
      oneOff("one-off-2", paidAt, { amount: rub(120_000), source: "card-tok-new", channel: "atm" }),
      paidAt + MINUTE,
    )
    expect(decisions(restarted).map((d) => [d.outcome, d.reason, d.details])).toEqual([
      [
        "restarted",
        "new_payment",
        {
          paymentId: "one-off-2",
          amount: rub(120_000),
          nextOfferAt: Timestamp.format(paidAt + PERIOD),
        },
      ],
    ])
    expect(restarted.outgoing).toEqual([])
    expect(harness.reminder).toMatchObject({ status: "active", version: 1, nextDueAt: paidAt + PERIOD })
    expect(harness.reminder.state).toMatchObject({
      offers: 0,
      nextOfferAt: paidAt + PERIOD,
      lastPayment: {
        paymentId: "one-off-2",
        amount: rub(120_000),
        source: "card-tok-new",
        channel: "atm",
        at: paidAt,
      },
    })
    // The old due time offers nothing; three offers again from the new period.
    expect(harness.wake(FIRST_DUE + 2 * PERIOD).changed).toBe(false)
    const offers = [harness.wakeWhenDue(), harness.wakeWhenDue(), harness.wakeWhenDue()].map((t) =>
      offerOf(t),
    )
    expect(offers.map((o) => [o?.offer, o?.lastPaymentId, o?.source, o?.lastAmount])).toEqual([
      [1, "one-off-2", "card-tok-new", rub(120_000)],
      [2, "one-off-2", "card-tok-new", rub(120_000)],
      [3, "one-off-2", "card-tok-new", rub(120_000)],
    ])
    expect(harness.reminder.status).toBe("completed")
  })

  it("a payment made while the reminder was waiting restarts it before its offer", () => {
    const harness = ReminderHarness.create()
    harness.paid(oneOff("one-off-2", FIRST_DUE - DAY), FIRST_DUE - DAY)
    expect(harness.wake(FIRST_DUE).changed).toBe(false)
    expect(offerOf(harness.wake(FIRST_DUE - DAY + PERIOD))?.lastPaymentId).toBe("one-off-2")
  })

  it("after no_answer a new payment makes it active again", () => {
    const harness = ReminderHarness.create()
    for (let i = 0; i < MAX_REMINDER_OFFERS; i++) harness.wakeWhenDue()
    expect(harness.reminder.statusReason).toBe("no_answer")
    const paidAt = FIRST_DUE + 4 * PERIOD
    const restarted = harness.paid(oneOff("one-off-2", paidAt), paidAt)
    expect(decisions(restarted).map((d) => [d.outcome, d.reason])).toEqual([
      ["restarted", "new_payment_after_stop"],
    ])
    expect(harness.reminder).toMatchObject({
      status: "active",
      statusReason: null,
      nextDueAt: paidAt + PERIOD,
    })
    expect(harness.reminder.state.offers).toBe(0)
    expect(offerOf(harness.wakeWhenDue())?.offer).toBe(1)
  })
})

// ---- decline ----------------------------------------------------------------------

describe("decline", () => {
  it("cancels the reminder for good, with a declined decision and a reminder.declined event", () => {
    const harness = ReminderHarness.create()
    harness.wakeWhenDue()
    const declined = ok(harness.decline(FIRST_DUE + HOUR))
    expect(harness.reminder).toMatchObject({
      status: "cancelled",
      statusReason: "declined",
      version: 2,
      nextDueAt: null,
    })
    expect(decisions(declined).map((d) => [d.outcome, d.channel])).toEqual([["declined", "mobile"]])
    expect(events(declined)).toEqual([
      expect.objectContaining({
        type: "reminder.declined",
        data: expect.objectContaining({ reminderId: REMINDER_ID, lastPaymentId: "one-off-1", by: client }),
      }),
    ])
    expect(notificationTypes(declined)).toEqual([])
  })

  it("ignores new payments afterwards, noting them as ignored (declined), and never offers again", () => {
    const harness = ReminderHarness.create()
    ok(harness.decline())
    const paidAt = FIRST_DUE
    const ignored = harness.paid(oneOff("one-off-2", paidAt), paidAt)
    expect(decisions(ignored).map((d) => [d.outcome, d.reason, d.details.paymentId])).toEqual([
      ["ignored", "declined", "one-off-2"],
    ])
    expect(ignored.outgoing).toEqual([])
    expect(harness.reminder).toMatchObject({ status: "cancelled", statusReason: "declined", nextDueAt: null })
    expect(harness.reminder.state.lastPayment.paymentId).toBe("one-off-1")
    expect(harness.wake(paidAt + 5 * PERIOD).changed).toBe(false)
  })

  it("refuses a second decline and an accept with Conflict, and changes nothing", () => {
    const harness = ReminderHarness.create()
    ok(harness.decline())
    const before = harness.subscription
    expect(refusal(harness.decline())._tag).toBe("Conflict")
    expect(refusal(harness.accept())).toMatchObject({
      _tag: "Conflict",
      message: expect.stringContaining("declined"),
    })
    expect(harness.subscription).toBe(before)
  })

  it("may decline a reminder that stopped after three offers", () => {
    const harness = ReminderHarness.create()
    for (let i = 0; i < MAX_REMINDER_OFFERS; i++) harness.wakeWhenDue()
    ok(harness.decline())
    expect(harness.reminder).toMatchObject({ status: "cancelled", statusReason: "declined" })
  })
})

// ---- accept -----------------------------------------------------------------------

describe("accept", () => {
  it("turns the reminder into a visible scheduled autopayment of the same id, with its template", () => {
    const harness = ReminderHarness.create()
    harness.wakeWhenDue()
    const accepted = ok(harness.accept({}, FIRST_DUE + HOUR))
    const scheduled = accepted.subscription
    if (scheduled.kind !== "scheduled") throw new Error(`expected scheduled, got ${scheduled.kind}`)
    expect(scheduled).toMatchObject({
      id: REMINDER_ID,
      clientId: "client-7",
      kind: "scheduled",
      hidden: false,
      status: "active",
      statusReason: null,
      version: 2,
      templateId: "template-from-reminder",
      currency: "RUB",
      payee: { ...PAYEE, source: "card-tok-9" },
      terms: { amount: rub(99_000), schedule: expect.objectContaining({ every: "month", dayOfMonth: 15 }) },
    })
    expect(scheduled.state.cursor).toMatchObject({ date: "2027-02-15", dueAt: at("2027-02-15T09:00:00Z") })
    expect(scheduled.nextDueAt).toBe(at("2027-02-15T09:00:00Z") - policySettings.noticeLeadMs)
    expect(accepted.templates).toEqual([
      {
        id: "template-from-reminder",
        clientId: "client-7",
        name: "Internet at home",
        fields: {},
        createdAt: FIRST_DUE + HOUR,
        createdChannel: "mobile",
        createdTerminal: "device-42",
        ...PAYEE,
        source: "card-tok-9",
      },
    ])
    expect(decisions(accepted).map((d) => [d.outcome, d.channel, d.details.templateId])).toEqual([
      ["accepted", "mobile", "template-from-reminder"],
    ])
    expect(eventTypes(accepted)).toEqual(["reminder.accepted", "subscription.created"])
    const [reminderAccepted, created] = events(accepted)
    expect(reminderAccepted).toMatchObject({
      kind: "scheduled",
      subscriptionId: REMINDER_ID,
      data: {
        reminderId: REMINDER_ID,
        lastPaymentId: "one-off-1",
        by: client,
        subscription: { subscriptionId: REMINDER_ID, kind: "scheduled", hidden: false },
      },
    })
    expect(created).toMatchObject({ data: { fromReminder: true, by: client } })
    expect(notificationTypes(accepted)).toEqual([])
    expect(accepted.payments).toEqual([])
  })

  it("pays from the source of the latest one-off payment, the one offered", () => {
    const harness = ReminderHarness.create()
    const paidAt = at("2027-01-05T10:00:00Z")
    harness.paid(oneOff("one-off-2", paidAt, { source: "card-tok-new" }), paidAt)
    const accepted = ok(harness.accept())
    expect(accepted.subscription.payee.source).toBe("card-tok-new")
    expect(accepted.templates.map((t) => t.source)).toEqual(["card-tok-new"])
  })

  it("defaults the amount to the last payment's, takes another in the same currency", () => {
    const restarted = ReminderHarness.create()
    restarted.paid(oneOff("one-off-2", "2027-01-05T10:00:00Z", { amount: rub(120_000) }))
    expect(ok(restarted.accept()).subscription).toMatchObject({ terms: { amount: rub(120_000) } })
    const chosen = ReminderHarness.create()
    expect(ok(chosen.accept({ amount: rub(50_000) })).subscription).toMatchObject({
      terms: { amount: rub(50_000) },
    })
  })

  it("names the template after the payee when the client gives no name", () => {
    const harness = ReminderHarness.create()
    expect(ok(harness.accept({ name: "" })).templates.map((t) => t.name)).toEqual(["isp-1 contract-77"])
  })

  it("refuses another currency than the payment's (ValidationFailed) and changes nothing", () => {
    const harness = ReminderHarness.create()
    const before = harness.subscription
    expect(refusal(harness.accept({ amount: { value: 1_000, currency: "USD" } }))).toMatchObject({
      _tag: "ValidationFailed",
      details: [{ path: "body.amount.currency" }],
    })
    expect(harness.subscription).toBe(before)
  })

  it("refuses a schedule with no occurrence after the engine's time (ValidationFailed)", () => {
    const harness = ReminderHarness.create()
    const ended = monthly({ startDate: "2026-06-01", endDate: "2026-12-31" })
    expect(refusal(harness.accept({ schedule: ended }))).toMatchObject({
      _tag: "ValidationFailed",
      details: [{ path: "body.schedule" }],
    })
    expect(harness.subscription.kind).toBe("reminder")
  })

  it("may accept after three unanswered offers", () => {
    const harness = ReminderHarness.create()
    for (let i = 0; i < MAX_REMINDER_OFFERS; i++) harness.wakeWhenDue()
    const accepted = ok(harness.accept({ schedule: monthly({ startDate: "2027-06-01" }) }))
    expect(accepted.subscription).toMatchObject({ kind: "scheduled", status: "active", version: 2 })
  })

  it("leaves a scheduled autopayment that takes no reminder messages", () => {
    const harness = ReminderHarness.create()
    ok(harness.accept())
    expect(refusal(harness.accept())._tag).toBe("Conflict")
    expect(refusal(harness.decline())._tag).toBe("Conflict")
    expect(
      refusal(harness.send({ _tag: "PaymentCompleted", payment: oneOff("one-off-2", FIRST_DUE) }))._tag,
    ).toBe("Conflict")
  })
})

// ---- an autopayment to the payee set up meanwhile -----------------------------------

describe("an autopayment to the payee", () => {
  it("stops the reminder at its due time without an offer", () => {
    const harness = ReminderHarness.create()
    const stopped = harness.wake(FIRST_DUE, true)
    expect(notificationTypes(stopped)).toEqual([])
    expect(eventTypes(stopped)).toEqual([])
    expect(decisions(stopped).map((d) => [d.outcome, d.reason, d.details])).toEqual([
      ["stopped", "autopayment_exists", { offers: 0 }],
    ])
    expect(harness.reminder).toMatchObject({
      status: "completed",
      statusReason: "autopayment_exists",
      nextDueAt: null,
      version: 1,
    })
    expect(harness.reminder.state.nextOfferAt).toBeNull()
    expect(harness.wake(FIRST_DUE + PERIOD, true).changed).toBe(false)
  })

  it("keeps the offers already made in the stopped decision", () => {
    const harness = ReminderHarness.create()
    harness.wakeWhenDue()
    const stopped = harness.wake(FIRST_DUE + PERIOD, true)
    expect(decisions(stopped).map((d) => d.details)).toEqual([{ offers: 1 }])
  })

  it("does not touch a reminder already declined", () => {
    const harness = ReminderHarness.create()
    ok(harness.decline())
    expect(harness.wake(FIRST_DUE, true).changed).toBe(false)
    expect(harness.reminder.statusReason).toBe("declined")
  })

  it("refuses an accept with Conflict, and changes nothing", () => {
    const harness = ReminderHarness.create()
    harness.wakeWhenDue()
    const before = harness.subscription
    expect(refusal(harness.accept({ autopaymentToPayee: true }))).toMatchObject({
      _tag: "Conflict",
      message: expect.stringContaining("automatically"),
    })
    expect(harness.subscription).toBe(before)
  })
})

// ---- what a reminder does not take ------------------------------------------------------

describe("refused messages", () => {
  it("refuses pause, resume, cancel, update and confirm with Conflict", () => {
    const harness = ReminderHarness.create()
    const before = harness.subscription
    const inputs: ReadonlyArray<ActorInput> = [
      { _tag: "Pause", by: client },
      { _tag: "Resume", by: client },
      { _tag: "Cancel", by: client },
      { _tag: "SkipNext", by: client },
      { _tag: "Update", by: client, expectedVersion: 1, amount: rub(1), schedule: undefined },
      { _tag: "Confirm", by: client, paymentId: "p" },
    ]
    for (const input of inputs) {
      expect(refusal(harness.send(input)), input._tag).toMatchObject({ _tag: "Conflict" })
    }
    expect(refusal(harness.send({ _tag: "Pause", by: client })).message).toContain("reminder.accept")
    expect(harness.subscription).toBe(before)
  })
})

// ---- property -------------------------------------------------------------------------

type Action =
  | { readonly _tag: "WakeWhenDue"; readonly autopayment: boolean }
  | { readonly _tag: "WakeAfter"; readonly ms: number; readonly autopayment: boolean }
  | { readonly _tag: "Payment"; readonly fresh: boolean; readonly pick: number; readonly backMs: number }
  | { readonly _tag: "Accept"; readonly autopayment: boolean; readonly foreignCurrency: boolean }
  | { readonly _tag: "Decline" }

const action: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      _tag: fc.constant("WakeWhenDue" as const),
      autopayment: fc.constantFrom(false, false, false, false, true),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      _tag: fc.constant("WakeAfter" as const),
      ms: fc.oneof(fc.integer({ min: 0, max: 2 * DAY }), fc.integer({ min: 0, max: 70 * DAY })),
      autopayment: fc.constantFrom(false, false, false, false, true),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      _tag: fc.constant("Payment" as const),
      fresh: fc.boolean(),
      pick: fc.nat(),
      backMs: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 70 * DAY })),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("Accept" as const),
      autopayment: fc.constantFrom(false, false, true),
      foreignCurrency: fc.constantFrom(false, false, true),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ _tag: "Decline" as const }) },
)

const REMINDER_OUTCOMES = new Set(["offered", "stopped", "restarted", "ignored", "declined", "accepted"])

/** Runs `actions` on a fresh reminder and checks every step against the rules of contract 3.8. */
const runAndCheck = (actions: ReadonlyArray<Action>) => {
  const harness = ReminderHarness.create()
  const seen: Array<HubPaymentCompleted> = [FIRST_PAYMENT]
  let offersSinceRestart = 0
  let declined = false
  let accepted = false
  for (const [index, step] of actions.entries()) {
    const before = harness.subscription
    let result: Result.Result<Transition, PolicyRefusal>
    let expectRestart = false
    switch (step._tag) {
      case "WakeWhenDue":
      case "WakeAfter": {
        const when =
          step._tag === "WakeAfter"
            ? harness.now + step.ms
            : Math.max(before.nextDueAt ?? harness.now, harness.now)
        result = harness.send(
          { _tag: "Wake", statusReplies: new Map(), autopaymentToPayee: step.autopayment },
          when,
        )
        break
      }
      case "Payment": {
        const payment = step.fresh
          ? oneOff(`one-off-${index + 2}`, harness.now - step.backMs, {
              source: `card-${index % 3}`,
              amount: rub(1_000 + index),
            })
          : (seen[step.pick % seen.length] as HubPaymentCompleted)
        seen.push(payment)
        if (before.kind === "reminder") {
          const last = before.state.lastPayment
          expectRestart =
            before.status !== "cancelled" &&
            payment.paymentId !== last.paymentId &&
            Timestamp.millisOf(payment.at) >= last.at
        }
        result = harness.send({ _tag: "PaymentCompleted", payment })
        break
      }
      case "Accept":
        result = harness.accept({
          schedule: monthly({ startDate: "2027-01-01" }),
          autopaymentToPayee: step.autopayment,
          ...(step.foreignCurrency ? { amount: { value: 500, currency: "USD" } } : {}),
        })
        break
      case "Decline":
        result = harness.decline()
        break
    }

    if (accepted) {
      // A scheduled autopayment now: no reminder message is taken, no reminder decision is made.
      expect(harness.subscription.kind).toBe("scheduled")
      if (step._tag === "Accept" || step._tag === "Decline" || step._tag === "Payment") {
        expect(Result.isFailure(result)).toBe(true)
      }
      if (Result.isSuccess(result)) {
        const transition = result.success
        expect(transition.decisions.filter((d) => REMINDER_OUTCOMES.has(d.outcome))).toEqual([])
        expect(transition.outgoing.filter((m) => JSON.stringify(m).includes('"reminder.'))).toEqual([])
      }
      continue
    }
    if (before.kind !== "reminder") throw new Error("unreachable")

    if (Result.isFailure(result)) {
      expect(harness.subscription).toBe(before)
      if (declined) expect(result.failure._tag).toBe("Conflict")
      continue
    }
    const transition = result.success
    const offers = notifications(transition, "reminder.offer")
    const outcomes = transition.decisions.map((d) => d.outcome)

    // An offer only when due, by a wake, to an active reminder, with no autopayment to the payee.
    expect(offers.length).toBeLessThanOrEqual(1)
    if (offers.length === 1) {
      const now = harness.now
      expect(step._tag === "WakeWhenDue" || step._tag === "WakeAfter").toBe(true)
      expect(
        step._tag !== "Payment" && step._tag !== "Decline" && step._tag !== "Accept" && step.autopayment,
      ).toBe(false)
      expect(before.status).toBe("active")
      expect(before.state.nextOfferAt).not.toBeNull()
      expect(before.state.nextOfferAt as number).toBeLessThanOrEqual(now)
      offersSinceRestart += 1
      expect(offers[0]?.data).toMatchObject({ offer: offersSinceRestart, of: MAX_REMINDER_OFFERS })
    }
    expect(offersSinceRestart).toBeLessThanOrEqual(MAX_REMINDER_OFFERS)

    // Payments: a newer one restarts; a repeated or older one writes nothing.
    if (step._tag === "Payment") {
      expect(outcomes.includes("restarted")).toBe(expectRestart)
      if (expectRestart) offersSinceRestart = 0
      else if (!declined) expect(transition.changed).toBe(false)
    }

    // Nothing after a decline but a note of ignored payments.
    if (declined) {
      expect(offers).toEqual([])
      expect(outcomes.filter((o) => o !== "ignored")).toEqual([])
      expect(harness.subscription).toMatchObject({
        status: "cancelled",
        statusReason: "declined",
        nextDueAt: null,
      })
    }
    if (step._tag === "Decline") declined = true

    const after = harness.subscription
    if (after.kind === "scheduled") {
      expect(step._tag).toBe("Accept")
      expect(after).toMatchObject({ id: REMINDER_ID, hidden: false, version: before.version + 1 })
      expect(after.payee.source).toBe(before.state.lastPayment.source)
      accepted = true
      continue
    }
    if (after.kind !== "reminder") throw new Error(`unexpected kind ${after.kind}`)
    // The row is due exactly when the reminder has an offer to make.
    expect(after.state.offers).toBeLessThanOrEqual(MAX_REMINDER_OFFERS)
    expect(after.nextDueAt).toBe(after.status === "active" ? after.state.nextOfferAt : null)
    if (after.status === "active") expect(after.state.nextOfferAt).not.toBeNull()
  }
}

describe("property", () => {
  it("at most three offers per restart, only when due, nothing after a decline, a scheduled autopayment after an accept", () => {
    fc.assert(
      fc.property(fc.array(action, { minLength: 5, maxLength: 60 }), (actions) => {
        runAndCheck(actions)
      }),
      { seed: 20_270_131, numRuns: 300 },
    )
  })
})
