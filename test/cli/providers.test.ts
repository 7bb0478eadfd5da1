/**
 * The provider registry's command line, run as an operator runs it, against
 * a database of its own.
 */
import { execFile } from "node:child_process"
import { promisify } from "node:util"
import { Redacted } from "effect"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { World } from "../../harness/World.ts"

const run = promisify(execFile)

describe("npm run providers", () => {
  let env: World
  beforeEach(async () => {
    env = await World.create({}, "cli")
  })
  afterEach(async () => {
    await env.dispose()
  })

  const providers = (...args: ReadonlyArray<string>) =>
    run(process.execPath, ["--import", "tsx", "src/cli/providers.ts", ...args], {
      env: { ...process.env, DATABASE_URL: Redacted.value(env.settings.databaseUrl) },
    }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (error: { code: number; stdout: string; stderr: string }) => ({
        code: error.code,
        stdout: error.stdout,
        stderr: error.stderr,
      }),
    )

  it("saves, lists, replaces and removes providers, and refuses a bad command line without writing", async () => {
    expect((await providers("list")).stdout).toContain("no provider registered")
    const saved = await providers(
      "set",
      "isp-1",
      "--name",
      "Home internet",
      "--periodic",
      "--remind-after",
      "P14D",
    )
    expect(saved).toMatchObject({ code: 0, stdout: expect.stringContaining('provider "isp-1" saved') })
    await providers("set", "water", "--name", "City water", "--debt")

    const listed = JSON.parse((await providers("list", "--json")).stdout)
    expect(listed).toEqual([
      {
        providerId: "isp-1",
        displayName: "Home internet",
        periodic: true,
        remindAfter: "P14D",
        supportsDebt: false,
        supportsThreshold: false,
      },
      {
        providerId: "water",
        displayName: "City water",
        periodic: false,
        remindAfter: "P30D",
        supportsDebt: true,
        supportsThreshold: false,
      },
    ])

    const badDuration = await providers("set", "isp-2", "--name", "X", "--periodic", "--remind-after", "P1M")
    expect(badDuration).toMatchObject({ code: 2, stderr: expect.stringContaining("--remind-after") })
    const outOfRange = await providers("set", "isp-2", "--name", "X", "--periodic", "--remind-after", "P367D")
    expect(outOfRange).toMatchObject({
      code: 2,
      stderr: expect.stringContaining("must be between P1D and P366D"),
    })
    const badId = await providers("set", "isp.2", "--name", "X")
    expect(badId).toMatchObject({ code: 2, stderr: expect.stringContaining("provider id") })
    expect((await env.db.selectFrom("providers").select("provider_id").execute()).length).toBe(2)

    expect(await providers("remove", "water")).toMatchObject({ code: 0 })
    expect(await providers("remove", "water")).toMatchObject({
      code: 1,
      stderr: expect.stringContaining("not registered"),
    })
    const left = await env.db.selectFrom("providers").select("provider_id").execute()
    expect(left.map((row) => row.provider_id)).toEqual(["isp-1"])
  })
})
