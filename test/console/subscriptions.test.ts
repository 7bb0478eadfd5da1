/**
 * The console in a real browser against a real engine: an operator finds a
 * client and pauses a subscription on the client's behalf; the pause is the
 * one the protocol sees, its history names the operator and the reason, and
 * the audit log has who, what and why.
 */
import type { Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { RunningEngine } from "../../harness/World.ts"
import { World } from "../../harness/World.ts"
import { createScheduled, getSubscription } from "../support/scenarios.ts"
import { type ConsoleBrowser, consoleUrl, createOperator, launchBrowser, signIn } from "./browser.ts"

describe("the console's subscription pages", () => {
  let world: World
  let engine: RunningEngine
  let browser: ConsoleBrowser
  let base: string
  let page: Page

  beforeAll(async () => {
    world = await World.create({}, "console")
    ;[engine, browser] = await Promise.all([world.startEngine(), launchBrowser()])
    base = await consoleUrl(engine)
    await createOperator(world, "olga", "operator")
  })
  afterAll(async () => {
    await browser?.close()
    await world?.dispose()
  })

  it("signs an operator in and finds every subscription of a client", async () => {
    const mobile = world.channel("mobile")
    await createScheduled(mobile, "client-42", {}, "contract-1")
    await createScheduled(world.channel("internet"), "client-42", {}, "contract-2")
    await createScheduled(mobile, "client-other", {}, "contract-3")
    page = await browser.newPage()
    await signIn(page, base, "olga")
    await page.click("nav >> text=Clients")
    await page.fill("#clientId", "client-42")
    await page.click("form >> button:has-text('Find')")
    const rows = page.locator("[data-testid=subscriptions] tbody tr")
    await rows.first().waitFor()
    expect(await rows.count()).toBe(2)
    const channels = await rows.locator("td:last-child").allTextContents()
    expect(channels.map((text) => text.split(" / ")[0]).sort()).toEqual(["internet", "mobile"])
  })

  it("pauses a subscription for the client: the protocol sees it, the history and the audit log name the operator", async () => {
    const mobile = world.channel("mobile")
    const subscription = await createScheduled(mobile, "client-7", {}, "contract-7")
    page = await browser.newPage()
    await signIn(page, base, "olga")
    await page.goto(`${base}/subscriptions/${subscription.subscriptionId}`)
    await page.fill("#reason-pause", "client called: travelling, ticket SR-1234")
    await page.click("form[data-action=pause] button")
    await page.waitForSelector("[role=status]:has-text('paused')")
    expect(await page.textContent("[data-testid=status]")).toContain("paused")

    const seen = await getSubscription(mobile, "client-7", subscription.subscriptionId)
    expect(seen.status).toBe("paused")
    const history = await mobile.ok<{ entries: Array<{ outcome?: string; by: unknown }> }>(
      "subscription.history",
      { subscriptionId: subscription.subscriptionId },
      { clientId: "client-7" },
    )
    expect(history.entries.find((entry) => entry.outcome === "paused")?.by).toEqual({
      channel: "console",
      terminal: null,
      operator: { login: "olga", reason: "client called: travelling, ticket SR-1234" },
    })
    expect(await page.textContent("[data-testid=history]")).toContain("olga")

    const audit = await world.db
      .selectFrom("audit_log")
      .selectAll()
      .where("target", "=", subscription.subscriptionId)
      .execute()
    expect(audit).toHaveLength(1)
    expect(audit[0]).toMatchObject({
      operator: "olga",
      action: "subscription.pause",
      client_id: "client-7",
      reason: "client called: travelling, ticket SR-1234",
    })
  })
})
