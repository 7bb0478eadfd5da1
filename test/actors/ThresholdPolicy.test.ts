import { Result } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import type { ActorInput } from "../../src/actors/Inputs.ts"
import { type LimitSettings, noLimitSettings } from "../../src/actors/Limits.ts"
import { attemptsAwaitingStatus } from "../../src/actors/Policy.ts"
import { readingMismatch, watchedBy } from "../../src/actors/ThresholdPolicy.ts"
import type { Transition } from "../../src/actors/Transition.ts"
import { paymentIdFor } from "../../src/domain/Ids.ts"
import type { ThresholdSubscription } from "../../src/domain/Subscription.ts"
import * as Timestamp from "../../src/domain/Timestamp.ts"
import type { PaymentStatus, PaymentStatusReply, ThresholdEvent } from "../../src/streams/Messages.ts"
import {
  type ThresholdHarness as Harness,
  providerMessages,
  refusal,
  THRESHOLD_ID,
  THRESHOLD_PAYEE,
  ThresholdHarness,
  watchMessages,
} from "./eventHarness.ts"
import {
  at,
  client,
  commands,
  decisions,
  events,
  eventTypes,
  HOUR,
  hubResult,
  MINUTE,
  notifications,
  notificationTypes,
  onlyCommand,
  rub,
} from "./policyHarness.ts"

const pid = (eventId: string, attempt = 1) => paymentIdFor(THRESHOLD_ID, eventId, attempt)

const T0 = at("2027-01-10T00:00:00Z")
const T1 = at("2027-01-10T09:00:00Z")

const capOn = (kind: keyof LimitSettings["paymentMax"], value: number, currency = "RUB"): LimitSettings => ({
  ...noLimitSettings,
  paymentMax: { ...noLimitSettings.paymentMax, [kind]: { [currency]: value } },
})

/** A harness whose subscription has one top-up in flight, paid for `ev-1` at T1. */
const withTopUpInFlight = (options: Parameters<typeof ThresholdHarness.create>[0] = {}) => {
  const harness = ThresholdHarness.create(options)
  onlyCommand(harness.reading("ev-1", 5_000, { at: T1 }))
  return harness
}

describe("create", () => {
  it("starts active at version 1, asks the provider to watch the account, and is due for nothing", () => {
    const harness = ThresholdHarness.create()
    const { created, subscription } = harness
    expect(subscription).toMatchObject({
      id: THRESHOLD_ID,
      kind: "threshold",
      status: "active",
      version: 1,
      revision: 1,
      currency: "RUB",
      nextDueAt: null,
      terms: { amount: rub(50_000), threshold: rub(10_000), cooldown: "PT1H" },
    })
    expect(subscription.state).toEqual({
      newestEventAt: null,
      recentEventIds: [],
      lastBalance: null,
      open: [],
      cooldownUntil: null,
      paid: 0,
      held: [],
    })
    expect(providerMessages(created)).toEqual([
      {
        _tag: "Provider",
        providerId: "mts",
        topic: "threshold.watch",
        msgId: `threshold.watch:${THRESHOLD_ID}:v1`,
        body: {
          subscriptionId: THRESHOLD_ID,
          providerId: "mts",
          account: THRESHOLD_PAYEE.account,
          threshold: rub(10_000),
          at: Timestamp.format(T0),
        },
      },
    ])
    expect(decisions(created).map((d) => [d.outcome, d.channel])).toEqual([["created", "mobile"]])
    expect(eventTypes(created)).toEqual(["subscription.created"])
    expect(commands(created)).toEqual([])
  })
})

describe("balance readings", () => {
  it("a balance below the threshold pays one top-up of the amount, named after the event", () => {
    const harness = ThresholdHarness.create()
    const transition = harness.reading("ev-1", 9_999, { at: T1, readAt: T1 - MINUTE })
    expect(commands(transition)).toEqual([
      {
        paymentId: pid("ev-1"),
        subscriptionId: THRESHOLD_ID,
        clientId: "client-7",
        kind: "threshold",
        occurrence: "ev-1",
        attempt: 1,
        providerId: "mts",
        account: THRESHOLD_PAYEE.account,
        source: "card-tok-7",
        amount: rub(50_000),
        requestedAt: Timestamp.format(T1),
      },
    ])
    // The history says why: the rule and its inputs.
    expect(transition.payments[0]?.rule).toMatchObject({
      rule: "threshold",
      eventId: "ev-1",
      balance: rub(9_999),
      threshold: rub(10_000),
      readAt: Timestamp.format(T1 - MINUTE),
      topUp: rub(50_000),
    })
    expect(transition.payments[0]?.spend).toBeNull()
    expect(eventTypes(transition)).toEqual(["payment.requested"])
    expect(harness.state).toMatchObject({
      newestEventAt: T1 - MINUTE,
      recentEventIds: ["ev-1"],
      lastBalance: rub(9_999),
      cooldownUntil: null,
    })
    expect(harness.state.open.map((a) => [a.paymentId, a.occurrence, a.attempt])).toEqual([
      [pid("ev-1"), "ev-1", 1],
    ])
    // The actor looks again when the result is overdue.
    expect(harness.subscription.nextDueAt).toBe(T1 + 15 * MINUTE)
  })

  it("pays the configured amount however low the balance is", () => {
    const harness = ThresholdHarness.create()
    expect(onlyCommand(harness.reading("ev-1", -250_000)).amount).toEqual(rub(50_000))
  })

  it.each([
    ["at", 10_000],
    ["just above", 10_001],
    ["far above", 5_000_000],
  ])("a balance %s the threshold pays nothing and logs nothing, but is remembered", (_, balance) => {
    const harness = ThresholdHarness.create()
    const transition = harness.reading("ev-1", balance, { at: T1 })
    expect(commands(transition)).toEqual([])
    expect(transition.decisions).toEqual([])
    expect(transition.outgoing).toEqual([])
    expect(transition.changed).toBe(true)
    expect(harness.state).toMatchObject({
      lastBalance: rub(balance),
      newestEventAt: T1,
      recentEventIds: ["ev-1"],
      open: [],
    })
  })

  it("a redelivered event writes nothing at all", () => {
    const harness = withTopUpInFlight()
    const before = harness.subscription
    for (const [balance, when] of [
      [5_000, T1],
      [0, T1 + MINUTE],
      [999_999, T1 + 2 * HOUR],
    ] as const) {
      const again = harness.reading("ev-1", balance, { at: when, readAt: T1 })
      expect(again.changed).toBe(false)
      expect(again.outgoing).toEqual([])
      expect(again.decisions).toEqual([])
      expect(again.payments).toEqual([])
      expect(harness.subscription).toBe(before)
    }
  })

  it("a redelivered event after its top-up succeeded and the cooldown passed still pays nothing", () => {
    const harness = withTopUpInFlight()
    harness.result(pid("ev-1"), "succeeded", { at: T1 + MINUTE })
    const again = harness.reading("ev-1", 5_000, { at: T1 + 3 * HOUR, readAt: T1 })
    expect(again.changed).toBe(false)
    expect(harness.transitions.flatMap(commands).map((c) => c.occurrence)).toEqual(["ev-1"])
  })

  it("an event older than the newest seen is recorded as ignored and pays nothing", () => {
    const harness = ThresholdHarness.create()
    harness.reading("ev-2", 20_000, { at: T1, readAt: T1 })
    const stale = harness.reading("ev-1", 1_000, { at: T1 + MINUTE, readAt: T1 - 1 })
    expect(commands(stale)).toEqual([])
    expect(decisions(stale).map((d) => [d.outcome, d.reason, d.occurrence])).toEqual([
      ["ignored", "stale_event", "ev-1"],
    ])
    expect(decisions(stale)[0]?.details).toMatchObject({
      eventId: "ev-1",
      balance: rub(1_000),
      threshold: rub(10_000),
      readAt: Timestamp.format(T1 - 1),
      newestSeenAt: Timestamp.format(T1),
    })
    // The newest reading stays what it was; the stale id is remembered so a redelivery is silent.
    expect(harness.state).toMatchObject({ newestEventAt: T1, lastBalance: rub(20_000) })
    expect(harness.state.recentEventIds).toEqual(["ev-2", "ev-1"])
    expect(harness.reading("ev-1", 1_000, { at: T1 + 2 * MINUTE, readAt: T1 - 1 }).changed).toBe(false)
  })

  it("an event read at the same instant as the newest is not stale", () => {
    const harness = ThresholdHarness.create()
    harness.reading("ev-1", 20_000, { at: T1, readAt: T1 })
    expect(onlyCommand(harness.reading("ev-2", 1_000, { at: T1, readAt: T1 })).occurrence).toBe("ev-2")
  })

  it("a reading in another currency is refused whole: nothing recorded, remembered or paid", () => {
    const harness = ThresholdHarness.create()
    const before = harness.subscription
    const refused = refusal(harness.sendReading("ev-1", 1, { at: T1, currency: "USD" }))
    expect(refused.message).toBe(
      `balance reading does not match the subscription watching the account (${THRESHOLD_ID}): balance.currency is "USD", expected "RUB"`,
    )
    expect(harness.subscription).toBe(before)
    // The event id was not remembered: the same reading in the right currency is judged as usual.
    expect(onlyCommand(harness.reading("ev-1", 1, { at: T1 + MINUTE })).occurrence).toBe("ev-1")
  })

  it("a reading about another provider or account is refused, naming every field that disagrees", () => {
    const harness = withTopUpInFlight()
    const before = harness.subscription
    const refused = refusal(
      harness.sendReading("ev-x", 1, { at: T1 + MINUTE, providerId: "beeline", account: "+79990000000" }),
    )
    expect(refused.message).toContain(`providerId is "beeline", expected "${THRESHOLD_PAYEE.providerId}"`)
    expect(refused.message).toContain(`account is "+79990000000", expected "${THRESHOLD_PAYEE.account}"`)
    expect(refused.message).not.toContain("balance.currency")
    expect(harness.subscription).toBe(before)
  })

  it("while a top-up is in flight a low reading is skipped, recorded and announced", () => {
    const harness = withTopUpInFlight()
    const skipped = harness.reading("ev-2", 3_000, { at: T1 + 5 * MINUTE })
    expect(commands(skipped)).toEqual([])
    expect(decisions(skipped).map((d) => [d.outcome, d.reason, d.occurrence])).toEqual([
      ["skipped", "top_up_in_flight", "ev-2"],
    ])
    expect(decisions(skipped)[0]?.details).toMatchObject({
      balance: rub(3_000),
      threshold: rub(10_000),
      inFlight: { paymentId: pid("ev-1"), sentAt: Timestamp.format(T1) },
    })
    expect(events(skipped, "payment.skipped").map((e) => e.data)).toEqual([
      expect.objectContaining({ occurrence: "ev-2", reason: "top_up_in_flight" }),
    ])
    expect(harness.state.open.map((a) => a.paymentId)).toEqual([pid("ev-1")])
    expect(harness.state.lastBalance).toEqual(rub(3_000))
  })

  it("a redelivered event beyond the remembered ids is still caught as stale, never paid twice", () => {
    const harness = withTopUpInFlight()
    harness.result(pid("ev-1"), "succeeded", { at: T1 + MINUTE })
    for (let index = 0; index < 40; index++) {
      harness.reading(`later-${index}`, 20_000, { at: T1 + (index + 2) * MINUTE })
    }
    expect(harness.state.recentEventIds).toHaveLength(32)
    expect(harness.state.recentEventIds).not.toContain("ev-1")
    const redelivered = harness.reading("ev-1", 5_000, { at: T1 + 5 * HOUR, readAt: T1 })
    expect(commands(redelivered)).toEqual([])
    expect(decisions(redelivered).map((d) => d.reason)).toEqual(["stale_event"])
  })
})

describe("results and the cooldown", () => {
  it("a success is recorded, announced, and starts the cooldown at the engine time of the result", () => {
    const harness = withTopUpInFlight()
    const paid = harness.result(pid("ev-1"), "succeeded", { at: T1 + 5 * MINUTE })
    expect(paid.outcomes.map((o) => [o.paymentId, o.status, o.outcome])).toEqual([
      [pid("ev-1"), "succeeded", "paid"],
    ])
    expect(eventTypes(paid)).toEqual(["payment.succeeded"])
    expect(notificationTypes(paid)).toEqual(["payment.succeeded"])
    expect(harness.state).toMatchObject({ open: [], paid: 1, cooldownUntil: T1 + 5 * MINUTE + HOUR })
    expect(harness.subscription.nextDueAt).toBeNull()
  })

  it("no new top-up during the cooldown; the first low reading at or after its end pays", () => {
    const harness = withTopUpInFlight()
    harness.result(pid("ev-1"), "succeeded", { at: T1 + 5 * MINUTE })
    const until = T1 + 5 * MINUTE + HOUR

    const early = harness.reading("ev-2", 1_000, { at: T1 + 30 * MINUTE })
    expect(commands(early)).toEqual([])
    expect(decisions(early).map((d) => [d.outcome, d.reason])).toEqual([["skipped", "cooldown"]])
    expect(decisions(early)[0]?.details).toMatchObject({
      cooldown: "PT1H",
      cooldownUntil: Timestamp.format(until),
    })
    expect(events(early, "payment.skipped")).toHaveLength(1)

    expect(commands(harness.reading("ev-3", 1_000, { at: until - 1 }))).toEqual([])
    expect(onlyCommand(harness.reading("ev-4", 1_000, { at: until }))).toMatchObject({
      occurrence: "ev-4",
      attempt: 1,
      paymentId: pid("ev-4"),
    })
  })

  it("the cooldown is measured in engine time, not in the provider's reading time", () => {
    const harness = withTopUpInFlight()
    harness.result(pid("ev-1"), "succeeded", { at: T1 })
    // Read by the provider after the cooldown, but the engine has not got there yet.
    const ahead = harness.reading("ev-2", 1_000, { at: T1 + 10 * MINUTE, readAt: T1 + 2 * HOUR })
    expect(decisions(ahead).map((d) => d.reason)).toEqual(["cooldown"])
    // Read during the cooldown, handled after it: pays.
    const behind = harness.reading("ev-3", 1_000, { at: T1 + 3 * HOUR, readAt: T1 + 2 * HOUR + 1 })
    expect(onlyCommand(behind).occurrence).toBe("ev-3")
  })

  it("follows a cooldown of the subscription's own", () => {
    const harness = withTopUpInFlight({ cooldown: "PT10M" })
    harness.result(pid("ev-1"), "succeeded", { at: T1 })
    expect(commands(harness.reading("ev-2", 1_000, { at: T1 + 9 * MINUTE }))).toEqual([])
    expect(commands(harness.reading("ev-3", 1_000, { at: T1 + 10 * MINUTE }))).toHaveLength(1)
  })

  it.each([
    ["failed, retryable", "failed" as const, true],
    ["failed for good", "failed" as const, false],
    ["declined", "declined" as const, false],
  ])(
    "a top-up %s is not resent; the next low reading pays again as a new occurrence",
    (_, status, retryable) => {
      const harness = withTopUpInFlight()
      const failed = harness.result(pid("ev-1"), status, { retryable, reason: "insufficient funds" })
      expect(commands(failed)).toEqual([])
      expect(failed.outcomes.map((o) => [o.status, o.retryable, o.outcome])).toEqual([
        [status, retryable, "failed"],
      ])
      expect(eventTypes(failed)).toEqual(["payment.failed"])
      expect(notificationTypes(failed)).toEqual(["payment.failed"])
      expect(harness.state).toMatchObject({ open: [], cooldownUntil: null, paid: 0 })
      // Nothing happens on its own, not even much later.
      expect(harness.subscription.nextDueAt).toBeNull()
      expect(harness.wake(T1 + 5 * HOUR).changed).toBe(false)

      const again = onlyCommand(harness.reading("ev-2", 4_000, { at: T1 + 5 * HOUR }))
      expect(again).toMatchObject({ occurrence: "ev-2", attempt: 1, paymentId: pid("ev-2") })
      expect(harness.transitions.flatMap(commands).map((c) => c.paymentId)).toEqual([
        pid("ev-1"),
        pid("ev-2"),
      ])
    },
  )

  it("a redelivered result changes nothing; a contradicting one is recorded for support", () => {
    const harness = withTopUpInFlight()
    harness.result(pid("ev-1"), "succeeded", { at: T1 + MINUTE })
    const before = harness.subscription
    const again = harness.result(pid("ev-1"), "succeeded", { at: T1 + 2 * MINUTE })
    expect(again.changed).toBe(false)
    expect(harness.subscription).toBe(before)
    const contradiction = harness.result(pid("ev-1"), "failed", { at: T1 + 3 * MINUTE })
    expect(decisions(contradiction).map((d) => [d.outcome, d.details.recorded, d.details.received])).toEqual([
      ["result_conflict", "succeeded", "failed"],
    ])
    expect(contradiction.outcomes).toEqual([])
    expect(harness.state).toEqual(before.state)
  })

  it("a result for a payment it never sent changes nothing", () => {
    const harness = ThresholdHarness.create()
    expect(harness.result(pid("ev-9"), "succeeded").changed).toBe(false)
  })

  it("a success reported after a failure counts the top-up and starts the cooldown: no second top-up", () => {
    const harness = withTopUpInFlight()
    harness.result(pid("ev-1"), "failed", { retryable: true, at: T1 + MINUTE })
    const late = harness.result(pid("ev-1"), "succeeded", { at: T1 + 5 * MINUTE })
    expect(late.outcomes.map((o) => [o.paymentId, o.status, o.outcome])).toEqual([
      [pid("ev-1"), "succeeded", "paid"],
    ])
    expect(decisions(late).map((d) => d.outcome)).toEqual(["late_success"])
    expect(eventTypes(late)).toEqual(["payment.succeeded"])
    expect(notificationTypes(late)).toEqual(["payment.succeeded"])
    expect(harness.state).toMatchObject({ paid: 1, cooldownUntil: T1 + 5 * MINUTE + HOUR })
    // The provider still reports the low balance it read before the top-up landed: not paid again.
    const stillLow = harness.reading("ev-2", 1_000, { at: T1 + 10 * MINUTE })
    expect(commands(stillLow)).toEqual([])
    expect(decisions(stillLow).map((d) => [d.outcome, d.reason])).toEqual([["skipped", "cooldown"]])
  })
})

describe("unknown outcome (contract 10)", () => {
  it("a wake before the result timeout changes nothing", () => {
    const harness = withTopUpInFlight()
    expect(harness.wake(T1 + 15 * MINUTE - 1).changed).toBe(false)
  })

  it("asks the hub with back-off and never sends the top-up again", () => {
    const harness = withTopUpInFlight()
    const id = pid("ev-1")
    const timeoutAt = T1 + 15 * MINUTE
    expect(attemptsAwaitingStatus(harness.subscription, timeoutAt).map((a) => a.paymentId)).toEqual([id])

    const overdue = harness.wake(timeoutAt, { [id]: { status: "unknown" } })
    expect(commands(overdue)).toEqual([])
    expect(overdue.outcomes.map((o) => [o.paymentId, o.status, o.outcome])).toEqual([
      [id, "unknown", "awaiting_status"],
    ])
    expect(decisions(overdue).map((d) => [d.outcome, d.paymentId, d.details.hubAnswer])).toEqual([
      ["result_overdue", id, "unknown"],
    ])
    expect(harness.state.open).toMatchObject([
      { paymentId: id, statusQueries: 1, nextQueryAt: timeoutAt + MINUTE },
    ])
    expect(harness.subscription.nextDueAt).toBe(timeoutAt + MINUTE)

    // Meanwhile the top-up is still in flight: a low reading does not send another.
    const meanwhile = harness.reading("ev-2", 1_000, { at: timeoutAt + 30_000 })
    expect(decisions(meanwhile).map((d) => d.reason)).toEqual(["top_up_in_flight"])

    // Unreachable, then unknown again: asked again later, recorded only once, never resent.
    const unreachable = harness.wakeWhenDue({ [id]: "unreachable" })
    expect(unreachable.outcomes).toEqual([])
    expect(unreachable.decisions).toEqual([])
    expect(harness.state.open[0]).toMatchObject({
      statusQueries: 2,
      nextQueryAt: timeoutAt + MINUTE + 5 * MINUTE,
    })
    for (let round = 0; round < 8; round++) {
      const transition = harness.wakeWhenDue({ [id]: { status: "unknown" } })
      expect(commands(transition)).toEqual([])
    }
    // The back-off stops growing at its last step.
    const open = harness.state.open[0]
    expect(open?.nextQueryAt).toBe(harness.now + HOUR)

    // The hub finally knows: the success is applied and starts the cooldown.
    const known = harness.wakeWhenDue({ [id]: hubResult(id, "succeeded", false, harness.now) })
    expect(known.outcomes.map((o) => [o.status, o.outcome])).toEqual([["succeeded", "paid"]])
    expect(harness.state).toMatchObject({ open: [], paid: 1, cooldownUntil: harness.now + HOUR })
    expect(harness.subscription.nextDueAt).toBeNull()
    // The hub's own copy of the result, arriving late, is a redelivery.
    expect(harness.result(id, "succeeded").changed).toBe(false)
    expect(harness.transitions.flatMap(commands).map((c) => c.paymentId)).toEqual([id])
  })

  it("a retryable failure learnt from the status query lets the next low reading pay", () => {
    const harness = withTopUpInFlight()
    const id = pid("ev-1")
    const failed = harness.wake(T1 + 20 * MINUTE, { [id]: hubResult(id, "failed", true, T1 + 20 * MINUTE) })
    expect(commands(failed)).toEqual([])
    expect(failed.outcomes.map((o) => [o.status, o.outcome])).toEqual([["failed", "failed"]])
    expect(onlyCommand(harness.reading("ev-2", 1_000, { at: T1 + 21 * MINUTE })).occurrence).toBe("ev-2")
  })
})

describe("lifecycle and the provider's watch", () => {
  it("pause stops the watch; readings while paused are recorded as skipped", () => {
    const harness = ThresholdHarness.create()
    const paused = Result.getOrThrow(harness.pause(T1))
    expect(harness.subscription).toMatchObject({
      status: "paused",
      statusReason: "client_request",
      version: 2,
    })
    expect(providerMessages(paused).map((m) => [m.topic, m.msgId, m.body.account])).toEqual([
      ["threshold.unwatch", `threshold.unwatch:${THRESHOLD_ID}:v2`, THRESHOLD_PAYEE.account],
    ])
    expect(decisions(paused).map((d) => [d.outcome, d.channel])).toEqual([["paused", "mobile"]])
    expect(eventTypes(paused)).toEqual(["subscription.paused"])

    const whilePaused = harness.reading("ev-1", 1_000, { at: T1 + MINUTE })
    expect(commands(whilePaused)).toEqual([])
    expect(decisions(whilePaused).map((d) => [d.outcome, d.reason])).toEqual([["skipped", "paused"]])
  })

  it("resume watches again, with a new message id, and low readings pay again", () => {
    const harness = ThresholdHarness.create()
    harness.pause(T1)
    const resumed = Result.getOrThrow(harness.resume(T1 + HOUR))
    expect(harness.subscription).toMatchObject({ status: "active", statusReason: null, version: 3 })
    expect(watchMessages(resumed).map((m) => [m.topic, m.msgId, m.body.threshold])).toEqual([
      ["threshold.watch", `threshold.watch:${THRESHOLD_ID}:v3`, rub(10_000)],
    ])
    expect(eventTypes(resumed)).toEqual(["subscription.resumed"])
    expect(commands(harness.reading("ev-1", 1_000, { at: T1 + HOUR }))).toHaveLength(1)
  })

  it("cancel from active stops the watch; cancel from paused has nothing left to stop", () => {
    const active = ThresholdHarness.create()
    const cancelled = Result.getOrThrow(active.cancel(T1))
    expect(active.subscription).toMatchObject({ status: "cancelled", version: 2 })
    expect(providerMessages(cancelled).map((m) => [m.topic, m.msgId])).toEqual([
      ["threshold.unwatch", `threshold.unwatch:${THRESHOLD_ID}:v2`],
    ])
    expect(eventTypes(cancelled)).toEqual(["subscription.cancelled"])
    expect(commands(active.reading("ev-1", 1_000, { at: T1 + MINUTE }))).toEqual([])

    const paused = ThresholdHarness.create()
    paused.pause(T1)
    const fromPaused = Result.getOrThrow(paused.cancel(T1 + MINUTE))
    expect(paused.subscription.status).toBe("cancelled")
    expect(providerMessages(fromPaused)).toEqual([])
  })

  it("every watch change has its own message id, so the stream's de-duplication never drops one", () => {
    const harness = ThresholdHarness.create()
    harness.pause(T1)
    harness.resume(T1 + 1)
    harness.update({ threshold: rub(20_000) }, { at: T1 + 2 })
    harness.pause(T1 + 3)
    harness.resume(T1 + 4)
    harness.cancel(T1 + 5)
    const messages = harness.transitions.flatMap(providerMessages)
    expect(messages.map((m) => m.topic)).toEqual([
      "threshold.watch",
      "threshold.unwatch",
      "threshold.watch",
      "threshold.watch",
      "threshold.unwatch",
      "threshold.watch",
      "threshold.unwatch",
    ])
    expect(new Set(messages.map((m) => m.msgId)).size).toBe(messages.length)
  })

  it("a result for a top-up in flight is still recorded after cancel; nothing new is sent", () => {
    const harness = withTopUpInFlight()
    const cancelled = Result.getOrThrow(harness.cancel(T1 + MINUTE))
    expect(decisions(cancelled)[0]?.details).toMatchObject({ attemptsInFlight: [pid("ev-1")] })
    const paid = harness.result(pid("ev-1"), "succeeded", { at: T1 + 2 * MINUTE })
    expect(paid.outcomes.map((o) => o.status)).toEqual(["succeeded"])
    expect(harness.subscription.status).toBe("cancelled")
    expect(commands(harness.reading("ev-2", 1_000, { at: T1 + 5 * HOUR }))).toEqual([])
  })

  it.each([
    ["pause a paused", ["Pause", "Pause"]],
    ["resume an active", ["Resume"]],
    ["cancel a cancelled", ["Cancel", "Cancel"]],
    ["resume a cancelled", ["Cancel", "Resume"]],
    ["pause a cancelled", ["Cancel", "Pause"]],
    ["skip the next occurrence of", ["SkipNext"]],
  ] as const)("refuses to %s subscription", (_, commandsToSend) => {
    const harness = ThresholdHarness.create()
    const tags = [...commandsToSend]
    const last = tags.pop() as (typeof commandsToSend)[number]
    for (const tag of tags) harness.accept({ _tag: tag, by: client })
    const before = harness.subscription
    expect(harness.refuse({ _tag: last, by: client })._tag).toBe("Conflict")
    expect(harness.subscription).toBe(before)
  })

  it("refuses a debt answer", () => {
    const harness = ThresholdHarness.create()
    const answer: ActorInput = {
      _tag: "DebtResponse",
      response: { queryId: "q", providerId: "mts", account: "a", debts: [], at: Timestamp.format(T1) },
      bills: new Map(),
    }
    expect(harness.refuse(answer)._tag).toBe("Conflict")
  })
})

describe("update", () => {
  it("a new threshold is a new watch with its own message id, and applies to the next reading", () => {
    const harness = ThresholdHarness.create()
    const updated = Result.getOrThrow(harness.update({ threshold: rub(20_000) }, { at: T1 }))
    expect(harness.subscription).toMatchObject({ version: 2, terms: { threshold: rub(20_000) } })
    expect(watchMessages(updated).map((m) => [m.topic, m.msgId, m.body.threshold])).toEqual([
      ["threshold.watch", `threshold.watch:${THRESHOLD_ID}:v2`, rub(20_000)],
    ])
    expect(providerMessages(updated)[0]?.msgId).not.toBe(providerMessages(harness.created)[0]?.msgId)
    expect(decisions(updated).map((d) => [d.outcome, d.details])).toEqual([
      ["updated", { threshold: { from: rub(10_000), to: rub(20_000) } }],
    ])
    expect(eventTypes(updated)).toEqual(["subscription.updated"])
    expect(onlyCommand(harness.reading("ev-1", 15_000, { at: T1 + MINUTE })).occurrence).toBe("ev-1")
  })

  it("a change of amount or cooldown alone is no new watch; the next top-up pays the new amount", () => {
    const harness = ThresholdHarness.create()
    const updated = Result.getOrThrow(harness.update({ amount: rub(70_000), cooldown: "PT2H" }, { at: T1 }))
    expect(providerMessages(updated)).toEqual([])
    expect(harness.subscription.terms).toEqual({
      amount: rub(70_000),
      threshold: rub(10_000),
      cooldown: "PT2H",
    })
    const id = onlyCommand(harness.reading("ev-1", 1_000, { at: T1 })).paymentId
    expect(harness.payments.get(id)?.amount).toEqual(rub(70_000))
    harness.result(id, "succeeded", { at: T1 + MINUTE })
    expect(harness.state.cooldownUntil).toBe(T1 + MINUTE + 2 * HOUR)
  })

  it("the same threshold again is no new watch", () => {
    const harness = ThresholdHarness.create()
    const updated = Result.getOrThrow(harness.update({ threshold: rub(10_000) }))
    expect(providerMessages(updated)).toEqual([])
  })

  it("a threshold changed while paused is watched on resume", () => {
    const harness = ThresholdHarness.create()
    harness.pause(T1)
    const updated = Result.getOrThrow(harness.update({ threshold: rub(30_000) }, { at: T1 + MINUTE }))
    expect(providerMessages(updated)).toEqual([])
    const resumed = Result.getOrThrow(harness.resume(T1 + 2 * MINUTE))
    expect(watchMessages(resumed).map((m) => [m.topic, m.body.threshold])).toEqual([
      ["threshold.watch", rub(30_000)],
    ])
  })

  it("refuses a stale version, another currency, a schedule, and a cancelled subscription", () => {
    const harness = ThresholdHarness.create()
    expect(refusal(harness.update({ amount: rub(1) }, { expectedVersion: 0 }))).toMatchObject({
      _tag: "Conflict",
    })
    expect(refusal(harness.update({ threshold: { value: 1, currency: "USD" } }))).toMatchObject({
      _tag: "ValidationFailed",
      details: [{ path: "body.threshold.currency" }],
    })
    expect(refusal(harness.update({ amount: { value: 1, currency: "EUR" } }))).toMatchObject({
      _tag: "ValidationFailed",
      details: [{ path: "body.amount.currency" }],
    })
    const withSchedule = harness.send({
      _tag: "Update",
      by: client,
      expectedVersion: 1,
      amount: undefined,
      schedule: { every: "day", time: "09:00", startDate: "2027-01-01" },
    })
    expect(refusal(withSchedule)).toMatchObject({
      _tag: "ValidationFailed",
      details: [{ path: "body.schedule" }],
    })
    harness.cancel()
    expect(refusal(harness.update({ amount: rub(1) }))).toMatchObject({ _tag: "Conflict" })
    expect(harness.subscription.version).toBe(2)
  })
})

describe("limits", () => {
  it("a top-up over the per-payment cap is held, the client is told, and confirm sends it exactly once", () => {
    const harness = ThresholdHarness.create({ limits: capOn("threshold", 40_000) })
    const id = pid("ev-1")
    const held = harness.reading("ev-1", 1_000, { at: T1 })
    expect(commands(held)).toEqual([])
    expect(held.payments).toEqual([])
    expect(decisions(held).map((d) => [d.outcome, d.reason, d.occurrence, d.paymentId])).toEqual([
      ["held", "over_payment_cap", "ev-1", id],
    ])
    expect(decisions(held)[0]?.details).toMatchObject({
      amount: rub(50_000),
      rule: { rule: "threshold", balance: rub(1_000) },
      limit: { cap: rub(40_000), amount: rub(50_000) },
    })
    expect(notifications(held, "limit.exceeded")).toEqual([
      expect.objectContaining({
        clientId: "client-7",
        subscriptionId: THRESHOLD_ID,
        paymentId: id,
        data: expect.objectContaining({ paymentId: id, reason: "over_payment_cap", amount: rub(50_000) }),
      }),
    ])
    expect(harness.state.held.map((h) => [h.paymentId, h.occurrence, h.attempt])).toEqual([[id, "ev-1", 1]])
    expect(harness.state.open).toEqual([])

    // While it waits, a new low reading does not pile up a second one.
    const waiting = harness.reading("ev-2", 500, { at: T1 + MINUTE })
    expect(decisions(waiting).map((d) => [d.outcome, d.reason])).toEqual([
      ["skipped", "awaiting_confirmation"],
    ])
    expect(harness.state.held).toHaveLength(1)

    const confirmed = Result.getOrThrow(harness.confirm(id, T1 + 2 * MINUTE))
    expect(commands(confirmed)).toEqual([
      expect.objectContaining({ paymentId: id, occurrence: "ev-1", attempt: 1, amount: rub(50_000) }),
    ])
    expect(confirmed.payments[0]?.rule).toMatchObject({ rule: "threshold", confirmedBy: client })
    expect(decisions(confirmed).map((d) => [d.outcome, d.paymentId, d.channel])).toEqual([
      ["confirmed", id, "mobile"],
    ])
    expect(harness.subscription.version).toBe(2)
    expect(harness.state.held).toEqual([])
    expect(harness.state.open.map((a) => a.paymentId)).toEqual([id])

    const twice = harness.confirm(id, T1 + 3 * MINUTE)
    expect(refusal(twice)).toMatchObject({ _tag: "Conflict" })
    expect(harness.transitions.flatMap(commands).map((c) => c.paymentId)).toEqual([id])
  })

  it("confirm takes the payment id in any letter case, and refuses an id that is not held", () => {
    const harness = ThresholdHarness.create({ limits: capOn("threshold", 1) })
    harness.reading("ev-1", 0, { at: T1 })
    expect(refusal(harness.confirm(pid("ev-2")))).toMatchObject({ _tag: "Conflict" })
    expect(commands(Result.getOrThrow(harness.confirm(pid("ev-1").toUpperCase())))).toHaveLength(1)
  })

  it("the cap of another kind or another currency does not apply; a top-up equal to the cap is sent", () => {
    for (const limits of [capOn("scheduled", 1), capOn("debt", 1), capOn("threshold", 1, "USD")]) {
      const harness = ThresholdHarness.create({ limits })
      expect(commands(harness.reading("ev-1", 0, { at: T1 }))).toHaveLength(1)
    }
    const atCap = ThresholdHarness.create({ limits: capOn("threshold", 50_000) })
    expect(commands(atCap.reading("ev-1", 0, { at: T1 }))).toHaveLength(1)
  })

  it("cancel drops a held top-up; it can no longer be confirmed", () => {
    const harness = ThresholdHarness.create({ limits: capOn("threshold", 1) })
    harness.reading("ev-1", 0, { at: T1 })
    const cancelled = Result.getOrThrow(harness.cancel(T1 + MINUTE))
    expect(decisions(cancelled)[0]?.details).toMatchObject({ heldPaymentsDropped: [pid("ev-1")] })
    expect(harness.state.held).toEqual([])
    expect(refusal(harness.confirm(pid("ev-1")))).toMatchObject({ _tag: "Conflict" })
  })

  it("the monthly cap holds a top-up the client's month cannot take, and counts what it sends", () => {
    const limits: LimitSettings = { ...noLimitSettings, monthlyMax: { RUB: 120_000 }, clientTimeZone: "UTC" }
    const harness = ThresholdHarness.create({ limits, spent: { "2027-01": 60_000 } })
    const first = onlyCommand(harness.reading("ev-1", 0, { at: T1 }))
    expect(harness.steps.at(-1)?.limits.reading).toEqual({ month: "2027-01", spent: 60_000 })
    expect(harness.payments.get(first.paymentId)).toBeDefined()
    expect(harness.transitions.at(-1)?.payments[0]?.spend).toEqual({ month: "2027-01", checked: true })
    harness.result(first.paymentId, "succeeded", { at: T1 })

    const held = harness.reading("ev-2", 0, { at: T1 + 2 * HOUR })
    expect(decisions(held).map((d) => [d.outcome, d.reason])).toEqual([["held", "over_monthly_cap"]])
    expect(decisions(held)[0]?.details.limit).toMatchObject({
      month: "2027-01",
      cap: rub(120_000),
      spentThisMonth: rub(110_000),
      amount: rub(50_000),
    })
    expect(notificationTypes(held)).toEqual(["limit.exceeded"])

    // Confirmed past the cap: sent, and counted without being checked.
    const confirmed = Result.getOrThrow(harness.confirm(pid("ev-2"), T1 + 3 * HOUR))
    expect(confirmed.payments.map((p) => p.spend)).toEqual([{ month: "2027-01", checked: false }])
    expect(harness.spent.get("2027-01")).toBe(160_000)
  })

  it("a new month starts from the spend recorded for it", () => {
    const limits: LimitSettings = { ...noLimitSettings, monthlyMax: { RUB: 50_000 }, clientTimeZone: "UTC" }
    const harness = ThresholdHarness.create({ limits, spent: { "2027-01": 50_000 } })
    expect(commands(harness.reading("ev-1", 0, { at: at("2027-01-31T23:59:59Z") }))).toEqual([])
    expect(Result.getOrThrow(harness.cancel()).changed).toBe(true)
    const february = ThresholdHarness.create({ limits, spent: { "2027-01": 50_000 } })
    expect(commands(february.reading("ev-1", 0, { at: at("2027-02-01T00:00:00Z") }))).toHaveLength(1)
  })
})

// ---- properties ---------------------------------------------------------------

type ReplyChoice = "unknown" | "unreachable" | { status: PaymentStatus; retryable: boolean }

type Action =
  | {
      readonly _tag: "Reading"
      readonly event: number
      readonly balance: number
      readonly readOffset: number
      readonly advance: number
    }
  | {
      readonly _tag: "Result"
      readonly pick: number
      readonly status: PaymentStatus
      readonly retryable: boolean
    }
  | { readonly _tag: "Wake"; readonly advance: number; readonly reply: ReplyChoice }
  | { readonly _tag: "Lifecycle"; readonly command: "Pause" | "Resume" | "Cancel" }
  | { readonly _tag: "Confirm"; readonly pick: number }
  | { readonly _tag: "Update"; readonly threshold: number | null; readonly amount: number | null }

const replyChoice: fc.Arbitrary<ReplyChoice> = fc.oneof(
  fc.constantFrom<ReplyChoice>("unknown", "unreachable"),
  fc.record({
    status: fc.constantFrom<PaymentStatus>("succeeded", "failed", "declined"),
    retryable: fc.boolean(),
  }),
)

const action: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 10,
    arbitrary: fc.record({
      _tag: fc.constant("Reading" as const),
      event: fc.nat({ max: 15 }),
      balance: fc.constantFrom(-1_000, 0, 5_000, 9_999, 10_000, 25_000),
      readOffset: fc.integer({ min: -2 * HOUR, max: 10 * MINUTE }),
      advance: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 90 * MINUTE })),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      _tag: fc.constant("Result" as const),
      pick: fc.nat(),
      status: fc.constantFrom<PaymentStatus>("succeeded", "failed", "declined"),
      retryable: fc.boolean(),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      _tag: fc.constant("Wake" as const),
      advance: fc.integer({ min: 0, max: 2 * HOUR }),
      reply: replyChoice,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("Lifecycle" as const),
      command: fc.constantFrom<"Pause" | "Resume" | "Cancel">(
        "Pause",
        "Pause",
        "Resume",
        "Resume",
        "Resume",
        "Cancel",
      ),
    }),
  },
  { weight: 2, arbitrary: fc.record({ _tag: fc.constant("Confirm" as const), pick: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("Update" as const),
      threshold: fc.option(fc.constantFrom(0, 10_000, 20_000), { nil: null }),
      amount: fc.option(fc.constantFrom(30_000, 50_000, 70_000), { nil: null }),
    }),
  },
)

const runScenario = (cap: number | null, actions: ReadonlyArray<Action>): Harness => {
  const harness = ThresholdHarness.create(cap === null ? {} : { limits: capOn("threshold", cap) })
  /** What each event id said the first time, so a redelivery carries the same body. */
  const delivered = new Map<string, ThresholdEvent>()
  const sent: Array<string> = []
  for (const step of actions) {
    switch (step._tag) {
      case "Reading": {
        const now = harness.now + step.advance
        const eventId = `ev-${step.event}`
        const event = delivered.get(eventId) ?? {
          eventId,
          providerId: THRESHOLD_PAYEE.providerId,
          account: THRESHOLD_PAYEE.account,
          balance: rub(step.balance),
          at: Timestamp.format(now + step.readOffset),
        }
        delivered.set(eventId, event)
        for (const command of commands(harness.accept({ _tag: "ThresholdEvent", event }, now))) {
          sent.push(command.paymentId)
        }
        break
      }
      case "Result": {
        const open = harness.state.open.map((attempt) => attempt.paymentId)
        const candidates = open.length > 0 && step.pick % 3 !== 0 ? open : sent
        const paymentId = candidates[step.pick % Math.max(candidates.length, 1)]
        if (paymentId === undefined) break
        harness.result(paymentId, step.status, { retryable: step.retryable })
        break
      }
      case "Wake": {
        const now = harness.now + step.advance
        const replies: Record<string, PaymentStatusReply | "unreachable"> = {}
        for (const attempt of attemptsAwaitingStatus(harness.subscription, now)) {
          const reply = step.reply
          replies[attempt.paymentId] =
            reply === "unreachable"
              ? "unreachable"
              : reply === "unknown"
                ? { status: "unknown" }
                : hubResult(attempt.paymentId, reply.status, reply.retryable, now)
        }
        harness.wake(now, replies)
        break
      }
      case "Lifecycle":
        harness.send({ _tag: step.command, by: client })
        break
      case "Confirm": {
        const held = harness.state.held.map((payment) => payment.paymentId)
        const candidates = held.length > 0 ? held : sent
        const paymentId = candidates[step.pick % Math.max(candidates.length, 1)]
        if (paymentId !== undefined) {
          for (const command of commands(Result.getOrElse(harness.confirm(paymentId), emptyTransition))) {
            sent.push(command.paymentId)
          }
        }
        break
      }
      case "Update":
        harness.update({
          ...(step.threshold === null ? {} : { threshold: rub(step.threshold) }),
          ...(step.amount === null ? {} : { amount: rub(step.amount) }),
        })
        break
    }
  }
  return harness
}

const emptyTransition = (): Transition => ({
  subscription: ThresholdHarness.create().subscription,
  changed: false,
  payments: [],
  outcomes: [],
  decisions: [],
  outgoing: [],
  queries: [],
  templates: [],
  duplicates: [],
})

const checkInvariants = (harness: Harness): void => {
  const occurrencesPaid = new Set<string>()
  const succeededOccurrences = new Set<string>()
  const occurrenceOf = new Map<string, string>()
  let watching = true
  let watchedThreshold = (harness.created.subscription as ThresholdSubscription).terms.threshold
  for (const step of harness.steps) {
    if (Result.isFailure(step.result)) continue
    const transition = step.result.success
    const before: ThresholdSubscription = step.before
    const after = transition.subscription as ThresholdSubscription
    // At most one top-up in flight or waiting for the client, ever.
    expect(after.state.open.length + after.state.held.length).toBeLessThanOrEqual(1)
    for (const command of commands(transition)) {
      // Each event is paid at most once, with one attempt: a failed top-up is paid by a new event.
      expect(command.attempt).toBe(1)
      expect(command.paymentId).toBe(paymentIdFor(THRESHOLD_ID, command.occurrence, 1))
      expect(occurrencesPaid.has(command.occurrence)).toBe(false)
      occurrencesPaid.add(command.occurrence)
      occurrenceOf.set(command.paymentId, command.occurrence)
      expect(before.state.open).toEqual([])
      if (step.input._tag === "ThresholdEvent") {
        const { event } = step.input
        expect(before.status).toBe("active")
        // A top-up still held (say, by last month's cap) is superseded when the limits admit this one.
        if (before.state.held.length > 0) {
          expect(after.state.held).toEqual([])
          expect(decisions(transition, "hold_dropped").map((d) => d.reason)).toEqual([
            "superseded_by_new_reading",
          ])
        }
        expect(before.state.recentEventIds).not.toContain(event.eventId)
        expect(event.balance.value).toBeLessThan(before.terms.threshold.value)
        const cooldownUntil = before.state.cooldownUntil
        if (cooldownUntil !== null) expect(step.now).toBeGreaterThanOrEqual(cooldownUntil)
        const newest = before.state.newestEventAt
        if (newest !== null) expect(Timestamp.millisOf(event.at)).toBeGreaterThanOrEqual(newest)
      } else {
        // Only a confirmation releases anything else, and only what was held.
        expect(step.input._tag).toBe("Confirm")
        expect(before.state.held.map((held) => held.paymentId)).toContain(command.paymentId)
      }
    }
    for (const outcome of transition.outcomes) {
      if (outcome.status !== "succeeded") continue
      const occurrence = occurrenceOf.get(outcome.paymentId)
      expect(occurrence).toBeDefined()
      expect(succeededOccurrences.has(occurrence ?? "")).toBe(false)
      succeededOccurrences.add(occurrence ?? "")
    }
    if (step.input._tag === "ThresholdEvent") {
      const { event } = step.input
      if (before.state.recentEventIds.includes(event.eventId)) {
        expect(transition.changed).toBe(false)
      } else if (
        event.balance.value < before.terms.threshold.value &&
        (before.state.newestEventAt === null || Timestamp.millisOf(event.at) >= before.state.newestEventAt)
      ) {
        // Every low reading is either paid, held or recorded with why not.
        const accounted =
          commands(transition).length +
          decisions(transition, "held").length +
          decisions(transition, "skipped").length
        expect(accounted).toBe(1)
      }
    }
    // The provider watches exactly while the subscription is active, at its current threshold.
    for (const message of watchMessages(transition)) {
      watching = message.topic === "threshold.watch"
      if (watching) watchedThreshold = message.body.threshold
    }
    expect(watching).toBe(after.status === "active")
    if (watching) expect(watchedThreshold).toEqual(after.terms.threshold)
    // The next wake is the earliest overdue check of what is in flight.
    const checks = after.state.open.map((attempt) => attempt.nextQueryAt ?? attempt.timeoutAt)
    expect(after.nextDueAt).toBe(checks.length === 0 ? null : Math.min(...checks))
  }
  const msgIds = harness.transitions.flatMap(providerMessages).map((message) => message.msgId)
  expect(new Set(msgIds).size).toBe(msgIds.length)
}

describe("properties", () => {
  it("whatever arrives, at most one top-up is in flight and no event is ever paid twice", () => {
    fc.assert(
      fc.property(
        fc.option(fc.constantFrom(40_000, 60_000), { nil: null }),
        fc.array(action, { minLength: 10, maxLength: 80 }),
        (cap, actions) => checkInvariants(runScenario(cap, actions)),
      ),
      { seed: 3_500_005, numRuns: 200 },
    )
  })
})

describe("readingMismatch", () => {
  const watched = {
    subscriptionId: THRESHOLD_ID,
    providerId: "mts",
    account: "+79001234567",
    currency: "RUB",
  }
  const event = (overrides: Partial<ThresholdEvent> = {}): ThresholdEvent => ({
    eventId: "ev-1",
    providerId: "mts",
    account: "+79001234567",
    balance: rub(100),
    at: "2027-01-10T09:00:00Z",
    ...overrides,
  })

  it("finds nothing in a reading about the watched account in the threshold's currency", () => {
    expect(readingMismatch(watched, event())).toBeUndefined()
    expect(readingMismatch(watchedBy(ThresholdHarness.create().subscription), event())).toBeUndefined()
  })

  it("names each field that disagrees, with what was expected and what came", () => {
    expect(
      readingMismatch(watched, event({ providerId: "beeline", balance: { value: 100, currency: "USD" } })),
    ).toEqual({
      _tag: "Mismatch",
      against: `the subscription watching the account (${THRESHOLD_ID})`,
      disagreements: [
        { field: "providerId", expected: "mts", received: "beeline" },
        { field: "balance.currency", expected: "RUB", received: "USD" },
      ],
    })
  })

  it("agrees exactly when provider, account and currency all equal the watcher's", () => {
    const field = fc.constantFrom("mts", "+79001234567", "RUB", "USD", "beeline", "+7900")
    fc.assert(
      fc.property(field, field, field, (providerId, account, currency) => {
        const mismatch = readingMismatch(
          watched,
          event({ providerId, account, balance: { value: 1, currency } }),
        )
        const agrees = providerId === "mts" && account === "+79001234567" && currency === "RUB"
        expect(mismatch === undefined).toBe(agrees)
      }),
    )
  })
})
