/** The engine's process entry: configuration and logging from the environment, then run. */
import { Effect } from "effect"
import { runEngine } from "./Engine.ts"
import { EngineConfig } from "./EngineConfig.ts"
import { LoggingFromEnvironment } from "./Logging.ts"
import { runMain } from "./NodeRuntime.ts"

runMain(
  runEngine.pipe(Effect.provide(EngineConfig.layerFromEnvironment), Effect.provide(LoggingFromEnvironment)),
)
