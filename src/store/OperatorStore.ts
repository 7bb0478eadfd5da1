/**
 * Console operators, their sessions and the audit log, in Postgres so that
 * every engine instance signs in, locks out and audits the same way. Used by
 * the console and by `npm run operators`.
 */
import { createHash, randomBytes } from "node:crypto"
import { type Kysely, sql } from "kysely"
import type { Tables } from "./Tables.ts"

/** What an operator may do: viewers look, operators act for clients, admins also configure the engine. */
export type Role = "viewer" | "operator" | "admin"
export const ROLES: ReadonlyArray<Role> = ["viewer", "operator", "admin"]
export const isRole = (text: string): text is Role => (ROLES as ReadonlyArray<string>).includes(text)

/** Login names: lower-case letters, digits, `.`, `_`, `-`, up to 64 (the table checks the same). */
export const LOGIN = /^[a-z0-9][a-z0-9._-]{0,63}$/

/** After this many wrong passwords in a row the account is locked for `LOCK_MINUTES`. */
export const MAX_FAILED_LOGINS = 5
export const LOCK_MINUTES = 15
/** A session ends this long after sign-in, or after this long without a request, whichever comes first. */
export const SESSION_HOURS = 12
export const SESSION_IDLE_MINUTES = 30

export interface Operator {
  readonly login: string
  readonly role: Role
  readonly passwordHash: string
  readonly failedAttempts: number
  readonly lockedUntil: Date | null
  readonly disabledAt: Date | null
  readonly createdAt: Date
  readonly lastLoginAt: Date | null
}

const toOperator = (row: {
  login: string
  role: string
  password_hash: string
  failed_attempts: number
  locked_until: Date | null
  disabled_at: Date | null
  created_at: Date
  last_login_at: Date | null
}): Operator => ({
  login: row.login,
  role: isRole(row.role) ? row.role : "viewer",
  passwordHash: row.password_hash,
  failedAttempts: row.failed_attempts,
  lockedUntil: row.locked_until,
  disabledAt: row.disabled_at,
  createdAt: row.created_at,
  lastLoginAt: row.last_login_at,
})

export const listOperators = async (db: Kysely<Tables>): Promise<Array<Operator>> =>
  (await db.selectFrom("operators").selectAll().orderBy("login").execute()).map(toOperator)

export const findOperator = async (db: Kysely<Tables>, login: string): Promise<Operator | undefined> => {
  const row = await db.selectFrom("operators").selectAll().where("login", "=", login).executeTakeFirst()
  return row === undefined ? undefined : toOperator(row)
}

/** Adds an operator; false when the login is taken. */
export const addOperator = async (
  db: Kysely<Tables>,
  operator: { readonly login: string; readonly role: Role; readonly passwordHash: string },
): Promise<boolean> => {
  const inserted = await db
    .insertInto("operators")
    .values({ login: operator.login, role: operator.role, password_hash: operator.passwordHash })
    .onConflict((conflict) => conflict.column("login").doNothing())
    .returning("login")
    .executeTakeFirst()
  return inserted !== undefined
}

/** Changes a role; false when there is no such operator. Their open sessions pick it up at the next request. */
export const setOperatorRole = async (db: Kysely<Tables>, login: string, role: Role): Promise<boolean> =>
  (
    await db
      .updateTable("operators")
      .set({ role, updated_at: new Date() })
      .where("login", "=", login)
      .executeTakeFirst()
  ).numUpdatedRows > 0n

/** Disables or enables an operator; disabling ends their sessions at once. */
export const setOperatorDisabled = (db: Kysely<Tables>, login: string, disabled: boolean): Promise<boolean> =>
  db.transaction().execute(async (trx) => {
    const updated = await trx
      .updateTable("operators")
      .set({ disabled_at: disabled ? new Date() : null, updated_at: new Date() })
      .where("login", "=", login)
      .executeTakeFirst()
    if (disabled) await trx.deleteFrom("operator_sessions").where("login", "=", login).execute()
    return updated.numUpdatedRows > 0n
  })

/** Replaces a password, clears a lock-out and ends every session of the operator. */
export const resetOperatorPassword = (
  db: Kysely<Tables>,
  login: string,
  passwordHash: string,
): Promise<boolean> =>
  db.transaction().execute(async (trx) => {
    const updated = await trx
      .updateTable("operators")
      .set({ password_hash: passwordHash, failed_attempts: 0, locked_until: null, updated_at: new Date() })
      .where("login", "=", login)
      .executeTakeFirst()
    await trx.deleteFrom("operator_sessions").where("login", "=", login).execute()
    return updated.numUpdatedRows > 0n
  })

/**
 * Counts a wrong password; the `MAX_FAILED_LOGINS`th in a row locks the account for `LOCK_MINUTES`.
 * One statement, so concurrent attempts on several instances cannot each see a count below the limit.
 * While the account is locked nothing is counted (the lock is not prolonged). Returns the lock's end
 * when this very failure locked the account, else null.
 */
export const recordFailedLogin = async (db: Kysely<Tables>, login: string): Promise<Date | null> => {
  const row = await sql<{ locked_until: Date | null; locked_now: boolean }>`
    UPDATE operators SET
      failed_attempts = CASE WHEN failed_attempts + 1 >= ${MAX_FAILED_LOGINS} THEN 0 ELSE failed_attempts + 1 END,
      locked_until = CASE WHEN failed_attempts + 1 >= ${MAX_FAILED_LOGINS}
        THEN now() + make_interval(mins => ${LOCK_MINUTES}) ELSE locked_until END
    WHERE login = ${login} AND (locked_until IS NULL OR locked_until <= now())
    RETURNING locked_until, locked_until IS NOT NULL AND locked_until > now() AS locked_now`.execute(db)
  const result = row.rows[0]
  return result?.locked_now === true ? result.locked_until : null
}

/** A new session's secrets: the cookie's token (given to the browser only) and the CSRF token. */
export interface NewSession {
  readonly token: string
  readonly csrfToken: string
}

export const tokenHash = (token: string): string => createHash("sha256").update(token).digest("base64url")

/**
 * Signs the operator in: clears the failure count and opens a session; undefined (nothing written)
 * when the operator is locked out or disabled. The lock is read in the same statement that clears
 * the count, after the password was checked, so a lock-out that a parallel wrong guess has just set
 * holds even against the right password.
 */
export const openSession = (db: Kysely<Tables>, login: string): Promise<NewSession | undefined> =>
  db.transaction().execute(async (trx) => {
    const signedIn = await sql<{ login: string }>`
      UPDATE operators SET failed_attempts = 0, locked_until = NULL, last_login_at = now()
      WHERE login = ${login} AND disabled_at IS NULL AND (locked_until IS NULL OR locked_until <= now())
      RETURNING login`.execute(trx)
    if (signedIn.rows.length === 0) return undefined
    const token = randomBytes(32).toString("base64url")
    const csrfToken = randomBytes(32).toString("base64url")
    await trx
      .insertInto("operator_sessions")
      .values({
        token_hash: tokenHash(token),
        login,
        csrf_token: csrfToken,
        expires_at: new Date(Date.now() + SESSION_HOURS * 3_600_000),
      })
      .execute()
    return { token, csrfToken }
  })

/** Where sign-in attempts stand for one source address. */
export interface SourceAttempts {
  /** Attempts in the current window, this one included (successful sign-ins are taken back off). */
  readonly attempts: number
  readonly windowEndsAt: Date
}

/**
 * Counts a sign-in attempt from `source` before its password is checked, in one statement, so that
 * parallel attempts from one address cannot all pass the throttle. A window starts at an address's
 * first attempt and lasts `windowMs`; the next attempt after it starts a new one.
 */
export const chargeSignInAttempt = async (
  db: Kysely<Tables>,
  source: string,
  windowMs: number,
): Promise<SourceAttempts> => {
  const window = sql`make_interval(secs => ${windowMs / 1_000})`
  const result = await sql<{ attempts: number; window_ends_at: Date }>`
    INSERT INTO console_sign_in_throttle AS t (source, window_started_at, attempts)
    VALUES (${source}, now(), 1)
    ON CONFLICT (source) DO UPDATE SET
      window_started_at = CASE WHEN t.window_started_at <= now() - ${window} THEN now() ELSE t.window_started_at END,
      attempts = CASE WHEN t.window_started_at <= now() - ${window} THEN 1 ELSE t.attempts + 1 END
    RETURNING attempts, window_started_at + ${window} AS window_ends_at`.execute(db)
  const row = result.rows[0]
  if (row === undefined) throw new Error("the sign-in throttle returned no row")
  // A new window: the rows of addresses whose windows are over are of no use any more.
  if (row.attempts === 1)
    await sql`DELETE FROM console_sign_in_throttle WHERE window_started_at < now() - ${window}`.execute(db)
  return { attempts: row.attempts, windowEndsAt: row.window_ends_at }
}

/** Takes a successful sign-in back off its address's count: the throttle is for failures. */
export const refundSignInAttempt = async (db: Kysely<Tables>, source: string): Promise<void> => {
  await sql`UPDATE console_sign_in_throttle SET attempts = greatest(attempts - 1, 0) WHERE source = ${source}`.execute(
    db,
  )
}

/** A signed-in operator, as a request sees them. */
export interface Session {
  readonly login: string
  readonly role: Role
  readonly csrfToken: string
  readonly tokenHash: string
}

/**
 * The live session the cookie's token names, touched so it stays alive; undefined when there is none,
 * it has expired or been idle too long, or its operator is disabled.
 */
export const touchSession = async (db: Kysely<Tables>, token: string): Promise<Session | undefined> => {
  const hash = tokenHash(token)
  const result = await sql<{ login: string; role: string; csrf_token: string }>`
    UPDATE operator_sessions s SET last_seen_at = now()
    FROM operators o
    WHERE s.token_hash = ${hash} AND o.login = s.login AND o.disabled_at IS NULL
      AND s.expires_at > now() AND s.last_seen_at > now() - make_interval(mins => ${SESSION_IDLE_MINUTES})
    RETURNING s.login, o.role, s.csrf_token`.execute(db)
  const row = result.rows[0]
  if (row === undefined || !isRole(row.role)) return undefined
  return { login: row.login, role: row.role, csrfToken: row.csrf_token, tokenHash: hash }
}

export const closeSession = async (db: Kysely<Tables>, hash: string): Promise<void> => {
  await db.deleteFrom("operator_sessions").where("token_hash", "=", hash).execute()
  // Old sessions are of no use to anyone; whoever signs out sweeps them.
  await db
    .deleteFrom("operator_sessions")
    .where("expires_at", "<", new Date(Date.now() - 24 * 3_600_000))
    .execute()
}

/** One audited change. */
export interface AuditEntry {
  readonly operator: string
  /** What was done, as `<area>.<verb>`: `subscription.pause`, `provider.save`, `dead_letter.resubmit`... */
  readonly action: string
  /** What it was done to: a subscription id, a provider or channel id, a stream sequence... */
  readonly target: string
  readonly clientId: string | null
  readonly reason: string | null
  readonly details: Readonly<Record<string, unknown>>
}

export interface AuditRow extends AuditEntry {
  readonly id: number
  readonly at: Date
}

export const writeAudit = async (db: Kysely<Tables>, entry: AuditEntry): Promise<void> => {
  await db
    .insertInto("audit_log")
    .values({
      operator: entry.operator,
      action: entry.action,
      target: entry.target,
      client_id: entry.clientId,
      reason: entry.reason,
      details: JSON.stringify(entry.details),
    })
    .execute()
}

/** The newest audit rows, optionally of one operator, action prefix or client, older than `beforeId`. */
export const readAudit = async (
  db: Kysely<Tables>,
  filter: {
    readonly operator?: string | undefined
    readonly action?: string | undefined
    readonly clientId?: string | undefined
    readonly beforeId?: number | undefined
    readonly limit: number
  },
): Promise<Array<AuditRow>> => {
  let query = db.selectFrom("audit_log").selectAll()
  if (filter.operator) query = query.where("operator", "=", filter.operator)
  if (filter.action) query = query.where("action", "like", `${filter.action.replace(/[%_\\]/g, "\\$&")}%`)
  if (filter.clientId) query = query.where("client_id", "=", filter.clientId)
  if (filter.beforeId !== undefined) query = query.where("id", "<", filter.beforeId)
  const rows = await query.orderBy("id", "desc").limit(filter.limit).execute()
  return rows.map((row) => ({
    id: row.id,
    at: row.at,
    operator: row.operator,
    action: row.action,
    target: row.target,
    clientId: row.client_id,
    reason: row.reason,
    details: (row.details ?? {}) as Record<string, unknown>,
  }))
}
