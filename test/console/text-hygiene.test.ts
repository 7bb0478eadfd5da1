/**
 * Text the console stores follows the protocol's text rules: a reason, an
 * audit note or a name with a TAB, a line break or a C1 control is refused
 * with a clear error and nothing is written, and a name or reason made only
 * of invisible characters counts as blank, in the console as in the protocol.
 */
import { sql } from "kysely"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { RunningEngine } from "../../harness/World.ts"
import { World } from "../../harness/World.ts"
import { createScheduled, getSubscription } from "../support/scenarios.ts"
import { consoleUrl, createOperator, PASSWORD } from "./browser.ts"

/** A signed-in operator's requests, as their browser would send them (same origin, session cookie). */
const signedIn = async (base: string, login: string) => {
  const answer = await fetch(`${base}/login`, {
    method: "POST",
    body: new URLSearchParams({ login, password: PASSWORD }),
    redirect: "manual",
    headers: { origin: new URL(base).origin },
  })
  const cookie = answer.headers.get("set-cookie")?.split(";")[0]
  if (answer.status !== 303 || cookie === undefined) throw new Error(`${login} could not sign in`)
  const get = async (path: string) => (await fetch(`${base}${path}`, { headers: { cookie } })).text()
  // Every page's sign-out form carries the session's CSRF token.
  const csrf = /name="_csrf" value="([^"]+)"/.exec(await get("/providers"))?.[1] ?? ""
  const post = async (path: string, form: Record<string, string>) => {
    const response = await fetch(`${base}${path}`, {
      method: "POST",
      body: new URLSearchParams({ _csrf: csrf, ...form }),
      redirect: "manual",
      headers: { cookie, origin: new URL(base).origin },
    })
    return { status: response.status, text: await response.text() }
  }
  return { get, post }
}

/** Control characters the protocol refuses: TAB, LF, CR, and C1 (NEL, CSI). */
const CONTROLS = ["\t", "\n", "\r\n", "\u0085", "\u009b"]
/** Text that shows nothing: zero-width and other format characters, with or without spaces. */
const INVISIBLE = [
  "\u200b\u200b\u200b\u200b\u200b\u200b",
  "\u200c\u200d \u2060\ufeff\u200b",
  "\u3164\u3164\u3164\u3164\u3164",
]

describe("text the console stores", () => {
  let world: World
  let engine: RunningEngine
  let base: string

  beforeAll(async () => {
    world = await World.create({}, "console_text")
    engine = await world.startEngine()
    base = await consoleUrl(engine)
    await Promise.all([createOperator(world, "olga", "operator"), createOperator(world, "ada", "admin")])
  }, 60_000)
  afterAll(async () => {
    await world?.dispose()
  })

  const auditRows = async () => (await world.db.selectFrom("audit_log").selectAll().execute()).length

  it("refuses a reason with a TAB, a line break or a C1 control, or only invisible characters, and writes nothing", async () => {
    const mobile = world.channel("mobile")
    const subscription = await createScheduled(mobile, "client-t", {}, "contract-t")
    const id = subscription.subscriptionId
    const olga = await signedIn(base, "olga")
    const before = await auditRows()
    for (const control of CONTROLS) {
      const refused = await olga.post(`/subscriptions/${id}/pause`, {
        reason: `client called${control}ticket SR-1`,
        requestId: crypto.randomUUID(),
      })
      expect([JSON.stringify(control), refused.status]).toEqual([JSON.stringify(control), 422])
      expect(refused.text).toContain("the field &#34;reason&#34; has a control character")
      expect(refused.text).toContain("Nothing was changed")
    }
    for (const invisible of INVISIBLE) {
      const refused = await olga.post(`/subscriptions/${id}/pause`, {
        reason: invisible,
        requestId: crypto.randomUUID(),
      })
      expect([JSON.stringify(invisible), refused.status]).toEqual([JSON.stringify(invisible), 422])
      expect(refused.text).toContain("a reason of at least 5 characters is required")
    }
    expect((await getSubscription(mobile, "client-t", id)).status).toBe("active")
    expect(await auditRows()).toBe(before)
    const history = await mobile.ok<{ entries: Array<{ outcome?: string }> }>(
      "subscription.history",
      { subscriptionId: id },
      { clientId: "client-t" },
    )
    expect(history.entries.map((entry) => entry.outcome)).toEqual(["created"])

    // A clean reason still goes through, and is what channels read back.
    const done = await olga.post(`/subscriptions/${id}/pause`, {
      reason: "client called, ticket SR-1",
      requestId: crypto.randomUUID(),
    })
    expect(done.status).toBe(303)
    expect((await getSubscription(mobile, "client-t", id)).status).toBe("paused")
  })

  it("refuses an admin's note or a name with control characters, and a name of invisible characters, writing nothing", async () => {
    const ada = await signedIn(base, "ada")
    const before = await auditRows()
    const provider = (displayName: string, reason = "") => ({
      providerId: "isp-text",
      displayName,
      remindAfter: "P30D",
      periodic: "on",
      reason,
    })
    for (const control of CONTROLS) {
      for (const form of [provider(`Home${control}internet`), provider("Home internet", `CR-1${control}x`)]) {
        const refused = await ada.post("/providers", form)
        expect([JSON.stringify(form), refused.status]).toEqual([JSON.stringify(form), 422])
        expect(refused.text).toContain("has a control character")
      }
      const note = await ada.post("/settings/retries", {
        retrySchedule: "PT1H,PT6H",
        reason: `CR-2${control}`,
      })
      expect(note.status).toBe(422)
    }
    for (const invisible of INVISIBLE) {
      const refusedProvider = await ada.post("/providers", provider(invisible))
      expect([JSON.stringify(invisible), refusedProvider.status]).toEqual([JSON.stringify(invisible), 422])
      expect(refusedProvider.text).toContain("the display name is required")
      const refusedChannel = await ada.post("/channels", {
        channelId: "kiosk",
        displayName: invisible,
        operations: "subscription.*",
      })
      expect([JSON.stringify(invisible), refusedChannel.status]).toEqual([JSON.stringify(invisible), 422])
      expect(refusedChannel.text).toContain("the name is required")
    }
    expect(await world.db.selectFrom("providers").selectAll().execute()).toEqual([])
    expect((await sql<{ id: string }>`SELECT id FROM channels`.execute(world.db)).rows).toEqual([])
    expect(await world.db.selectFrom("engine_settings").selectAll().execute()).toEqual([])
    expect(await auditRows()).toBe(before)
  })

  it("counts a template name of zero-width characters as blank in the protocol", async () => {
    const mobile = world.channel("mobile")
    for (const name of INVISIBLE) {
      const reply = await mobile.request(
        "template.create",
        { name, providerId: "isp-1", account: "contract-z", source: "card-tok-1" },
        { clientId: "client-z" },
      )
      expect([JSON.stringify(name), reply.status]).toEqual([JSON.stringify(name), "error"])
      expect(reply.status === "error" ? reply.error.code : undefined).toBe("VALIDATION_FAILED")
      expect(reply.status === "error" ? reply.error.details : []).toEqual([
        { path: "body.name", message: "must not be empty" },
      ])
    }
    expect(
      await world.db.selectFrom("templates").selectAll().where("client_id", "=", "client-z").execute(),
    ).toEqual([])
  })
})
