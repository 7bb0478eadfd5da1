/**
 * Signing in under attack, over real HTTP against real engines and Postgres:
 * guesses sent in parallel cannot outrun the lock-out, every refusal looks
 * the same and costs the same scrypt check, one address cannot keep trying
 * (on any instance), and the `next` field only ever leads into the console.
 */
import type { AddressInfo } from "node:net"
import { type ServerType, serve } from "@hono/node-server"
import { Hono } from "hono"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { RunningEngine } from "../../harness/World.ts"
import { World } from "../../harness/World.ts"
import { type ConsoleEnv, registerAuth } from "../../src/console/Auth.ts"
import { BASE } from "../../src/console/Html.ts"
import { verifyPassword } from "../../src/console/Passwords.ts"
import { consoleUrl, createOperator, PASSWORD } from "./browser.ts"

interface Answer {
  readonly status: number
  readonly body: string
  readonly alert: string | undefined
  readonly cookie: string | null
  readonly location: string | null
}

/** Posts the sign-in form as a browser on this origin would, from `forwardedFor` when given. */
const postSignIn = async (
  base: string,
  form: Record<string, string>,
  forwardedFor?: string,
): Promise<Answer> => {
  const response = await fetch(`${base}/login`, {
    method: "POST",
    body: new URLSearchParams(form),
    redirect: "manual",
    headers: {
      origin: new URL(base).origin,
      ...(forwardedFor === undefined ? {} : { "x-forwarded-for": forwardedFor }),
    },
  })
  const body = await response.text()
  return {
    status: response.status,
    body,
    alert: /role="alert">([^<]*)</.exec(body)?.[1],
    cookie: response.headers.get("set-cookie"),
    location: response.headers.get("location"),
  }
}

/** The page without the login it echoes back in the form. */
const withoutLogin = (answer: Answer, login: string) => answer.body.replaceAll(`value="${login}"`, 'value=""')

const LOOPBACK = ["127.0.0.1", "::1"]

describe("signing in under attack", () => {
  let world: World
  let engine: RunningEngine
  let other: RunningEngine
  let base: string
  let otherBase: string

  beforeAll(async () => {
    world = await World.create({}, "console_sign_in")
    // Two instances behind a proxy on the loopback, as a bank would run them.
    const behindProxy = { consoleTrustedProxies: LOOPBACK, consoleAddressAttempts: 5 }
    ;[engine, other] = await Promise.all([world.startEngine(behindProxy), world.startEngine(behindProxy)])
    ;[base, otherBase] = await Promise.all([consoleUrl(engine), consoleUrl(other)])
    await Promise.all(
      ["pia", "quinn", "rosa", "tess", "uma"].map((login) => createOperator(world, login, "operator")),
    )
  }, 60_000)
  afterAll(async () => {
    await world?.dispose()
  })

  const sessions = async (login: string) =>
    (await world.db.selectFrom("operator_sessions").selectAll().where("login", "=", login).execute()).length
  const lockedUntil = async (login: string) =>
    (
      await world.db
        .selectFrom("operators")
        .select("locked_until")
        .where("login", "=", login)
        .executeTakeFirstOrThrow()
    ).locked_until

  it("gives no session to the right password sent after 29 parallel wrong ones, and the lock holds", async () => {
    // Each guess from its own address, so only the account's lock-out stands in the way.
    const answers = await Promise.all(
      Array.from({ length: 30 }, (_, index) =>
        postSignIn(
          base,
          { login: "pia", password: index === 29 ? PASSWORD : `wrong guess ${index}` },
          `10.1.0.${index + 1}`,
        ),
      ),
    )
    expect(answers.map((answer) => answer.status)).toEqual(Array(30).fill(401))
    expect(answers.filter((answer) => answer.cookie !== null)).toEqual([])
    expect(await sessions("pia")).toBe(0)
    expect((await lockedUntil("pia"))?.getTime()).toBeGreaterThan(Date.now() + 14 * 60_000)
    // Still locked: the right password on its own is refused too, on either instance.
    for (const url of [base, otherBase]) {
      const again = await postSignIn(url, { login: "pia", password: PASSWORD }, "10.1.1.1")
      expect([again.status, again.cookie]).toEqual([401, null])
    }
    expect(await sessions("pia")).toBe(0)
    const audit = await world.db
      .selectFrom("audit_log")
      .select("target")
      .where("action", "=", "session.locked_out")
      .execute()
    expect(audit).toEqual([{ target: "pia" }])
  }, 180_000)

  it("answers an unknown login, a wrong password, a locked account and a disabled one alike", async () => {
    await world.db
      .updateTable("operators")
      .set({ locked_until: new Date(Date.now() + 600_000) })
      .where("login", "=", "quinn")
      .execute()
    await world.db
      .updateTable("operators")
      .set({ disabled_at: new Date() })
      .where("login", "=", "uma")
      .execute()
    const tries = {
      unknown: await postSignIn(base, { login: "nobody", password: PASSWORD }, "10.2.0.1"),
      wrong: await postSignIn(base, { login: "rosa", password: "not the password" }, "10.2.0.2"),
      lockedRight: await postSignIn(base, { login: "quinn", password: PASSWORD }, "10.2.0.3"),
      lockedWrong: await postSignIn(base, { login: "quinn", password: "not the password" }, "10.2.0.4"),
      disabled: await postSignIn(base, { login: "uma", password: PASSWORD }, "10.2.0.5"),
    }
    const logins = {
      unknown: "nobody",
      wrong: "rosa",
      lockedRight: "quinn",
      lockedWrong: "quinn",
      disabled: "uma",
    }
    const seen = Object.entries(tries).map(([name, answer]) => ({
      status: answer.status,
      cookie: answer.cookie,
      body: withoutLogin(answer, logins[name as keyof typeof logins]),
    }))
    for (const answer of seen) expect(answer).toEqual(seen[0])
    expect(tries.unknown.status).toBe(401)
    expect(tries.unknown.alert).toContain("Wrong login or password")
    expect(await sessions("quinn")).toBe(0)
    // The right password while locked neither signs in nor resets the count or the lock.
    expect((await lockedUntil("quinn"))?.getTime()).toBeGreaterThan(Date.now())
  })

  it("throttles an address after its attempts on any instance, and only that address", async () => {
    const attacker = "203.0.113.7"
    for (let attempt = 1; attempt <= 5; attempt++) {
      const url = attempt % 2 === 0 ? otherBase : base
      expect((await postSignIn(url, { login: `ghost-${attempt}`, password: "guess" }, attacker)).status).toBe(
        401,
      )
    }
    // The budget is spent on both instances: even the right password of a real operator is not checked.
    for (const url of [base, otherBase]) {
      const throttled = await postSignIn(url, { login: "tess", password: PASSWORD }, attacker)
      expect([throttled.status, throttled.cookie]).toEqual([429, null])
      expect(throttled.alert).toContain("Too many failed sign-ins from your address")
    }
    expect(await sessions("tess")).toBe(0)
    // A proxy's hop further left is the client's own claim and changes nothing.
    const spoofed = await postSignIn(base, { login: "tess", password: PASSWORD }, `198.51.100.1, ${attacker}`)
    expect(spoofed.status).toBe(429)
    // The operator herself, from her own address, is not locked out by it.
    const own = await postSignIn(base, { login: "tess", password: PASSWORD }, "192.0.2.44")
    expect([own.status, own.location]).toEqual([303, `${BASE}/today`])
    expect(await sessions("tess")).toBe(1)
  })

  it("follows `next` only into the console: a CR LF in it gives the home page and a working session, no 500", async () => {
    const cases: Array<[string, string]> = [
      ["/console/today\r\nSet-Cookie: planted=1", `${BASE}/today`],
      ["/console/clients\r\n\r\n<h1>hi</h1>", `${BASE}/today`],
      ["https://evil.example/console/", `${BASE}/today`],
      ["//evil.example/console/", `${BASE}/today`],
      ["/console/../evil", `${BASE}/today`],
      ["/console/\\evil.example", `${BASE}/today`],
      ["/consolation", `${BASE}/today`],
      ["/console/clients?clientId=client-1", `${BASE}/clients?clientId=client-1`],
    ]
    for (const [index, [next, expected]] of cases.entries()) {
      const answer = await postSignIn(
        base,
        { login: "rosa", password: PASSWORD, next },
        `10.3.0.${index + 1}`,
      )
      expect([next, answer.status, answer.location]).toEqual([next, 303, expected])
      const cookie = answer.cookie?.split(";")[0] ?? ""
      expect(cookie).toMatch(/^rp_console_session=/)
      const home = await fetch(`${base}/today`, { headers: { cookie }, redirect: "manual" })
      expect([next, home.status]).toEqual([next, 200])
    }
    // The sign-in page never puts such a `next` into its form either.
    const page = await fetch(`${base}/login?next=${encodeURIComponent("/console/x\r\ny")}`)
    expect(await page.text()).toContain(`name="next" value="${BASE}/today"`)
  })

  describe("in front of the password check", () => {
    let server: ServerType
    let direct: string
    let checks = 0

    beforeAll(async () => {
      // The console's sign-in alone, on its own server, with the password check counted. No proxy is trusted.
      const studio = new Hono<ConsoleEnv>()
      registerAuth(studio, world.db, {
        trustedProxies: [],
        addressAttempts: 12,
        addressWindowMs: 15 * 60_000,
        verifyPassword: async (password, stored) => {
          checks++
          return verifyPassword(password, stored)
        },
      })
      studio.get("/today", (c) => c.text("home"))
      const app = new Hono().route(BASE, studio)
      server = await new Promise<ServerType>((resolve) => {
        const started = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(started))
      })
      direct = `http://127.0.0.1:${(server.address() as AddressInfo).port}${BASE}`
    })
    afterAll(async () => {
      await new Promise((resolve) => server?.close(resolve))
    })

    it("costs every refusal exactly one scrypt check, locked and unknown logins included", async () => {
      const cost = async (login: string, password: string) => {
        const before = checks
        const answer = await postSignIn(direct, { login, password })
        return { login, status: answer.status, checks: checks - before }
      }
      expect([
        await cost("nobody", PASSWORD),
        await cost("rosa", "not the password"),
        await cost("quinn", PASSWORD),
        await cost("pia", "still not it"),
        await cost("uma", PASSWORD),
        await cost("Not A Login\u0000", PASSWORD),
      ]).toEqual([
        { login: "nobody", status: 401, checks: 1 },
        { login: "rosa", status: 401, checks: 1 },
        { login: "quinn", status: 401, checks: 1 },
        { login: "pia", status: 401, checks: 1 },
        { login: "uma", status: 401, checks: 1 },
        { login: "Not A Login\u0000", status: 401, checks: 1 },
      ])
    })

    it("counts an untrusted peer under its own address, whatever X-Forwarded-For it sends", async () => {
      // Six attempts above, six more here with a new forwarded address each: the budget of 12 is spent.
      for (let attempt = 1; attempt <= 6; attempt++)
        expect(
          (await postSignIn(direct, { login: "nobody", password: "x" }, `10.9.0.${attempt}`)).status,
        ).toBe(401)
      const before = checks
      const throttled = await postSignIn(direct, { login: "rosa", password: PASSWORD }, "10.9.1.1")
      expect([throttled.status, throttled.cookie, checks - before]).toEqual([429, null, 0])
    })
  })
})
