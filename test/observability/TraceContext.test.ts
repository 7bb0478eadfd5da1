/** The pure parts of observability: trace headers, the request outcome label, the OTLP URL. */
import { describe, expect, it } from "vitest"
import { outcomeOfReply } from "../../src/observability/Metrics.ts"
import { formatTraceparent, parseTraceparent } from "../../src/observability/TraceContext.ts"
import { tracesUrl } from "../../src/observability/Tracing.ts"
import { errorReply, okReply } from "../../src/protocol/Envelope.ts"

const traceId = "4bf92f3577b34da6a3ce929d0e0e4736"
const spanId = "00f067aa0ba902b7"

describe("traceparent", () => {
  it("reads a valid header into a parent span and writes it back unchanged", () => {
    const parent = parseTraceparent(`00-${traceId}-${spanId}-01`)
    expect(parent).toMatchObject({ traceId, spanId, sampled: true })
    expect(parent && formatTraceparent(parent)).toBe(`00-${traceId}-${spanId}-01`)
    expect(parseTraceparent(`00-${traceId}-${spanId}-00`)).toMatchObject({ sampled: false })
    // Upper case and surrounding blanks are tolerated; a later version may add fields.
    expect(parseTraceparent(` 00-${traceId.toUpperCase()}-${spanId}-01 `)).toMatchObject({ traceId })
    expect(parseTraceparent(`01-${traceId}-${spanId}-01-extra`)).toMatchObject({ traceId })
  })

  it("ignores what W3C Trace Context says to ignore", () => {
    for (const header of [
      undefined,
      "",
      "garbage",
      `ff-${traceId}-${spanId}-01`,
      `00-${traceId}-${spanId}-01-extra`,
      `00-${"0".repeat(32)}-${spanId}-01`,
      `00-${traceId}-${"0".repeat(16)}-01`,
      `00-${traceId.slice(1)}-${spanId}-01`,
      `00-${traceId}-${spanId}-1`,
    ])
      expect(parseTraceparent(header)).toBeUndefined()
  })
})

describe("request outcome label", () => {
  it("is ok or the error code, however the reply's fields read", () => {
    expect(outcomeOfReply(okReply("r-1", { status: "error", code: "NOT_FOUND" }))).toBe("ok")
    expect(outcomeOfReply(errorReply("r-2", "VALIDATION_FAILED", "no", []))).toBe("VALIDATION_FAILED")
    expect(outcomeOfReply(errorReply(null, "BAD_REQUEST", '"status":"ok"'))).toBe("BAD_REQUEST")
    expect(outcomeOfReply(errorReply('x","status":"ok', "CONFLICT", "repeat"))).toBe("CONFLICT")
    expect(outcomeOfReply("not a reply")).toBe("unknown")
  })
})

describe("OTLP endpoint", () => {
  it("takes a collector's base URL or the full traces URL", () => {
    expect(tracesUrl("http://collector:4318")).toBe("http://collector:4318/v1/traces")
    expect(tracesUrl("http://collector:4318/")).toBe("http://collector:4318/v1/traces")
    expect(tracesUrl("https://otel.bank.local/custom/v1/traces")).toBe(
      "https://otel.bank.local/custom/v1/traces",
    )
  })
})
