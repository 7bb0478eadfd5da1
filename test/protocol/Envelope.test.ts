/**
 * Replies always fit: `details` are one entry per path and at most MAX_DETAILS of them plus a
 * count of the rest, long texts are cut, and a reply still over the server's max_payload is
 * replaced by a short one naming the same request and code.
 */
import { Schema } from "effect"
import { describe, expect, it } from "vitest"
import {
  busyReply,
  capDetails,
  errorReply,
  fitReply,
  MAX_DETAILS,
  okReply,
  ReplyEnvelope,
} from "../../src/protocol/Envelope.ts"

const decodeReply = Schema.decodeUnknownSync(Schema.fromJsonString(ReplyEnvelope))

describe("reply envelope", () => {
  it("lists each path once, joining its distinct problems", () => {
    expect(
      capDetails([
        { path: "body.name", message: "too long" },
        { path: "body.name", message: "too long" },
        { path: "body.name", message: "has a control character" },
        { path: "body.amount", message: "missing" },
      ]),
    ).toEqual([
      { path: "body.name", message: "too long; has a control character" },
      { path: "body.amount", message: "missing" },
    ])
  })

  it("lists the first paths and then how many more there were", () => {
    const many = Array.from({ length: 12_000 }, (_, index) => ({
      path: `body.x${index}`,
      message: "Expected no excess property",
    }))
    const capped = capDetails([...many, ...many])
    expect(capped).toHaveLength(MAX_DETAILS + 1)
    expect(capped[0]).toEqual({ path: "body.x0", message: "Expected no excess property" })
    expect(capped.at(-1)).toEqual({
      path: "(more)",
      message: `${12_000 - MAX_DETAILS} more paths with problems are not listed`,
    })
    const reply = errorReply("r-1", "VALIDATION_FAILED", "x".repeat(500_000), many)
    expect(reply.length).toBeLessThan(16 * 1024)
    expect(decodeReply(reply)).toMatchObject({ requestId: "r-1", error: { code: "VALIDATION_FAILED" } })
  })

  it("cuts a huge path or message a detail echoes from the request", () => {
    const [detail] = capDetails([{ path: `body.${"k".repeat(100_000)}`, message: "m".repeat(100_000) }])
    expect(detail?.path.length).toBeLessThan(300)
    expect(detail?.message.length).toBeLessThan(400)
    expect(detail?.path).toMatch(/more characters\)$/)
  })

  it("keeps a reply that fits and replaces one that does not with a short one, same request and code", () => {
    const small = okReply("r-1", { fine: true })
    expect(fitReply(small, 1024)).toBe(small)

    const bigOk = okReply("r-2", { items: "x".repeat(5_000) })
    const shortOk = decodeReply(fitReply(bigOk, 1024))
    expect(shortOk).toMatchObject({
      requestId: "r-2",
      status: "error",
      error: { code: "INTERNAL", details: [] },
    })

    const bigError = errorReply("r-3", "VALIDATION_FAILED", "bad", [
      { path: "body.x", message: "y".repeat(200) },
    ])
    const shortError = fitReply(bigError, 300)
    expect(Buffer.byteLength(shortError)).toBeLessThanOrEqual(300)
    expect(decodeReply(shortError)).toMatchObject({
      requestId: "r-3",
      status: "error",
      error: { code: "VALIDATION_FAILED", details: [] },
    })

    // Even a request id too long to echo leaves a reply that fits, without it.
    const hugeId = "i".repeat(2_000)
    const fitted = fitReply(errorReply(hugeId, "BAD_REQUEST", "not an envelope"), 1024)
    expect(Buffer.byteLength(fitted)).toBeLessThanOrEqual(1024)
    expect(decodeReply(fitted)).toMatchObject({ requestId: null, error: { code: "BAD_REQUEST" } })
  })

  it("says BUSY with the request id and when to retry", () => {
    expect(decodeReply(busyReply("r-4", 1_500))).toEqual({
      v: 3,
      requestId: "r-4",
      status: "error",
      error: { code: "BUSY", message: expect.stringMatching(/1500 ms/), details: [], retryAfterMs: 1_500 },
    })
  })
})
