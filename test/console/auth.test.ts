/**
 * The console's guards, in a real browser: wrong passwords, lock-out, a
 * viewer trying to change something, forged or missing CSRF tokens and
 * cross-site posts are all refused, and each refusal writes nothing.
 */
import type { Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { RunningEngine } from "../../harness/World.ts"
import { World } from "../../harness/World.ts"
import { SIGN_IN_REFUSED } from "../../src/console/Auth.ts"
import { createScheduled, getSubscription } from "../support/scenarios.ts"
import {
  type ConsoleBrowser,
  consoleUrl,
  createOperator,
  launchBrowser,
  PASSWORD,
  signIn,
} from "./browser.ts"

describe("the console's guards", () => {
  let world: World
  let engine: RunningEngine
  let browser: ConsoleBrowser
  let base: string

  beforeAll(async () => {
    world = await World.create({}, "console_auth")
    ;[engine, browser] = await Promise.all([world.startEngine(), launchBrowser()])
    base = await consoleUrl(engine)
    await Promise.all([
      createOperator(world, "vera", "viewer"),
      createOperator(world, "oleg", "operator"),
      createOperator(world, "lena", "operator"),
    ])
  })
  afterAll(async () => {
    await browser?.close()
    await world?.dispose()
  })

  const auditRows = async () => (await world.db.selectFrom("audit_log").selectAll().execute()).length
  const sessions = async (login: string) =>
    (await world.db.selectFrom("operator_sessions").selectAll().where("login", "=", login).execute()).length

  const tryPassword = async (page: Page, login: string, password: string) => {
    await page.goto(`${base}/login`)
    await page.fill("#login", login)
    await page.fill("#password", password)
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith("/console/login") && r.request().method() === "POST"),
      page.click("button[type=submit]"),
    ])
    await page.waitForSelector("[role=alert]")
    return { status: response.status(), message: (await page.textContent("[role=alert]")) ?? "" }
  }

  it("refuses a wrong password and an unknown login alike, and opens no session", async () => {
    const page = await browser.newPage()
    const wrong = await tryPassword(page, "oleg", "not the password at all")
    expect(wrong.status).toBe(401)
    expect(wrong.message).toContain("Wrong login or password")
    const unknown = await tryPassword(page, "nobody", PASSWORD)
    expect(unknown).toEqual(wrong)
    expect(await sessions("oleg")).toBe(0)
    expect(
      (await browser.context.cookies()).filter((cookie) => cookie.name === "rp_console_session"),
    ).toEqual([])
  })

  it("locks an account after five wrong passwords in a row: even the right one is then refused", async () => {
    const page = await browser.newPage()
    for (let attempt = 1; attempt <= 4; attempt++)
      expect((await tryPassword(page, "lena", `wrong-${attempt}`)).status).toBe(401)
    const fifth = await tryPassword(page, "lena", "wrong-5")
    // The same answer as any refusal: it must not tell a locked account from an unknown login.
    expect(fifth).toEqual({ status: 401, message: SIGN_IN_REFUSED })
    const right = await tryPassword(page, "lena", PASSWORD)
    expect(right).toEqual({ status: 401, message: SIGN_IN_REFUSED })
    expect(await sessions("lena")).toBe(0)
    const row = await world.db
      .selectFrom("operators")
      .select("locked_until")
      .where("login", "=", "lena")
      .executeTakeFirstOrThrow()
    expect(row.locked_until?.getTime()).toBeGreaterThan(Date.now() + 14 * 60_000)
    const audit = await world.db
      .selectFrom("audit_log")
      .selectAll()
      .where("action", "=", "session.locked_out")
      .execute()
    expect(audit.map((entry) => entry.target)).toEqual(["lena"])
  })

  it("refuses a viewer's change with 403 and writes nothing", async () => {
    const mobile = world.channel("mobile")
    const subscription = await createScheduled(mobile, "client-v", {}, "contract-v")
    const page = await browser.newPage()
    await signIn(page, base, "vera")
    await page.goto(`${base}/subscriptions/${subscription.subscriptionId}`)
    await page.waitForSelector("text=can look but not change")
    expect(await page.locator("form[data-action]").count()).toBe(0)
    // The viewer forges the form the page did not give them, with their own valid CSRF token.
    const csrf = await page.getAttribute("input[name=_csrf]", "value")
    const before = await auditRows()
    const response = await page.request.post(`${base}/subscriptions/${subscription.subscriptionId}/pause`, {
      form: { _csrf: csrf ?? "", reason: "viewer trying their luck", requestId: crypto.randomUUID() },
      headers: { origin: new URL(base).origin },
    })
    expect(response.status()).toBe(403)
    expect(await response.text()).toContain("needs the operator role")
    expect((await getSubscription(mobile, "client-v", subscription.subscriptionId)).status).toBe("active")
    expect(await auditRows()).toBe(before)
  })

  it("refuses a change whose CSRF token is wrong or missing, or that comes from another origin, and writes nothing", async () => {
    const mobile = world.channel("mobile")
    const subscription = await createScheduled(mobile, "client-c", {}, "contract-c")
    const page = await browser.newPage()
    await signIn(page, base, "oleg")
    const before = await auditRows()
    const submitPause = async (tamper: string) => {
      await page.goto(`${base}/subscriptions/${subscription.subscriptionId}`)
      await page.fill("#reason-pause", "client asked on the phone")
      await page.evaluate(tamper)
      const [response] = await Promise.all([
        page.waitForResponse((r) => r.url().endsWith("/pause") && r.request().method() === "POST"),
        page.click("form[data-action=pause] button"),
      ])
      return response
    }
    const wrong = await submitPause(
      `document.querySelector("form[data-action=pause] input[name=_csrf]").value = "forged-token"`,
    )
    expect(wrong.status()).toBe(403)
    expect(await wrong.text()).toContain("security token is missing or wrong")
    const missing = await submitPause(
      `document.querySelector("form[data-action=pause] input[name=_csrf]").remove()`,
    )
    expect(missing.status()).toBe(403)

    await page.goto(`${base}/subscriptions/${subscription.subscriptionId}`)
    const csrf = await page.getAttribute("input[name=_csrf]", "value")
    const crossSite = await page.request.post(`${base}/subscriptions/${subscription.subscriptionId}/pause`, {
      form: { _csrf: csrf ?? "", reason: "a page elsewhere posting", requestId: crypto.randomUUID() },
      headers: { origin: "https://evil.example" },
    })
    expect(crossSite.status()).toBe(403)
    expect(await crossSite.text()).toContain("Cross-site request refused")

    expect((await getSubscription(mobile, "client-c", subscription.subscriptionId)).status).toBe("active")
    expect(await auditRows()).toBe(before)
    const history = await world.db
      .selectFrom("decisions")
      .select("outcome")
      .where("subscription_id", "=", subscription.subscriptionId)
      .execute()
    expect(history.map((row) => row.outcome)).toEqual(["created"])
  })

  it("refuses a change without a reason, and signs out for good", async () => {
    const mobile = world.channel("mobile")
    const subscription = await createScheduled(mobile, "client-r", {}, "contract-r")
    const page = await browser.newPage()
    await signIn(page, base, "oleg")
    await page.goto(`${base}/subscriptions/${subscription.subscriptionId}`)
    // The browser would stop an empty reason itself; the server must refuse one too.
    await page.evaluate(
      `document.querySelector("#reason-pause").removeAttribute("required"); document.querySelector("#reason-pause").removeAttribute("minlength")`,
    )
    await page.fill("#reason-pause", "no")
    await page.click("form[data-action=pause] button")
    await page.waitForSelector(".flash.error")
    expect(await page.textContent(".flash.error")).toContain("reason of at least 5 characters")
    expect((await getSubscription(mobile, "client-r", subscription.subscriptionId)).status).toBe("active")

    const open = await sessions("oleg")
    await page.click("header button:has-text('Sign out')")
    await page.waitForSelector("#password")
    expect(await sessions("oleg")).toBe(open - 1)
    await page.goto(`${base}/today`)
    await page.waitForSelector("#password")
  })

  it("keeps the session server-side behind an HttpOnly, SameSite=Strict cookie, and ends it after 30 idle minutes", async () => {
    const page = await browser.newPage()
    await signIn(page, base, "oleg")
    const [cookie] = (await browser.context.cookies()).filter((c) => c.name === "rp_console_session")
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: "Strict", path: "/" })
    const stored = await world.db
      .selectFrom("operator_sessions")
      .selectAll()
      .where("login", "=", "oleg")
      .execute()
    expect(stored.map((row) => row.token_hash)).not.toContain(cookie?.value)
    const response = await page.goto(`${base}/today`)
    expect(response?.headers()["content-security-policy"]).toContain("default-src 'none'")
    expect(response?.headers()["cache-control"]).toBe("no-store")

    await world.db
      .updateTable("operator_sessions")
      .set({ last_seen_at: new Date(Date.now() - 31 * 60_000) })
      .where("login", "=", "oleg")
      .execute()
    await page.goto(`${base}/today`)
    await page.waitForSelector("#password")
    expect(new URL(page.url()).searchParams.get("next")).toBe("/console/today")
  })
})
