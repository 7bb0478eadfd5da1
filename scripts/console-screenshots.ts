/**
 * `npm run docs:screenshots`: regenerates docs/img/console-*.png.
 *
 * Starts an isolated world (own database and streams) with an engine and a
 * fake hub, gives it a day of activity — registered providers and channels,
 * autopayments for a few clients, a morning of ticks with most payments
 * succeeding and some failing, one held by a limit, a dead letter — signs in
 * as an admin in Chromium and captures each page of the console.
 */
import { generateKeyPairSync } from "node:crypto"
import { Effect } from "effect"
import type { Page } from "playwright-core"
import { World } from "../harness/World.ts"
import { hashPassword } from "../src/console/Passwords.ts"
import { HttpServer } from "../src/http/HttpServer.ts"
import { addChannel } from "../src/store/ChannelStore.ts"
import { migrateToLatest } from "../src/store/Database.ts"
import { addOperator } from "../src/store/OperatorStore.ts"
import { saveProvider } from "../src/store/ProviderRegistry.ts"
import { writeOverride } from "../src/store/SettingsOverrides.ts"
import { launchBrowser } from "../test/console/browser.ts"

const target = (name: string) => new URL(`../docs/img/console-${name}.png`, import.meta.url).pathname
const PASSWORD = "screenshots only, not a real password"

/** A fresh Ed25519 public key as 32 raw bytes in base64, the way a channel's key is registered. */
const samplePublicKey = () => {
  const jwk = generateKeyPairSync("ed25519").publicKey.export({ format: "jwk" })
  return Buffer.from(jwk.x ?? "", "base64url").toString("base64")
}

const main = async () => {
  const world = await World.create({}, "screens")
  const browser = await launchBrowser()
  try {
    // The registries are seeded before the engine starts, so it starts with them in force.
    await Effect.runPromise(migrateToLatest(world.db))
    await saveProvider(world.db, {
      providerId: "isp-1",
      displayName: "Home Internet Ltd",
      periodic: true,
      remindAfter: "P30D",
      supportsDebt: false,
      supportsThreshold: false,
    })
    await saveProvider(world.db, {
      providerId: "mobile-op",
      displayName: "Mobile operator",
      periodic: false,
      remindAfter: "P30D",
      supportsDebt: false,
      supportsThreshold: true,
    })
    await saveProvider(world.db, {
      providerId: "utility-1",
      displayName: "City utilities",
      periodic: true,
      remindAfter: "P30D",
      supportsDebt: true,
      supportsThreshold: false,
    })
    await addChannel(world.db, {
      id: "mobile",
      displayName: "Mobile bank",
      operations: ["*"],
      publicKey: null,
    })
    await addChannel(world.db, {
      id: "internet",
      displayName: "Internet bank",
      operations: ["subscription.*", "template.*", "payment.confirm"],
      publicKey: null,
    })
    await addChannel(world.db, {
      id: "atm",
      displayName: "ATM network",
      operations: ["subscription.get", "subscription.list"],
      publicKey: samplePublicKey(),
    })
    await addOperator(world.db, {
      login: "anna.admin",
      role: "admin",
      passwordHash: await hashPassword(PASSWORD),
    })
    await addOperator(world.db, {
      login: "olga.support",
      role: "operator",
      passwordHash: await hashPassword(PASSWORD),
    })
    await addOperator(world.db, {
      login: "victor.ops",
      role: "viewer",
      passwordHash: await hashPassword(PASSWORD),
    })
    await writeOverride(world.db, { retrySchedule: "PT30M,PT6H,PT24H" }, "anna.admin")

    const engine = await world.startEngine()
    let count = 0
    await world.startHub({
      decide: () =>
        ++count % 7 === 0
          ? { status: "failed", retryable: false, reason: "insufficient funds" }
          : { status: "succeeded", retryable: false },
    })
    await world.tick("2027-03-01T00:00:00Z")
    const mobile = world.channel("mobile")
    const internet = world.channel("internet")
    const create = (channel: typeof mobile, clientId: string, body: Record<string, unknown>) =>
      channel.ok<{ subscription: { subscriptionId: string } }>("subscription.create", body, { clientId })
    const scheduled = (account: string, hour: number, value: number) => ({
      kind: "scheduled",
      template: { name: `Internet ${account}`, providerId: "isp-1", account, source: "card-tok-1" },
      amount: { value, currency: "RUB" },
      schedule: {
        every: "day",
        interval: 1,
        time: `${String(hour).padStart(2, "0")}:00`,
        timezone: "UTC",
        startDate: "2027-03-01",
      },
    })
    for (let index = 0; index < 60; index++) {
      await create(
        index % 2 === 0 ? mobile : internet,
        `client-${100 + index}`,
        scheduled(`contract-${index}`, 1 + (index % 11), 50_000 + index * 1_000),
      )
    }
    const main7 = await create(mobile, "client-7", {
      kind: "scheduled",
      template: {
        name: "Home internet",
        providerId: "isp-1",
        account: "contract-7001",
        source: "card-tok-7",
      },
      amount: { value: 89_900, currency: "RUB" },
      schedule: {
        every: "day",
        interval: 1,
        time: "04:00",
        timezone: "Europe/Moscow",
        startDate: "2027-03-01",
      },
    })
    await create(internet, "client-7", {
      kind: "threshold",
      template: {
        name: "My phone",
        providerId: "mobile-op",
        account: "+7 900 000-00-07",
        source: "card-tok-7",
      },
      amount: { value: 50_000, currency: "RUB" },
      threshold: { value: 10_000, currency: "RUB" },
    })
    await create(mobile, "client-7", {
      kind: "debt",
      template: {
        name: "Flat utilities",
        providerId: "utility-1",
        account: "LS-0070071",
        source: "card-tok-7",
      },
      limit: { value: 500_000, currency: "RUB" },
    })
    for (let hour = 1; hour <= 12; hour++) {
      await world.tick(`2027-03-01T${String(hour).padStart(2, "0")}:00:00Z`)
      await world.settled()
    }
    await world.js.publish(world.topology.subjects.tick, JSON.stringify({ at: "2027-03-01T25:00:00Z" }))
    await world.js.publish(
      world.topology.subjects.hubResult,
      JSON.stringify({ paymentId: "x", status: "maybe" }),
    )
    await world.waitFor(
      "the bad messages to be dead-lettered",
      async () => (await world.jsm.streams.info(world.topology.streams.deadLetters)).state.messages >= 2,
    )

    const base = `${(await engine.runtime.runPromise(HttpServer)).url}/console`
    const page = await browser.newPage()
    const shoot = async (name: string, path: string, prepare?: (page: Page) => Promise<void>) => {
      await page.goto(`${base}${path}`)
      await prepare?.(page)
      await page.screenshot({ path: target(name), fullPage: true })
      console.log(`docs/img/console-${name}.png`)
    }
    await shoot("login", "/login")
    await page.fill("#login", "anna.admin")
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.waitForSelector("[data-testid=operator]")

    await page.goto(`${base}/subscriptions/${main7.subscription.subscriptionId}`)
    await page.fill("#reason-pause", "client called: away until April, ticket SR-20417")
    await page.click("form[data-action=pause] button")
    await page.waitForSelector("[role=status]")

    // A few more audited changes, made the way an admin makes them.
    await page.goto(`${base}/settings`)
    await page.fill("#limit-monthly", "RUB:5000000")
    await page.fill("[data-testid=limits-form] input[name=reason]", "risk committee decision RC-12")
    await page.click("[data-testid=limits-form] button[value=override]")
    await page.waitForSelector("[role=status]")
    await page.goto(`${base}/providers`)
    await page.fill("#providerId", "gas-1")
    await page.fill("#displayName", "Regional gas")
    await page.check("input[name=periodic]")
    await page.check("input[name=supportsDebt]")
    await page.fill("[data-testid=provider-form] input[name=reason]", "CR-4411 new provider")
    await page.click("[data-testid=provider-form] button")
    await page.waitForSelector("[role=status]")

    await shoot("today", "/today")
    await shoot("clients", "/clients?clientId=client-7&hidden=1")
    await shoot("subscription", `/subscriptions/${main7.subscription.subscriptionId}`, async (p) => {
      await p.click("[data-testid=history] details >> nth=0")
    })
    await shoot("providers", "/providers")
    await shoot("channels", "/channels")
    await shoot("settings", "/settings")
    await shoot("dead-letters", "/dead-letters")
    await shoot("dead-letter", "/dead-letters/1")
    await shoot("operators", "/operators")
    await shoot("audit", "/audit")
  } finally {
    await browser.close()
    await world.dispose()
  }
}

main().catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
