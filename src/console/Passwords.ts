/**
 * Operator passwords: scrypt with a random salt, the cost parameters stored
 * with the hash (`scrypt$N$r$p$salt$key`) so they can be raised later
 * without invalidating older hashes, compared in constant time.
 */
import { randomBytes, scrypt, timingSafeEqual } from "node:crypto"

/** Cost parameters for new hashes: N=2^15, r=8 (~32 MiB, ~50 ms on a laptop core). */
const COST = { N: 32_768, r: 8, p: 1 } as const
const KEY_BYTES = 32
const SALT_BYTES = 16

/** Shortest password accepted; long passphrases beat complexity rules. */
export const MIN_PASSWORD_LENGTH = 12
export const MAX_PASSWORD_LENGTH = 256

const derive = (password: string, salt: Buffer, cost: { N: number; r: number; p: number }) =>
  new Promise<Buffer>((resolve, reject) =>
    scrypt(
      password.normalize("NFC"),
      salt,
      KEY_BYTES,
      { ...cost, maxmem: 256 * cost.N * cost.r },
      (error, key) => (error === null ? resolve(key) : reject(error)),
    ),
  )

/** Why a password cannot be used, or undefined. */
export const checkPassword = (password: string): string | undefined => {
  if (password.length < MIN_PASSWORD_LENGTH) return `must be at least ${MIN_PASSWORD_LENGTH} characters`
  if (password.length > MAX_PASSWORD_LENGTH) return `must be at most ${MAX_PASSWORD_LENGTH} characters`
  return undefined
}

/** A new salted hash of `password`, with its parameters. */
export const hashPassword = async (password: string): Promise<string> => {
  const salt = randomBytes(SALT_BYTES)
  const key = await derive(password, salt, COST)
  return ["scrypt", COST.N, COST.r, COST.p, salt.toString("base64url"), key.toString("base64url")].join("$")
}

/** True when `password` matches `stored`; false for a wrong password or a hash this code cannot read. */
export const verifyPassword = async (password: string, stored: string): Promise<boolean> => {
  const [scheme, n, r, p, salt, key] = stored.split("$")
  if (scheme !== "scrypt" || salt === undefined || key === undefined) return false
  const cost = { N: Number(n), r: Number(r), p: Number(p) }
  if (![cost.N, cost.r, cost.p].every((value) => Number.isSafeInteger(value) && value > 0)) return false
  const expected = Buffer.from(key, "base64url")
  const actual = await derive(password, Buffer.from(salt, "base64url"), cost)
  return actual.length === expected.length && timingSafeEqual(actual, expected)
}

/**
 * A hash of a password nobody knows: an unknown login is checked against it so that it takes as
 * long as a wrong password for a real one, and response times do not tell which logins exist.
 */
export const decoyHash = (): Promise<string> => {
  decoy ??= hashPassword(randomBytes(24).toString("base64url"))
  return decoy
}
let decoy: Promise<string> | undefined
