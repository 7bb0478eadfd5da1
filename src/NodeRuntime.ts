/**
 * Running an Effect program as the Node process: SIGTERM and SIGINT
 * interrupt the main fiber, so every scope closes in order (consumers stop,
 * in-flight commits and publishes finish, connections drain) before exit.
 */
import { Runtime } from "effect"

/** Runs `effect` as the process's main program. */
export const runMain = Runtime.makeRunMain(({ fiber, teardown }) => {
  const interrupt = () => fiber.interruptUnsafe(fiber.id)
  process.once("SIGTERM", interrupt)
  process.once("SIGINT", interrupt)
  fiber.addObserver((exit) => {
    process.off("SIGTERM", interrupt)
    process.off("SIGINT", interrupt)
    teardown(exit, (code) => process.exit(code))
  })
})
