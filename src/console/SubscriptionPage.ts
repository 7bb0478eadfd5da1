/**
 * One subscription: its terms and state, the next occurrences as the engine
 * will compute them, and its decision history with each decision's rule and
 * inputs ("why was this paid, or not"). Operators and admins can pause,
 * resume, cancel or skip the next occurrence on the client's behalf, with a
 * reason; the change goes through the protocol's operation and the
 * subscription's actor (see ClientOperations.ts) and is audited.
 */
import type { Context, Hono } from "hono"
import { html } from "hono/html"
import { isUuid, newId } from "../domain/Ids.ts"
import { format as formatMoney, type Money } from "../domain/Money.ts"
import type { SubscriptionView } from "../domain/SubscriptionView.ts"
import { isBlank, textProblem } from "../domain/Text.ts"
import type { HistoryEntry, HistoryPage } from "../store/HistoryStore.ts"
import { writeAudit } from "../store/OperatorStore.ts"
import { type ConsoleEnv, refusal, requireRole } from "./Auth.ts"
import type { OnBehalf } from "./ClientOperations.ts"
import { summary } from "./Clients.ts"
import type { ConsoleServices } from "./ConsoleServices.ts"
import { duplicatesSection, readDuplicateFlags, resolveDuplicate } from "./DuplicatePayments.ts"
import { BASE, badge, csrfField, type Flash, page, pretty, roleAtLeast, when } from "./Html.ts"

/** The changes an operator can make for a client, by the path segment of their form. */
const ACTIONS = {
  pause: { operation: "subscription.pause", label: "Pause", done: "paused" },
  resume: { operation: "subscription.resume", label: "Resume", done: "resumed" },
  cancel: { operation: "subscription.cancel", label: "Cancel for good", done: "cancelled" },
  "skip-next": {
    operation: "subscription.skipNext",
    label: "Skip the next payment",
    done: "set to skip its next occurrence",
  },
  // Per held payment: the client approves, on the phone or at the branch, a payment a limit held back.
  confirm: {
    operation: "payment.confirm",
    label: "Release this payment",
    done: "given the client's approval: the held payment is sent",
  },
} as const
type ActionName = keyof typeof ACTIONS
const isAction = (text: string): text is ActionName => Object.hasOwn(ACTIONS, text)

/** The `done` word of a duplicate marked reversed (not an operation of the protocol). */
const DUPLICATE_RESOLVED = "duplicate-resolved"

const REASON_MIN = 5
const REASON_MAX = 500

/** Why a reason cannot be recorded, or undefined: the protocol's text rules, and long enough to say something. */
export const checkReason = (reason: string): string | undefined => {
  if (isBlank(reason) || reason.length < REASON_MIN)
    return `a reason of at least ${REASON_MIN} characters is required (what the client asked, a ticket number)`
  const problem = textProblem(reason, REASON_MAX)
  return problem === undefined ? undefined : `the reason ${problem}`
}

const money = (value: Money | undefined | null) =>
  value === undefined || value === null ? "—" : formatMoney(value)

/** Whose decision a history line is. */
const byText = (entry: HistoryEntry): string => {
  if (entry.type === "payment") return "engine"
  if (entry.by === null) return "engine"
  if (entry.by.operator !== undefined)
    return `console: ${entry.by.operator.login} — “${entry.by.operator.reason}”`
  return entry.by.terminal === null ? entry.by.channel : `${entry.by.channel} / ${entry.by.terminal}`
}

const historyRow = (entry: HistoryEntry) =>
  entry.type === "payment"
    ? html`<tr>
        <td>${when(entry.at)}</td>
        <td>payment #${entry.attempt} ${badge(entry.status)}</td>
        <td class="mono">${entry.occurrence}</td>
        <td class="num">${money(entry.amount)}</td>
        <td>${entry.reason ?? entry.outcome ?? ""}${entry.hubReference === null ? "" : html`<div class="small muted">hub ref ${entry.hubReference}</div>`}</td>
        <td><details><summary>rule and inputs</summary><pre>${pretty(entry.why)}</pre></details></td>
        <td>${byText(entry)}</td>
      </tr>`
    : html`<tr>
        <td>${when(entry.at)}</td>
        <td>${badge(entry.outcome, entry.outcome === "held" ? "held" : "")}</td>
        <td class="mono">${entry.occurrence ?? ""}</td>
        <td></td>
        <td>${entry.reason ?? ""}</td>
        <td>${
          entry.details !== null && typeof entry.details === "object" && Object.keys(entry.details).length > 0
            ? html`<details><summary>rule and inputs</summary><pre>${pretty(entry.details)}</pre></details>`
            : ""
        }</td>
        <td>${byText(entry)}</td>
      </tr>`

const termsOf = (view: SubscriptionView) => html`<dl class="terms">
  <dt>Client</dt><dd><a href="${BASE}/clients?clientId=${encodeURIComponent(view.clientId)}&hidden=1">${view.clientId}</a></dd>
  <dt>Kind</dt><dd>${view.kind}${view.hidden ? " (hidden reminder)" : ""}</dd>
  <dt>Status</dt><dd data-testid="status">${badge(view.status)}${view.statusReason === null ? "" : html` <span class="muted">${view.statusReason}</span>`}</dd>
  <dt>Version</dt><dd>${view.version}</dd>
  <dt>Payee</dt><dd>${view.payee.providerId} · account <span class="mono">${view.payee.account}</span> · from <span class="mono">${view.payee.source}</span></dd>
  <dt>Terms</dt><dd>${summary(view)}</dd>
  ${view.schedule === undefined ? "" : html`<dt>Schedule</dt><dd><code>${JSON.stringify(view.schedule)}</code></dd>`}
  ${view.nextOccurrence === undefined || view.nextOccurrence === null ? "" : html`<dt>Next occurrence</dt><dd>${view.nextOccurrence.date} (due ${when(view.nextOccurrence.dueAt)})</dd>`}
  ${view.skippedOccurrences.length === 0 ? "" : html`<dt>To be skipped</dt><dd>${view.skippedOccurrences.join(", ")}</dd>`}
  <dt>Payments made</dt><dd>${view.paymentsMade}${view.failedInARow > 0 ? html` · <b>${view.failedInARow} failed in a row</b>` : ""}</dd>
  ${view.heldPayments.length === 0 ? "" : html`<dt>Held by a limit</dt><dd>${view.heldPayments.map((held) => html`<div>${held.occurrence}: ${money(held.amount)} (${held.reason}, since ${when(held.heldAt)})</div>`)}</dd>`}
  <dt>Created</dt><dd>${when(view.createdAt)} by ${view.createdBy.channel}${view.createdBy.terminal === null ? "" : ` / ${view.createdBy.terminal}`}</dd>
</dl>`

/** The actions that make sense in the subscription's state. */
const possibleActions = (view: SubscriptionView): ReadonlyArray<ActionName> => {
  if (view.kind === "reminder") return []
  switch (view.status) {
    case "active":
      return view.kind === "scheduled" ? ["pause", "skip-next", "cancel"] : ["pause", "cancel"]
    case "paused":
      return ["resume", "cancel"]
    default:
      return []
  }
}

const reasonInput = (id: string) =>
  html`<label for="${id}">Reason (recorded in the history and the audit log)</label>
    <input type="text" id="${id}" name="reason" required minlength="${REASON_MIN}" maxlength="${REASON_MAX}" placeholder="client called, ticket #..." />`

/** One form per payment a limit holds: the operator releases it once the client approves. */
const releaseForms = (view: SubscriptionView, session: Parameters<typeof csrfField>[0]) =>
  view.status === "cancelled" || view.heldPayments.length === 0
    ? ""
    : html`<h2>Held payments waiting for the client</h2>
        <div class="actions">
          ${view.heldPayments.map(
            (
              held,
            ) => html`<form class="card" method="post" action="${BASE}/subscriptions/${view.subscriptionId}/confirm" data-action="confirm" data-payment="${held.paymentId}">
              ${csrfField(session)}
              <input type="hidden" name="requestId" value="${newId()}" />
              <input type="hidden" name="paymentId" value="${held.paymentId}" />
              <p><b>${money(held.amount)}</b> for ${held.occurrence}, held: ${held.reason} (since ${when(held.heldAt)})</p>
              ${reasonInput(`reason-confirm-${held.paymentId}`)}
              <p><button type="submit">${ACTIONS.confirm.label}</button></p>
            </form>`,
          )}
        </div>`

const actionForms = (view: SubscriptionView, session: Parameters<typeof csrfField>[0]) => {
  const actions = possibleActions(view)
  if (actions.length === 0)
    return html`<p class="muted">No change is possible in this state.</p>${releaseForms(view, session)}`
  return html`${releaseForms(view, session)}<div class="actions">
    ${actions.map(
      (
        name,
      ) => html`<form class="card" method="post" action="${BASE}/subscriptions/${view.subscriptionId}/${name}" data-action="${name}">
        ${csrfField(session)}
        <input type="hidden" name="requestId" value="${newId()}" />
        ${reasonInput(`reason-${name}`)}
        <p><button type="submit" class="${name === "cancel" ? "danger" : ""}">${ACTIONS[name].label}</button></p>
      </form>`,
    )}
  </div>`
}

export const registerSubscriptionPage = (app: Hono<ConsoleEnv>, services: ConsoleServices): void => {
  /** The client a subscription belongs to, or undefined when there is no such subscription. */
  const ownerOf = async (id: string): Promise<string | undefined> => {
    if (!isUuid(id)) return undefined
    const row = await services.db
      .selectFrom("subscriptions")
      .select("client_id")
      .where("id", "=", id)
      .executeTakeFirst()
    return row?.client_id
  }

  const show = async (
    c: Context<ConsoleEnv>,
    id: string,
    flash?: Flash,
    status: 200 | 400 | 409 | 422 = 200,
  ) => {
    const session = c.get("session")
    const clientId = await ownerOf(id)
    if (clientId === undefined) return refusal(c, 404, `There is no subscription ${id}.`)
    const who: OnBehalf = { login: session.login, clientId, requestId: "console-read", reason: "" }
    const read = (operation: string, body: unknown) =>
      services.run(services.runOperation(operation, body, who))
    const [got, preview, history, duplicates] = await Promise.all([
      read("subscription.get", { subscriptionId: id }),
      read("subscription.preview", { subscriptionId: id, count: 5 }),
      read("subscription.history", {
        subscriptionId: id,
        limit: 50,
        ...(c.req.query("cursor") ? { cursor: c.req.query("cursor") } : {}),
      }),
      readDuplicateFlags(services.db, { subscriptionId: id }),
    ])
    if (got._tag !== "Ok") return refusal(c, 404, `There is no subscription ${id}.`)
    const view = (got.result as { subscription: SubscriptionView }).subscription
    const occurrences =
      preview._tag === "Ok"
        ? (preview.result as {
            occurrences: Array<{
              date: string
              dueAt: string
              amount: Money
              willPay: boolean
              reason?: string | null
            }>
            note?: string
          })
        : { occurrences: [] }
    const page_ = history._tag === "Ok" ? (history.result as HistoryPage) : { entries: [], nextCursor: null }
    const body = html`
      <h1>Subscription <span class="mono">${view.subscriptionId}</span></h1>
      <div class="card">${termsOf(view)}</div>
      ${duplicatesSection(view.subscriptionId, duplicates, session, roleAtLeast(session.role, "operator"))}
      <h2>Next occurrences</h2>
      ${
        occurrences.occurrences.length === 0
          ? html`<p class="card muted">${"note" in occurrences && occurrences.note ? occurrences.note : "No occurrence ahead."}</p>`
          : html`<table data-testid="preview"><thead><tr><th>Date</th><th>Due</th><th class="num">Amount</th><th>Will pay</th></tr></thead><tbody>
              ${occurrences.occurrences.map(
                (o) =>
                  html`<tr><td>${o.date}</td><td>${when(o.dueAt)}</td><td class="num">${money(o.amount)}</td><td>${o.willPay ? "yes" : html`no <span class="muted">(${o.reason ?? ""})</span>`}</td></tr>`,
              )}
            </tbody></table>`
      }
      ${
        roleAtLeast(session.role, "operator")
          ? html`<h2>Act on the client's behalf</h2>${actionForms(view, session)}`
          : html`<p class="muted">Your role (viewer) can look but not change subscriptions.</p>`
      }
      <h2>History: why it was paid, or not</h2>
      ${
        page_.entries.length === 0
          ? html`<p class="card muted">Nothing recorded yet.</p>`
          : html`<table data-testid="history"><thead><tr><th>When (engine time)</th><th>What</th><th>Occurrence</th><th class="num">Amount</th><th>Reason</th><th>Rule and inputs</th><th>By</th></tr></thead>
            <tbody>${page_.entries.map(historyRow)}</tbody></table>
            ${page_.nextCursor === null ? "" : html`<p><a href="${BASE}/subscriptions/${view.subscriptionId}?cursor=${encodeURIComponent(page_.nextCursor)}">Older entries</a></p>`}`
      }`
    return c.html(
      page({
        title: `Subscription ${view.subscriptionId.slice(0, 8)}`,
        session,
        current: "/clients",
        body,
        flash,
      }),
      status,
    )
  }

  app.get("/subscriptions/:id", (c) => {
    // Only a known action's own words are shown: the page never echoes text from its address.
    const done = c.req.query("done") ?? ""
    return show(
      c,
      c.req.param("id"),
      done === DUPLICATE_RESOLVED
        ? { kind: "ok", text: "Done: the duplicate payment is recorded as reversed." }
        : isAction(done)
          ? { kind: "ok", text: `Done: the subscription was ${ACTIONS[done].done}.` }
          : undefined,
    )
  })

  // The bank reversed a payment the engine flagged as a confirmed duplicate: the flag is closed.
  app.post("/subscriptions/:id/duplicates/:paymentId/resolve", requireRole("operator"), async (c) => {
    const session = c.get("session")
    const id = c.req.param("id")
    const paymentId = c.req.param("paymentId").toLowerCase()
    const clientId = await ownerOf(id)
    if (clientId === undefined || !isUuid(paymentId))
      return refusal(c, 404, `There is no subscription ${id}.`)
    const form = await c.req.parseBody()
    const reason = typeof form.reason === "string" ? form.reason.trim() : ""
    const problem = checkReason(reason)
    if (problem !== undefined) {
      return show(c, id, { kind: "error", text: `Not done: ${problem}. Nothing was changed.` }, 422)
    }
    const resolved = await services.db.transaction().execute(async (trx) => {
      if (!(await resolveDuplicate(trx, id, paymentId))) return false
      await writeAudit(trx, {
        operator: session.login,
        action: "payment.duplicate_resolved",
        target: id,
        clientId,
        reason,
        details: { paymentId },
      })
      return true
    })
    if (!resolved) {
      return show(
        c,
        id,
        { kind: "error", text: "Not done: that payment is not a confirmed duplicate. Nothing was changed." },
        409,
      )
    }
    return c.redirect(`${BASE}/subscriptions/${id}?done=${DUPLICATE_RESOLVED}`, 303)
  })

  app.post("/subscriptions/:id/:action", requireRole("operator"), async (c) => {
    const session = c.get("session")
    const id = c.req.param("id")
    const action = c.req.param("action")
    if (!isAction(action)) return refusal(c, 404, `There is no action "${action}".`)
    const form = await c.req.parseBody()
    const reason = typeof form.reason === "string" ? form.reason.trim() : ""
    const requestId =
      typeof form.requestId === "string" && isUuid(form.requestId) ? form.requestId : undefined
    const clientId = await ownerOf(id)
    if (clientId === undefined) return refusal(c, 404, `There is no subscription ${id}.`)
    const problem =
      checkReason(reason) ??
      (requestId === undefined ? "the form has no request id: reload the page" : undefined)
    if (problem !== undefined || requestId === undefined) {
      return show(c, id, { kind: "error", text: `Not done: ${problem}. Nothing was changed.` }, 422)
    }
    const { operation } = ACTIONS[action]
    const paymentId = typeof form.paymentId === "string" ? form.paymentId.trim().slice(0, 100) : ""
    if (action === "confirm" && !isUuid(paymentId)) {
      return show(
        c,
        id,
        { kind: "error", text: "Not done: the form names no held payment. Nothing was changed." },
        422,
      )
    }
    const outcome = await services.run(
      services.runOperation(
        operation,
        action === "confirm" ? { subscriptionId: id, paymentId } : { subscriptionId: id },
        { login: session.login, clientId, requestId, reason },
      ),
    )
    switch (outcome._tag) {
      case "Refused":
        return show(
          c,
          id,
          { kind: "error", text: `Not done: ${outcome.error.message}. Nothing was changed.` },
          outcome.error._tag === "Conflict" ? 409 : 422,
        )
      case "AlreadyDone":
        return show(c, id, {
          kind: "ok",
          text: "This form was already submitted; it was not applied a second time.",
        })
      case "Ok": {
        const view = (outcome.result as { subscription: SubscriptionView }).subscription
        await services.db.transaction().execute((trx) =>
          writeAudit(trx, {
            operator: session.login,
            action: operation,
            target: id,
            clientId,
            reason,
            details: {
              requestId,
              status: view.status,
              version: view.version,
              ...(action === "confirm" ? { paymentId } : {}),
            },
          }),
        )
        return c.redirect(`${BASE}/subscriptions/${id}?done=${action}`, 303)
      }
    }
  })
}
