/** Operator password hashes: salted, parameters kept with the hash, and only the right password matches. */
import { describe, expect, it } from "vitest"
import { checkPassword, hashPassword, verifyPassword } from "../../src/console/Passwords.ts"

describe("operator passwords", () => {
  it("hash with a fresh salt each time and verify only the right password", async () => {
    const [first, second] = await Promise.all([
      hashPassword("correct horse battery"),
      hashPassword("correct horse battery"),
    ])
    expect(first).not.toBe(second)
    expect(first.split("$").slice(0, 4)).toEqual(["scrypt", "32768", "8", "1"])
    expect(await verifyPassword("correct horse battery", first)).toBe(true)
    expect(await verifyPassword("correct horse batterY", first)).toBe(false)
    expect(await verifyPassword("", first)).toBe(false)
  })

  it("verify against the parameters stored with the hash, and refuse hashes they cannot read", async () => {
    const stored = await hashPassword("correct horse battery")
    const [, , , , salt] = stored.split("$")
    // A hash made with other (older, cheaper) parameters still verifies: the parameters travel with it.
    const cheap = await new Promise<string>((resolve, reject) =>
      import("node:crypto").then(({ scrypt }) =>
        scrypt(
          "correct horse battery",
          Buffer.from(salt ?? "", "base64url"),
          32,
          { N: 1024, r: 8, p: 1 },
          (error, key) =>
            error === null ? resolve(`scrypt$1024$8$1$${salt}$${key.toString("base64url")}`) : reject(error),
        ),
      ),
    )
    expect(await verifyPassword("correct horse battery", cheap)).toBe(true)
    expect(await verifyPassword("correct horse battery", "plain-text")).toBe(false)
    expect(await verifyPassword("correct horse battery", "scrypt$0$8$1$c2FsdA$a2V5")).toBe(false)
    expect(await verifyPassword("correct horse battery", stored.slice(0, -4))).toBe(false)
  })

  it("refuse passwords shorter than 12 characters", () => {
    expect(checkPassword("short")).toContain("at least 12")
    expect(checkPassword("twelve chars")).toBeUndefined()
  })
})
