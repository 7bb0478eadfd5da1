/**
 * Today: what the engine did over the last 24 hours of its own time (the
 * last tick's `at`, not the wall clock: a paused clock shows a paused day),
 * an hourly chart of the payments sent and how they ended, and how far
 * behind each durable consumer is right now.
 */
import type { Hono } from "hono"
import { html, raw } from "hono/html"
import { sql } from "kysely"
import { durableConsumers } from "../streams/Topology.ts"
import type { ConsoleEnv } from "./Auth.ts"
import type { ConsoleServices } from "./ConsoleServices.ts"
import { countOpenDuplicates, openDuplicatesList, readDuplicateFlags } from "./DuplicatePayments.ts"
import { BASE, page, when } from "./Html.ts"

const HOUR = 3_600_000
const DAY = 24 * HOUR

interface HourBucket {
  readonly hour: number
  readonly succeeded: number
  readonly failed: number
  readonly open: number
  readonly held: number
}

/** Counts over the window ending at the engine's `now`. */
const readFigures = async (services: ConsoleServices, now: number) => {
  const from = new Date(now - DAY)
  const to = new Date(now)
  const { rows: totals } = await sql<{
    sent: string
    succeeded: string
    failed: string
    open: string
    held: string
    due: string
  }>`
    SELECT
      (SELECT count(*) FROM payments WHERE requested_at > ${from} AND requested_at <= ${to}) AS sent,
      (SELECT count(*) FROM payments WHERE requested_at > ${from} AND requested_at <= ${to} AND status = 'succeeded') AS succeeded,
      (SELECT count(*) FROM payments WHERE requested_at > ${from} AND requested_at <= ${to} AND status IN ('failed', 'declined')) AS failed,
      (SELECT count(*) FROM payments WHERE status IN ('pending', 'unknown')) AS open,
      (SELECT count(*) FROM decisions WHERE outcome = 'held' AND at > ${from} AND at <= ${to}) AS held,
      (SELECT count(*) FROM subscriptions WHERE kind = 'scheduled' AND status = 'active' AND next_due_at > ${to} AND next_due_at <= ${new Date(now + DAY)}) AS due`.execute(
    services.db,
  )
  const { rows: hourly } = await sql<{
    hour: number
    succeeded: string
    failed: string
    open: string
    held: string
  }>`
    WITH events AS (
      SELECT floor(extract(epoch FROM (requested_at - ${from}::timestamptz)) / 3600)::int AS hour, status, false AS held
      FROM payments WHERE requested_at > ${from} AND requested_at <= ${to}
      UNION ALL
      SELECT floor(extract(epoch FROM (at - ${from}::timestamptz)) / 3600)::int, NULL, true
      FROM decisions WHERE outcome = 'held' AND at > ${from} AND at <= ${to}
    )
    SELECT hour,
      count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
      count(*) FILTER (WHERE status IN ('failed', 'declined')) AS failed,
      count(*) FILTER (WHERE status IN ('pending', 'unknown')) AS open,
      count(*) FILTER (WHERE held) AS held
    FROM events GROUP BY hour`.execute(services.db)
  const buckets: Array<HourBucket> = Array.from({ length: 24 }, (_, hour) => ({
    hour,
    succeeded: 0,
    failed: 0,
    open: 0,
    held: 0,
  }))
  for (const row of hourly) {
    const index = Math.min(23, Math.max(0, row.hour))
    const bucket = buckets[index]
    if (bucket === undefined) continue
    buckets[index] = {
      hour: index,
      succeeded: bucket.succeeded + Number(row.succeeded),
      failed: bucket.failed + Number(row.failed),
      open: bucket.open + Number(row.open),
      held: bucket.held + Number(row.held),
    }
  }
  const total = totals[0]
  return {
    due: Number(total?.due ?? 0),
    sent: Number(total?.sent ?? 0),
    succeeded: Number(total?.succeeded ?? 0),
    failed: Number(total?.failed ?? 0),
    open: Number(total?.open ?? 0),
    held: Number(total?.held ?? 0),
    buckets,
  }
}

const SERIES = [
  { key: "succeeded", label: "succeeded", color: "#2e8b57" },
  { key: "failed", label: "failed or declined", color: "#c0392b" },
  { key: "open", label: "awaiting result", color: "#8fa3b8" },
  { key: "held", label: "held by a limit", color: "#e0a030" },
] as const

/** Stacked hourly bars as inline SVG: no script, no library, readable without colour thanks to the legend and titles. */
export const hourlyChart = (buckets: ReadonlyArray<HourBucket>, windowStart: number): string => {
  const width = 1080
  const height = 220
  const left = 40
  const bottom = 28
  const top = 10
  const plotHeight = height - bottom - top
  const slot = (width - left - 10) / buckets.length
  const highest = Math.max(1, ...buckets.map((b) => b.succeeded + b.failed + b.open + b.held))
  const scale = plotHeight / highest
  const parts: Array<string> = []
  for (const step of [0, 0.5, 1]) {
    const y = top + plotHeight - step * plotHeight
    parts.push(`<line x1="${left}" x2="${width - 10}" y1="${y}" y2="${y}" stroke="#e3e8ee"/>`)
    parts.push(`<text x="${left - 6}" y="${y + 4}" text-anchor="end">${Math.round(step * highest)}</text>`)
  }
  buckets.forEach((bucket, index) => {
    const x = left + index * slot + 2
    let y = top + plotHeight
    for (const series of SERIES) {
      const count = bucket[series.key]
      if (count === 0) continue
      const barHeight = count * scale
      y -= barHeight
      const hour = new Date(windowStart + index * HOUR).toISOString().slice(11, 16)
      parts.push(
        `<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${(slot - 4).toFixed(1)}" height="${barHeight.toFixed(1)}" fill="${series.color}"><title>${hour} UTC: ${count} ${series.label}</title></rect>`,
      )
    }
    if (index % 3 === 0) {
      const label = new Date(windowStart + index * HOUR).toISOString().slice(11, 16)
      parts.push(
        `<text x="${(x + slot / 2).toFixed(1)}" y="${height - 8}" text-anchor="middle">${label}</text>`,
      )
    }
  })
  const legend = SERIES.map(
    (series, index) =>
      `<rect x="${left + index * 170}" y="0" width="10" height="10" fill="${series.color}"/><text x="${left + index * 170 + 14}" y="9">${series.label}</text>`,
  ).join("")
  return `<svg role="img" aria-label="Payments per hour over the last 24 hours of engine time" viewBox="0 0 ${width} ${height + 16}" width="100%">
    <g transform="translate(0,16)">${parts.join("")}</g><g>${legend}</g></svg>`
}

/** Every durable consumer of the engine with its stream, for the lag table. */

export const registerTodayPage = (app: Hono<ConsoleEnv>, services: ConsoleServices): void => {
  app.get("/today", async (c) => {
    const session = c.get("session")
    const now = await services.engineNow()
    const figures = now === 0 ? undefined : await readFigures(services, now)
    const [openDuplicates, duplicates] = await Promise.all([
      countOpenDuplicates(services.db),
      readDuplicateFlags(services.db, { open: true, limit: 20 }),
    ])
    const lags = await Promise.all(
      durableConsumers(services.topology).map(async (entry) => {
        const info = await services.jsm.consumers.info(entry.stream, entry.consumer).catch(() => undefined)
        return { ...entry, info }
      }),
    )
    const stat = (label: string, value: number, testId: string) =>
      html`<div class="stat" data-testid="${testId}"><div class="value">${value.toLocaleString("en")}</div><div class="label">${label}</div></div>`
    const body = html`
      <h1>Today</h1>
      <p class="muted">
        Engine time: <b>${now === 0 ? "no tick processed yet" : when(now)}</b>. Figures cover the 24 hours of engine
        time up to it (the engine's clock is the last tick, not the wall clock).
        <a href="${BASE}/today">Refresh</a>
      </p>
      ${
        figures === undefined
          ? html`<p class="card">The engine has processed no tick yet, so it has no day to show.</p>`
          : html`<div class="grid">
              ${stat("due in the next 24 h", figures.due, "due")} ${stat("sent", figures.sent, "sent")}
              ${stat("succeeded", figures.succeeded, "succeeded")} ${stat("failed or declined", figures.failed, "failed")}
              ${stat("held by a limit", figures.held, "held")} ${stat("awaiting a result (any time)", figures.open, "open")}
            </div>
            <h2>Payments per hour (by the hour they were sent)</h2>
            <div class="card">${raw(hourlyChart(figures.buckets, now - DAY))}</div>`
      }
      <h2>Suspected duplicate payments (any time)</h2>
      <div class="card">
        <p data-testid="open-duplicates-count"><b>${openDuplicates.toLocaleString("en")}</b> open: a retry sent
          before an earlier attempt of its occurrence was known to have succeeded. A confirmed one is for the bank
          to reverse (see the operator guide).</p>
        ${openDuplicatesList(duplicates)}
      </div>
      <h2>Consumer lag (live)</h2>
      <table data-testid="lags">
        <thead><tr><th>Consumer</th><th>Stream</th><th>Reads</th><th class="num">Pending</th><th class="num">Unacknowledged</th><th class="num">Redelivered</th></tr></thead>
        <tbody>
          ${lags.map(
            (lag) => html`<tr>
              <td class="mono">${lag.consumer}</td>
              <td class="mono">${lag.stream}</td>
              <td>${lag.what}</td>
              ${
                lag.info === undefined
                  ? html`<td colspan="3" class="muted">not found (the engine creates it on start)</td>`
                  : html`<td class="num">${lag.info.num_pending}</td><td class="num">${lag.info.num_ack_pending}</td><td class="num">${lag.info.num_redelivered}</td>`
              }
            </tr>`,
          )}
        </tbody>
      </table>`
    return c.html(page({ title: "Today", session, current: "/today", body }))
  })
}
