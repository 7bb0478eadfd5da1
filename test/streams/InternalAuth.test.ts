/** The MAC on messages between instances: what it covers and what it refuses. */
import { headers } from "@nats-io/transport-node"
import { describe, expect, it } from "vitest"
import {
  FRESHNESS_WINDOW_MS,
  INTERNAL_MAC_HEADER,
  secretBytes,
  signMessage,
  verifyMessage,
} from "../../src/streams/InternalAuth.ts"

const secret = secretBytes("a cluster secret of at least thirty-two characters")
const other = secretBytes("another cluster secret, also thirty-two characters")
const subject = "rp.internal.partition.3.console"
const payload = new TextEncoder().encode('{"name":"subscription.pause"}')
const now = 1_800_000_000_000

const signed = (extra: Record<string, string> = {}, at = now) => {
  const carried = headers()
  for (const [name, value] of Object.entries(extra)) carried.set(name, value)
  return signMessage(secret, subject, payload, carried, at)
}

describe("internal message MAC", () => {
  it("accepts what it signed, under the current or the second accepted secret", () => {
    expect(verifyMessage([secret], subject, payload, signed(), now)).toMatchObject({ ok: true, at: now })
    expect(verifyMessage([other, secret], subject, payload, signed(), now)).toMatchObject({ ok: true })
  })

  it("refuses a missing, unreadable or doubled header", () => {
    expect(verifyMessage([secret], subject, payload, undefined, now)).toEqual({
      ok: false,
      reason: "unsigned",
    })
    expect(verifyMessage([secret], subject, payload, headers(), now)).toEqual({
      ok: false,
      reason: "unsigned",
    })
    for (const value of ["v1", "v2.1.abcdefgh.xyz", "v1.soon.abcdefgh.xyz", "v1.1.a.b.c"]) {
      const carried = headers()
      carried.set(INTERNAL_MAC_HEADER, value)
      expect(verifyMessage([secret], subject, payload, carried, now)).toEqual({
        ok: false,
        reason: "malformed",
      })
    }
    const doubled = signed()
    doubled.append(INTERNAL_MAC_HEADER, doubled.get(INTERNAL_MAC_HEADER))
    expect(verifyMessage([secret], subject, payload, doubled, now)).toEqual({
      ok: false,
      reason: "malformed",
    })
  })

  it("refuses another secret, another subject, another payload and changed engine headers", () => {
    const wrong = { ok: false, reason: "wrong_mac" }
    expect(verifyMessage([other], subject, payload, signed(), now)).toEqual(wrong)
    expect(verifyMessage([secret], "rp.internal.partition.4.console", payload, signed(), now)).toEqual(wrong)
    expect(verifyMessage([secret], subject, new TextEncoder().encode("{}"), signed(), now)).toEqual(wrong)
    const forwarded = signed({ "Rp-Forwarded-Subject": "rp.v3.mobile", traceparent: "00-aa-bb-01" })
    expect(verifyMessage([secret], subject, payload, forwarded, now)).toMatchObject({ ok: true })
    forwarded.set("Rp-Forwarded-Subject", "rp.v3.atm")
    expect(verifyMessage([secret], subject, payload, forwarded, now)).toEqual(wrong)
    const added = signed()
    added.set("RP-SIGNATURE", "added on the way")
    expect(verifyMessage([secret], subject, payload, added, now)).toEqual(wrong)
    // Headers that are not the engine's (a server's, a library's) may differ.
    const foreign = signed()
    foreign.set("Nats-Something", "x")
    expect(verifyMessage([secret], subject, payload, foreign, now)).toMatchObject({ ok: true })
  })

  it("refuses a message signed outside the freshness window, either way", () => {
    const at = (offset: number) => verifyMessage([secret], subject, payload, signed({}, now + offset), now)
    expect(at(-FRESHNESS_WINDOW_MS)).toMatchObject({ ok: true })
    expect(at(FRESHNESS_WINDOW_MS)).toMatchObject({ ok: true })
    expect(at(-FRESHNESS_WINDOW_MS - 1)).toEqual({ ok: false, reason: "stale" })
    expect(at(FRESHNESS_WINDOW_MS + 1)).toEqual({ ok: false, reason: "stale" })
  })
})
