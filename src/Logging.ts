/**
 * Log output: one line per entry, logfmt by default (`RP_LOG_FORMAT=json`
 * for JSON lines), at the level `RP_LOG_LEVEL` sets.
 */
import { Config, Effect, Layer, Logger, References } from "effect"

/** The logger chosen by the environment. */
export const LoggingFromEnvironment = Layer.unwrap(
  Effect.gen(function* () {
    const format = yield* Config.Literals(["logfmt", "json", "pretty"], "RP_LOG_FORMAT").pipe(
      Config.withDefault("logfmt"),
    )
    const level = yield* Config.LogLevel("RP_LOG_LEVEL").pipe(Config.withDefault("Info"))
    const logger =
      format === "json"
        ? Logger.consoleJson
        : format === "pretty"
          ? Logger.consolePretty()
          : Logger.consoleLogFmt
    return Layer.mergeAll(Logger.layer([logger]), Layer.succeed(References.MinimumLogLevel, level))
  }),
)
