/**
 * `npm run demo`: the engine doing real work for three months of virtual time.
 *
 * It starts the engine against the local Postgres and NATS (its own database
 * and stream names, removed at the end), a fake hub that declines some
 * payments, and five fake channels. Customers set up a few hundred
 * autopayments through the protocol, change their minds along the way from
 * other channels, and ticks drive time from 2027-01-01 to 2027-04-01.
 */
import { createHash } from "node:crypto"
import type { FakeChannel } from "../fakes/FakeChannel.ts"
import type { HubVerdict } from "../fakes/FakeHub.ts"
import { World } from "../harness/World.ts"
import type { PaymentCommand } from "../src/streams/Messages.ts"

const SUBSCRIPTIONS = Number(process.env.DEMO_SUBSCRIPTIONS ?? 300)
const START = Date.parse("2027-01-01T00:00:00Z")
const END = Date.parse("2027-04-01T00:00:00Z")
const TICK_MS = 3 * 3_600_000
const DAY_MS = 86_400_000
const CHANNELS = ["mobile", "internet", "atm", "terminal", "cashier"] as const

/** A stable pseudo-random number in [0, 1) for a text: the same payment always gets the same verdict. */
const chance = (text: string): number => createHash("sha256").update(text).digest().readUInt32BE(0) / 2 ** 32

/** The hub's mood: mostly yes, sometimes "try later", sometimes no; one card is always refused. */
const hubVerdict = (command: PaymentCommand): HubVerdict => {
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
    await world.startHub({ decide: hubVerdict })
    await world.tick(new Date(START - DAY_MS).toISOString())
    const subscriptions = await createSubscriptions(world)
    console.log(
      `created ${subscriptions.length} autopayments through the protocol from ${CHANNELS.join(", ")}`,
    )

    for (let at = START; at <= END; at += TICK_MS) {
      const day = Math.round((at - START) / DAY_MS)
      if ((at - START) % DAY_MS === 0) await customerActions(day, subscriptions, world)
      await world.tick(new Date(at).toISOString())
      await world.settled()
      if ((at - START) % (7 * DAY_MS) === 0) {
        const now = await count(world)
        console.log(
          `${new Date(at).toISOString().slice(0, 10)}  commands ${String(now.commands).padStart(5)}  paid ${String(now.paid).padStart(5)}  retries ${String(now.retries).padStart(4)}  failed ${String(now.failed).padStart(4)}  notices ${String(now.notices).padStart(5)}`,
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
