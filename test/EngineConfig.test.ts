import { ConfigProvider, Effect, Redacted } from "effect"
import { describe, expect, it } from "vitest"
import { defaultSettings, type EngineSettings, settingsFromEnvironment } from "../src/EngineConfig.ts"

const read = (env: Record<string, string>) =>
  Effect.runPromise(
    Effect.result(
      Effect.gen(function* () {
        return yield* settingsFromEnvironment
      }).pipe(Effect.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env })))),
    ),
  )

const settingsOf = async (env: Record<string, string>): Promise<EngineSettings> => {
  const result = await read(env)
  if (result._tag === "Failure") throw new Error(String(result.failure))
  return result.success
}

describe("configuration from the environment", () => {
  it("falls back to documented defaults", async () => {
    const settings = await settingsOf({})
    expect({ ...settings, databaseUrl: Redacted.value(settings.databaseUrl) }).toEqual({
      ...defaultSettings,
      databaseUrl: "postgres://postgres@127.0.0.1:5432/rp",
    })
    expect(settings.retryScheduleMs).toEqual([3_600_000, 21_600_000, 86_400_000])
    expect(settings.resultTimeoutMs).toBe(900_000)
  })

  it("reads ISO 8601 durations, lists and prefixes", async () => {
    const settings = await settingsOf({
      RP_CLOCK: "off",
      RP_TICK_INTERVAL: "PT30S",
      RP_CATCH_UP_WINDOW: "PT12H",
      RP_RETRY_SCHEDULE: "PT10M, PT1H",
      RP_SUBJECT_PREFIX: "bank1.rp",
      RP_STREAM_PREFIX: "BANK1_",
      RP_COMMIT_BATCH: "250",
      RP_CONSOLE_TRUSTED_PROXIES: "10.0.4.10, 10.0.5.0/24,fd00::/8",
      RP_CONSOLE_ADDRESS_ATTEMPTS: "8",
      RP_CONSOLE_ADDRESS_WINDOW: "PT5M",
    })
    expect(settings).toMatchObject({
      clock: "off",
      tickIntervalMs: 30_000,
      catchUpWindowMs: 43_200_000,
      retryScheduleMs: [600_000, 3_600_000],
      naming: { rpPrefix: "bank1.rp", streamPrefix: "BANK1_", hubPrefix: "hub", providerPrefix: "provider" },
      commitBatchSize: 250,
      consoleTrustedProxies: ["10.0.4.10", "10.0.5.0/24", "fd00::/8"],
      consoleAddressAttempts: 8,
      consoleAddressWindowMs: 300_000,
    })
  })

  it("takes a retry schedule of 1 to 20 delays from PT1M to P30D", async () => {
    expect((await settingsOf({ RP_RETRY_SCHEDULE: "PT1M,P30D" })).retryScheduleMs).toEqual([
      60_000,
      30 * 86_400_000,
    ])
    const twenty = await settingsOf({ RP_RETRY_SCHEDULE: Array.from({ length: 20 }, () => "PT1H").join(",") })
    expect(twenty.retryScheduleMs).toHaveLength(20)
  })

  it("refuses values that are not what they claim to be", async () => {
    for (const env of [
      { RP_CLOCK: "sometimes" },
      { RP_TICK_INTERVAL: "1 minute" },
      { RP_RETRY_SCHEDULE: "PT1H,,PT2H" },
      { RP_RETRY_SCHEDULE: "PT59S" },
      { RP_RETRY_SCHEDULE: "PT1H,P31D" },
      { RP_RETRY_SCHEDULE: Array.from({ length: 21 }, () => "PT1H").join(",") },
      { RP_COMMIT_BATCH: "0" },
      { RP_COMMIT_BATCH: "many" },
      { RP_CONSOLE_TRUSTED_PROXIES: "proxy.bank.local" },
      { RP_CONSOLE_TRUSTED_PROXIES: "10.0.0.0/33" },
      { RP_CONSOLE_ADDRESS_ATTEMPTS: "0" },
    ]) {
      const result = await read(env)
      expect([env, result._tag]).toEqual([env, "Failure"])
    }
  })

  it("keeps the cluster secrets redacted, and refuses a short one without printing it", async () => {
    const secret = "Zm9yIHRlc3RzIG9ubHk6IGEgY2x1c3RlciBzZWNyZXQ="
    const settings = await settingsOf({
      RP_CLUSTER_SECRET: secret,
      RP_CLUSTER_SECRET_ACCEPTED: `${secret}-old`,
    })
    expect(Redacted.value(settings.clusterSecret)).toBe(secret)
    expect(Redacted.value(settings.clusterSecretAccepted)).toBe(`${secret}-old`)
    expect(String(settings.clusterSecret)).not.toContain(secret)
    expect(JSON.stringify(settings)).not.toContain(secret)
    expect(Redacted.value((await settingsOf({})).clusterSecret)).toBe("")

    const short = await read({ RP_CLUSTER_SECRET: "too-short-to-sign-with" })
    expect(short._tag).toBe("Failure")
    if (short._tag === "Failure") {
      expect(String(short.failure)).toMatch(/at least 32 characters/)
      expect(String(short.failure)).not.toContain("too-short-to-sign-with")
    }
  })
})
