/**
 * The console in a real browser against a real engine: an operator finds a
 * client and pauses a subscription on the client's behalf; the pause is the
 * one the protocol sees, its history names the operator and the reason, and
 * the audit log has who, what and why.
 */
import type { Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { FakeHub } from "../../fakes/FakeHub.ts"
import type { RunningEngine } from "../../harness/World.ts"
import { World } from "../../harness/World.ts"
import { noLimitSettings } from "../../src/actors/Limits.ts"
import { LiveSettings } from "../../src/actors/LiveSettings.ts"
import { writeOverride } from "../../src/store/SettingsOverrides.ts"
import { createScheduled, getSubscription } from "../support/scenarios.ts"
import { type ConsoleBrowser, consoleUrl, createOperator, launchBrowser, signIn } from "./browser.ts"

describe("the console's subscription pages", () => {
  let world: World
  let engine: RunningEngine
  let browser: ConsoleBrowser
  let base: string
  let page: Page
  let hub: FakeHub

  beforeAll(async () => {
    world = await World.create({}, "console")
    ;[engine, browser] = await Promise.all([world.startEngine(), launchBrowser()])
    base = await consoleUrl(engine)
    hub = await world.startHub()
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

    // Support often knows only the account the client pays.
    await page.fill("#clientId", "")
    await page.fill("#account", "contract-3")
    await page.click("form >> button:has-text('Find')")
    await page.click("[data-testid=clients-by-account] a:has-text('client-other')")
    await page.waitForSelector("h2:has-text('1 subscription of client-other')")
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

  it("applies a form once however often it is sent, then resumes, skips the next payment and cancels for the client", async () => {
    const mobile = world.channel("mobile")
    const subscription = await createScheduled(mobile, "client-8", {}, "contract-8")
    const id = subscription.subscriptionId
    page = await browser.newPage()
    await signIn(page, base, "olga")
    await page.goto(`${base}/subscriptions/${id}`)
    const form = "form[data-action=pause]"
    const sent = {
      _csrf: (await page.getAttribute(`${form} input[name=_csrf]`, "value")) ?? "",
      requestId: (await page.getAttribute(`${form} input[name=requestId]`, "value")) ?? "",
      reason: "client asked twice, double click",
    }
    await page.fill("#reason-pause", sent.reason)
    await page.click(`${form} button`)
    await page.waitForSelector("[role=status]:has-text('paused')")
    const again = await page.request.post(`${base}/subscriptions/${id}/pause`, {
      form: sent,
      headers: { origin: new URL(base).origin },
    })
    expect(again.status()).toBe(200)
    expect(await again.text()).toContain("already submitted")
    const decisions = async (outcome: string) =>
      (
        await world.db
          .selectFrom("decisions")
          .select("operator")
          .where("subscription_id", "=", id)
          .where("outcome", "=", outcome)
          .execute()
      ).map((row) => row.operator)
    expect(await decisions("paused")).toEqual(["olga"])

    const act = async (action: string, reason: string, done: string) => {
      await page.fill(`#reason-${action}`, reason)
      await page.click(`form[data-action=${action}] button`)
      await page.waitForSelector(`[role=status]:has-text('${done}')`)
    }
    await act("resume", "client is back from travelling", "resumed")
    await act("skip-next", "client paid this month at the branch", "skip")
    const skipped = await getSubscription(mobile, "client-8", id)
    expect(skipped).toMatchObject({ status: "active", skippedOccurrences: ["2027-01-01"] })
    await act("cancel", "client closes the contract with the provider", "cancelled")
    expect((await getSubscription(mobile, "client-8", id)).status).toBe("cancelled")
    await page.waitForSelector("text=No change is possible in this state")
    expect(await decisions("cancelled")).toEqual(["olga"])
    const audited = await world.db
      .selectFrom("audit_log")
      .select("action")
      .where("target", "=", id)
      .orderBy("id")
      .execute()
    expect(audited.map((row) => row.action)).toEqual([
      "subscription.pause",
      "subscription.resume",
      "subscription.skipNext",
      "subscription.cancel",
    ])
  })

  it("shows today's payments on engine time, with the chart and the live consumer lags", async () => {
    await createScheduled(world.channel("mobile"), "client-9", {}, "contract-9")
    await world.tick("2027-01-01T06:00:00Z")
    await world.settled()
    const paid = await world.db
      .selectFrom("payments")
      .select(["status"])
      .where("requested_at", "=", new Date("2027-01-01T06:00:00Z"))
      .execute()
    expect(paid.length).toBeGreaterThan(0)
    expect(hub.commands.length).toBe(paid.length)
    page = await browser.newPage()
    await signIn(page, base, "olga")
    await page.goto(`${base}/today`)
    await page.waitForSelector("text=2027-01-01 06:00:00 UTC")
    expect(await page.textContent("[data-testid=sent] .value")).toBe(String(paid.length))
    expect(await page.textContent("[data-testid=succeeded] .value")).toBe(
      String(paid.filter((payment) => payment.status === "succeeded").length),
    )
    expect(await page.locator("svg rect title").count()).toBeGreaterThan(0)
    const lags = page.locator("[data-testid=lags] tbody tr")
    expect(await lags.count()).toBe(5)
    expect(await lags.first().textContent()).toContain(world.topology.consumers.ticks)
  })

  it("releases a payment a limit held, once the client approves it on the phone", async () => {
    const mobile = world.channel("mobile")
    const subscription = await createScheduled(mobile, "client-h", {}, "contract-h")
    // The bank lowers its cap below this autopayment's amount, so its next payment is held.
    const capped = {
      ...noLimitSettings,
      paymentMax: { scheduled: { RUB: 100_000 }, threshold: {}, debt: {} },
    }
    await writeOverride(world.db, { limits: capped }, "test")
    await engine.runtime.runPromise(LiveSettings.use((live) => live.reload))
    await world.tick("2027-02-01T06:00:00Z")
    await world.settled()
    const held = (await getSubscription(mobile, "client-h", subscription.subscriptionId)) as unknown as {
      heldPayments: Array<{ paymentId: string }>
    }
    const paymentId = held.heldPayments[0]?.paymentId ?? ""
    expect(hub.commands.some((command) => command.paymentId === paymentId)).toBe(false)

    page = await browser.newPage()
    await signIn(page, base, "olga")
    await page.goto(`${base}/subscriptions/${subscription.subscriptionId}`)
    await page.fill(`#reason-confirm-${paymentId}`, "client approved the amount on a recorded call, SR-555")
    await page.click(`form[data-payment="${paymentId}"] button`)
    await page.waitForSelector("[role=status]:has-text('approval')")
    await world.waitFor("the released payment to reach the hub", async () =>
      hub.commands.some((command) => command.paymentId === paymentId),
    )
    await world.settled()
    expect(hub.commands.filter((command) => command.paymentId === paymentId)).toHaveLength(1)
    const confirmed = await world.db
      .selectFrom("decisions")
      .select(["operator", "operator_reason"])
      .where("subscription_id", "=", subscription.subscriptionId)
      .where("outcome", "=", "confirmed")
      .execute()
    expect(confirmed).toEqual([
      { operator: "olga", operator_reason: "client approved the amount on a recorded call, SR-555" },
    ])
    await writeOverride(world.db, { limits: null }, "test")
  })
})
