/**
 * For admins: the audit log — every change made in the console (and by `npm run operators`), newest
 * first — and the operator accounts (managed with `npm run operators`).
 */
import type { Hono } from "hono"
import { html } from "hono/html"
import { listOperators, readAudit } from "../store/OperatorStore.ts"
import { type ConsoleEnv, requireRole } from "./Auth.ts"
import type { ConsoleServices } from "./ConsoleServices.ts"
import { BASE, badge, page, pretty, when } from "./Html.ts"

const PAGE_SIZE = 100

export const registerAuditPage = (app: Hono<ConsoleEnv>, services: ConsoleServices): void => {
  app.get("/audit", requireRole("admin"), async (c) => {
    const session = c.get("session")
    const operator = (c.req.query("operator") ?? "").trim().slice(0, 64)
    const action = (c.req.query("action") ?? "").trim().slice(0, 64)
    const clientId = (c.req.query("clientId") ?? "").trim().slice(0, 200)
    const before = Number(c.req.query("before"))
    const rows = await readAudit(services.db, {
      operator,
      action,
      clientId,
      beforeId: Number.isSafeInteger(before) && before > 0 ? before : undefined,
      limit: PAGE_SIZE,
    })
    const filter = new URLSearchParams({ operator, action, clientId })
    const body = html`
      <h1>Audit log</h1>
      <form class="card row" method="get" action="${BASE}/audit">
        <div><label for="operator">Operator</label><input id="operator" name="operator" type="text" value="${operator}" /></div>
        <div><label for="action">Action starts with</label><input id="action" name="action" type="text" value="${action}" placeholder="subscription." /></div>
        <div><label for="clientId">Client id</label><input id="clientId" name="clientId" type="text" value="${clientId}" /></div>
        <button type="submit">Filter</button>
      </form>
      <table data-testid="audit">
        <thead><tr><th>When (wall clock)</th><th>Who</th><th>What</th><th>Target</th><th>Client</th><th>Why</th><th>Details</th></tr></thead>
        <tbody>
          ${rows.map(
            (row) => html`<tr>
              <td>${when(row.at)}</td>
              <td>${row.operator}</td>
              <td><code>${row.action}</code></td>
              <td class="mono">${row.target}</td>
              <td>${row.clientId ?? ""}</td>
              <td>${row.reason ?? ""}</td>
              <td>${Object.keys(row.details).length === 0 ? "" : html`<details><summary>details</summary><pre>${pretty(row.details)}</pre></details>`}</td>
            </tr>`,
          )}
        </tbody>
      </table>
      ${rows.length === 0 ? html`<p class="muted">No audited change${operator || action || clientId ? " matches" : " yet"}.</p>` : ""}
      ${rows.length === PAGE_SIZE ? html`<p><a href="${BASE}/audit?${filter.toString()}&before=${rows[rows.length - 1]?.id ?? 0}">Older</a></p>` : ""}`
    return c.html(page({ title: "Audit", session, current: "/audit", body }))
  })

  app.get("/operators", requireRole("admin"), async (c) => {
    const session = c.get("session")
    const operators = await listOperators(services.db)
    const now = new Date()
    const body = html`
      <h1>Operators</h1>
      <p class="muted">
        Accounts are managed on the command line: <code>npm run operators -- add | set-role | disable | enable |
        reset-password</code> (see the operator guide). Every change there is audited as <code>cli:&lt;user&gt;</code>.
      </p>
      <table data-testid="operators">
        <thead><tr><th>Login</th><th>Role</th><th>State</th><th>Failed sign-ins in a row</th><th>Last sign-in</th><th>Since</th></tr></thead>
        <tbody>
          ${operators.map(
            (operator) => html`<tr>
              <td>${operator.login}</td>
              <td>${operator.role}</td>
              <td>${
                operator.disabledAt !== null
                  ? badge("disabled")
                  : operator.lockedUntil !== null && operator.lockedUntil > now
                    ? html`${badge("locked", "locked")} <span class="small muted">until ${when(operator.lockedUntil)}</span>`
                    : badge("active")
              }</td>
              <td>${operator.failedAttempts}</td>
              <td>${when(operator.lastLoginAt)}</td>
              <td>${when(operator.createdAt)}</td>
            </tr>`,
          )}
        </tbody>
      </table>`
    return c.html(page({ title: "Operators", session, current: "/operators", body }))
  })
}
