/**
 * The operator accounts' command line, run as an administrator runs it,
 * against a database of its own: passwords only ever as scrypt hashes,
 * mistakes refused before anything is written, every change audited.
 */
import { spawn } from "node:child_process"
import { Redacted } from "effect"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { World } from "../../harness/World.ts"
import { verifyPassword } from "../../src/console/Passwords.ts"
import { openSession } from "../../src/store/OperatorStore.ts"

describe("npm run operators", () => {
  let env: World
  beforeEach(async () => {
    env = await World.create({}, "cli_operators")
  })
  afterEach(async () => {
    await env.dispose()
  })

  const operators = (args: ReadonlyArray<string>, stdin = "") =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, ["--import", "tsx", "src/cli/operators.ts", ...args], {
        env: { ...process.env, DATABASE_URL: Redacted.value(env.settings.databaseUrl) },
      })
      let stdout = ""
      let stderr = ""
      child.stdout.on("data", (chunk: Buffer) => {
        stdout += chunk.toString()
      })
      child.stderr.on("data", (chunk: Buffer) => {
        stderr += chunk.toString()
      })
      child.on("close", (code) => resolve({ code, stdout, stderr }))
      child.stdin.end(stdin)
    })

  const row = (login: string) =>
    env.db.selectFrom("operators").selectAll().where("login", "=", login).executeTakeFirst()

  it("adds the first admin from standard input, lists, changes roles, disables and resets, auditing each", async () => {
    const added = await operators(
      ["add", "anna", "--role", "admin", "--password-stdin"],
      "a long enough passphrase\n",
    )
    expect(added).toMatchObject({
      code: 0,
      stdout: expect.stringContaining('operator "anna" added as admin'),
    })
    const stored = await row("anna")
    expect(stored?.password_hash).toMatch(/^scrypt\$32768\$8\$1\$/)
    expect(stored?.password_hash).not.toContain("passphrase")
    expect(await verifyPassword("a long enough passphrase", stored?.password_hash ?? "")).toBe(true)

    expect((await operators(["set-role", "anna", "--role", "operator"])).code).toBe(0)
    expect((await row("anna"))?.role).toBe("operator")

    await openSession(env.db, "anna")
    expect((await operators(["disable", "anna"])).code).toBe(0)
    expect((await row("anna"))?.disabled_at).not.toBeNull()
    expect(await env.db.selectFrom("operator_sessions").selectAll().execute()).toEqual([])
    await env.db.updateTable("operators").set({ disabled_at: null }).execute()

    await env.db
      .updateTable("operators")
      .set({ locked_until: new Date(Date.now() + 600_000) })
      .execute()
    expect(
      (await operators(["reset-password", "anna", "--password-stdin"], "a brand new passphrase\n")).code,
    ).toBe(0)
    const reset = await row("anna")
    expect(reset?.locked_until).toBeNull()
    expect(await verifyPassword("a brand new passphrase", reset?.password_hash ?? "")).toBe(true)

    const listed = JSON.parse((await operators(["list", "--json"])).stdout) as Array<Record<string, unknown>>
    expect(listed).toMatchObject([{ login: "anna", role: "operator", state: "active" }])
    expect(listed[0]).not.toHaveProperty("passwordHash")
    const audit = await env.db.selectFrom("audit_log").select(["action", "target"]).orderBy("id").execute()
    expect(audit.map((entry) => entry.action)).toEqual([
      "operator.add",
      "operator.set_role",
      "operator.disable",
      "operator.reset_password",
    ])
  })

  it("refuses a bad login, role or short password with the usage, writing nothing", async () => {
    // Independent refusals, run side by side to keep the test short.
    const [badLogin, badRole, short, unknown] = await Promise.all([
      operators(["add", "Anna Admin", "--role", "admin", "--password-stdin"], "a long enough passphrase\n"),
      operators(["add", "anna", "--role", "root", "--password-stdin"], "a long enough passphrase\n"),
      operators(["add", "anna", "--role", "admin", "--password-stdin"], "short\n"),
      operators(["disable", "nobody"]),
    ])
    expect(badLogin).toMatchObject({ code: 2, stderr: expect.stringContaining("lower-case letters") })
    expect(badRole).toMatchObject({ code: 2, stderr: expect.stringContaining("--role must be one of") })
    expect(short).toMatchObject({ code: 2, stderr: expect.stringContaining("at least 12 characters") })
    expect(unknown).toMatchObject({ code: 1, stderr: expect.stringContaining("does not exist") })
    // The database is created and migrated by the first command that reaches it; none of these wrote a row.
    expect(await env.db.selectFrom("operators").selectAll().execute()).toEqual([])
  })
})
