/**
 * Reading subscriptions: by id (batched across concurrent callers), by
 * client (paged), and the due sweep through the `next_due_at` index.
 *
 * Writing them happens in exactly two places: `create` here (a new row and
 * everything that comes with it, in one transaction) and the group committer
 * (every later change, fenced by `revision`).
 */
import { Context, Effect, Exit, Layer, Request, RequestResolver, Schema } from "effect"
import { type Kysely, type Selectable, sql, type Transaction } from "kysely"
import { isUuid } from "../domain/Ids.ts"
import {
  DebtState,
  type DebtSubscription,
  DebtTerms,
  ReminderState,
  type ReminderSubscription,
  ReminderTerms,
  ScheduledState,
  type ScheduledSubscription,
  ScheduledTerms,
  Status,
  type Subscription,
  type SubscriptionCommon,
  ThresholdState,
  type ThresholdSubscription,
  ThresholdTerms,
} from "../domain/Subscription.ts"
import { type CreatedPosition, createdBefore, createdPositionOf, keysetPage } from "./Cursor.ts"
import { Database } from "./Database.ts"
import { partitionSql } from "./LeaseStore.ts"
import { scheduledStateFast, scheduledTermsFast } from "./ScheduledRow.ts"
import type { SubscriptionsTable, Tables } from "./Tables.ts"

type SubscriptionRow = Selectable<SubscriptionsTable>

const decodeStatus = Schema.decodeUnknownSync(Status)
const statuses: ReadonlySet<unknown> = new Set(Status.literals)
const isStatus = (value: unknown): value is Status => statuses.has(value)
const decodeScheduled = {
  terms: Schema.decodeUnknownSync(ScheduledTerms),
  state: Schema.decodeUnknownSync(ScheduledState),
}
const decodeThreshold = {
  terms: Schema.decodeUnknownSync(ThresholdTerms),
  state: Schema.decodeUnknownSync(ThresholdState),
}
const decodeReminder = {
  terms: Schema.decodeUnknownSync(ReminderTerms),
  state: Schema.decodeUnknownSync(ReminderState),
}
const decodeDebt = {
  terms: Schema.decodeUnknownSync(DebtTerms),
  state: Schema.decodeUnknownSync(DebtState),
}

/** Maps a row to the domain; a row that does not decode is a defect (the engine wrote it). */
export const fromRow = (row: SubscriptionRow): Subscription => {
  switch (row.kind) {
    case "scheduled":
      // The sweep decodes every due row: the fast path takes the rows the engine writes, the
      // Schema the rest (and reports what is wrong with them).
      return withTermsAndState<ScheduledSubscription>(
        row,
        "scheduled",
        scheduledTermsFast(row.terms) ?? decodeScheduled.terms(row.terms),
        scheduledStateFast(row.state) ?? decodeScheduled.state(row.state),
      )
    case "threshold":
      return withTermsAndState<ThresholdSubscription>(
        row,
        "threshold",
        decodeThreshold.terms(row.terms),
        decodeThreshold.state(row.state),
      )
    case "debt":
      return withTermsAndState<DebtSubscription>(
        row,
        "debt",
        decodeDebt.terms(row.terms),
        decodeDebt.state(row.state),
      )
    case "reminder":
      return withTermsAndState<ReminderSubscription>(
        row,
        "reminder",
        decodeReminder.terms(row.terms),
        decodeReminder.state(row.state),
      )
    default:
      throw new Error(
        `subscription ${row.id} has kind ${JSON.stringify(row.kind)}, which this engine cannot run`,
      )
  }
}

/**
 * The subscription of a row, built as one object literal (not a spread of the common fields), so
 * every subscription read has the same shape, and a burst's hundred thousand are built cheaply.
 */
const withTermsAndState = <S extends Subscription>(
  row: SubscriptionRow,
  kind: S["kind"],
  terms: S["terms"],
  state: S["state"],
): S => {
  const subscription: SubscriptionCommon & Pick<Subscription, "kind" | "terms" | "state"> = {
    id: row.id,
    clientId: row.client_id,
    status: isStatus(row.status) ? row.status : decodeStatus(row.status),
    statusReason: row.status_reason,
    hidden: row.hidden,
    version: row.version,
    revision: row.revision,
    templateId: row.template_id,
    payee: { providerId: row.provider_id, account: row.account, source: row.source },
    currency: row.currency,
    nextDueAt: row.next_due_at === null ? null : row.next_due_at.getTime(),
    createdAt: row.created_at.getTime(),
    createdChannel: row.created_channel,
    createdTerminal: row.created_terminal,
    kind,
    terms,
    state,
  }
  // The kind decides its terms and state: the caller passed the ones of `kind`.
  return subscription as S
}

/** Inserts a new subscription (revision 1) inside the caller's transaction. */
export const insertSubscription = async (
  trx: Transaction<Tables>,
  subscription: Subscription,
): Promise<void> => {
  await trx
    .insertInto("subscriptions")
    .values({
      id: subscription.id,
      client_id: subscription.clientId,
      kind: subscription.kind,
      status: subscription.status,
      status_reason: subscription.statusReason,
      hidden: subscription.hidden,
      version: subscription.version,
      revision: subscription.revision,
      template_id: subscription.templateId,
      provider_id: subscription.payee.providerId,
      account: subscription.payee.account,
      source: subscription.payee.source,
      currency: subscription.currency,
      terms: JSON.stringify(subscription.terms),
      state: JSON.stringify(subscription.state),
      next_due_at: subscription.nextDueAt === null ? null : new Date(subscription.nextDueAt),
      created_at: new Date(subscription.createdAt),
      created_channel: subscription.createdChannel,
      created_terminal: subscription.createdTerminal,
    })
    .execute()
}

/** The key `thresholdWatchers` files a payee's watchers under. */
export const watchKey = (providerId: string, account: string): string => `${providerId}\u0000${account}`

/** A debt query as the engine sent it, and the currency its subscription pays in (the limit's). */
export interface SentDebtQuery {
  readonly subscriptionId: string
  readonly providerId: string
  readonly account: string
  readonly currency: string
}

/** A page of a client's subscriptions, newest first. */
export interface SubscriptionPage {
  readonly items: ReadonlyArray<Subscription>
  readonly nextCursor: string | null
}

/** A due row: decoded when it could be, so one unreadable row cannot stop a sweep. */
export interface DueSubscription {
  readonly id: string
  readonly nextDueAt: number
  readonly subscription: Subscription | undefined
}

const decodeDue = (row: SubscriptionRow): DueSubscription => {
  let subscription: Subscription | undefined
  try {
    subscription = fromRow(row)
  } catch {
    // The actor loads it itself and fails on its own, visibly, without holding up the others.
    subscription = undefined
  }
  return { id: row.id, nextDueAt: row.next_due_at?.getTime() ?? 0, subscription }
}

class LoadSubscription extends Request.Class<
  { readonly id: string },
  Subscription | undefined,
  never,
  never
> {}

/** Subscription reads. */
export class SubscriptionStore extends Context.Service<
  SubscriptionStore,
  {
    /** The current row, batched with concurrent loads into one query. */
    readonly load: (id: string) => Effect.Effect<Subscription | undefined>
    /** The row read fresh, bypassing batching (after a lost write race). */
    readonly loadFresh: (id: string) => Effect.Effect<Subscription | undefined>
    /** Due subscriptions in `(next_due_at, id)` order after `after`, at most `limit`. */
    readonly dueBatch: (
      now: number,
      after: { readonly dueAt: number; readonly id: string } | null,
      limit: number,
      /** Only these partitions' subscriptions (`all`: every one). */
      partitions?: { readonly count: number; readonly owned: ReadonlyArray<number> | "all" },
    ) => Effect.Effect<ReadonlyArray<DueSubscription>>
    /**
     * Live (active or paused) threshold subscriptions watching each `(providerId, account)`, through their index;
     * keyed by `watchKey`.
     */
    readonly thresholdWatchers: (
      payees: ReadonlyArray<{ readonly providerId: string; readonly account: string }>,
    ) => Effect.Effect<ReadonlyMap<string, ReadonlyArray<DueSubscription>>>
    /** Each debt query as sent, keyed by query id (lower case). */
    readonly debtQueryOwners: (
      queryIds: ReadonlyArray<string>,
    ) => Effect.Effect<ReadonlyMap<string, SentDebtQuery>>
    /** Every subscription of a client to one payee, of any kind and status (through the client index). */
    readonly forPayee: (
      clientId: string,
      providerId: string,
      account: string,
    ) => Effect.Effect<ReadonlyArray<{ readonly id: string; readonly kind: string; readonly status: string }>>
    /** A client's subscriptions, newest first, paged. */
    readonly listByClient: (
      clientId: string,
      options: {
        readonly includeHidden: boolean
        readonly limit: number
        readonly cursor: CreatedPosition | undefined
      },
    ) => Effect.Effect<SubscriptionPage>
  }
>()("rp/store/SubscriptionStore") {
  static readonly layer = Layer.effect(
    SubscriptionStore,
    Effect.gen(function* () {
      const { db, use } = yield* Database
      const selectByIds = (runner: Kysely<Tables>, ids: ReadonlyArray<string>) =>
        runner.selectFrom("subscriptions").selectAll().where("id", "in", ids).execute()

      const resolver = RequestResolver.make<LoadSubscription>((entries) =>
        Effect.promise(async () => {
          const rows = await selectByIds(db, [...new Set(entries.map((entry) => entry.request.id))])
          const byId = new Map(rows.map((row) => [row.id, row]))
          for (const entry of entries) {
            const row = byId.get(entry.request.id)
            // Each row decodes on its own: one unreadable row must not fail the others in its batch.
            let exit: Exit.Exit<Subscription | undefined>
            try {
              exit = Exit.succeed(row === undefined ? undefined : fromRow(row))
            } catch (error) {
              exit = Exit.die(error)
            }
            entry.completeUnsafe(exit)
          }
        }),
      ).pipe(RequestResolver.setDelay(1), RequestResolver.batchN(1_000))

      return SubscriptionStore.of({
        load: (id) => Effect.request(new LoadSubscription({ id }), resolver),
        loadFresh: (id) =>
          use((runner) => selectByIds(runner, [id])).pipe(
            Effect.map((rows) => (rows[0] === undefined ? undefined : fromRow(rows[0]))),
          ),
        dueBatch: (now, after, limit, partitions) =>
          use((runner) => {
            let query = runner
              .selectFrom("subscriptions")
              .selectAll()
              .where("next_due_at", "<=", new Date(now))
              .orderBy("next_due_at")
              .orderBy("id")
              .limit(limit)
            if (after !== null) {
              query = query.where(
                sql<boolean>`(next_due_at, id) > (${new Date(after.dueAt)}, ${after.id}::uuid)`,
              )
            }
            if (partitions !== undefined && partitions.owned !== "all") {
              query = query.where(
                sql<boolean>`${partitionSql(partitions.count)} = ANY(${[...partitions.owned]}::int[])`,
              )
            }
            return query.execute()
          }).pipe(Effect.map((rows) => rows.map(decodeDue))),
        thresholdWatchers: (payees) => {
          if (payees.length === 0) return Effect.succeed(new Map())
          const wanted = JSON.stringify(
            payees.map((p) => ({ provider_id: p.providerId, account: p.account })),
          )
          // Whole rows: the actors they wake start from them instead of loading each row again.
          return use((runner) =>
            sql<SubscriptionRow>`
              SELECT s.* FROM subscriptions s
              JOIN (SELECT DISTINCT * FROM json_to_recordset(${wanted}::json) AS v(provider_id text, account text)) v
                ON s.provider_id = v.provider_id AND s.account = v.account
              WHERE s.kind = 'threshold' AND s.status IN ('active', 'paused')`.execute(runner),
          ).pipe(
            Effect.map((result) => {
              const watchers = new Map<string, Array<DueSubscription>>()
              for (const row of result.rows) {
                const key = watchKey(row.provider_id, row.account)
                const watcher = decodeDue(row)
                const found = watchers.get(key)
                if (found === undefined) watchers.set(key, [watcher])
                else found.push(watcher)
              }
              return watchers
            }),
          )
        },
        debtQueryOwners: (queryIds) => {
          const ids = [...new Set(queryIds.filter(isUuid).map((id) => id.toLowerCase()))]
          if (ids.length === 0) return Effect.succeed(new Map())
          return use((runner) =>
            runner
              .selectFrom("debt_queries as q")
              .innerJoin("subscriptions as s", "s.id", "q.subscription_id")
              .select(["q.query_id", "q.subscription_id", "q.provider_id", "q.account", "s.currency"])
              .where("q.query_id", "in", ids)
              .execute(),
          ).pipe(
            Effect.map(
              (rows) =>
                new Map(
                  rows.map((row) => [
                    row.query_id,
                    {
                      subscriptionId: row.subscription_id,
                      providerId: row.provider_id,
                      account: row.account,
                      currency: row.currency,
                    },
                  ]),
                ),
            ),
          )
        },
        forPayee: (clientId, providerId, account) =>
          use((runner) =>
            runner
              .selectFrom("subscriptions")
              .select(["id", "kind", "status"])
              .where("client_id", "=", clientId)
              .where("provider_id", "=", providerId)
              .where("account", "=", account)
              .execute(),
          ),
        listByClient: (clientId, { includeHidden, limit, cursor }) =>
          use((runner) => {
            let query = runner
              .selectFrom("subscriptions")
              .selectAll()
              .where("client_id", "=", clientId)
              .orderBy("created_at", "desc")
              .orderBy("id", "desc")
              .limit(limit + 1)
            if (!includeHidden) query = query.where("hidden", "=", false)
            if (cursor !== undefined) query = query.where(createdBefore(cursor))
            return query.execute()
          }).pipe(Effect.map((rows) => keysetPage(rows, limit, fromRow, createdPositionOf))),
      })
    }),
  )
}
