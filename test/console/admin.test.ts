/**
 * An admin's pages in a real browser: editing the provider and channel
 * registries through the same store code the command lines use, and
 * re-submitting a dead letter, edited, to its original subject. A viewer
 * sees the same pages without the forms. Every change is in the audit log.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { RunningEngine } from "../../harness/World.ts"
import { World } from "../../harness/World.ts"
import { EngineClock } from "../../src/actors/EngineClock.ts"
import { LiveSettings } from "../../src/actors/LiveSettings.ts"
import { Channels } from "../../src/protocol/Channels.ts"
import { addChannel, listChannels } from "../../src/store/ChannelStore.ts"
import { listProviders } from "../../src/store/ProviderRegistry.ts"
import { type ConsoleBrowser, consoleUrl, createOperator, launchBrowser, signIn } from "./browser.ts"

describe("the console's admin pages", () => {
  let world: World
  let engine: RunningEngine
  let browser: ConsoleBrowser
  let base: string

  beforeAll(async () => {
    world = await World.create({}, "console_admin")
    ;[engine, browser] = await Promise.all([world.startEngine(), launchBrowser()])
    base = await consoleUrl(engine)
    await Promise.all([createOperator(world, "ada", "admin"), createOperator(world, "vic", "viewer")])
  })
  afterAll(async () => {
    await browser?.close()
    await world?.dispose()
  })

  const audit = (action: string) =>
    world.db.selectFrom("audit_log").selectAll().where("action", "=", action).execute()

  it("registers a provider and a channel, refuses a bad one, and shows viewers the registries without forms", async () => {
    const page = await browser.newPage()
    await signIn(page, base, "ada")
    await page.goto(`${base}/providers`)
    await page.fill("#providerId", "water-1")
    await page.fill("#displayName", "City Water")
    await page.check("input[name=periodic]")
    await page.check("input[name=supportsDebt]")
    await page.fill("[data-testid=provider-form] input[name=reason]", "CR-77 new provider")
    await page.click("[data-testid=provider-form] button")
    await page.waitForSelector("[data-testid=providers] td:has-text('water-1')")
    expect(await listProviders(world.db)).toEqual([
      {
        providerId: "water-1",
        displayName: "City Water",
        periodic: true,
        remindAfter: "P30D",
        supportsDebt: true,
        supportsThreshold: false,
      },
    ])
    expect(await audit("provider.add")).toMatchObject([
      { operator: "ada", target: "water-1", reason: "CR-77 new provider" },
    ])

    await page.click("[data-testid=providers] a:has-text('Edit')")
    expect(await page.inputValue("#displayName")).toBe("City Water")
    expect(await page.isChecked("input[name=supportsDebt]")).toBe(true)
    await page.fill("#displayName", "City Water Utility")
    await page.click("[data-testid=provider-form] button")
    await page.waitForSelector("[data-testid=providers] td:has-text('City Water Utility')")
    expect(await audit("provider.update")).toMatchObject([
      {
        target: "water-1",
        details: {
          before: { displayName: "City Water" },
          after: { displayName: "City Water Utility", supportsDebt: true },
        },
      },
    ])

    await page.fill("#providerId", "bad id!")
    await page.fill("#displayName", "Broken")
    await page.click("[data-testid=provider-form] button")
    await page.waitForSelector(".flash.error")
    expect(await page.textContent(".flash.error")).toContain("must be 1-64 letters")
    expect(await listProviders(world.db)).toHaveLength(1)

    await page.goto(`${base}/channels`)
    await page.waitForSelector("text=accepts the development channels UNSIGNED")
    await page.fill("#channelId", "branch-app")
    await page.fill("#channelName", "Branch tablet app")
    await page.fill("#channelOperations", "subscription.get subscription.list")
    await page.click("[data-testid=channel-form] button")
    await page.waitForSelector("[data-testid=channels] td:has-text('branch-app')")
    expect((await listChannels(world.db)).map((row) => [row.id, row.operations])).toEqual([
      ["branch-app", ["subscription.get", "subscription.list"]],
    ])
    await page.fill("#channelId", "other")
    await page.fill("#channelName", "Other")
    await page.fill("#channelOperations", "subscription.teleport")
    await page.click("[data-testid=channel-form] button")
    await page.waitForSelector(".flash.error")
    expect(await listChannels(world.db)).toHaveLength(1)

    await page.goto(`${base}/operators`)
    await page.waitForSelector("[data-testid=operators] td:has-text('vic')")
    expect(await page.locator("[data-testid=operators] tbody tr").count()).toBe(2)

    const viewer = await browser.newPage()
    await signIn(viewer, base, "vic")
    await viewer.goto(`${base}/providers`)
    await viewer.waitForSelector("[data-testid=providers] td:has-text('water-1')")
    expect(await viewer.locator("[data-testid=provider-form]").count()).toBe(0)
    await viewer.goto(`${base}/audit`)
    await viewer.waitForSelector("text=needs the admin role")
  })

  it("re-submits an edited dead letter to its original subject, where the engine uses it", async () => {
    const { subjects } = world.topology
    await world.js.publish(subjects.tick, JSON.stringify({ at: "2027-02-30T06:00:00Z" }))
    await world.waitFor("the bad tick to be dead-lettered", async () => {
      const info = await world.jsm.streams.info(world.topology.streams.deadLetters)
      return info.state.messages === 1
    })
    const page = await browser.newPage()
    await signIn(page, base, "ada")
    await page.goto(`${base}/dead-letters`)
    await page.waitForSelector("[data-testid=dead-letters] td:has-text('does not match its schema')")
    await page.click("[data-testid=dead-letters] a")
    await page.waitForSelector("[data-testid=original]")
    await page.fill("#payload", JSON.stringify({ at: "2027-02-28T06:00:00Z" }))
    await page.fill("#reason", "mistyped date from the clock service, INC-9")
    await page.click("[data-testid=resubmit] button")
    await page.waitForSelector("[role=status]:has-text('Re-submitted')")

    await world.consumerCaughtUp(world.topology.streams.ticks, world.topology.consumers.ticks)
    const now = await engine.runtime.runPromise(EngineClock.use((clock) => clock.now))
    expect(new Date(now).toISOString()).toBe("2027-02-28T06:00:00.000Z")
    expect(await audit("dead_letter.resubmit")).toMatchObject([
      {
        operator: "ada",
        reason: "mistyped date from the clock service, INC-9",
        details: { edited: true, subject: subjects.tick },
      },
    ])
  })

  it("overrides the limits and the retry schedule on every instance, and returns them to the environment's (sessions valid on every instance too)", async () => {
    // The first test registered a channel, so the development channels are off: register the one used here.
    await addChannel(world.db, {
      id: "mobile",
      displayName: "Mobile bank",
      operations: ["*"],
      publicKey: null,
    })
    await engine.runtime.runPromise(Channels.use((channels) => channels.reload))
    const second = await world.startEngine()
    const capOf = (running: RunningEngine) =>
      running.runtime.runPromise(
        LiveSettings.useSync((live) => live.current().limits.paymentMax.scheduled.RUB ?? null),
      )
    const page = await browser.newPage()
    await signIn(page, base, "ada")
    // Sessions live in Postgres: the other instance (same host, other port, so the same cookie) knows it.
    await page.goto(`${await consoleUrl(second)}/settings`)
    await page.waitForSelector("[data-testid=operator]:has-text('ada')")
    await page.goto(`${base}/settings`)
    await page.fill("#limit-scheduled", "RUB:100000")
    await page.fill("[data-testid=limits-form] input[name=reason]", "risk committee decision RC-12")
    await page.click("[data-testid=limits-form] button[value=override]")
    await page.waitForSelector("[role=status]:has-text('limits override')")
    await world.waitFor(
      "both instances to apply the cap",
      async () => (await capOf(engine)) === 100000 && (await capOf(second)) === 100000,
    )
    const createRent = () =>
      world.channel("mobile").request(
        "subscription.create",
        {
          kind: "scheduled",
          template: { name: "Rent", providerId: "water-1", account: "flat-9", source: "card-tok-1" },
          amount: { value: 150000, currency: "RUB" },
          schedule: {
            every: "month",
            dayOfMonth: 1,
            time: "09:00",
            timezone: "Europe/Moscow",
            startDate: "2027-06-01",
          },
        },
        { clientId: "client-cap" },
      )
    expect(await createRent()).toMatchObject({ status: "error", error: { code: "LIMIT_EXCEEDED" } })

    await page.fill("#limit-scheduled", "RUB:12,5")
    await page.click("[data-testid=limits-form] button[value=override]")
    await page.waitForSelector(".flash.error")
    expect(await capOf(engine)).toBe(100000)

    await page.fill("#retrySchedule", "PT30M,PT2H")
    await page.click("[data-testid=retries-form] button[value=override]")
    await page.waitForSelector("[data-testid=retries] td:has-text('PT30M,PT2H')")
    const retries = (running: RunningEngine) =>
      running.runtime.runPromise(
        LiveSettings.useSync((live) => live.current().policy.retryScheduleMs.join(",")),
      )
    await world.waitFor(
      "both instances to apply the schedule",
      async () => (await retries(second)) === "1800000,7200000",
    )

    await page.click("[data-testid=limits-form] button[value=environment]")
    await page.waitForSelector("[role=status]:has-text('environment')")
    await world.waitFor(
      "both instances to drop the cap",
      async () => (await capOf(engine)) === null && (await capOf(second)) === null,
    )
    expect(await createRent()).toMatchObject({ status: "ok" })
    expect((await audit("settings.limits_override"))[0]).toMatchObject({
      operator: "ada",
      reason: "risk committee decision RC-12",
    })
    expect(await audit("settings.limits_reset")).toHaveLength(1)
  })
})
