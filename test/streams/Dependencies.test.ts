/**
 * Which handler failures are the infrastructure's by their errors alone: a
 * lost or refused connection to Postgres or NATS is, a failing statement or
 * a bug is not (for those a probe decides, see the outage test).
 */
import { errors } from "@nats-io/transport-node"
import { Cause } from "effect"
import { describe, expect, it } from "vitest"
import { connectionFailureIn } from "../../src/streams/Dependencies.ts"

const systemError = (code: string, message: string) => Object.assign(new Error(message), { code })

describe("connection failures", () => {
  it("blames Postgres for refused, reset and terminated connections and pool timeouts", () => {
    expect(connectionFailureIn(Cause.die(systemError("ECONNREFUSED", "connect ECONNREFUSED")))).toBe(
      "postgres",
    )
    expect(connectionFailureIn(Cause.die(systemError("ECONNRESET", "read ECONNRESET")))).toBe("postgres")
    expect(connectionFailureIn(Cause.die(new Error("Connection terminated unexpectedly")))).toBe("postgres")
    expect(connectionFailureIn(Cause.die(new Error("timeout exceeded when trying to connect")))).toBe(
      "postgres",
    )
    // terminating connection due to administrator command; the database system is starting up
    expect(connectionFailureIn(Cause.die(systemError("57P01", "terminating connection")))).toBe("postgres")
    expect(connectionFailureIn(Cause.die(systemError("57P03", "the database system is starting up")))).toBe(
      "postgres",
    )
  })

  it("finds the connection failure behind a wrapping error", () => {
    const wrapped = new Error("group commit failed", { cause: systemError("ECONNRESET", "read ECONNRESET") })
    expect(connectionFailureIn(Cause.fail(wrapped))).toBe("postgres")
  })

  it("blames NATS for its connection errors and timeouts", () => {
    expect(connectionFailureIn(Cause.die(new errors.TimeoutError()))).toBe("nats")
    expect(connectionFailureIn(Cause.die(new errors.ClosedConnectionError()))).toBe("nats")
  })

  it("does not blame the infrastructure for a failing statement or a bug", () => {
    expect(connectionFailureIn(Cause.die(systemError("23505", "duplicate key value")))).toBeUndefined()
    expect(
      connectionFailureIn(Cause.die(new TypeError("cannot read properties of undefined"))),
    ).toBeUndefined()
    expect(connectionFailureIn(Cause.fail("refused"))).toBeUndefined()
  })
})
