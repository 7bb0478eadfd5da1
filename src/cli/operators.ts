/**
 * `npm run operators -- <command>`: the operator console's accounts.
 *
 *   add <login> --role viewer|operator|admin [--password-stdin]
 *   list [--json]
 *   set-role <login> --role viewer|operator|admin
 *   disable <login> | enable <login>
 *   reset-password <login> [--password-stdin]
 *
 * Passwords come from standard input with `--password-stdin` (scripts: the
 * first line is the password), or are asked for twice without echo. They
 * are stored only as scrypt hashes. Disabling an operator or resetting a
 * password ends their sessions at once; a reset also lifts a lock-out.
 * Every change is written to the audit log as done by `cli:<user>`.
 */
import { userInfo } from "node:os"
import { createInterface } from "node:readline"
import { Redacted } from "effect"
import { checkPassword, hashPassword } from "../console/Passwords.ts"
import { defaultSettings } from "../EngineConfig.ts"
import {
  addOperator,
  isRole,
  LOGIN,
  listOperators,
  type Operator,
  ROLES,
  type Role,
  resetOperatorPassword,
  setOperatorDisabled,
  setOperatorRole,
  writeAudit,
} from "../store/OperatorStore.ts"
import { fail, parseCommandLine, printTable, runCommandLine, withDatabase } from "./Cli.ts"

const USAGE = `usage: npm run operators -- <command>
  add <login> --role <role> [--password-stdin]      create an operator (the first one: --role admin)
  list [--json]                                     every operator, with role and state
  set-role <login> --role <role>                    change what an operator may do
  disable <login>                                   refuse their sign-in and end their sessions
  enable <login>                                    allow a disabled operator again
  reset-password <login> [--password-stdin]         set a new password, lift a lock-out, end their sessions
roles: viewer (looks), operator (also acts on clients' subscriptions), admin (also configures the engine, sees the audit log)
logins: lower-case letters, digits, '.', '_', '-' (up to 64); passwords: at least 12 characters
--password-stdin reads the password from the first line of standard input; without it you are asked twice
environment: DATABASE_URL (default ${Redacted.value(defaultSettings.databaseUrl)})`

const loginOf = (value: string | undefined): string => {
  if (value === undefined) return fail("the login is missing")
  return LOGIN.test(value)
    ? value
    : fail(
        `login "${value}" must be 1-64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit`,
      )
}

const roleOf = (value: string | undefined): Role => {
  if (value === undefined) return fail(`--role is required (${ROLES.join(", ")})`)
  return isRole(value) ? value : fail(`--role must be one of ${ROLES.join(", ")}, got "${value}"`)
}

const readStdinLine = async (): Promise<string> => {
  const lines = createInterface({ input: process.stdin })
  for await (const line of lines) {
    lines.close()
    return line
  }
  return ""
}

/** Asks on the terminal without echoing what is typed. */
const ask = (question: string): Promise<string> =>
  new Promise((resolve) => {
    const prompt = createInterface({ input: process.stdin, output: process.stdout, terminal: true })
    const muted = prompt as unknown as { _writeToOutput: (text: string) => void }
    prompt.question(question, (answer) => {
      prompt.close()
      process.stdout.write("\n")
      resolve(answer)
    })
    muted._writeToOutput = () => undefined
  })

const readPassword = async (fromStdin: boolean): Promise<string> => {
  let password: string
  if (fromStdin) {
    password = await readStdinLine()
  } else {
    if (!process.stdin.isTTY) fail("no terminal to ask for the password on: use --password-stdin")
    password = await ask("new password: ")
    if ((await ask("again: ")) !== password) fail("the two passwords differ")
  }
  const problem = checkPassword(password)
  return problem === undefined ? password : fail(`the password ${problem}`)
}

const describe = (operator: Operator): string => {
  if (operator.disabledAt !== null) return "disabled"
  if (operator.lockedUntil !== null && operator.lockedUntil > new Date())
    return `locked until ${operator.lockedUntil.toISOString()}`
  return "active"
}

const cliActor = () => `cli:${userInfo().username}`

const run = async (argv: ReadonlyArray<string>): Promise<void> => {
  const parsed = parseCommandLine(
    argv,
    { role: { type: "string" }, "password-stdin": { type: "boolean" }, json: { type: "boolean" } },
    USAGE,
  )
  if (parsed === undefined) return
  const { command, id, values } = parsed
  const fromStdin = values["password-stdin"] === true
  // Everything from the command line is checked before the database is touched.
  switch (command) {
    case "list":
      return withDatabase(async (db) => {
        const operators = await listOperators(db)
        if (values.json === true) {
          const shown = operators.map(({ passwordHash: _hidden, ...rest }) => ({
            ...rest,
            state: describe(rest as Operator),
          }))
          console.log(JSON.stringify(shown, null, 2))
        } else if (operators.length === 0) {
          console.log(
            "no operator yet: create the first admin with  npm run operators -- add <login> --role admin",
          )
        } else {
          printTable([
            ["LOGIN", "ROLE", "STATE", "LAST SIGN-IN"],
            ...operators.map((o) => [o.login, o.role, describe(o), o.lastLoginAt?.toISOString() ?? "never"]),
          ])
        }
      })
    case "add": {
      const login = loginOf(id)
      const role = roleOf(values.role)
      const passwordHash = await hashPassword(await readPassword(fromStdin))
      return withDatabase(async (db) => {
        if (!(await addOperator(db, { login, role, passwordHash }))) {
          console.error(`operator "${login}" already exists (use set-role or reset-password)`)
          process.exitCode = 1
          return
        }
        await writeAudit(db, {
          operator: cliActor(),
          action: "operator.add",
          target: login,
          clientId: null,
          reason: null,
          details: { role },
        })
        console.log(`operator "${login}" added as ${role}`)
      })
    }
    case "set-role": {
      const login = loginOf(id)
      const role = roleOf(values.role)
      return withDatabase(async (db) => {
        if (!(await setOperatorRole(db, login, role))) return notFound(login)
        await writeAudit(db, {
          operator: cliActor(),
          action: "operator.set_role",
          target: login,
          clientId: null,
          reason: null,
          details: { role },
        })
        console.log(`operator "${login}" is now ${role}`)
      })
    }
    case "disable":
    case "enable": {
      const login = loginOf(id)
      const disabled = command === "disable"
      return withDatabase(async (db) => {
        if (!(await setOperatorDisabled(db, login, disabled))) return notFound(login)
        await writeAudit(db, {
          operator: cliActor(),
          action: `operator.${command}`,
          target: login,
          clientId: null,
          reason: null,
          details: {},
        })
        console.log(
          disabled
            ? `operator "${login}" disabled; their sessions are closed`
            : `operator "${login}" enabled`,
        )
      })
    }
    case "reset-password": {
      const login = loginOf(id)
      const passwordHash = await hashPassword(await readPassword(fromStdin))
      return withDatabase(async (db) => {
        if (!(await resetOperatorPassword(db, login, passwordHash))) return notFound(login)
        await writeAudit(db, {
          operator: cliActor(),
          action: "operator.reset_password",
          target: login,
          clientId: null,
          reason: null,
          details: {},
        })
        console.log(`password of "${login}" replaced; lock-out lifted, sessions closed`)
      })
    }
    default:
      fail(`unknown command "${command}"`)
  }
}

const notFound = (login: string) => {
  console.error(`operator "${login}" does not exist`)
  process.exitCode = 1
}

runCommandLine(USAGE, run)
