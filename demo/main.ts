/**
 * `npm run demo`: the engine doing real work for three months of virtual time.
 *
 * It starts the engine against the local Postgres and NATS (its own database
 * and stream names, removed at the end), a fake hub that declines some
 * payments, five fake channels, a fake mobile operator that reports phone
 * balances and a fake water utility that bills monthly. Customers set up a
 * few hundred scheduled autopayments, phone top-ups (threshold) and bill
 * payments (debt) through the protocol, change their minds along the way from
 * other channels, confirm bills held over their limit, and ticks drive time
 * from 2027-01-01 to 2027-04-01.
 */
import { createHash } from "node:crypto"
import type { FakeChannel } from "../fakes/FakeChannel.ts"
import type { HubVerdict } from "../fakes/FakeHub.ts"
import type { DebtAnswer, FakeProvider } from "../fakes/FakeProvider.ts"
import { World } from "../harness/World.ts"
import { type ProviderConfig, saveProvider } from "../src/store/ProviderRegistry.ts"
import type { DebtQuery, PaymentCommand } from "../src/streams/Messages.ts"

const SUBSCRIPTIONS = Number(process.env.DEMO_SUBSCRIPTIONS ?? 300)
const START = Date.parse("2027-01-01T00:00:00Z")
const END = Date.parse("2027-04-01T00:00:00Z")
const TICK_MS = 3 * 3_600_000
const DAY_MS = 86_400_000
const CHANNELS = ["mobile", "internet", "atm", "terminal", "cashier"] as const
const PHONES = 20
const WATER_ACCOUNTS = 20
const OPERATOR = "mts-balance"
const UTILITY = "city-water"
const rub = (value: number) => ({ value, currency: "RUB" })

/**
 * The outside world's side of the event-driven kinds: what each phone's balance is (it drops
 * with use and rises with every top-up the hub makes) and which water bills are still unpaid.
 */
const phoneBalances = new Map<string, number>()
const paidBills = new Set<string>()

/** Each water account gets a bill on the 1st of every month; every seventh is far above its limit. */
const waterBills = (query: DebtQuery): DebtAnswer => {
  const index = Number(query.account.split("-").at(-1))
  const month = query.at.slice(0, 7)
  const bills = []
  for (let m = 1; `2027-${String(m).padStart(2, "0")}` <= month; m++) {
    const billId = `${query.account}-2027-${String(m).padStart(2, "0")}`
    if (paidBills.has(billId)) continue
    const amount = index % 7 === 3 ? 800_000 : 150_000 + (index % 5) * 40_000
    bills.push({ billId, amount: rub(amount), dueDate: `2027-${String(m).padStart(2, "0")}-25` })
  }
  return { debts: bills }
}

/** The operator reports every phone's balance four times a day: usage eats 40.00 a day. */
const reportBalances = async (operator: FakeProvider, at: number) => {
  await Promise.all(
    [...phoneBalances.keys()].map(async (account) => {
      const balance = Math.max(0, (phoneBalances.get(account) ?? 0) - 1_000)
      phoneBalances.set(account, balance)
      await operator.reportBalance({
        eventId: `${account}@${new Date(at).toISOString()}`,
        account,
        balance: rub(balance),
        at: new Date(at).toISOString(),
      })
    }),
  )
}

/** A stable pseudo-random number in [0, 1) for a text: the same payment always gets the same verdict. */
const chance = (text: string): number => createHash("sha256").update(text).digest().readUInt32BE(0) / 2 ** 32

/** The hub's mood: mostly yes, sometimes "try later", sometimes no; one card is always refused. */
const hubVerdict = (command: PaymentCommand): HubVerdict => {
  // Top-ups and bills always go through, and the outside world sees them: the balance rises, the bill is settled.
  if (command.kind === "threshold") {
    phoneBalances.set(command.account, (phoneBalances.get(command.account) ?? 0) + command.amount.value)
    return { status: "succeeded", retryable: false }
  }
  if (command.kind === "debt") {
    paidBills.add(command.occurrence)
    return { status: "succeeded", retryable: false }
  }
  if (command.source === "card-expired")
    return { status: "declined", retryable: false, reason: "card expired" }
  const roll = chance(command.paymentId)
  if (roll < 0.82) return { status: "succeeded", retryable: false }
  if (roll < 0.9) return { status: "failed", retryable: true, reason: "provider temporarily unavailable" }
  if (roll < 0.95) return { status: "failed", retryable: false, reason: "account closed at provider" }
  return { status: "declined", retryable: false, reason: "insufficient funds" }
}

interface Created {
  readonly subscriptionId: string
  readonly clientId: string
  readonly channel: FakeChannel
}

const scheduleFor = (index: number) => {
  const kind = index % 10
  if (kind < 6) return { every: "month", dayOfMonth: [1, 5, 15, 28, 29, 30, 31][index % 7], time: "09:00" }
  if (kind < 8) return { every: "week", dayOfWeek: (index % 7) + 1, time: "12:00" }
  if (kind < 9) return { every: "quarter", dayOfMonth: 10, time: "10:00" }
  return { every: "day", interval: 7, time: "18:00" }
}

const createSubscriptions = async (world: World): Promise<Array<Created>> => {
  const created: Array<Created> = []
  for (let start = 0; start < SUBSCRIPTIONS; start += 25) {
    const batch = Array.from({ length: Math.min(25, SUBSCRIPTIONS - start) }, async (_, offset) => {
      const index = start + offset
      const channel = world.channel(CHANNELS[index % CHANNELS.length])
      const clientId = `client-${String(index).padStart(4, "0")}`
      const { subscription } = await channel.ok<{ subscription: { subscriptionId: string } }>(
        "subscription.create",
        {
          kind: "scheduled",
          template: {
            name: ["Home internet", "Rent", "Mobile phone", "Kindergarten", "Gym"][index % 5],
            providerId: ["isp-1", "landlord-7", "mts", "kindergarten-12", "gym-3"][index % 5],
            account: `acc-${index}`,
            // Every 60th customer pays with a card that has expired: the engine should pause those.
            source: index % 60 === 7 ? "card-expired" : `card-${index}`,
          },
          amount: { value: 50_000 + (index % 20) * 25_000, currency: "RUB" },
          schedule: { ...scheduleFor(index), timezone: "Europe/Moscow", startDate: "2027-01-01" },
        },
        { clientId },
      )
      created.push({ subscriptionId: subscription.subscriptionId, clientId, channel })
    })
    await Promise.all(batch)
  }
  return created
}

/** Phone top-ups and water bill payments, set up from the mobile bank and the cashier desk. */
const createEventDriven = async (world: World): Promise<Array<Created>> => {
  const mobile = world.channel("mobile")
  const cashier = world.channel("cashier")
  const phones = Array.from({ length: PHONES }, async (_, index) => {
    const account = `+7916000${String(index).padStart(4, "0")}`
    const clientId = `client-${String(index).padStart(4, "0")}`
    phoneBalances.set(account, 30_000 + index * 2_000)
    await mobile.ok(
      "subscription.create",
      {
        kind: "threshold",
        template: { name: "My phone", providerId: OPERATOR, account, source: `card-${index}` },
        amount: rub(50_000),
        threshold: rub(10_000),
        cooldown: "PT6H",
      },
      { clientId },
    )
  })
  const water = Array.from({ length: WATER_ACCOUNTS }, async (_, index) => {
    const clientId = `client-${String(index + PHONES).padStart(4, "0")}`
    const { subscription } = await cashier.ok<{ subscription: { subscriptionId: string } }>(
      "subscription.create",
      {
        kind: "debt",
        template: { name: "Water", providerId: UTILITY, account: `water-${index}`, source: `card-w${index}` },
        limit: rub(500_000),
        pollEvery: "P1D",
      },
      { clientId },
    )
    return { subscriptionId: subscription.subscriptionId, clientId, channel: cashier }
  })
  await Promise.all(phones)
  return Promise.all(water)
}

/** On day 50 the water customers look at the mobile bank and confirm the bills held over their limit. */
const confirmHeldBills = async (world: World, debts: ReadonlyArray<Created>) => {
  const mobile = world.channel("mobile")
  let confirmed = 0
  for (const debt of debts) {
    const { subscription } = await mobile.ok<{
      subscription: { heldPayments: ReadonlyArray<{ paymentId: string }> }
    }>("subscription.get", { subscriptionId: debt.subscriptionId }, { clientId: debt.clientId })
    for (const held of subscription.heldPayments) {
      await mobile.ok(
        "payment.confirm",
        { subscriptionId: debt.subscriptionId, paymentId: held.paymentId },
        { clientId: debt.clientId },
      )
      confirmed += 1
    }
  }
  return confirmed
}

/** The providers the demo bank has registered; the internet provider's bills recur, so one-off payments earn reminders. */
const registerProviders = async (world: World) => {
  const provider = (providerId: string, displayName: string, options: Partial<ProviderConfig> = {}) =>
    saveProvider(world.db, {
      providerId,
      displayName,
      periodic: false,
      remindAfter: "P30D",
      supportsDebt: false,
      supportsThreshold: false,
      ...options,
    })
  await provider("isp-1", "Home internet", { periodic: true, remindAfter: "P30D" })
  await provider("landlord-7", "Landlord")
  await provider("mts", "MTS")
  await provider("kindergarten-12", "Kindergarten No. 12")
  await provider("gym-3", "Gym")
  await provider(OPERATOR, "MTS balance", { supportsThreshold: true })
  await provider(UTILITY, "City water", { supportsDebt: true })
}

const REMINDED = 12

/** On day 3 a dozen customers pay their internet bill once, by hand, in the internet bank. */
const oneOffPayments = async (world: World, at: number) => {
  for (let index = 0; index < REMINDED; index++) {
    await world.js.publish(
      world.topology.subjects.hubCompleted,
      JSON.stringify({
        paymentId: `one-off-${index}`,
        clientId: `walk-in-${index}`,
        channel: "internet",
        providerId: "isp-1",
        account: `inet-${index}`,
        source: `card-walk-in-${index}`,
        amount: rub(89_000),
        at: new Date(at).toISOString(),
      }),
      { msgID: `completed:one-off-${index}` },
    )
  }
}

/** Offered a repeat, half the customers make it automatic, a quarter decline, the rest say nothing. */
const answerReminders = async (world: World) => {
  const mobile = world.channel("mobile")
  let accepted = 0
  let declined = 0
  for (let index = 0; index < REMINDED; index++) {
    const clientId = `walk-in-${index}`
    const { items } = await mobile.ok<{
      items: ReadonlyArray<{ subscriptionId: string; kind: string; offersMade?: number }>
    }>("subscription.list", { includeHidden: true }, { clientId })
    const reminder = items.find((item) => item.kind === "reminder" && (item.offersMade ?? 0) > 0)
    if (reminder === undefined) continue
    if (index % 4 < 2) {
      await mobile.ok(
        "reminder.accept",
        {
          reminderId: reminder.subscriptionId,
          schedule: { every: "month", dayOfMonth: 10, time: "09:00", startDate: "2027-02-01" },
          templateName: "Home internet",
        },
        { clientId },
      )
      accepted += 1
    } else if (index % 4 === 2) {
      await mobile.ok("reminder.decline", { reminderId: reminder.subscriptionId }, { clientId })
      declined += 1
    }
  }
  return { accepted, declined }
}

/** Customers change their minds, from a different channel than the one they used to sign up. */
const customerActions = (day: number, subscriptions: ReadonlyArray<Created>, world: World) => {
  const elsewhere = (index: number) => world.channel(CHANNELS[(index + 2) % CHANNELS.length])
  const act = async (operation: string, pick: (index: number) => boolean) => {
    await Promise.all(
      subscriptions.map(async (subscription, index) => {
        if (!pick(index)) return
        const reply = await elsewhere(index).request(
          operation,
          { subscriptionId: subscription.subscriptionId },
          { clientId: subscription.clientId },
        )
        // A customer may try to resume something the engine paused itself, or skip after cancelling: refusals are fine.
        if (reply.status === "error" && reply.error.code !== "CONFLICT") {
          throw new Error(`${operation} failed: ${reply.error.code} ${reply.error.message}`)
        }
      }),
    )
  }
  switch (day) {
    case 10:
      return act("subscription.pause", (index) => index % 23 === 3)
    case 20:
      return act("subscription.skipNext", (index) => index % 17 === 5)
    case 45:
      return act("subscription.resume", (index) => index % 23 === 3)
    case 60:
      return act("subscription.cancel", (index) => index % 31 === 11)
    default:
      return Promise.resolve()
  }
}

const count = async (world: World) => {
  const payments = await world.db
    .selectFrom("payments")
    .select(["outcome", "attempt", (eb) => eb.fn.countAll<string>().as("count")])
    .groupBy(["outcome", "attempt"])
    .execute()
  const decisions = await world.db
    .selectFrom("decisions")
    .select(["outcome", "reason", (eb) => eb.fn.countAll<string>().as("count")])
    .groupBy(["outcome", "reason"])
    .execute()
  const byKind = await world.db
    .selectFrom("payments")
    .innerJoin("subscriptions", "subscriptions.id", "payments.subscription_id")
    .select(["subscriptions.kind", "payments.outcome", (eb) => eb.fn.countAll<string>().as("count")])
    .groupBy(["subscriptions.kind", "payments.outcome"])
    .execute()
  const sum = (rows: ReadonlyArray<{ count: string }>) =>
    rows.reduce((total, row) => total + Number(row.count), 0)
  return {
    commands: sum(payments),
    paid: sum(payments.filter((row) => row.outcome === "paid")),
    retries: sum(payments.filter((row) => row.attempt > 1)),
    failed: sum(payments.filter((row) => row.outcome === "failed")),
    skipped: decisions.filter((row) => row.outcome === "skipped"),
    notices: sum(decisions.filter((row) => row.outcome === "notice_sent")),
    autoPaused: sum(
      decisions.filter((row) => row.outcome === "paused" && row.reason === "consecutive_failures"),
    ),
    topUps: sum(byKind.filter((row) => row.kind === "threshold" && row.outcome === "paid")),
    billsPaid: sum(byKind.filter((row) => row.kind === "debt" && row.outcome === "paid")),
    heldOverLimit: sum(decisions.filter((row) => row.outcome === "held")),
    confirmed: sum(decisions.filter((row) => row.outcome === "confirmed")),
    remindersOffered: sum(decisions.filter((row) => row.outcome === "offered")),
    remindersAccepted: sum(decisions.filter((row) => row.outcome === "accepted")),
    remindersDeclined: sum(decisions.filter((row) => row.outcome === "declined")),
    debtQueries: sum(decisions.filter((row) => row.outcome === "queried")),
  }
}

const main = async () => {
  const started = Date.now()
  console.log(
    `Recurring payments demo: ${SUBSCRIPTIONS} autopayments, 2027-01-01 → 2027-04-01 in virtual time\n`,
  )
  const world = await World.create({ actorIdleMs: 5_000 }, "demo")
  try {
    await world.startEngine({}, "Error")
    await registerProviders(world)
    await world.startHub({ decide: hubVerdict })
    const operator = await world.startProvider(OPERATOR)
    await world.startProvider(UTILITY, waterBills)
    await world.tick(new Date(START - DAY_MS).toISOString())
    const subscriptions = await createSubscriptions(world)
    const debts = await createEventDriven(world)
    console.log(
      `created ${subscriptions.length} scheduled autopayments, ${PHONES} phone top-ups and ${WATER_ACCOUNTS} water bill autopayments through the protocol from ${CHANNELS.join(", ")}`,
    )
    let confirmedByCustomers = 0
    let answers = { accepted: 0, declined: 0 }

    for (let at = START; at <= END; at += TICK_MS) {
      const day = Math.round((at - START) / DAY_MS)
      if ((at - START) % DAY_MS === 0) await customerActions(day, subscriptions, world)
      if ((at - START) % DAY_MS === 0 && day === 50)
        confirmedByCustomers = await confirmHeldBills(world, debts)
      if ((at - START) % DAY_MS === 0 && day === 3) await oneOffPayments(world, at)
      if ((at - START) % DAY_MS === 0 && day === 34) answers = await answerReminders(world)
      await world.tick(new Date(at).toISOString())
      if ((at - START) % (2 * TICK_MS) === 0) await reportBalances(operator, at)
      await world.settled()
      if ((at - START) % (7 * DAY_MS) === 0) {
        const now = await count(world)
        console.log(
          `${new Date(at).toISOString().slice(0, 10)}  commands ${String(now.commands).padStart(5)}  paid ${String(now.paid).padStart(5)}  retries ${String(now.retries).padStart(4)}  failed ${String(now.failed).padStart(4)}  notices ${String(now.notices).padStart(5)}  top-ups ${String(now.topUps).padStart(4)}  bills ${String(now.billsPaid).padStart(3)}  held ${String(now.heldOverLimit).padStart(3)}`,
        )
      }
    }

    const final = await count(world)
    const doublePaid = await world.db
      .selectFrom("payments")
      .select(["subscription_id", "occurrence"])
      .where("status", "=", "succeeded")
      .groupBy(["subscription_id", "occurrence"])
      .having((eb) => eb.fn.countAll(), ">", 1)
      .execute()
    const commandsInStream =
      (
        await world.jsm.streams.info(world.topology.streams.hubPayments, {
          subjects_filter: world.topology.subjects.hubCommand,
        })
      ).state.subjects?.[world.topology.subjects.hubCommand] ?? 0
    const skippedLine = final.skipped.map((row) => `${row.reason} ${row.count}`).join(", ") || "none"
    const skippedTotal = final.skipped.reduce((total, row) => total + Number(row.count), 0)
    console.log(`
Summary after three months (${((Date.now() - started) / 1000).toFixed(1)} s of real time)
  autopayments created       ${subscriptions.length}
  payment commands sent      ${final.commands}  (in the hub's stream: ${commandsInStream})
  paid                       ${final.paid}
  retried                    ${final.retries}  (attempts after a retryable failure)
  failed for good            ${final.failed}
  skipped occurrences        ${skippedTotal}  (${skippedLine})
  payment.upcoming notices   ${final.notices}
  paused by the engine       ${final.autoPaused}  (three failed occurrences in a row)
  phone top-ups (threshold)  ${final.topUps}  (balance below 100.00 → 500.00, at most one per 6 h)
  water bills paid (debt)    ${final.billsPaid}  (${final.debtQueries} debt queries)
  held over a limit          ${final.heldOverLimit}  (confirmed by customers: ${final.confirmed}, on day 50: ${confirmedByCustomers})
  reminders offered          ${final.remindersOffered}  (after ${REMINDED} one-off internet payments on day 3)
  reminders accepted         ${final.remindersAccepted}  (now monthly autopayments; declined: ${final.remindersDeclined}, on day 34: ${answers.accepted} accepted, ${answers.declined} declined)
  occurrences paid twice     ${doublePaid.length}`)
    if (doublePaid.length > 0 || commandsInStream !== final.commands) process.exitCode = 1
  } finally {
    if (process.env.DEMO_KEEP === "1") {
      console.log(
        `\nkept database ${world.databaseName} and streams ${Object.values(world.topology.streams).join(", ")}`,
      )
    } else {
      await world.dispose()
    }
  }
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
