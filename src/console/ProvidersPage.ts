/**
 * The provider registry: everyone can look, admins add, change and remove
 * providers with the same store functions and checks as `npm run providers`.
 * Engines read the registry per request, so a change applies at once.
 */
import { Schema } from "effect"
import type { Context, Hono } from "hono"
import { html } from "hono/html"
import * as Ranges from "../domain/Ranges.ts"
import { ProviderId } from "../domain/Template.ts"
import { isBlank } from "../domain/Text.ts"
import { writeAudit } from "../store/OperatorStore.ts"
import {
  listProviders,
  type ProviderConfig,
  removeProvider,
  saveProvider,
} from "../store/ProviderRegistry.ts"
import { type ConsoleEnv, requireRole } from "./Auth.ts"
import type { ConsoleServices } from "./ConsoleServices.ts"
import { checked, type Form, field, noteOf, reasonField } from "./Forms.ts"
import { BASE, csrfField, type Flash, page, roleAtLeast } from "./Html.ts"

const isProviderId = Schema.is(ProviderId)

/** Why the provider form cannot be saved, or the provider. */
export const providerFromForm = (form: Form): ProviderConfig | string => {
  const providerId = field(form, "providerId", 100)
  if (!isProviderId(providerId))
    return `provider id "${providerId}" must be 1-64 letters, digits, '-' or '_', starting with a letter or digit`
  const displayName = field(form, "displayName", 200)
  if (isBlank(displayName)) return "the display name is required"
  const remindAfter = field(form, "remindAfter", 40) || "P30D"
  const remindAfterProblem = Ranges.durationProblem(remindAfter, Ranges.remindAfter)
  if (remindAfterProblem !== undefined) return `remind after ${remindAfterProblem}`
  return {
    providerId,
    displayName,
    periodic: checked(form, "periodic"),
    remindAfter,
    supportsDebt: checked(form, "supportsDebt"),
    supportsThreshold: checked(form, "supportsThreshold"),
  }
}

/**
 * The note after a provider edit. Only a provider id (letters, digits, '-', '_') is taken from the
 * address, so a crafted link cannot make the page say anything else.
 */
const savedProvider = (saved: string | undefined, removed: string | undefined): Flash | undefined => {
  if (saved !== undefined && isProviderId(saved)) return { kind: "ok", text: `Saved: provider ${saved}.` }
  if (removed !== undefined && isProviderId(removed)) {
    return { kind: "ok", text: `Removed: provider ${removed}; its autopayments keep working.` }
  }
  return undefined
}

export const registerProvidersPage = (app: Hono<ConsoleEnv>, services: ConsoleServices): void => {
  const { db } = services

  const providersPage = async (c: Context<ConsoleEnv>, flash?: Flash, status: 200 | 422 = 200) => {
    const session = c.get("session")
    const providers = await listProviders(db)
    const admin = roleAtLeast(session.role, "admin")
    const yes = (flag: boolean) => (flag ? "yes" : "—")
    // `?edit=<id>` fills the form with that provider's configuration, to change it rather than retype it.
    const editing = providers.find((p) => p.providerId === c.req.query("edit"))
    const box = (flag: boolean | undefined) => (flag === true ? "checked" : "")
    const body = html`
      <h1>Providers</h1>
      <p class="muted">
        ${
          providers.length === 0
            ? html`<b>No provider is registered: the engine accepts any provider id and sends no reminders.</b>`
            : "Only registered providers are accepted in new templates."
        }
        A debt autopayment's poll interval is one of its terms (<code>pollEvery</code>, default P1D), set per subscription.
      </p>
      <table data-testid="providers">
        <thead><tr><th>Id</th><th>Name</th><th>Periodic</th><th>Remind after</th><th>Debt queries</th><th>Balance readings</th>${admin ? html`<th></th>` : ""}</tr></thead>
        <tbody>
          ${providers.map(
            (p) => html`<tr>
              <td class="mono">${p.providerId}</td><td>${p.displayName}</td><td>${yes(p.periodic)}</td>
              <td>${p.periodic ? p.remindAfter : "—"}</td><td>${yes(p.supportsDebt)}</td><td>${yes(p.supportsThreshold)}</td>
              ${
                admin
                  ? html`<td>
                      <a href="${BASE}/providers?edit=${p.providerId}#provider-form">Edit</a>
                      <details>
                        <summary>Remove…</summary>
                        <form method="post" action="${BASE}/providers/${p.providerId}/remove">
                          ${csrfField(session)} ${reasonField}
                          <p class="small muted">Its autopayments and reminders keep working.</p>
                          <button class="danger" type="submit">Remove ${p.providerId}</button>
                        </form>
                      </details>
                    </td>`
                  : ""
              }
            </tr>`,
          )}
        </tbody>
      </table>
      ${
        admin
          ? html`<h2 id="provider-form">${editing === undefined ? "Add a provider or replace its configuration" : html`Change provider ${editing.providerId}`}</h2>
            <form class="card" method="post" action="${BASE}/providers" data-testid="provider-form">
              ${csrfField(session)}
              <div class="row">
                <div><label for="providerId">Id</label><input id="providerId" name="providerId" type="text" required maxlength="64" value="${editing?.providerId ?? ""}" /></div>
                <div><label for="displayName">Name</label><input id="displayName" name="displayName" type="text" required maxlength="200" value="${editing?.displayName ?? ""}" /></div>
                <div><label for="remindAfter">Remind after</label><input id="remindAfter" name="remindAfter" type="text" value="${editing?.remindAfter ?? "P30D"}" /></div>
              </div>
              <p>
                <label class="inline"><input type="checkbox" name="periodic" ${box(editing?.periodic)} /> periodic bills (a one-off payment earns a reminder)</label>
                <label class="inline"><input type="checkbox" name="supportsDebt" ${box(editing?.supportsDebt)} /> answers debt queries</label>
                <label class="inline"><input type="checkbox" name="supportsThreshold" ${box(editing?.supportsThreshold)} /> reports balances</label>
              </p>
              ${reasonField}
              <p><button type="submit">Save provider</button></p>
            </form>`
          : html`<p class="muted">Admins can edit providers.</p>`
      }`
    return c.html(page({ title: "Providers", session, current: "/providers", body, flash }), status)
  }

  app.get("/providers", (c) => providersPage(c, savedProvider(c.req.query("saved"), c.req.query("removed"))))

  app.post("/providers", requireRole("admin"), async (c) => {
    const form = await c.req.parseBody()
    const provider = providerFromForm(form)
    if (typeof provider === "string")
      return providersPage(c, { kind: "error", text: `Not saved: ${provider}. Nothing was changed.` }, 422)
    const before = (await listProviders(db)).find((p) => p.providerId === provider.providerId) ?? null
    await saveProvider(db, provider)
    await writeAudit(db, {
      operator: c.get("session").login,
      action: before === null ? "provider.add" : "provider.update",
      target: provider.providerId,
      clientId: null,
      reason: noteOf(form),
      details: { before, after: provider },
    })
    return c.redirect(`${BASE}/providers?saved=${provider.providerId}`, 303)
  })

  app.post("/providers/:id/remove", requireRole("admin"), async (c) => {
    const id = c.req.param("id")
    const form = await c.req.parseBody()
    const before = (await listProviders(db)).find((p) => p.providerId === id)
    if (before === undefined || !(await removeProvider(db, id))) {
      return providersPage(
        c,
        { kind: "error", text: `Provider ${id} is not registered. Nothing was changed.` },
        422,
      )
    }
    await writeAudit(db, {
      operator: c.get("session").login,
      action: "provider.remove",
      target: id,
      clientId: null,
      reason: noteOf(form),
      details: { before },
    })
    return c.redirect(`${BASE}/providers?removed=${id}`, 303)
  })
}
