/**
 * The channel registry's rows: read by every engine instance (see
 * protocol/Channels.ts) and written by the `channels` CLI. Plain functions
 * over Kysely, so the CLI needs no engine around it.
 *
 * Channels are never deleted, only disabled: their id stays in the
 * idempotency log and in every history entry they caused.
 */
import type { ColumnType, Kysely } from "kysely"
import type { Tables } from "./Tables.ts"

type DefaultedTimestamp = ColumnType<Date, Date | string | undefined, Date | string>

/** The `channels` table (migration 0004). */
export interface ChannelsTable {
  id: string
  display_name: string
  /** Operation names, `<group>.*` or `*`. */
  operations: ColumnType<ReadonlyArray<string>, ReadonlyArray<string>, ReadonlyArray<string>>
  /** An nkey or raw Ed25519 public key as registered; null: the channel does not sign. */
  public_key: string | null
  disabled_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>
  created_at: DefaultedTimestamp
  updated_at: DefaultedTimestamp
  key_rotated_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>
}

/** The tables this module reads and writes. */
export type ChannelTables = {
  channels: ChannelsTable
}

/** A registered channel. */
export interface ChannelRow {
  readonly id: string
  readonly displayName: string
  readonly operations: ReadonlyArray<string>
  readonly publicKey: string | null
  readonly disabledAt: Date | null
  readonly createdAt: Date
  readonly updatedAt: Date
  readonly keyRotatedAt: Date | null
}

/** A new channel. */
export interface NewChannel {
  readonly id: string
  readonly displayName: string
  readonly operations: ReadonlyArray<string>
  readonly publicKey: string | null
}

// The engine's `Tables` does not list the registry: only this module and the migration know it.
const registry = (db: Kysely<Tables>) => db.withTables<ChannelTables>()

const columns = [
  "id",
  "display_name",
  "operations",
  "public_key",
  "disabled_at",
  "created_at",
  "updated_at",
  "key_rotated_at",
] as const

const toRow = (row: {
  id: string
  display_name: string
  operations: ReadonlyArray<string>
  public_key: string | null
  disabled_at: Date | null
  created_at: Date
  updated_at: Date
  key_rotated_at: Date | null
}): ChannelRow => ({
  id: row.id,
  displayName: row.display_name,
  operations: row.operations,
  publicKey: row.public_key,
  disabledAt: row.disabled_at,
  createdAt: row.created_at,
  updatedAt: row.updated_at,
  keyRotatedAt: row.key_rotated_at,
})

/** Every registered channel, disabled ones included, by id. */
export const listChannels = async (db: Kysely<Tables>): Promise<ReadonlyArray<ChannelRow>> =>
  (await registry(db).selectFrom("channels").select(columns).orderBy("id").execute()).map(toRow)

/** Registers a channel; false when the id is taken. */
export const addChannel = async (db: Kysely<Tables>, channel: NewChannel): Promise<boolean> => {
  const inserted = await registry(db)
    .insertInto("channels")
    .values({
      id: channel.id,
      display_name: channel.displayName,
      operations: channel.operations,
      public_key: channel.publicKey,
    })
    .onConflict((conflict) => conflict.column("id").doNothing())
    .returning("id")
    .executeTakeFirst()
  return inserted !== undefined
}

type Change = {
  display_name?: string
  operations?: ReadonlyArray<string>
  public_key?: string | null
  key_rotated_at?: Date
  disabled_at?: Date | null
}

const change = async (db: Kysely<Tables>, id: string, values: Change): Promise<ChannelRow | undefined> => {
  const row = await registry(db)
    .updateTable("channels")
    .set({ ...values, updated_at: new Date() })
    .where("id", "=", id)
    .returning(columns)
    .executeTakeFirst()
  return row === undefined ? undefined : toRow(row)
}

/** Replaces a channel's key (null: it stops signing); the old key is refused from then on. */
export const rotateChannelKey = (db: Kysely<Tables>, id: string, publicKey: string | null) =>
  change(db, id, { public_key: publicKey, key_rotated_at: new Date() })

/** Replaces what a channel may do. */
export const setChannelOperations = (db: Kysely<Tables>, id: string, operations: ReadonlyArray<string>) =>
  change(db, id, { operations })

/** Disables a channel (every request refused) or enables it again. */
export const setChannelDisabled = (db: Kysely<Tables>, id: string, disabled: boolean) =>
  change(db, id, { disabled_at: disabled ? new Date() : null })
