/**
 * Signing in and out, sessions and the guards every console request passes.
 *
 * - Passwords are checked against scrypt hashes. Five wrong passwords in a
 *   row lock the account for 15 minutes, and each source address has a
 *   budget of attempts (on every instance: the counts are in Postgres). Every
 *   refusal gets the same answer in the same time (SignIn.ts).
 * - The session cookie holds a random token (HttpOnly, SameSite=Strict,
 *   Path=/, Secure behind HTTPS); Postgres holds only its SHA-256, so any
 *   instance serves any operator and a leaked table signs nobody in.
 * - Every POST must carry the session's CSRF token and must not come from
 *   another origin (`Origin`, `Sec-Fetch-Site`); the login form, having no
 *   session yet, is held to the origin check.
 */
import { timingSafeEqual } from "node:crypto"
import { getConnInfo } from "@hono/node-server/conninfo"
import type { Context, Hono, MiddlewareHandler } from "hono"
import { bodyLimit } from "hono/body-limit"
import { deleteCookie, getCookie, setCookie } from "hono/cookie"
import type { Kysely } from "kysely"
import { hasControlCharacter } from "../domain/Text.ts"
import {
  closeSession,
  LOCK_MINUTES,
  MAX_FAILED_LOGINS,
  type Role,
  SESSION_HOURS,
  type Session,
  touchSession,
} from "../store/OperatorStore.ts"
import type { Tables } from "../store/Tables.ts"
import { formTextProblem } from "./Forms.ts"
import { BASE, loginPage, roleAtLeast, when } from "./Html.ts"
import { decoyHash } from "./Passwords.ts"
import { attemptSignIn, type SignInPolicy, sourceAddress, trustedProxyList } from "./SignIn.ts"

/** What the console's handlers find on every request. */
export interface ConsoleEnv {
  Variables: { session: Session }
}

export const SESSION_COOKIE = "rp_console_session"

const TOKEN_SHAPE = /^[A-Za-z0-9_-]{43}$/

const sameBytes = (a: string, b: string): boolean => {
  const left = Buffer.from(a)
  const right = Buffer.from(b)
  return left.length === right.length && timingSafeEqual(left, right)
}

const isHttps = (c: Context) =>
  new URL(c.req.url).protocol === "https:" || c.req.header("x-forwarded-proto") === "https"

/**
 * Why a state-changing request looks cross-site, or undefined. Browsers send `Origin` on every POST
 * and `Sec-Fetch-Site` on every request; a request with neither (a script, curl) still needs the
 * session cookie and the CSRF token to change anything.
 */
const crossSiteReason = (c: Context): string | undefined => {
  const site = c.req.header("sec-fetch-site")
  if (site !== undefined && site !== "same-origin" && site !== "none") return `Sec-Fetch-Site is ${site}`
  const origin = c.req.header("origin")
  if (origin === undefined) return undefined
  const host = c.req.header("host")
  const expected = `${isHttps(c) ? "https" : "http"}://${host}`
  return origin === expected ? undefined : `Origin ${origin} is not this console (${expected})`
}

const HOME = `${BASE}/today`
// Resolved against a made-up origin: whatever resolves elsewhere was not a path of this console.
const PLACEHOLDER_ORIGIN = "http://console.invalid"

/**
 * Only paths inside the console are followed after sign-in, so the form cannot redirect elsewhere;
 * anything else (another origin, `..` out of the console, control characters) goes to the home page.
 * The path comes back as the URL parser writes it, percent-encoded, so it is always a valid header.
 */
export const safeNext = (next: unknown): string => {
  if (typeof next !== "string" || next.length > 2_000 || !next.startsWith(`${BASE}/`)) return HOME
  if (hasControlCharacter(next) || next.includes("\\")) return HOME
  let url: URL
  try {
    url = new URL(next, PLACEHOLDER_ORIGIN)
  } catch {
    return HOME
  }
  if (url.origin !== PLACEHOLDER_ORIGIN || !url.pathname.startsWith(`${BASE}/`)) return HOME
  return `${url.pathname}${url.search}`
}

/** The one answer to every refused sign-in: it does not say whether the login exists or is locked. */
export const SIGN_IN_REFUSED =
  `Wrong login or password, or the account is locked (${MAX_FAILED_LOGINS} wrong passwords in a row lock it for ${LOCK_MINUTES} minutes). ` +
  "Try again, wait, or ask an admin to reset your password."

const formText = (value: unknown, max: number): string =>
  typeof value === "string" ? value.slice(0, max) : ""

/** A refusal page: the status says why, nothing was changed. */
export const refusal = (c: Context, status: 400 | 403 | 404 | 409 | 422, message: string) =>
  c.html(
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Refused · Operation Studio</title></head>` +
      `<body style="font-family:system-ui;margin:40px"><h1>Refused</h1><p>${escapeHtml(message)}</p>` +
      `<p>Nothing was changed.</p><p><a href="${BASE}/today">Back to the console</a></p></body></html>`,
    status,
  )

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`)

/** Forms are small; the largest is an edited dead letter (at most 1 MiB, URL-encoded up to 3 times that). */
const MAX_FORM_BYTES = 4 * 1024 * 1024

/**
 * Pages run no script and load nothing from elsewhere, are never framed and never cached: they show
 * clients' data, and a shared machine's browser history should not keep it.
 */
const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "Content-Security-Policy":
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  "X-Frame-Options": "DENY",
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "same-origin",
  "Cache-Control": "no-store",
}

/** How sign-ins are throttled, and which proxies may name the address they forward for. */
export interface SignInOptions extends SignInPolicy {
  /** Addresses or CIDR ranges whose `X-Forwarded-For` is believed; empty: the connection's peer is the source. */
  readonly trustedProxies: ReadonlyArray<string>
}

/** The connection's peer address; undefined when the request did not come through node's server. */
const peerAddress = (c: Context): string | undefined => {
  try {
    return getConnInfo(c).remote.address
  } catch {
    return undefined
  }
}

/** Adds sign-in and sign-out, and guards every other console route. */
export const registerAuth = (app: Hono<ConsoleEnv>, db: Kysely<Tables>, options: SignInOptions): void => {
  const trusted = trustedProxyList(options.trustedProxies)
  // The decoy hash is made once; made now, the first unknown login does not take twice as long.
  void decoyHash()
  app.use("*", async (c, next) => {
    await next()
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) c.header(name, value)
  })
  app.use(
    "*",
    bodyLimit({
      maxSize: MAX_FORM_BYTES,
      onError: (c) => c.text("The form is too large. Nothing was changed.", 413),
    }),
  )

  app.get("/login", (c) => c.html(loginPage({ next: safeNext(c.req.query("next")) })))

  app.post("/login", async (c) => {
    const crossSite = crossSiteReason(c)
    if (crossSite !== undefined) return refusal(c, 403, `Cross-site sign-in refused: ${crossSite}.`)
    const form = await c.req.parseBody()
    const login = formText(form.login, 64).trim().toLowerCase()
    const password = formText(form.password, 256)
    const next = safeNext(form.next)
    const source = sourceAddress(peerAddress(c), c.req.header("x-forwarded-for"), trusted)
    const outcome = await attemptSignIn(db, options, { login, password, source })
    switch (outcome._tag) {
      case "Throttled": {
        const seconds = Math.max(1, Math.ceil((outcome.until.getTime() - Date.now()) / 1_000))
        c.header("Retry-After", String(seconds))
        return c.html(
          loginPage({
            error: `Too many failed sign-ins from your address: try again after ${when(outcome.until)}.`,
            login,
            next,
          }),
          429,
        )
      }
      case "Refused":
        return c.html(loginPage({ error: SIGN_IN_REFUSED, login, next }), 401)
      case "SignedIn":
        setCookie(c, SESSION_COOKIE, outcome.session.token, {
          httpOnly: true,
          sameSite: "Strict",
          path: "/",
          secure: isHttps(c),
          maxAge: SESSION_HOURS * 3_600,
        })
        return c.redirect(next, 303)
    }
  })

  // Every route below needs a live session; every POST also the CSRF token and a same-origin request.
  app.use("*", async (c, next) => {
    const token = getCookie(c, SESSION_COOKIE)
    const session = token !== undefined && TOKEN_SHAPE.test(token) ? await touchSession(db, token) : undefined
    if (session === undefined) {
      if (c.req.method !== "GET")
        return c.text("Your session has ended: sign in again. Nothing was changed.", 401)
      const wanted = new URL(c.req.url)
      return c.redirect(`${BASE}/login?next=${encodeURIComponent(wanted.pathname + wanted.search)}`, 303)
    }
    if (c.req.method === "POST") {
      const crossSite = crossSiteReason(c)
      if (crossSite !== undefined) return refusal(c, 403, `Cross-site request refused: ${crossSite}.`)
      const form = await c.req.parseBody()
      const sent = typeof form._csrf === "string" ? form._csrf : ""
      if (sent === "" || !sameBytes(sent, session.csrfToken)) {
        return refusal(
          c,
          403,
          "The form's security token is missing or wrong (reload the page and try again).",
        )
      }
      // Text is stored by the protocol's rules, whichever page takes it: refused, never cleaned up.
      const textProblem = formTextProblem(form)
      if (textProblem !== undefined) return refusal(c, 422, `Not done: ${textProblem}.`)
    }
    c.set("session", session)
    await next()
  })

  app.post("/logout", async (c) => {
    await closeSession(db, c.get("session").tokenHash)
    deleteCookie(c, SESSION_COOKIE, { path: "/" })
    return c.redirect(`${BASE}/login`, 303)
  })
}

/** Refuses the request unless the operator's role includes `needed`. */
export const requireRole =
  (needed: Role): MiddlewareHandler<ConsoleEnv> =>
  async (c, next) => {
    const { role } = c.get("session")
    if (!roleAtLeast(role, needed)) {
      return refusal(c, 403, `This needs the ${needed} role; you are signed in as ${role}.`)
    }
    await next()
  }
