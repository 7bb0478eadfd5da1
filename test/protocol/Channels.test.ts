/**
 * Channel keys and the authorization rules, without a server: nkeys decoded
 * as the NATS tools write them, signatures over exact bytes, the replay
 * window and the permission patterns.
 */
import { generateKeyPairSync } from "node:crypto"
import { describe, expect, it } from "vitest"
import {
  checkSignature,
  parsePublicKey,
  privateKeyFromSeed,
  publicKeyObject,
  rawPublicKeyOf,
  signatureHeaderFor,
  userNkeyOf,
} from "../../src/protocol/ChannelKeys.ts"
import {
  authorizeWith,
  type ChannelRequest,
  checkOperationPattern,
  KNOWN_OPERATIONS,
  operationAllowed,
  registryOf,
} from "../../src/protocol/Channels.ts"
import type { ChannelRow } from "../../src/store/ChannelStore.ts"

// Made with @nats-io/nkeys 2.0.3 (createUser, sign "hello"), so this decoder agrees with the NATS tools.
const SEED = "SUAMSKYMWIXPZDSSL64C6JWW5XMXDKOA3ZD3TVAGYMXNEP6SZDO5P55BZA"
const NKEY = "UAGXHMJNIO2DMDM5I6STHRITUZVVL4P3MXHFNLWFZXH73AHGG5NHVQRZ"
const HELLO_SIGNATURE =
  "ed25519:VGYTj4lR8jwQoRCCMkj6ROP2F6I0FXGBQj3ZREuLQ5ZzetCyXItwnK00o7WmwYsEkTHvOSG8FTFpeiT66MNpDA=="
const ACCOUNT_NKEY = "ADMVA4NPHE5FHSNGPDRG5T7RHD2GNZRBB4P4X37UZHDJDTHNZOPDLXXK"

const bytes = (text: string) => new TextEncoder().encode(text)

const keyOf = (text: string) => {
  const parsed = parsePublicKey(text)
  if (parsed._tag !== "Key") throw new Error(parsed.reason)
  return parsed
}

describe("channel keys", () => {
  it("decodes an nkey and verifies a signature the NATS library made", () => {
    const parsed = keyOf(NKEY)
    expect(parsed.form).toBe("nkey")
    expect(checkSignature(HELLO_SIGNATURE, bytes("hello"), publicKeyObject(parsed.raw))).toBeUndefined()
    expect(checkSignature(HELLO_SIGNATURE, bytes("hello!"), publicKeyObject(parsed.raw))).toMatch(
      /does not verify/,
    )
  })

  it("derives the same key from the seed, and signs as the NATS library does", () => {
    const privateKey = privateKeyFromSeed(SEED)
    expect(userNkeyOf(rawPublicKeyOf(privateKey))).toBe(NKEY)
    expect(signatureHeaderFor(bytes("hello"), privateKey)).toBe(HELLO_SIGNATURE)
  })

  it("reads raw keys as base64, base64url and hex, all the same key", () => {
    const raw = keyOf(NKEY).raw
    const forms = [
      Buffer.from(raw).toString("base64"),
      Buffer.from(raw).toString("base64url"),
      Buffer.from(raw).toString("hex"),
    ]
    for (const form of forms) {
      const parsed = keyOf(form)
      expect(parsed.form).toBe("raw")
      expect(Buffer.from(parsed.raw).equals(Buffer.from(raw))).toBe(true)
    }
    expect(keyOf(ACCOUNT_NKEY).form).toBe("nkey")
  })

  it("refuses seeds, corrupted nkeys and text that is no key", () => {
    expect(parsePublicKey(SEED)).toMatchObject({ _tag: "Invalid", reason: expect.stringMatching(/SEED/) })
    const corrupted = `${NKEY.slice(0, 20)}${NKEY[20] === "A" ? "B" : "A"}${NKEY.slice(21)}`
    expect(parsePublicKey(corrupted)).toMatchObject({
      _tag: "Invalid",
      reason: expect.stringMatching(/checksum/),
    })
    expect(parsePublicKey("not a key")._tag).toBe("Invalid")
    expect(parsePublicKey(Buffer.alloc(31).toString("base64"))._tag).toBe("Invalid")
  })

  it("refuses a missing, malformed or foreign signature", () => {
    const key = publicKeyObject(keyOf(NKEY).raw)
    const other = generateKeyPairSync("ed25519").privateKey
    expect(checkSignature(undefined, bytes("hello"), key)).toMatch(/no Rp-Signature/)
    expect(checkSignature("rsa:abc", bytes("hello"), key)).toMatch(/must be "ed25519:/)
    expect(checkSignature("ed25519:AAAA", bytes("hello"), key)).toMatch(/64-byte/)
    expect(checkSignature(signatureHeaderFor(bytes("hello"), other), bytes("hello"), key)).toMatch(
      /does not verify/,
    )
  })
})

describe("authorization", () => {
  const now = Date.parse("2026-12-01T10:00:00Z")
  const window = 5 * 60_000
  const signer = generateKeyPairSync("ed25519").privateKey
  const row = (overrides: Partial<ChannelRow>): ChannelRow => ({
    id: "mobile",
    displayName: "Mobile bank",
    operations: ["*"],
    publicKey: null,
    disabledAt: null,
    createdAt: new Date(now),
    updatedAt: new Date(now),
    keyRotatedAt: null,
    ...overrides,
  })
  const registry = registryOf(
    [
      row({ id: "mobile", publicKey: userNkeyOf(rawPublicKeyOf(signer)) }),
      row({ id: "atm", operations: ["subscription.get", "subscription.pause", "template.*"] }),
      row({ id: "kiosk", disabledAt: new Date(now) }),
      row({ id: "broken", publicKey: "garbage" }),
    ],
    "on",
  )
  const request = (overrides: Partial<ChannelRequest> & { sign?: boolean }): ChannelRequest => {
    const data = bytes(JSON.stringify({ sentAt: overrides.sentAt ?? "2026-12-01T10:00:00Z" }))
    return {
      channel: "mobile",
      operation: "subscription.create",
      sentAt: "2026-12-01T10:00:00Z",
      data,
      signature: overrides.sign === false ? undefined : signatureHeaderFor(data, signer),
      ...overrides,
    }
  }

  it("accepts the five development channels only while nothing is registered", () => {
    const open = registryOf([], "on")
    expect(authorizeWith(open, request({ channel: "cashier", sign: false }), now, window)).toBeUndefined()
    expect(authorizeWith(open, request({ channel: "kiosk", sign: false }), now, window)?.message).toMatch(
      /not registered/,
    )
    const closed = registryOf([], "off")
    expect(authorizeWith(closed, request({ channel: "mobile", sign: false }), now, window)?.message).toMatch(
      /not registered/,
    )
    expect(
      authorizeWith(registry, request({ channel: "internet", sign: false }), now, window)?.message,
    ).toMatch(/not registered/)
  })

  it("requires a good signature from a channel with a key", () => {
    expect(authorizeWith(registry, request({}), now, window)).toBeUndefined()
    expect(authorizeWith(registry, request({ sign: false }), now, window)?.message).toMatch(/no Rp-Signature/)
    const tampered = { ...request({}), data: bytes('{"sentAt":"2026-12-01T10:00:00Z" }') }
    expect(authorizeWith(registry, tampered, now, window)?.message).toMatch(/does not verify/)
    expect(authorizeWith(registry, request({ channel: "broken" }), now, window)?.message).toMatch(
      /no usable key/,
    )
  })

  it("refuses a signed request outside the replay window, on either side", () => {
    const at = (offsetMs: number) => new Date(now + offsetMs).toISOString()
    expect(authorizeWith(registry, request({ sentAt: at(-window) }), now, window)).toBeUndefined()
    expect(authorizeWith(registry, request({ sentAt: at(window) }), now, window)).toBeUndefined()
    expect(authorizeWith(registry, request({ sentAt: at(-window - 1) }), now, window)?.message).toMatch(
      /replay protection/,
    )
    expect(authorizeWith(registry, request({ sentAt: at(window + 1) }), now, window)?.message).toMatch(
      /replay protection/,
    )
    // An offset is honoured: 12:59:00+03:00 is one minute before 10:00Z.
    expect(
      authorizeWith(registry, request({ sentAt: "2026-12-01T12:59:00+03:00" }), now, window),
    ).toBeUndefined()
  })

  it("refuses a disabled channel and an operation the channel may not use", () => {
    expect(authorizeWith(registry, request({ channel: "kiosk", sign: false }), now, window)?.message).toMatch(
      /disabled/,
    )
    const atm = (operation: string) => request({ channel: "atm", operation, sign: false })
    expect(authorizeWith(registry, atm("subscription.pause"), now, window)).toBeUndefined()
    expect(authorizeWith(registry, atm("template.delete"), now, window)).toBeUndefined()
    expect(authorizeWith(registry, atm("subscription.create"), now, window)?.message).toMatch(
      /may not perform "subscription.create"/,
    )
  })

  it("matches permission patterns by name, group and wildcard", () => {
    expect(operationAllowed(["subscription.*"], "subscription.cancel")).toBe(true)
    expect(operationAllowed(["subscription.*"], "template.list")).toBe(false)
    expect(operationAllowed(["subscription.get"], "subscription.getAll")).toBe(false)
    expect(operationAllowed(["*"], "anything")).toBe(true)
    expect(operationAllowed([], "template.list")).toBe(false)
    for (const name of KNOWN_OPERATIONS) expect(checkOperationPattern(name)).toBeUndefined()
    expect(checkOperationPattern("payment.*")).toBeUndefined()
    expect(checkOperationPattern("reminder.*")).toBeUndefined()
    expect(checkOperationPattern("refund.*")).toBeDefined()
    expect(checkOperationPattern("subscription.teleport")).toBeDefined()
  })
})
