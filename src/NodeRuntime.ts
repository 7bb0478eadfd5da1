/**
 * Running an Effect program as the Node process: SIGTERM and SIGINT
 * interrupt the main fiber, so every scope closes in order (consumers stop,
 * in-flight commits and publishes finish, connections drain) before exit.
 * A stop asked for by a signal that completes cleanly exits with status 0,
 * so supervisors see an orderly shutdown rather than a crash.
 */
import { Cause, Exit, Runtime } from "effect"

/** Runs `effect` as the process's main program. */
export const runMain = Runtime.makeRunMain(({ fiber, teardown }) => {
  let stoppedBySignal = false
  const interrupt = () => {
    stoppedBySignal = true
    fiber.interruptUnsafe(fiber.id)
  }
  process.once("SIGTERM", interrupt)
  process.once("SIGINT", interrupt)
  fiber.addObserver((exit) => {
    process.off("SIGTERM", interrupt)
    process.off("SIGINT", interrupt)
    const orderlyStop = stoppedBySignal && Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause)
    teardown(exit, (code) => process.exit(orderlyStop ? 0 : code))
  })
})
