/**
 * Limits and retries: the spending limits and the retry schedule in force,
 * where each comes from (the environment, or an admin's override in the
 * console), and for admins the forms that override them or return them to
 * the environment's. An override is in force on every instance within
 * moments (NOTIFY, and at the latest after RP_SETTINGS_REFRESH).
 */
import type { Context, Hono } from "hono"
import { html } from "hono/html"
import type { LimitSettings } from "../actors/Limits.ts"
import * as IsoDuration from "../domain/IsoDuration.ts"
import { format as formatMoney } from "../domain/Money.ts"
import * as Ranges from "../domain/Ranges.ts"
import { isTimeZoneName, parseAmountsByCurrency } from "../EngineConfig.ts"
import { type AuditEntry, writeAudit } from "../store/OperatorStore.ts"
import { checkLimits, writeOverride } from "../store/SettingsOverrides.ts"
import { type ConsoleEnv, requireRole } from "./Auth.ts"
import type { ConsoleServices } from "./ConsoleServices.ts"
import { type Form, field, noteOf } from "./Forms.ts"
import { BASE, badge, csrfField, type Flash, page, roleAtLeast, when } from "./Html.ts"

/** `RUB:1500000,USD:100000`, the environment variables' own syntax. */
const amountsText = (amounts: Readonly<Record<string, number>>) =>
  Object.entries(amounts)
    .map(([currency, value]) => `${currency}:${value}`)
    .join(",")

const amountsShown = (amounts: Readonly<Record<string, number>>) => {
  const entries = Object.entries(amounts)
  return entries.length === 0
    ? html`<span class="muted">no limit</span>`
    : entries.map(([currency, value]) => html`<div>${formatMoney({ value, currency })}</div>`)
}

const durationsText = (millis: ReadonlyArray<number>) =>
  millis.map((ms) => IsoDuration.formatMillis(ms)).join(",")

const LIMIT_FIELDS = [
  { name: "scheduled", label: "One scheduled payment at most", env: "RP_LIMIT_PAYMENT_MAX_SCHEDULED" },
  { name: "threshold", label: "One threshold top-up at most", env: "RP_LIMIT_PAYMENT_MAX_THRESHOLD" },
  { name: "debt", label: "One debt payment at most", env: "RP_LIMIT_PAYMENT_MAX_DEBT" },
  { name: "monthly", label: "A client's month at most", env: "RP_LIMIT_MONTHLY_MAX" },
] as const

/** Reads the limits form; a string says what is wrong. */
export const limitsFromForm = (form: Readonly<Record<string, unknown>>): LimitSettings | string => {
  const amounts: Record<string, Readonly<Record<string, number>>> = {}
  for (const limitField of LIMIT_FIELDS) {
    const parsed = parseAmountsByCurrency(field(form, limitField.name, 2_000))
    if (parsed === undefined)
      return `"${limitField.label}" must be a comma-separated list of CURRENCY:minor-units such as RUB:1500000,USD:100000 (empty: no limit)`
    amounts[limitField.name] = parsed
  }
  const clientTimeZone = field(form, "clientTimeZone", 100)
  if (!isTimeZoneName(clientTimeZone))
    return `"${clientTimeZone}" is not an IANA time zone such as Europe/Moscow`
  const limits: LimitSettings = {
    paymentMax: {
      scheduled: amounts.scheduled ?? {},
      threshold: amounts.threshold ?? {},
      debt: amounts.debt ?? {},
    },
    monthlyMax: amounts.monthly ?? {},
    clientTimeZone,
  }
  return checkLimits(limits) ?? limits
}

/** What was saved, by the code the form's redirect carries (the page never echoes free text). */
const SAVED = {
  "limits-override": "the limits override",
  "limits-environment": "the environment's limits",
  "retries-override": "the retry schedule override",
  "retries-environment": "the environment's retry schedule",
} as const

export const registerSettingsPage = (app: Hono<ConsoleEnv>, services: ConsoleServices): void => {
  const environment = services.settings

  const show = async (c: Context<ConsoleEnv>, flash?: Flash, status: 200 | 422 = 200) => {
    const session = c.get("session")
    const current = await services.settingsInForce()
    const admin = roleAtLeast(session.role, "admin")
    const { limits } = current
    const source = (from: "environment" | "console") =>
      from === "console" ? badge("console override", "paused") : badge("environment", "active")
    const body = html`
      <h1>Limits and retries</h1>
      ${current.overrides.problems.map((problem) => html`<div class="flash error">${problem}</div>`)}
      <p class="muted">
        Each setting comes from the engine's environment unless an admin has overridden it here; an override is in force on
        every engine instance within seconds and stays until it is removed.
        ${current.overrides.updatedAt === null ? "" : html`Last changed ${when(current.overrides.updatedAt)} by ${current.overrides.updatedBy}.`}
      </p>
      <h2>Spending limits ${source(current.limitsFrom)}</h2>
      <table data-testid="limits">
        <thead><tr><th>Limit</th><th>In force</th><th>Environment (${"RP_LIMIT_*"})</th></tr></thead>
        <tbody>
          <tr><td>One scheduled payment at most</td><td>${amountsShown(limits.paymentMax.scheduled)}</td><td>${amountsShown(environment.limits.paymentMax.scheduled)}</td></tr>
          <tr><td>One threshold top-up at most</td><td>${amountsShown(limits.paymentMax.threshold)}</td><td>${amountsShown(environment.limits.paymentMax.threshold)}</td></tr>
          <tr><td>One debt payment at most (besides each subscription's own limit)</td><td>${amountsShown(limits.paymentMax.debt)}</td><td>${amountsShown(environment.limits.paymentMax.debt)}</td></tr>
          <tr><td>A client's calendar month at most</td><td>${amountsShown(limits.monthlyMax)}</td><td>${amountsShown(environment.limits.monthlyMax)}</td></tr>
          <tr><td>Months are counted in</td><td>${limits.clientTimeZone}</td><td>${environment.limits.clientTimeZone}</td></tr>
        </tbody>
      </table>
      <h2>Retry schedule ${source(current.retryScheduleFrom)}</h2>
      <table data-testid="retries">
        <thead><tr><th></th><th>In force</th><th>Environment (RP_RETRY_SCHEDULE)</th></tr></thead>
        <tbody><tr><td>Delays after a retryable failure (never past the next occurrence)</td>
          <td class="mono">${durationsText(current.policy.retryScheduleMs)}</td><td class="mono">${durationsText(environment.retryScheduleMs)}</td></tr></tbody>
      </table>
      ${
        admin
          ? html`<h2>Override the limits</h2>
            <form class="card" method="post" action="${BASE}/settings/limits" data-testid="limits-form">${csrfField(session)}
              <p class="small muted">Amounts in minor units per currency, as in the environment variables: <code>RUB:1500000,USD:100000</code> is 15 000.00 RUB and 1 000.00 USD. Empty: no limit.</p>
              <div class="row">
                ${LIMIT_FIELDS.map(
                  (field) => html`<div><label for="limit-${field.name}">${field.label}</label>
                    <input id="limit-${field.name}" name="${field.name}" type="text" value="${amountsText(
                      field.name === "monthly" ? limits.monthlyMax : limits.paymentMax[field.name],
                    )}" /></div>`,
                )}
                <div><label for="clientTimeZone">Months counted in</label><input id="clientTimeZone" name="clientTimeZone" type="text" value="${limits.clientTimeZone}" /></div>
              </div>
              <label>Note for the audit log (optional)</label><input type="text" name="reason" maxlength="500" />
              <p><button type="submit" name="use" value="override">Save override</button>
                ${current.limitsFrom === "console" ? html`<button type="submit" name="use" value="environment" class="secondary">Return to the environment's limits</button>` : ""}</p>
            </form>
            <h2>Override the retry schedule</h2>
            <form class="card" method="post" action="${BASE}/settings/retries" data-testid="retries-form">${csrfField(session)}
              <label for="retrySchedule">Delays, comma-separated ISO 8601 durations</label>
              <input id="retrySchedule" name="retrySchedule" type="text" value="${durationsText(current.policy.retryScheduleMs)}" />
              <label>Note for the audit log (optional)</label><input type="text" name="reason" maxlength="500" />
              <p><button type="submit" name="use" value="override">Save override</button>
                ${current.retryScheduleFrom === "console" ? html`<button type="submit" name="use" value="environment" class="secondary">Return to the environment's schedule</button>` : ""}</p>
            </form>`
          : html`<p class="muted">Admins can override these settings.</p>`
      }`
    return c.html(page({ title: "Limits and retries", session, current: "/settings", body, flash }), status)
  }

  app.get("/settings", (c) =>
    show(
      c,
      Object.hasOwn(SAVED, c.req.query("saved") ?? "")
        ? {
            kind: "ok",
            text: `Saved: ${SAVED[c.req.query("saved") as keyof typeof SAVED]}. In force on every instance within seconds.`,
          }
        : undefined,
    ),
  )

  /** Writes an override with its audit entry (the admin's note from `form`), then puts it in force here. */
  const saveOverride = async (
    login: string,
    form: Form,
    change: Parameters<typeof writeOverride>[1],
    audit: Pick<AuditEntry, "action" | "target" | "details">,
  ) => {
    await services.db.transaction().execute(async (trx) => {
      await writeOverride(trx, change, login)
      await writeAudit(trx, { operator: login, clientId: null, reason: noteOf(form), ...audit })
    })
    await services.reloadSettings()
  }

  app.post("/settings/limits", requireRole("admin"), async (c) => {
    const form = await c.req.parseBody()
    const before = (await services.settingsInForce()).limits
    const useEnvironment = form.use === "environment"
    const limits = useEnvironment ? null : limitsFromForm(form)
    if (typeof limits === "string")
      return show(c, { kind: "error", text: `Not saved: ${limits}. Nothing was changed.` }, 422)
    await saveOverride(
      c.get("session").login,
      form,
      { limits },
      {
        action: useEnvironment ? "settings.limits_reset" : "settings.limits_override",
        target: "limits",
        details: { before, after: limits ?? environment.limits },
      },
    )
    return c.redirect(
      `${BASE}/settings?saved=${useEnvironment ? "limits-environment" : "limits-override"}`,
      303,
    )
  })

  app.post("/settings/retries", requireRole("admin"), async (c) => {
    const form = await c.req.parseBody()
    const before = (await services.settingsInForce()).policy.retryScheduleMs
    const useEnvironment = form.use === "environment"
    const text = field(form, "retrySchedule", 500).replace(/\s+/g, "")
    const parsed = useEnvironment ? null : Ranges.parseRetrySchedule(text)
    if (typeof parsed === "string") {
      return show(
        c,
        {
          kind: "error",
          text: `Not saved: the retry schedule ${parsed}; it takes 1 to ${Ranges.RETRY_SCHEDULE_MAX_STEPS} comma-separated ISO 8601 durations from ${Ranges.retryDelay.min} to ${Ranges.retryDelay.max} each, such as PT1H,PT6H,PT24H. Nothing was changed.`,
        },
        422,
      )
    }
    await saveOverride(
      c.get("session").login,
      form,
      { retrySchedule: parsed === null ? null : text },
      {
        action: useEnvironment ? "settings.retries_reset" : "settings.retries_override",
        target: "retry_schedule",
        details: {
          before: durationsText(before),
          after: parsed === null ? durationsText(environment.retryScheduleMs) : text,
        },
      },
    )
    return c.redirect(
      `${BASE}/settings?saved=${useEnvironment ? "retries-environment" : "retries-override"}`,
      303,
    )
  })
}
