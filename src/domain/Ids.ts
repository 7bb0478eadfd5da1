/**
 * Identifiers the engine mints.
 *
 * Random UUIDs for things created once (subscriptions, templates, events).
 * Payment ids are name-based (RFC 9562 version 5) on the subscription,
 * occurrence and attempt: an engine that crashes after committing an attempt
 * and one that recomputes it agree on the id, so the hub's idempotency on
 * `paymentId` is a second line of defence behind our own records.
 */
import { hash, randomUUID } from "node:crypto"

/** A fresh random (version 4) UUID. */
export const newId = (): string => randomUUID()

// A fixed namespace UUID for this engine's name-based ids.
const namespace = Buffer.from("6f1c2b7e5a0d4e4f9a3b8c1d2e3f4a5b", "hex")

// The namespace followed by the name, hashed in one piece: no buffers allocated per id.
const scratch = Buffer.alloc(1_024)
namespace.copy(scratch)

/** A version 5 UUID derived from `name`: the same name always gives the same id. */
export const nameBasedId = (name: string): string => {
  // One-shot hashing: several times cheaper than a Hash object per id, which matters per payment.
  // A UTF-16 code unit is at most 3 bytes of UTF-8, so a name that passes this check fits whole.
  const input =
    name.length * 3 <= scratch.length - namespace.length
      ? scratch.subarray(0, namespace.length + scratch.write(name, namespace.length, "utf8"))
      : Buffer.concat([namespace, Buffer.from(name, "utf8")])
  // Hex straight from the hash (no digest buffer); the version and variant bits are set on the text.
  const hex = hash("sha1", input, "hex")
  const variant = "89ab"[Number.parseInt(hex.charAt(16), 16) & 0x3] ?? "8"
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-5${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`
}

/** The id of one payment attempt: unique per (subscription, occurrence, attempt). */
export const paymentIdFor = (subscriptionId: string, occurrence: string, attempt: number): string =>
  nameBasedId(`payment:${subscriptionId}:${occurrence}:${attempt}`)

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** True for the textual form of any UUID. */
export const isUuid = (text: string): boolean => uuidPattern.test(text)
