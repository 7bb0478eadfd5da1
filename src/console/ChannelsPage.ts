/**
 * The channel registry: everyone can look, admins register channels, change
 * what they may do, replace or remove their keys, disable and enable them,
 * with the same store functions and checks as `npm run channels`. Engines
 * re-read the registry on its trigger's NOTIFY (this instance at once).
 */
import type { Context, Hono } from "hono"
import { html } from "hono/html"
import { isBlank } from "../domain/Text.ts"
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
import { type ConsoleEnv, requireRole } from "./Auth.ts"
import type { ConsoleServices } from "./ConsoleServices.ts"
import { type Form, field, noteOf, reasonField } from "./Forms.ts"
import { BASE, badge, csrfField, type Flash, page, roleAtLeast, when } from "./Html.ts"

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

export const registerChannelsPage = (app: Hono<ConsoleEnv>, services: ConsoleServices): void => {
  const { db } = services

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
          : isBlank(displayName)
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
