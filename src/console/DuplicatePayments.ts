/**
 * Suspected duplicate payments: a retry sent before the hub reported that an
 * earlier attempt of the same occurrence succeeded. The engine flags the retry
 * on its payment row (`suspected` while its result is unknown, `confirmed` when
 * it succeeded too, `cleared` when it moved no money). A confirmed one is for
 * the bank to reverse; the operator who saw it reversed marks it `resolved`,
 * with a reason, and the audit log keeps who and why.
 */

import { html } from "hono/html"
import { type Kysely, sql } from "kysely"
import { format as formatMoney } from "../domain/Money.ts"
import type { Tables } from "../store/Tables.ts"
import { BASE, badge, csrfField, when } from "./Html.ts"

/** The states that still need someone: the retry's result is awaited, or it must be reversed. */
export const OPEN_DUPLICATE_STATES = ["suspected", "confirmed"] as const

export interface DuplicateFlag {
  readonly subscriptionId: string
  readonly occurrence: string
  /** The retry that may have paid the occurrence a second time. */
  readonly paymentId: string
  readonly attempt: number
  readonly status: string
  readonly hubReference: string | null
  /** The earlier attempt that paid it first. */
  readonly duplicateOf: string
  readonly duplicateOfAttempt: number
  readonly duplicateOfReference: string | null
  readonly amount: { readonly value: number; readonly currency: string }
  readonly state: string
  readonly at: Date | null
}

/** The flags of one subscription (every state), or the open ones of every subscription. */
export const readDuplicateFlags = async (
  db: Kysely<Tables>,
  scope: { readonly subscriptionId: string } | { readonly open: true; readonly limit: number },
): Promise<Array<DuplicateFlag>> => {
  let query = db
    .selectFrom("payments as p")
    .innerJoin("payments as first", "first.payment_id", "p.duplicate_of")
    .select([
      "p.subscription_id",
      "p.occurrence",
      "p.payment_id",
      "p.attempt",
      "p.status",
      "p.hub_reference",
      "p.amount",
      "p.currency",
      "p.duplicate_state",
      "p.duplicate_at",
      "first.payment_id as first_id",
      "first.attempt as first_attempt",
      "first.hub_reference as first_reference",
    ])
    .where("p.duplicate_state", "is not", null)
  query =
    "subscriptionId" in scope
      ? query.where("p.subscription_id", "=", scope.subscriptionId)
      : query.where("p.duplicate_state", "in", OPEN_DUPLICATE_STATES).limit(scope.limit)
  const rows = await query.orderBy("p.duplicate_at", "desc").execute()
  return rows.map((row) => ({
    subscriptionId: row.subscription_id,
    occurrence: row.occurrence,
    paymentId: row.payment_id,
    attempt: row.attempt,
    status: row.status,
    hubReference: row.hub_reference,
    duplicateOf: row.first_id,
    duplicateOfAttempt: row.first_attempt,
    duplicateOfReference: row.first_reference,
    amount: { value: Number(row.amount), currency: row.currency },
    state: row.duplicate_state ?? "",
    at: row.duplicate_at,
  }))
}

/** How many flags still need someone, over every subscription. */
export const countOpenDuplicates = async (db: Kysely<Tables>): Promise<number> => {
  const row = await db
    .selectFrom("payments")
    .select((eb) => eb.fn.countAll<string>().as("open"))
    .where("duplicate_state", "in", OPEN_DUPLICATE_STATES)
    .executeTakeFirstOrThrow()
  return Number(row.open)
}

/**
 * Marks a confirmed duplicate resolved, in the caller's transaction; false when it is not (or no
 * longer) confirmed. The bank reversed the money, so what the payment counted toward its client's
 * month is given back. The spend row is locked before the payment row, the order the group
 * committer takes them in, so the two never deadlock.
 */
export const resolveDuplicate = async (
  trx: Kysely<Tables>,
  subscriptionId: string,
  paymentId: string,
): Promise<boolean> => {
  const payment = await trx
    .selectFrom("payments")
    .select(["client_id", "spend_month", "amount", "currency"])
    .where("payment_id", "=", paymentId)
    .where("subscription_id", "=", subscriptionId)
    .where("duplicate_state", "=", "confirmed")
    .executeTakeFirst()
  if (payment === undefined) return false
  const spend =
    payment.spend_month === null
      ? undefined
      : { client_id: payment.client_id, month: payment.spend_month, currency: payment.currency }
  if (spend !== undefined) {
    await sql`SELECT 1 FROM client_spend WHERE client_id = ${spend.client_id} AND month = ${spend.month}
              AND currency = ${spend.currency} FOR UPDATE`.execute(trx)
  }
  const result = await trx
    .updateTable("payments")
    .set({ duplicate_state: "resolved" })
    .where("payment_id", "=", paymentId)
    .where("subscription_id", "=", subscriptionId)
    .where("duplicate_state", "=", "confirmed")
    .executeTakeFirst()
  if (result.numUpdatedRows !== 1n) return false
  if (spend !== undefined) {
    await sql`UPDATE client_spend SET spent = GREATEST(0, spent - ${payment.amount}::bigint)
              WHERE client_id = ${spend.client_id} AND month = ${spend.month}
                AND currency = ${spend.currency}`.execute(trx)
  }
  return true
}

const WHAT_IT_MEANS: Readonly<Record<string, string>> = {
  suspected:
    "the retry was sent before the earlier attempt's success was known; its own result is awaited (if it fails, the flag clears itself)",
  confirmed:
    "both attempts succeeded: the occurrence was paid twice. Reverse the retry, then mark it resolved",
  cleared: "the retry moved no money: paid once",
  resolved: "reversed by the bank, as recorded by an operator",
}

const BADGE_KIND: Readonly<Record<string, string>> = {
  suspected: "pending",
  confirmed: "failed",
  cleared: "ok",
  resolved: "ok",
}

const flagLine = (flag: DuplicateFlag) =>
  html`<b>${flag.occurrence}</b>: payment #${flag.attempt} <span class="mono">${flag.paymentId}</span>
    (${flag.status}${flag.hubReference === null ? "" : `, hub ref ${flag.hubReference}`}) after payment
    #${flag.duplicateOfAttempt} <span class="mono">${flag.duplicateOf}</span>
    (succeeded${flag.duplicateOfReference === null ? "" : `, hub ref ${flag.duplicateOfReference}`}),
    ${formatMoney(flag.amount)} ${badge(flag.state, BADGE_KIND[flag.state] ?? "")}
    <div class="small muted">${WHAT_IT_MEANS[flag.state] ?? ""} · flagged ${when(flag.at)}</div>`

/** The subscription page's section: every flag, and a form to mark a confirmed one resolved. */
export const duplicatesSection = (
  subscriptionId: string,
  flags: ReadonlyArray<DuplicateFlag>,
  session: Parameters<typeof csrfField>[0],
  canResolve: boolean,
) =>
  flags.length === 0
    ? ""
    : html`<h2>Suspected duplicate payments</h2>
        <div class="actions" data-testid="duplicates">
          ${flags.map(
            (
              flag,
            ) => html`<div class="card" data-testid="duplicate" data-payment="${flag.paymentId}" data-state="${flag.state}">
              <p>${flagLine(flag)}</p>
              ${
                canResolve && flag.state === "confirmed"
                  ? html`<form method="post" action="${BASE}/subscriptions/${subscriptionId}/duplicates/${flag.paymentId}/resolve" data-action="resolve-duplicate">
                      ${csrfField(session)}
                      <label for="reason-duplicate-${flag.paymentId}">Reversal reference (recorded in the audit log)</label>
                      <input type="text" id="reason-duplicate-${flag.paymentId}" name="reason" required minlength="5" maxlength="500" placeholder="reversed in the core system, ticket #..." />
                      <p><button type="submit">Mark reversed</button></p>
                    </form>`
                  : ""
              }
            </div>`,
          )}
        </div>`

/** The Today page's list of open flags, each linked to its subscription. */
export const openDuplicatesList = (flags: ReadonlyArray<DuplicateFlag>) =>
  flags.length === 0
    ? ""
    : html`<ul data-testid="open-duplicates">
        ${flags.map(
          (flag) =>
            html`<li><a href="${BASE}/subscriptions/${flag.subscriptionId}">${flag.subscriptionId}</a> · ${flagLine(flag)}</li>`,
        )}
      </ul>`
