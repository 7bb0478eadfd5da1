/**
 * The console's page shell and small HTML helpers. Pages are rendered on the
 * server with hono's `html` template, which escapes every interpolated value;
 * `raw` is used only for markup this module builds itself.
 */
import { html, raw } from "hono/html"
import type { HtmlEscapedString } from "hono/utils/html"
import type { Role, Session } from "../store/OperatorStore.ts"

export type Markup = HtmlEscapedString | Promise<HtmlEscapedString>

/** Where the console lives on the engine's HTTP server. */
export const BASE = "/console"

const STYLE = `
:root { --ink:#1d2733; --muted:#5b6b7c; --line:#d9e0e7; --bg:#f5f7fa; --accent:#0b5cad; --ok:#1f7a3f;
  --warn:#a35f00; --bad:#b3261e; --card:#fff; font-family: system-ui, -apple-system, "Segoe UI", sans-serif; }
* { box-sizing: border-box; }
body { margin:0; color:var(--ink); background:var(--bg); font-size:14px; line-height:1.45; }
header { display:flex; align-items:center; gap:20px; padding:10px 24px; background:#14324f; color:#fff; }
header .brand { font-weight:600; font-size:15px; white-space:nowrap; }
header nav { display:flex; gap:4px; flex-wrap:wrap; flex:1; }
header nav a { color:#dbe7f3; text-decoration:none; padding:6px 10px; border-radius:4px; }
header nav a.current, header nav a:hover { background:#24507a; color:#fff; }
header .who { display:flex; align-items:center; gap:10px; white-space:nowrap; color:#dbe7f3; }
header .who button { background:transparent; color:#fff; border:1px solid #5d7fa3; }
main { max-width:1180px; margin:0 auto; padding:20px 24px 48px; }
h1 { font-size:22px; margin:4px 0 16px; } h2 { font-size:16px; margin:24px 0 8px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:6px; padding:16px; margin-bottom:16px; }
table { width:100%; border-collapse:collapse; background:var(--card); }
th, td { text-align:left; padding:7px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
th { font-weight:600; color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.03em; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
code, pre, .mono { font-family: ui-monospace, "SF Mono", Menlo, Consolas, monospace; font-size:12.5px; }
pre { white-space:pre-wrap; word-break:break-all; background:#f0f3f6; padding:8px; border-radius:4px; margin:0; }
a { color:var(--accent); }
form.inline { display:inline; }
label { display:block; font-weight:600; margin:8px 0 4px; }
input[type=text], input[type=password], input[type=search], textarea, select {
  font:inherit; padding:7px 9px; border:1px solid #b8c4d0; border-radius:4px; width:100%; max-width:460px; background:#fff; }
textarea { max-width:none; min-height:120px; }
button, .button { font:inherit; padding:7px 14px; border-radius:4px; border:1px solid var(--accent);
  background:var(--accent); color:#fff; cursor:pointer; text-decoration:none; display:inline-block; }
button.secondary { background:#fff; color:var(--accent); }
button.danger { background:var(--bad); border-color:var(--bad); }
.row { display:flex; gap:16px; flex-wrap:wrap; align-items:flex-end; }
.grid { display:grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap:12px; }
.stat { background:var(--card); border:1px solid var(--line); border-radius:6px; padding:12px 14px; }
.stat .value { font-size:24px; font-weight:600; font-variant-numeric:tabular-nums; }
.stat .label { color:var(--muted); font-size:12px; text-transform:uppercase; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600; background:#e6ebf0; }
.badge.active, .badge.succeeded, .badge.ok { background:#dcf1e3; color:var(--ok); }
.badge.paused, .badge.pending, .badge.unknown, .badge.held { background:#fdf0d9; color:var(--warn); }
.badge.cancelled, .badge.failed, .badge.declined, .badge.locked, .badge.disabled { background:#f9dedc; color:var(--bad); }
.flash { padding:10px 14px; border-radius:4px; margin-bottom:16px; }
.flash.ok { background:#dcf1e3; color:var(--ok); } .flash.error { background:#f9dedc; color:var(--bad); }
.muted { color:var(--muted); } .small { font-size:12px; }
dl.terms { display:grid; grid-template-columns: 180px 1fr; gap:6px 16px; margin:0; }
dl.terms dt { color:var(--muted); } dl.terms dd { margin:0; }
.actions { display:grid; grid-template-columns: repeat(auto-fit, minmax(240px, 1fr)); gap:12px; }
.login { max-width:380px; margin:80px auto; }
svg text { font-family: inherit; font-size:11px; fill: var(--muted); }
`

const NAV: ReadonlyArray<{ readonly path: string; readonly label: string; readonly role?: Role }> = [
  { path: "/today", label: "Today" },
  { path: "/clients", label: "Clients" },
  { path: "/providers", label: "Providers" },
  { path: "/channels", label: "Channels" },
  { path: "/settings", label: "Limits & retries" },
  { path: "/dead-letters", label: "Dead letters" },
  { path: "/operators", label: "Operators", role: "admin" },
  { path: "/audit", label: "Audit", role: "admin" },
]

/** Whether `role` includes what `needed` may do. */
export const roleAtLeast = (role: Role, needed: Role): boolean =>
  ["viewer", "operator", "admin"].indexOf(role) >= ["viewer", "operator", "admin"].indexOf(needed)

/** A message shown at the top of a page after a change, or when one was refused. */
export interface Flash {
  readonly kind: "ok" | "error"
  readonly text: string
}

/** A whole console page for a signed-in operator. */
export const page = (options: {
  readonly title: string
  readonly session: Session
  readonly current: string
  readonly body: Markup
  readonly flash?: Flash | undefined
}): Markup => html`<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>${options.title} · Operation Studio</title>
    <style>
      ${raw(STYLE)}
    </style>
  </head>
  <body>
    <header>
      <span class="brand">Operation Studio</span>
      <nav>
        ${NAV.filter((item) => item.role === undefined || roleAtLeast(options.session.role, item.role)).map(
          (item) =>
            html`<a href="${BASE}${item.path}" class="${options.current === item.path ? "current" : ""}"
              >${item.label}</a
            >`,
        )}
      </nav>
      <span class="who">
        <span data-testid="operator">${options.session.login} (${options.session.role})</span>
        <form class="inline" method="post" action="${BASE}/logout">
          ${csrfField(options.session)}
          <button type="submit">Sign out</button>
        </form>
      </span>
    </header>
    <main>
      ${options.flash === undefined ? "" : html`<div class="flash ${options.flash.kind}" role="status">${options.flash.text}</div>`}
      ${options.body}
    </main>
  </body>
</html>`

/** The sign-in page (no session yet). */
export const loginPage = (options: {
  readonly error?: string
  readonly login?: string
  readonly next: string
}) =>
  html`<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>Sign in · Operation Studio</title>
    <style>
      ${raw(STYLE)}
    </style>
  </head>
  <body>
    <div class="login card">
      <h1>Operation Studio</h1>
      <p class="muted">Recurring Payments engine: sign in with your operator account.</p>
      ${options.error === undefined ? "" : html`<div class="flash error" role="alert">${options.error}</div>`}
      <form method="post" action="${BASE}/login">
        <input type="hidden" name="next" value="${options.next}" />
        <label for="login">Login</label>
        <input id="login" name="login" type="text" autocomplete="username" required value="${options.login ?? ""}" autofocus />
        <label for="password">Password</label>
        <input id="password" name="password" type="password" autocomplete="current-password" required />
        <p><button type="submit">Sign in</button></p>
      </form>
    </div>
  </body>
</html>`

/** The hidden field every form that changes something carries. */
export const csrfField = (session: Session) =>
  html`<input type="hidden" name="_csrf" value="${session.csrfToken}" />`

/** A coloured word for a status. */
export const badge = (text: string, kind: string = text) => html`<span class="badge ${kind}">${text}</span>`

/** A timestamp as `YYYY-MM-DD HH:MM:SS UTC` (operators in several time zones read the same thing). */
export const when = (at: Date | string | number | null | undefined): string => {
  if (at === null || at === undefined) return "—"
  const date = at instanceof Date ? at : new Date(at)
  return Number.isNaN(date.getTime())
    ? String(at)
    : `${date.toISOString().slice(0, 19).replace("T", " ")} UTC`
}

/** JSON for people: indented, keys as they are. */
export const pretty = (value: unknown): string => JSON.stringify(value, null, 2)
