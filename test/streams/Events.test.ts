/**
 * Every event and notification the policies publish decodes with the Schema
 * of its type (src/streams/Events.ts), checked at run time as well as by the
 * compiler: the policies are driven through representative transitions of
 * every kind, each message goes through JSON as it does on the wire, and a
 * field the schema does not know is an error too. Every type must be seen at
 * least once, so a new type cannot go out without a schema exercised here.
 */
import { Exit, Result, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { noLimitSettings } from "../../src/actors/Limits.ts"
import * as ReminderPolicy from "../../src/actors/ReminderPolicy.ts"
import { type Transition, TransitionBuilder } from "../../src/actors/Transition.ts"
import type { ReminderSubscription } from "../../src/domain/Subscription.ts"
import { eventDataSchemas, notificationDataSchemas } from "../../src/streams/Events.ts"
import { EngineEvent, EventType, Notification, NotificationType } from "../../src/streams/Messages.ts"
import { bill, DebtHarness, ThresholdHarness } from "../actors/eventHarness.ts"
import {
  at,
  client,
  commands,
  daily,
  events,
  HOUR,
  monthly,
  notifications,
  onlyCommand,
  PolicyHarness,
  policySettings,
  rub,
} from "../actors/policyHarness.ts"

/** A scheduled subscription through notices, payments, retries, skips, updates and every lifecycle change. */
const scheduled = (): ReadonlyArray<Transition> => {
  const paying = PolicyHarness.create({ schedule: daily() })
  paying.wake("2026-12-31T12:00:00Z") // payment.upcoming
  paying.wake("2027-01-01T09:00:00Z")
  paying.result(onlyCommand(lastOf(paying)).paymentId, "succeeded") // payment.succeeded
  paying.wake("2027-01-02T09:00:00Z")
  paying.result(onlyCommand(lastOf(paying)).paymentId, "failed", { retryable: true }) // retry_scheduled
  paying.wakeWhenDue()
  paying.result(onlyCommand(lastOf(paying)).paymentId, "failed", { retryable: false }) // failed, final
  paying.skipNext() // subscription.updated (skipNext)
  paying.wake("2027-01-03T09:00:00Z") // payment.skipped (skip_next)
  paying.update({ amount: 160_000 }) // subscription.updated (terms)
  paying.update({ schedule: daily({ time: "10:00" }) })
  paying.wake("2027-01-06T12:00:00Z") // payment.skipped (missed)
  paying.result(onlyCommand(lastOf(paying)).paymentId, "failed", { retryable: true })
  paying.pause() // payment.failed (abandoned retry), subscription.paused (client)
  paying.wake("2027-01-07T10:00:00Z") // payment.skipped (paused)
  paying.resume("2027-01-08T11:00:00Z") // subscription.resumed

  const once = PolicyHarness.create({
    schedule: daily({ maxPayments: 1 }),
    id: "0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d",
  })
  once.wake("2027-01-01T09:00:00Z")
  once.result(onlyCommand(lastOf(once)).paymentId, "succeeded") // subscription.completed

  const failing = PolicyHarness.create({ schedule: daily(), id: "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f" })
  for (const day of ["01", "02", "03"]) {
    failing.wake(`2027-01-${day}T09:00:00Z`)
    failing.result(onlyCommand(lastOf(failing)).paymentId, "declined") // the third pauses (engine)
  }
  failing.cancel() // subscription.cancelled

  const monthlyRun = PolicyHarness.create({ schedule: monthly(), id: "2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a" })
  monthlyRun.wake("2027-01-01T09:00:00Z")
  monthlyRun.result(onlyCommand(lastOf(monthlyRun)).paymentId, "failed", { retryable: true })
  monthlyRun.wakeWhenDue()
  monthlyRun.result(onlyCommand(lastOf(monthlyRun)).paymentId, "failed", { retryable: true })
  monthlyRun.wake("2027-02-01T09:00:00Z") // the retry is abandoned: the next occurrence came

  const doubled = PolicyHarness.create({ schedule: monthly(), id: "3a4b5c6d-7e8f-4a9b-8c0d-1e2f3a4b5c6d" })
  doubled.wake("2027-01-01T09:00:00Z")
  const firstAttempt = onlyCommand(lastOf(doubled)).paymentId
  doubled.result(firstAttempt, "failed", { retryable: true })
  doubled.wakeWhenDue() // the retry goes out
  doubled.result(firstAttempt, "succeeded") // payment.duplicate_suspected: the retry is in flight
  return [
    ...paying.transitions,
    ...once.transitions,
    ...failing.transitions,
    ...monthlyRun.transitions,
    ...doubled.transitions,
  ]
}

/** A threshold subscription: top-ups, skips, a hold by a cap and its release, failures, lifecycle. */
const threshold = (): ReadonlyArray<Transition> => {
  const harness = ThresholdHarness.create({
    limits: { ...noLimitSettings, paymentMax: { ...noLimitSettings.paymentMax, threshold: { RUB: 40_000 } } },
  })
  harness.reading("ev-1", 5_000) // held by the cap: limit.exceeded
  harness.reading("ev-2", 4_000) // payment.skipped (awaiting_confirmation)
  const held = harness.state.held[0]
  if (held === undefined) throw new Error("expected a held top-up")
  harness.confirm(held.paymentId) // payment.requested with confirmedBy
  harness.reading("ev-3", 3_000) // payment.skipped (top_up_in_flight)
  harness.result(held.paymentId, "succeeded")
  harness.reading("ev-4", 2_000) // payment.skipped (cooldown)
  harness.update({ threshold: rub(20_000) })
  harness.pause()
  harness.reading("ev-5", 1_000, { at: harness.now + HOUR }) // payment.skipped (paused)
  harness.resume()
  harness.update({ amount: rub(30_000) })
  const topUp = harness.reading("ev-6", 1_000, { at: harness.now + 2 * HOUR })
  harness.result(onlyCommand(topUp).paymentId, "failed", { retryable: true, reason: "insufficient_funds" })
  harness.cancel()
  return harness.transitions
}

/** A debt subscription: bills paid, held over the limit, skipped, failed, and the limit raised. */
const debt = (): ReadonlyArray<Transition> => {
  const harness = DebtHarness.create()
  harness.wake(harness.now)
  const answered = harness.answer([
    bill("water-1", 120_000),
    bill("gas-1", 450_000), // above the limit: debt.over_limit
    bill("zero-1", 0), // payment.skipped (nothing_to_pay)
    bill("power-1", 80_000),
  ])
  const [water, power] = commands(answered)
  if (water === undefined || power === undefined) throw new Error("expected two debt payments")
  harness.result(water.paymentId, "failed", { retryable: true }) // payment.failed, final: false
  harness.result(power.paymentId, "declined") // payment.failed, final
  harness.wake(harness.state.nextPollAt)
  harness.answer([bill("power-1", 80_000), bill("gas-1", 450_000)]) // payment.skipped (failed_before)
  harness.update({ limit: rub(500_000) }) // the held bill is released: payment.requested
  harness.pause()
  harness.resume()
  harness.cancel()
  return harness.transitions
}

const REMINDER_ID = "3e4f5a6b-7c8d-4e9f-8a0b-1c2d3e4f5a6b"
const payment = {
  paymentId: "hub-pay-1",
  clientId: "client-7",
  channel: "internet",
  providerId: "isp-1",
  account: "contract-77",
  source: "card-tok-1",
  amount: rub(89_000),
  at: "2027-01-05T12:00:00Z",
}

const newReminder = (id: string) =>
  ReminderPolicy.create(
    {
      id,
      clientId: "client-7",
      payee: { providerId: payment.providerId, account: payment.account, source: payment.source },
      terms: { remindAfter: "P30D" },
      by: { channel: payment.channel, terminal: null, requestId: null },
      createdAt: at(payment.at),
      payment,
    },
    at(payment.at),
  )

const step = (
  subscription: ReminderSubscription,
  input: Parameters<typeof ReminderPolicy.decide>[1],
  now: number,
) => {
  const result = ReminderPolicy.decide(subscription, input, now, policySettings)
  if (Result.isFailure(result)) throw new Error(`refused: ${result.failure.message}`)
  return result.success
}

/** Reminders: created, offered, declined; and another offered and accepted. */
const reminders = (): ReadonlyArray<Transition> => {
  const created = newReminder(REMINDER_ID)
  const offerAt = at("2027-02-04T12:00:00Z")
  const offered = step(created.subscription, { _tag: "Wake", statusReplies: new Map() }, offerAt)
  const declined = step(
    offered.subscription as ReminderSubscription,
    { _tag: "DeclineReminder", by: client },
    offerAt + HOUR,
  )
  const other = newReminder("4f5a6b7c-8d9e-4f0a-9b1c-2d3e4f5a6b7c")
  const accepted = step(
    other.subscription,
    {
      _tag: "AcceptReminder",
      by: client,
      schedule: monthly({ startDate: "2027-02-10", dayOfMonth: 10 }),
      amount: undefined,
      template: {
        id: "template-from-reminder",
        clientId: "client-7",
        name: "",
        fields: {},
        createdAt: offerAt,
        createdChannel: "mobile",
        createdTerminal: "device-42",
      },
    },
    offerAt,
  )
  return [created, offered, declined, other, accepted]
}

const lastOf = (harness: PolicyHarness): Transition => {
  const last = harness.transitions.at(-1)
  if (last === undefined) throw new Error("no transition yet")
  return last
}

/** What the wire carries: the message as JSON, parsed back. */
const overTheWire = (value: unknown): unknown => JSON.parse(JSON.stringify(value))

/** Decodes `value` with `schema`, failing on every problem and on any field the schema does not know. */
const problems = (schema: Schema.Top, value: unknown): string | undefined => {
  const exit = Schema.decodeUnknownExit(schema as Schema.Codec<unknown, unknown>)(value, {
    errors: "all",
    onExcessProperty: "error",
  })
  return Exit.isSuccess(exit) ? undefined : String(exit.cause)
}

describe("event and notification schemas", () => {
  const transitions = [...scheduled(), ...threshold(), ...debt(), ...reminders()]
  const published = transitions.flatMap((transition) => events(transition))
  const told = transitions.flatMap((transition) => notifications(transition))

  it("decode every event the policies publish, envelope and data", () => {
    expect(published.length).toBeGreaterThan(40)
    for (const event of published) {
      const wire = overTheWire(event) as { readonly data: unknown }
      expect({ type: event.type, problem: problems(EngineEvent, wire) }).toEqual({
        type: event.type,
        problem: undefined,
      })
      expect({ type: event.type, problem: problems(eventDataSchemas[event.type], wire.data) }).toEqual({
        type: event.type,
        problem: undefined,
      })
    }
  })

  it("decode every notification the policies send, envelope and data", () => {
    expect(told.length).toBeGreaterThan(10)
    for (const notification of told) {
      const wire = overTheWire(notification) as { readonly data: unknown }
      expect({ type: notification.type, problem: problems(Notification, wire) }).toEqual({
        type: notification.type,
        problem: undefined,
      })
      expect({
        type: notification.type,
        problem: problems(notificationDataSchemas[notification.type], wire.data),
      }).toEqual({ type: notification.type, problem: undefined })
    }
  })

  it("see every event and notification type, and every variant of the ones with several", () => {
    expect(new Set(published.map((event) => event.type))).toEqual(new Set(EventType.literals))
    expect(new Set(told.map((notification) => notification.type))).toEqual(new Set(NotificationType.literals))
    const variants = (type: string, key: string) =>
      new Set(
        published
          .filter((event) => event.type === type)
          .map((event) => JSON.stringify((event.data as Record<string, unknown>)[key] ?? null)),
      )
    expect(variants("subscription.paused", "reason")).toEqual(
      new Set(['"client_request"', '"consecutive_failures"']),
    )
    expect(variants("subscription.updated", "change")).toEqual(new Set(['"terms"', '"skipNext"']))
    expect(variants("payment.failed", "final")).toEqual(new Set(["true", "false"]))
    expect(published.some((event) => event.type === "payment.failed" && "abandonedRetry" in event.data)).toBe(
      true,
    )
    expect(new Set(published.filter((e) => e.type === "payment.skipped").map((e) => e.kind))).toEqual(
      new Set(["scheduled", "threshold", "debt"]),
    )
    expect(new Set(told.filter((n) => n.type === "payment.failed").map((n) => n.data.final))).toEqual(
      new Set([true, false]),
    )
  })

  it("refuse a payload that drifts from its schema", () => {
    const succeeded = published.find((event) => event.type === "payment.succeeded")
    if (succeeded === undefined) throw new Error("no payment.succeeded")
    const { hubReference: _, ...withoutReference } = succeeded.data
    expect(problems(eventDataSchemas["payment.succeeded"], withoutReference)).toContain("hubReference")
    expect(problems(eventDataSchemas["payment.succeeded"], { ...succeeded.data, extra: 1 })).toContain(
      "extra",
    )
  })
  it("reject a drifting payload at compile time, and at run time what slips past the compiler", () => {
    const builder = new TransitionBuilder(
      PolicyHarness.create({ schedule: daily() }).subscription,
      at("2027-01-01T00:00:00Z"),
    )
    // @ts-expect-error payment.succeeded needs hubReference and the payment's fields
    builder.event("payment.succeeded", builder.base, { paymentId: "p" })
    // @ts-expect-error a pause by a channel says so in `reason`
    builder.event("subscription.paused", builder.base, { reason: "because", by: client })
    // @ts-expect-error payment.upcoming names its occurrence by date
    builder.notify("payment.upcoming", { occurrence: 1 })
    const drifted = builder.build(builder.base)
    for (const event of events(drifted))
      expect(problems(eventDataSchemas[event.type], overTheWire(event.data))).toBeDefined()
    for (const notification of notifications(drifted)) {
      expect(
        problems(notificationDataSchemas[notification.type], overTheWire(notification.data)),
      ).toBeDefined()
    }
  })
})
