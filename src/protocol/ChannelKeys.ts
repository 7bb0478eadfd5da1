/**
 * Channel signing keys: Ed25519 public keys written as NATS nkeys (`U…`,
 * the same key a channel may use to log in to NATS) or as the raw 32 bytes
 * (base64, base64url or hex), and the `Rp-Signature` header that carries a
 * signature of a request's exact bytes.
 *
 * nkeys are decoded here rather than with `@nats-io/nkeys`, which is only a
 * transitive dependency: an nkey is base32 (RFC 4648, no padding) of one
 * prefix byte, the 32-byte key and a CRC-16/XMODEM, little-endian.
 */
import { createPrivateKey, createPublicKey, type KeyObject, sign, verify } from "node:crypto"

/** The header a signing channel puts on every request. */
export const SIGNATURE_HEADER = "Rp-Signature"

const SIGNATURE_SCHEME = "ed25519:"
const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

/** nkey prefix bytes of Ed25519 public keys, by the letter they encode to. */
const PUBLIC_PREFIXES: Readonly<Record<string, number>> = {
  U: 20 << 3, // user: what a channel's NATS login is
  A: 0, // account
  N: 13 << 3, // server
  O: 14 << 3, // operator
  C: 2 << 3, // cluster
}
const SEED_PREFIX = 18 << 3

const crc16 = (bytes: Uint8Array): number => {
  let crc = 0
  for (const byte of bytes) {
    crc ^= byte << 8
    for (let bit = 0; bit < 8; bit++)
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
  }
  return crc
}

const base32Decode = (text: string): Uint8Array | undefined => {
  const out: Array<number> = []
  let buffer = 0
  let bits = 0
  for (const char of text) {
    const value = BASE32.indexOf(char)
    if (value < 0) return undefined
    buffer = (buffer << 5) | value
    bits += 5
    if (bits >= 8) {
      bits -= 8
      out.push((buffer >> bits) & 0xff)
    }
  }
  return Uint8Array.from(out)
}

const base32Encode = (bytes: Uint8Array): string => {
  let out = ""
  let buffer = 0
  let bits = 0
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte
    bits += 8
    while (bits >= 5) {
      bits -= 5
      out += BASE32[(buffer >> bits) & 31]
    }
  }
  if (bits > 0) out += BASE32[(buffer << (5 - bits)) & 31]
  return out
}

/** Decodes an nkey's payload and checks its checksum. */
const decodeNkey = (text: string): Uint8Array | undefined => {
  const raw = base32Decode(text)
  if (raw === undefined || raw.length < 3) return undefined
  const payload = raw.subarray(0, raw.length - 2)
  const checksum = (raw[raw.length - 2] ?? 0) | ((raw[raw.length - 1] ?? 0) << 8)
  return crc16(payload) === checksum ? payload : undefined
}

const withChecksum = (payload: Uint8Array): Uint8Array => {
  const crc = crc16(payload)
  return Uint8Array.from([...payload, crc & 0xff, crc >> 8])
}

/** A public key in a form the registry accepts, decoded; or why it is not one. */
export type ParsedPublicKey =
  | { readonly _tag: "Key"; readonly raw: Uint8Array; readonly form: "nkey" | "raw" }
  | { readonly _tag: "Invalid"; readonly reason: string }

const invalid = (reason: string): ParsedPublicKey => ({ _tag: "Invalid", reason })

/** Reads an Ed25519 public key written as an nkey (`U…`) or as 32 raw bytes in base64, base64url or hex. */
export const parsePublicKey = (input: string): ParsedPublicKey => {
  const text = input.trim()
  if (/^S[A-Z2-7]{57}$/.test(text)) {
    return invalid("this is an nkey SEED, a private key: register the public key (`nk -inkey seed -pubout`)")
  }
  if (/^[A-Z][A-Z2-7]{55}$/.test(text)) {
    const payload = decodeNkey(text)
    if (payload === undefined || payload.length !== 33) return invalid("not a valid nkey (bad checksum)")
    const letter = text[0] ?? ""
    if (PUBLIC_PREFIXES[letter] !== payload[0]) {
      return invalid(`nkeys starting with "${letter}" are not Ed25519 public keys (use a user key, "U…")`)
    }
    return { _tag: "Key", raw: payload.slice(1), form: "nkey" }
  }
  if (/^[0-9a-fA-F]{64}$/.test(text)) return { _tag: "Key", raw: Buffer.from(text, "hex"), form: "raw" }
  if (/^[A-Za-z0-9+/_-]{43}=?$/.test(text)) {
    const raw = Buffer.from(text.replaceAll("-", "+").replaceAll("_", "/"), "base64")
    if (raw.length === 32) return { _tag: "Key", raw: Uint8Array.from(raw), form: "raw" }
  }
  return invalid(
    "expected an Ed25519 public key: an nkey (56 characters starting with U) or 32 raw bytes as base64 or hex",
  )
}

/** A public key as a Node KeyObject, ready to verify with. */
export const publicKeyObject = (raw: Uint8Array): KeyObject =>
  createPublicKey({
    key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(raw).toString("base64url") },
    format: "jwk",
  })

/** The nkey (`U…`) of a raw Ed25519 public key. */
export const userNkeyOf = (raw: Uint8Array): string =>
  base32Encode(withChecksum(Uint8Array.from([PUBLIC_PREFIXES.U ?? 0, ...raw])))

/** A short fingerprint of a public key for listings and logs (never the key's secret part: it has none). */
export const fingerprintOf = (raw: Uint8Array): string => userNkeyOf(raw).slice(0, 12)

const PKCS8_ED25519_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex")

/** A private key from an nkey seed (`SU…`), for channels and tests that sign. */
export const privateKeyFromSeed = (seed: string): KeyObject => {
  const payload = decodeNkey(seed.trim())
  if (payload === undefined || payload.length !== 34 || ((payload[0] ?? 0) & 0xf8) !== SEED_PREFIX) {
    throw new Error("not an nkey seed")
  }
  return createPrivateKey({
    key: Buffer.concat([PKCS8_ED25519_PREFIX, payload.subarray(2)]),
    format: "der",
    type: "pkcs8",
  })
}

/** The raw 32 bytes of an Ed25519 public key object. */
export const rawPublicKeyOf = (key: KeyObject): Uint8Array => {
  const jwk = (key.type === "private" ? createPublicKey(key) : key).export({ format: "jwk" })
  return Uint8Array.from(Buffer.from(jwk.x ?? "", "base64url"))
}

/** The `Rp-Signature` header value for `data` signed with `privateKey`. */
export const signatureHeaderFor = (data: Uint8Array, privateKey: KeyObject): string =>
  `${SIGNATURE_SCHEME}${sign(null, data, privateKey).toString("base64")}`

/** Why a signature header does not authenticate a request, or undefined when it does. */
export const checkSignature = (
  header: string | undefined,
  data: Uint8Array,
  key: KeyObject,
): string | undefined => {
  if (header === undefined || header === "") return `the request has no ${SIGNATURE_HEADER} header`
  if (!header.startsWith(SIGNATURE_SCHEME)) {
    return `${SIGNATURE_HEADER} must be "${SIGNATURE_SCHEME}<base64 signature>"`
  }
  const encoded = header.slice(SIGNATURE_SCHEME.length).trim()
  const signature = /^[A-Za-z0-9+/_-]+={0,2}$/.test(encoded) ? Buffer.from(encoded, "base64") : undefined
  if (signature === undefined || signature.length !== 64) {
    return `${SIGNATURE_HEADER} does not hold a 64-byte Ed25519 signature in base64`
  }
  return verify(null, data, key, signature)
    ? undefined
    : `${SIGNATURE_HEADER} does not verify against the channel's registered key`
}
