/**
 * `npm run channels -- <command>`: the channel registry from the command line.
 *
 *   list [--json]
 *   add <id> --name <display name> --operations <list> [--key <public key>]
 *   rotate-key <id> (--key <public key> | --unsigned)
 *   set-operations <id> --operations <list>
 *   disable <id>
 *   enable <id>
 *
 * `<list>` is comma-separated: operation names, `<group>.*` or `*`. A key is
 * an Ed25519 public key, as an nkey (`U…`) or 32 raw bytes in base64 or hex.
 * The database is `DATABASE_URL` (the engine's default when unset); it is
 * created and migrated if needed. Running engines pick a change up at once
 * (a Postgres notification) and at the latest after `RP_CHANNELS_REFRESH`.
 */
import { Redacted } from "effect"
import { defaultSettings } from "../EngineConfig.ts"
import { fingerprintOf, parsePublicKey } from "../protocol/ChannelKeys.ts"
import { CHANNEL_ID, CONSOLE_CHANNEL, checkOperationPattern } from "../protocol/Channels.ts"
import {
  addChannel,
  type ChannelRow,
  listChannels,
  rotateChannelKey,
  setChannelDisabled,
  setChannelOperations,
} from "../store/ChannelStore.ts"
import { displayNameOption, fail, parseCommandLine, printTable, runCommandLine, withDatabase } from "./Cli.ts"

const USAGE = `usage: npm run channels -- <command>
  list [--json]                                          every registered channel
  add <id> --name <name> --operations <list> [--key <k>] register a channel (signing when --key is given)
  rotate-key <id> (--key <k> | --unsigned)               replace its key; the old one is refused from then on
  set-operations <id> --operations <list>                replace what it may do
  disable <id> | enable <id>                             refuse all its requests, or accept them again
<list>: comma-separated operation names, <group>.* (template.*, subscription.*, payment.*) or *
<k>: Ed25519 public key as an nkey (U...) or 32 raw bytes in base64 or hex
environment: DATABASE_URL (default ${Redacted.value(defaultSettings.databaseUrl)})`

const channelId = (value: string | undefined): string => {
  if (value === undefined) return fail("the channel id is missing")
  if (value === CONSOLE_CHANNEL)
    return fail(`channel id "${CONSOLE_CHANNEL}" is reserved for the operator console`)
  if (!CHANNEL_ID.test(value)) {
    return fail(`channel id "${value}" must be 1-64 letters, digits, '-' or '_' (one NATS subject token)`)
  }
  return value
}

const operationsOf = (value: string | undefined): ReadonlyArray<string> => {
  if (value === undefined) return fail("--operations is required")
  const patterns = [
    ...new Set(
      value
        .split(",")
        .map((part) => part.trim())
        .filter((part) => part !== ""),
    ),
  ]
  if (patterns.length === 0) return fail("--operations lists nothing")
  for (const pattern of patterns) {
    const problem = checkOperationPattern(pattern)
    if (problem !== undefined) fail(problem)
  }
  return patterns
}

const keyOf = (value: string): string => {
  const parsed = parsePublicKey(value)
  return parsed._tag === "Key" ? value.trim() : fail(`--key: ${parsed.reason}`)
}

const describeKey = (publicKey: string | null): string => {
  if (publicKey === null) return "UNSIGNED"
  const parsed = parsePublicKey(publicKey)
  return parsed._tag === "Key" ? `${parsed.form} ${fingerprintOf(parsed.raw)}…` : "INVALID KEY"
}

const printChannels = (rows: ReadonlyArray<ChannelRow>) => {
  if (rows.length === 0) {
    console.log("no channel registered: the engine accepts the five development channels UNSIGNED")
    return
  }
  printTable([
    ["ID", "NAME", "STATUS", "KEY", "OPERATIONS"],
    ...rows.map((row) => [
      row.id,
      row.displayName,
      row.disabledAt === null ? "enabled" : "disabled",
      describeKey(row.publicKey),
      row.operations.join(","),
    ]),
  ])
}

const IN_FORCE = "running engines apply this at once (at the latest after RP_CHANNELS_REFRESH, default 5 s)"

const run = async (argv: ReadonlyArray<string>): Promise<void> => {
  const parsed = parseCommandLine(
    argv,
    {
      name: { type: "string" },
      operations: { type: "string" },
      key: { type: "string" },
      unsigned: { type: "boolean" },
      json: { type: "boolean" },
    },
    USAGE,
  )
  if (parsed === undefined) return
  const { command, id, values } = parsed

  await withDatabase(async (db) => {
    const report = (row: ChannelRow | undefined, what: string) => {
      if (row === undefined) {
        console.error(`channel "${id}" is not registered`)
        process.exitCode = 1
        return
      }
      console.log(`channel "${row.id}" ${what}; ${IN_FORCE}`)
    }
    switch (command) {
      case "list": {
        const rows = await listChannels(db)
        if (values.json === true) {
          console.log(
            JSON.stringify(
              rows.map((row) => ({ ...row, key: describeKey(row.publicKey) })),
              null,
              2,
            ),
          )
        } else {
          printChannels(rows)
        }
        return
      }
      case "add": {
        const channel = {
          id: channelId(id),
          displayName: displayNameOption(values.name),
          operations: operationsOf(values.operations),
          publicKey: values.key === undefined ? null : keyOf(values.key),
        }
        if (!(await addChannel(db, channel))) {
          console.error(`channel "${channel.id}" is already registered (use rotate-key or set-operations)`)
          process.exitCode = 1
          return
        }
        console.log(
          `channel "${channel.id}" registered, ${channel.publicKey === null ? "UNSIGNED" : "signing"}; ${IN_FORCE}`,
        )
        if (channel.publicKey === null) {
          console.log(
            "warning: an unsigned channel's requests are not authenticated; give it a key with --key",
          )
        }
        return
      }
      case "rotate-key": {
        if ((values.key === undefined) === (values.unsigned !== true)) {
          fail("rotate-key needs exactly one of --key <public key> or --unsigned")
        }
        const key = values.key === undefined ? null : keyOf(values.key)
        report(
          await rotateChannelKey(db, channelId(id), key),
          key === null
            ? "no longer signs (UNSIGNED)"
            : `now signs with ${describeKey(key)}; the old key is refused`,
        )
        return
      }
      case "set-operations": {
        const operations = operationsOf(values.operations)
        report(await setChannelOperations(db, channelId(id), operations), `may now: ${operations.join(",")}`)
        return
      }
      case "disable":
        report(await setChannelDisabled(db, channelId(id), true), "disabled: every request is refused")
        return
      case "enable":
        report(await setChannelDisabled(db, channelId(id), false), "enabled")
        return
      default:
        fail(`unknown command "${command}"`)
    }
  })
}

runCommandLine(USAGE, run)
