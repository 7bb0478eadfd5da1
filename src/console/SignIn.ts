/**
 * Checking a sign-in: the lock-out per account, the throttle per source
 * address, and answers that do not tell which logins exist.
 *
 * - Every attempt costs exactly one scrypt check, whatever the login: an
 *   unknown, disabled or locked one is checked against a decoy hash or its
 *   own, so all refusals take the same time and get the same answer.
 * - The lock is read again after that slow check, in the statement that
 *   opens the session: wrong guesses sent in parallel with the right one
 *   lock the account before the right one gets in.
 * - An address (IPv4, or an IPv6 /64) is charged for an attempt before its
 *   password is checked, in Postgres so every instance counts the same; past
 *   the limit it gets no check at all until its window ends. One address can
 *   then lock out only a few operators, not all of them.
 */
import { BlockList, isIP, isIPv4 } from "node:net"
import type { Kysely } from "kysely"
import {
  chargeSignInAttempt,
  findOperator,
  LOGIN,
  MAX_FAILED_LOGINS,
  type NewSession,
  openSession,
  recordFailedLogin,
  refundSignInAttempt,
  writeAudit,
} from "../store/OperatorStore.ts"
import type { Tables } from "../store/Tables.ts"
import { decoyHash, verifyPassword } from "./Passwords.ts"

export interface SignInPolicy {
  /** Sign-in attempts (failed ones; successes are taken back) one address may make in a window. */
  readonly addressAttempts: number
  readonly addressWindowMs: number
  /** Checks a password against a stored hash; tests count the checks through it. */
  readonly verifyPassword?: ((password: string, stored: string) => Promise<boolean>) | undefined
}

export type SignInOutcome =
  | { readonly _tag: "SignedIn"; readonly session: NewSession }
  /** Wrong login or password, or locked, or disabled: the caller is not told which. */
  | { readonly _tag: "Refused" }
  /** Too many attempts from this address: nothing was checked. */
  | { readonly _tag: "Throttled"; readonly until: Date }

export const attemptSignIn = async (
  db: Kysely<Tables>,
  policy: SignInPolicy,
  attempt: { readonly login: string; readonly password: string; readonly source: string },
): Promise<SignInOutcome> => {
  const { login, password, source } = attempt
  const charged = await chargeSignInAttempt(db, source, policy.addressWindowMs)
  if (charged.attempts > policy.addressAttempts) return { _tag: "Throttled", until: charged.windowEndsAt }
  const operator = LOGIN.test(login) ? await findOperator(db, login) : undefined
  const usable = operator !== undefined && operator.disabledAt === null ? operator : undefined
  const verify = policy.verifyPassword ?? verifyPassword
  const matches = await verify(password, usable?.passwordHash ?? (await decoyHash()))
  if (usable === undefined) return { _tag: "Refused" }
  if (!matches) {
    const lockedUntil = await recordFailedLogin(db, login)
    if (lockedUntil !== null) {
      await writeAudit(db, {
        operator: login,
        action: "session.locked_out",
        target: login,
        clientId: null,
        reason: null,
        details: { failures: MAX_FAILED_LOGINS, lockedUntil: lockedUntil.toISOString(), source },
      })
    }
    return { _tag: "Refused" }
  }
  // The right password: still refused while the account is locked, and then the count stays as it is.
  const session = await openSession(db, login)
  if (session === undefined) return { _tag: "Refused" }
  await refundSignInAttempt(db, source)
  return { _tag: "SignedIn", session }
}

/** Addresses that may say whom they forward for (`X-Forwarded-For`): addresses or CIDR ranges. */
export const trustedProxyList = (entries: ReadonlyArray<string>): BlockList => {
  const list = new BlockList()
  for (const entry of entries) {
    const [address = "", prefix] = entry.split("/")
    const family = isIPv4(address) ? "ipv4" : "ipv6"
    if (prefix === undefined) list.addAddress(address, family)
    else list.addSubnet(address, Number(prefix), family)
  }
  return list
}

const IPV4_MAPPED = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i

/** An IPv6 address's first 64 bits: one subscriber usually holds a whole /64. */
const ipv6Prefix = (address: string): string => {
  const [head = "", tail] = address.toLowerCase().split("::")
  const groupsOf = (part: string) => (part === "" ? [] : part.split(":"))
  const left = groupsOf(head)
  const right = tail === undefined ? [] : groupsOf(tail)
  // A dotted IPv4 tail takes two groups.
  const rightGroups = right.reduce((sum, group) => sum + (group.includes(".") ? 2 : 1), 0)
  const groups = [...left, ...Array(Math.max(0, 8 - left.length - rightGroups)).fill("0"), ...right]
  return `${groups
    .slice(0, 4)
    .map((group) => Number.parseInt(group, 16).toString(16))
    .join(":")}::/64`
}

/** The key an address is counted under: an IPv4 address, or an IPv6 address's /64. */
const sourceKey = (address: string): string => {
  const mapped = IPV4_MAPPED.exec(address)
  if (mapped?.[1] !== undefined) return mapped[1]
  return isIPv4(address) ? address : ipv6Prefix(address)
}

const isTrusted = (trusted: BlockList, address: string): boolean => {
  const mapped = IPV4_MAPPED.exec(address)?.[1]
  if (mapped !== undefined) return trusted.check(mapped, "ipv4") || trusted.check(address, "ipv6")
  return isIPv4(address) ? trusted.check(address, "ipv4") : trusted.check(address, "ipv6")
}

/**
 * Whom a sign-in comes from. The connection's peer, unless the peer is a trusted proxy: then the
 * nearest address in `X-Forwarded-For` (read from the right, as each proxy appends) that is not a
 * trusted proxy itself. Anything left of that was written by the client and is never believed.
 */
export const sourceAddress = (
  peer: string | undefined,
  forwardedFor: string | undefined,
  trusted: BlockList,
): string => {
  if (peer === undefined || isIP(peer) === 0) return "unknown"
  if (forwardedFor === undefined || !isTrusted(trusted, peer)) return sourceKey(peer)
  let client = peer
  for (const hop of forwardedFor
    .split(",")
    .map((entry) => entry.trim())
    .reverse()) {
    if (isIP(hop) === 0) break
    client = hop
    if (!isTrusted(trusted, hop)) break
  }
  return sourceKey(client)
}
