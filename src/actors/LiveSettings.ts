/**
 * The spending limits and the retry schedule in force: the environment's
 * (`RP_LIMIT_*`, `RP_CLIENT_TIMEZONE`, `RP_RETRY_SCHEDULE`) unless an admin
 * has overridden them in the console (store/SettingsOverrides.ts).
 *
 * Every instance holds them in memory, read synchronously on the hot path.
 * The table's trigger notifies `rp_engine_settings` on any change, so
 * instances re-read at once; they also re-read every `RP_SETTINGS_REFRESH`
 * (default 5 s) in case a notification is lost. A stored value that cannot
 * be read is logged and ignored: the environment's stays in force.
 */
import { Context, Effect, Layer } from "effect"
import { EngineConfig, type EngineSettings } from "../EngineConfig.ts"
import { Database } from "../store/Database.ts"
import { keepFresh } from "../store/KeptFresh.ts"
import {
  noOverrides,
  type Overrides,
  readOverrides,
  SETTINGS_NOTIFICATION,
} from "../store/SettingsOverrides.ts"
import type { PolicySettings } from "./Inputs.ts"
import type { LimitSettings } from "./Limits.ts"

/** The settings in force, and where each came from. */
export interface InForce {
  readonly limits: LimitSettings
  readonly policy: PolicySettings
  readonly limitsFrom: "environment" | "console"
  readonly retryScheduleFrom: "environment" | "console"
  readonly overrides: Overrides
}

/** What is in force given the environment and the stored overrides. */
export const inForce = (config: EngineSettings, overrides: Overrides): InForce => ({
  limits: overrides.limits ?? config.limits,
  policy: {
    catchUpWindowMs: config.catchUpWindowMs,
    noticeLeadMs: config.noticeLeadMs,
    retryScheduleMs: overrides.retryScheduleMs ?? config.retryScheduleMs,
    resultTimeoutMs: config.resultTimeoutMs,
    statusQueryBackoffMs: config.statusQueryBackoffMs,
    autoPauseAfterFailures: config.autoPauseAfterFailures,
    debtQueryTimeoutMs: config.debtQueryTimeoutMs,
  },
  limitsFrom: overrides.limits === null ? "environment" : "console",
  retryScheduleFrom: overrides.retryScheduleMs === null ? "environment" : "console",
  overrides,
})

export class LiveSettings extends Context.Service<
  LiveSettings,
  {
    /** The settings in force now; a plain read, cheap enough for every message. */
    readonly current: () => InForce
    /** Reads the overrides from the database now. */
    readonly reload: Effect.Effect<void>
  }
>()("rp/actors/LiveSettings") {
  /** The environment's settings only, whatever the database says (tests of other parts). */
  static readonly layerEnvironment = Layer.effect(
    LiveSettings,
    Effect.gen(function* () {
      const settings = inForce(yield* EngineConfig, noOverrides)
      return LiveSettings.of({ current: () => settings, reload: Effect.void })
    }),
  )

  static readonly layer = Layer.effect(
    LiveSettings,
    Effect.gen(function* () {
      const config = yield* EngineConfig
      const database = yield* Database
      let current = inForce(config, noOverrides)
      let described = ""

      const reload = Effect.gen(function* () {
        const overrides = yield* database.use(readOverrides)
        current = inForce(config, overrides)
        const description = JSON.stringify([
          current.limits,
          current.policy.retryScheduleMs,
          overrides.problems,
        ])
        if (description === described) return
        described = description
        for (const problem of overrides.problems) yield* Effect.logError(problem)
        yield* Effect.logInfo("limits and retry schedule in force").pipe(
          Effect.annotateLogs({
            limits: current.limitsFrom,
            retrySchedule: current.retryScheduleFrom,
            retryScheduleMs: current.policy.retryScheduleMs.join(","),
          }),
        )
      })

      yield* reload

      yield* keepFresh({
        databaseUrl: config.databaseUrl,
        notification: SETTINGS_NOTIFICATION,
        everyMs: config.settingsRefreshMs,
        reload,
        what: "the settings overrides",
      })

      return LiveSettings.of({ current: () => current, reload })
    }),
  )
}
