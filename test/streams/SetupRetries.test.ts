/**
 * Stream and consumer set-up rides out a JetStream error that the next
 * attempt does not get, and still fails the start when the error persists.
 */
import { Cause, Effect, Exit } from "effect"
import { describe, expect, it } from "vitest"
import { setupAttempts, withSetupRetries } from "../../src/streams/Topology.ts"

describe("stream set-up retries", () => {
  it("succeeds once a failing step succeeds on a later attempt", async () => {
    let calls = 0
    const outcome = await Effect.runPromise(
      withSetupRetries("stream TEST", async () => {
        calls += 1
        if (calls < 3) throw new Error("error creating store for stream")
        return "created"
      }),
    )
    expect(outcome).toBe("created")
    expect(calls).toBe(3)
  })

  it("gives up after the last attempt with the step's own error", async () => {
    let calls = 0
    const exit = await Effect.runPromiseExit(
      withSetupRetries("stream TEST", async () => {
        calls += 1
        throw new Error("stream name already in use with a different configuration")
      }),
    )
    expect(calls).toBe(setupAttempts)
    expect(Exit.isFailure(exit)).toBe(true)
    if (Exit.isFailure(exit)) {
      expect(Cause.pretty(exit.cause)).toContain("stream name already in use with a different configuration")
    }
  })
})
