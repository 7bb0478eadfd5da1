/**
 * Keyset paging: a page is the rows after the last one the client saw, and
 * the cursor that says where that was is opaque to clients (base64url JSON).
 */
import { Schema } from "effect"
import { sql } from "kysely"

/** An opaque cursor for `position`. */
export const encodeCursor = (position: object): string =>
  Buffer.from(JSON.stringify(position)).toString("base64url")

/** The position inside a cursor this engine handed out, or undefined for anything else. */
export const decodeCursor = <A>(schema: Schema.Codec<A, unknown>, text: string): A | undefined => {
  try {
    const decoded = Schema.decodeUnknownOption(schema)(JSON.parse(Buffer.from(text, "base64url").toString()))
    return decoded._tag === "Some" ? decoded.value : undefined
  } catch {
    return undefined
  }
}

/** A page of at most `limit` rows from `rows` (fetched with `limit + 1`), and the cursor after it if more follow. */
export const keysetPage = <Row, Item>(
  rows: ReadonlyArray<Row>,
  limit: number,
  toItem: (row: Row) => Item,
  positionOf: (row: Row) => object,
): { readonly items: ReadonlyArray<Item>; readonly nextCursor: string | null } => {
  const page = rows.slice(0, limit)
  const last = page[page.length - 1]
  return {
    items: page.map(toItem),
    nextCursor: rows.length > limit && last !== undefined ? encodeCursor(positionOf(last)) : null,
  }
}

/** The position of a list ordered newest first by creation time, then id. */
export const CreatedPosition = Schema.Struct({ createdAt: Schema.String, id: Schema.String }).check(
  Schema.makeFilter((position) => !Number.isNaN(Date.parse(position.createdAt))),
)
export type CreatedPosition = typeof CreatedPosition.Type

/** Rows strictly after `position` in newest-first (created_at, id) order. */
export const createdBefore = (position: CreatedPosition) =>
  sql<boolean>`(created_at, id) < (${new Date(position.createdAt)}, ${position.id}::uuid)`

/** The position of a row in newest-first (created_at, id) order. */
export const createdPositionOf = (row: {
  readonly created_at: Date
  readonly id: string
}): CreatedPosition => ({
  createdAt: row.created_at.toISOString(),
  id: row.id,
})
