/**
 * The admin's override of two environment settings, kept in Postgres so
 * that one edit is in force on every engine instance: the spending limits
 * (`RP_LIMIT_*`, `RP_CLIENT_TIMEZONE`) and the retry schedule
 * (`RP_RETRY_SCHEDULE`). Each is null until an admin sets it, and the
 * environment's value applies.
 */
import { Schema } from "effect"
import { type Kysely, sql } from "kysely"
import type { LimitSettings } from "../actors/Limits.ts"
import { isKnownCurrency } from "../domain/Money.ts"
import * as Ranges from "../domain/Ranges.ts"
import { isTimeZoneName } from "../EngineConfig.ts"
import type { Tables } from "./Tables.ts"

/** The Postgres channel the table's trigger notifies. */
export const SETTINGS_NOTIFICATION = "rp_engine_settings"

const Amounts = Schema.Record(Schema.String, Schema.Int.check(Schema.isGreaterThan(0)))

const StoredLimits = Schema.Struct({
  paymentMax: Schema.Struct({ scheduled: Amounts, threshold: Amounts, debt: Amounts }),
  monthlyMax: Amounts,
  clientTimeZone: Schema.String,
})

const decodeLimits = Schema.decodeUnknownOption(StoredLimits)

/** The overrides as stored; a value that cannot be read is reported, never guessed at. */
export interface Overrides {
  readonly limits: LimitSettings | null
  readonly retryScheduleMs: ReadonlyArray<number> | null
  readonly retrySchedule: string | null
  readonly updatedAt: Date | null
  readonly updatedBy: string | null
  /** Why a stored value was ignored (someone wrote it outside the console), if one was. */
  readonly problems: ReadonlyArray<string>
}

/** Why `limits` cannot be stored, or undefined. */
export const checkLimits = (limits: LimitSettings): string | undefined => {
  const all = [
    limits.paymentMax.scheduled,
    limits.paymentMax.threshold,
    limits.paymentMax.debt,
    limits.monthlyMax,
  ]
  for (const amounts of all) {
    for (const [currency, value] of Object.entries(amounts)) {
      if (!isKnownCurrency(currency)) return `${currency} is not an ISO 4217 currency code`
      if (!Number.isSafeInteger(value) || value <= 0)
        return `the ${currency} amount must be a positive whole number of minor units`
    }
  }
  return isTimeZoneName(limits.clientTimeZone)
    ? undefined
    : `${limits.clientTimeZone} is not an IANA time zone`
}

/** Nothing overridden: the environment's settings are in force. */
export const noOverrides: Overrides = {
  limits: null,
  retryScheduleMs: null,
  retrySchedule: null,
  updatedAt: null,
  updatedBy: null,
  problems: [],
}

export const readOverrides = async (db: Kysely<Tables>): Promise<Overrides> => {
  const row = await db.selectFrom("engine_settings").selectAll().where("id", "=", 1).executeTakeFirst()
  if (row === undefined) return noOverrides
  const problems: Array<string> = []
  let limits: LimitSettings | null = null
  if (row.limits !== null) {
    const decoded = decodeLimits(row.limits)
    const problem =
      decoded._tag === "Some" ? checkLimits(decoded.value) : "it does not have the expected shape"
    if (problem === undefined && decoded._tag === "Some") limits = decoded.value
    else problems.push(`the stored limits override is ignored: ${problem}`)
  }
  let retryScheduleMs: ReadonlyArray<number> | null = null
  if (row.retry_schedule !== null) {
    const parsed = Ranges.parseRetrySchedule(row.retry_schedule)
    if (typeof parsed === "string")
      problems.push(`the stored retry schedule "${row.retry_schedule}" is ignored: ${parsed}`)
    else retryScheduleMs = parsed
  }
  return {
    limits,
    retryScheduleMs,
    retrySchedule: retryScheduleMs === null ? null : row.retry_schedule,
    updatedAt: row.updated_at,
    updatedBy: row.updated_by,
    problems,
  }
}

/** Sets (or, with null, drops) one override; the other is kept. */
export const writeOverride = async (
  db: Kysely<Tables>,
  change: { readonly limits: LimitSettings | null } | { readonly retrySchedule: string | null },
  by: string,
): Promise<void> => {
  const limits =
    "limits" in change ? (change.limits === null ? null : JSON.stringify(change.limits)) : undefined
  const retry = "retrySchedule" in change ? change.retrySchedule : undefined
  await sql`
    INSERT INTO engine_settings (id, limits, retry_schedule, updated_by)
    VALUES (1, ${limits ?? null}::jsonb, ${retry ?? null}, ${by})
    ON CONFLICT (id) DO UPDATE SET
      limits = ${limits === undefined ? sql`engine_settings.limits` : sql`EXCLUDED.limits`},
      retry_schedule = ${retry === undefined ? sql`engine_settings.retry_schedule` : sql`EXCLUDED.retry_schedule`},
      updated_at = now(), updated_by = EXCLUDED.updated_by`.execute(db)
}
