/**
 * Paging of list operations: a page size and an opaque cursor returned by
 * the previous page.
 */
import { Effect, Schema } from "effect"
import { invalidField, type ValidationFailed } from "../domain/Errors.ts"
import { CreatedPosition, decodeCursor } from "../store/Cursor.ts"

/** `limit` (1-200, default 50) and `cursor` from a previous page's `nextCursor`. */
export const PageRequest = Schema.Struct({
  limit: Schema.optionalKey(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 200 }))),
  cursor: Schema.optionalKey(Schema.String.check(Schema.isMaxLength(500))),
})

/** Decodes a cursor the engine handed out; anything else is a validation failure. */
export const decodePageCursorOrFail = (
  cursor: string | undefined,
): Effect.Effect<CreatedPosition | undefined, ValidationFailed> => {
  if (cursor === undefined) return Effect.succeed(undefined)
  const decoded = decodeCursor(CreatedPosition, cursor)
  return decoded === undefined
    ? Effect.fail(invalidField("body.cursor", "is not a cursor this engine returned"))
    : Effect.succeed(decoded)
}
