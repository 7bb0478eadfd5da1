/**
 * The provider and channel registries: everyone can look, admins edit, with
 * the same store functions and the same checks the `providers` and
 * `channels` command lines use. Engines apply a change at once: providers are
 * read per request, the channel registry is re-read on its trigger's NOTIFY
 * (and this instance reloads it before answering).
 */

import { Schema } from "effect"
import type { Context, Hono } from "hono"
import { html } from "hono/html"
import * as IsoDuration from "../domain/IsoDuration.ts"
import { ProviderId } from "../domain/Template.ts"
import { fingerprintOf, parsePublicKey } from "../protocol/ChannelKeys.ts"
import {
  CHANNEL_ID,
  CONSOLE_CHANNEL,
  checkOperationPattern,
  DEFAULT_CHANNELS,
  KNOWN_OPERATIONS,
} from "../protocol/Channels.ts"
import {
  addChannel,
  type ChannelRow,
  listChannels,
  rotateChannelKey,
  setChannelDisabled,
  setChannelOperations,
} from "../store/ChannelStore.ts"
import { writeAudit } from "../store/OperatorStore.ts"
import {
  listProviders,
  type ProviderConfig,
  removeProvider,
  saveProvider,
} from "../store/ProviderRegistry.ts"
import { type ConsoleEnv, requireRole } from "./Auth.ts"
import type { ConsoleServices } from "./ConsoleServices.ts"
import { BASE, badge, csrfField, type Flash, page, roleAtLeast, when } from "./Html.ts"

const isProviderId = Schema.is(ProviderId)

type Form = Readonly<Record<string, unknown>>
const field = (form: Form, name: string, max = 500): string => {
  const value = form[name]
  return typeof value === "string" ? value.trim().slice(0, max) : ""
}
const checked = (form: Form, name: string) => form[name] === "on"

/** An admin's optional note on a configuration change, kept in the audit log. */
const noteOf = (form: Form): string | null => field(form, "reason") || null

const reasonField = html`<label>Note for the audit log (optional)</label><input type="text" name="reason" maxlength="500" placeholder="change request CR-..." />`

/** Why the provider form cannot be saved, or the provider. */
export const providerFromForm = (form: Form): ProviderConfig | string => {
  const providerId = field(form, "providerId", 100)
  if (!isProviderId(providerId))
    return `provider id "${providerId}" must be 1-64 letters, digits, '-' or '_', starting with a letter or digit`
  const displayName = field(form, "displayName", 200)
  if (displayName === "") return "the display name is required"
  const remindAfter = field(form, "remindAfter", 40) || "P30D"
  if ((IsoDuration.parseMillis(remindAfter) ?? 0) <= 0)
    return `remind after must be a positive ISO 8601 duration such as P30D, got "${remindAfter}"`
  return {
    providerId,
    displayName,
    periodic: checked(form, "periodic"),
    remindAfter,
    supportsDebt: checked(form, "supportsDebt"),
    supportsThreshold: checked(form, "supportsThreshold"),
  }
}

/** Why an operation list is refused, or the patterns (comma or space separated, duplicates dropped). */
export const operationsFromText = (text: string): ReadonlyArray<string> | string => {
  const patterns = [...new Set(text.split(/[\s,]+/).filter((part) => part !== ""))]
  if (patterns.length === 0) return "list at least one operation, <group>.* or *"
  for (const pattern of patterns) {
    const problem = checkOperationPattern(pattern)
    if (problem !== undefined) return problem
  }
  return patterns
}

const describeKey = (publicKey: string | null) => {
  if (publicKey === null) return html`${badge("unsigned", "paused")}`
  const parsed = parsePublicKey(publicKey)
  return parsed._tag === "Key"
    ? html`<span class="mono">${parsed.form} ${fingerprintOf(parsed.raw)}…</span>`
    : html`${badge("unreadable key", "failed")}`
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

export const registerRegistryPages = (app: Hono<ConsoleEnv>, services: ConsoleServices): void => {
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

  const channelsPage = async (c: Context<ConsoleEnv>, flash?: Flash, status: 200 | 422 = 200) => {
    const session = c.get("session")
    const rows = await listChannels(db)
    const registry = await services.channelRegistry()
    const admin = roleAtLeast(session.role, "admin")
    const inForce =
      registry._tag === "Default"
        ? html`<div class="flash error">No channel is registered: this engine accepts the development channels UNSIGNED (${DEFAULT_CHANNELS.join(", ")}). Register channels before production.</div>`
        : registry._tag === "Closed"
          ? html`<div class="flash error">No channel is registered and RP_DEFAULT_CHANNELS=off: every channel request is refused.</div>`
          : ""
    const channelRow = (row: ChannelRow) => html`<tr>
      <td class="mono">${row.id}</td><td>${row.displayName}</td>
      <td>${row.disabledAt === null ? badge("enabled", "active") : badge("disabled")}</td>
      <td>${describeKey(row.publicKey)}${row.keyRotatedAt === null ? "" : html`<div class="small muted">rotated ${when(row.keyRotatedAt)}</div>`}</td>
      <td class="mono small">${row.operations.join(" ")}</td>
      ${
        admin
          ? html`<td>
              <details><summary>Edit</summary>
                <form method="post" action="${BASE}/channels/${row.id}/operations">${csrfField(session)}
                  <label>Allowed operations</label><input type="text" name="operations" value="${row.operations.join(" ")}" />
                  ${reasonField}<p><button type="submit">Save operations</button></p></form>
                <form method="post" action="${BASE}/channels/${row.id}/key">${csrfField(session)}
                  <label>New public key (nkey U… or 32 bytes base64/hex; empty: unsigned)</label><input type="text" name="publicKey" />
                  ${reasonField}<p><button type="submit">Replace key</button></p></form>
                <form method="post" action="${BASE}/channels/${row.id}/${row.disabledAt === null ? "disable" : "enable"}">${csrfField(session)}
                  ${reasonField}<p><button type="submit" class="${row.disabledAt === null ? "danger" : ""}">${row.disabledAt === null ? "Disable (refuse all its requests)" : "Enable"}</button></p></form>
              </details>
            </td>`
          : ""
      }
    </tr>`
    const body = html`
      <h1>Channels</h1>
      ${inForce}
      <table data-testid="channels">
        <thead><tr><th>Id</th><th>Name</th><th>State</th><th>Key</th><th>Allowed operations</th>${admin ? html`<th></th>` : ""}</tr></thead>
        <tbody>${rows.map(channelRow)}</tbody>
      </table>
      ${rows.length === 0 ? html`<p class="muted">No channel registered.</p>` : ""}
      ${
        admin
          ? html`<h2>Register a channel</h2>
            <form class="card" method="post" action="${BASE}/channels" data-testid="channel-form">${csrfField(session)}
              <div class="row">
                <div><label for="channelId">Id (one subject token)</label><input id="channelId" name="channelId" type="text" required maxlength="64" /></div>
                <div><label for="channelName">Name</label><input id="channelName" name="displayName" type="text" required maxlength="200" /></div>
              </div>
              <label for="channelOperations">Allowed operations</label>
              <input id="channelOperations" name="operations" type="text" placeholder="subscription.* template.*" />
              <p class="small muted">Operation names, &lt;group&gt;.* or *. Known: ${KNOWN_OPERATIONS.join(", ")}</p>
              <label for="channelKey">Public key (recommended; empty: unsigned)</label><input id="channelKey" name="publicKey" type="text" />
              ${reasonField}
              <p><button type="submit">Register channel</button></p>
            </form>`
          : html`<p class="muted">Admins can edit channels.</p>`
      }`
    return c.html(page({ title: "Channels", session, current: "/channels", body, flash }), status)
  }

  const keyFromForm = (form: Form): { key: string | null } | string => {
    const text = field(form, "publicKey", 200)
    if (text === "") return { key: null }
    const parsed = parsePublicKey(text)
    return parsed._tag === "Key" ? { key: text } : `the public key is refused: ${parsed.reason}`
  }

  /** Makes an edit, reloads this instance's registry at once, audits, and shows the page. */
  const channelChange = async (
    c: Context<ConsoleEnv>,
    action: string,
    id: string,
    change: () => Promise<unknown>,
    details: Readonly<Record<string, unknown>>,
  ) => {
    const form = await c.req.parseBody()
    const done = await change()
    if (done === undefined || done === false)
      return channelsPage(
        c,
        { kind: "error", text: `Channel ${id} is not registered (or the id is taken). Nothing was changed.` },
        422,
      )
    await services.reloadChannels()
    await writeAudit(db, {
      operator: c.get("session").login,
      action,
      target: id,
      clientId: null,
      reason: noteOf(form),
      details,
    })
    return c.redirect(`${BASE}/channels?saved=${id}`, 303)
  }

  app.get("/channels", (c) =>
    channelsPage(
      c,
      CHANNEL_ID.test(c.req.query("saved") ?? "")
        ? {
            kind: "ok",
            text: `Saved: channel ${c.req.query("saved")}. Every engine applies it within seconds.`,
          }
        : undefined,
    ),
  )

  app.post("/channels", requireRole("admin"), async (c) => {
    const form = await c.req.parseBody()
    const id = field(form, "channelId", 100)
    const displayName = field(form, "displayName", 200)
    const operations = operationsFromText(field(form, "operations", 2_000))
    const key = keyFromForm(form)
    const problem =
      id === CONSOLE_CHANNEL
        ? `channel id "${CONSOLE_CHANNEL}" is reserved for the operator console`
        : !CHANNEL_ID.test(id)
          ? `channel id "${id}" must be 1-64 letters, digits, '-' or '_' (one NATS subject token)`
          : displayName === ""
            ? "the name is required"
            : typeof operations === "string"
              ? operations
              : typeof key === "string"
                ? key
                : undefined
    if (problem !== undefined || typeof operations === "string" || typeof key === "string") {
      return channelsPage(c, { kind: "error", text: `Not registered: ${problem}. Nothing was changed.` }, 422)
    }
    return channelChange(
      c,
      "channel.add",
      id,
      () => addChannel(db, { id, displayName, operations, publicKey: key.key }),
      {
        displayName,
        operations,
        signed: key.key !== null,
      },
    )
  })

  app.post("/channels/:id/operations", requireRole("admin"), async (c) => {
    const id = c.req.param("id")
    const operations = operationsFromText(field(await c.req.parseBody(), "operations", 2_000))
    if (typeof operations === "string")
      return channelsPage(c, { kind: "error", text: `Not saved: ${operations}. Nothing was changed.` }, 422)
    const before = (await listChannels(db)).find((row) => row.id === id)?.operations ?? null
    return channelChange(c, "channel.set_operations", id, () => setChannelOperations(db, id, operations), {
      before,
      after: operations,
    })
  })

  app.post("/channels/:id/key", requireRole("admin"), async (c) => {
    const id = c.req.param("id")
    const key = keyFromForm(await c.req.parseBody())
    if (typeof key === "string")
      return channelsPage(c, { kind: "error", text: `Not saved: ${key}. Nothing was changed.` }, 422)
    return channelChange(c, "channel.rotate_key", id, () => rotateChannelKey(db, id, key.key), {
      signed: key.key !== null,
    })
  })

  for (const verb of ["disable", "enable"] as const) {
    app.post(`/channels/:id/${verb}`, requireRole("admin"), (c) => {
      const id = c.req.param("id")
      return channelChange(c, `channel.${verb}`, id, () => setChannelDisabled(db, id, verb === "disable"), {})
    })
  }
}
