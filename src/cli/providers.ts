/**
 * `npm run providers -- <command>`: the provider registry from the command line.
 *
 *   list [--json]
 *   set <id> --name <display name> [--periodic] [--remind-after <ISO duration>] [--debt] [--threshold]
 *   remove <id>
 *
 * `set` adds a provider or replaces its whole configuration (flags left out
 * mean "no"). While no provider is registered the engine accepts any provider
 * id and reminds nobody; once one is, unknown providers are refused. Engines
 * read the registry on each request and each one-off payment, so a change
 * applies at once. The database is `DATABASE_URL` (the engine's default when
 * unset); it is created and migrated if needed.
 */
import { Redacted, Schema } from "effect"
import * as Ranges from "../domain/Ranges.ts"
import { ProviderId } from "../domain/Template.ts"
import { defaultSettings } from "../EngineConfig.ts"
import {
  listProviders,
  type ProviderConfig,
  removeProvider,
  saveProvider,
} from "../store/ProviderRegistry.ts"
import { displayNameOption, fail, parseCommandLine, printTable, runCommandLine, withDatabase } from "./Cli.ts"

const USAGE = `usage: npm run providers -- <command>
  list [--json]                                     every registered provider
  set <id> --name <name> [--periodic] [--remind-after <P30D>] [--debt] [--threshold]
                                                    add a provider or replace its configuration
  remove <id>                                       forget a provider (its autopayments keep working)
--periodic: its bills recur, so a one-off payment to it earns a reminder after --remind-after
  (default P30D, from ${Ranges.remindAfter.min} to ${Ranges.remindAfter.max})
--debt: it answers debt queries; --threshold: it reports balances
environment: DATABASE_URL (default ${Redacted.value(defaultSettings.databaseUrl)})`

const isProviderId = Schema.is(ProviderId)

const providerId = (value: string | undefined): string => {
  if (value === undefined) return fail("the provider id is missing")
  return isProviderId(value)
    ? value
    : fail(`provider id "${value}" must be 1-64 letters, digits, '-' or '_', starting with a letter or digit`)
}

const printProviders = (providers: ReadonlyArray<ProviderConfig>) => {
  if (providers.length === 0) {
    console.log("no provider registered: the engine accepts ANY provider id and sends no reminders")
    return
  }
  const yes = (flag: boolean) => (flag ? "yes" : "-")
  const lines = [
    ["ID", "NAME", "PERIODIC", "REMIND AFTER", "DEBT", "THRESHOLD"],
    ...providers.map((p) => [
      p.providerId,
      p.displayName,
      yes(p.periodic),
      p.periodic ? p.remindAfter : "-",
      yes(p.supportsDebt),
      yes(p.supportsThreshold),
    ]),
  ]
  printTable(lines)
}

const run = async (argv: ReadonlyArray<string>): Promise<void> => {
  const parsed = parseCommandLine(
    argv,
    {
      name: { type: "string" },
      periodic: { type: "boolean" },
      "remind-after": { type: "string" },
      debt: { type: "boolean" },
      threshold: { type: "boolean" },
      json: { type: "boolean" },
    },
    USAGE,
  )
  if (parsed === undefined) return
  const { command, id, values } = parsed
  // Checked before touching the database: a mistyped command changes nothing.
  let provider: ProviderConfig | undefined
  if (command === "set") {
    const remindAfter = values["remind-after"] ?? "P30D"
    const remindAfterProblem = Ranges.durationProblem(remindAfter, Ranges.remindAfter)
    if (remindAfterProblem !== undefined) fail(`--remind-after ${remindAfterProblem}`)
    provider = {
      providerId: providerId(id),
      displayName: displayNameOption(values.name),
      periodic: values.periodic === true,
      remindAfter,
      supportsDebt: values.debt === true,
      supportsThreshold: values.threshold === true,
    }
  } else if (command === "remove") {
    providerId(id)
  } else if (command !== "list") {
    fail(`unknown command "${command}"`)
  }

  await withDatabase(async (db) => {
    if (command === "list") {
      const providers = await listProviders(db)
      if (values.json === true) console.log(JSON.stringify(providers, null, 2))
      else printProviders(providers)
      return
    }
    if (provider !== undefined) {
      await saveProvider(db, provider)
      console.log(`provider "${provider.providerId}" saved; engines apply it at once`)
      return
    }
    if (await removeProvider(db, id ?? "")) {
      console.log(`provider "${id}" removed; its autopayments and reminders keep working`)
    } else {
      console.error(`provider "${id}" is not registered`)
      process.exitCode = 1
    }
  })
}

runCommandLine(USAGE, run)
