/**
 * Writes docs/events.md from the event and notification Schemas
 * (src/streams/Events.ts). Run it with `npm run docs:events` after changing
 * a Schema; test/streams/EventDocs.test.ts fails while the file is stale.
 */
import { writeFileSync } from "node:fs"
import { renderEventDocs } from "../src/streams/EventDocs.ts"

const target = new URL("../docs/events.md", import.meta.url)
writeFileSync(target, renderEventDocs())
console.log(`wrote ${target.pathname}`)
