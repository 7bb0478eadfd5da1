/** docs/events.md is generated from the event Schemas: it must match what they render today. */
import { readFileSync } from "node:fs"
import { describe, expect, it } from "vitest"
import { renderEventDocs } from "../../src/streams/EventDocs.ts"

describe("docs/events.md", () => {
  it("is what the event and notification Schemas render", () => {
    const committed = readFileSync(new URL("../../docs/events.md", import.meta.url), "utf8")
    if (committed !== renderEventDocs()) {
      expect.fail("docs/events.md is stale: run npm run docs:events and commit the result")
    }
  })
})
