/**
 * Finding a client: every subscription they have, from every channel, with
 * hidden reminders on request. Read through `subscription.list`, so the
 * console shows exactly what the client's channels see.
 */
import { Schema } from "effect"
import type { Hono } from "hono"
import { html } from "hono/html"
import { format as formatMoney } from "../domain/Money.ts"
import type { SubscriptionView } from "../domain/SubscriptionView.ts"
import { ClientId } from "../protocol/Envelope.ts"
import type { ConsoleEnv } from "./Auth.ts"
import type { ConsoleServices } from "./ConsoleServices.ts"
import { BASE, badge, page, when } from "./Html.ts"

const ACCOUNT_MAX = 200
const clientIdShape = Schema.is(ClientId)
/** The protocol's own rule for client ids (the console takes no id a channel could not send). */
const isClientId = (text: string): boolean => clientIdShape(text)

/** One line on what a subscription does, for lists. */
export const summary = (view: SubscriptionView): string => {
  switch (view.kind) {
    case "scheduled": {
      const schedule = view.schedule
      const every =
        schedule === undefined
          ? ""
          : ` every ${schedule.interval > 1 ? `${schedule.interval} ` : ""}${schedule.every}${schedule.interval > 1 ? "s" : ""} at ${schedule.time} ${schedule.timezone}`
      return `${view.amount === undefined ? "" : formatMoney(view.amount)}${every}`
    }
    case "threshold":
      return `top up ${view.amount === undefined ? "" : formatMoney(view.amount)} below ${view.threshold === undefined ? "" : formatMoney(view.threshold)}`
    case "debt":
      return `pay bills up to ${view.limit === undefined ? "" : formatMoney(view.limit)}, poll ${view.pollEvery ?? ""}`
    case "reminder":
      return `reminder after ${view.remindAfter ?? ""}${view.nextOfferAt ? `, next offer ${when(view.nextOfferAt)}` : ""}`
  }
}

/** When the subscription next does something on its own: pays, polls the provider, or offers a reminder. */
const nextText = (view: SubscriptionView): string => {
  if (view.nextOccurrence !== null) return when(view.nextOccurrence.dueAt)
  if (view.nextPollAt) return `poll ${when(view.nextPollAt)}`
  if (view.nextOfferAt) return `offer ${when(view.nextOfferAt)}`
  return "—"
}

export const registerClients = (app: Hono<ConsoleEnv>, services: ConsoleServices): void => {
  app.get("/clients", async (c) => {
    const session = c.get("session")
    const clientId = (c.req.query("clientId") ?? "").trim()
    const account = (c.req.query("account") ?? "").trim().slice(0, ACCOUNT_MAX)
    const includeHidden = c.req.query("hidden") === "1"
    let error: string | undefined
    let items: ReadonlyArray<SubscriptionView> | undefined
    let more = false
    // Support often knows the payee account (a phone number, a contract) rather than the client id.
    const byAccount =
      account === "" || clientId !== ""
        ? undefined
        : await services.db
            .selectFrom("subscriptions")
            .select(["client_id", "provider_id", "account"])
            .select((eb) => eb.fn.countAll<string>().as("count"))
            .where("account", "=", account)
            .groupBy(["client_id", "provider_id", "account"])
            .orderBy("client_id")
            .limit(100)
            .execute()
    if (clientId !== "" && !isClientId(clientId)) {
      error = `"${clientId.slice(0, 130)}" is not a client id: client ids are 1-128 letters, digits, '-' or '_'.`
    } else if (clientId !== "") {
      const outcome = await services.run(
        services.runOperation(
          "subscription.list",
          { includeHidden, limit: 200 },
          { login: session.login, clientId, requestId: "console-read", reason: "" },
        ),
      )
      if (outcome._tag === "Ok") {
        const listed = outcome.result as { items: Array<SubscriptionView>; nextCursor: string | null }
        items = listed.items
        more = listed.nextCursor !== null
      } else if (outcome._tag === "Refused") error = outcome.error.message
    }
    const body = html`
      <h1>Find a client</h1>
      <form class="card row" method="get" action="${BASE}/clients">
        <div>
          <label for="clientId">Client id</label>
          <input id="clientId" name="clientId" type="search" value="${clientId}" placeholder="e.g. client-7" />
        </div>
        <div>
          <label for="account">or payee account</label>
          <input id="account" name="account" type="search" value="${account}" placeholder="phone, contract no." />
        </div>
        <label class="muted"
          ><input type="checkbox" name="hidden" value="1" ${includeHidden ? "checked" : ""} /> include hidden
          reminders</label
        >
        <button type="submit">Find</button>
      </form>
      ${error === undefined ? "" : html`<div class="flash error" role="alert">${error}</div>`}
      ${
        byAccount === undefined
          ? ""
          : byAccount.length === 0
            ? html`<p class="card">No subscription pays account <b>${account}</b>.</p>`
            : html`<h2>Clients paying account ${account}</h2>
                <table data-testid="clients-by-account">
                  <thead><tr><th>Client</th><th>Provider</th><th>Account</th><th class="num">Subscriptions</th></tr></thead>
                  <tbody>
                    ${byAccount.map(
                      (row) => html`<tr>
                        <td><a href="${BASE}/clients?clientId=${encodeURIComponent(row.client_id)}&hidden=1">${row.client_id}</a></td>
                        <td>${row.provider_id}</td><td class="mono">${row.account}</td><td class="num">${row.count}</td>
                      </tr>`,
                    )}
                  </tbody>
                </table>`
      }
      ${
        items === undefined
          ? ""
          : items.length === 0
            ? html`<p class="card">No subscription for client <b>${clientId}</b>${includeHidden ? "" : " (hidden reminders not shown)"}.</p>`
            : html`<h2>${items.length} subscription${items.length === 1 ? "" : "s"} of ${clientId}</h2>
                ${more ? html`<p class="flash error">This client has more than ${items.length} subscriptions; the newest are shown.</p>` : ""}
                <table data-testid="subscriptions">
                  <thead>
                    <tr><th>Subscription</th><th>Kind</th><th>Status</th><th>Payee</th><th>Terms</th><th>Next</th><th>Created by</th></tr>
                  </thead>
                  <tbody>
                    ${items.map(
                      (view) => html`<tr>
                        <td><a class="mono" href="${BASE}/subscriptions/${view.subscriptionId}">${view.subscriptionId.slice(0, 8)}…</a>${view.hidden ? html` <span class="badge">hidden</span>` : ""}</td>
                        <td>${view.kind}</td>
                        <td>${badge(view.status)}</td>
                        <td>${view.payee.providerId} · <span class="mono">${view.payee.account}</span></td>
                        <td>${summary(view)}</td>
                        <td>${nextText(view)}</td>
                        <td>${view.createdBy.channel}${view.createdBy.terminal === null ? "" : ` / ${view.createdBy.terminal}`}</td>
                      </tr>`,
                    )}
                  </tbody>
                </table>`
      }`
    return c.html(page({ title: "Clients", session, current: "/clients", body }))
  })
}
