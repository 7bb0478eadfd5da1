/**
 * What the registry command lines share: usage errors, a plain table, the
 * engine's database (created and migrated if needed), and exit statuses
 * (2 for a mistaken command line, 1 for anything else that went wrong).
 */
import { type ParseArgsConfig, parseArgs } from "node:util"
import { Effect, Redacted } from "effect"
import type { Kysely } from "kysely"
import { textProblem } from "../domain/Text.ts"
import { defaultSettings } from "../EngineConfig.ts"
import { ensureDatabaseExists, makeKysely, migrateToLatest } from "../store/Database.ts"
import type { Tables } from "../store/Tables.ts"

/** A mistake in the command line: printed with the usage, exit status 2. */
export class UsageError extends Error {}

/** Stops with a usage error. */
export const fail = (message: string): never => {
  throw new UsageError(message)
}

/** `--name`: a display name by the protocol's text rules (not blank, one line, at most 200 characters). */
export const displayNameOption = (text: string | undefined): string => {
  const name = text?.trim() ?? ""
  const problem = textProblem(name, 200)
  return problem === undefined
    ? name
    : fail(`--name ${problem === "must not be empty" ? "is required" : problem}`)
}

/** The database the engine uses: `DATABASE_URL`, or the engine's default. */
export const databaseUrl = (): string =>
  process.env.DATABASE_URL ?? Redacted.value(defaultSettings.databaseUrl)

/** Runs `work` against the engine's database, created and migrated first. */
export const withDatabase = async <A>(work: (db: Kysely<Tables>) => Promise<A>): Promise<A> => {
  const url = databaseUrl()
  await Effect.runPromise(ensureDatabaseExists(url))
  const db = makeKysely(url, 1)
  try {
    await Effect.runPromise(migrateToLatest(db))
    return await work(db)
  } finally {
    await db.destroy()
  }
}

/** Prints rows as aligned columns; the first row is the header. */
export const printTable = (lines: ReadonlyArray<ReadonlyArray<string>>): void => {
  const widths = lines[0]?.map((_, column) => Math.max(...lines.map((line) => (line[column] ?? "").length)))
  for (const line of lines) {
    console.log(
      line
        .map((cell, column) => cell.padEnd(widths?.[column] ?? 0))
        .join("  ")
        .trimEnd(),
    )
  }
}

/** Runs a command line's `run`, turning its failures into messages and exit statuses. */
export const runCommandLine = (usage: string, run: (argv: ReadonlyArray<string>) => Promise<void>): void => {
  run(process.argv.slice(2)).catch((error: unknown) => {
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      console.error(`${(error as Error).message}\n\n${usage}`)
      process.exitCode = 2
    } else {
      console.error(error)
      process.exitCode = 1
    }
  })
}

type Options = NonNullable<ParseArgsConfig["options"]>

/**
 * Reads `<command> [<id>] --options...`; prints the usage and returns undefined for `--help` or no
 * command, and refuses extra positional arguments.
 */
export const parseCommandLine = <const O extends Options>(
  argv: ReadonlyArray<string>,
  options: O,
  usage: string,
) => {
  const { positionals, values } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: { ...options, help: { type: "boolean", short: "h" } } as Options,
  })
  const [command, id, ...extra] = positionals
  if ((values as { help?: boolean }).help === true || command === undefined) {
    console.log(usage)
    return undefined
  }
  if (extra.length > 0) fail(`unexpected arguments: ${extra.join(" ")}`)
  return { command, id, values: values as ParsedValues<O> }
}

type ParsedValues<O extends Options> = {
  readonly [K in keyof O]?: O[K]["type"] extends "boolean" ? boolean : string
}
